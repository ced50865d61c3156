import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeAuthMatrix, renderAuthMatrix, spliceAuthMatrix } from '../src/auth-matrix.ts';
import { repoRoot } from './router-harness.ts';
import { sensitiveOperationsPolicy } from './sensitive-operations-policy.ts';

const supergraphSdl = readFileSync(resolve(repoRoot, 'supergraph.graphql'), 'utf8');
const rows = computeAuthMatrix(supergraphSdl);

describe('the auth directive matrix', () => {
  it('is the table in router/README.md (run npm run auth-matrix -w @ghostpay/router when this fails)', () => {
    const readme = readFileSync(resolve(repoRoot, 'router/README.md'), 'utf8');
    expect(spliceAuthMatrix(readme, renderAuthMatrix(rows)) === readme, 'router/README.md auth matrix is stale').toBe(true);
  });

  it('covers every root field of the supergraph, createToken open to all and the rest closed to anonymous callers', () => {
    expect(rows.length).toBeGreaterThanOrEqual(15);
    for (const row of rows) {
      expect(row.cells.anonymous.decision, row.field).toBe(row.field === 'createToken' ? 'allowed' : 'refused');
      expect(row.cells.admin.decision, row.field).toBe('allowed');
    }
  });
  it('agrees with the hand-written policy for every sensitive operation', () => {
    for (const policy of sensitiveOperationsPolicy) {
      const row = rows.find((r) => r.operationType === policy.operationType && r.field === policy.operation);
      expect(row, `${policy.operationType} ${policy.operation} is in the matrix`).toBeDefined();
      const decisions = Object.fromEntries(
        (['anonymous', 'admin', 'merchant', 'user'] as const).map((caller) => {
          const cell = row!.cells[caller];
          return [caller, cell.decision === 'refused' ? cell.codes.join(',') : cell.decision];
        }),
      );
      expect(decisions, `${policy.operationType} ${policy.operation}`).toEqual({
        anonymous: 'UNAUTHENTICATED',
        admin: policy.admin,
        merchant: policy.merchant,
        user: policy.user,
      });
    }
  });
  // Every query/mutation cell is also sent through a running router in front of the real
  // subgraphs in real-subgraphs.test.ts.
});
