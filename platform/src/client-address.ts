import type { IncomingMessage } from 'node:http';

/**
 * The caller's address for rate limiting. With `trustedProxyHops` = 0 it is the socket
 * peer; with N > 0 it is the N-th `x-forwarded-for` entry from the right (the address the
 * outermost trusted proxy saw), since every entry left of it can be forged by the client.
 * Auth (`TRUSTED_PROXY_HOPS`) and the bridge (`BRIDGE_TRUSTED_PROXY_HOPS`) read it this way.
 */
export function clientAddressOf(req: IncomingMessage, trustedProxyHops: number): string {
  const socketAddress = req.socket.remoteAddress ?? 'unknown';
  if (trustedProxyHops === 0) return socketAddress;
  const header = req.headers['x-forwarded-for'];
  const entries = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  return entries[entries.length - trustedProxyHops] ?? socketAddress;
}
