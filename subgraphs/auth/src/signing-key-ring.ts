import { randomBytes } from 'node:crypto';
import { type DatabaseHandle, signingKeys, type Transaction } from '@ghostpay/db';
import { type Logger, RateLimitedError, ServiceUnavailableError, type SigningAlgorithm } from '@ghostpay/platform';
import { and, asc, eq, gt, inArray, lte, or, type SQL, sql } from 'drizzle-orm';
import { type CryptoKey, exportJWK, exportPKCS8, generateKeyPair, importPKCS8, type JSONWebKeySet, type JWK } from 'jose';
import { type KeyEncryption, signingKekSecret } from './key-encryption.ts';

export type SigningKeyState = 'next' | 'current' | 'retired' | 'removed';

/** A key ring row without its private key. */
export interface SigningKeyInfo {
  kid: string;
  alg: string;
  state: SigningKeyState;
  createdAt: Date;
  activatedAt: Date | null;
  retiredAt: Date | null;
  verifyUntil: Date | null;
  removedAt: Date | null;
}

export interface ActiveSigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
}

export interface SigningKeyRingOptions {
  database: DatabaseHandle;
  encryption: KeyEncryption;
  /** Algorithm of newly generated keys. */
  algorithm: SigningAlgorithm;
  /** The longest access token TTL any replica issues; a retired key stays published this long. */
  maxTokenTtlSeconds: number;
  /** Verifier clock tolerance, added to how long a retired key stays published. */
  clockSkewSeconds: number;
  /**
   * How long a `next` key is published before a rotation may make it current: the time every
   * verifier needs to learn it (`rotationSpacingSeconds` in config.ts). A rotation asked for
   * sooner is refused (`RotationTooSoonError`); a scheduled one waits.
   */
  rotationSpacingSeconds: number;
  logger: Logger;
}

/**
 * A rotation asked for while the `next` key has been published for less than the rotation
 * spacing: making it current now could have verifiers that fetched the JWKS before it was
 * published, and may not refetch yet, refuse the tokens it signs. RATE_LIMITED with
 * `extensions.retryAfter` (seconds).
 */
export class RotationTooSoonError extends RateLimitedError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number, spacingSeconds: number) {
    super(
      retryAfterSeconds,
      `Signing keys may rotate at most once per ${spacingSeconds} s, the time verifiers need to learn the next key; retry in ${retryAfterSeconds} s`,
    );
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Serializes every ring change across replicas, including the first one on an empty table. */
const ringLockKey = sql`hashtext('ghostpay.auth.signing_keys')`;

/**
 * Database time when the statement started: after the ring lock was acquired and any key
 * generated, unlike `now()`, the transaction's start, which can be long before either.
 */
const dbNow = sql`statement_timestamp()`;

const infoColumns = {
  kid: signingKeys.kid,
  alg: signingKeys.alg,
  state: signingKeys.state,
  createdAt: signingKeys.createdAt,
  activatedAt: signingKeys.activatedAt,
  retiredAt: signingKeys.retiredAt,
  verifyUntil: signingKeys.verifyUntil,
  removedAt: signingKeys.removedAt,
};

interface NewKey {
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: JWK;
  ciphertext: string;
  kekId: string;
}

/** The members a published key may have, by key type: the public key and what names it. Nothing else is served. */
const publicMembersByKty: Record<string, readonly string[]> = {
  RSA: ['n', 'e'],
  EC: ['crv', 'x', 'y'],
  OKP: ['crv', 'x'],
};
const namingMembers = ['kty', 'kid', 'alg', 'use'] as const;

/**
 * A stored JWK cut down to its public members, or undefined for a key type that has no public
 * half (`oct`) or is unknown. Rows are written with the public half only; this is the guard that
 * keeps a row holding more (a private `d`, `p`, `q`, a symmetric `k`: a bug, a hand-made row,
 * a restored backup) from publishing it to everyone.
 */
function publicMembers(jwk: JWK): JWK | undefined {
  const members = typeof jwk.kty === 'string' ? publicMembersByKty[jwk.kty] : undefined;
  if (!members) return undefined;
  const published: Record<string, unknown> = {};
  for (const member of [...namingMembers, ...members]) {
    const value = (jwk as Record<string, unknown>)[member];
    if (typeof value === 'string') published[member] = value;
  }
  return published as JWK;
}

/**
 * The signing key ring in `auth.signing_keys`: next → current → retired → removed.
 *
 * - `next` is published in the JWKS from the moment it is created, one rotation before it
 *   signs, so verifiers that cached the JWKS already know it when it becomes `current`. A
 *   rotation makes it current only once it has been published for `rotationSpacingSeconds`,
 *   so that verifiers holding an older set may refetch by then.
 * - `current` signs every new token. It is read from the database per token, so a rotation
 *   done by another replica takes effect at once.
 * - `retired` no longer signs (its private key is wiped) but stays published until
 *   `verify_until` = retired_at + max token TTL + clock skew, when the last token it signed
 *   has expired; then a rotation or the scheduler marks it `removed`.
 *
 * Every change runs in one transaction under a transaction-scoped advisory lock, so
 * replicas rotating at once apply their rotations one after the other, and every time is
 * the database's, read after the lock is held.
 */
export function createSigningKeyRing(options: SigningKeyRingOptions) {
  const { database, encryption, logger } = options;
  const { db } = database;
  const privateKeys = new Map<string, Promise<CryptoKey>>();
  const retentionSeconds = options.maxTokenTtlSeconds + options.clockSkewSeconds;
  const spacingSeconds = options.rotationSpacingSeconds;

  /** A fresh key pair, its private half encrypted; CPU only, no database. */
  const newKey = async (): Promise<NewKey> => {
    const alg = options.algorithm;
    const kid = randomBytes(16).toString('base64url');
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    const { ciphertext, kekId } = encryption.encrypt(kid, await exportPKCS8(privateKey));
    return { kid, alg, publicJwk, ciphertext, kekId };
  };

  /**
   * Inserts a generated key; its times are taken when the insert runs, just before the commit
   * publishes it, or are `at` (first start: both keys stamped alike, see `firstPublished`).
   */
  const insert = async (tx: Transaction, key: NewKey, state: 'next' | 'current', at: SQL = dbNow) => {
    await tx.insert(signingKeys).values({
      kid: key.kid,
      alg: key.alg,
      state,
      publicJwk: key.publicJwk,
      privateKeyCiphertext: key.ciphertext,
      kekId: key.kekId,
      createdAt: at,
      activatedAt: state === 'current' ? at : null,
    });
    return key.kid;
  };

  /** The database's time now, once, as a value that stamps several rows alike. */
  const databaseTime = async (tx: Transaction) => {
    const [row] = await tx.select({ at: sql<string>`${dbNow}::text` }).from(sql`(select 1) as one`);
    return sql`${row!.at}::timestamptz`;
  };

  const lock = (tx: Transaction) => tx.execute(sql`select pg_advisory_xact_lock(${ringLockKey})`);

  /** The next and current keys; read under the lock, so their ages are measured after waiting for it. */
  const liveKeys = (tx: Transaction) =>
    tx
      .select({
        kid: signingKeys.kid,
        state: signingKeys.state,
        // Database time, so replicas with drifting clocks agree on a key's age.
        activeSeconds: sql<number | null>`extract(epoch from ${dbNow} - ${signingKeys.activatedAt})::float8`,
        publishedSeconds: sql<number>`extract(epoch from ${dbNow} - ${signingKeys.createdAt})::float8`,
        // Published in every JWKS ever served: no key of the ring is older (the pair first start
        // creates in one transaction, stamped alike). No verifier can hold a set without it.
        firstPublished: sql<boolean>`not exists (select 1 from ${signingKeys} as older where older.created_at < signing_keys.created_at)`,
        kekId: signingKeys.kekId,
        ciphertext: signingKeys.privateKeyCiphertext,
      })
      .from(signingKeys)
      .where(inArray(signingKeys.state, ['next', 'current']));

  /** Marks retired keys whose tokens have all expired as removed. */
  const sweep = async (tx: Transaction) => {
    const removed = await tx
      .update(signingKeys)
      .set({ state: 'removed', removedAt: dbNow })
      .where(and(eq(signingKeys.state, 'retired'), lte(signingKeys.verifyUntil, dbNow)))
      .returning({ kid: signingKeys.kid });
    return removed.map((row) => row.kid);
  };

  const ensure = async (): Promise<void> => {
    await db.transaction(async (tx) => {
      await lock(tx);
      const live = await liveKeys(tx);
      // Both keys of a first start carry one time: they are published by the same commit, so the
      // next key has been in every JWKS ever served and may become current at once.
      const at = live.length === 0 ? await databaseTime(tx) : dbNow;
      if (!live.some((key) => key.state === 'current')) {
        const kid = await insert(tx, await newKey(), 'current', at);
        logger.info({ kid }, 'created the first current signing key');
      }
      if (!live.some((key) => key.state === 'next')) {
        const kid = await insert(tx, await newKey(), 'next', at);
        logger.info({ kid }, 'created a next signing key');
      }
    });
  };
  let ensured: Promise<void> | undefined;
  const ensureOnce = () => {
    ensured ??= ensure().catch((error: unknown) => {
      ensured = undefined;
      throw error;
    });
    return ensured;
  };

  /**
   * Rotates: current → retired, next → current, a new next, and sweeps. Refused with
   * `RotationTooSoonError` while the next key has been published for less than the rotation
   * spacing (it was made by the previous rotation, or at first start). With
   * `onlyIfOlderThanSeconds` (the schedule) it rotates only when the current key is that old,
   * and answers `rotated: false` instead of throwing when it is too soon.
   */
  const rotate = async (rotateOptions: { onlyIfOlderThanSeconds?: number } = {}): Promise<{ rotated: boolean; removed: string[] }> => {
    await ensureOnce();
    const age = rotateOptions.onlyIfOlderThanSeconds;
    const outcome = await db.transaction(async (tx): Promise<{ rotated: boolean; removed: string[]; retryAfterSeconds?: number }> => {
      await lock(tx);
      const live = await liveKeys(tx);
      const current = live.find((key) => key.state === 'current');
      const next = live.find((key) => key.state === 'next');
      // A scheduled rotation on several replicas: the first one under the lock rotates, the others see a young key.
      const due = age === undefined || current?.activeSeconds == null || current.activeSeconds >= age;
      if (!due) return { rotated: false, removed: await sweep(tx) };
      if (!next) {
        // Only when someone deleted the next key. Making a new key current at once would have it sign before any
        // verifier could know it: publish a next key now, and let it sign once the spacing has passed.
        const kid = await insert(tx, await newKey(), 'next');
        logger.warn({ kid }, 'signing key ring had no next key: published one; rotation postponed until verifiers know it');
        return { rotated: false, removed: await sweep(tx), retryAfterSeconds: spacingSeconds };
      }
      // Without a current key nothing signs at all: promote at once rather than fail every exchange meanwhile.
      // Nor need a next key that every JWKS ever served held wait for verifiers to learn it.
      const wait = current && !next.firstPublished ? spacingSeconds - next.publishedSeconds : 0;
      if (wait > 0) return { rotated: false, removed: await sweep(tx), retryAfterSeconds: Math.max(1, Math.ceil(wait)) };
      // Never make current a key that cannot sign (its KEK dropped from signing-kek too early): every token
      // exchange would fail, and every replica's readiness with it. The current key keeps signing meanwhile.
      try {
        encryption.decrypt(next.kid, next.kekId, next.ciphertext);
      } catch (error) {
        logger.error({ kid: next.kid, kekId: next.kekId, err: error }, 'not rotating: the next signing key cannot be decrypted');
        throw new ServiceUnavailableError(
          `Not rotating: the next signing key ${next.kid} cannot be decrypted with ${signingKekSecret} (KEK "${next.kekId}"); restore that KEK, or delete the next key so that a rotation publishes a new one`,
        );
      }
      const fresh = await newKey();
      if (current) {
        await tx
          .update(signingKeys)
          .set({
            state: 'retired',
            retiredAt: dbNow,
            verifyUntil: sql`${dbNow} + make_interval(secs => ${retentionSeconds})`,
            // A retired key never signs again: keep only its public half.
            privateKeyCiphertext: '',
          })
          .where(eq(signingKeys.kid, current.kid));
      }
      await tx.update(signingKeys).set({ state: 'current', activatedAt: dbNow }).where(eq(signingKeys.kid, next.kid));
      const nextKid = await insert(tx, fresh, 'next');
      const removed = await sweep(tx);
      logger.info({ retired: current?.kid, current: next.kid, next: nextKid, removed }, 'rotated the signing key');
      return { rotated: true, removed };
    });
    if (outcome.retryAfterSeconds !== undefined && age === undefined)
      throw new RotationTooSoonError(outcome.retryAfterSeconds, spacingSeconds);
    return { rotated: outcome.rotated, removed: outcome.removed };
  };

  const importKey = (kid: string, alg: string, kekId: string, ciphertext: string) => {
    let key = privateKeys.get(kid);
    if (!key) {
      key = importPKCS8(encryption.decrypt(kid, kekId, ciphertext), alg);
      key.catch(() => privateKeys.delete(kid));
      privateKeys.set(kid, key);
    }
    return key;
  };

  return {
    ensure: ensureOnce,
    rotate,
    /** The key that signs now. */
    async signingKey(): Promise<ActiveSigningKey> {
      await ensureOnce();
      const [row] = await db
        .select({ kid: signingKeys.kid, alg: signingKeys.alg, kekId: signingKeys.kekId, ciphertext: signingKeys.privateKeyCiphertext })
        .from(signingKeys)
        .where(eq(signingKeys.state, 'current'));
      if (!row) throw new Error('signing key ring has no current key');
      for (const kid of privateKeys.keys()) if (kid !== row.kid) privateKeys.delete(kid);
      return { kid: row.kid, alg: row.alg as SigningAlgorithm, privateKey: await importKey(row.kid, row.alg, row.kekId, row.ciphertext) };
    },
    /** Every key that may still verify an unexpired token (next, current, and retired until verify_until), public members only. */
    async publishedJwks(): Promise<JSONWebKeySet> {
      await ensureOnce();
      const rows = await db
        .select({ jwk: signingKeys.publicJwk })
        .from(signingKeys)
        .where(
          or(
            inArray(signingKeys.state, ['next', 'current']),
            and(eq(signingKeys.state, 'retired'), gt(signingKeys.verifyUntil, sql`now()`)),
          ),
        )
        .orderBy(asc(signingKeys.createdAt), asc(signingKeys.kid));
      return { keys: rows.flatMap((row) => publicMembers(row.jwk as JWK) ?? []) };
    },
    /** The whole ring, newest first, without private keys. */
    async keys(): Promise<SigningKeyInfo[]> {
      await ensureOnce();
      const rows = await db.select(infoColumns).from(signingKeys).orderBy(sql`${signingKeys.createdAt} desc, ${signingKeys.kid}`);
      return rows;
    },
  };
}

export type SigningKeyRing = ReturnType<typeof createSigningKeyRing>;
