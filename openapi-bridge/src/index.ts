export { type Bridge, type BridgeDeps, createBridge, staticPaths } from './bridge.ts';
export { type BridgeConfig, bridgeConfigSchema } from './config.ts';
export { type ErrorEnvelope, errorEnvelope, mapGraphQLErrors } from './error-mapping.ts';
export {
  type ApiRoute,
  loadSpec,
  manifestPath,
  matchRoute,
  type OpenApiDocument,
  operationsDir,
  resolveRef,
  routesOf,
  specPath,
} from './openapi-spec.ts';
export { operationMappings } from './operation-mappings.ts';
export {
  buildManifest,
  type ManifestOperation,
  manifestProblems,
  type PersistedQueryManifest,
  readOperation,
  serializeManifest,
  sha256Hex,
} from './persisted-query-manifest.ts';
export { compileSpecSchema, createSpecAjv } from './request-validation.ts';
export { routeCoverageProblems } from './route-coverage.ts';
export { createRouterClient, type RouterClient } from './router-client.ts';
