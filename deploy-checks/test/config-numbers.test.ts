/**
 * Every service's number variables are read as platform's `env.wholeNumber` reads them: digits
 * only. A blank value (`CARDS_PORT=` in a compose file, an unset template value) is a start-up
 * problem, never 0 (a random port, a grace period silently off), and `1e3` or `0x10` is not a
 * number of seconds. A `_MS` variable holds at most 2^31 - 1 (`env.milliseconds`). Checked over
 * every variable of every schema, so a new variable written with `z.coerce.number()`, or a
 * millisecond one without the bound, fails here.
 */
import { analyticsConfigSchema } from '@ghostpay/analytics';
import { authConfigSchema } from '@ghostpay/auth';
import { cardsConfigSchema } from '@ghostpay/cards';
import { chargesConfigSchema } from '@ghostpay/charges';
import { bridgeConfigSchema } from '@ghostpay/openapi-bridge';
import { parseConfig, serverTlsConfigSchema, type z } from '@ghostpay/platform';
import { routerConfigSchema, routerSubscriptionsConfigSchema } from '@ghostpay/router';
import { describe, expect, it } from 'vitest';

const schemas: Record<string, z.ZodObject> = {
  router: routerConfigSchema,
  'router subscriptions': routerSubscriptionsConfigSchema,
  auth: authConfigSchema,
  cards: cardsConfigSchema,
  charges: chargesConfigSchema,
  analytics: analyticsConfigSchema,
  bridge: bridgeConfigSchema,
  'server TLS': serverTlsConfigSchema,
};

/** The variables of `schema` that parse `'5'` (or, for one with a larger minimum, `'3600'`) as a number. */
function numberVariables(schema: z.ZodObject): string[] {
  return Object.keys(schema.shape).filter((name) =>
    ['5', '3600'].some((value) => {
      const result = parseConfig(schema, { [name]: value });
      return result.ok && typeof (result.config as Record<string, unknown>)[name] === 'number';
    }),
  );
}

describe('number variables', () => {
  it.each(Object.entries(schemas))('%s: a blank, signed, exponent or hex value is refused, naming the variable', (_service, schema) => {
    const names = numberVariables(schema);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) {
      for (const value of ['', ' ', '1e3', '0x10', '+5']) {
        const result = parseConfig(schema, { [name]: value });
        expect(result.ok, `${name}=${JSON.stringify(value)}`).toBe(false);
        if (!result.ok) expect(result.problems.join('\n'), `${name}=${JSON.stringify(value)}`).toContain(`${name}:`);
      }
    }
  });

  it.each(Object.entries(schemas))('%s: a millisecond variable stops at what a Node timer can wait (2^31 - 1)', (_service, schema) => {
    const names = numberVariables(schema).filter((name) => name.endsWith('_MS'));
    for (const name of names) {
      // A longer setTimeout fires after 1 ms: a ping interval would end every socket, a timeout fire at once.
      expect(parseConfig(schema, { [name]: '2147483648' }).ok, name).toBe(false);
    }
  });
});
