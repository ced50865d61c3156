import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeAuthMatrix, renderAuthMatrix, spliceAuthMatrix } from '../src/auth-matrix.ts';
import { repoRoot } from './router-harness.ts';

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
  // Every query/mutation cell is also sent through a running router in front of the real
  // subgraphs in real-subgraphs.test.ts.
});
