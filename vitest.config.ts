import { defineConfig } from 'vitest/config';

const packages = [
  'platform',
  'db',
  'subgraphs/auth',
  'subgraphs/cards',
  'subgraphs/charges',
  'subgraphs/analytics',
  'router',
  'openapi-bridge',
  'stack',
  'deploy-checks',
];

/**
 * One vitest run over every workspace: each package is a project named after it, and all
 * of them share one throwaway PostgreSQL cluster and redis-server (test-support/global-setup).
 */
export default defineConfig({
  test: {
    globalSetup: ['./test-support/src/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: packages.map((dir) => ({
      extends: true,
      test: {
        name: `@ghostpay/${dir.split('/').pop() === 'openapi-bridge' ? 'openapi-bridge' : dir.split('/').pop()}`,
        root: `./${dir}`,
        include: ['test/**/*.test.ts'],
      },
    })),
  },
});
