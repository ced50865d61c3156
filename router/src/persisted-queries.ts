import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** One operation of an Apollo persisted query manifest. */
export interface PersistedOperation {
  id: string;
  name?: string;
  type?: 'query' | 'mutation' | 'subscription';
  body: string;
}

/** `{ format: "apollo-persisted-query-manifest", version: 1, operations: [...] }` */
export interface PersistedQueryManifest {
  format: 'apollo-persisted-query-manifest';
  version: 1;
  operations: PersistedOperation[];
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Loads and merges manifests into a map id → body. Every id must be the sha256 of its body
 * (the id clients send as the APQ hash), so a manifest can never map a trusted id to
 * another document.
 */
export function loadPersistedQueryManifests(paths: string[]): Map<string, PersistedOperation> {
  const operations = new Map<string, PersistedOperation>();
  for (const path of paths) {
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as Partial<PersistedQueryManifest>;
    if (manifest.format !== 'apollo-persisted-query-manifest' || manifest.version !== 1 || !Array.isArray(manifest.operations)) {
      throw new Error(`${path}: not an apollo-persisted-query-manifest version 1`);
    }
    for (const operation of manifest.operations) {
      if (typeof operation.body !== 'string' || typeof operation.id !== 'string') throw new Error(`${path}: operation without id/body`);
      if (sha256Hex(operation.body) !== operation.id) {
        throw new Error(`${path}: operation ${operation.name ?? operation.id} has an id that is not the sha256 of its body`);
      }
      operations.set(operation.id, operation);
    }
  }
  return operations;
}

export type SafelistOutcome =
  | { ok: true; body: Record<string, unknown> }
  | { ok: false; message: string; code: 'PERSISTED_QUERY_NOT_FOUND' };

/**
 * Safelist mode: a request is run only when it names a manifest operation by id
 * (`extensions.persistedQuery.sha256Hash`) or sends the exact body of one. The router then
 * runs the manifest's body, never the client's text.
 */
export function applySafelist(request: Record<string, unknown>, safelist: ReadonlyMap<string, PersistedOperation>): SafelistOutcome {
  const extensions = request.extensions as { persistedQuery?: { sha256Hash?: unknown } } | undefined;
  const hash = extensions?.persistedQuery?.sha256Hash;
  const id = typeof hash === 'string' ? hash : typeof request.query === 'string' ? sha256Hex(request.query) : undefined;
  const operation = id ? safelist.get(id) : undefined;
  if (!operation) {
    return { ok: false, code: 'PERSISTED_QUERY_NOT_FOUND', message: 'Only operations in the persisted query safelist are accepted' };
  }
  return { ok: true, body: { ...request, query: operation.body } };
}

/**
 * The rule every transport applies to a request against the manifest operations: in safelist
 * mode (`enforce`, for non-admins) only a manifest operation runs (`applySafelist`); otherwise
 * a hash-only request for a manifest operation gets its body (pre-registered APQ), and any
 * other request passes unchanged.
 */
export function resolvePersistedQuery(
  request: Record<string, unknown>,
  operations: ReadonlyMap<string, PersistedOperation>,
  enforce: boolean,
): SafelistOutcome {
  if (enforce) return applySafelist(request, operations);
  const hash = (request.extensions as { persistedQuery?: { sha256Hash?: unknown } } | undefined)?.persistedQuery?.sha256Hash;
  const known = typeof hash === 'string' && request.query === undefined ? operations.get(hash) : undefined;
  return { ok: true, body: known ? { ...request, query: known.body } : request };
}
