import { existsSync } from 'node:fs';
import { createTestTokenIssuer, inCi, type TestTokenIssuer } from '@ghostpay/test-support';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, type StubSubgraphs, startRouter, startStubSubgraphs } from './router-harness.ts';

const chromiumPath = '/usr/bin/chromium';

// As the global setup reads it (inCi: CI is true or 1): under CI a missing Chromium fails the run instead of skipping.
describe.skipIf(!existsSync(chromiumPath) && !inCi())('admin playground in headless Chromium', () => {
  let issuer: TestTokenIssuer;
  let subgraphs: StubSubgraphs;
  let router: Awaited<ReturnType<typeof startRouter>>;
  let browser: Browser;

  beforeAll(async () => {
    issuer = await createTestTokenIssuer();
    subgraphs = await startStubSubgraphs(issuer.verifier);
    router = await startRouter({ verifier: issuer.verifier, urls: subgraphs.urls });
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await router?.close();
    await subgraphs?.close();
  });

  it('serves every asset from the router itself (no CDN)', async () => {
    for (const asset of ['react.js', 'react-dom.js', 'graphiql.js', 'graphiql.css', 'playground.js']) {
      const response = await fetch(`${router.url}/playground/assets/${asset}`);
      expect(response.status, asset).toBe(200);
    }
    const page = await (await fetch(`${router.url}/playground`)).text();
    expect(page).not.toMatch(/https?:\/\//);
  });

  it('refuses a merchant token and runs an admin query', async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('requestfailed', (request) => problems.push(`failed ${request.url()}`));
    page.on('request', (request) => {
      if (!request.url().startsWith(router.url)) problems.push(`outside request ${request.url()}`);
    });
    const query = 'query AdminCheck { me { id } __schema { queryType { name } } }';
    await page.goto(`${router.url}/playground?query=${encodeURIComponent(query)}`);

    await page.fill('#token', await issuer.mint({ userId: 'usr_merchant', role: 'merchant' }));
    await page.click('#open');
    await page.locator('#error', { hasText: 'Refused' }).waitFor({ timeout: 10_000 });
    expect(await page.textContent('#error')).toMatch(/admin tokens only/);

    await page.fill('#token', await issuer.mint({ userId: 'usr_admin', role: 'admin' }));
    await page.click('#open');
    await page.waitForSelector('.graphiql-container', { timeout: 20_000 });
    await page.click('.graphiql-execute-button');
    // Locators run in Playwright's own world: the page's strict CSP (no eval) stays on.
    await page.locator('.graphiql-response', { hasText: 'usr_admin' }).waitFor({ timeout: 20_000 });
    const result = await page.textContent('.graphiql-response');
    expect(result).toContain('"queryType"');
    expect(result).toContain('"Query"');
    expect(problems).toEqual([]);
    await page.close();
  }, 60_000);

  it('refuses playground requests from non-admin tokens at the router', async () => {
    const response = await post(
      router.graphqlUrl,
      { query: '{ me { id } }' },
      { authorization: await issuer.bearer({ userId: 'usr_u', role: 'user' }), 'x-ghostpay-client': 'playground' },
    );
    expect(response.status).toBe(403);
    expect(response.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});
