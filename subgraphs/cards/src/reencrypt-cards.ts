import { cards, type Database } from '@ghostpay/db';
import { and, asc, eq, gt, ne } from 'drizzle-orm';
import { decryptPan, encryptPan, type PanKeyring } from './pan-crypto.ts';

export interface ReencryptOptions {
  /** Rows read and rewritten per transaction. @default 500 */
  batchSize?: number;
  /** Stop after this many batches (bounded runs from a cron job). @default unlimited */
  maxBatches?: number;
}

export interface ReencryptResult {
  /** Rows moved to the active key. */
  reencrypted: number;
  /** Rows under a key id missing from the keyring: left as they are (and worth an alert). */
  skipped: number;
  batches: number;
}

/**
 * Key rotation, step two: after a new key is put first in `pan-encryption-keys` (new cards
 * already use it; old rows still decrypt by their `pan_key_id`), this moves every row still
 * under another key to the active one. Once it reports 0 the old key can leave the keyring.
 *
 * Each batch is one transaction that locks its rows (`for update skip locked`, so two
 * runners share the work instead of colliding) and writes each new ciphertext only if the
 * row still has the ciphertext it read. Safe to stop and rerun at any time.
 */
export async function reencryptCards(
  database: { db: Database },
  keyring: PanKeyring,
  options: ReencryptOptions = {},
): Promise<ReencryptResult> {
  const batchSize = options.batchSize ?? 500;
  const maxBatches = options.maxBatches ?? Number.POSITIVE_INFINITY;
  let reencrypted = 0;
  let skipped = 0;
  let batches = 0;
  let afterId = '';
  while (batches < maxBatches) {
    const moved = await database.db.transaction(async (tx) => {
      const rows = await tx
        .select({ id: cards.id, panKeyId: cards.panKeyId, panCiphertext: cards.panCiphertext })
        .from(cards)
        .where(and(ne(cards.panKeyId, keyring.activeKeyId), gt(cards.id, afterId)))
        .orderBy(asc(cards.id))
        .limit(batchSize)
        .for('update', { skipLocked: true });
      for (const row of rows) {
        if (!keyring.keys.has(row.panKeyId)) {
          skipped++;
          continue;
        }
        const pan = decryptPan(keyring, row.id, row.panKeyId, row.panCiphertext);
        const next = encryptPan(keyring, row.id, pan);
        await tx
          .update(cards)
          .set({ panCiphertext: next.ciphertext, panKeyId: next.keyId })
          .where(and(eq(cards.id, row.id), eq(cards.panCiphertext, row.panCiphertext)));
      }
      return rows;
    });
    if (moved.length === 0) break;
    batches++;
    reencrypted += moved.filter((row) => keyring.keys.has(row.panKeyId)).length;
    afterId = moved.at(-1)!.id;
  }
  return { reencrypted, skipped, batches };
}
