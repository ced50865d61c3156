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
  /**
   * Fields sharing one response path, checked before validation (see `measureRepeatedFields`
   * in overlap-limits.ts). @default 20
   */
  maxRepeatedFields: number;
  /**
   * Operation and fragment definitions in one document, checked before validation (see
   * `definitionsError` in overlap-limits.ts). @default 50
   */
  maxDefinitions: number;
}

export const defaultOperationLimits: OperationLimits = {
  maxDepth: 10,
  maxAliases: 15,
  maxRootFields: 10,
  maxTokens: 2000,
  maxCost: 5000,
  maxRepeatedFields: 20,
  maxDefinitions: 50,
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
 * An introspection field (`__schema`, `__type`) counts as one field of depth 1, whatever it
 * selects: the router answers introspection to admins only (`introspection`), and validation
 * bounds its fan-out (`MaxIntrospectionDepthRule`, one of graphql-js 16.15's specifiedRules,
 * which Apollo Server runs); the standard introspection query every GraphQL client sends
 * (GraphiQL's docs, codegen) is 15 deep through `ofType`.
 *
 * Every spread of a fragment counts (a fragment spread twice costs twice), but each fragment is
 * measured once per page size and the result reused: a cost is linear in the multiplier above
 * it and a depth relative to where it is spread. Walking each spread instead took time
 * exponential in the document (`fragment F1 on Query { ...F2 ...F2 }`, and so on: 22 such
 * fragments, under 200 tokens, blocked the event loop for 10 s, any more for ever) before any
 * limit was compared, for any caller, anonymous ones included.
 */
export function measureOperation(
  document: DocumentNode,
  operation: OperationDefinitionNode,
  requestVariables: Record<string, unknown> = {},
): OperationShape {
  const variables = withDefaults(operation.variableDefinitions, requestVariables);
  const measurer = createMeasurer(fragmentsOf(document), (value) => numericArgument(value, variables));
  const { depth, cost } = measurer.walk(operation.selectionSet, undefined);
  return {
    depth,
    aliases: measurer.countAliases(operation.selectionSet),
    rootFields: measurer.countRoot(operation.selectionSet),
    cost,
    introspection: measurer.introspection(),
  };
}

function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  return new Map(
    document.definitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION).map((f) => [f.name.value, f]),
  );
}

/**
 * The measures of `measureOperation` over one document's selection sets. Depth and cost (per
 * fragment and page size) and root fields (per fragment) are measured once per fragment and
 * shared by every selection set measured with it; aliases are counted per selection set, each
 * fragment it reaches once. `pageSizeOf` reads a `first`/`last`/`limit` argument (undefined: unsized).
 */
function createMeasurer(
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  pageSizeOf: (value: ValueNode | undefined) => number | undefined,
) {
  let introspection = false;
  /** Depth below a selection set and its cost for a multiplier of 1, per fragment and page size. */
  const measured = new Map<string, { depth: number; cost: number }>();
  const inProgress = new Set<string>();
  const walk = (set: SelectionSetNode, page: number | undefined): { depth: number; cost: number } => {
    let maxDepth = 0;
    let cost = 0;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        cost += 1;
        maxDepth = Math.max(maxDepth, 1);
        if (selection.name.value === '__schema' || selection.name.value === '__type') {
          // Introspection counts as one field: its `ofType` chains make every client's standard
          // introspection query 15 deep, and what it can cost is bounded elsewhere (admins only;
          // MaxIntrospectionDepthRule, in graphql-js's specifiedRules, refuses `fields`,
          // `interfaces`, `possibleTypes` or `inputFields` lists nested more than 3 deep).
          introspection = true;
          continue;
        }
        if (selection.selectionSet) {
          const pageArg = selection.arguments?.find((a) => ['first', 'last', 'limit'].includes(a.name.value));
          const name = selection.name.value;
          const pageSize = pageArg ? (pageSizeOf(pageArg.value) ?? assumedListSize) : undefined;
          let size = 1;
          if (page !== undefined && (name === 'edges' || name === 'nodes')) size = page;
          else if (pageSize === undefined && /s$/.test(name)) size = assumedListSize;
          const inner = walk(selection.selectionSet, pageSize);
          maxDepth = Math.max(maxDepth, 1 + inner.depth);
          cost += Math.max(1, size) * inner.cost;
        }
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const inner = walk(selection.selectionSet, page);
        maxDepth = Math.max(maxDepth, inner.depth);
        cost += inner.cost;
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        const key = `${page}:${name}`;
        // A cycle (which validation refuses before this runs) counts as nothing.
        if (!fragment || inProgress.has(key)) continue;
        let inner = measured.get(key);
        if (!inner) {
          inProgress.add(key);
          inner = walk(fragment.selectionSet, page);
          inProgress.delete(key);
          measured.set(key, inner);
        }
        maxDepth = Math.max(maxDepth, inner.depth);
        cost += inner.cost;
      }
    }
    return { depth: maxDepth, cost };
  };

  /** Aliases are text the client sent: counted once in the selection set and once in each fragment it reaches (up to `cap`). */
  const countAliases = (selectionSet: SelectionSetNode, cap = Number.POSITIVE_INFINITY): number => {
    let aliases = 0;
    const reached = new Set<string>();
    const count = (set: SelectionSetNode) => {
      for (const selection of set.selections) {
        if (aliases > cap) return;
        if (selection.kind === Kind.FIELD) {
          if (selection.alias) aliases++;
          if (selection.selectionSet) count(selection.selectionSet);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          count(selection.selectionSet);
        } else {
          const fragment = fragments.get(selection.name.value);
          if (!fragment || reached.has(fragment.name.value)) continue;
          reached.add(fragment.name.value);
          count(fragment.selectionSet);
        }
      }
    };
    count(selectionSet);
    return aliases;
  };

  // Root fields through fragments, each spread counted, each fragment counted once.
  const rootFieldsOf = new Map<string, number>();
  const countRoot = (set: SelectionSetNode): number => {
    let count = 0;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) count += selection.name.value === '__typename' ? 0 : 1;
      else if (selection.kind === Kind.INLINE_FRAGMENT) count += countRoot(selection.selectionSet);
      else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (!fragment) continue;
        if (!rootFieldsOf.has(name)) {
          rootFieldsOf.set(name, 0); // cycle guard
          rootFieldsOf.set(name, countRoot(fragment.selectionSet));
        }
        count += rootFieldsOf.get(name) ?? 0;
      }
    }
    return count;
  };

  return {
    walk,
    countAliases,
    countRoot,
    /** Whether any selection set walked so far selects `__schema` or `__type`. */
    introspection: () => introspection,
  };
}

type LimitKey = 'depth' | 'aliases' | 'rootFields' | 'cost';

/** The first limit a shape breaks (in this order, as `enforceOperationLimits` reports it), or undefined. */
function brokenLimit(
  shape: OperationShape,
  limits: OperationLimits,
  keys: readonly LimitKey[] = ['depth', 'aliases', 'rootFields', 'cost'],
) {
  const max: Record<LimitKey, number> = {
    depth: limits.maxDepth,
    aliases: limits.maxAliases,
    rootFields: limits.maxRootFields,
    cost: limits.maxCost,
  };
  const label: Record<LimitKey, string> = { depth: 'depth', aliases: 'aliases', rootFields: 'root fields', cost: 'cost' };
  for (const key of keys) {
    if (shape[key] > max[key]) return { key, label: label[key], max: max[key], actual: shape[key] };
  }
  return undefined;
}

/** Throws OPERATION_LIMIT_EXCEEDED naming the first limit the operation breaks. */
export function enforceOperationLimits(shape: OperationShape, limits: OperationLimits): void {
  const broken = brokenLimit(shape, limits);
  if (!broken) return;
  throw new GhostPayError(
    ErrorCode.OPERATION_LIMIT_EXCEEDED,
    `Operation ${broken.label} ${broken.actual} exceeds the limit of ${broken.max}`,
    {
      extensions: { limit: broken.key, max: broken.max, actual: broken.actual, http: { status: 400 } },
    },
  );
}

/**
 * The operation limits a parsed document breaks whatever request names it, checked before
 * graphql-js validates it (after the repeated-fields limit, `src/overlap-limits.ts`): documents
 * past them (hundreds of aliased fields, or of fragments each adding an aliased field to one
 * selection set, within the token cap) cost graphql-js's validation 4–12 ms each, only to be
 * refused by these limits afterwards. Each operation of the document is measured as
 * `enforceOperationLimits` measures it after validation, on the limits that do not depend on the
 * request's variables: depth, aliases and root fields (cost, which does, is left to after
 * validation); each fragment definition too, as the least it adds to any operation spreading it
 * (its depth and aliases). So it refuses a document only when its operation is refused after
 * validation anyway, or when it holds a definition past a limit: another operation (which the
 * request may not name) or a fragment no operation spreads (which validation refuses). Operations
 * first, in document order, then fragments: a document with one operation gets the error
 * `enforceOperationLimits` gives. Each fragment measured once for the whole document; aliases
 * walked per definition only when the document holds more than the limit, each walk stopping past
 * it. No `http` extension: over WebSocket and SSE the error is sent as it is.
 */
export function operationLimitsError(document: DocumentNode, limits: OperationLimits): GhostPayError | undefined {
  // Cost is not compared here: page sizes are not read (every page counts as unsized).
  const measurer = createMeasurer(fragmentsOf(document), () => undefined);
  // The aliases a definition reaches are at most the document's.
  const manyAliases = countDocumentAliases(document) > limits.maxAliases;
  const shapeOf = (selectionSet: SelectionSetNode): OperationShape => {
    const { depth } = measurer.walk(selectionSet, undefined);
    let aliases = manyAliases ? measurer.countAliases(selectionSet, limits.maxAliases) : 0;
    // Past the limit: the exact count, as the refusal after validation reports it.
    if (aliases > limits.maxAliases) aliases = measurer.countAliases(selectionSet);
    return { depth, aliases, rootFields: measurer.countRoot(selectionSet), cost: 0, introspection: false };
  };
  const refuse = (what: string, broken: NonNullable<ReturnType<typeof brokenLimit>>) =>
    new GhostPayError(ErrorCode.OPERATION_LIMIT_EXCEEDED, `${what} ${broken.label} ${broken.actual} exceeds the limit of ${broken.max}`, {
      extensions: { limit: broken.key, max: broken.max, actual: broken.actual },
    });
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
    const broken = brokenLimit(shapeOf(definition.selectionSet), limits, ['depth', 'aliases', 'rootFields']);
    if (broken) return refuse('Operation', broken);
  }
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.FRAGMENT_DEFINITION) continue;
    // A fragment on an introspection type (`__Type`, `__Field`, …) can only be spread inside
    // introspection, which the limits do not measure (see `measureOperation`).
    if (definition.typeCondition.name.value.startsWith('__')) continue;
    const broken = brokenLimit(shapeOf(definition.selectionSet), limits, ['depth', 'aliases']);
    if (broken) return refuse(`Fragment ${definition.name.value}:`, broken);
  }
  return undefined;
}

/** Every alias in a document's text, each once. */
function countDocumentAliases(document: DocumentNode): number {
  let aliases = 0;
  const count = (set: SelectionSetNode) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (selection.alias) aliases++;
        if (selection.selectionSet) count(selection.selectionSet);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) count(selection.selectionSet);
    }
  };
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION || definition.kind === Kind.FRAGMENT_DEFINITION) count(definition.selectionSet);
  }
  return aliases;
}
