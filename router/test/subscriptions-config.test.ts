/**
 * The router's subscription settings as env gives them. The upstream socket capacity is bounded
 * by what one charges socket accepts (charges' SUBSCRIPTION_MAX_PER_SOCKET, 1000 by default):
 * above it, every subscribe past charges' cap on a socket would be refused with
 * OPERATION_LIMIT_EXCEEDED and retried for ever, so such a value is refused at start-up.
 */
import { createSecretsProvider, parseConfig } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { routerSubscriptionsConfigSchema, routerSubscriptionsSettings } from '../src/subscriptions/index.ts';

describe('ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY', () => {
  const capacityOf = (env: Record<string, string>) => {
    const parsed = parseConfig(routerSubscriptionsConfigSchema, env);
    if (!parsed.ok) return parsed.problems;
    const secrets = createSecretsProvider({ env: {} });
    try {
      return routerSubscriptionsSettings(parsed.config, {}, secrets)?.upstream?.maxSubscriptionsPerSocket;
    } finally {
      secrets.close();
    }
  };

  it('is 500 unset and takes any value up to charges’ default cap per socket, 1000', () => {
    expect(capacityOf({})).toBe(500);
    expect(capacityOf({ ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: '1' })).toBe(1);
    expect(capacityOf({ ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: '1000' })).toBe(1000);
  });

  it('refuses more than charges accepts on one socket, naming both settings', () => {
    const problems = capacityOf({ ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: '1001' });
    expect(problems).toEqual([expect.stringMatching(/^ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: .*1000.*\(got "1001"\)$/)]);
    expect((problems as string[])[0]).toContain('SUBSCRIPTION_MAX_PER_SOCKET');
    expect(capacityOf({ ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: '0' })).toEqual([
      expect.stringMatching(/^ROUTER_SUBSCRIPTION_UPSTREAM_SOCKET_CAPACITY: /),
    ]);
  });
});
