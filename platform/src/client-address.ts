import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';

/**
 * The caller's address for rate limiting. With `trustedProxyHops` = 0 it is the socket
 * peer; with N > 0 it is the N-th `x-forwarded-for` entry from the right (the address the
 * outermost trusted proxy saw), since every entry left of it can be forged by the client.
 * Auth (`TRUSTED_PROXY_HOPS`), the bridge (`BRIDGE_TRUSTED_PROXY_HOPS`) and the router
 * (`ROUTER_TRUST_PROXY`: 1 hop) read it this way. Limit on `addressIdentity` of it, not on it.
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

/** Longer identities (not an address: header text) are limited as their SHA-256, so each costs the same few bytes. */
const maxIdentityLength = 64;

/**
 * The identity a client address is limited as. An IPv6 address counts by its /64: one
 * subscriber (a home, a VPS, a phone) is handed a whole /64, so per-address limits on single
 * IPv6 addresses would give each attacker 2^64 budgets. An IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`, how a dual-stack socket reports IPv4 peers) counts as the IPv4 address.
 * A port some proxies write after the address (`192.0.2.1:51234`, `[2001:db8::1]:443`) and
 * brackets are dropped: each connection of one client has its own source port, and must not
 * get its own budget. Anything else (not an IP) is used as it is, or as its SHA-256 when longer
 * than 64 characters: it comes from a header, and an in-memory limiter's bound on identities
 * is only a bound on memory if each identity is small. Auth's failed-exchange limit and the
 * router's anonymous rate limit both key on it.
 */
export function addressIdentity(address: string): string {
  const bare = withoutPort(address.trim());
  const withoutZone = bare.split('%')[0]!;
  if (!isIPv6(withoutZone)) {
    if (isIPv4(bare)) return bare;
    return address.length <= maxIdentityLength ? address : `sha256:${createHash('sha256').update(address).digest('hex')}`;
  }
  const groups = expandIPv6(withoutZone);
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    const mapped = [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
    if (isIPv4(mapped)) return mapped;
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

/** `[v6]:port` and `[v6]` → `v6`; `a.b.c.d:port` → `a.b.c.d`; anything else unchanged. */
function withoutPort(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const ipv4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(address);
  return ipv4WithPort ? ipv4WithPort[1]! : address;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail converted). */
function expandIPv6(address: string): number[] {
  let text = address.toLowerCase();
  const ipv4Tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (ipv4Tail) {
    const [a, b, c, d] = ipv4Tail.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, ipv4Tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part ? part.split(':').map((group) => Number.parseInt(group, 16)) : []);
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...Array(8 - left.length - right.length).fill(0), ...right];
}
