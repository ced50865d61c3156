import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { composeFromConfig, readSupergraphConfig } from '../src/compose-supergraph.ts';
import { composeRepoSupergraph, repoRoot } from './router-harness.ts';

const node = resolve(repoRoot, 'node_modules/.bin/node');
const cli = resolve(repoRoot, 'router/src/compose-cli.ts');

describe('supergraph composition', () => {
  it('has a committed supergraph.graphql equal to composing supergraph.yaml now (run npm run compose when this fails)', () => {
    const committed = readFileSync(resolve(repoRoot, 'supergraph.graphql'), 'utf8');
    expect(committed === composeRepoSupergraph(), 'supergraph.graphql is stale: run `npm run compose`').toBe(true);
  });

  it('reads every subgraph of supergraph.yaml with its routing URL and schema file', () => {
    const config = readSupergraphConfig(resolve(repoRoot, 'supergraph.yaml'));
    expect(config.subgraphs.map((s) => s.name)).toEqual(expect.arrayContaining(['auth', 'cards', 'charges']));
    for (const subgraph of config.subgraphs) expect(subgraph.schemaFile).toMatch(/schema\.graphql$/);
  });

  it('detects a stale file with --check and rewrites it without', () => {
    const dir = mkdtempSync(join(tmpdir(), 'compose-'));
    const out = join(dir, 'supergraph.graphql');
    writeFileSync(out, 'type Query { stale: Int }\n');
    const stale = spawnSync(node, [cli, '--check', '--out', out], { encoding: 'utf8' });
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain('is stale');
    execFileSync(node, [cli, '--out', out]);
    expect(spawnSync(node, [cli, '--check', '--out', out]).status).toBe(0);
  });

  it('prints composition errors readably and exits 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'compose-bad-'));
    writeFileSync(
      join(dir, 'a.graphql'),
      'extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key"])\ntype Query { thing: Thing }\ntype Thing @key(fields: "id") { id: ID! size: Int }\n',
    );
    writeFileSync(
      join(dir, 'b.graphql'),
      'extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key"])\ntype Query { other: Thing }\ntype Thing @key(fields: "id") { id: ID! size: String }\n',
    );
    writeFileSync(
      join(dir, 'supergraph.yaml'),
      'federation_version: =2.9.0\nsubgraphs:\n  a:\n    routing_url: http://127.0.0.1:1/graphql\n    schema:\n      file: ./a.graphql\n  b:\n    routing_url: http://127.0.0.1:2/graphql\n    schema:\n      file: ./b.graphql\n',
    );
    const outcome = composeFromConfig(join(dir, 'supergraph.yaml'));
    expect(outcome.ok).toBe(false);
    const run = spawnSync(node, [cli, '--config', join(dir, 'supergraph.yaml'), '--out', join(dir, 'out.graphql')], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/Composition of .* failed with \d+ error/);
    expect(run.stderr).toMatch(/FIELD_TYPE_MISMATCH.*Thing\.size/);
  });
});
