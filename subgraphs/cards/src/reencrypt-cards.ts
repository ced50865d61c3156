import { cards, type Database } from '@ghostpay/db';
import { and, asc, count, eq, gt, isNotNull, ne, or, sql } from 'drizzle-orm';
import { decryptPan, encryptPan, type PanCiphertextVersion, type PanKeyring, panCiphertextWriteVersion } from './pan-crypto.ts';

/** How many ids of undecryptable rows a run reports at most (the count is always complete). */
export const maxFailedCardIds = 100;

export interface ReencryptOptions {
  /** Rows read and rewritten per transaction. @default 500 */
  batchSize?: number;
  /** Stop after this many batches (bounded runs from a cron job). @default unlimited */
  maxBatches?: number;
  /**
   * The ciphertext format to move rows to: rows under the active key in another format are
   * rewritten too (see `PanCiphertextVersion`). @default panCiphertextWriteVersion
   */
  version?: PanCiphertextVersion;
  /**
   * Says that no replica of the previous release runs or will run again, rollback included: the
   * condition for writing a `version` newer than `panCiphertextWriteVersion`, which that release
   * cannot read (the second step of the README's two-release switch, taken early). Without it
   * such a `version` is refused (`CiphertextVersionRefusedError`) before anything is read.
   * @default false
   */
  previousReleaseRetired?: boolean;
}

/**
 * A run asked for a ciphertext version newer than this release writes without
 * `previousReleaseRetired`: rows in it would not reveal on a replica of the previous release.
 * Nothing was read or written.
 */
export class CiphertextVersionRefusedError extends Error {
  readonly version: PanCiphertextVersion;
  constructor(version: PanCiphertextVersion) {
    super(
      `PAN ciphertext version ${version} is newer than this release writes (${panCiphertextWriteVersion}): ` +
        'a replica of the previous release cannot read it; write it only once no replica of that release runs or will run again (previousReleaseRetired)',
    );
    this.name = 'CiphertextVersionRefusedError';
    this.version = version;
  }
}

export interface ReencryptResult {
  /** Rows moved to the active key. */
  reencrypted: number;
  /** Rows under a key id missing from the keyring: left as they are (and worth an alert). */
  skipped: number;
  /**
   * Rows whose ciphertext does not decrypt under the key they name (a corrupt row, a row
   * restored from another environment): left as they are, the run goes on.
   */
  failed: number;
  /** The first `maxFailedCardIds` of those rows' card ids, for the operator; never card data. */
  failedCardIds: string[];
  batches: number;
  /**
   * Rows with a PAN not under the active key (or not in `version`'s format) when the run ended, counted without skipping locked rows:
   * rows a concurrent charge or cancel held, rows of a run cut short by `maxBatches`, and the
   * skipped and failed ones. The old key may leave the keyring only when this is 0.
   */
  remaining: number;
}

/**
 * Key rotation, step two: after a new key is put first in `pan-encryption-keys` (new cards
 * already use it; old rows still decrypt by their `pan_key_id`), this moves every row still
 * under another key to the active one (and every row in another ciphertext format than
 * `options.version` to that one: the way stored rows reach a new format).
 *
 * Each batch is one transaction that locks its rows (`for update skip locked`, so two
 * runners share the work instead of colliding, and a row an in-flight charge holds does not
 * stall the run) and writes each new ciphertext only if the row still has the ciphertext it
 * read. A skipped locked row is not lost: the run ends with an authoritative count of the rows
 * still under another key (`remaining`), and a rerun picks them up. Safe to stop and rerun at
 * any time.
 *
 * A row whose PAN the retention erased (`pan_ciphertext` null: its card left ACTIVE long ago) has
 * nothing to re-encrypt: it is neither read nor counted, so the old key can leave the keyring
 * once every row that still has a PAN is under the new one.
 */
export async function reencryptCards(
  database: { db: Database },
  keyring: PanKeyring,
  options: ReencryptOptions = {},
): Promise<ReencryptResult> {
  const version = options.version ?? panCiphertextWriteVersion;
  // A version this code cannot read back (a caller outside the type system) would be written as an unknown prefix.
  if (version !== 1 && version !== 2) throw new RangeError(`PAN ciphertext version must be 1 or 2, got ${String(version)}`);
  if (version > panCiphertextWriteVersion && options.previousReleaseRetired !== true) throw new CiphertextVersionRefusedError(version);
  const batchSize = options.batchSize ?? 500;
  const maxBatches = options.maxBatches ?? Number.POSITIVE_INFINITY;
  let reencrypted = 0;
  let skipped = 0;
  let failed = 0;
  const failedCardIds: string[] = [];
  let batches = 0;
  let afterId = '';
  // The rows to move: a PAN under another key than the active one, or in another format than
  // `version` (version 1 has no prefix, base64 has no `:`; every later one starts `v<n>:`). What
  // every batch takes and what `remaining` counts, so the count says when the old key may go.
  const inAnotherFormat =
    version === 1 ? sql`strpos(${cards.panCiphertext}, ':') > 0` : sql`${cards.panCiphertext} not like ${`v${version}:%`}`;
  const toMove = and(isNotNull(cards.panCiphertext), or(ne(cards.panKeyId, keyring.activeKeyId), inAnotherFormat));
  while (batches < maxBatches) {
    // Counted per batch and added only once its transaction commits: a batch rolled back by a
    // database error moved nothing.
    const batch = await database.db.transaction(async (tx) => {
      const rows = await tx
        .select({ id: cards.id, panKeyId: cards.panKeyId, panCiphertext: cards.panCiphertext })
        .from(cards)
        .where(and(toMove, gt(cards.id, afterId)))
        .orderBy(asc(cards.id))
        .limit(batchSize)
        .for('update', { skipLocked: true });
      const counts = { rows: rows.length, lastId: rows.at(-1)?.id, moved: 0, skipped: 0, failedIds: [] as string[] };
      for (const row of rows) {
        // Not null when read (the row is locked since): narrowed for the compiler.
        const ciphertext = row.panCiphertext;
        if (ciphertext === null) continue;
        if (!keyring.keys.has(row.panKeyId)) {
          counts.skipped++;
          continue;
        }
        let pan: string;
        try {
          pan = decryptPan(keyring, row.id, row.panKeyId, ciphertext);
        } catch {
          // One bad row must not roll the batch back and block every rerun on the same row.
          counts.failedIds.push(row.id);
          continue;
        }
        const next = encryptPan(keyring, row.id, pan, version);
        await tx
          .update(cards)
          .set({ panCiphertext: next.ciphertext, panKeyId: next.keyId })
          .where(and(eq(cards.id, row.id), eq(cards.panCiphertext, ciphertext)));
        counts.moved++;
      }
      return counts;
    });
    if (batch.rows === 0) break;
    batches++;
    reencrypted += batch.moved;
    skipped += batch.skipped;
    failed += batch.failedIds.length;
    failedCardIds.push(...batch.failedIds.slice(0, maxFailedCardIds - failedCardIds.length));
    afterId = batch.lastId!;
  }
  // A plain read (no locking clause) neither waits for nor skips rows other transactions hold.
  const [left] = await database.db.select({ n: count() }).from(cards).where(toMove);
  return { reencrypted, skipped, failed, failedCardIds, batches, remaining: left?.n ?? 0 };
}
