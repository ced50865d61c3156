import type { Stack } from './start-stack.ts';

/** The short first-minute banner: where everything is, and (first start only) the keys. */
export function formatBanner(stack: Stack): string {
  const { urls, credentials, stores } = stack;
  const lines = [
    '',
    'GhostPay-Lite is running',
    '',
    `  GraphQL      ${urls.graphql}`,
    `  Playground   ${urls.playground}   (admin token)`,
    `  REST         ${urls.bridge}`,
    `  REST docs    ${urls.restDocs}`,
    `  Metrics      ${urls.router}/metrics   (every service has /metrics, /healthz, /readyz)`,
    `  Data         ${stack.dataDir}`,
    `  Database     ${stores.database}`,
    `  Analytics    ${stores.analytics}`,
    `  Rate limits  ${stores.rateLimits}`,
    '',
  ];
  if (stack.firstStart) {
    lines.push('  Dev API keys (shown once; also in dev-credentials.json in the data directory):');
    for (const role of ['admin', 'merchant', 'user'] as const) {
      lines.push(`    ${role.padEnd(9)} ${credentials[role].apiKey}   user ${credentials[role].userId}`);
    }
  } else {
    lines.push(`  Dev API keys: ${stack.dataDir}/dev-credentials.json`);
  }
  lines.push(
    '',
    `  Try:  curl -s -X POST ${urls.bridge}/auth/token -H "content-type: application/json" \\`,
    `          -d "{\\"api_key\\": \\"$(jq -r .merchant.apiKey ${stack.dataDir}/dev-credentials.json)\\"}"`,
    '',
  );
  return lines.join('\n');
}
