import { randomBytes } from 'node:crypto';
import { type DatabaseHandle, signingKeys, type Transaction } from '@ghostpay/db';
import type { Logger, SigningAlgorithm } from '@ghostpay/platform';
import { and, asc, eq, gt, inArray, lte, or, sql } from 'drizzle-orm';
import { type CryptoKey, exportJWK, exportPKCS8, generateKeyPair, importPKCS8, type JSONWebKeySet, type JWK } from 'jose';
import type { KeyEncryption } from './key-encryption.ts';

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
  logger: Logger;
}

/** Serializes every ring change across replicas, including the first one on an empty table. */
const ringLockKey = sql`hashtext('ghostpay.auth.signing_keys')`;

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

/**
 * The signing key ring in `auth.signing_keys`: next → current → retired → removed.
 *
 * - `next` is published in the JWKS from the moment it is created, one rotation before it
 *   signs, so verifiers that cached the JWKS already know it when it becomes `current`.
 * - `current` signs every new token. It is read from the database per token, so a rotation
 *   done by another replica takes effect at once.
 * - `retired` no longer signs (its private key is wiped) but stays published until
 *   `verify_until` = retired_at + max token TTL + clock skew, when the last token it signed
 *   has expired; then a rotation or the scheduler marks it `removed`.
 *
 * Every change runs in one transaction under a transaction-scoped advisory lock, so
 * replicas rotating at once apply their rotations one after the other.
 */
export function createSigningKeyRing(options: SigningKeyRingOptions) {
  const { database, encryption, logger } = options;
  const { db } = database;
  const privateKeys = new Map<string, Promise<CryptoKey>>();
  const retentionSeconds = options.maxTokenTtlSeconds + options.clockSkewSeconds;

  const generate = async (tx: Transaction, state: 'next' | 'current') => {
    const alg = options.algorithm;
    const kid = randomBytes(16).toString('base64url');
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    const { ciphertext, kekId } = encryption.encrypt(kid, await exportPKCS8(privateKey));
    await tx.insert(signingKeys).values({
      kid,
      alg,
      state,
      publicJwk,
      privateKeyCiphertext: ciphertext,
      kekId,
      activatedAt: state === 'current' ? sql`now()` : null,
    });
    return kid;
  };

  const lock = (tx: Transaction) => tx.execute(sql`select pg_advisory_xact_lock(${ringLockKey})`);

  const liveKeys = (tx: Transaction | DatabaseHandle['db']) =>
    tx
      .select({
        kid: signingKeys.kid,
        state: signingKeys.state,
        // Database time, so replicas with drifting clocks agree on a key's age.
        ageSeconds: sql<number | null>`extract(epoch from now() - ${signingKeys.activatedAt})::float8`,
      })
      .from(signingKeys)
      .where(inArray(signingKeys.state, ['next', 'current']));

  /** Marks retired keys whose tokens have all expired as removed. */
  const sweep = async (tx: Transaction) => {
    const removed = await tx
      .update(signingKeys)
      .set({ state: 'removed', removedAt: sql`now()` })
      .where(and(eq(signingKeys.state, 'retired'), lte(signingKeys.verifyUntil, sql`now()`)))
      .returning({ kid: signingKeys.kid });
    return removed.map((row) => row.kid);
  };

  const ensure = async (): Promise<void> => {
    await db.transaction(async (tx) => {
      await lock(tx);
      const live = await liveKeys(tx);
      if (!live.some((key) => key.state === 'current')) {
        const kid = await generate(tx, 'current');
        logger.info({ kid }, 'created the first current signing key');
      }
      if (!live.some((key) => key.state === 'next')) {
        const kid = await generate(tx, 'next');
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

  const rotate = async (rotateOptions: { onlyIfOlderThanSeconds?: number } = {}) => {
    await ensureOnce();
    return db.transaction(async (tx) => {
      await lock(tx);
      const live = await liveKeys(tx);
      const current = live.find((key) => key.state === 'current');
      const next = live.find((key) => key.state === 'next');
      const age = rotateOptions.onlyIfOlderThanSeconds;
      // A scheduled rotation on several replicas: the first one under the lock rotates, the others see a young key.
      const due = age === undefined || current?.ageSeconds == null || current.ageSeconds >= age;
      if (!due) return { rotated: false, removed: await sweep(tx) };
      if (current) {
        await tx
          .update(signingKeys)
          .set({
            state: 'retired',
            retiredAt: sql`now()`,
            verifyUntil: sql`now() + make_interval(secs => ${retentionSeconds})`,
            // A retired key never signs again: keep only its public half.
            privateKeyCiphertext: '',
          })
          .where(eq(signingKeys.kid, current.kid));
      }
      if (next) {
        await tx.update(signingKeys).set({ state: 'current', activatedAt: sql`now()` }).where(eq(signingKeys.kid, next.kid));
      } else {
        // Only when someone deleted the next key: the new current key was never pre-published.
        logger.warn('signing key ring had no next key; the new current key was not pre-published');
        await generate(tx, 'current');
      }
      const nextKid = await generate(tx, 'next');
      const removed = await sweep(tx);
      logger.info({ retired: current?.kid, current: next?.kid, next: nextKid, removed }, 'rotated the signing key');
      return { rotated: true, removed };
    });
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
    /** Every key that may still verify an unexpired token: next, current, and retired until verify_until. */
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
      return { keys: rows.map((row) => row.jwk as JWK) };
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
