import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthHarness, startAuth } from './auth-harness.ts';

/** If-None-Match on the JWKS over real HTTP (RFC 9110 13.1.2): `*`, weak comparison, lists. */
describe('the JWKS and If-None-Match', () => {
  let auth: AuthHarness;
  let etag: string;
  beforeAll(async () => {
    auth = await startAuth();
    etag = (await fetch(auth.jwksUrl)).headers.get('etag')!;
  });
  afterAll(() => auth?.close());

  const ask = (ifNoneMatch: string, method = 'GET') => fetch(auth.jwksUrl, { method, headers: { 'if-none-match': ifNoneMatch } });

  it('answers 304 with the ETag and the cache headers, no body, for a matching tag: strong, weak, `*` or in a list', async () => {
    expect(etag).toMatch(/^"[\w-]+"$/);
    const matching = {
      strong: etag,
      weak: `W/${etag}`,
      any: '*',
      anyPadded: ' * ',
      list: `"older", W/"other", ${etag}`,
      weakInList: `"older",W/${etag}`,
      emptyMembers: ` , ,${etag} ,`,
      // A comma inside another tag is part of that tag, not a separator.
      commaInAnotherTag: `"a,b", ${etag}`,
    };
    for (const [name, value] of Object.entries(matching)) {
      for (const method of ['GET', 'HEAD']) {
        const response = await ask(value, method);
        expect(response.status, `${name} ${method}`).toBe(304);
        expect(response.headers.get('etag'), name).toBe(etag);
        expect(response.headers.get('cache-control'), name).toMatch(/^public, max-age=\d+$/);
        expect(await response.text(), name).toBe('');
      }
    }
  });

  it('answers 200 with the set when no tag matches or the field is not valid syntax', async () => {
    const opaque = etag.slice(1, -1);
    const notMatching = {
      other: '"other"',
      weakOther: 'W/"other"',
      // The same characters, but not that entity tag.
      unquoted: opaque,
      prefix: `"${opaque.slice(0, -1)}"`,
      // Our tag's text inside another tag, after a comma: one tag, not a list.
      insideAnotherTag: `"a,${opaque}"`,
      trailingJunk: `${etag}x`,
      starInAList: `*, "other"`,
      empty: '',
    };
    for (const [name, value] of Object.entries(notMatching)) {
      const response = await ask(value);
      expect(response.status, name).toBe(200);
      expect(response.headers.get('etag'), name).toBe(etag);
      const body = (await response.json()) as { keys: unknown[] };
      expect(body.keys.length, name).toBeGreaterThan(0);
    }
  });

  it('allows blanks around a tag, and reads a stray character after a long run of them as no match', async () => {
    // A long run of blanks, as in a header close to the size limit: read once, never split two ways.
    expect((await ask(`${' '.repeat(8000)}x`)).status).toBe(200);
    expect((await ask(`${' '.repeat(8000)}${etag}${' '.repeat(8000)}`)).status).toBe(304);
  });
});
