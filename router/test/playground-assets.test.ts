import { createTestTokenIssuer } from '@ghostpay/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRouter } from './router-harness.ts';

describe('playground assets', () => {
  let router: Awaited<ReturnType<typeof startRouter>>;

  beforeAll(async () => {
    const issuer = await createTestTokenIssuer();
    // No GraphQL request is made: the subgraph URLs are never dialled.
    router = await startRouter({ verifier: issuer.verifier, urls: {} });
  });
  afterAll(async () => {
    await router?.close();
  });

  it('serves the listed assets', async () => {
    const response = await fetch(`${router.url}/playground/assets/graphiql.css`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('answers another method than GET or HEAD with 405 and Allow', async () => {
    for (const path of ['/playground', '/playground/assets/graphiql.css']) {
      const response = await fetch(`${router.url}${path}`, { method: 'POST' });
      expect(response.status, path).toBe(405);
      expect(response.headers.get('allow'), path).toBe('GET, HEAD');
      expect(await response.json(), path).toEqual({ error: { code: 'BAD_USER_INPUT', message: 'Method not allowed' } });
    }
  });

  it('answers 404 for names that only Object.prototype has', async () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', '__defineGetter__']) {
      const response = await fetch(`${router.url}/playground/assets/${name}`);
      expect(response.status, name).toBe(404);
      expect(await response.json(), name).toEqual({ error: { code: 'NOT_FOUND', message: 'Not found' } });
    }
  });
});
