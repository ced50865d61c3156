/**
 * The README's live-status command, run as written from the repository root with a `node` on
 * PATH that cannot run TypeScript (what Node 20, enough to bootstrap with npm, does with a .ts
 * file): it must run the example under the Node 24 pinned in node_modules, through npm.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLogger } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { startStack } from '../src/index.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** A PATH whose `node` refuses .ts files (as Node 20 does) and runs anything else on this Node. */
function pathWithOldNode(dir: string): string {
  const shim = join(dir, 'node');
  writeFileSync(
    shim,
    `#!/bin/sh\nfor arg in "$@"; do case "$arg" in *.ts) echo "node: Unknown file extension \\".ts\\" for $arg" >&2; exit 1;; esac; done\nexec "${process.execPath}" "$@"\n`,
  );
  chmodSync(shim, 0o755);
  const rest = (process.env.PATH ?? '').split(delimiter).filter((entry) => !entry.includes('node_modules'));
  return [dir, ...rest].join(delimiter);
}

describe("the README's live-status command", () => {
  it('watches a charge from AUTHORIZED to SETTLED under the pinned Node, whatever node is on PATH', async () => {
    const command = /<!-- journey:live -->\s*```sh\n([\s\S]*?)```/.exec(readme)?.[1]?.trim();
    expect(command, 'README has a ```sh block after <!-- journey:live -->').toBeTruthy();
    expect(command).toContain('<charge id>');

    const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-live-'));
    const shimDir = mkdtempSync(join(tmpdir(), 'ghostpay-old-node-'));
    const stack = await startStack({
      dataDir,
      randomPorts: true,
      env: {
        ...process.env,
        DATABASE_URL: undefined,
        SECRETS_DIR: undefined,
        REDIS_URL: undefined,
        MONGODB_URL: undefined,
        SETTLEMENT_DELAY_MS: '1000',
        SETTLEMENT_INTERVAL_MS: '200',
      },
      logger: createLogger({ service: 'readme', level: 'silent' }),
    });
    try {
      const rest = async (path: string, body: unknown, token?: string, idempotencyKey?: string) => {
        const response = await fetch(`${stack.urls.bridge}${path}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
          },
          body: JSON.stringify(body),
        });
        return (await response.json()) as Record<string, string>;
      };
      const { access_token: token } = await rest('/auth/token', { api_key: stack.credentials.merchant.apiKey });
      const card = await rest('/cards', { user_id: stack.credentials.user.userId, amount: 5000, currency: 'USD' }, token);
      const charge = await rest('/charges', { card_id: card.card_id, amount: 4200, currency: 'USD' }, token, 'live-1');
      expect(charge.charge_id).toMatch(/^ch/);

      // ROUTER_URL as the bridge and k6 spell it (the GraphQL URL); the router's origin works too.
      const env = {
        PATH: pathWithOldNode(shimDir),
        HOME: process.env.HOME,
        ROUTER_URL: `${stack.urls.router}/graphql`,
        GHOSTPAY_DATA_DIR: dataDir,
      };
      // Without the npm script the example meets the old node, and fails.
      await expect(run('bash', ['-c', 'node stack/examples/watch-charge.ts x'], { cwd: root, env })).rejects.toThrow(
        /Unknown file extension/,
      );

      const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', command!.replace('<charge id>', charge.charge_id!)], {
        cwd: root,
        env,
        timeout: 60_000,
      });
      const statuses = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => (JSON.parse(line) as { chargeUpdated: { status: string } }).chargeUpdated.status);
      expect(statuses.at(-1)).toBe('SETTLED');
    } finally {
      await stack.close();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(shimDir, { recursive: true, force: true });
    }
  }, 120_000);
});
