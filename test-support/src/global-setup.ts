import { createDatabase, migrate } from '@ghostpay/db';
import type { TestProject } from 'vitest/node';
import { inCi } from './ci.ts';
import './provided-context.ts';
import { findPostgresBin, type PostgresCluster, startPostgresCluster } from './postgres-cluster.ts';
import { findRedisServer, type RedisServer, startRedisServer } from './redis-server.ts';

interface Services {
  postgres?: PostgresCluster;
  redis?: RedisServer;
  users: number;
}

const key = Symbol.for('ghostpay.test-services');
type GlobalWithServices = typeof globalThis & { [key]?: Promise<Services> };

/**
 * One PostgreSQL cluster and one redis-server per test run, shared by every project.
 * Under CI a missing binary fails the run; locally PGlite stands in for PostgreSQL and
 * Redis-backed tests skip.
 */
async function startServices(): Promise<Services> {
  const ci = inCi();
  const services: Services = { users: 0 };
  if (process.env.DATABASE_URL) {
    throw new Error('unset DATABASE_URL for tests: they start their own throwaway cluster');
  }
  const postgresBin = findPostgresBin();
  const redisServer = findRedisServer();
  // Both checked before either starts: a cluster started and then left by the throw (no
  // teardown runs for a setup that failed) would outlive the run.
  if (ci && !postgresBin) throw new Error('CI=true but no PostgreSQL server binaries were found: install postgresql');
  if (ci && !redisServer) throw new Error('CI=true but redis-server was not found: apt-get install -y redis-server');
  try {
    if (postgresBin) {
      services.postgres = await startPostgresCluster({ bin: postgresBin });
      const template = await createDatabase({ url: services.postgres.url });
      await template.pool?.query('create database ghostpay_template');
      await template.close();
      const handle = await createDatabase({ url: services.postgres.urlFor('ghostpay_template') });
      await migrate(handle);
      await handle.close();
    }
    if (redisServer) services.redis = await startRedisServer({ bin: redisServer });
  } catch (error) {
    // A setup that throws gets no teardown: stop what it started.
    await services.redis?.stop();
    await services.postgres?.destroy();
    throw error;
  }
  return services;
}

export default async function setup(project: TestProject) {
  const store = globalThis as GlobalWithServices;
  store[key] ??= startServices();
  const services = await store[key];
  services.users++;
  project.provide('postgresAdminUrl', services.postgres?.url ?? '');
  project.provide('postgresTemplate', services.postgres ? 'ghostpay_template' : '');
  project.provide('redisUrl', services.redis?.url ?? '');
  return async () => {
    if (--services.users > 0) return;
    await services.redis?.stop();
    await services.postgres?.destroy();
    delete store[key];
  };
}
