export * from './banner.ts';
export * from './dev-credentials.ts';
export * from './dev-secrets.ts';
export * from './start-stack.ts';
