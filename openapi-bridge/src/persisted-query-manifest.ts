import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kind, type OperationDefinitionNode, parse, print } from 'graphql';
import { type OpenApiDocument, routesOf } from './openapi-spec.ts';

/** One entry of Apollo's persisted query manifest; `id` is the sha256 (hex) of `body`. */
export interface ManifestOperation {
  id: string;
  name: string;
  type: 'query' | 'mutation' | 'subscription';
  body: string;
}

/** Apollo's persisted query manifest format, which the router's safelist mode loads. */
export interface PersistedQueryManifest {
  format: 'apollo-persisted-query-manifest';
  version: 1;
  operations: ManifestOperation[];
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Reads `operations/<name>.graphql` as a manifest entry. The body is the document as
 * `graphql`'s printer writes it, so whitespace edits do not change the hash, and the file
 * must hold exactly one operation named like the file (plus the fragments it uses).
 */
export function readOperation(dir: string, name: string): ManifestOperation {
  const file = join(dir, `${name}.graphql`);
  if (!existsSync(file)) throw new Error(`operation ${name}: document ${file} is missing`);
  const document = parse(readFileSync(file, 'utf8'));
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  if (operations.length !== 1 || operations[0]?.name?.value !== name) {
    throw new Error(`operation ${name}: ${file} must define exactly one operation, named ${name}`);
  }
  const body = print(document);
  return { id: sha256Hex(body), name, type: operations[0].operation, body };
}

/** The GraphQL operation names the contract references, in document order, without repeats. */
export function referencedOperations(spec: OpenApiDocument): string[] {
  const names = routesOf(spec).flatMap((route) => (route.graphqlOperation ? [route.graphqlOperation] : []));
  return [...new Set(names)];
}

/** Builds the manifest for every operation the contract references (sorted by name). */
export function buildManifest(spec: OpenApiDocument, dir: string): PersistedQueryManifest {
  const operations = referencedOperations(spec)
    .map((name) => readOperation(dir, name))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { format: 'apollo-persisted-query-manifest', version: 1, operations };
}

export function serializeManifest(manifest: PersistedQueryManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/**
 * Why a committed manifest cannot be trusted, one line per problem (empty when it is
 * exact): a referenced document missing from the folder or from the manifest, an entry
 * whose body changed since the build, an entry nothing references, a document no route uses.
 */
export function manifestProblems(spec: OpenApiDocument, dir: string, manifestText: string): string[] {
  const problems: string[] = [];
  let manifest: PersistedQueryManifest;
  try {
    manifest = JSON.parse(manifestText) as PersistedQueryManifest;
  } catch {
    return ['the manifest is not JSON'];
  }
  if (manifest.format !== 'apollo-persisted-query-manifest' || manifest.version !== 1 || !Array.isArray(manifest.operations)) {
    return ['the manifest is not an apollo-persisted-query-manifest version 1'];
  }
  const byName = new Map(manifest.operations.map((op) => [op.name, op]));
  const referenced = referencedOperations(spec);
  for (const name of referenced) {
    let current: ManifestOperation;
    try {
      current = readOperation(dir, name);
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    const entry = byName.get(name);
    if (!entry) problems.push(`operation ${name} is missing from the manifest`);
    else if (entry.body !== current.body || entry.id !== current.id || entry.type !== current.type) {
      problems.push(`operation ${name} is stale in the manifest (its document changed)`);
    }
  }
  for (const entry of manifest.operations) {
    if (sha256Hex(entry.body) !== entry.id) problems.push(`operation ${entry.name}: id is not the sha256 of its body`);
    if (!referenced.includes(entry.name)) problems.push(`operation ${entry.name} is in the manifest but no route references it`);
  }
  if (existsSync(dir)) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.graphql'))) {
      const name = file.slice(0, -'.graphql'.length);
      if (!referenced.includes(name)) problems.push(`operations/${file} is not referenced by any route (x-graphql-operation)`);
    }
  }
  if (serializeManifest(manifest) !== manifestText && problems.length === 0) {
    problems.push('the manifest is not formatted as the build writes it; run npm run build:manifest');
  }
  return problems;
}

/** Loads the committed manifest as name → entry, for the bridge's requests by hash. */
export function loadManifest(path: string): Map<string, ManifestOperation> {
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as PersistedQueryManifest;
  if (manifest.format !== 'apollo-persisted-query-manifest' || manifest.version !== 1) {
    throw new Error(`${path}: not an apollo-persisted-query-manifest version 1`);
  }
  return new Map(manifest.operations.map((op) => [op.name, op]));
}
