import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import {
  type DocumentNode,
  type FragmentDefinitionNode,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
  type VariableDefinitionNode,
  valueFromASTUntyped,
} from 'graphql';

/** Limits applied to every operation before it is planned; each is configurable. */
export interface OperationLimits {
  /** Deepest field nesting (a root field is depth 1, its subfields depth 2). @default 10 */
  maxDepth: number;
  /** Aliased fields in the operation. @default 15 */
  maxAliases: number;
  /** Fields selected on the root type. @default 10 */
  maxRootFields: number;
  /** Lexical tokens in the document (enforced while parsing). @default 2000 */
  maxTokens: number;
  /** Estimated cost (see `operationCost`). @default 5000 */
  maxCost: number;
}

export const defaultOperationLimits: OperationLimits = {
  maxDepth: 10,
  maxAliases: 15,
  maxRootFields: 10,
  maxTokens: 2000,
  maxCost: 5000,
};

/** List sizes assumed for a list field that has no `first`/`last`/`limit` argument. */
const assumedListSize = 10;

export interface OperationShape {
  depth: number;
  aliases: number;
  rootFields: number;
  cost: number;
  /** Selects `__schema` or `__type` somewhere. */
  introspection: boolean;
}

/**
 * The variables as execution sees them: a variable the request leaves out takes its default
 * from the operation's definition; one it sends (null included) keeps the sent value. Without
 * this, `first: $n` with `$n: Int = 100` and no `n` would be sized as an unsized list.
 */
function withDefaults(
  definitions: readonly VariableDefinitionNode[] | undefined,
  variables: Record<string, unknown>,
): Map<string, unknown> {
  // A Map: variable names are the client's, and `$__proto__` is a legal one.
  const effective = new Map(Object.entries(variables));
  for (const definition of definitions ?? []) {
    const name = definition.variable.name.value;
    if (definition.defaultValue && !effective.has(name)) effective.set(name, valueFromASTUntyped(definition.defaultValue));
  }
  return effective;
}

function numericArgument(value: ValueNode | undefined, variables: Map<string, unknown>): number | undefined {
  if (!value) return undefined;
  if (value.kind === Kind.INT) return Number(value.value);
  if (value.kind === Kind.VARIABLE) {
    const v = variables.get(value.name.value);
    return typeof v === 'number' ? v : undefined;
  }
  return undefined;
}

/**
 * Measures an operation without a schema: depth, aliases, root fields, introspection and a
 * cost where every field costs 1 times the sizes of the lists above it. A field with a
 * `first`/`last`/`limit` argument is a page of that size: its `edges`/`nodes` child is the list.
 * Any other field with a selection set whose name is plural (ends in "s") counts as a list of 10.
 * Simple on purpose: it bounds the fan-out a client can ask for before anything is fetched.
 */
export function measureOperation(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  requestVariables: Record<string, unknown> = {},
): OperationShape {
  const variables = withDefaults(operation.variableDefinitions, requestVariables);
  const fragments = new Map(
    document.definitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION).map((f) => [f.name.value, f]),
  );
  let aliases = 0;
  let introspection = false;
  const countedAliasesIn = new Set<string>();
  const walk = (
    set: SelectionSetNode,
    depth: number,
    multiplier: number,
    seen: Set<string>,
    countAliases: boolean,
    page?: number,
  ): { depth: number; cost: number } => {
    let maxDepth = depth;
    let cost = 0;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value === '__schema' || selection.name.value === '__type') introspection = true;
        if (selection.alias && countAliases) aliases++;
        cost += multiplier;
        maxDepth = Math.max(maxDepth, depth + 1);
        if (selection.selectionSet) {
          const pageArg = selection.arguments?.find((a) => ['first', 'last', 'limit'].includes(a.name.value));
          const name = selection.name.value;
          const pageSize = pageArg ? (numericArgument(pageArg.value, variables) ?? assumedListSize) : undefined;
          let size = 1;
          if (page !== undefined && (name === 'edges' || name === 'nodes')) size = page;
          else if (pageSize === undefined && /s$/.test(name)) size = assumedListSize;
          const inner = walk(selection.selectionSet, depth + 1, multiplier * Math.max(1, size), seen, countAliases, pageSize);
          maxDepth = Math.max(maxDepth, inner.depth);
          cost += inner.cost;
        }
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const inner = walk(selection.selectionSet, depth, multiplier, seen, countAliases, page);
        maxDepth = Math.max(maxDepth, inner.depth);
        cost += inner.cost;
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (!fragment || seen.has(name)) continue;
        // Aliases are counted once per fragment definition (they are text the client sent once).
        const inner = walk(
          fragment.selectionSet,
          depth,
          multiplier,
          new Set([...seen, name]),
          countAliases && !countedAliasesIn.has(name),
          page,
        );
        countedAliasesIn.add(name);
        maxDepth = Math.max(maxDepth, inner.depth);
        cost += inner.cost;
      }
    }
    return { depth: maxDepth, cost };
  };
  const { depth, cost } = walk(operation.selectionSet, 0, 1, new Set(), true);
  let rootFields = 0;
  const countRoot = (set: SelectionSetNode, seen: Set<string>) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) rootFields += selection.name.value === '__typename' ? 0 : 1;
      else if (selection.kind === Kind.INLINE_FRAGMENT) countRoot(selection.selectionSet, seen);
      else {
        const fragment = fragments.get(selection.name.value);
        if (fragment && !seen.has(fragment.name.value)) countRoot(fragment.selectionSet, new Set([...seen, fragment.name.value]));
      }
    }
  };
  countRoot(operation.selectionSet, new Set());
  return { depth, aliases, rootFields, cost, introspection };
}

/** Throws OPERATION_LIMIT_EXCEEDED naming the first limit the operation breaks. */
export function enforceOperationLimits(shape: OperationShape, limits: OperationLimits): void {
  const checks: [keyof OperationShape, number, string][] = [
    ['depth', limits.maxDepth, 'depth'],
    ['aliases', limits.maxAliases, 'aliases'],
    ['rootFields', limits.maxRootFields, 'root fields'],
    ['cost', limits.maxCost, 'cost'],
  ];
  for (const [key, max, label] of checks) {
    const value = shape[key] as number;
    if (value > max) {
      throw new GhostPayError(ErrorCode.OPERATION_LIMIT_EXCEEDED, `Operation ${label} ${value} exceeds the limit of ${max}`, {
        extensions: { limit: key, max, actual: value, http: { status: 400 } },
      });
    }
  }
}
