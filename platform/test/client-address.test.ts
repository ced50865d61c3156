import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { addressIdentity, clientAddressOf } from '../src/client-address.ts';

describe('client address', () => {
  const request = (remoteAddress: string, forwardedFor?: string) =>
    ({ socket: { remoteAddress }, headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {} }) as unknown as IncomingMessage;

  it('uses the socket unless proxies are trusted, then the entry the outermost trusted proxy appended', () => {
    expect(clientAddressOf(request('10.0.0.1', '1.2.3.4'), 0)).toBe('10.0.0.1');
    expect(clientAddressOf(request('10.0.0.1', 'forged, 1.2.3.4'), 1)).toBe('1.2.3.4');
    expect(clientAddressOf(request('10.0.0.1', 'forged, 1.2.3.4, 10.0.0.9'), 2)).toBe('1.2.3.4');
    expect(clientAddressOf(request('10.0.0.1'), 1)).toBe('10.0.0.1');
  });
});

describe('address identity', () => {
  it('keeps IPv4 and non-addresses, maps IPv4-mapped IPv6 to IPv4, and cuts IPv6 to its /64 whatever its spelling', () => {
    expect(addressIdentity('192.0.2.1')).toBe('192.0.2.1');
    expect(addressIdentity('unknown')).toBe('unknown');
    expect(addressIdentity('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressIdentity('::FFFF:c000:0201')).toBe('192.0.2.1');
    for (const spelling of ['2001:db8::1', '2001:0DB8:0:0:ffff::', '2001:db8:0:0:1:2:3:4', '2001:db8::192.0.2.1', '2001:db8::1%eth0']) {
      expect(addressIdentity(spelling), spelling).toBe('2001:db8:0:0::/64');
    }
    expect(addressIdentity('::1')).toBe('0:0:0:0::/64');
    expect(addressIdentity('2001:db8:1::1')).not.toBe(addressIdentity('2001:db8:2::1'));
  });

  it('counts each connection of a client as the client when a proxy writes the port too', () => {
    // Every new connection has a new source port: keyed with it, each would get its own budget.
    for (const spelling of ['192.0.2.1:51234', '192.0.2.1:1', ' 192.0.2.1 ', '[::ffff:192.0.2.1]:443']) {
      expect(addressIdentity(spelling), spelling).toBe('192.0.2.1');
    }
    for (const spelling of ['[2001:db8::1]:443', '[2001:db8::1]', '[2001:db8:0:0:ffff::2]:65535', '[2001:db8::1%eth0]:8080']) {
      expect(addressIdentity(spelling), spelling).toBe('2001:db8:0:0::/64');
    }
  });

  it('keeps the identity of any header text small, so the in-memory bound on identities bounds memory', () => {
    const long = `${'a'.repeat(8000)}1`;
    const identity = addressIdentity(long);
    expect(identity).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(addressIdentity(long)).toBe(identity);
    expect(addressIdentity(`${'a'.repeat(8000)}2`)).not.toBe(identity);
    expect(addressIdentity('a'.repeat(64))).toBe('a'.repeat(64));
  });
});
