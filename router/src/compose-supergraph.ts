import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import YAML from 'yaml';

/** One subgraph entry of `supergraph.yaml` (the rover config format). */
export interface SupergraphSubgraphConfig {
  name: string;
  routingUrl: string;
  /** Absolute path of the subgraph's SDL file. */
  schemaFile: string;
}

export interface SupergraphConfig {
  federationVersion: string;
  subgraphs: SupergraphSubgraphConfig[];
}

/**
 * Reads a rover-format `supergraph.yaml`:
 * `federation_version: =2.9.x` and `subgraphs: { name: { routing_url, schema: { file } } }`.
 * Schema file paths are resolved against the YAML file's folder, as rover does.
 */
export function readSupergraphConfig(path: string): SupergraphConfig {
  const raw = YAML.parse(readFileSync(path, 'utf8')) as {
    federation_version?: unknown;
    subgraphs?: Record<string, { routing_url?: unknown; schema?: { file?: unknown } }>;
  };
  if (!raw || typeof raw !== 'object' || !raw.subgraphs || typeof raw.subgraphs !== 'object') {
    throw new Error(`${path}: expected a "subgraphs" map`);
  }
  const base = dirname(resolve(path));
  const subgraphs = Object.entries(raw.subgraphs).map(([name, entry]) => {
    if (typeof entry?.routing_url !== 'string') throw new Error(`${path}: subgraphs.${name}.routing_url must be a string`);
    if (typeof entry.schema?.file !== 'string') throw new Error(`${path}: subgraphs.${name}.schema.file must be a string`);
    return { name, routingUrl: entry.routing_url, schemaFile: resolve(base, entry.schema.file) };
  });
  return { federationVersion: String(raw.federation_version ?? '=2.9.0'), subgraphs };
}

export type CompositionOutcome = { ok: true; supergraphSdl: string } | { ok: false; errors: string[] };

/** Composes subgraph SDLs (name, url, sdl) into a supergraph SDL, or readable error lines. */
export function composeSubgraphs(subgraphs: { name: string; url: string; sdl: string }[]): CompositionOutcome {
  const errors: string[] = [];
  const services = [];
  for (const subgraph of subgraphs) {
    try {
      services.push({ name: subgraph.name, url: subgraph.url, typeDefs: parse(subgraph.sdl) });
    } catch (error) {
      errors.push(`[${subgraph.name}] ${(error as Error).message}`);
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  const result = composeServices(services);
  if (result.errors) {
    return {
      ok: false,
      errors: result.errors.map((error) => {
        const code = (error.extensions?.code as string | undefined) ?? 'COMPOSITION_ERROR';
        return `${code}: ${error.message}`;
      }),
    };
  }
  return { ok: true, supergraphSdl: `${result.supergraphSdl.trimEnd()}\n` };
}

/** Composes everything `supergraph.yaml` lists, reading each schema file. */
export function composeFromConfig(configPath: string): CompositionOutcome {
  const config = readSupergraphConfig(configPath);
  const missing: string[] = [];
  const subgraphs = config.subgraphs.flatMap((s) => {
    try {
      return [{ name: s.name, url: s.routingUrl, sdl: readFileSync(s.schemaFile, 'utf8') }];
    } catch {
      missing.push(`[${s.name}] cannot read schema file ${s.schemaFile}`);
      return [];
    }
  });
  if (missing.length > 0) return { ok: false, errors: missing };
  return composeSubgraphs(subgraphs);
}
