/**
 * The root README's configuration table against the services' config schemas: a row says
 * which services read a variable, and that must be the services whose schema has it.
 */
import { analyticsConfigSchema } from '@ghostpay/analytics';
import { authConfigSchema } from '@ghostpay/auth';
import { cardsConfigSchema } from '@ghostpay/cards';
import { chargesConfigSchema } from '@ghostpay/charges';
import { bridgeConfigSchema } from '@ghostpay/openapi-bridge';
import { serverTlsConfigSchema } from '@ghostpay/platform';
import { routerConfigSchema, routerSubscriptionsConfigSchema } from '@ghostpay/router';
import { describe, expect, it } from 'vitest';
import { readRepoFile } from '../src/repo.ts';

const subgraphs = ['auth', 'cards', 'charges', 'analytics'];
const all = ['router', ...subgraphs, 'bridge'];
/** What each service reads: its config schema(s); subgraphs also platform's server TLS (their main.ts calls loadServerTlsConfig). */
const reads: Record<string, Set<string>> = {
  router: new Set([...Object.keys(routerConfigSchema.shape), ...Object.keys(routerSubscriptionsConfigSchema.shape)]),
  auth: new Set([...Object.keys(authConfigSchema.shape), ...Object.keys(serverTlsConfigSchema.shape)]),
  cards: new Set([...Object.keys(cardsConfigSchema.shape), ...Object.keys(serverTlsConfigSchema.shape)]),
  charges: new Set([...Object.keys(chargesConfigSchema.shape), ...Object.keys(serverTlsConfigSchema.shape)]),
  analytics: new Set([...Object.keys(analyticsConfigSchema.shape), ...Object.keys(serverTlsConfigSchema.shape)]),
  bridge: new Set(Object.keys(bridgeConfigSchema.shape)),
};

/** The services a "used by" cell names; undefined when it names them in a way this test does not model. */
function usedBy(cell: string): string[] | undefined {
  const out = new Set<string>();
  for (const part of cell.split(',').map((p) => p.trim())) {
    if (part === '`npm start`') continue;
    if (part === 'all') for (const s of all) out.add(s);
    else if (/^all but (the )?(\w+)$/.test(part)) {
      const but = /(\w+)$/.exec(part)![1]!;
      for (const s of all) if (s !== but) out.add(s);
    } else if (part === 'subgraphs') for (const s of subgraphs) out.add(s);
    else if (all.includes(part)) out.add(part);
    else return undefined;
  }
  return [...out].sort();
}

const readme = readRepoFile('README.md');
const table = readme
  .slice(readme.indexOf('| variable | used by |'))
  .split('\n')
  .filter((line, i, lines) => line.startsWith('|') && lines.slice(0, i).every((l) => l.startsWith('|')))
  .slice(2);
const rows = table.map((line) => line.split('|').map((c) => c.trim()));

describe("the README's configuration table", () => {
  it('is there', () => {
    expect(rows.length).toBeGreaterThan(10);
  });

  it.each(rows.map((r) => [r[1]!, r[2]!]))('%s: used by %s', (names, cell) => {
    const services = usedBy(cell);
    if (!services) return; // "each service" and the like: nothing to compare
    for (const [, name] of names.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) {
      const readers = all.filter((service) => reads[service]!.has(name!)).sort();
      if (readers.length === 0) continue; // read by Node or a library (OTEL_*), not a service schema
      expect(services, name).toEqual(readers);
    }
  });

  it('lists every server TLS variable the subgraphs read', () => {
    const listed = rows.map((r) => r[1]!).join(' ');
    for (const name of Object.keys(serverTlsConfigSchema.shape)) expect(listed, name).toContain(`\`${name}\``);
  });
});
