import { describe, expect, it } from 'vitest';
import { hasPrefix, newId } from '../src/ids.ts';

describe('newId', () => {
  it('writes 22 base62 characters after its prefix, each character equally likely', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const id = newId('card');
      expect(hasPrefix(id, 'card')).toBe(true);
      for (const char of id.slice('card_'.length)) counts.set(char, (counts.get(char) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    // 440,000 characters: about 7,097 each, a standard deviation of about 84. `byte % 62` over
    // every byte made 0–7 a quarter likelier (about 8,594 against 6,875): a ratio of 1.25.
    const sorted = [...counts.values()].sort((a, b) => a - b);
    expect((sorted.at(-1) ?? 0) / (sorted[0] ?? 1)).toBeLessThan(1.1);
  });
});
