export * from './banner.ts';
export * from './data-dir-lock.ts';
export * from './dev-credentials.ts';
export * from './dev-secrets.ts';
export * from './start-error.ts';
export * from './start-stack.ts';
