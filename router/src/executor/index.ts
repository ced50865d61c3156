export * from './compiled-executor.ts';
export * from './compiled-plan.ts';
export * from './gateway-with-executor.ts';
export * from './response-shape.ts';
