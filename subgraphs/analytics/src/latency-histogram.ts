/**
 * Fixed latency buckets (upper bounds in ms, inclusive). Fixed so per-minute documents can be
 * summed over any range and percentiles computed from the sum: a percentile is reported as the
 * upper bound of the bucket holding it (never an under-estimate), capped by the largest latency
 * seen (which is also what the overflow bucket reports). Bounds are dense below 100 ms, where the SLO lives.
 */
export const latencyBucketBoundsMs = [
  1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000,
] as const;

/** Index of the bucket for `ms`; `latencyBucketBoundsMs.length` is the overflow bucket. */
export function bucketIndexFor(ms: number): number {
  for (let i = 0; i < latencyBucketBoundsMs.length; i++) {
    if (ms <= latencyBucketBoundsMs[i]!) return i;
  }
  return latencyBucketBoundsMs.length;
}

/** Field name of a bucket inside a performance document's `buckets` object (`b0` … `b29`). */
export function bucketField(index: number): string {
  return `b${index}`;
}

/**
 * The nearest-rank percentile (the smallest value with at least q·N observations at or below it)
 * over bucket counts. Undefined when there are no observations.
 */
export function percentileFromBuckets(counts: readonly number[], q: number, maxMs: number): number | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let cumulative = 0;
  for (let i = 0; i < counts.length; i++) {
    cumulative += counts[i] ?? 0;
    if (cumulative >= rank) return i < latencyBucketBoundsMs.length ? Math.min(latencyBucketBoundsMs[i]!, maxMs) : maxMs;
  }
  return maxMs;
}
