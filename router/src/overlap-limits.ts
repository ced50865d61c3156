import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import {
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLError,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
} from 'graphql';
import { type OperationLimits, operationLimitsError } from './operation-limits.ts';

/*
 * A limit checked on the parsed document before graphql-js validates it: its
 * OverlappingFieldsCanBeMergedRule compares every pair of fields that share a response key in
 * a selection set, and their sub-selections pair by pair, so its time grows with the square of
 * the repeats of one key, multiplied down through repeated parents. `{ me { id } me { id } … }`
 * with 495 copies (within the 2000-token cap) took 137 ms of CPU, `{ me { apiKeys { id } … } }`
 * about 55 ms, before any operation limit was compared. At 20 repeats any 2000-token document
 * validates in a few milliseconds.
 */

/** One response key of a selection set: its fields there (through fragments) and the most repeats any of them has below. */
interface KeyGroup {
  count: number;
  below: number;
}

/**
 * Measures a parsed document without a schema, in time linear in its size: each selection set
 * and each fragment is measured once and the result reused wherever it is spread (walking each
 * spread would be exponential: see `measureOperation`). A fragment spread twice in one
 * selection set counts once, as graphql-js compares it once.
 */
export function measureRepeatedFields(document: DocumentNode): number {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION && !fragments.has(definition.name.value)) {
      fragments.set(definition.name.value, definition);
    }
  }
  /** The key groups of a fragment's own selection set, through the fragments it spreads. */
  const fragmentGroups = new Map<string, Map<string, KeyGroup>>();
  /** Repeats under each selection set (the largest product of repeats down any path). */
  const repeatsUnder = new Map<SelectionSetNode, number>();

  const add = (groups: Map<string, KeyGroup>, key: string, count: number, below: number) => {
    const group = groups.get(key);
    if (group) {
      group.count += count;
      group.below = Math.max(group.below, below);
    } else {
      groups.set(key, { count, below });
    }
  };

  /** Collects a selection set's fields by response key, as graphql-js's collectFieldsAndFragmentNames does. */
  const collect = (set: SelectionSetNode, groups: Map<string, KeyGroup>, spread: Set<string>) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        const below = selection.selectionSet ? repeats(selection.selectionSet) : 1;
        add(groups, selection.alias?.value ?? selection.name.value, 1, below);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        collect(selection.selectionSet, groups, spread);
      } else {
        const name = selection.name.value;
        if (spread.has(name)) continue;
        spread.add(name);
        const inner = groupsOfFragment(name);
        for (const [key, group] of inner) add(groups, key, group.count, group.below);
      }
    }
  };

  const groupsOfFragment = (name: string): Map<string, KeyGroup> => {
    let groups = fragmentGroups.get(name);
    if (groups) return groups;
    groups = new Map();
    // Set first: a cycle (which validation refuses) then adds nothing.
    fragmentGroups.set(name, groups);
    const fragment = fragments.get(name);
    if (fragment) collect(fragment.selectionSet, groups, new Set([name]));
    return groups;
  };

  const repeats = (set: SelectionSetNode): number => {
    const known = repeatsUnder.get(set);
    if (known !== undefined) return known;
    repeatsUnder.set(set, 1); // an AST is a tree; this only guards against a shared node
    const groups = new Map<string, KeyGroup>();
    collect(set, groups, new Set());
    let most = 1;
    for (const group of groups.values()) most = Math.max(most, group.count * group.below);
    repeatsUnder.set(set, most);
    return most;
  };

  let repeatedFields = 0;
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION || definition.kind === Kind.FRAGMENT_DEFINITION) {
      repeatedFields = Math.max(repeatedFields, repeats(definition.selectionSet));
    }
  }
  return repeatedFields;
}

/**
 * OPERATION_LIMIT_EXCEEDED (`extensions.limit: 'repeatedFields'`) when more than `max` fields
 * share one response path (see `measureRepeatedFields`).
 */
export function repeatedFieldsError(document: DocumentNode, max: number): GhostPayError | undefined {
  const actual = measureRepeatedFields(document);
  if (actual <= max) return undefined;
  // No `http` extension: over WebSocket and SSE the error is sent as it is (HTTP answers 400 as for any validation error).
  return new GhostPayError(
    ErrorCode.OPERATION_LIMIT_EXCEEDED,
    `Operation repeats one response key ${actual} times (through fragments and repeated parent fields), over the limit of ${max}`,
    { extensions: { limit: 'repeatedFields', max, actual } },
  );
}

/**
 * GRAPHQL_VALIDATION_FAILED for the first spread of a fragment the document does not define, with
 * the message graphql-js's KnownFragmentNamesRule gives it. That rule refuses such a document,
 * but only as it reaches each spread: OverlappingFieldsCanBeMergedRule, entering the selection set
 * first, compares every pair of distinct fragment names spread there, defined or not. A spread
 * costs 2 tokens, so `{ me { ...X0 ...X1 … } }` held ~1000 of them within the token cap: ~500,000
 * pairs, 20–30 ms of validation for a document refused anyway (the most of any document measured).
 * Linear in the document.
 */
export function unknownFragmentError(document: DocumentNode): GhostPayError | undefined {
  const defined = new Set<string>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) defined.add(definition.name.value);
  }
  let unknown: string | undefined;
  const find = (set: SelectionSetNode): void => {
    for (const selection of set.selections) {
      if (unknown !== undefined) return;
      if (selection.kind === Kind.FRAGMENT_SPREAD) {
        if (!defined.has(selection.name.value)) unknown = selection.name.value;
      } else if (selection.selectionSet) {
        find(selection.selectionSet);
      }
    }
  };
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION || definition.kind === Kind.FRAGMENT_DEFINITION) find(definition.selectionSet);
    if (unknown !== undefined) return new GhostPayError(ErrorCode.GRAPHQL_VALIDATION_FAILED, `Unknown fragment "${unknown}".`);
  }
  return undefined;
}

/**
 * A validation rule for Apollo Server's `validationRules`, which run after graphql-js's
 * `specifiedRules` in the same traversal. On the document node, entered before any selection
 * set, it asks `check` about the document; an error is reported and an empty document returned in
 * its place, so no rule visits a selection set and the overlap check never runs. (Apollo Server
 * answers a throwing rule or hook with a 500.)
 */
export function preValidationRule(check: (document: DocumentNode) => GraphQLError | undefined): (context: ValidationContext) => ASTVisitor {
  return (context) => ({
    Document: {
      enter(node) {
        const error = check(node);
        if (!error) return undefined;
        context.reportError(error);
        return { kind: Kind.DOCUMENT, definitions: [] } satisfies DocumentNode;
      },
    },
  });
}

/**
 * The number of operation and fragment definitions in a document, capped: graphql-js's overlap
 * check compares every pair of fragments spread in one selection set (~220 one-field fragments
 * spread together, within every other limit, cost ~10 ms of validation; 50 cost ~1.4 ms), and
 * each operation is validated on its own (~330 tiny operations in one document: 3–4 ms). No
 * document in the repo holds more than 4 (the standard introspection query: 1 operation, 3 fragments).
 */
export function definitionsError(document: DocumentNode, max: number): GhostPayError | undefined {
  const actual = document.definitions.length;
  if (actual <= max) return undefined;
  return new GhostPayError(ErrorCode.OPERATION_LIMIT_EXCEEDED, `Document definitions ${actual} exceeds the limit of ${max}`, {
    extensions: { limit: 'definitions', max, actual },
  });
}

/**
 * What the router checks every client document for before graphql-js validates it (POST/GET
 * /graphql through `preValidationRule`, subscription documents before their own validation):
 * shapes whose validation is costly and that are refused anyway. The number of definitions (a
 * count), the repeated-fields limit (the overlap check's quadratic pairs of fields), spreads of
 * fragments the document does not define (its pairs of fragments), then the operation limits
 * that do not depend on variables (depth, aliases, root fields) of each definition
 * (`operationLimitsError`).
 */
export function preValidationCheck(limits: OperationLimits): (document: DocumentNode) => GraphQLError | undefined {
  return (document) =>
    definitionsError(document, limits.maxDefinitions) ??
    repeatedFieldsError(document, limits.maxRepeatedFields) ??
    unknownFragmentError(document) ??
    operationLimitsError(document, limits);
}

/** `preValidationRule` with the repeated-fields limit alone. */
export function repeatedFieldsRule(max: number): (context: ValidationContext) => ASTVisitor {
  return preValidationRule((document) => repeatedFieldsError(document, max));
}
