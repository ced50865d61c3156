import {
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  GraphQLError,
  type GraphQLNamedType,
  type GraphQLOutputType,
  type GraphQLSchema,
  getNamedType,
  isAbstractType,
  isCompositeType,
  isEnumType,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  specifiedScalarTypes,
  type ValueNode,
  valueFromASTUntyped,
} from 'graphql';
import { getOwn, hasOwn, isPrototypeName, setOwn } from './own-properties.ts';

/**
 * The response shape of one client operation, compiled once: which fields go into the client's
 * response, in which order, under which conditions (@skip/@include, type conditions), and how
 * each value is checked (non-null, lists, leaf types). Applying it to the merged subgraph data
 * gives the same `data` and post-processing errors as @apollo/gateway's `computeResponse`,
 * without walking federation-internals `Operation` objects on every request.
 */

/** A @skip/@include argument: a literal or a variable read at request time. */
type Flag = boolean | { variable: string };

type TypeShape =
  | { kind: 'nonNull'; of: TypeShape }
  | { kind: 'list'; of: TypeShape }
  | { kind: 'leaf'; name: string; isValid: (value: unknown) => boolean }
  | { kind: 'composite'; name: string; selections: ShapeSelection[] };

interface ShapeField {
  kind: 'field';
  responseName: string;
  /** The response name is one Object.prototype has: read and written as an own property (own-properties.ts). */
  prototypeName: boolean;
  skip?: Flag;
  include?: Flag;
  typename: boolean;
  introspection: boolean;
  type: TypeShape;
}

interface ShapeFragment {
  kind: 'fragment';
  skip?: Flag;
  include?: Flag;
  typeCondition?: string;
  selections: ShapeSelection[];
}

type ShapeSelection = ShapeField | ShapeFragment;

export interface ResponseShape {
  readonly rootTypeName: string;
  readonly selections: ShapeSelection[];
  /** Variable defaults of the operation, applied under the request's variables for @skip/@include. */
  readonly defaults: Record<string, unknown>;
  /** True when the operation selects __schema/__type: left to the gateway's own executor. */
  readonly hasIntrospection: boolean;
}

const integerString = /^-?(?:0|[1-9][0-9]*)$/;
const builtInScalars = new Set(specifiedScalarTypes.map((t) => t.name));

/** The same leaf check as federation-internals `isValidLeafValue`. */
function leafValidator(type: GraphQLNamedType): (value: unknown) => boolean {
  if (isScalarType(type) && !builtInScalars.has(type.name)) return () => true;
  if (isEnumType(type)) {
    const names = new Set(type.getValues().map((v) => v.name));
    return (value) => typeof value === 'string' && names.has(value);
  }
  const name = type.name;
  return (value) => {
    if (typeof value === 'boolean') return name === 'Boolean';
    if (typeof value === 'number' && Number.isFinite(value)) {
      if (name === 'Int' || name === 'ID') return integerString.test(String(value));
      return name === 'Float';
    }
    if (typeof value === 'string') return name !== 'Boolean' && name !== 'Int' && name !== 'Float';
    return false;
  };
}

function flagOf(
  node:
    | FieldNode
    | { directives?: readonly { name: { value: string }; arguments?: readonly { name: { value: string }; value: ValueNode }[] }[] },
  name: 'skip' | 'include',
): Flag | undefined {
  const directive = node.directives?.find((d) => d.name.value === name);
  const arg = directive?.arguments?.find((a) => a.name.value === 'if');
  if (!arg) return undefined;
  if (arg.value.kind === Kind.VARIABLE) return { variable: arg.value.name.value };
  return Boolean(valueFromASTUntyped(arg.value));
}

export function compileResponseShape(schema: GraphQLSchema, document: DocumentNode, operationName?: string | null): ResponseShape {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations[0];
  if (!operation) throw new Error(`operation ${operationName ?? '(anonymous)'} not found`);
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const rootType =
    operation.operation === 'query'
      ? schema.getQueryType()
      : operation.operation === 'mutation'
        ? schema.getMutationType()
        : schema.getSubscriptionType();
  if (!rootType) throw new Error(`schema has no ${operation.operation} type`);
  let hasIntrospection = false;

  const typeShape = (type: GraphQLOutputType, selectionSet: SelectionSetNode | undefined, parent: string): TypeShape => {
    if (isNonNullType(type)) return { kind: 'nonNull', of: typeShape(type.ofType, selectionSet, parent) };
    if (isListType(type)) return { kind: 'list', of: typeShape(type.ofType, selectionSet, parent) };
    const named = getNamedType(type);
    if (isCompositeType(named)) return { kind: 'composite', name: named.name, selections: selectionsOf(selectionSet, named.name) };
    return { kind: 'leaf', name: named.name, isValid: leafValidator(named) };
  };

  const selectionsOf = (selectionSet: SelectionSetNode | undefined, parentTypeName: string): ShapeSelection[] => {
    if (!selectionSet) return [];
    const parent = schema.getType(parentTypeName);
    const out: ShapeSelection[] = [];
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        const responseName = selection.alias?.value ?? name;
        const skip = flagOf(selection, 'skip');
        const include = flagOf(selection, 'include');
        if (name === '__typename') {
          out.push({
            kind: 'field',
            responseName,
            prototypeName: isPrototypeName(responseName),
            skip,
            include,
            typename: true,
            introspection: false,
            type: { kind: 'leaf', name: 'String', isValid: () => true },
          });
          continue;
        }
        if (name === '__schema' || name === '__type') {
          hasIntrospection = true;
          continue;
        }
        const fields = parent && 'getFields' in parent ? parent.getFields() : undefined;
        const definition = fields?.[name];
        if (!definition) throw new Error(`unknown field ${parentTypeName}.${name}`);
        out.push({
          kind: 'field',
          responseName,
          prototypeName: isPrototypeName(responseName),
          skip,
          include,
          typename: false,
          introspection: false,
          type: typeShape(definition.type as GraphQLOutputType, selection.selectionSet, parentTypeName),
        });
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const condition = selection.typeCondition?.name.value;
        out.push({
          kind: 'fragment',
          skip: flagOf(selection, 'skip'),
          include: flagOf(selection, 'include'),
          typeCondition: condition,
          selections: selectionsOf(selection.selectionSet, condition ?? parentTypeName),
        });
      } else {
        const fragment = fragments.get(selection.name.value);
        if (!fragment) throw new Error(`unknown fragment ${selection.name.value}`);
        const condition = fragment.typeCondition.name.value;
        out.push({
          kind: 'fragment',
          skip: flagOf(selection, 'skip'),
          include: flagOf(selection, 'include'),
          typeCondition: condition,
          selections: selectionsOf(fragment.selectionSet, condition),
        });
      }
    }
    return out;
  };

  const defaults: Record<string, unknown> = {};
  for (const definition of operation.variableDefinitions ?? []) {
    if (definition.defaultValue) setOwn(defaults, definition.variable.name.value, valueFromASTUntyped(definition.defaultValue));
  }
  const selections = selectionsOf(operation.selectionSet, rootType.name);
  return { rootTypeName: rootType.name, selections, defaults, hasIntrospection };
}

const NULL_BUBBLE_UP = 1;
const OK = 0;

interface ShapeRun {
  schema: GraphQLSchema;
  variables: Record<string, unknown>;
  errors: GraphQLError[];
  path: (string | number)[];
  subtype: (condition: string, typeName: string) => boolean;
  invalid: boolean;
  errored: boolean;
}

function flagValue(flag: Flag, variables: Record<string, unknown>, directive: 'skip' | 'include'): boolean {
  if (typeof flag === 'boolean') return flag;
  const value = getOwn(variables, flag.variable);
  // The gateway's message (computeResponse): a defaulted nullable variable sent as null gets here.
  if (typeof value !== 'boolean')
    throw new Error(`Unexpected value ${value} for variable $${flag.variable} of @${directive}(if: $${flag.variable})`);
  return value;
}

function skipped(selection: ShapeSelection, variables: Record<string, unknown>): boolean {
  return (
    (selection.skip !== undefined && flagValue(selection.skip, variables, 'skip')) ||
    (selection.include !== undefined && !flagValue(selection.include, variables, 'include'))
  );
}

function pathDescription(path: readonly (string | number)[], currentType: string, parentType: string) {
  const element = path[path.length - 1];
  return typeof element === 'string' ? `field ${parentType}.${element}` : `array element of type ${currentType} at index ${element}`;
}

function typeLabel(shape: TypeShape): string {
  if (shape.kind === 'nonNull') return `${typeLabel(shape.of)}!`;
  if (shape.kind === 'list') return `[${typeLabel(shape.of)}]`;
  return shape.name;
}

function applySelections(
  run: ShapeRun,
  input: Record<string, unknown>,
  selections: ShapeSelection[],
  output: Record<string, unknown>,
  parentType: string,
): number {
  for (const selection of selections) {
    if ((selection.skip !== undefined || selection.include !== undefined) && skipped(selection, run.variables)) continue;
    if (selection.kind === 'field') {
      const responseName = selection.responseName;
      const outputValue = selection.prototypeName ? getOwn(output, responseName) : output[responseName];
      let inputValue = hasOwn.call(input, responseName) ? (input[responseName] ?? null) : null;
      if (selection.typename) {
        if (outputValue === undefined) {
          if (inputValue === null && responseName !== '__typename') inputValue = input.__typename ?? null;
          const type = (typeof inputValue === 'string' ? run.schema.getType(inputValue) : undefined) ?? run.schema.getType(parentType);
          if (!isObjectType(type)) return NULL_BUBBLE_UP;
          if (selection.prototypeName) setOwn(output, responseName, type.name);
          else output[responseName] = type.name;
        }
        continue;
      }
      run.path.push(responseName);
      const value = updateOutputValue(run, outputValue, selection.type, inputValue, parentType);
      if (selection.prototypeName) setOwn(output, responseName, value);
      else output[responseName] = value;
      run.path.pop();
      if (run.invalid) return NULL_BUBBLE_UP;
    } else {
      const typename = input.__typename as string | undefined;
      // As the gateway's computeResponse asserts (a field aliased `__typename` can put any value there).
      if (typename && typeof typename !== 'string') throw new Error(`Got unexpected value for __typename: ${typename}`);
      const condition = selection.typeCondition;
      const applies = !condition || (typename ? run.subtype(condition, typename) : run.subtype(condition, parentType));
      if (applies && applySelections(run, input, selection.selections, output, condition ?? parentType) === NULL_BUBBLE_UP)
        return NULL_BUBBLE_UP;
    }
  }
  return OK;
}

/**
 * The gateway's `updateOutputValue`, returning the value and leaving its two flags in the run
 * (no result object per value: shaping a large response allocates only the response itself).
 * `invalid`: a non-null field came out null (the parent must bubble). `errored`: an error was
 * already reported for this value.
 */
function updateOutputValue(run: ShapeRun, outputValue: unknown, type: TypeShape, inputValue: unknown, parentType: string): unknown {
  run.invalid = false;
  run.errored = false;
  if (outputValue === null || (outputValue !== undefined && type.kind === 'leaf')) return outputValue;
  if (type.kind === 'nonNull') {
    const inner = updateOutputValue(run, outputValue, type.of, inputValue, parentType);
    if (inner === null) {
      if (!run.errored) {
        run.errors.push(
          new GraphQLError(`Cannot return null for non-nullable ${pathDescription(run.path, typeLabel(type.of), parentType)}.`, {
            path: [...run.path],
            extensions: { code: 'INVALID_GRAPHQL' },
          }),
        );
      }
      run.invalid = true;
      run.errored = true;
      return null;
    }
    run.invalid = false;
    run.errored = false;
    return inner;
  }
  if (inputValue === null) return null;
  if (type.kind === 'list') {
    // The gateway's assertions, with its messages (the value is part of them).
    if (!Array.isArray(inputValue))
      throw new Error(`Invalid non-list value ${inputValue} returned by subgraph for list type ${typeLabel(type)}`);
    if (outputValue !== undefined && !Array.isArray(outputValue))
      throw new Error(`Invalid non-list value ${outputValue} returned by subgraph for list type ${typeLabel(type)}`);
    const outputList = outputValue as unknown[] | undefined;
    if (outputList && outputList.length !== inputValue.length)
      throw new Error(`[${inputValue}].length (${inputValue.length}) !== [${outputList}].length (${outputList.length})`);
    const length = inputValue.length;
    let shouldNullify = false;
    let hasErrors = false;
    const updated = new Array(length);
    for (let i = 0; i < length; i++) {
      run.path.push(i);
      updated[i] = updateOutputValue(run, outputList?.[i], type.of, inputValue[i], parentType);
      run.path.pop();
      if (run.invalid) shouldNullify = true;
      if (run.errored) hasErrors = true;
    }
    run.invalid = false;
    run.errored = hasErrors;
    return shouldNullify ? null : updated;
  }
  if (type.kind === 'composite') {
    // The gateway's assertions, with its messages (both name the input value).
    if (typeof inputValue !== 'object' || (outputValue !== undefined && typeof outputValue !== 'object'))
      throw new Error(`Invalid non-object value ${inputValue} returned by subgraph for composite type ${type.name}`);
    const input = inputValue as Record<string, unknown>;
    const inputTypename = input.__typename;
    // The gateway fails the whole response here (a field aliased `__typename` that is not a string).
    if (inputTypename !== undefined && typeof inputTypename !== 'string')
      throw new Error(`Invalid non-string value ${inputTypename} for __typename at ${run.path}`);
    let objectType = type.name;
    if (inputTypename) {
      const named = typeof inputTypename === 'string' ? run.schema.getType(inputTypename) : undefined;
      if (!named || !isCompositeType(named)) {
        run.errors.push(
          new GraphQLError(`Invalid __typename found for object at ${pathDescription(run.path, type.name, parentType)}.`, {
            path: [...run.path],
            extensions: { code: 'INVALID_GRAPHQL' },
          }),
        );
        run.invalid = false;
        run.errored = true;
        return null;
      }
      objectType = named.name;
    }
    const output = (outputValue as Record<string, unknown> | undefined) ?? {};
    const bubbled = applySelections(run, input, type.selections, output, objectType) === NULL_BUBBLE_UP;
    run.invalid = false;
    run.errored = bubbled;
    return bubbled ? null : output;
  }
  const valid = type.isValid(inputValue);
  if (!valid) {
    run.errors.push(
      new GraphQLError(`Invalid value found for ${pathDescription(run.path, type.name, parentType)}.`, {
        path: [...run.path],
        extensions: { code: 'INVALID_GRAPHQL' },
      }),
    );
  }
  run.invalid = false;
  run.errored = !valid;
  return valid ? inputValue : null;
}

/** `isSubtype(condition, type)` as the gateway decides it, memoized per schema. */
export function createSubtypeTester(schema: GraphQLSchema): (condition: string, typeName: string) => boolean {
  const memo = new Map<string, boolean>();
  return (condition, typeName) => {
    if (condition === typeName) return true;
    const key = `${condition}\u0000${typeName}`;
    let answer = memo.get(key);
    if (answer === undefined) {
      const abstract = schema.getType(condition);
      const candidate = schema.getType(typeName);
      answer =
        !!abstract &&
        !!candidate &&
        isAbstractType(abstract) &&
        (isObjectType(candidate) || isInterfaceType(candidate)) &&
        schema.isSubType(abstract, candidate);
      memo.set(key, answer);
    }
    return answer;
  };
}

/** Applies the shape to the merged subgraph data: the client's `data` and the value-completion errors. */
export function shapeResponse(
  shape: ResponseShape,
  schema: GraphQLSchema,
  subtype: (condition: string, typeName: string) => boolean,
  input: Record<string, unknown>,
  variables: Record<string, unknown> | undefined,
): { data: Record<string, unknown> | null; errors: GraphQLError[] } {
  const run: ShapeRun = {
    schema,
    variables: variables ? { ...shape.defaults, ...variables } : shape.defaults,
    errors: [],
    path: [],
    subtype,
    invalid: false,
    errored: false,
  };
  const data: Record<string, unknown> = {};
  const result = applySelections(run, input, shape.selections, data, shape.rootTypeName);
  return { data: result === NULL_BUBBLE_UP ? null : data, errors: run.errors };
}
