import { defineConfig } from 'vitest/config';

const packages = [
  'platform',
  'db',
  // The harness every other project rests on (lock waits, fresh databases, redis-server, raw requests).
  'test-support',
  'subgraphs/auth',
  'subgraphs/cards',
  'subgraphs/charges',
  'subgraphs/analytics',
  'router',
  'openapi-bridge',
  'stack',
  'deploy-checks',
  'bench',
  // The as-built design document's links and paths (docs/ARCHITECTURE.md).
  'docs',
];

/**
 * The reliability suite (reliability/) runs many OS processes for minutes: it joins the run
 * only when asked for by name (`npm run test:reliability`), never the default `npm test`.
 */
const reliabilityRequested = process.argv.some((arg) => arg.includes('@ghostpay/reliability'));

/**
 * One vitest run over every workspace: each package is a project named after it, and all
 * of them share one throwaway PostgreSQL cluster and redis-server (test-support/global-setup).
 */
export default defineConfig({
  // graphql 16 has no "exports" map: Node loads its CommonJS build, Vite its ESM build. In
  // tests our code (resolved by Vite) and the libraries Node loads (Apollo's schema builders,
  // graphql-ws, graphql-sse) would then hold two graphql realms, and `instanceof GraphQLError`
  // and `validate`'s schema check fail between them. Every project resolves the CommonJS
  // build, as Node does in production.
  resolve: { alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }] },
  test: {
    globalSetup: ['./test-support/src/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      ...packages.map((dir) => ({
        extends: true,
        test: {
          name: `@ghostpay/${dir.split('/').pop() === 'openapi-bridge' ? 'openapi-bridge' : dir.split('/').pop()}`,
          root: `./${dir}`,
          include: ['test/**/*.test.ts'],
        },
      })),
      ...(reliabilityRequested
        ? [
            {
              extends: true,
              test: {
                name: '@ghostpay/reliability',
                root: './reliability',
                include: ['test/**/*.test.ts'],
                // Each file runs its own multi-process cluster: one at a time on a 2-core machine.
                fileParallelism: false,
                testTimeout: 180_000,
                hookTimeout: 180_000,
              },
            },
          ]
        : []),
    ],
  },
});
