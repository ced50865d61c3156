import type { FieldProblem } from '@ghostpay/platform';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsImport from 'ajv-formats';
import { type ApiRoute, type OpenApiDocument, resolveRef } from './openapi-spec.ts';

type FormatsPlugin = (ajv: Ajv2020) => Ajv2020;
// ajv-formats is CommonJS: under Node's ESM loader the default import is the plugin itself.
const addFormats = ((addFormatsImport as unknown as { default?: FormatsPlugin }).default ??
  (addFormatsImport as unknown as FormatsPlugin)) as FormatsPlugin;

/** The key the whole OpenAPI document is registered under, so its `$ref`s resolve. */
const specKey = 'openapi.json';

/** What a request carries, before validation. */
export interface RawRequestInput {
  params: Record<string, string>;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body, or undefined when there was none. */
  body: unknown;
  /** Paths of the body's numbers written with a fraction or an exponent (`scanJsonText`). */
  nonIntegerLiterals?: string[] | undefined;
}

/** A request the contract accepts: parameters coerced to their schema types. */
export interface ValidatedRequest {
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  /** Header parameters by their name in the contract (e.g. `Idempotency-Key`). */
  headers: Record<string, string>;
  body: unknown;
}

export type RequestCheck = { ok: true; request: ValidatedRequest } | { ok: false; problems: FieldProblem[] };

/** Rewrites the document's local `$ref`s so they resolve against the registered document. */
function anchorRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(anchorRefs);
  if (!value || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [
      key,
      key === '$ref' && typeof inner === 'string' && inner.startsWith('#') ? `${specKey}${inner}` : anchorRefs(inner),
    ]),
  );
}

/** An Ajv (JSON Schema 2020-12, as OpenAPI 3.1 uses) that knows the whole document. */
export function createSpecAjv(spec: OpenApiDocument, options: { coerceTypes?: boolean } = {}): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: false, coerceTypes: options.coerceTypes ?? false, useDefaults: true });
  addFormats(ajv);
  // The document is not itself a schema; only its schema objects are reached, through $refs.
  ajv.addSchema(spec as object, specKey, undefined, false);
  return ajv;
}

/** Compiles a schema object taken from the document (its `$ref`s stay valid). */
export function compileSpecSchema(ajv: Ajv2020, schema: unknown): ValidateFunction {
  return ajv.compile(anchorRefs(schema) as object);
}

function pathOf(base: string, error: ErrorObject): string {
  const segments = error.instancePath.split('/').filter(Boolean);
  if (error.keyword === 'required') segments.push(String(error.params.missingProperty));
  if (error.keyword === 'additionalProperties') segments.push(String(error.params.additionalProperty));
  const inner = segments.map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~')).join('.');
  return [base, inner].filter(Boolean).join('.');
}

function messageOf(error: ErrorObject): string {
  if (error.keyword === 'required') return 'is required';
  if (error.keyword === 'additionalProperties') return 'is not a known field';
  if (error.keyword === 'enum') return `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`;
  return error.message ?? 'is invalid';
}

/** One problem per field (the first reason), in the order Ajv found them. */
export function problemsOf(errors: ErrorObject[] | null | undefined, base = ''): FieldProblem[] {
  const byField = new Map<string, string>();
  for (const error of errors ?? []) {
    // oneOf/anyOf report their branches' errors too; the branch errors name the field better.
    if (error.keyword === 'oneOf' || error.keyword === 'anyOf') continue;
    const field = pathOf(base, error);
    if (!byField.has(field)) byField.set(field, messageOf(error));
  }
  return [...byField].map(([field, message]) => ({ field, message }));
}

// 12+ digits, single spaces or dashes allowed between them: how card numbers are written.
const cardNumberLike = /\d(?:[ -]?\d){11,}/g;

/**
 * A field name the client chose (an unknown body field or query parameter, a repeated key)
 * with card-number-like digit runs masked: 400s list such names, and a PAN pasted as a key
 * must not come back in the answer, nor reach the client's logs from there.
 */
export function maskCardNumbers(field: string): string {
  return field.replace(cardNumberLike, '[redacted]');
}

interface CompiledRoute {
  path: ValidateFunction;
  query: ValidateFunction;
  headers: ValidateFunction;
  headerNames: string[];
  /** Path and query parameters whose schema is numeric, by name. */
  numeric: Map<string, 'integer' | 'number'>;
  body?: ValidateFunction;
  /** Dotted paths of the body's integer fields (`amount`), which must be written as integers. */
  integerBodyFields: Set<string>;
}

// Decimal digits only: Ajv's type coercion (`+value`) would also take `0x10`, `1e1`, ` 5 `.
const decimalInteger = /^-?[0-9]+$/;
const decimalNumber = /^-?[0-9]+(\.[0-9]+)?$/;

/**
 * Path and query parameters arrive as text. A numeric one written in plain decimal becomes its
 * number; any other text is left as it is, for the schema to refuse (`must be integer`).
 */
function coerceNumeric(values: Record<string, unknown>, numeric: Map<string, 'integer' | 'number'>) {
  for (const [name, kind] of numeric) {
    const value = values[name];
    if (typeof value === 'string' && (kind === 'integer' ? decimalInteger : decimalNumber).test(value)) values[name] = Number(value);
  }
}

function numericParameters(spec: OpenApiDocument, parameters: ApiRoute['parameters']): Map<string, 'integer' | 'number'> {
  const numeric = new Map<string, 'integer' | 'number'>();
  for (const parameter of parameters) {
    if (parameter.in !== 'path' && parameter.in !== 'query') continue;
    const type = parameter.schema ? resolveRef<Record<string, unknown>>(spec, parameter.schema).type : undefined;
    if (type === 'integer' || type === 'number') numeric.set(parameter.name, type);
  }
  return numeric;
}

/**
 * The dotted paths of the integer properties of a body schema (nested objects included). JSON
 * Schema's `integer` takes any number with a zero fraction, so `1.0`, `1e2` and
 * `1.0000000000000001` (which parses to 1) pass it: these fields are also checked for how their
 * number was written.
 */
function integerFields(spec: OpenApiDocument, schema: unknown, prefix = '', found = new Set<string>(), depth = 0): Set<string> {
  if (depth > 8 || !schema || typeof schema !== 'object') return found;
  const resolved = resolveRef<Record<string, unknown>>(spec, schema as Record<string, unknown>);
  const properties = resolved.properties as Record<string, unknown> | undefined;
  for (const [name, property] of Object.entries(properties ?? {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    const type = resolveRef<Record<string, unknown>>(spec, property as Record<string, unknown>).type;
    if (type === 'integer') found.add(path);
    else integerFields(spec, property, path, found, depth + 1);
  }
  return found;
}

/** Problems about the body as a whole (`null`, `[]` where an object goes) name it `body`. */
function bodyProblems(problems: FieldProblem[]): FieldProblem[] {
  return problems.map((p) =>
    p.field === '' ? { field: 'body', message: p.message === 'must be object' ? 'must be a JSON object' : p.message } : p,
  );
}

function objectSchema(parameters: ApiRoute['parameters'], closed: boolean) {
  return {
    type: 'object',
    properties: Object.fromEntries(parameters.map((p) => [p.name, p.schema ?? {}])),
    required: parameters.filter((p) => p.required || p.in === 'path').map((p) => p.name),
    additionalProperties: !closed,
  };
}

/**
 * Validates requests against the contract before anything reaches the router: path and
 * query parameters (numeric ones parsed as plain decimal; unknown query parameters are
 * refused), header parameters, and the JSON body. Every bad field is reported, not just the first.
 */
export function createRequestValidator(spec: OpenApiDocument, routes: ApiRoute[]) {
  const ajv = createSpecAjv(spec);
  const compiled = new Map<ApiRoute, CompiledRoute>();
  for (const route of routes) {
    const inPlace = (where: string) => route.parameters.filter((p) => p.in === where);
    compiled.set(route, {
      path: compileSpecSchema(ajv, objectSchema(inPlace('path'), false)),
      query: compileSpecSchema(ajv, objectSchema(inPlace('query'), true)),
      headers: compileSpecSchema(ajv, objectSchema(inPlace('header'), false)),
      headerNames: inPlace('header').map((p) => p.name),
      numeric: numericParameters(spec, route.parameters),
      body: route.bodySchema ? compileSpecSchema(ajv, route.bodySchema) : undefined,
      integerBodyFields: integerFields(spec, route.bodySchema),
    });
  }

  return function validateRequest(route: ApiRoute, input: RawRequestInput): RequestCheck {
    const validators = compiled.get(route);
    if (!validators) throw new Error(`route ${route.operationId} was not compiled`);
    const problems: FieldProblem[] = [];

    const params: Record<string, unknown> = { ...input.params };
    coerceNumeric(params, validators.numeric);
    if (!validators.path(params)) problems.push(...problemsOf(validators.path.errors));

    // No prototype: `?__proto__=x` must land as a parameter (and be refused as unknown), not
    // as an assignment to the object's prototype that drops it silently.
    const query: Record<string, unknown> = Object.create(null);
    for (const name of new Set(input.query.keys())) {
      const values = input.query.getAll(name);
      if (values.length > 1) problems.push({ field: name, message: 'must be given once' });
      query[name] = values[0];
    }
    coerceNumeric(query, validators.numeric);
    if (!validators.query(query)) problems.push(...problemsOf(validators.query.errors));

    const headers: Record<string, string> = {};
    for (const name of validators.headerNames) {
      const value = input.headers[name.toLowerCase()];
      if (typeof value === 'string') headers[name] = value;
      else if (Array.isArray(value)) problems.push({ field: name, message: 'must be given once' });
    }
    if (!validators.headers(headers)) problems.push(...problemsOf(validators.headers.errors));

    let body = input.body;
    if (validators.body) {
      if (body === undefined && route.bodyRequired) problems.push({ field: 'body', message: 'a JSON body is required' });
      else if (body === undefined) body = {};
      else if (!validators.body(body)) problems.push(...bodyProblems(problemsOf(validators.body.errors)));
      for (const field of input.nonIntegerLiterals ?? []) {
        // The message Ajv gives `1.5`: to the client, `1.0` is the same mistake.
        if (validators.integerBodyFields.has(field) && !problems.some((p) => p.field === field)) {
          problems.push({ field, message: 'must be integer' });
        }
      }
    }

    if (problems.length > 0) return { ok: false, problems: problems.map((p) => ({ ...p, field: maskCardNumbers(p.field) })) };
    return { ok: true, request: { params, query, headers, body } };
  };
}
