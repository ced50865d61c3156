import { readdirSync } from 'node:fs';
import { inCi } from '@ghostpay/test-support';
import { beforeAll, describe, expect, it } from 'vitest';
import { hasPromtool, promtool } from '../src/promtool.ts';
import { readRepoFile, repoPath } from '../src/repo.ts';

const alertsDir = repoPath('grafana/alerts');
const available = await hasPromtool();

describe.skipIf(!available && !inCi())('Prometheus alert rules (promtool)', () => {
  beforeAll(() => {
    if (!available) throw new Error('promtool is missing: apt-get install -y prometheus (CI must run these checks)');
  });

  it('passes promtool check rules', async () => {
    const output = await promtool(['check', 'rules', 'ghostpay-rules.yaml'], alertsDir);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('passes every promtool unit test in grafana/alerts/tests', async () => {
    const files = readdirSync(`${alertsDir}/tests`).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThan(0);
    const output = await promtool(['test', 'rules', ...files.map((f) => `tests/${f}`)], alertsDir);
    expect(output).not.toMatch(/FAILED/);
    expect(output.match(/SUCCESS/g)).toHaveLength(files.length);
  });
});

describe('alert rule coverage', () => {
  const rules = readRepoFile('grafana/alerts/ghostpay-rules.yaml');
  const tests = readdirSync(`${alertsDir}/tests`)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => readRepoFile(`grafana/alerts/tests/${f}`))
    .join('\n');
  const alertNames = [...rules.matchAll(/^\s*- alert: (\S+)/gm)].map((m) => m[1]!);

  it('defines the alerts the SLOs call for', () => {
    expect(alertNames).toEqual(
      expect.arrayContaining([
        'GhostPayErrorBudgetBurnFast',
        'GhostPayErrorBudgetBurnMedium',
        'GhostPayErrorBudgetBurnSlow',
        'GhostPayHighErrorRate',
        'GhostPayHighLatencyP95',
        'GhostPayHighCpu',
        'GhostPayRateLimitSpike',
        'GhostPayCircuitBreakerOpen',
      ]),
    );
  });

  it.each(alertNames)('has a unit test where %s fires and one where it stays quiet', (name) => {
    const cases = [...tests.matchAll(new RegExp(`alertname: ${name}\\n\\s*exp_alerts:(.*)`, 'g'))].map((m) => m[1]!.trim());
    expect(
      cases.some((c) => c === ''),
      'a case expecting alerts',
    ).toBe(true);
    expect(
      cases.some((c) => c === '[]'),
      'a case expecting none',
    ).toBe(true);
  });

  it('ships the same rules in the Helm chart', () => {
    expect(readRepoFile('charts/ghostpay/files/ghostpay-rules.yaml')).toBe(rules);
  });
});
