import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

/** The bridge package's folder, where the contract, the operations and the manifest live. */
export const bridgeRoot = fileURLToPath(new URL('..', import.meta.url));
export const specPath = fileURLToPath(new URL('../openapi.yaml', import.meta.url));
export const operationsDir = fileURLToPath(new URL('../operations', import.meta.url));
export const manifestPath = fileURLToPath(new URL('../persisted-queries.json', import.meta.url));

export const httpMethods = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head'] as const;

/** The slice of an OpenAPI 3.1 document the bridge reads; the rest stays opaque. */
export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components?: Record<string, Record<string, unknown>>;
  [key: string]: unknown;
}

export interface ParameterObject {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Record<string, unknown>;
}

export interface OperationObject {
  operationId: string;
  'x-graphql-operation'?: string;
  parameters?: (ParameterObject | { $ref: string })[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: unknown }> } | { $ref: string };
  responses: Record<string, unknown>;
  security?: Record<string, string[]>[];
}

/** One operation of the contract, ready to match requests against. */
export interface ApiRoute {
  method: string;
  /** The OpenAPI path template, e.g. `/cards/{card_id}`. */
  pathTemplate: string;
  /** JSON pointer of the operation inside the document, for schema `$ref`s. */
  pointer: string;
  pattern: RegExp;
  paramNames: string[];
  operationId: string;
  /** The GraphQL operation (document name) this route runs, when it is an API route. */
  graphqlOperation?: string;
  parameters: ParameterObject[];
  /** The request body's JSON schema, when the operation takes one. */
  bodySchema?: unknown;
  bodyRequired: boolean;
  /** The first 2xx status the operation documents: what a success answers. */
  successStatus: number;
  /** Whether a bearer token is required (the document's or the operation's `security`). */
  requiresAuth: boolean;
  responses: Record<string, unknown>;
}

export function loadSpec(path: string = specPath): OpenApiDocument {
  return YAML.parse(readFileSync(path, 'utf8')) as OpenApiDocument;
}

export function escapePointer(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Follows a local `$ref` (`#/components/...`) to the object it names. */
export function resolveRef<T>(spec: OpenApiDocument, value: T | { $ref: string }): T {
  let current: unknown = value;
  for (let hops = 0; hops < 10 && current && typeof current === 'object' && '$ref' in current; hops++) {
    const ref = (current as { $ref: string }).$ref;
    if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported, got ${ref}`);
    current = ref
      .slice(2)
      .split('/')
      .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
      .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], spec);
    if (current === undefined) throw new Error(`unresolvable $ref ${ref}`);
  }
  return current as T;
}

function templateToPattern(template: string): { pattern: RegExp; paramNames: string[] } {
  const paramNames: string[] = [];
  const source = template
    .split('/')
    .map((segment) => {
      const param = /^\{([^}]+)\}$/.exec(segment);
      if (param?.[1]) {
        paramNames.push(param[1]);
        return '([^/]+)';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { pattern: new RegExp(`^${source}$`), paramNames };
}

/** Every operation of the document as a route. */
export function routesOf(spec: OpenApiDocument): ApiRoute[] {
  const routes: ApiRoute[] = [];
  const globalSecurity = (spec.security as Record<string, string[]>[] | undefined) ?? [];
  for (const [pathTemplate, item] of Object.entries(spec.paths)) {
    const shared = ((item.parameters as OperationObject['parameters']) ?? []).map((p) => resolveRef<ParameterObject>(spec, p));
    for (const method of httpMethods) {
      const operation = item[method] as OperationObject | undefined;
      if (!operation) continue;
      const { pattern, paramNames } = templateToPattern(pathTemplate);
      const parameters = [...shared, ...(operation.parameters ?? []).map((p) => resolveRef<ParameterObject>(spec, p))];
      const body = operation.requestBody ? resolveRef(spec, operation.requestBody) : undefined;
      const successStatus = Number(Object.keys(operation.responses).find((s) => /^2\d\d$/.test(s)) ?? 200);
      const security = operation.security ?? globalSecurity;
      routes.push({
        method: method.toUpperCase(),
        pathTemplate,
        pointer: `#/paths/${escapePointer(pathTemplate)}/${method}`,
        pattern,
        paramNames,
        operationId: operation.operationId,
        graphqlOperation: operation['x-graphql-operation'],
        parameters,
        bodySchema: body && 'content' in body ? body.content?.['application/json']?.schema : undefined,
        bodyRequired: Boolean(body && 'required' in body && body.required),
        successStatus,
        requiresAuth: security.some((requirement) => Object.keys(requirement).length > 0),
        responses: operation.responses,
      });
    }
  }
  return routes;
}

export type RouteMatch =
  | { kind: 'found'; route: ApiRoute; params: Record<string, string> }
  | { kind: 'method-not-allowed'; allowed: string[] }
  | { kind: 'not-found' };

/** Finds the route for a request path; static segments win over templated ones. */
export function matchRoute(routes: ApiRoute[], method: string, path: string): RouteMatch {
  const candidates = routes.filter((route) => route.pattern.test(path));
  if (candidates.length === 0) return { kind: 'not-found' };
  const byMethod = candidates.filter((route) => route.method === method);
  // `/docs` and `/docs/{asset}` never collide, but prefer the route with fewer parameters.
  const route = byMethod.sort((a, b) => a.paramNames.length - b.paramNames.length)[0];
  if (!route) return { kind: 'method-not-allowed', allowed: [...new Set(candidates.map((r) => r.method))] };
  const values = route.pattern.exec(path)?.slice(1) ?? [];
  const params: Record<string, string> = {};
  route.paramNames.forEach((name, i) => {
    params[name] = safeDecode(values[i] ?? '');
  });
  return { kind: 'found', route, params };
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    // A malformed escape stays as sent; the parameter's schema then refuses it.
    return value;
  }
}
