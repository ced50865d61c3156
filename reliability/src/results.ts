import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** Where the suite writes the figures of its last run; `write-report.ts` renders them into RELIABILITY.md. */
export const resultsPath = resolve(import.meta.dirname, '../results.json');

/** The figures of one scenario from one run. */
export interface ScenarioFigures {
  /** Stable id, e.g. `bad-input/graphql-documents`. */
  id: string;
  title: string;
  requests: number;
  faults: number;
  /** Requests that failed where the scenario requires success (or a 500/stack trace where refusal is expected). */
  failures: number;
  invariantViolations: number;
  notes?: string;
  durationMs: number;
  finishedAt: string;
}

export interface ResultsFile {
  updatedAt: string;
  scenarios: ScenarioFigures[];
}

export function readResults(): ResultsFile {
  if (!existsSync(resultsPath)) return { updatedAt: new Date(0).toISOString(), scenarios: [] };
  return JSON.parse(readFileSync(resultsPath, 'utf8')) as ResultsFile;
}

/** Replaces this scenario's figures in results.json (files run one at a time, so no write race). */
export function recordScenario(figures: Omit<ScenarioFigures, 'finishedAt'>): void {
  const results = readResults();
  const finishedAt = new Date().toISOString();
  const scenarios = results.scenarios.filter((s) => s.id !== figures.id);
  scenarios.push({ ...figures, finishedAt });
  scenarios.sort((a, b) => a.id.localeCompare(b.id));
  writeFileSync(resultsPath, `${JSON.stringify({ updatedAt: finishedAt, scenarios }, null, 2)}\n`);
}

/** Counts requests, faults and failures of one scenario while it runs. */
export function createTally() {
  return { requests: 0, faults: 0, failures: 0, started: performance.now() };
}
export type Tally = ReturnType<typeof createTally>;

/**
 * Runs one scenario's work and records its figures however the work ends, so a failing run
 * records what it counted instead of leaving the previous run's figures in place. `figures` is
 * read after the work finished or threw; a throw counts as one more failure and is passed on.
 * Assert after this returns: an assertion inside `work` would end it before it counted the rest.
 */
export async function runScenario<T>(
  tally: Tally,
  figures: () => Omit<ScenarioFigures, 'finishedAt' | 'requests' | 'durationMs'>,
  work: () => Promise<T>,
): Promise<T> {
  let finished = false;
  try {
    const result = await work();
    finished = true;
    return result;
  } finally {
    const counted = figures();
    recordScenario({
      ...counted,
      requests: tally.requests,
      failures: counted.failures + (finished ? 0 : 1),
      durationMs: Math.round(performance.now() - tally.started),
    });
  }
}
