export * from './by-ids.ts';
export * from './client.ts';
export * from './delete-in-batches.ts';
export * from './ids.ts';
export * from './migrate.ts';
export * from './pg-error.ts';
export * from './prepared-statements.ts';
export * as schema from './schema/index.ts';
export * from './schema/index.ts';
