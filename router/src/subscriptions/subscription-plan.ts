import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import {
  type DefinitionNode,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  GraphQLError,
  type GraphQLSchema,
  getArgumentValues,
  getOperationAST,
  getVariableValues,
  Kind,
  type OperationDefinitionNode,
  parse,
  print,
  type SelectionSetNode,
  validate,
} from 'graphql';
import { nullVariableError } from '../variable-nulls.ts';

/** How one subscription field of the supergraph is served. */
export interface SubscriptionRoute {
  /** The `Subscription` field clients subscribe to. */
  field: string;
  /** The subgraph that serves it: a key of the gateway's `upstreams`. */
  subgraph: string;
  /** The `Query` field that resolves the same entity from the same arguments. */
  queryField: string;
  /** What the router asks upstream: only enough to learn that something changed. */
  upstreamSelection: string;
  /**
   * Whether an upstream event's data (`upstreamSelection` under `field`) is the entity's last
   * state: nothing can change after it, so its subscriptions complete once it was sent.
   * @default never
   */
  isFinal?: (data: Record<string, unknown>) => boolean;
}

/** Charge statuses no change leaves: a declined charge, and one refunded in full (settled or not). */
export const finalChargeStatuses: ReadonlySet<string> = new Set(['DECLINED', 'REFUNDED']);

/** GhostPay's one subscription: `chargeUpdated(id)` from charges, re-read as `Query.charge(id)`. */
export const defaultSubscriptionRoutes: readonly SubscriptionRoute[] = [
  {
    field: 'chargeUpdated',
    subgraph: 'charges',
    queryField: 'charge',
    upstreamSelection: '{ id status }',
    isFinal: (data) => finalChargeStatuses.has(String((data.chargeUpdated as { status?: unknown } | null | undefined)?.status)),
  },
];

export interface SubscriptionRequest {
  query?: unknown;
  variables?: unknown;
  operationName?: unknown;
}

export interface SubscriptionPlan {
  route: SubscriptionRoute;
  /** The client's document, kept for the transports' execution arguments. */
  document: DocumentNode;
  variables: Record<string, unknown>;
  /** Response key of the root field (its alias, or the field name). */
  responseKey: string;
  /** The client's selection moved onto the query field, aliased to `responseKey`. */
  query: DocumentNode;
  queryText: string;
  operationName: string | undefined;
  /** Shared upstream subscriptions are keyed by this: field + canonical arguments. */
  upstreamKey: string;
  upstreamQuery: string;
  upstreamVariables: Record<string, unknown>;
}

/**
 * Parses and validates a client subscription against the supergraph's API schema and
 * derives the two operations the router runs for it: the minimal upstream subscription and
 * the per-event query carrying the client's whole selection. Errors carry codes from the
 * closed list. `checkDocument` runs on the parsed document before validation (the router's
 * pre-validation limits): an error it returns is the refusal.
 */
export function planSubscription(
  schema: GraphQLSchema,
  routes: readonly SubscriptionRoute[],
  request: SubscriptionRequest,
  checkDocument?: (document: DocumentNode) => GraphQLError | undefined,
): SubscriptionPlan | readonly GraphQLError[] {
  if (typeof request.query !== 'string' || request.query.trim() === '') {
    return [new GhostPayError(ErrorCode.BAD_USER_INPUT, 'A subscription document is required')];
  }
  if (request.variables != null && (typeof request.variables !== 'object' || Array.isArray(request.variables))) {
    return [new GhostPayError(ErrorCode.BAD_USER_INPUT, 'variables must be an object')];
  }
  const operationName = typeof request.operationName === 'string' ? request.operationName : undefined;
  let document: DocumentNode;
  try {
    document = parse(request.query, { maxTokens: 2_000 });
  } catch (error) {
    return [new GhostPayError(ErrorCode.GRAPHQL_PARSE_FAILED, (error as GraphQLError).message)];
  }
  const refused = checkDocument?.(document);
  if (refused) return [refused];
  const invalid = validate(schema, document);
  if (invalid.length > 0) return invalid.map((e) => new GhostPayError(ErrorCode.GRAPHQL_VALIDATION_FAILED, e.message));
  const operation = getOperationAST(document, operationName);
  if (!operation) return [new GhostPayError(ErrorCode.BAD_USER_INPUT, 'Unable to identify the operation to run')];
  if (operation.operation !== 'subscription') {
    return [new GhostPayError(ErrorCode.BAD_USER_INPUT, 'Only subscriptions are served here; send queries and mutations to POST /graphql')];
  }
  const [root, ...rest] = operation.selectionSet.selections;
  if (!root || rest.length > 0 || root.kind !== Kind.FIELD) {
    return [new GhostPayError(ErrorCode.BAD_USER_INPUT, 'A subscription must select exactly one field directly (no root fragments)')];
  }
  if (root.directives && root.directives.length > 0) {
    return [new GhostPayError(ErrorCode.BAD_USER_INPUT, 'Directives on the subscription field are not supported')];
  }
  const route = routes.find((r) => r.field === root.name.value);
  const subscriptionType = schema.getSubscriptionType();
  const fieldDef = subscriptionType?.getFields()[root.name.value];
  if (!route || !fieldDef) return [new GhostPayError(ErrorCode.BAD_USER_INPUT, `Subscription field ${root.name.value} is not served`)];

  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], (request.variables ?? {}) as Record<string, unknown>, {
    maxErrors: 10,
  });
  if (coerced.errors) return coerced.errors.map((e) => new GhostPayError(ErrorCode.BAD_USER_INPUT, e.message));
  // An explicit null for a defaulted nullable variable where a non-null value is required, as POST
  // /graphql refuses it (same check, same message), before a slot, the upstream or the first query.
  const nullVariable = nullVariableError(schema, document, operation, (request.variables ?? {}) as Record<string, unknown>);
  if (nullVariable) return [nullVariable];
  // Validation lets a nullable variable with a default stand where the argument is non-null, so
  // an explicit `null` for it passes both steps above and only fails here, with a GraphQLError.
  let args: Record<string, unknown>;
  try {
    args = getArgumentValues(fieldDef, root, coerced.coerced);
  } catch (error) {
    if (!(error instanceof GraphQLError)) throw error;
    return [new GhostPayError(ErrorCode.BAD_USER_INPUT, error.message)];
  }

  const responseKey = root.alias?.value ?? root.name.value;
  const queryField: FieldNode = {
    ...root,
    alias: { kind: Kind.NAME, value: responseKey },
    name: { kind: Kind.NAME, value: route.queryField },
  };
  const queryOperation: OperationDefinitionNode = {
    ...operation,
    operation: 'query' as OperationDefinitionNode['operation'],
    selectionSet: { kind: Kind.SELECTION_SET, selections: [queryField] },
  };
  // Only the fragments this subscription uses: one used only by another operation of the same
  // document would be "never used" in the query, which would then fail validation.
  const query: DocumentNode = {
    kind: Kind.DOCUMENT,
    definitions: [queryOperation, ...fragmentsUsedBy(operation.selectionSet, document.definitions)],
  };
  // The query field must accept the same arguments and return a type the selection fits.
  const queryInvalid = validate(schema, query);
  if (queryInvalid.length > 0) {
    return [
      new GhostPayError(ErrorCode.INTERNAL_SERVER_ERROR, `Subscription route ${route.field} → Query.${route.queryField} is misconfigured`),
    ];
  }

  const argDefs = fieldDef.args.filter((a) => args[a.name] !== undefined);
  const variableList = argDefs.map((a) => `$${a.name}: ${String(a.type)}`).join(', ');
  const argumentList = argDefs.map((a) => `${a.name}: $${a.name}`).join(', ');
  const upstreamQuery = `subscription RouterUpstream${variableList ? `(${variableList})` : ''} { ${route.field}${
    argumentList ? `(${argumentList})` : ''
  } ${route.upstreamSelection} }`;
  return {
    route,
    document,
    variables: coerced.coerced,
    responseKey,
    query,
    queryText: print(query),
    operationName: operation.name?.value,
    upstreamKey: `${route.subgraph}:${route.field}:${canonicalJson(args)}`,
    upstreamQuery,
    upstreamVariables: { ...args },
  };
}

/** The fragment definitions a selection set spreads, directly or through other fragments, in document order. */
function fragmentsUsedBy(selectionSet: SelectionSetNode, definitions: readonly DefinitionNode[]): FragmentDefinitionNode[] {
  const byName = new Map<string, FragmentDefinitionNode>();
  for (const definition of definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) byName.set(definition.name.value, definition);
  }
  const used = new Set<string>();
  const walk = (set: SelectionSetNode) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FRAGMENT_SPREAD) {
        const name = selection.name.value;
        const fragment = byName.get(name);
        if (used.has(name) || !fragment) continue;
        used.add(name);
        walk(fragment.selectionSet);
      } else if (selection.selectionSet) {
        walk(selection.selectionSet);
      }
    }
  };
  walk(selectionSet);
  return [...byName.values()].filter((fragment) => used.has(fragment.name.value));
}

export function isPlan(value: SubscriptionPlan | readonly GraphQLError[]): value is SubscriptionPlan {
  return !Array.isArray(value);
}

/** JSON with sorted object keys, so equal arguments give equal keys. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
