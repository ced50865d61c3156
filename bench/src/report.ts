import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { machineDetails } from './machine.ts';

export interface Row {
  scenario: string;
  rps?: number;
  /** e.g. "0.62× DB limit" */
  ratio?: string;
  p50?: number;
  p95?: number;
  p99?: number;
  errors?: number;
  cpuMsPerOp?: number;
  /** PostgreSQL's CPU (every backend) per operation, in the same window. */
  pgCpuMsPerOp?: number;
  peakRssMiB?: number;
  note?: string;
}

const fmt = (value: number | undefined, digits = 1) => (value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits));

export function renderTable(rows: Row[]): string {
  const header = '| scenario | req/s | ratio | p50 ms | p95 ms | p99 ms | errors | CPU ms/op | PG CPU ms/op | peak RSS MiB | note |';
  const rule = '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |';
  const lines = rows.map(
    (r) =>
      `| ${r.scenario} | ${fmt(r.rps, 0)} | ${r.ratio ?? '–'} | ${fmt(r.p50)} | ${fmt(r.p95)} | ${fmt(r.p99)} | ${r.errors ?? '–'} | ${fmt(r.cpuMsPerOp, 2)} | ${fmt(r.pgCpuMsPerOp, 2)} | ${fmt(r.peakRssMiB, 0)} | ${r.note ?? ''} |`,
  );
  return [header, rule, ...lines].join('\n');
}

const begin = '<!-- bench:begin (written by npm run bench) -->';
const end = '<!-- bench:end -->';

/** Rewrites the generated part of RESULTS.md and keeps the hand-written change log around it. */
export function writeResults(path: string, machine: ReturnType<typeof machineDetails>, table: string, notes: string[]) {
  const generated = [
    begin,
    `Last run: ${machine.date} · ${machine.cpuModel} · ${machine.cores} cores · ${machine.memoryGiB} GiB · Node ${machine.node} · load average ${machine.loadAverage} at start`,
    '',
    table,
    '',
    ...notes.map((n) => `- ${n}`),
    end,
  ].join('\n');
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n\n';
  const start = current.indexOf(begin);
  const stop = current.indexOf(end);
  const next =
    start >= 0 && stop > start
      ? `${current.slice(0, start)}${generated}${current.slice(stop + end.length)}`
      : `${current.trimEnd()}\n\n${generated}\n`;
  writeFileSync(path, next);
}
