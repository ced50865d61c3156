/**
 * Regenerates the figures table in RELIABILITY.md (between the `figures:start` and
 * `figures:end` markers) from reliability/results.json, which the suite writes on every run.
 * `node reliability/src/write-report.ts` (or `npm run report -w @ghostpay/reliability`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { readResults, type ScenarioFigures } from './results.ts';

const reportPath = resolve(import.meta.dirname, '../../RELIABILITY.md');
const start = '<!-- figures:start -->';
const end = '<!-- figures:end -->';

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function renderFigures(scenarios: ScenarioFigures[], updatedAt: string): string {
  const total = (pick: (s: ScenarioFigures) => number) => scenarios.reduce((sum, s) => sum + pick(s), 0);
  const rows = scenarios.map(
    (s) =>
      `| \`${s.id}\` | ${cell(s.title)} | ${s.requests} | ${s.faults} | ${s.failures} | ${s.invariantViolations} | ${(s.durationMs / 1000).toFixed(1)} s | ${cell(s.notes ?? '')} |`,
  );
  return [
    `Last run: ${updatedAt} — ${scenarios.length} scenarios, ${total((s) => s.requests)} requests, ${total((s) => s.faults)} faults injected, ${total((s) => s.failures)} failures, ${total((s) => s.invariantViolations)} invariant violations.`,
    '',
    '| scenario | what ran | requests | faults | failures | invariant violations | time | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
  ].join('\n');
}

export function updateReport(markdown: string, figures: string): string {
  const from = markdown.indexOf(start);
  const to = markdown.indexOf(end);
  if (from < 0 || to < from) throw new Error(`RELIABILITY.md has no ${start} … ${end} section`);
  return `${markdown.slice(0, from + start.length)}\n${figures}\n${markdown.slice(to)}`;
}

if (import.meta.filename === process.argv[1]) {
  const results = readResults();
  if (!results.scenarios.length) {
    process.stderr.write('write-report: reliability/results.json has no scenarios; run `npm run test:reliability` first\n');
    process.exit(1);
  }
  writeFileSync(reportPath, updateReport(readFileSync(reportPath, 'utf8'), renderFigures(results.scenarios, results.updatedAt)));
  process.stdout.write(`write-report: ${results.scenarios.length} scenarios written to RELIABILITY.md\n`);
}
