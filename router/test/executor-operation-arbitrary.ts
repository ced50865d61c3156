import fc from 'fast-check';
import {
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLSchema,
  getNamedType,
  isAbstractType,
  isCompositeType,
  isInterfaceType,
  isLeafType,
  isNonNullType,
  isObjectType,
  parse,
  validate,
} from 'graphql';

/**
 * Random valid operations over any (API) schema, for differential tests of the compiled
 * executor against vanilla @apollo/gateway: nested selections across entity boundaries,
 * aliases (one field twice with different arguments, an alias equal to another field's name,
 * `__typename` and Object.prototype names as aliases), inline fragments and named fragment
 * spreads on the type itself, its interfaces, unions and possible types, @skip/@include with
 * literal and variable conditions (variables with and without defaults, sent, omitted or null),
 * `__typename` anywhere, and field arguments as literals or variables.
 *
 * Operations are generated as a small tree and rendered to text; the tree may be invalid
 * (overlapping response names with different fields or arguments): `generatedOperation`
 * renders and validates, and callers drop the invalid ones (`fc.pre`).
 */

type Condition = boolean | { variable: string };
interface Directive {
  name: 'skip' | 'include';
  condition: Condition;
}
type ArgValue = { literal: string } | { variable: string };
interface FieldNode {
  kind: 'field';
  name: string;
  alias?: string;
  args: { name: string; value: ArgValue }[];
  directives: Directive[];
  selections?: SelectionNode[];
}
interface FragmentNode {
  kind: 'inline' | 'spread';
  typeCondition?: string;
  directives: Directive[];
  selections: SelectionNode[];
}
type SelectionNode = FieldNode | FragmentNode;

/** A variable the generator may use: its declared type, default and the values a request may send. */
export interface VariableSpec {
  name: string;
  type: string;
  defaultValue?: string;
  /** Values a request may send (undefined: not sent). */
  values: unknown[];
}

export interface OperationOptions {
  /** Literal values (GraphQL text) per argument type (`[ID!]!`) or named type (`ID`), e.g. `{ ID: ['"b1"'], String: ['"e"'] }`. */
  literals: Record<string, string[]>;
  /** Variables per type name (the type the argument or condition needs, without `!`). */
  variables: VariableSpec[];
  /** Extra alias names besides the parent type's field names. */
  aliases?: string[];
  maxDepth?: number;
  maxSelections?: number;
}

export interface GeneratedOperation {
  query: string;
  variables: Record<string, unknown>;
}

const booleanVariableTypes = new Set(['Boolean', 'Boolean!']);

/** Types whose possible types overlap those of `type`: the valid fragment conditions inside it. */
function fragmentConditions(schema: GraphQLSchema, type: GraphQLCompositeType): string[] {
  const possible = (t: GraphQLCompositeType) => new Set(isAbstractType(t) ? schema.getPossibleTypes(t).map((p) => p.name) : [t.name]);
  const mine = possible(type);
  const out: string[] = [];
  for (const candidate of Object.values(schema.getTypeMap())) {
    if (candidate.name.startsWith('__') || !isCompositeType(candidate)) continue;
    if (candidate === schema.getQueryType() || candidate === schema.getMutationType() || candidate === schema.getSubscriptionType())
      continue;
    if ([...possible(candidate)].some((name) => mine.has(name))) out.push(candidate.name);
  }
  return out.sort();
}

export function operationArbitrary(schema: GraphQLSchema, options: OperationOptions): fc.Arbitrary<GeneratedOperation> {
  const maxDepth = options.maxDepth ?? 3;
  const maxSelections = options.maxSelections ?? 4;
  const conditionVariables = options.variables.filter((v) => booleanVariableTypes.has(v.type));

  const conditionArb: fc.Arbitrary<Condition> = fc.oneof(
    fc.boolean(),
    ...(conditionVariables.length ? [fc.constantFrom(...conditionVariables.map((v) => ({ variable: v.name })))] : []),
  );
  const directivesArb: fc.Arbitrary<Directive[]> = fc.oneof(
    { weight: 6, arbitrary: fc.constant<Directive[]>([]) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom<'skip' | 'include'>('skip', 'include'), conditionArb)
        .map(([name, condition]) => [{ name, condition }]),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(conditionArb, conditionArb).map(([a, b]) => [
        { name: 'skip' as const, condition: a },
        { name: 'include' as const, condition: b },
      ]),
    },
  );

  const argArb = (type: GraphQLInputType): fc.Arbitrary<ArgValue> | undefined => {
    const named = getNamedType(type).name;
    const literals = options.literals[String(type)] ?? options.literals[named] ?? [];
    const typeText = String(type);
    // A variable fits where its type is the argument's, or nullable with a default where non-null is needed.
    const vars = options.variables.filter(
      (v) =>
        v.type === typeText ||
        (isNonNullType(type) && v.type === named && v.defaultValue !== undefined) ||
        (!isNonNullType(type) && v.type === `${named}!`),
    );
    const choices: fc.Arbitrary<ArgValue>[] = [];
    if (literals.length) choices.push(fc.constantFrom(...literals.map((literal) => ({ literal }))));
    if (vars.length) choices.push(fc.constantFrom(...vars.map((v) => ({ variable: v.name }))));
    return choices.length ? fc.oneof(...choices) : undefined;
  };

  const memo = new Map<string, fc.Arbitrary<SelectionNode[]>>();
  const selectionsArb = (type: GraphQLCompositeType, depth: number): fc.Arbitrary<SelectionNode[]> => {
    const key = `${type.name}:${depth}`;
    const cached = memo.get(key);
    if (cached) return cached;
    const fields = isObjectType(type) || isInterfaceType(type) ? Object.values(type.getFields()) : [];
    const fieldNames = fields.map((f) => f.name);
    const aliasArb = fc.option(fc.constantFrom(...fieldNames, '__typename', ...(options.aliases ?? [])), { nil: undefined, freq: 3 });
    const fieldArbs: fc.Arbitrary<SelectionNode>[] = [];
    const typenameArb = fc
      .record({ alias: aliasArb, directives: directivesArb })
      .map(({ alias, directives }): SelectionNode => ({ kind: 'field', name: '__typename', alias, args: [], directives }));
    fieldArbs.push(typenameArb);
    for (const field of fields as GraphQLField<unknown, unknown>[]) {
      const named = getNamedType(field.type) as GraphQLNamedType;
      const composite = isCompositeType(named);
      if (composite && depth === 0) continue;
      const args: fc.Arbitrary<{ name: string; value: ArgValue } | undefined>[] = [];
      let impossible = false;
      for (const arg of field.args) {
        const value = argArb(arg.type);
        if (!value) {
          if (isNonNullType(arg.type) && arg.defaultValue === undefined) impossible = true;
          continue;
        }
        const required = isNonNullType(arg.type) && arg.defaultValue === undefined;
        const one = value.map((v) => ({ name: arg.name, value: v }));
        args.push(required ? one : fc.option(one, { nil: undefined }));
      }
      if (impossible) continue;
      const sub = composite ? selectionsArb(named as GraphQLCompositeType, depth - 1) : fc.constant(undefined);
      fieldArbs.push(
        fc.record({ alias: aliasArb, directives: directivesArb, args: fc.tuple(...args), selections: sub }).map(
          ({ alias, directives, args, selections }): SelectionNode => ({
            kind: 'field',
            name: field.name,
            alias,
            args: args.filter((a): a is { name: string; value: ArgValue } => a !== undefined),
            directives,
            selections: composite ? (selections as SelectionNode[]) : undefined,
          }),
        ),
      );
      if (!isLeafType(named) && !composite) throw new Error(`unexpected type ${named.name}`);
    }
    const conditions = fragmentConditions(schema, type);
    const fragmentArbs: fc.Arbitrary<SelectionNode>[] = [];
    if (depth > 0) {
      for (const condition of conditions) {
        const conditionType = schema.getType(condition) as GraphQLCompositeType;
        // A fragment's selections are one level shallower: every recursion ends.
        const inner = selectionsArb(conditionType, depth - 1);
        fragmentArbs.push(
          fc
            .record({
              kind: fc.constantFrom<'inline' | 'spread'>('inline', 'spread'),
              directives: directivesArb,
              selections: inner,
            })
            .map(({ kind, directives, selections }): SelectionNode => ({ kind, typeCondition: condition, directives, selections })),
        );
      }
    }
    const selectionArb = fragmentArbs.length
      ? fc.oneof({ weight: 4, arbitrary: fc.oneof(...fieldArbs) }, { weight: 1, arbitrary: fc.oneof(...fragmentArbs) })
      : fc.oneof(...fieldArbs);
    const arb = fc.array(selectionArb, { minLength: 1, maxLength: maxSelections });
    memo.set(key, arb);
    return arb;
  };

  const root = schema.getQueryType();
  if (!root) throw new Error('schema without a query type');
  const variableValuesArb = fc.tuple(
    ...options.variables.map((v) => fc.constantFrom(undefined, ...v.values).map((value) => [v.name, value] as const)),
  );
  return fc.tuple(selectionsArb(root, maxDepth), variableValuesArb).map(([selections, values]) => {
    const fragments: string[] = [];
    const used = new Set<string>();
    const renderCondition = (c: Condition) => {
      if (typeof c === 'boolean') return String(c);
      used.add(c.variable);
      return `$${c.variable}`;
    };
    const renderDirectives = (ds: Directive[]) => ds.map((d) => ` @${d.name}(if: ${renderCondition(d.condition)})`).join('');
    const render = (set: SelectionNode[]): string =>
      `{ ${set
        .map((s) => {
          if (s.kind === 'field') {
            const args = s.args.length
              ? `(${s.args
                  .map((a) => {
                    if ('literal' in a.value) return `${a.name}: ${a.value.literal}`;
                    used.add(a.value.variable);
                    return `${a.name}: $${a.value.variable}`;
                  })
                  .join(', ')})`
              : '';
            return `${s.alias ? `${s.alias}: ` : ''}${s.name}${args}${renderDirectives(s.directives)}${s.selections ? ` ${render(s.selections)}` : ''}`;
          }
          if (s.kind === 'inline')
            return `...${s.typeCondition ? ` on ${s.typeCondition}` : ''}${renderDirectives(s.directives)} ${render(s.selections)}`;
          const name = `F${fragments.length}`;
          fragments.push('');
          const index = fragments.length - 1;
          fragments[index] = `fragment ${name} on ${s.typeCondition} ${render(s.selections)}`;
          return `...${name}${renderDirectives(s.directives)}`;
        })
        .join(' ')} }`;
    const body = render(selections);
    const declared = options.variables.filter((v) => used.has(v.name));
    const header = declared.length
      ? `query Q(${declared.map((v) => `$${v.name}: ${v.type}${v.defaultValue !== undefined ? ` = ${v.defaultValue}` : ''}`).join(', ')}) `
      : '';
    const variables: Record<string, unknown> = {};
    for (const [name, value] of values) if (used.has(name) && value !== undefined) variables[name] = value;
    return { query: [`${header}${body}`, ...fragments].join(' '), variables };
  });
}

/** The GraphQL validation errors of a generated operation (empty when it is valid). */
export function validationErrors(schema: GraphQLSchema, query: string): string[] {
  return validate(schema, parse(query)).map((e) => e.message);
}
