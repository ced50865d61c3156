import { describe, expect, it } from 'vitest';
import { firstDuplicateKey } from '../src/duplicate-json-keys.ts';

describe('firstDuplicateKey', () => {
  it('finds nothing in JSON whose objects repeat no key', () => {
    for (const text of [
      '{}',
      '[]',
      'null',
      '"a"',
      '{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}',
      '[{}, "a", {"a": 1}]',
      '{"a\\"b":1,"a":2}',
    ]) {
      expect(firstDuplicateKey(text), text).toBeUndefined();
    }
  });

  it('names the first repeated key by its path', () => {
    expect(firstDuplicateKey('{"amount":1,"currency":"USD","amount":99999999}')).toBe('amount');
    expect(firstDuplicateKey('{"a":{"b":1,"b":2}}')).toBe('a.b');
    expect(firstDuplicateKey('{"items":[{"id":1},{"id":2,"id":3}]}')).toBe('items.1.id');
    // Strings that hold quotes, braces and commas are values, not structure.
    expect(firstDuplicateKey('{"note":"\\",{\\"x\\":","x":1,"x":2}')).toBe('x');
  });

  it('compares keys decoded, so an escape does not hide a repeat', () => {
    expect(firstDuplicateKey('{"amount":1,"\\u0061mount":2}')).toBe('amount');
  });
});
