/**
 * `npm run compose`: composes the subgraphs listed in supergraph.yaml into supergraph.graphql.
 * Usage: node router/src/compose-cli.ts [--config supergraph.yaml] [--out supergraph.graphql] [--check]
 * With --check it writes nothing and exits 1 when the committed file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { composeFromConfig } from './compose-supergraph.ts';

const args = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const index = args.indexOf(name);
  return (index >= 0 ? args[index + 1] : undefined) ?? fallback;
};
const repoRoot = resolve(import.meta.dirname, '../..');
const configPath = resolve(option('--config', resolve(repoRoot, 'supergraph.yaml')));
const outPath = resolve(option('--out', resolve(repoRoot, 'supergraph.graphql')));

const outcome = composeFromConfig(configPath);
if (!outcome.ok) {
  process.stderr.write(`Composition of ${configPath} failed with ${outcome.errors.length} error(s):\n`);
  for (const line of outcome.errors) process.stderr.write(`  - ${line.replace(/\n/g, '\n    ')}\n`);
  process.exit(1);
}
if (args.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(outPath, 'utf8');
  } catch {}
  if (current !== outcome.supergraphSdl) {
    process.stderr.write(`${outPath} is stale: run npm run compose\n`);
    process.exit(1);
  }
  process.stdout.write(`${outPath} is up to date\n`);
} else {
  writeFileSync(outPath, outcome.supergraphSdl);
  process.stdout.write(`Wrote ${outPath}\n`);
}
