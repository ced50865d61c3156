/**
 * One gateway of the federation benchmark in its own process (so each one's CPU time and peak
 * RSS are its own). BENCH_GATEWAY: `ghostpay` (our router, security features on), `apollo`
 * (vanilla @apollo/gateway in @apollo/server) or `hive` (@graphql-hive/gateway).
 * BENCH_SUPERGRAPH_PATH: the composed supergraph. BENCH_JWKS: the public keys our router verifies with.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createJwtVerifier, createLogger, loadConfig } from '@ghostpay/platform';
import { createRouter, gatewayWithCompiledExecutor, routerConfigSchema } from '@ghostpay/router';
import { serveChild } from '../child-process.ts';

process.env.APOLLO_TELEMETRY_DISABLED = 'true';
const kind = process.env.BENCH_GATEWAY;
const supergraphSdl = readFileSync(process.env.BENCH_SUPERGRAPH_PATH as string, 'utf8');
const logger = createLogger({ service: `bench-${kind}`, level: 'warn' });
let close: () => Promise<void> = async () => {};
const child = serveChild({ onStop: () => close() });

const listen = (server: Server) =>
  new Promise<string>((done) =>
    server.listen(0, '127.0.0.1', () => done(`http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`)),
  );

try {
  if (kind === 'ghostpay') {
    const config = loadConfig('router', routerConfigSchema, {
      // One replica: the in-memory limiter (the charge scenarios use Redis). Limits raised so the bench key is never refused.
      ROUTER_RATE_LIMIT_PER_MINUTE: '1000000000',
      ROUTER_MAX_COST: '10000000',
      ROUTER_PLAYGROUND: 'false',
      LOG_LEVEL: 'warn',
      ...(process.env.ROUTER_EXECUTOR ? { ROUTER_EXECUTOR: process.env.ROUTER_EXECUTOR } : {}),
    });
    const verifier = createJwtVerifier({
      jwks: JSON.parse(process.env.BENCH_JWKS as string),
      issuer: process.env.BENCH_JWT_ISSUER as string,
      audience: process.env.BENCH_JWT_AUDIENCE as string,
    });
    const router = createRouter({ config, logger, verifier, supergraphSdl, onRequestEvent: () => {} });
    const url = await router.start(0, '127.0.0.1');
    close = () => router.close();
    child.ready({ graphql: `${url}/graphql` });
  } else if (kind === 'apollo' || kind === 'apollo-compiled') {
    const { ApolloGateway } = await import('@apollo/gateway');
    const { ApolloServer } = await import('@apollo/server');
    const { startStandaloneServer } = await import('@apollo/server/standalone');
    const gateway = new ApolloGateway({ supergraphSdl });
    // apollo-compiled: the same server and data sources, only the plan executor swapped (isolates the executor's effect).
    const server = new ApolloServer({ gateway: kind === 'apollo-compiled' ? gatewayWithCompiledExecutor(gateway) : gateway });
    const { url } = await startStandaloneServer(server, { listen: { port: 0, host: '127.0.0.1' } });
    close = () => server.stop();
    child.ready({ graphql: url.endsWith('/') ? `${url}graphql` : `${url}/graphql` });
  } else if (kind === 'hive') {
    // Installed apart from the workspaces (bench/hive-gateway/README.md says why).
    const hiveRequire = createRequire(resolve(import.meta.dirname, '../../hive-gateway/package.json'));
    const hive = (await import(pathToFileURL(hiveRequire.resolve('@graphql-hive/gateway')).href)) as {
      createGatewayRuntime(options: Record<string, unknown>): unknown;
    };
    const gateway = hive.createGatewayRuntime({
      supergraph: supergraphSdl,
      logging: false,
      graphqlEndpoint: '/graphql',
      // Off: identical in-flight requests would otherwise share one execution (each request carries its own token anyway).
      inboundInflightRequestDeduplication: false,
    });
    const server = createServer(gateway as never);
    const url = await listen(server);
    close = async () => {
      await new Promise((done) => server.close(done));
      await (gateway as unknown as { dispose?: () => Promise<void> }).dispose?.();
    };
    child.ready({ graphql: url });
  } else {
    throw new Error(`unknown BENCH_GATEWAY "${kind}"`);
  }
} catch (error) {
  child.fail(error);
}
