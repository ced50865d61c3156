import type { Principal } from '@ghostpay/platform';
import { ErrorCode, GhostPayError } from '@ghostpay/platform';
import {
  type ConstDirectiveNode,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type FragmentSpreadNode,
  type GraphQLCompositeType,
  type GraphQLField,
  GraphQLIncludeDirective,
  type GraphQLNamedType,
  type GraphQLSchema,
  GraphQLSkipDirective,
  getDirectiveValues,
  getNamedType,
  getVariableValues,
  type InlineFragmentNode,
  isCompositeType,
  isInterfaceType,
  isNonNullType,
  isObjectType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  valueFromASTUntyped,
} from 'graphql';
import { setOwn } from './executor/own-properties.ts';

/**
 * @apollo/gateway refuses supergraphs linking `for: SECURITY` features it does not enforce
 * itself. The router enforces exactly these two (see `filterOperation`), so it hands the
 * gateway the SDL with their purpose removed; any other SECURITY feature (e.g. @policy) still
 * makes loading fail, closed rather than silently unenforced.
 */
export function markSecurityFeaturesEnforced(supergraphSdl: string): string {
  return supergraphSdl.replace(
    /(@link\(url: "https:\/\/specs\.apollo\.dev\/(?:authenticated|requiresScopes)\/v[0-9.]+")(?:, for: SECURITY)\)/g,
    '$1)',
  );
}

/** What a field needs, collected from the supergraph's `@authenticated` / `@requiresScopes`. */
export interface FieldRequirement {
  authenticated: boolean;
  /** Alternatives (OR) of scope sets (AND), exactly as `@requiresScopes(scopes:)` spells them. */
  scopes: string[][][];
}

/** Requirements per `Type.field` plus per named type, read once per supergraph. */
export interface AuthRequirements {
  forField(parent: GraphQLNamedType, field: GraphQLField<unknown, unknown>): FieldRequirement | undefined;
}

/** Finds the local names the supergraph gives the authorization directives (honouring `@link(as:)`). */
function directiveNames(schema: GraphQLSchema) {
  const names = { authenticated: 'authenticated', requiresScopes: 'requiresScopes' };
  const schemaNodes = [schema.astNode, ...schema.extensionASTNodes].filter((n) => n !== undefined && n !== null);
  for (const node of schemaNodes) {
    for (const directive of node.directives ?? []) {
      if (directive.name.value !== 'link') continue;
      const args = Object.fromEntries((directive.arguments ?? []).map((a) => [a.name.value, valueFromASTUntyped(a.value)]));
      const url = String(args.url ?? '');
      if (typeof args.as !== 'string') continue;
      if (/\/authenticated\/v/.test(url)) names.authenticated = args.as;
      if (/\/requiresScopes\/v/.test(url)) names.requiresScopes = args.as;
    }
  }
  return names;
}

function readRequirement(directives: readonly ConstDirectiveNode[] | undefined, names: ReturnType<typeof directiveNames>) {
  let authenticated = false;
  const scopes: string[][][] = [];
  for (const directive of directives ?? []) {
    if (directive.name.value === names.authenticated) authenticated = true;
    if (directive.name.value === names.requiresScopes) {
      const arg = directive.arguments?.find((a) => a.name.value === 'scopes');
      const value = arg ? valueFromASTUntyped(arg.value) : [];
      if (Array.isArray(value)) scopes.push(value.map((alt) => (Array.isArray(alt) ? alt.map(String) : [String(alt)])));
    }
  }
  return authenticated || scopes.length > 0 ? { authenticated, scopes } : undefined;
}

function merge(a: FieldRequirement | undefined, b: FieldRequirement | undefined): FieldRequirement | undefined {
  if (!a) return b;
  if (!b) return a;
  return { authenticated: a.authenticated || b.authenticated, scopes: [...a.scopes, ...b.scopes] };
}

/**
 * Reads the requirements from a schema built from the supergraph SDL. A directive on a type
 * (object, interface, scalar, enum) applies to every field returning that type; on an
 * interface field it also applies to the implementing types' fields.
 */
export function readAuthRequirements(supergraph: GraphQLSchema): AuthRequirements {
  const names = directiveNames(supergraph);
  const byType = new Map<string, FieldRequirement | undefined>();
  const typeRequirement = (type: GraphQLNamedType) => {
    if (!byType.has(type.name)) {
      const nodes = [type.astNode, ...(type.extensionASTNodes ?? [])].filter((n) => n !== undefined && n !== null);
      byType.set(
        type.name,
        nodes.reduce<FieldRequirement | undefined>((acc, node) => merge(acc, readRequirement(node.directives, names)), undefined),
      );
    }
    return byType.get(type.name);
  };
  const byField = new Map<string, FieldRequirement | undefined>();
  return {
    forField(parent, field) {
      const key = `${parent.name}.${field.name}`;
      if (!byField.has(key)) {
        let requirement = merge(readRequirement(field.astNode?.directives, names), typeRequirement(getNamedType(field.type)));
        if (isObjectType(parent)) {
          for (const iface of parent.getInterfaces()) {
            const ifaceField = iface.getFields()[field.name];
            if (ifaceField) requirement = merge(requirement, readRequirement(ifaceField.astNode?.directives, names));
          }
        }
        if (isInterfaceType(parent)) {
          for (const impl of supergraph.getPossibleTypes(parent)) {
            const implField = impl.getFields()[field.name];
            if (implField) requirement = merge(requirement, readRequirement(implField.astNode?.directives, names));
          }
        }
        byField.set(key, requirement);
      }
      return byField.get(key);
    },
  };
}

/** Why a field was removed, or undefined when the principal may select it. */
export function denialFor(requirement: FieldRequirement | undefined, principal: Principal | undefined) {
  if (!requirement) return undefined;
  if ((requirement.authenticated || requirement.scopes.length > 0) && !principal) return ErrorCode.UNAUTHENTICATED;
  const held = new Set(principal?.scopes ?? []);
  // Each @requiresScopes application must be satisfied; within one, any alternative whose scopes are all held.
  for (const alternatives of requirement.scopes) {
    if (!alternatives.some((set) => set.every((scope) => held.has(scope)))) return ErrorCode.FORBIDDEN;
  }
  return undefined;
}

export interface FilteredOperation {
  /** The operation without unauthorized fields; undefined when nothing authorized is left. */
  document: DocumentNode | undefined;
  /** One error per removed field occurrence, with its response path. */
  errors: GhostPayError[];
  /** Response paths (response keys, lists not indexed) of removed nullable fields, to answer them with null. */
  removedPaths: string[][];
  changed: boolean;
}

/**
 * Whether execution leaves a selection out by its `@skip`/`@include`, decided as graphql-js
 * decides it (`getDirectiveValues` over the coerced variables). Only a certain skip counts:
 * with variables that do not coerce (execution then refuses the operation) or a condition
 * that cannot be read, the selection is treated as included, so it is checked.
 */
function skipOracle(schema: GraphQLSchema, operation: OperationDefinitionNode, variables: Record<string, unknown>) {
  // Coerced on the first selection carrying a directive: most operations have none.
  let values: Record<string, unknown> | undefined | null = null;
  return (node: FieldNode | InlineFragmentNode | FragmentSpreadNode): boolean => {
    if (!node.directives?.length) return false;
    if (values === null) {
      const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables);
      values = coerced.errors ? undefined : coerced.coerced;
    }
    if (!values) return false;
    try {
      if (getDirectiveValues(GraphQLSkipDirective, node, values)?.if === true) return true;
      return getDirectiveValues(GraphQLIncludeDirective, node, values)?.if === false;
    } catch {
      return false;
    }
  };
}

/**
 * Removes from a validated operation every field the principal may not select, and fields
 * whose whole selection was removed. Fragments are rewritten once (a field's requirement
 * depends only on its parent type, never on where the fragment is spread). A selection the
 * operation skips (`@skip`/`@include` with the request's `variables`) is not checked: it is
 * never executed. Only a certain skip counts; anything executed is always checked.
 */
export function filterOperation(
  schema: GraphQLSchema,
  requirements: AuthRequirements,
  document: DocumentNode,
  operationName: string | null | undefined,
  principal: Principal | undefined,
  variables: Record<string, unknown> = {},
): FilteredOperation {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations[0];
  const fragments = new Map(
    document.definitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION).map((f) => [f.name.value, f]),
  );
  const removed = new Set<FieldNode>();
  const errors: GhostPayError[] = [];
  const removedPaths: string[][] = [];
  if (!operation) return { document, errors, removedPaths, changed: false };
  const root = schema.getRootType(operation.operation);
  if (!root) return { document, errors, removedPaths, changed: false };
  const skipped = skipOracle(schema, operation, variables);

  const walk = (set: SelectionSetNode, parent: GraphQLCompositeType, path: string[], seen: Set<string>) => {
    for (const selection of set.selections) {
      if (skipped(selection)) continue;
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (name.startsWith('__')) continue;
        if (!('getFields' in parent)) continue;
        const field = parent.getFields()[name];
        if (!field) continue;
        const fieldPath = [...path, selection.alias?.value ?? name];
        const code = denialFor(requirements.forField(parent, field), principal);
        if (code) {
          removed.add(selection);
          // A removed nullable field answers null; a non-null one is left out rather than bubbling null up.
          if (!isNonNullType(field.type)) removedPaths.push(fieldPath);
          const message =
            code === ErrorCode.UNAUTHENTICATED
              ? `Field "${parent.name}.${name}" requires authentication`
              : `Field "${parent.name}.${name}" requires a scope the token does not carry`;
          errors.push(new GhostPayError(code, message, { path: fieldPath, extensions: { authorization: 'router' } }));
          continue;
        }
        const named = getNamedType(field.type);
        if (selection.selectionSet && isCompositeType(named)) walk(selection.selectionSet, named, fieldPath, seen);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const condition = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
        walk(selection.selectionSet, isCompositeType(condition) ? condition : parent, path, seen);
      } else {
        const fragment = fragments.get(selection.name.value);
        if (!fragment || seen.has(fragment.name.value)) continue;
        const condition = schema.getType(fragment.typeCondition.name.value);
        walk(fragment.selectionSet, isCompositeType(condition) ? condition : parent, path, new Set([...seen, fragment.name.value]));
      }
    }
  };
  walk(operation.selectionSet, root, [], new Set());
  if (removed.size === 0) return { document, errors, removedPaths, changed: false };

  const rewrittenFragments = new Map<string, FragmentDefinitionNode | null>();
  const rewriteFragment = (name: string): FragmentDefinitionNode | null => {
    if (!rewrittenFragments.has(name)) {
      rewrittenFragments.set(name, null); // cycle guard; validated operations have no cycles
      const fragment = fragments.get(name);
      const selectionSet = fragment ? rewrite(fragment.selectionSet) : null;
      rewrittenFragments.set(name, fragment && selectionSet ? { ...fragment, selectionSet } : null);
    }
    return rewrittenFragments.get(name) ?? null;
  };
  const rewrite = (set: SelectionSetNode): SelectionSetNode | null => {
    const selections: SelectionSetNode['selections'][number][] = [];
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (removed.has(selection)) continue;
        if (selection.selectionSet) {
          const inner = rewrite(selection.selectionSet);
          if (inner) selections.push({ ...selection, selectionSet: inner });
        } else selections.push(selection);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const inner = rewrite(selection.selectionSet);
        if (inner) selections.push({ ...selection, selectionSet: inner });
      } else if (rewriteFragment(selection.name.value)) selections.push(selection);
    }
    return selections.length > 0 ? { ...set, selections } : null;
  };
  const selectionSet = rewrite(operation.selectionSet);
  if (!selectionSet) return { document: undefined, errors, removedPaths, changed: true };

  // Keep only fragments still spread somewhere, and variables still used, so the result is a valid operation.
  const usedFragments = new Set<string>();
  const usedVariables = new Set<string>();
  const collect = (node: unknown) => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const item of node) collect(item);
      return;
    }
    const n = node as { kind?: string; name?: { value: string } };
    if (n.kind === Kind.FRAGMENT_SPREAD && n.name && !usedFragments.has(n.name.value)) {
      usedFragments.add(n.name.value);
      collect(rewriteFragment(n.name.value));
    }
    if (n.kind === Kind.VARIABLE && n.name) usedVariables.add(n.name.value);
    for (const [key, value] of Object.entries(node)) if (key !== 'loc') collect(value);
  };
  collect(selectionSet);
  collect(operation.directives);
  const newOperation: OperationDefinitionNode = {
    ...operation,
    selectionSet,
    variableDefinitions: operation.variableDefinitions?.filter((v) => usedVariables.has(v.variable.name.value)),
  };
  const definitions = [
    newOperation,
    ...[...usedFragments].map((name) => rewriteFragment(name)).filter((f): f is FragmentDefinitionNode => f !== null),
  ];
  return { document: { kind: Kind.DOCUMENT, definitions }, errors, removedPaths, changed: true };
}

/** Answers removed fields with null where their parent object is present, so clients see every key they asked for. */
export function fillRemovedWithNull(data: Record<string, unknown> | null | undefined, paths: string[][]) {
  if (!data) return;
  const fill = (value: unknown, path: string[]) => {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      for (const item of value) fill(item, path);
      return;
    }
    if (typeof value !== 'object') return;
    const [head, ...rest] = path;
    if (head === undefined) return;
    // The path is made of the client's response names: `__proto__` or `toString` must name the
    // response's own keys, never reach Object.prototype.
    const record = value as Record<string, unknown>;
    const own = Object.hasOwn(record, head);
    if (rest.length === 0) {
      if (!own) setOwn(record, head, null);
      return;
    }
    if (own) fill(record[head], rest);
  };
  for (const path of paths) fill(data, path);
}
