import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetricsRegistry, createSubgraphService } from '@ghostpay/platform';
import { capturingLogger, createTestTokenIssuer, type TestTokenIssuer } from '@ghostpay/test-support';
import { parse } from 'graphql';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { composeSubgraphs } from '../src/compose-supergraph.ts';
import type { RouterRequestEvent } from '../src/request-events.ts';
import { createRouter } from '../src/router.ts';
import { codes, post, routerConfig, type StubSubgraphs, silentLogger, startRouter, startStubSubgraphs } from './router-harness.ts';

const link = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key"])';

describe('supergraph hot reload', () => {
  let issuer: TestTokenIssuer;
  let greeter: ReturnType<typeof createSubgraphService>;
  let router: ReturnType<typeof createRouter>;
  let path: string;
  let url: string;
  /** The router's own log: what it did with each file it read. */
  const log = capturingLogger('router');
  const logged = (msg: string) => log.parsed().filter((line) => line.msg === msg).length;

  const supergraph = (sdl: string) => {
    const outcome = composeSubgraphs([{ name: 'greeter', url: `${url}/graphql`, sdl: `${link}\n${sdl}` }]);
    if (!outcome.ok) throw new Error(outcome.errors.join('\n'));
    return outcome.supergraphSdl;
  };

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    greeter = createSubgraphService({
      name: 'greeter',
      typeDefs: parse(`${link}\ntype Query { hello: String world: String }`),
      resolvers: { Query: { hello: () => 'hello', world: () => 'world' } } as never,
      verifier: issuer.verifier,
      logger: silentLogger,
      registry: createMetricsRegistry('greeter'),
      shutdownTimeoutMs: 100,
    });
    url = await greeter.start(0);
    path = join(mkdtempSync(join(tmpdir(), 'supergraph-')), 'supergraph.graphql');
    writeFileSync(path, supergraph('type Query { hello: String }'));
    router = createRouter({ config: routerConfig({ ROUTER_SUPERGRAPH_PATH: path }), logger: log.logger, verifier: issuer.verifier });
    await router.start(0);
  });
  afterAll(async () => {
    await router?.close();
    await greeter?.close();
  });

  it('serves a changed supergraph.graphql without a restart, and keeps the current one when the new one is broken', async () => {
    const graphql = `${router.url}/graphql`;
    expect((await post(graphql, { query: '{ hello }' })).body).toEqual({ data: { hello: 'hello' } });
    expect(codes(await post(graphql, { query: '{ world }' }))).toEqual(['GRAPHQL_VALIDATION_FAILED']);

    // Replaced the way `npm run compose` or an editor might: write elsewhere, rename over it.
    writeFileSync(`${path}.tmp`, supergraph('type Query { hello: String world: String }'));
    renameSync(`${path}.tmp`, path);
    const deadline = Date.now() + 10_000;
    let world = await post(graphql, { query: '{ world }' });
    while (world.body.data?.world !== 'world' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      world = await post(graphql, { query: '{ world }' });
    }
    expect(world.body).toEqual({ data: { world: 'world' } });

    // Asserted once the router has read the broken file and refused it, not after a guessed
    // wait: a reload still pending when the query runs would leave nothing tested.
    const rejected = logged('new supergraph rejected; keeping the current one');
    writeFileSync(path, 'this is not a supergraph');
    const rejectedBy = Date.now() + 10_000;
    while (logged('new supergraph rejected; keeping the current one') === rejected && Date.now() < rejectedBy) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(logged('new supergraph rejected; keeping the current one'), 'the router read the broken file and refused it').toBe(rejected + 1);
    expect((await post(graphql, { query: '{ hello world }' })).body).toEqual({ data: { hello: 'hello', world: 'world' } });
  });
});

describe('request events for the analytics emitter', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  const events: RouterRequestEvent[] = [];

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
  });
  afterAll(async () => {
    await subgraphs?.close();
  });

  it('reports operation, caller, status, error codes and subgraph timings, never variables or tokens', async () => {
    const router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls, onRequestEvent: (event) => events.push(event) });
    try {
      const token = await issuer.mint({ userId: 'usr_ev', role: 'user', apiKeyId: 'key_ev' });
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      await post(
        router.graphqlUrl,
        {
          query: 'query CardAndUsers($id: ID!) { card(id: $id) { id } users { edges { node { id } } } }',
          variables: { id: 'card_secret_variable' },
        },
        { authorization: `Bearer ${token}`, traceparent, 'x-request-id': 'req-events-1' },
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      const event = events.find((e) => e.requestId === 'req-events-1');
      expect(event).toMatchObject({
        operationName: 'CardAndUsers',
        operationType: 'query',
        apiKeyId: 'key_ev',
        userId: 'usr_ev',
        role: 'user',
        httpStatus: 200,
        errorCodes: ['FORBIDDEN'],
        traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      });
      expect(event?.subgraphTimings).toMatchObject([{ subgraph: 'cards', outcome: 'success' }]);
      expect(event?.latencyMs).toBeGreaterThan(0);
      const text = JSON.stringify(event);
      expect(text).not.toContain('card_secret_variable');
      expect(text).not.toContain(token);
    } finally {
      await router.close();
    }
  });

  it('reports the error codes of the response the client got, from the pipeline or, before it, from the body', async () => {
    const router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls, onRequestEvent: (event) => events.push(event) });
    try {
      const token = await issuer.mint({ userId: 'usr_ev', role: 'user', apiKeyId: 'key_ev' });
      const cases: { body: unknown; codes: string[] }[] = [
        { body: { query: 'mutation { createToken(apiKey: "gp_a_b") { tokenType } }' }, codes: [] },
        { body: { query: '{ card(id: "c") { id } nope }' }, codes: ['GRAPHQL_VALIDATION_FAILED'] },
        { body: { query: '{ card(id: "c") { id } users { edges { node { id } } } }' }, codes: ['FORBIDDEN'] },
        { body: { query: '{ card(' }, codes: ['GRAPHQL_PARSE_FAILED'] },
        // No query: Apollo Server's pipeline refuses it (its plugins run).
        { body: { variables: {} }, codes: ['BAD_USER_INPUT'] },
        // Refused by Apollo Server before its plugins run: the codes come from the body.
        { body: { query: '{ card(id: "c") { id } }', variables: 'x' }, codes: ['BAD_USER_INPUT'] },
        { body: { query: 5 }, codes: ['BAD_USER_INPUT'] },
      ];
      for (const [i, { body, codes: expected }] of cases.entries()) {
        const response = await post(router.graphqlUrl, body, { authorization: `Bearer ${token}`, 'x-request-id': `req-codes-${i}` });
        expect(codes(response)).toEqual(expected);
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(events.find((e) => e.requestId === `req-codes-${i}`)?.errorCodes).toEqual(expected);
      }
    } finally {
      await router.close();
    }
  });

  it('neither fails nor delays a request when the handler throws, rejects or is slow', async () => {
    let calls = 0;
    // The slow handler's promise settles only when the test releases it, after every response
    // is in: a router that waited for its handler could never answer the third request (the
    // test would time out), so the answer itself proves the request was not delayed.
    let release = () => {};
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    let slowSettled = false;
    const router = await startRouter({
      verifier: issuer.verifier,
      urls: subgraphs.urls,
      onRequestEvent: (() => {
        calls++;
        if (calls === 1) throw new Error('emitter exploded');
        if (calls === 2) return Promise.reject(new Error('emitter rejected'));
        return blocked.then(() => {
          slowSettled = true;
        });
      }) as never,
    });
    try {
      for (let i = 0; i < 3; i++) {
        const response = await post(router.graphqlUrl, { query: 'mutation { createToken(apiKey: "gp_a_b") { tokenType } }' });
        expect(response.body).toEqual({ data: { createToken: { tokenType: 'Bearer' } } });
      }
      await vi.waitFor(() => expect(calls).toBe(3), { timeout: 10_000 });
      expect(slowSettled).toBe(false);
      await vi.waitFor(
        async () => {
          const metrics = await (await fetch(`${router.url}/metrics`)).text();
          expect(metrics).toMatch(/router_request_event_errors_total\{service="router"\} 2/);
        },
        { timeout: 10_000 },
      );
    } finally {
      release();
      await router.close();
    }
  });
});
