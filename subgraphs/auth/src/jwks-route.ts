import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode, type RequestHandler, sendJson } from '@ghostpay/platform';
import type { SigningKeyRing } from './signing-key-ring.ts';

/** Where the JWKS is served; verifiers point `JWKS_URL` here. */
export const jwksPath = '/.well-known/jwks.json';

/**
 * `GET /.well-known/jwks.json`: the ring's published keys with a short public cache and a
 * strong ETag, so verifiers revalidate cheaply (304) and pick up a new `next` key quickly.
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
    const ifNoneMatch = req.headers['if-none-match'];
    if (ifNoneMatch?.split(',').some((tag) => tag.trim() === etag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/jwk-set+json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
