/**
 * The router reads a request body as UTF-8 (JSON is UTF-8, RFC 8259). A body declared in another
 * charset is refused with 415 and a code of the closed list, before any subgraph is called: it
 * was decoded as UTF-8 whatever it said, so a Latin-1 body ran with replacement characters where
 * its non-ASCII bytes were, and a UTF-16 one failed as malformed JSON.
 */
import { describe, expect, it } from 'vitest';
import { withRouter } from './router-harness.ts';

describe('a request body declared in a charset other than UTF-8', () => {
  const setup = withRouter({
    env: { ROUTER_RATE_LIMIT_PER_MINUTE: '1000', ROUTER_ANONYMOUS_RATE_LIMIT_PER_MINUTE: '1000' },
    bearer: { userId: 'usr_charset', role: 'merchant', apiKeyId: 'key_charset' },
  });

  const totalHits = () => Object.values(setup.subgraphs.hits).reduce((a, b) => a + b, 0);
  const query = JSON.stringify({ query: 'query Me { me { id } }' });

  it.each([
    ['application/json; charset=utf-16', Buffer.from(query, 'utf16le')],
    ['application/json; charset=UTF-16LE', Buffer.from(query, 'utf16le')],
    ['application/json; charset=iso-8859-1', Buffer.from(query, 'latin1')],
    ['application/json;charset="windows-1252"', Buffer.from(query, 'latin1')],
  ])('%s: 415 BAD_USER_INPUT, no subgraph called', async (contentType, body) => {
    const before = totalHits();
    const response = await fetch(setup.router.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': contentType, authorization: setup.authorization },
      body,
    });
    const answer = (await response.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
    expect({ status: response.status, codes: answer.errors?.map((e) => e.extensions?.code) }).toEqual({
      status: 415,
      codes: ['BAD_USER_INPUT'],
    });
    expect(answer.errors?.[0]?.message).toBe('Content-Type charset must be utf-8');
    expect(totalHits()).toBe(before);
  });

  it('sends the raw bytes (a Latin-1 body is refused, not run with replacement characters)', async () => {
    const before = totalHits();
    const response = await fetch(setup.router.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=iso-8859-1', authorization: setup.authorization },
      body: Buffer.from(JSON.stringify({ query: 'query Me { me { id } }', variables: { note: 'café' } }), 'latin1'),
    });
    expect(response.status).toBe(415);
    expect(totalHits()).toBe(before);
  });

  it.each(['application/json', 'application/json; charset=utf-8', 'application/json; charset="UTF-8"', 'application/json;charset=utf8'])(
    '%s runs',
    async (contentType) => {
      const response = await fetch(setup.router.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': contentType, authorization: setup.authorization },
        body: Buffer.from(query, 'utf8'),
      });
      expect(response.status).toBe(200);
      expect(((await response.json()) as { errors?: unknown }).errors).toBeUndefined();
    },
  );
});
