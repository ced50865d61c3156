export * from './free-port.ts';
export * from './fresh-database.ts';
export * from './loopback-server.ts';
export * from './pool-statements.ts';
export * from './postgres-cluster.ts';
export * from './redis-server.ts';
export * from './seed.ts';
export * from './test-tokens.ts';
