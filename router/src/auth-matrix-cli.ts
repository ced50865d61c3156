/**
 * Writes the auth directive matrix (each caller × each root field) into router/README.md from
 * the committed supergraph.graphql. `--check` exits 1 when the README's table is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { computeAuthMatrix, renderAuthMatrix, spliceAuthMatrix } from './auth-matrix.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
const readmePath = resolve(repoRoot, 'router/README.md');
const table = renderAuthMatrix(computeAuthMatrix(readFileSync(resolve(repoRoot, 'supergraph.graphql'), 'utf8')));
const readme = readFileSync(readmePath, 'utf8');
const next = spliceAuthMatrix(readme, table);
if (process.argv.includes('--check')) {
  if (next !== readme) {
    process.stderr.write('router/README.md auth matrix is stale: run npm run auth-matrix -w @ghostpay/router\n');
    process.exit(1);
  }
} else {
  writeFileSync(readmePath, next);
  process.stdout.write('router/README.md auth matrix updated\n');
}
