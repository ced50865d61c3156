import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bridge, bridgeConfigSchema, createBridge, loadSpec, routesOf } from '../src/index.ts';
import { silentLogger } from './stack-harness.ts';

/** The docs page needs no router: the bridge serves the contract and Swagger UI itself. */
describe('the docs page', () => {
  let bridge: Bridge;
  let browser: Browser;

  beforeAll(async () => {
    bridge = createBridge({
      config: bridgeConfigSchema.parse({ LOG_LEVEL: 'silent', SHUTDOWN_TIMEOUT_MS: '200', ROUTER_URL: 'http://127.0.0.1:9/graphql' }),
      logger: silentLogger,
    });
    await bridge.start(0);
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await bridge?.close();
  });

  it('renders every operation of the contract in headless Chromium, loading nothing from elsewhere', async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    const foreign: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('request', (request) => {
      if (!request.url().startsWith(bridge.url) && !request.url().startsWith('data:')) foreign.push(request.url());
    });
    await page.goto(`${bridge.url}/docs`, { waitUntil: 'load', timeout: 30_000 });
    await page.waitForSelector('.swagger-ui .info .title', { timeout: 30_000 });
    expect(await page.textContent('.swagger-ui .info .title')).toContain('GhostPay-Lite REST API');
    await page.waitForSelector('.opblock', { timeout: 30_000 });
    const operations = await page.$$eval('.opblock-summary-path', (nodes) => nodes.map((n) => n.getAttribute('data-path')));
    const documented = routesOf(loadSpec()).map((r) => r.pathTemplate);
    expect(new Set(operations)).toEqual(new Set(documented));
    await page.screenshot({ path: '/tmp/bridge-docs.png' });
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });
});
