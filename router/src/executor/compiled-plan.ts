import { GraphQLError, type GraphQLSchema } from 'graphql';
import { getOwn, hasOwn, isPrototypeName, setOwn } from './own-properties.ts';
import type { PlanNode, PlanSelection, QueryPlanLike } from './plan-types.ts';
import { createSubtypeTester } from './response-shape.ts';

/**
 * A query plan compiled once for execution: each fetch carries its request body prefix
 * (query and operation name already serialized), the list of variables it forwards and a
 * representation builder for entity fetches. Executing it merges subgraph answers in place
 * into one result tree, exactly as @apollo/gateway's `executeQueryPlan` does before shaping.
 */

/** What a subgraph answered (a GraphQL response body). */
export interface SubgraphResponse {
  data?: Record<string, unknown> | null;
  errors?: ReadonlyArray<{ message?: string; path?: readonly (string | number)[]; extensions?: Record<string, unknown> }>;
  extensions?: Record<string, unknown>;
}

/** One subgraph request: `prefix + JSON.stringify(variables) + "}"` is its serialized body. */
export interface SubgraphRequest {
  serviceName: string;
  /** `{"query":…,"operationName":…,"variables":` — serialized once per plan. */
  prefix: string;
  query: string;
  operationName: string | undefined;
  /** The variables as an object, or undefined when only `variablesJson` was built. */
  variables: Record<string, unknown> | undefined;
  /** The variables already serialized, when the executor had them as JSON anyway (representations). */
  variablesJson?: string;
}

/** Sends one request to a subgraph; throws when the subgraph does not answer. */
export type SubgraphSender = (request: SubgraphRequest) => Promise<SubgraphResponse>;

type RepresentationBuilder = (entity: Record<string, unknown>) => Record<string, unknown> | null;

type CompiledNode =
  | {
      kind: 'fetch';
      serviceName: string;
      query: string;
      operationName: string | undefined;
      prefix: string;
      /** The operation variables the fetch forwards; `prototypeName`: see own-properties.ts. */
      variableUsages: { name: string; prototypeName: boolean }[];
      requires?: RepresentationBuilder;
      flatRequires?: FlatRequires;
      /**
       * Set when another fetch of the same query plan sends the same query to the same subgraph
       * (only the generated operation name differs): such fetches with the same variables share
       * one request per execution (`sendShared`). Undefined for every other fetch.
       */
      shareKey?: string;
    }
  | { kind: 'sequence'; nodes: CompiledNode[] }
  | { kind: 'parallel'; nodes: CompiledNode[] }
  | { kind: 'flatten'; path: (string | number)[]; node: CompiledNode }
  | { kind: 'condition'; variable: string; ifClause?: CompiledNode; elseClause?: CompiledNode };

export interface CompiledPlan {
  readonly root?: CompiledNode;
}

/** Why a plan is left to the gateway's own executor (features this executor does not implement). */
export class UnsupportedPlanError extends Error {}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A `requires` selection with each field's response name checked once against Object.prototype. */
type RequiredSelection =
  | { kind: 'Field'; responseName: string; prototypeName: boolean; selections?: RequiredSelection[] }
  | { kind: 'InlineFragment'; typeCondition?: string; selections: RequiredSelection[] };

function requiredSelections(selections: PlanSelection[]): RequiredSelection[] {
  return selections.map((selection) => {
    if (selection.kind === 'InlineFragment') {
      return { kind: 'InlineFragment', typeCondition: selection.typeCondition, selections: requiredSelections(selection.selections) };
    }
    const responseName = selection.alias ?? selection.name;
    return {
      kind: 'Field',
      responseName,
      prototypeName: isPrototypeName(responseName),
      selections: selection.selections ? requiredSelections(selection.selections) : undefined,
    };
  });
}

/** The gateway's `executeSelectionSet` over a `requires` selection, compiled into a closure. */
function compileRepresentation(
  selections: PlanSelection[],
  subtype: (condition: string, typeName: string) => boolean,
): RepresentationBuilder {
  const build = (source: unknown, set: RequiredSelection[]): Record<string, unknown> | null => {
    if (source === null) return null;
    const object = source as Record<string, unknown>;
    const result: Record<string, unknown> = {};
    for (const selection of set) {
      if (selection.kind === 'Field') {
        const responseName = selection.responseName;
        if (!hasOwn.call(object, responseName) || object[responseName] === undefined) return null;
        const value = object[responseName];
        const sub = selection.selections;
        const built = Array.isArray(value) ? value.map((v) => (sub ? build(v, sub) : v)) : sub ? build(value, sub) : value;
        if (selection.prototypeName) setOwn(result, responseName, built);
        else result[responseName] = built;
      } else {
        if (!selection.typeCondition || !object) continue;
        const typename = object.__typename;
        if (typeof typename === 'string' && typename && subtype(selection.typeCondition, typename)) {
          mergeInto(result, build(object, selection.selections));
        }
      }
    }
    return result;
  };
  const compiled = requiredSelections(selections);
  return (entity) => build(entity, compiled);
}

/** One inline fragment of a flat `requires`: the representation of an entity of a matching type. */
interface FlatFragment {
  hasTypename: boolean;
  /** The fields in selection order, with their `"name":` JSON prefix. */
  fields: { name: string; prefix: string }[];
  /** The fields other than __typename: with the typename, they tell representations apart. */
  valueFields: string[];
}

/**
 * For `requires` made of inline fragments of leaf fields (`... on Product { __typename upc }`,
 * nearly every entity fetch): representations are told apart by their values and written as
 * JSON directly, with the same keys, order and values as JSON.stringify of the object
 * builder's result.
 */
interface FlatRequires {
  /**
   * The fragment an entity of this type uses: null when it sends no representation (no
   * fragment matches, or the match selects no __typename), undefined when two fragments match
   * (the object builder merges them).
   */
  fragmentFor(typename: string): FlatFragment | null | undefined;
  /** The representation's JSON, or null when a field is missing (such an entity is not sent). */
  serialize(entity: Record<string, unknown>, fragment: FlatFragment): string | null;
}

function compileFlatRequires(
  selections: PlanSelection[],
  subtype: (condition: string, typeName: string) => boolean,
): FlatRequires | undefined {
  const fragments: (FlatFragment & { condition: string })[] = [];
  for (const selection of selections) {
    if (selection.kind !== 'InlineFragment' || !selection.typeCondition) return undefined;
    const fields: { name: string; prefix: string }[] = [];
    for (const field of selection.selections) {
      if (field.kind !== 'Field' || field.selections) return undefined;
      const name = field.alias ?? field.name;
      fields.push({ name, prefix: `${JSON.stringify(name)}:` });
    }
    fragments.push({
      condition: selection.typeCondition,
      hasTypename: fields.some((f) => f.name === '__typename'),
      fields,
      valueFields: fields.map((f) => f.name).filter((name) => name !== '__typename'),
    });
  }
  const byType = new Map<string, FlatFragment | null | undefined>();
  return {
    fragmentFor(typename) {
      if (byType.has(typename)) return byType.get(typename);
      let match: FlatFragment | null | undefined = null;
      for (const fragment of fragments) {
        if (!subtype(fragment.condition, typename)) continue;
        if (match) {
          match = undefined;
          break;
        }
        match = fragment;
      }
      // Like the gateway, a representation without __typename is not sent.
      if (match && !match.hasTypename) match = null;
      byType.set(typename, match);
      return match;
    },
    serialize(entity, fragment) {
      let json = '{';
      for (let i = 0; i < fragment.fields.length; i++) {
        const field = fragment.fields[i] as { name: string; prefix: string };
        if (!hasOwn.call(entity, field.name)) return null;
        const value = entity[field.name];
        if (value === undefined) return null;
        json += `${i ? ',' : ''}${field.prefix}${JSON.stringify(value)}`;
      }
      return `${json}}`;
    },
  };
}

/**
 * The distinct representations of one entity fetch, in first-seen order. Flat representations
 * whose values are all scalars are found by their values (a map per field, under the
 * typename), so an entity repeated a hundred times costs map lookups, not a JSON string each;
 * the rest by their JSON text. Two representations share a slot exactly when their JSON is
 * equal: map keys compare like JSON does for the values JSON.parse produces (1 and "1" differ).
 */
class RepresentationIndex {
  readonly json: string[] = [];
  private readonly byValues = new Map<unknown, unknown>();
  private readonly byJson = new Map<string, number>();

  /** The slot of a flat representation: -1 when the entity sends none, undefined when a value is an object (use `slotOfJson`). */
  slotOfFlat(entity: Record<string, unknown>, typename: string, fragment: FlatFragment, flat: FlatRequires): number | undefined {
    let level = this.byValues;
    let key: unknown = typename;
    for (const name of fragment.valueFields) {
      if (!hasOwn.call(entity, name)) return -1;
      const value = entity[name];
      if (value === undefined) return -1;
      if (value !== null && typeof value === 'object') return undefined;
      let next = level.get(key) as Map<unknown, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(key, next);
      }
      level = next;
      key = value;
    }
    const slot = level.get(key) as number | undefined;
    if (slot !== undefined) return slot;
    const json = flat.serialize(entity, fragment);
    if (json === null) return -1;
    level.set(key, this.json.length);
    this.json.push(json);
    return this.json.length - 1;
  }

  slotOfJson(json: string): number {
    let slot = this.byJson.get(json);
    if (slot === undefined) {
      slot = this.json.length;
      this.byJson.set(json, slot);
      this.json.push(json);
    }
    return slot;
  }
}

/**
 * The fetch's query without its generated operation name (`query TestQuery__products__6(…){…}`
 * → `query(…){…}`): what decides, with the service and the variables, what the subgraph answers.
 */
function namelessQuery(fetch: Extract<PlanNode, { kind: 'Fetch' }>): string | undefined {
  if (!fetch.operationName) return fetch.operation;
  const head = `query ${fetch.operationName}`;
  if (!fetch.operation.startsWith(head) || /[_0-9A-Za-z]/.test(fetch.operation.charAt(head.length))) return undefined;
  return `query${fetch.operation.slice(head.length)}`;
}

export function compilePlan(plan: QueryPlanLike, supergraphSchema: GraphQLSchema): CompiledPlan {
  const subtype = createSubtypeTester(supergraphSchema);
  /** Every fetch with its service and nameless query, to find the ones that send the same query. */
  const fetches: { node: Extract<CompiledNode, { kind: 'fetch' }>; key: string | undefined }[] = [];
  let readOnly = true;
  const compile = (node: PlanNode): CompiledNode => {
    switch (node.kind) {
      case 'Fetch': {
        if (node.inputRewrites?.length || node.outputRewrites?.length || node.contextRewrites?.length) {
          throw new UnsupportedPlanError('fetch with data rewrites (interface objects, contexts)');
        }
        const head = `{"query":${JSON.stringify(node.operation)}${node.operationName ? `,"operationName":${JSON.stringify(node.operationName)}` : ''},"variables":`;
        const compiled: Extract<CompiledNode, { kind: 'fetch' }> = {
          kind: 'fetch',
          serviceName: node.serviceName,
          query: node.operation,
          operationName: node.operationName,
          prefix: head,
          variableUsages: (node.variableUsages ?? []).map((name) => ({ name, prototypeName: isPrototypeName(name) })),
          requires: node.requires ? compileRepresentation(node.requires, subtype) : undefined,
          flatRequires: node.requires ? compileFlatRequires(node.requires, subtype) : undefined,
          shareKey: undefined,
        };
        if (node.operationKind !== 'query') readOnly = false;
        const nameless = namelessQuery(node);
        fetches.push({ node: compiled, key: nameless === undefined ? undefined : `${node.serviceName}\u0000${nameless}` });
        return compiled;
      }
      case 'Sequence':
        return { kind: 'sequence', nodes: node.nodes.map(compile) };
      case 'Parallel':
        return { kind: 'parallel', nodes: node.nodes.map(compile) };
      case 'Flatten':
        return { kind: 'flatten', path: node.path, node: compile(node.node) };
      case 'Condition':
        return {
          kind: 'condition',
          variable: node.condition,
          ifClause: node.ifClause ? compile(node.ifClause) : undefined,
          elseClause: node.elseClause ? compile(node.elseClause) : undefined,
        };
      default:
        throw new UnsupportedPlanError(`${node.kind} nodes`);
    }
  };
  const root = plan.node ? compile(plan.node) : undefined;
  // Only in a plan that reads: in a mutation's plan the same query before and after a mutation
  // field may rightly answer differently.
  if (readOnly) {
    const count = new Map<string, number>();
    for (const { key } of fetches) if (key !== undefined) count.set(key, (count.get(key) ?? 0) + 1);
    for (const { node, key } of fetches) if (key !== undefined && (count.get(key) ?? 0) > 1) node.shareKey = key;
  }
  return { root };
}

/**
 * deepMerge of @apollo/gateway: objects recursively, same-length arrays element-wise, anything
 * else replaced. The keys are the subgraph's: only own keys are read, and a key the target has
 * only through Object.prototype (`__proto__`, `toString`, …) is created as an own property,
 * as the gateway's `defineOwn` does. Subgraph JSON never holds a function, so a key whose value
 * in the target is a function (or the `__proto__` key) is the only one that needs the own check.
 * `for…in` with a hasOwnProperty test on the same key is a map check for V8 (an enum-cache
 * fast path); Object.keys would allocate an array per merged object.
 */
export function mergeInto(target: Record<string, unknown>, source: Record<string, unknown> | null | undefined): void {
  if (source === undefined || source === null) return;
  for (const key in source) {
    if (!hasOwn.call(source, key)) continue;
    const value = source[key];
    if (value === undefined) continue;
    const existing = target[key];
    if (existing !== undefined && (typeof existing === 'function' || key === '__proto__') && !hasOwn.call(target, key)) {
      setOwn(target, key, value);
      continue;
    }
    if (existing && isPlainObject(value)) {
      if (typeof existing !== 'object') mergeIntoPrimitive(existing, value);
      mergeInto(existing as Record<string, unknown>, value);
    } else if (Array.isArray(value) && Array.isArray(existing) && value.length === existing.length) {
      for (let i = 0; i < value.length; i++) {
        const s = value[i];
        const t = existing[i];
        if (isPlainObject(t) && isPlainObject(s)) mergeInto(t, s);
        else existing[i] = s;
      }
    } else {
      target[key] = value;
    }
  }
}

/**
 * An object merged into a string, number or boolean (a subgraph answered an object where the
 * merged data holds a scalar: a custom scalar aliased like a key field, a field aliased
 * `__typename`). The gateway's deepMerge fails the fetch there with the TypeError of its
 * `key in target` check on the first key; the same error, rather than the one an assignment
 * to a primitive gives.
 */
function mergeIntoPrimitive(target: unknown, source: Record<string, unknown>): void {
  for (const key of Object.keys(source)) {
    if (source[key] !== undefined) throw new TypeError(`Cannot use 'in' operator to search for '${key}' in ${target}`);
  }
}

/**
 * The gateway's flattenResultsAtPath: the value at `path`, where each `@` maps over a list and
 * the lists it yields are flattened into one. Built as one array (no array per list level).
 */
export function flattenAt(data: unknown, path: readonly (string | number)[]): unknown {
  let value = data;
  let index = 0;
  for (; index < path.length && path[index] !== '@'; index++) {
    if (value === undefined || value === null) return value;
    if (Array.isArray(value)) unexpectedArray(path[index]);
    value = hasOwn.call(value, path[index] as string) ? (value as Record<string, unknown>)[path[index] as string] : undefined;
  }
  if (index === path.length || value === undefined || value === null) return value;
  if (!Array.isArray(value)) notAList();
  const out: unknown[] = [];
  for (const element of value) pushFlattened(element, path, index + 1, out);
  return out;
}

/*
 * Data that does not have the plan's shape at a flatten path (a field aliased like one the
 * plan walks through, `__typename` or a key field): the gateway's flattenResultsAtPath fails
 * the whole request there, with these errors (its assertion, and `value.flatMap` on a value
 * that is not a list). Iterating a string as a list, or reading a field of a list, would go on
 * with made-up entities instead.
 */
function unexpectedArray(element: string | number | undefined): never {
  throw new Error(`Unexpected array in result for path element ${element}`);
}

function notAList(): never {
  throw new TypeError('value.flatMap is not a function');
}

/** Adds what the value at `path[index…]` contributes under an `@`: the elements of a list, anything else as one. */
function pushFlattened(data: unknown, path: readonly (string | number)[], start: number, out: unknown[]): void {
  let value = data;
  let index = start;
  for (; index < path.length && path[index] !== '@'; index++) {
    if (value === undefined || value === null) {
      out.push(value);
      return;
    }
    if (Array.isArray(value)) unexpectedArray(path[index]);
    value = hasOwn.call(value, path[index] as string) ? (value as Record<string, unknown>)[path[index] as string] : undefined;
  }
  if (index === path.length) {
    if (Array.isArray(value)) for (const element of value) out.push(element);
    else out.push(value);
  } else if (value === undefined || value === null) {
    out.push(value);
  } else {
    if (!Array.isArray(value)) notAList();
    for (const element of value) pushFlattened(element, path, index + 1, out);
  }
}

/** Every concrete path to the entities at `path` (the gateway's generateHydratedPaths), for mapping `_entities` errors. */
function hydratedPaths(parent: (string | number)[], path: readonly (string | number)[], data: unknown, out: (string | number)[][]) {
  if (data === null || data === undefined) return;
  const head = path[0];
  if (head === undefined) {
    out.push(parent.slice());
  } else if (head === '@') {
    (data as unknown[]).forEach((value, i) => {
      parent.push(i);
      hydratedPaths(parent, path.slice(1), value, out);
      parent.pop();
    });
  } else if (Array.isArray(data)) {
    data.forEach((value, i) => {
      parent.push(i);
      hydratedPaths(parent, path, value, out);
      parent.pop();
    });
  } else if (hasOwn.call(data, head)) {
    parent.push(head);
    hydratedPaths(parent, path.slice(1), (data as Record<string, unknown>)[head as string], out);
    parent.pop();
  }
}

interface Cursor {
  path: (string | number)[];
  data: unknown;
}

export interface PlanRun {
  variables: Record<string, unknown> | undefined;
  /** Operation variable defaults, for Condition nodes. */
  defaults: Record<string, unknown>;
  send: SubgraphSender;
  errors: GraphQLError[];
  result: Record<string, unknown>;
  /** The requests of fetches with a `shareKey`, by key and variables (created on first use). */
  shared?: Map<string, SharedRequest>;
}

/** One request answering every fetch of an execution that sends the same query with the same variables. */
interface SharedRequest {
  /** The answer, and its JSON text taken before anyone merged it (the others get their own copy). */
  answer: Promise<{ response: SubgraphResponse; text: string }>;
  /** The first fetch to read the answer takes the parsed object itself. */
  taken: boolean;
}

/**
 * Sends a fetch's request, or, for a fetch with a `shareKey`, shares one request among the
 * fetches of this execution that send the same query to the same subgraph with the same
 * variables (TestQuery asks the products subgraph for `name price weight` of the same product at
 * three paths). Same caller, same query, same variables: the subgraph's answer is the one it
 * would have given each. Each fetch merges its own copy of it (merging puts the answer's objects
 * into the result tree, and later fetches write into them), and a failure fails each of them,
 * as separate requests failing would.
 */
function sendFetch(run: PlanRun, fetch: Extract<CompiledNode, { kind: 'fetch' }>, request: SubgraphRequest): Promise<SubgraphResponse> {
  const shareKey = fetch.shareKey;
  if (shareKey === undefined) return run.send(request);
  return sendShared(run, `${shareKey}\u0000${request.variablesJson ?? JSON.stringify(request.variables)}`, request);
}

async function sendShared(run: PlanRun, key: string, request: SubgraphRequest): Promise<SubgraphResponse> {
  run.shared ??= new Map();
  let shared = run.shared.get(key);
  if (!shared) {
    shared = { answer: run.send(request).then((response) => ({ response, text: JSON.stringify(response) })), taken: false };
    run.shared.set(key, shared);
  }
  const { response, text } = await shared.answer;
  if (!shared.taken) {
    shared.taken = true;
    return response;
  }
  return JSON.parse(text) as SubgraphResponse;
}

/** Runs the compiled plan; subgraph data lands in `run.result`, subgraph errors in `run.errors`. */
export async function executeCompiledPlan(plan: CompiledPlan, run: PlanRun): Promise<void> {
  if (plan.root) await executeNode(run, plan.root, { path: [], data: run.result });
}

async function executeNode(run: PlanRun, node: CompiledNode, cursor: Cursor): Promise<void> {
  switch (node.kind) {
    case 'sequence':
      for (const child of node.nodes) await executeNode(run, child, cursor);
      return;
    case 'parallel':
      await Promise.all(node.nodes.map((child) => executeNode(run, child, cursor)));
      return;
    case 'flatten': {
      const data = flattenAt(cursor.data, node.path);
      if (data === undefined || data === null) return;
      await executeNode(run, node.node, { path: cursor.path.concat(node.path), data });
      return;
    }
    case 'condition': {
      const provided = run.variables ? getOwn(run.variables, node.variable) : undefined;
      const value = provided !== undefined ? provided : getOwn(run.defaults, node.variable);
      // The planner's evaluateCondition: a defaulted nullable variable sent as null fails the
      // whole request (thrown, not a fetch error), before any later fetch is sent.
      if (value === undefined) throw new Error(`Missing value for variable $${node.variable} (and no default found)`);
      if (typeof value !== 'boolean') throw new Error(`Invalid non-boolean value ${value} for Boolean! variable $${node.variable}`);
      const branch = value ? node.ifClause : node.elseClause;
      if (branch) await executeNode(run, branch, cursor);
      return;
    }
    case 'fetch':
      try {
        await executeFetch(run, node, cursor);
      } catch (error) {
        run.errors.push(
          error instanceof GraphQLError ? error : new GraphQLError((error as Error).message, { originalError: error as Error }),
        );
      }
  }
}

async function executeFetch(run: PlanRun, fetch: Extract<CompiledNode, { kind: 'fetch' }>, cursor: Cursor): Promise<void> {
  const entities: Record<string, unknown>[] = [];
  if (Array.isArray(cursor.data)) {
    for (const e of cursor.data) if (e !== null && e !== undefined) entities.push(e as Record<string, unknown>);
  } else {
    entities.push(cursor.data as Record<string, unknown>);
  }
  if (entities.length === 0) return;
  let variables: Record<string, unknown> | undefined;
  for (const { name, prototypeName } of fetch.variableUsages) {
    const value = run.variables && hasOwn.call(run.variables, name) ? run.variables[name] : undefined;
    if (value === undefined) continue;
    variables ??= {};
    if (prototypeName) setOwn(variables, name, value);
    else variables[name] = value;
  }

  if (!fetch.requires) {
    const response = await sendFetch(run, fetch, {
      serviceName: fetch.serviceName,
      prefix: fetch.prefix,
      query: fetch.query,
      operationName: fetch.operationName,
      variables: variables ?? {},
    });
    collectErrors(run, fetch, cursor, response);
    const data = response.data;
    for (const entity of entities) mergeInto(entity, data);
    return;
  }

  // Identical representations are sent once (like Apollo Router and Hive Gateway do): deep
  // plans repeat the same entity many times (TestQuery sends one product 96 times). Each answer
  // is merged into every entity that asked for it, and errors are repeated for each of them, so
  // the client sees what the gateway's one-per-entity requests would have given.
  const index = new RepresentationIndex();
  /** Per representation the gateway would send: its entity, and its slot among the unique ones. */
  const owners: number[] = [];
  const slots: number[] = [];
  const flat = fetch.flatRequires;
  for (let i = 0; i < entities.length; i++) {
    const entity = entities[i] as Record<string, unknown>;
    let slot: number | undefined;
    if (flat) {
      const typename = entity.__typename;
      // An entity without a typename matches no fragment: no representation.
      if (typeof typename !== 'string' || !typename) continue;
      const fragment = flat.fragmentFor(typename);
      if (fragment === null) continue;
      if (fragment) {
        slot = index.slotOfFlat(entity, typename, fragment, flat);
        if (slot === undefined) {
          const json = flat.serialize(entity, fragment);
          slot = json === null ? -1 : index.slotOfJson(json);
        }
      }
    }
    if (slot === undefined) {
      const representation = fetch.requires(entity);
      slot = representation?.__typename ? index.slotOfJson(JSON.stringify(representation)) : -1;
    }
    if (slot === -1) continue;
    owners.push(i);
    slots.push(slot);
  }
  const uniqueJson = index.json;
  if (uniqueJson.length === 0) return;
  if (variables && hasOwn.call(variables, 'representations')) throw new Error('Variables cannot contain key "representations"');
  const others = variables ? JSON.stringify(variables).slice(1, -1) : '';
  const response = await sendFetch(run, fetch, {
    serviceName: fetch.serviceName,
    prefix: fetch.prefix,
    query: fetch.query,
    operationName: fetch.operationName,
    variables: undefined,
    variablesJson: `{${others}${others ? ',' : ''}"representations":[${uniqueJson.join(',')}]}`,
  });
  collectErrors(run, fetch, cursor, response, slots);
  const data = response.data;
  if (!data) return;
  const received = data._entities;
  if (!Array.isArray(received)) throw new Error('Expected "data._entities" in response to be an array');
  if (received.length !== uniqueJson.length) throw new Error(`Expected "data._entities" to contain ${uniqueJson.length} elements`);
  for (let j = 0; j < owners.length; j++) {
    const entity = entities[owners[j] as number] as Record<string, unknown>;
    const answer = received[slots[j] as number] as Record<string, unknown> | null;
    if (answer && !answer.__typename) answer.__typename = entity.__typename;
    mergeInto(entity, answer);
  }
}

/** A subgraph's error as an Error carrying its fields (Object.assign would run a `__proto__` key's setter). */
function errorFrom(error: NonNullable<SubgraphResponse['errors']>[number]): Error {
  const copy = new Error(error.message);
  for (const key of Object.keys(error)) {
    const value = (error as Record<string, unknown>)[key];
    if (isPrototypeName(key)) setOwn(copy, key, value);
    else (copy as unknown as Record<string, unknown>)[key] = value;
  }
  return copy;
}

/**
 * Subgraph errors with paths in the client's response: `_entities` indexes are mapped back to
 * entity paths (one error per entity that shared the failing representation, in entity order).
 */
function collectErrors(
  run: PlanRun,
  fetch: Extract<CompiledNode, { kind: 'fetch' }>,
  cursor: Cursor,
  response: SubgraphResponse,
  slots?: number[],
) {
  if (!response.errors) return;
  let hydrated: (string | number)[][] | undefined;
  const mapped: { order: number; error: GraphQLError }[] = [];
  let lastOrder = -1;
  const make = (error: NonNullable<SubgraphResponse['errors']>[number], path: (string | number)[] | undefined) => {
    const extensions = error.extensions?.code
      ? { ...error.extensions, serviceName: fetch.serviceName }
      : { ...error.extensions, serviceName: fetch.serviceName, code: 'DOWNSTREAM_SERVICE_ERROR' };
    return new GraphQLError(error.message || `Error while fetching subquery from service "${fetch.serviceName}"`, {
      path,
      extensions,
      originalError: errorFrom(error),
    });
  };
  for (const error of response.errors) {
    const errorPath = error.path;
    if (fetch.requires && typeof errorPath?.[1] === 'number') {
      if (!hydrated) {
        hydrated = [];
        hydratedPaths([], cursor.path, run.result, hydrated);
      }
      const slot = errorPath[1];
      const rest = errorPath.slice(2);
      for (let j = 0; j < (slots?.length ?? 0); j++) {
        if (slots?.[j] !== slot) continue;
        mapped.push({ order: j, error: make(error, [...(hydrated[j] ?? []), ...rest]) });
        lastOrder = j;
      }
    } else {
      mapped.push({ order: lastOrder, error: make(error, errorPath ? [...cursor.path, ...errorPath] : undefined) });
    }
  }
  mapped.sort((x, y) => x.order - y.order);
  for (const { error } of mapped) run.errors.push(error);
}
