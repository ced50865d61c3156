import { randomBytes } from 'node:crypto';
import { seedUser } from '@ghostpay/auth';
import { type DatabaseHandle, newId } from '@ghostpay/db';
import { sql } from 'drizzle-orm';

export interface BenchAccounts {
  merchantId: string;
  merchantApiKey: string;
  merchantApiKeyId: string;
  ownerId: string;
}

/** A merchant (with an API key whose rate limit is raised for the bench) and a card owner. */
export async function seedBenchAccounts(database: DatabaseHandle): Promise<BenchAccounts> {
  const tag = randomBytes(4).toString('hex');
  const merchant = await seedUser(database, { name: 'Bench merchant', email: `bench-merchant-${tag}@bench.test`, role: 'merchant' });
  const owner = await seedUser(database, { name: 'Bench user', email: `bench-user-${tag}@bench.test`, role: 'user' });
  // The bench key's own per-key override: the router reads auth.api_keys.rate_limit_per_minute.
  await database.db.execute(sql`update auth.api_keys set rate_limit_per_minute = 1000000000 where id = ${merchant.apiKeyId}`);
  return { merchantId: merchant.user.id, merchantApiKey: merchant.apiKey, merchantApiKeyId: merchant.apiKeyId, ownerId: owner.user.id };
}

/**
 * Pre-issues `count` ACTIVE cards issued by the merchant, in one statement per 10,000 rows.
 * Like the test seed, the PAN ciphertext is random bytes: these cards are charge targets, never revealed.
 */
export async function issueBenchCards(
  database: DatabaseHandle,
  accounts: BenchAccounts,
  count: number,
  amount: number,
  currency: string,
): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < count; done += 10_000) {
    const batch = Array.from({ length: Math.min(10_000, count - done) }, () => newId('card'));
    await database.db.execute(sql`
      insert into cards.cards (id, owner_id, issuer_id, pan_ciphertext, pan_key_id, pan_fingerprint, bin, last4, brand,
                               exp_month, exp_year, expires_at, amount, currency, status)
      select id, ${accounts.ownerId}, ${accounts.merchantId}, encode(decode(md5(random()::text) || md5(random()::text), 'hex'), 'base64'), 'bench',
             md5(id || random()::text), '400000', lpad((floor(random() * 10000))::int::text, 4, '0'), 'VISA',
             extract(month from now() + interval '1 year')::int, extract(year from now() + interval '1 year')::int,
             now() + interval '1 year', ${amount}, ${currency}, 'ACTIVE'
      from unnest(${`{${batch.join(',')}}`}::text[]) as id`);
    ids.push(...batch);
  }
  return ids;
}
