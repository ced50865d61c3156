/**
 * CPU per TestQuery of the router's compiled executor alone: plan execution, representation
 * building, parsing the subgraphs' answers, merging and shaping, and the JSON.stringify of the
 * response that Apollo Server then does. No sockets, no HTTP: the subgraph answers are recorded
 * once from the benchmark's subgraph server (in this process) and replayed as text, parsed
 * afresh for every fetch, as the router's data source does. The federation run measures the
 * whole router; this isolates the part the executor owns, with far less noise on a shared VM.
 * Every response is checked against the expected data.
 *
 * `node bench/src/federation/executor-micro.ts [seconds=5] [concurrency=32] [rounds=3]`
 */
import { ApolloGateway } from '@apollo/gateway';
import { createCompiledExecutor, type SubgraphResponse } from '@ghostpay/router';
import { parse } from 'graphql';
import { request } from 'undici';
import { expectedTestQueryData, hashData } from './expected-result.ts';
import { startBenchSubgraphs } from './subgraph-server.ts';
import { composeBenchSupergraph } from './supergraph.ts';
import { testQuery } from './test-query.ts';

const [secondsArg, concurrencyArg, roundsArg] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 5);
const concurrency = Number(concurrencyArg ?? 32);
const rounds = Number(roundsArg ?? 3);

const subgraphs = await startBenchSubgraphs();
const recorded = new Map<string, string>();
let recording = true;

/** Records each distinct request body's answer from the real subgraph server, then replays it. */
class ReplaySource {
  readonly url: string;
  constructor(url: string) {
    this.url = url;
  }
  async processSerialized(body: string): Promise<SubgraphResponse> {
    // Keyed without the planner's generated operation names: which of several fetches sending
    // the same query goes first depends on timing, and the answer does not depend on the name.
    const key = `${this.url}\n${body.replace(/TestQuery__\w+?__\d+/g, 'TestQuery')}`;
    let text = recorded.get(key);
    if (text === undefined) {
      if (!recording) throw new Error(`unrecorded request to ${this.url}: ${body.slice(0, 200)}`);
      const response = await request(this.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      text = await response.body.text();
      recorded.set(key, text);
    }
    return JSON.parse(text) as SubgraphResponse;
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: composeBenchSupergraph(subgraphs.url),
  buildService: ({ url }) => new ReplaySource(url as string) as never,
});
await gateway.load();
const executor = createCompiledExecutor({ gateway });
const document = parse(testQuery);
const expected = hashData(expectedTestQueryData());

const runOnce = async (check: boolean) => {
  const result = await executor.execute({
    document,
    queryHash: 'test-query',
    operationName: 'TestQuery',
    request: { operationName: 'TestQuery', variables: {} },
    context: {},
  });
  if (!result) throw new Error('TestQuery went to the gateway executor');
  // What Apollo Server does with the result (its prettyJSONStringify of the response body).
  const text = JSON.stringify({ data: result.data });
  if (check && (result.errors?.length || hashData(JSON.parse(text).data) !== expected)) {
    throw new Error(`unexpected response: ${JSON.stringify(result.errors ?? []).slice(0, 500)} ${text.slice(0, 300)}`);
  }
  return text.length;
};

await runOnce(true);
recording = false;
await subgraphs.close();
await runOnce(true);

const window = async (ms: number) => {
  let operations = 0;
  const deadline = performance.now() + ms;
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await runOnce(false);
        operations++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return { operations, cpuMsPerOp: (used.user + used.system) / 1000 / operations };
};

await window(Math.min(2000, seconds * 1000));
const figures: number[] = [];
for (let round = 0; round < rounds; round++) {
  const { operations, cpuMsPerOp } = await window(seconds * 1000);
  figures.push(cpuMsPerOp);
  console.log(`round ${round + 1}: ${operations} operations, ${cpuMsPerOp.toFixed(3)} CPU ms per operation`);
}
await runOnce(true);
const sorted = [...figures].sort((a, b) => a - b);
console.log(`median ${(sorted[Math.floor(sorted.length / 2)] as number).toFixed(3)} CPU ms per operation (concurrency ${concurrency})`);
await gateway.stop();
