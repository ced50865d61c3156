/**
 * The loop of a bulk change done one bounded statement at a time: calls `batch(batchSize)` (one
 * statement, its own short transaction, changing at most `batchSize` rows and returning how many
 * it changed) until a batch comes back short, and returns the total. A changed row must no longer
 * match what the batch selects, so each call takes the next rows; a short batch means nothing was
 * left when it ran (or another runner took the rest), and whatever is due later is the next pass's.
 * `deleteInBatches` and cards' `updateCardsInBatches` go through here.
 */
export async function inBatches(batchSize: number, batch: (batchSize: number) => Promise<number>): Promise<number> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a whole number ≥ 1, got ${batchSize}`);
  let changed = 0;
  for (;;) {
    const rows = await batch(batchSize);
    changed += rows;
    if (rows < batchSize) return changed;
  }
}
