import { describe, expect, it } from 'vitest';
import { declaresNonUtf8Charset } from '../src/index.ts';

describe('declaresNonUtf8Charset', () => {
  it('is true for a declared charset other than UTF-8 only', () => {
    for (const contentType of [
      'application/json; charset=utf-16',
      'application/json; charset="latin1"',
      'application/json;charset=ISO-8859-1',
    ]) {
      expect(declaresNonUtf8Charset(contentType), contentType).toBe(true);
    }
    for (const contentType of [
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset="UTF8"',
      'text/plain',
      '',
    ]) {
      expect(declaresNonUtf8Charset(contentType), contentType).toBe(false);
    }
  });
});
