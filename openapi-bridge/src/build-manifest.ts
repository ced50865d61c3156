/**
 * `npm run build:manifest -w @ghostpay/openapi-bridge`: writes `persisted-queries.json`
 * (the persisted query manifest the router's safelist trusts) from the operations the
 * contract references. `--check` writes nothing and exits 1 when the committed file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { loadSpec, manifestPath, operationsDir } from './openapi-spec.ts';
import { buildManifest, manifestProblems, serializeManifest } from './persisted-query-manifest.ts';

const spec = loadSpec();
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(manifestPath, 'utf8');
  } catch {
    process.stderr.write(`${manifestPath} is missing; run npm run build:manifest -w @ghostpay/openapi-bridge\n`);
    process.exitCode = 1;
  }
  const problems = committed ? manifestProblems(spec, operationsDir, committed) : [];
  for (const problem of problems) process.stderr.write(`${problem}\n`);
  if (problems.length > 0) process.exitCode = 1;
} else {
  const manifest = buildManifest(spec, operationsDir);
  writeFileSync(manifestPath, serializeManifest(manifest));
  process.stdout.write(`wrote ${manifest.operations.length} operations to ${manifestPath}\n`);
}
