import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import {
  type ASTNode,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  isNonNullType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  TypeInfo,
  visit,
  visitWithTypeInfo,
} from 'graphql';

/**
 * BAD_USER_INPUT when the request sends an explicit `null` for a variable that stands where a
 * non-null value is required: a root or nested field's non-null argument, a non-null field of an
 * input object, a non-null list item, or `@skip`/`@include`'s `if`.
 *
 * Validation lets a nullable variable with a default stand there (`$id: ID = "c1"` for
 * `card(id: ID!)`, `$s: Boolean = true` for `@include(if: $s)`): its default covers a request that
 * leaves it out. An explicit `null` passes variable coercion too, and only failed when it was
 * used: in a subgraph, which answered an error without a code (`INTERNAL_SERVER_ERROR` at the
 * field, a server-side failure to the SLI, after the subgraph was called, a mutation's included),
 * or while planning `@skip`/`@include`, which the gateway threw (HTTP 500).
 *
 * Cheap when there is nothing to find: one pass over the operation's variable definitions; the
 * document is walked (with the schema's types) only when a defaulted nullable variable is sent as
 * `null`. Only the chosen operation and the fragments it spreads are walked. A usage under a field
 * the request skips counts too (its value is still wrong).
 */
export function nullVariableError(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables: Readonly<Record<string, unknown>>,
): GhostPayError | undefined {
  let nullable: Set<string> | undefined;
  for (const definition of operation.variableDefinitions ?? []) {
    if (!definition.defaultValue || definition.type.kind === Kind.NON_NULL_TYPE) continue;
    const name = definition.variable.name.value;
    if (!Object.hasOwn(variables, name) || variables[name] !== null) continue;
    nullable ??= new Set();
    nullable.add(name);
  }
  if (!nullable) return undefined;
  const candidates = nullable;

  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION && !fragments.has(definition.name.value)) {
      fragments.set(definition.name.value, definition);
    }
  }
  // The operation and the fragments it reaches: a fragment only another operation spreads uses that operation's variables.
  const roots: ASTNode[] = [operation];
  const reached = new Set<string>();
  const spreadsIn = (set: SelectionSetNode) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FRAGMENT_SPREAD) {
        const fragment = fragments.get(selection.name.value);
        if (!fragment || reached.has(fragment.name.value)) continue;
        reached.add(fragment.name.value);
        roots.push(fragment);
        spreadsIn(fragment.selectionSet);
      } else if (selection.selectionSet) {
        spreadsIn(selection.selectionSet);
      }
    }
  };
  spreadsIn(operation.selectionSet);

  const typeInfo = new TypeInfo(schema);
  let found: string | undefined;
  const visitor = visitWithTypeInfo(typeInfo, {
    // A definition's own `$name` is visited too, with its declared type as the input type: nullable
    // for every candidate, so it never matches.
    Variable(node) {
      if (found === undefined && candidates.has(node.name.value) && isNonNullType(typeInfo.getInputType())) found = node.name.value;
    },
  });
  for (const root of roots) {
    visit(root, visitor);
    if (found !== undefined) break;
  }
  if (found === undefined) return undefined;
  return new GhostPayError(ErrorCode.BAD_USER_INPUT, `Variable "$${found}" is null where a non-null value is required`);
}
