import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderTable, writeResults } from '../src/report.ts';

const machine = { date: '2026-11-22T00:00:00.000Z', cpuModel: 'Test CPU', cores: 2, memoryGiB: 24, node: 'v24.0.0', loadAverage: 0.1 };

describe('RESULTS.md', () => {
  it('renders one row per scenario, with – for what a scenario does not measure', () => {
    const table = renderTable([
      { scenario: 'DB limit', rps: 1000.4, ratio: '1.00× DB limit', p50: 1.26, p95: 2, p99: 3, errors: 0, cpuMsPerOp: 0.456 },
    ]);
    expect(table.split('\n')[2]).toBe('| DB limit | 1000 | 1.00× DB limit | 1.3 | 2.0 | 3.0 | 0 | 0.46 | – | – |  |');
  });

  it('rewrites only the generated part and keeps the hand-written log around it', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'bench-report-')), 'RESULTS.md');
    writeResults(path, machine, 'first table', ['a note']);
    const first = readFileSync(path, 'utf8');
    expect(first).toContain('first table');
    writeFileSync(path, `# Results\n\nintro kept\n\n${first.slice(first.indexOf('<!--'))}\n## Change log\n\nrow kept\n`);
    writeResults(path, machine, 'second table', ['another note']);
    const second = readFileSync(path, 'utf8');
    expect(second).toContain('intro kept');
    expect(second).toContain('row kept');
    expect(second).toContain('second table\n\n- another note\n<!-- bench:end -->');
    expect(second).not.toContain('first table');
    expect(second).toContain('Test CPU · 2 cores');
  });
});
