import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, type RequestHandler, sendJson } from '@ghostpay/platform';
import type { SigningKeyRing } from './signing-key-ring.ts';

/** Where the JWKS is served; verifiers point `JWKS_URL` here. */
export const jwksPath = '/.well-known/jwks.json';

/**
 * One member of an If-None-Match list and the comma or end after it: an entity tag, weak (`W/`)
 * or strong (group 1), or nothing (the list syntax allows empty members, RFC 9110 5.6.1).
 */
// One run of blanks on each side of a tag (never two runs side by side): linear on any input.
const listMember = /[ \t]*(?:(?:W\/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*)?(,|$)/y;

/**
 * Whether an If-None-Match value matches `etag` (RFC 9110 13.1.2): `*` matches any current
 * representation (the JWKS always has one); otherwise the value is a comma-separated list of
 * entity tags, compared weakly, so `W/"x"` matches `"x"` (a compressing proxy weakens the tag it
 * passes on). A value that is not valid syntax matches nothing: the full answer is always correct.
 */
function ifNoneMatchMatches(value: string | undefined, etag: string): boolean {
  if (value === undefined) return false;
  if (value.trim() === '*') return true;
  let matched = false;
  for (let at = 0; ; ) {
    listMember.lastIndex = at;
    const member = listMember.exec(value);
    if (!member) return false;
    if (member[1] === etag) matched = true;
    if (member[2] === '') return matched;
    at = listMember.lastIndex;
  }
}

/**
 * `GET /.well-known/jwks.json`: the ring's published keys with a short public cache and a
 * strong ETag, so verifiers revalidate cheaply (304) and pick up a new `next` key quickly.
 * If-None-Match is honoured as RFC 9110 says (`ifNoneMatchMatches`).
 */
export function createJwksRoute(keyRing: SigningKeyRing, maxAgeSeconds: number): RequestHandler {
  return async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: { code: ErrorCode.BAD_USER_INPUT, message: 'Use GET' } }, { allow: 'GET, HEAD' });
      return;
    }
    const body = JSON.stringify(await keyRing.publishedJwks());
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;
    const headers = { 'cache-control': `public, max-age=${maxAgeSeconds}`, etag };
    if (ifNoneMatchMatches(req.headers['if-none-match'], etag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/jwk-set+json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
