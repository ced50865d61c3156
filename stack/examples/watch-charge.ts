/**
 * Watches one charge's status live through the router, from the repository root:
 *   npm run watch-charge -- <chargeId>
 * (the npm script runs the Node 24 pinned in devDependencies, which runs TypeScript as is).
 * Uses the merchant's dev API key from .data/dev-credentials.json (GHOSTPAY_DATA_DIR overrides).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const chargeId = process.argv[2];
if (!chargeId) {
  process.stderr.write('usage: npm run watch-charge -- <chargeId>\n');
  process.exit(2);
}
// The router's origin, or its GraphQL URL as the bridge's and k6's ROUTER_URL give it: both work.
const router = (process.env.ROUTER_URL ?? 'http://127.0.0.1:4000').replace(/\/+$/, '').replace(/\/graphql$/, '');
const credentials = JSON.parse(readFileSync(join(process.env.GHOSTPAY_DATA_DIR ?? '.data', 'dev-credentials.json'), 'utf8'));

const exchange = await fetch(`${router}/graphql`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    query: 'mutation ($key: String!) { createToken(apiKey: $key) { accessToken } }',
    variables: { key: credentials.merchant.apiKey },
  }),
});
const exchanged = (await exchange.json().catch(() => undefined)) as
  | { data?: { createToken?: { accessToken: string } }; errors?: { message: string }[] }
  | undefined;
const token = exchanged?.data?.createToken?.accessToken;
if (!token) {
  process.stderr.write(
    `token exchange at ${router}/graphql failed (HTTP ${exchange.status}): ${exchanged?.errors?.[0]?.message ?? 'no GraphQL answer; is ROUTER_URL the router?'}\n`,
  );
  process.exit(1);
}

const client = createClient({
  url: `${router.replace(/^http/, 'ws')}/graphql`,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
});
const query = 'subscription ($id: ID!) { chargeUpdated(id: $id) { id status amount currency card { status last4 owner { name } } } }';
for await (const event of client.iterate({ query, variables: { id: chargeId } })) {
  process.stdout.write(`${JSON.stringify(event.data ?? event.errors)}\n`);
  const status = (event.data as { chargeUpdated?: { status: string } } | undefined)?.chargeUpdated?.status;
  if (status === 'SETTLED' || status === 'REFUNDED' || status === 'DECLINED') break;
}
await client.dispose();
