import type { IncomingMessage, ServerResponse } from 'node:http';

/** API responses never render: nothing may load from them, nothing may frame them. */
export const apiContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'";

/**
 * The docs page loads only its own scripts and styles. Swagger UI sets inline `style`
 * attributes and shows inline SVG/data images, hence those two relaxations; no inline script.
 */
export const docsContentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** Headers on every bridge response (before CORS, which depends on the request). */
export function setSecurityHeaders(res: ServerResponse, options: { tls: boolean; csp: string }) {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('referrer-policy', 'no-referrer');
  res.setHeader('content-security-policy', options.csp);
  res.setHeader('cross-origin-opener-policy', 'same-origin');
  // HSTS is meaningful only over TLS (browsers ignore it on plain HTTP, and it must not be
  // sent from a plain listener that a TLS-terminating proxy may not front).
  if (options.tls) res.setHeader('strict-transport-security', 'max-age=31536000; includeSubDomains');
}

export interface CorsOptions {
  /** Exact origins (`https://app.example.com`) allowed to call the API from a browser. @default [] (none) */
  allowedOrigins: string[];
  /** How long browsers may cache a preflight answer, in seconds. @default 600 */
  maxAgeSeconds?: number;
}

const allowedRequestHeaders = 'authorization, content-type, idempotency-key, x-request-id';
const exposedHeaders = 'x-request-id, retry-after, ratelimit, ratelimit-policy';

/**
 * Applies CORS for an allowed origin. Returns true when the request was a preflight and has
 * been answered. Unknown origins get no CORS headers at all, so browsers refuse the response.
 */
export function applyCors(req: IncomingMessage, res: ServerResponse, options: CorsOptions, allowedMethods: string[]): boolean {
  const origin = req.headers.origin;
  res.setHeader('vary', 'Origin');
  const allowed = typeof origin === 'string' && options.allowedOrigins.includes(origin);
  if (allowed) {
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-expose-headers', exposedHeaders);
  }
  const isPreflight = req.method === 'OPTIONS' && typeof req.headers['access-control-request-method'] === 'string';
  if (!isPreflight) return false;
  if (allowed) {
    res.setHeader('access-control-allow-methods', allowedMethods.join(', '));
    res.setHeader('access-control-allow-headers', allowedRequestHeaders);
    res.setHeader('access-control-max-age', String(options.maxAgeSeconds ?? 600));
  }
  res.writeHead(204);
  res.end();
  return true;
}
