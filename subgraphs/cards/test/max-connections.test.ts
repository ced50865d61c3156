import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CardsHarness, startCardsHarness } from './cards-harness.ts';

describe('the cards service', () => {
  let h: CardsHarness;
  beforeAll(async () => {
    h = await startCardsHarness({ MAX_CONNECTIONS: '250' });
  });
  afterAll(() => h?.close());

  it('holds at most MAX_CONNECTIONS open connections', () => {
    expect(h.config.MAX_CONNECTIONS).toBe(250);
    expect(h.service.server.maxConnections).toBe(250);
  });
});
