import { operationFromDocument, type Schema } from '@apollo/federation-internals';
import type { ApolloGateway } from '@apollo/gateway';
import {
  type DocumentNode,
  GraphQLError,
  type GraphQLSchema,
  getOperationAST,
  getVariableValues,
  type VariableDefinitionNode,
} from 'graphql';
import {
  type CompiledPlan,
  compilePlan,
  executeCompiledPlan,
  type SubgraphResponse,
  type SubgraphSender,
  UnsupportedPlanError,
} from './compiled-plan.ts';
import type { QueryPlanLike } from './plan-types.ts';
import { compileResponseShape, createSubtypeTester, type ResponseShape, shapeResponse } from './response-shape.ts';

/**
 * The parts of ApolloGateway this executor uses. They are not in its public typings: the
 * gateway still loads the supergraph and plans (its planner and plan semantics are kept), only
 * execution and response shaping are replaced. Checked at first use, so a gateway upgrade that
 * renames them fails loudly in the executor tests rather than silently.
 */
interface GatewayInternals {
  apiSchema?: Schema;
  /** The supergraph as a graphql-js schema (join directives and all). */
  supergraphSchema?: GraphQLSchema;
  schema?: GraphQLSchema;
  queryPlanner?: { buildQueryPlan(operation: unknown, options?: Record<string, unknown>): QueryPlanLike };
  serviceMap?: Record<string, { dataSource: unknown }>;
  recursiveSelectionsLimitDisabled?: boolean;
  nonLocalSelectionsLimitDisabled?: boolean;
}

/** A data source that can take an already-serialized request body (the router's SubgraphDataSource). */
export interface SerializedDataSource {
  processSerialized(body: string, context: unknown): Promise<SubgraphResponse>;
}

type ProcessingDataSource = {
  process(options: {
    kind: string;
    request: Record<string, unknown>;
    context: unknown;
    incomingRequestContext: unknown;
  }): Promise<SubgraphResponse>;
};

export interface GatewayExecutionRequest {
  document: DocumentNode;
  queryHash: string;
  operationName?: string | null;
  request: { operationName?: string | null; variables?: Record<string, unknown> };
  context: unknown;
}

export interface GatewayExecutionResult {
  data?: Record<string, unknown> | null;
  errors?: readonly GraphQLError[];
  extensions?: Record<string, unknown>;
}

export interface CompiledExecutorOptions {
  gateway: ApolloGateway;
  /** Compiled operations kept (least recently compiled evicted first). @default 1000 */
  maxOperations?: number;
}

export interface CompiledExecutor {
  /**
   * Executes with the compiled plan, or returns undefined when this operation must go to the
   * gateway's own executor (introspection, @defer, subscriptions, interface-object rewrites).
   */
  execute(request: GatewayExecutionRequest): Promise<GatewayExecutionResult | undefined>;
  /** Drops every compiled operation (called on supergraph reloads). */
  reset(): void;
  /** Operations held compiled, and those handed to the gateway's executor. */
  counts(): { compiled: number; fallback: number };
}

type Entry =
  | {
      kind: 'compiled';
      plan: CompiledPlan;
      shape: ResponseShape;
      /** The operation's variable definitions: the request's values are checked against them, as the gateway does. */
      variableDefinitions: readonly VariableDefinitionNode[];
    }
  | { kind: 'fallback'; reason: string };

interface SchemaState {
  api: GraphQLSchema;
  apiSubtype: (condition: string, typeName: string) => boolean;
  supergraph: GraphQLSchema;
}

/**
 * A plan executor that compiles each operation's query plan and response shape once (keyed by
 * query hash and operation name), then per request only: serializes variables after a
 * pre-serialized request prefix, builds representations, merges answers in place and shapes
 * the response. Same data, errors and error paths as @apollo/gateway's executor (the executor
 * tests compare both on a corpus of queries).
 */
export function createCompiledExecutor(options: CompiledExecutorOptions): CompiledExecutor {
  const gateway = options.gateway as unknown as GatewayInternals;
  const maxOperations = options.maxOperations ?? 1000;
  const entries = new Map<string, Entry>();
  let schemaState: SchemaState | undefined;
  let schemaOf: GraphQLSchema | undefined;

  const state = (): SchemaState => {
    if (!gateway.schema || !gateway.apiSchema || !gateway.supergraphSchema || !gateway.queryPlanner) {
      throw new Error('ApolloGateway internals (schema, apiSchema, supergraphSchema, queryPlanner) are not available');
    }
    if (!schemaState || schemaOf !== gateway.schema) {
      // A reloaded supergraph: plans and shapes compiled against the old one are dropped.
      entries.clear();
      schemaOf = gateway.schema;
      schemaState = { api: gateway.schema, apiSubtype: createSubtypeTester(gateway.schema), supergraph: gateway.supergraphSchema };
    }
    return schemaState;
  };

  const compile = (request: GatewayExecutionRequest, current: SchemaState): Entry => {
    const operationName = request.request.operationName ?? request.operationName ?? undefined;
    const shape = compileResponseShape(current.api, request.document, operationName);
    if (shape.hasIntrospection) return { kind: 'fallback', reason: 'introspection' };
    const operation = operationFromDocument(gateway.apiSchema as Schema, request.document, { operationName });
    const plan = (gateway.queryPlanner as NonNullable<GatewayInternals['queryPlanner']>).buildQueryPlan(operation, {
      recursiveSelectionsLimitDisabled: gateway.recursiveSelectionsLimitDisabled,
      nonLocalSelectionsLimitDisabled: gateway.nonLocalSelectionsLimitDisabled,
    });
    const variableDefinitions = getOperationAST(request.document, operationName)?.variableDefinitions ?? [];
    try {
      return { kind: 'compiled', plan: compilePlan(plan, current.supergraph), shape, variableDefinitions };
    } catch (error) {
      if (error instanceof UnsupportedPlanError) return { kind: 'fallback', reason: error.message };
      throw error;
    }
  };

  const senderFor = (context: unknown, requestContext: unknown): SubgraphSender => {
    const serviceMap = gateway.serviceMap ?? {};
    return (request) => {
      const source = serviceMap[request.serviceName]?.dataSource as Partial<SerializedDataSource & ProcessingDataSource> | undefined;
      if (!source) throw new Error(`Couldn't find service with name "${request.serviceName}"`);
      if (source.processSerialized)
        return source.processSerialized(`${request.prefix}${request.variablesJson ?? JSON.stringify(request.variables)}}`, context);
      // Any other data source gets the request as an object, as the gateway would pass it.
      return (source as ProcessingDataSource).process({
        kind: 'incoming operation',
        request: {
          query: request.query,
          variables: request.variables ?? (JSON.parse(request.variablesJson ?? '{}') as Record<string, unknown>),
          operationName: request.operationName,
        },
        context,
        incomingRequestContext: requestContext,
      });
    };
  };

  return {
    counts() {
      let compiled = 0;
      for (const entry of entries.values()) if (entry.kind === 'compiled') compiled++;
      return { compiled, fallback: entries.size - compiled };
    },
    reset() {
      entries.clear();
      schemaState = undefined;
    },
    async execute(request) {
      const current = state();
      const operationName = request.request.operationName ?? request.operationName ?? '';
      const key = `${request.queryHash}\u0000${operationName}`;
      let entry = entries.get(key);
      if (!entry) {
        try {
          entry = compile(request, current);
        } catch (error) {
          // Planning errors are reported the gateway's way: let its executor produce them.
          entry = { kind: 'fallback', reason: (error as Error).message };
        }
        if (entries.size >= maxOperations) entries.delete(entries.keys().next().value as string);
        entries.set(key, entry);
      }
      if (entry.kind === 'fallback') return undefined;

      const variables = request.request.variables ?? undefined;
      // Like the gateway's `validateIncomingRequest`: a required variable missing, a value of the
      // wrong type or an unknown enum value is refused before any subgraph is called.
      if (entry.variableDefinitions.length > 0) {
        const coerced = getVariableValues(current.api, entry.variableDefinitions, variables ?? {});
        if (coerced.errors) return { errors: coerced.errors };
      }
      const errors: GraphQLError[] = [];
      const result: Record<string, unknown> = {};
      await executeCompiledPlan(entry.plan, {
        variables,
        defaults: entry.shape.defaults,
        send: senderFor(request.context, request),
        errors,
        result,
        shared: undefined,
      });
      let shaped: ReturnType<typeof shapeResponse>;
      try {
        shaped = shapeResponse(entry.shape, current.api, current.apiSubtype, result, variables);
      } catch (error) {
        // A subgraph answered with data of the wrong shape: the gateway reports it as one error.
        return { errors: [new GraphQLError((error as Error).message, { originalError: error as Error })] };
      }
      if (errors.length > 0) return { errors, data: shaped.data };
      // Like the gateway: value-completion problems are reported in extensions when nothing else failed.
      if (shaped.errors.length > 0) return { extensions: { valueCompletion: shaped.errors }, data: shaped.data };
      return { data: shaped.data };
    },
  };
}
