import { describe, expect, it } from 'vitest';
import { scanJsonText } from '../src/json-text-scan.ts';

const duplicateKey = (text: string) => scanJsonText(text).duplicateKey;
const nonIntegerLiterals = (text: string) => scanJsonText(text).nonIntegerLiterals;

describe('scanJsonText: repeated keys', () => {
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
      expect(duplicateKey(text), text).toBeUndefined();
    }
  });

  it('names the first repeated key by its path', () => {
    expect(duplicateKey('{"amount":1,"currency":"USD","amount":99999999}')).toBe('amount');
    expect(duplicateKey('{"a":{"b":1,"b":2}}')).toBe('a.b');
    expect(duplicateKey('{"items":[{"id":1},{"id":2,"id":3}]}')).toBe('items.1.id');
    // Strings that hold quotes, braces and commas are values, not structure.
    expect(duplicateKey('{"note":"\\",{\\"x\\":","x":1,"x":2}')).toBe('x');
  });

  it('compares keys decoded, so an escape does not hide a repeat', () => {
    expect(duplicateKey('{"amount":1,"\\u0061mount":2}')).toBe('amount');
  });
});

describe('scanJsonText: numbers written with a fraction or an exponent', () => {
  it('finds none where every number is a plain integer', () => {
    for (const text of ['{"amount":100,"n":-5,"big":9007199254740993}', '[1, 2, -0]', '{"s":"1.5e3","t":true,"f":false}', '7']) {
      expect(nonIntegerLiterals(text), text).toBeUndefined();
    }
  });

  it('names each one by its path, whatever value it parses to', () => {
    expect(nonIntegerLiterals('{"amount":1.0000000000000001,"currency":"USD"}')).toEqual(['amount']);
    expect(nonIntegerLiterals('{"amount": 100.0 , "expires_in_seconds":1e2}')).toEqual(['amount', 'expires_in_seconds']);
    expect(nonIntegerLiterals('{"a":{"b":[1,2E-0,-3.5]},"c":1}')).toEqual(['a.b.1', 'a.b.2']);
    expect(nonIntegerLiterals('-1.25')).toEqual(['']);
  });
});
