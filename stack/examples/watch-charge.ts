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
const router = process.env.ROUTER_URL ?? 'http://127.0.0.1:4000';
const credentials = JSON.parse(readFileSync(join(process.env.GHOSTPAY_DATA_DIR ?? '.data', 'dev-credentials.json'), 'utf8'));

const exchange = await fetch(`${router}/graphql`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    query: 'mutation ($key: String!) { createToken(apiKey: $key) { accessToken } }',
    variables: { key: credentials.merchant.apiKey },
  }),
});
const token = ((await exchange.json()) as { data: { createToken: { accessToken: string } } }).data.createToken.accessToken;

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
