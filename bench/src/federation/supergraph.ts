import { composeSubgraphs } from '@ghostpay/router';
import { subgraphNames, subgraphSdl } from './subgraphs.ts';

/** Composes the benchmark's supergraph with routing URLs under `baseUrl` (one server, four paths). */
export function composeBenchSupergraph(baseUrl: string): string {
  const outcome = composeSubgraphs(subgraphNames.map((name) => ({ name, url: `${baseUrl}/${name}`, sdl: subgraphSdl[name] as string })));
  if (!outcome.ok) throw new Error(`benchmark supergraph does not compose:\n${outcome.errors.join('\n')}`);
  return outcome.supergraphSdl;
}
