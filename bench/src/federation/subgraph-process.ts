/** The benchmark's four subgraphs in their own process, shared by every gateway under test. */
import { serveChild } from '../child-process.ts';
import { startBenchSubgraphs } from './subgraph-server.ts';

let close: () => Promise<void> = async () => {};
const child = serveChild({ onStop: () => close() });
try {
  const server = await startBenchSubgraphs();
  close = server.close;
  child.ready({ base: server.url });
} catch (error) {
  child.fail(error);
}
