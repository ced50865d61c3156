export {
  buildManifest,
  loadSpec,
  manifestPath,
  manifestProblems,
  operationsDir,
  routeCoverageProblems,
  serializeManifest,
  sha256Hex,
  staticPaths,
} from '../src/index.ts';
export { bridgeRoot as bridgeRootForTests } from '../src/openapi-spec.ts';
