/**
 * A subgraph that answers a leaf of the wrong type (a string for `Card.amount: Int!`, an unknown
 * enum value for `Charge.status`): @apollo/gateway, and the compiled executor as it, nulls what it
 * could not complete and reports it only in `extensions.valueCompletion` (code INVALID_GRAPHQL)
 * with no `errors`, so the answer was HTTP 200 `data: null` with nothing counted against the
 * availability SLI. The router turns each into an INTERNAL_SERVER_ERROR field error (message and
 * path kept) and counts the response as a server-side failure. A real router in front of stand-in
 * subgraphs; cards and charges are replaced by a plain HTTP server answering fixed, mistyped JSON.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouterRequestEvent } from '../src/request-events.ts';
import { post, type StartedRouter, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';
import { idleSubscriptions, readEventStream, until } from './subscriptions-harness.ts';

/** Answers every subgraph request with a card whose amount is a string, or a charge whose status no enum has. */
async function startMistypedSubgraph() {
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk) => {
      text += chunk;
    });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const data = text.includes('charge')
        ? { charge: { id: 'ch_1', status: 'MELTED', amount: 500 } }
        : { card: { id: 'card_1', amount: 'ten', last4: '4242' } };
      res.end(JSON.stringify({ data }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const mistypedAmount = {
  message: 'Invalid value found for field Card.amount.',
  path: ['card', 'amount'],
  extensions: { code: 'INTERNAL_SERVER_ERROR' },
};

describe.each(['compiled', 'gateway'])('a subgraph answering a leaf of the wrong type (ROUTER_EXECUTOR=%s)', (executor) => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let mistyped: Awaited<ReturnType<typeof startMistypedSubgraph>>;
  let router: StartedRouter;
  const events: RouterRequestEvent[] = [];

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier, ['auth', 'analytics']);
    mistyped = await startMistypedSubgraph();
    router = await startRouter({
      verifier: issuer.verifier,
      urls: { ...subgraphs.urls, cards: mistyped.url, charges: mistyped.url },
      env: { ROUTER_EXECUTOR: executor },
      onRequestEvent: (event) => events.push(event),
      subscriptions: idleSubscriptions(issuer),
    });
  });
  afterAll(async () => {
    await router?.close();
    await mistyped?.close();
    await subgraphs?.close();
  });

  const metric = async (pattern: RegExp) => {
    const text = await (await fetch(`${router.url}/metrics`)).text();
    return Number(pattern.exec(text)?.[1] ?? 0);
  };
  const serverErrorResponses = () => metric(/^router_graphql_server_error_responses_total\{[^}]*\} (\d+)$/m);
  const internalErrors = () => metric(/^graphql_errors_total\{[^}]*code="INTERNAL_SERVER_ERROR"[^}]*\} (\d+)$/m);

  it('answers a field error with INTERNAL_SERVER_ERROR and its path, not only extensions.valueCompletion, to admins and others alike', async () => {
    for (const role of ['admin', 'merchant'] as const) {
      const response = await post(
        router.graphqlUrl,
        { query: 'query Card { card(id: "card_1") { id amount last4 } }' },
        { authorization: await issuer.bearer({ userId: `usr_${role}`, role }) },
      );
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ data: null, errors: [mistypedAmount] });
    }
  });

  it('counts the response as a server-side failure in the SLI, in graphql_errors_total and in its request event', async () => {
    const [failuresBefore, errorsBefore] = [await serverErrorResponses(), await internalErrors()];
    const response = await post(
      router.graphqlUrl,
      { query: 'query CardAmount { card(id: "card_1") { amount } }' },
      { authorization: await issuer.bearer({ userId: 'usr_sli', role: 'merchant' }) },
    );
    expect(response.body.errors).toEqual([mistypedAmount]);
    expect(await serverErrorResponses()).toBe(failuresBefore + 1);
    expect(await internalErrors()).toBe(errorsBefore + 1);
    await until(() => events.some((e) => e.operationName === 'CardAmount'), 'the request event');
    expect(events.find((e) => e.operationName === 'CardAmount')).toMatchObject({ httpStatus: 200, errorCodes: ['INTERNAL_SERVER_ERROR'] });
  });

  it('names the field in a subscription’s first payload, which refuses it (it said only "Subscription refused")', async () => {
    const controller = new AbortController();
    try {
      const response = await fetch(`${router.url}/graphql/stream`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'text/event-stream',
          authorization: await issuer.bearer({ userId: 'usr_sse', role: 'merchant' }),
        },
        body: JSON.stringify({ query: 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status } }', variables: { id: 'ch_1' } }),
        signal: controller.signal,
      });
      const stream = readEventStream(response);
      await until(() => stream.received.ended, 'the refusal');
      // A first query that leaves the root field null refuses the subscription with its first error
      // (INTERNAL_SERVER_ERROR, counted as ours on both transports before and after).
      expect(stream.received.next).toEqual([
        {
          data: null,
          errors: [
            { message: 'Cannot return null for non-nullable field Query.chargeUpdated.', extensions: { code: 'INTERNAL_SERVER_ERROR' } },
          ],
        },
      ]);
    } finally {
      controller.abort();
    }
  });
});
