/**
 * Summarizes a V8 .cpuprofile (from BENCH_CPU_PROF=1): self time by package and the top
 * functions, then the inclusive (self + callees) time of the project's own functions, which
 * says which of our code paths the time is spent under. A .heapprofile (BENCH_HEAP_PROF) gets
 * the same three views in bytes allocated instead of time.
 * `node bench/src/profile-summary.ts bench/profiles/gateway-ghostpay.cpuprofile [top]`
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A sampling heap profile: a call tree whose nodes carry the bytes allocated there. */
interface HeapNode {
  id: number;
  callFrame: ProfileNode['callFrame'];
  selfSize: number;
  children: HeapNode[];
}

const [path, topArg] = process.argv.slice(2);
if (!path) throw new Error('usage: profile-summary.ts <file.cpuprofile|file.heapprofile> [top]');
const raw = JSON.parse(readFileSync(path, 'utf8')) as Profile | { head: HeapNode };
// A heap profile becomes the same shape: its nodes, and each node's bytes as its "self" weight.
const heap = 'head' in raw;
const profile: Profile = { nodes: [], samples: [], timeDeltas: [] };
const self = new Map<number, number>();
if (heap) {
  const visit = (node: HeapNode) => {
    profile.nodes.push({ id: node.id, callFrame: node.callFrame, children: node.children.map((child) => child.id) });
    if (node.selfSize > 0) self.set(node.id, node.selfSize);
    for (const child of node.children) visit(child);
  };
  visit(raw.head);
} else {
  Object.assign(profile, raw);
  for (const [i, id] of profile.samples.entries()) self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const total = [...self.values()].reduce((a, b) => a + b, 0);

const packageOf = (url: string) => {
  if (!url) return '(native/gc/idle)';
  const m = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (m) return m[1] as string;
  if (url.startsWith('node:')) return 'node:internal';
  const w = url.match(/\/work\/main\/([^/]+(?:\/[^/]+)?)\//);
  return w ? `ghostpay:${w[1]}` : url;
};
const keyOf = (node: ProfileNode) => {
  const { functionName, url, lineNumber } = node.callFrame;
  return `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace('file:///work/main/', '')}:${lineNumber + 1}`;
};
const packages = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id);
  if (!node) continue;
  const { functionName, url } = node.callFrame;
  const pkg = node.callFrame.functionName === '(garbage collector)' ? '(gc)' : functionName === '(idle)' ? '(idle)' : packageOf(url);
  packages.set(pkg, (packages.get(pkg) ?? 0) + time);
  const key = keyOf(node);
  functions.set(key, (functions.get(key) ?? 0) + time);
}
const pct = (t: number) => `${((t / total) * 100).toFixed(1).padStart(5)}%`;
console.log(heap ? `total sampled: ${(total / 2 ** 20).toFixed(1)} MiB allocated` : `total sampled: ${(total / 1000).toFixed(0)} ms`);
console.log(heap ? '\nbytes allocated by package:' : '\nself time by package:');
for (const [pkg, t] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${pct(t)}  ${pkg}`);
console.log(heap ? '\ntop allocating functions (self):' : '\ntop functions (self):');
for (const [fn, t] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25))) console.log(`${pct(t)}  ${fn}`);

// Inclusive time: each sample counts once for every distinct project function on its stack.
const parentOf = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
const inclusive = new Map<string, number>();
for (const [id, time] of self) {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const node = byId.get(at);
    if (!node?.callFrame.url.includes('/work/main/') || node.callFrame.url.includes('node_modules')) continue;
    const key = keyOf(node);
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + time);
  }
}
console.log('\nproject functions (inclusive):');
for (const [fn, t] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25))) console.log(`${pct(t)}  ${fn}`);
