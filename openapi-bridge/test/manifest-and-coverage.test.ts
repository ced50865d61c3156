import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { composeFromConfig } from '@ghostpay/router';
import { buildSchema, parse, validate } from 'graphql';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bridgeRootForTests,
  buildManifest,
  loadSpec,
  manifestPath,
  manifestProblems,
  operationsDir,
  routeCoverageProblems,
  serializeManifest,
  sha256Hex,
  staticPaths,
} from './manifest-fixtures.ts';

const spec = loadSpec();
const committed = readFileSync(manifestPath, 'utf8');
const node = resolve(bridgeRootForTests, '../node_modules/.bin/node');

const scratch: string[] = [];
/** A copy of operations/ to break on purpose. */
function operationsCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bridge-ops-'));
  scratch.push(dir);
  cpSync(operationsDir, dir, { recursive: true });
  return dir;
}
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('the persisted query manifest', () => {
  it('is up to date with the operation documents the contract names', () => {
    expect(manifestProblems(spec, operationsDir, committed)).toEqual([]);
    expect(serializeManifest(buildManifest(spec, operationsDir))).toBe(committed);
  });

  it('is in Apollo’s format with ids that are the sha256 of each body', () => {
    const manifest = JSON.parse(committed);
    expect(manifest).toMatchObject({ format: 'apollo-persisted-query-manifest', version: 1 });
    for (const operation of manifest.operations) expect(operation.id).toBe(sha256Hex(operation.body));
    expect(manifest.operations.map((o: { name: string; type: string }) => `${o.type} ${o.name}`)).toContain('mutation CreateCharge');
  });

  it('is found stale when a document changes after the build', () => {
    const dir = operationsCopy();
    const file = join(dir, 'GetCharge.graphql');
    const original = readFileSync(file, 'utf8');
    const edited = original.replace('  refundedAmount\n', '');
    expect(edited).not.toBe(original);
    writeFileSync(file, edited);
    expect(manifestProblems(spec, dir, committed)).toEqual(['operation GetCharge is stale in the manifest (its document changed)']);
  });

  it('fails when an operation’s document is missing from the manifest', () => {
    const manifest = JSON.parse(committed);
    manifest.operations = manifest.operations.filter((o: { name: string }) => o.name !== 'RefundCharge');
    const problems = manifestProblems(spec, operationsDir, serializeManifest(manifest));
    expect(problems).toEqual(['operation RefundCharge is missing from the manifest']);
  });

  it('fails when a route names a document that does not exist', () => {
    const dir = operationsCopy();
    unlinkSync(join(dir, 'CancelCard.graphql'));
    expect(manifestProblems(spec, dir, committed).join('\n')).toMatch(/operation CancelCard: document .*CancelCard.graphql is missing/);
    expect(() => buildManifest(spec, dir)).toThrow(/CancelCard/);
  });

  it('fails when a document is not used by any route', () => {
    const dir = operationsCopy();
    writeFileSync(join(dir, 'Orphan.graphql'), 'query Orphan { __typename }\n');
    expect(manifestProblems(spec, dir, committed)).toEqual([
      'operations/Orphan.graphql is not referenced by any route (x-graphql-operation)',
    ]);
  });

  it('refuses a document whose operation is not named like its file', () => {
    const dir = operationsCopy();
    writeFileSync(join(dir, 'GetCard.graphql'), 'query FetchCard($id: ID!) { card(id: $id) { id } }\n');
    expect(manifestProblems(spec, dir, committed).join('\n')).toMatch(/must define exactly one operation, named GetCard/);
  });

  it('is checked by the build step’s --check mode', () => {
    const check = (cwd: string) => spawnSync(node, ['src/build-manifest.ts', '--check'], { cwd, encoding: 'utf8', timeout: 30_000 });
    const run = check(bridgeRootForTests);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);

    // The same script in a copy of the package whose manifest is stale, then missing: it must fail.
    const copy = mkdtempSync(join(tmpdir(), 'bridge-check-'));
    scratch.push(copy);
    for (const entry of ['package.json', 'openapi.yaml', 'persisted-queries.json', 'src', 'operations']) {
      cpSync(join(bridgeRootForTests, entry), join(copy, entry), { recursive: true });
    }
    symlinkSync(resolve(bridgeRootForTests, '../node_modules'), join(copy, 'node_modules'));
    expect(check(copy).status, 'the copy checks clean before it is broken').toBe(0);
    const document = join(copy, 'operations', 'GetCharge.graphql');
    writeFileSync(document, readFileSync(document, 'utf8').replace('  refundedAmount\n', ''));
    const stale = check(copy);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain('operation GetCharge is stale in the manifest (its document changed)');
    unlinkSync(join(copy, 'persisted-queries.json'));
    const missing = check(copy);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/persisted-queries\.json is missing/);
  });
});

describe('route coverage', () => {
  it('documents every route the bridge serves, and serves every documented route', () => {
    expect(routeCoverageProblems(spec)).toEqual([]);
    expect(staticPaths).toContain('/docs/swagger-ui-bundle.js');
  });

  it('fails when a served route is undocumented', () => {
    const trimmed = structuredClone(spec);
    delete trimmed.paths['/openapi.json'];
    expect(routeCoverageProblems(trimmed)).toEqual(['GET /openapi.json is served but not documented in openapi.yaml']);
  });

  it('fails when a documented operation names no GraphQL operation and is not static', () => {
    const edited = structuredClone(spec);
    const item = edited.paths['/cards/{card_id}'] as Record<string, Record<string, unknown>>;
    delete item.get?.['x-graphql-operation'];
    expect(routeCoverageProblems(edited)).toEqual([
      'GET /cards/{card_id} names no x-graphql-operation and is not a static route',
      'operation mapping GetCard is not used by any route',
    ]);
  });

  it('fails when a documented static path is not served', () => {
    expect(
      routeCoverageProblems(
        spec,
        staticPaths.filter((p) => p !== '/docs/docs-init.js'),
      ),
    ).toEqual(['GET /docs/{asset}: /docs/docs-init.js is documented but the bridge does not serve it']);
  });
});

describe('the operation documents', () => {
  it('are valid against the supergraph composed from the subgraphs’ schema files', () => {
    const composed = composeFromConfig(resolve(bridgeRootForTests, '../supergraph.yaml'));
    if (!composed.ok) throw new Error(`composition failed:\n${composed.errors.join('\n')}`);
    const schema = buildSchema(composed.supergraphSdl, { assumeValidSDL: true });
    const manifest = JSON.parse(committed) as { operations: { name: string; body: string }[] };
    const problems = manifest.operations.flatMap((op) => validate(schema, parse(op.body)).map((e) => `${op.name}: ${e.message}`));
    expect(problems).toEqual([]);
  });
});
