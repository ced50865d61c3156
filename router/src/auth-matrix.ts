import { type Principal, Roles, scopesByRole } from '@ghostpay/platform';
import {
  buildASTSchema,
  type DocumentNode,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLSchema,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  type OperationTypeNode,
  parse,
} from 'graphql';
import { filterOperation, markSecurityFeaturesEnforced, readAuthRequirements } from './auth-directives.ts';

/** The callers the matrix is computed for: no token, then each role with its scopes. */
export const matrixCallers = ['anonymous', ...Roles] as const;
export type MatrixCaller = (typeof matrixCallers)[number];

export interface MatrixCell {
  decision: 'allowed' | 'filtered' | 'refused';
  /** Codes of the router's errors (refused: the root field's; filtered: the nested fields'). */
  codes: string[];
  /** `Type.field` of nested fields removed (filtered). */
  removed: string[];
}

export interface MatrixRow {
  operationType: 'query' | 'mutation' | 'subscription';
  field: string;
  /** The operation the cell was computed (and is tested) with. */
  document: string;
  /** Dummy values for the operation's required variables. */
  variables: Record<string, unknown>;
  cells: Record<MatrixCaller, MatrixCell>;
}

export function principalFor(caller: MatrixCaller): Principal | undefined {
  if (caller === 'anonymous') return undefined;
  return {
    userId: `usr_matrix_${caller}`,
    role: caller,
    scopes: scopesByRole[caller],
    apiKeyId: `key_matrix_${caller}`,
    tokenId: 't',
    expiresAt: 0,
  };
}

function dummyValue(type: GraphQLInputType): unknown {
  if (isNonNullType(type)) return dummyValue(type.ofType);
  if (isListType(type)) return [dummyValue(type.ofType)];
  if (isEnumType(type)) return type.getValues()[0]?.value;
  if (isInputObjectType(type)) {
    const value: Record<string, unknown> = {};
    for (const field of Object.values(type.getFields())) if (isNonNullType(field.type)) value[field.name] = dummyValue(field.type);
    return value;
  }
  switch (getNamedType(type).name) {
    case 'Int':
      return 1;
    case 'Float':
      return 1.5;
    case 'Boolean':
      return true;
    default:
      return 'matrix';
  }
}

/** Leaf fields of a type, plus one level of object fields (without required arguments) with their leaves. */
function selectionFor(schema: GraphQLSchema, field: GraphQLField<unknown, unknown>, depth: number): string {
  const named = getNamedType(field.type);
  if (isLeafType(named)) return '';
  if (!isObjectType(named)) return ' { __typename }';
  const parts: string[] = [];
  for (const child of Object.values(named.getFields())) {
    if (child.args.some((a) => isNonNullType(a.type) && a.defaultValue === undefined)) continue;
    const childNamed = getNamedType(child.type);
    if (isLeafType(childNamed)) parts.push(child.name);
    else if (depth > 0) {
      const inner = selectionFor(schema, child, depth - 1);
      if (inner) parts.push(`${child.name}${inner}`);
    }
  }
  return parts.length > 0 ? ` { ${parts.join(' ')} }` : ' { __typename }';
}

/**
 * Computes, from the supergraph's own directives, what the router does with each root field
 * for each caller, using an operation that selects the field's leaves and one level below.
 */
export function computeAuthMatrix(supergraphSdl: string): MatrixRow[] {
  const schema = buildASTSchema(parse(markSecurityFeaturesEnforced(supergraphSdl)), { assumeValidSDL: true });
  const requirements = readAuthRequirements(schema);
  const rows: MatrixRow[] = [];
  for (const operationType of ['query', 'mutation', 'subscription'] as const) {
    const root = schema.getRootType(operationType as OperationTypeNode);
    if (!root) continue;
    for (const field of Object.values(root.getFields())) {
      if (field.name.startsWith('_')) continue;
      const variableDefinitions = field.args.filter((a) => isNonNullType(a.type));
      const variables = Object.fromEntries(variableDefinitions.map((a) => [a.name, dummyValue(a.type)]));
      const header =
        variableDefinitions.length > 0 ? `(${variableDefinitions.map((a) => `$${a.name}: ${String(a.type)}`).join(', ')})` : '';
      const args = variableDefinitions.length > 0 ? `(${variableDefinitions.map((a) => `${a.name}: $${a.name}`).join(', ')})` : '';
      const name = `Matrix_${field.name}`;
      const document = `${operationType} ${name}${header} { ${field.name}${args}${selectionFor(schema, field, 1)} }`;
      const parsed: DocumentNode = parse(document);
      const cells = {} as Record<MatrixCaller, MatrixCell>;
      for (const caller of matrixCallers) {
        const result = filterOperation(schema, requirements, parsed, name, principalFor(caller));
        const codes = [...new Set(result.errors.map((e) => String(e.extensions.code)))];
        const rootRemoved = result.errors.some((e) => e.path?.length === 1);
        if (!result.document || rootRemoved) cells[caller] = { decision: 'refused', codes, removed: [] };
        else if (result.changed) {
          const removed = result.errors.map((e) => /"([^"]+)"/.exec(e.message)?.[1] ?? '').filter(Boolean);
          cells[caller] = { decision: 'filtered', codes, removed: [...new Set(removed)] };
        } else cells[caller] = { decision: 'allowed', codes: [], removed: [] };
      }
      rows.push({ operationType, field: field.name, document, variables, cells });
    }
  }
  return rows;
}

export const matrixStart = '<!-- auth-matrix:start (generated by `npm run auth-matrix -w @ghostpay/router`; do not edit) -->';
export const matrixEnd = '<!-- auth-matrix:end -->';

export function renderAuthMatrix(rows: MatrixRow[]): string {
  const cell = (c: MatrixCell) =>
    c.decision === 'allowed'
      ? 'allowed'
      : c.decision === 'refused'
        ? `refused (${c.codes.join(', ')})`
        : `filtered: ${c.removed.join(', ')} (${c.codes.join(', ')})`;
  const lines = [
    `| root field | ${matrixCallers.join(' | ')} |`,
    `| --- | ${matrixCallers.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| \`${r.operationType} ${r.field}\` | ${matrixCallers.map((c) => cell(r.cells[c])).join(' | ')} |`),
  ];
  return `${matrixStart}\n${lines.join('\n')}\n${matrixEnd}`;
}

/** Replaces the generated block in a README (appends it when absent). */
export function spliceAuthMatrix(readme: string, table: string): string {
  const start = readme.indexOf(matrixStart.slice(0, 26));
  const end = readme.indexOf(matrixEnd);
  if (start < 0 || end < 0) return `${readme.trimEnd()}\n\n${table}\n`;
  return `${readme.slice(0, start)}${table}${readme.slice(end + matrixEnd.length)}`;
}
