import { freshDatabase } from '@ghostpay/test-support';
import { it } from 'vitest';
import { createParty, graphql, startCluster } from '../src/cluster.ts';
import { createTestSigningKey, issueCard } from '../src/suite-fixture.ts';

it('debug', async () => {
  const database = await freshDatabase({ poolSize: 2 });
  const key = await createTestSigningKey();
  const cluster = await startCluster({
    databaseUrl: database.url,
    testJwk: key.publicJwk,
    env: { BRIDGE_CORS_ORIGINS: 'https://app.reliability.test' },
  });
  const [m, u, b] = await Promise.all([
    createParty(database, cluster.graphqlUrl, 'merchant', 'm'),
    createParty(database, cluster.graphqlUrl, 'user', 'u'),
    createParty(database, cluster.graphqlUrl, 'merchant', 'b'),
  ]);
  const card = await issueCard(cluster.graphqlUrl, m, u.userId);
  for (const [url, tok] of [
    [cluster.graphqlUrl, b.token],
    [`${cluster.services.cards.url}/graphql`, b.token],
    [`${cluster.services.auth.url}/graphql`, m.token],
  ] as const) {
    const d = await graphql(url, `{ card(id: "${card}") { id } }`, undefined, tok);
    console.log(url, d.status, d.text.slice(0, 1500));
    const e = await graphql(url, `{ me { id } }`, undefined, tok);
    console.log(url, e.status, e.text.slice(0, 1500));
  }
  console.log(
    cluster
      .allLogs()
      .filter((l) => !l.includes('"level":30'))
      .join('\n'),
  );
  await cluster.close();
  await database.close();
});
