import type { ValidateFunction } from 'ajv';
import { compileSpecSchema, createSpecAjv, loadSpec, matchRoute, resolveRef, routesOf } from '../src/index.ts';

export interface CheckedResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON (or the text when the response is not JSON). */
  // biome-ignore lint/suspicious/noExplicitAny: tests read the JSON answers by path; the contract schema already checked them
  body: any;
  /** `METHOD /template status`, for coverage accounting. */
  key: string;
}

/**
 * Calls the bridge and checks the answer against the contract: the status must be one the
 * operation documents, a JSON body must match that status's response schema, and the
 * response's documented headers must be there when required and match their schemas.
 */
export function createContractChecker(baseUrl: string) {
  const spec = loadSpec();
  const routes = routesOf(spec);
  const ajv = createSpecAjv(spec);
  const validators = new Map<string, ValidateFunction>();
  const seen = new Set<string>();

  function validatorFor(route: (typeof routes)[number], status: number): ValidateFunction | undefined {
    const key = `${route.pointer} ${status}`;
    if (!validators.has(key)) {
      const response = resolveRef<{ content?: Record<string, { schema?: unknown }> }>(spec, route.responses[String(status)] as never);
      const schema = response.content?.['application/json']?.schema;
      if (schema) validators.set(key, compileSpecSchema(ajv, schema));
    }
    return validators.get(key);
  }

  interface HeaderObject {
    required?: boolean;
    schema?: { type?: string };
  }

  /**
   * The response's documented headers: each one marked `required` must be present, and each
   * present one must match its schema (an integer header read as plain decimal).
   */
  function headerProblems(route: (typeof routes)[number], status: number, headers: Headers): string[] {
    const response = resolveRef<{ headers?: Record<string, HeaderObject | { $ref: string }> }>(
      spec,
      route.responses[String(status)] as never,
    );
    const problems: string[] = [];
    for (const [name, ref] of Object.entries(response.headers ?? {})) {
      const header = resolveRef<HeaderObject>(spec, ref);
      const value = headers.get(name);
      if (value === null) {
        if (header.required) problems.push(`${name} is required but missing`);
        continue;
      }
      const key = `${route.pointer} ${status} header ${name}`;
      if (!validators.has(key) && header.schema) validators.set(key, compileSpecSchema(ajv, header.schema));
      const validate = validators.get(key);
      const typed = header.schema?.type === 'integer' && /^[0-9]+$/.test(value) ? Number(value) : value;
      if (validate && !validate(typed)) problems.push(`${name}: ${JSON.stringify(value)} ${ajv.errorsText(validate.errors)}`);
    }
    return problems;
  }

  async function call(
    method: string,
    path: string,
    options: { body?: unknown; rawBody?: string; token?: string; headers?: Record<string, string> } = {},
  ): Promise<CheckedResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
      headers['content-type'] = 'application/json';
    const response = await fetch(`${baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await response.text();
    let parsed: unknown = text;
    if ((response.headers.get('content-type') ?? '').includes('application/json')) parsed = JSON.parse(text);

    const match = matchRoute(routes, method, new URL(path, 'http://x').pathname);
    if (match.kind !== 'found') {
      return { status: response.status, headers: response.headers, body: parsed, key: `${method} ${path} (no route)` };
    }
    const key = `${method} ${match.route.pathTemplate} ${response.status}`;
    seen.add(key);
    if (!(String(response.status) in match.route.responses)) {
      throw new Error(`${key}: status not documented for ${match.route.operationId}; body ${text.slice(0, 300)}`);
    }
    const validate = validatorFor(match.route, response.status);
    if (validate && !validate(parsed)) {
      throw new Error(`${key}: body does not match the contract: ${ajv.errorsText(validate.errors)}; body ${text.slice(0, 500)}`);
    }
    const badHeaders = headerProblems(match.route, response.status, response.headers);
    if (badHeaders.length > 0) throw new Error(`${key}: headers do not match the contract: ${badHeaders.join('; ')}`);
    return { status: response.status, headers: response.headers, body: parsed, key };
  }

  return { call, seen, routes };
}
