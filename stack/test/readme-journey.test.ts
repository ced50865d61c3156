import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLogger } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { startStack } from '../src/index.ts';

const run = promisify(execFile);
const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');

describe("the README's guided example", () => {
  it('runs the REST curl journey as written', async () => {
    const block = /<!-- journey:rest -->\s*```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, 'README has a ```sh block after <!-- journey:rest -->').toBeTruthy();
    const dataDir = mkdtempSync(join(tmpdir(), 'ghostpay-readme-'));
    const stack = await startStack({
      dataDir,
      randomPorts: true,
      env: { ...process.env, DATABASE_URL: undefined, SECRETS_DIR: undefined, REDIS_URL: undefined, MONGODB_URL: undefined },
      logger: createLogger({ service: 'readme', level: 'silent' }),
    });
    try {
      const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', block as string], {
        env: { PATH: process.env.PATH, BRIDGE: stack.urls.bridge, GHOSTPAY_DATA_DIR: dataDir },
      });
      expect(stdout).toMatch(/^card card_\w+$/m);
      expect(stdout).toMatch(/"status":"authorized"/);
      expect(stdout).toMatch(/"decline_code":"card_already_used".* HTTP 402/);
      expect(stdout).toMatch(/"status": "used"/);
    } finally {
      await stack.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
