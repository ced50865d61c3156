import type { ApolloGateway } from '@apollo/gateway';
import { type CompiledExecutor, createCompiledExecutor, type GatewayExecutionRequest } from './compiled-executor.ts';

type Loaded = Awaited<ReturnType<ApolloGateway['load']>>;
type GatewayExecutor = Loaded['executor'];

/**
 * Wraps a gateway executor so operations run on the compiled executor, and those it leaves
 * aside (introspection, @defer, rewrites, planning errors) on the gateway's own.
 */
export function compiledGatewayExecutor(
  gateway: ApolloGateway,
  fallback: GatewayExecutor,
  executor: CompiledExecutor = createCompiledExecutor({ gateway }),
): GatewayExecutor {
  return async (requestContext) => {
    const result = await executor.execute(requestContext as unknown as GatewayExecutionRequest);
    return (result ?? (await fallback(requestContext))) as Awaited<ReturnType<GatewayExecutor>>;
  };
}

/** An Apollo Server `gateway` whose executor is the compiled one (tests, benchmarks). */
export function gatewayWithCompiledExecutor(gateway: ApolloGateway) {
  const executor = createCompiledExecutor({ gateway });
  gateway.onSchemaLoadOrUpdate(() => executor.reset());
  return {
    executor,
    onSchemaLoadOrUpdate: gateway.onSchemaLoadOrUpdate.bind(gateway),
    stop: () => gateway.stop(),
    async load(options: Parameters<ApolloGateway['load']>[0]) {
      const loaded = await gateway.load(options);
      return { ...loaded, executor: compiledGatewayExecutor(gateway, loaded.executor, executor) };
    },
  };
}
