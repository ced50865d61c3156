import { staticPaths } from './bridge.ts';
import { matchRoute, type OpenApiDocument, resolveRef, routesOf } from './openapi-spec.ts';
import { operationMappings } from './operation-mappings.ts';

/**
 * Where the contract and the bridge disagree, one line per problem (empty when they agree):
 * a path the bridge serves that the contract does not document, a documented operation the
 * bridge cannot answer (no GraphQL operation and not a static path, or a GraphQL operation
 * without a REST mapping), and a mapping no route uses.
 */
export function routeCoverageProblems(spec: OpenApiDocument, served: string[] = staticPaths): string[] {
  const problems: string[] = [];
  const routes = routesOf(spec);
  for (const path of served) {
    if (matchRoute(routes, 'GET', path).kind !== 'found') problems.push(`GET ${path} is served but not documented in openapi.yaml`);
  }
  for (const route of routes) {
    const where = `${route.method} ${route.pathTemplate}`;
    if (route.graphqlOperation) {
      if (!operationMappings[route.graphqlOperation]) problems.push(`${where}: ${route.graphqlOperation} has no REST mapping`);
      continue;
    }
    // A static route: every concrete path it documents must be one the bridge serves.
    const concrete = route.paramNames.length === 0 ? [route.pathTemplate] : expandEnumPaths(spec, route);
    if (route.method !== 'GET' || concrete.length === 0) problems.push(`${where} names no x-graphql-operation and is not a static route`);
    for (const path of concrete) {
      if (!served.includes(path)) problems.push(`${where}: ${path} is documented but the bridge does not serve it`);
    }
  }
  const used = new Set(routes.map((r) => r.graphqlOperation).filter(Boolean));
  for (const name of Object.keys(operationMappings)) {
    if (!used.has(name)) problems.push(`operation mapping ${name} is not used by any route`);
  }
  return problems;
}

/** `/docs/{asset}` with `asset` an enum → one path per value; [] when a parameter is open-ended. */
function expandEnumPaths(spec: OpenApiDocument, route: ReturnType<typeof routesOf>[number]): string[] {
  let paths = [route.pathTemplate];
  for (const name of route.paramNames) {
    const parameter = route.parameters.find((p) => p.in === 'path' && p.name === name);
    const schema = parameter?.schema ? resolveRef<{ enum?: unknown[] }>(spec, parameter.schema) : undefined;
    if (!schema?.enum) return [];
    paths = paths.flatMap((path) => (schema.enum ?? []).map((value) => path.replace(`{${name}}`, String(value))));
  }
  return paths;
}
