import { capturingLogger } from '@ghostpay/test-support';
import { describe, expect, it } from 'vitest';
import { withoutCredentialsInUrls } from '../src/index.ts';

describe('withoutCredentialsInUrls', () => {
  it('censors the whole value of a credential parameter, commas and semicolons included: MongoDB authMechanismProperties is a comma list', () => {
    const mongo =
      'mongodb+srv://cluster0.example.net/db?authMechanism=MONGODB-AWS&authMechanismProperties=SERVICE_NAME:x,AWS_SESSION_TOKEN:awstok&w=majority';
    expect(withoutCredentialsInUrls(mongo)).toBe(
      'mongodb+srv://cluster0.example.net/db?authMechanism=MONGODB-AWS&authMechanismProperties=[redacted]&w=majority',
    );
    const postgres = 'postgres://db.internal/ledger?sslmode=require&sslpassword=kp,x;y&application_name=a';
    expect(withoutCredentialsInUrls(postgres)).toBe(
      'postgres://db.internal/ledger?sslmode=require&sslpassword=[redacted]&application_name=a',
    );
    expect(withoutCredentialsInUrls('odbc://h/db?uid=app&pwd=odbcpw')).toBe('odbc://h/db?uid=app&pwd=[redacted]');
  });

  it('finds a credential parameter inside another value and keeps the comma that ends a URL in a list', () => {
    expect(withoutCredentialsInUrls('http://h/x?x=a;password=s')).toBe('http://h/x?x=a;password=[redacted]');
    expect(withoutCredentialsInUrls('REDIS_URLS=redis://a?password=x,redis://b?token=y,')).toBe(
      'REDIS_URLS=redis://a?password=[redacted],redis://b?token=[redacted],',
    );
  });

  it('censors real-world URLs: a password-only redis URL, IPv6 hosts, a URL inside an error stack, and leaves text without URLs alone', () => {
    expect(withoutCredentialsInUrls('redis://:onlypass@cache:6379/0')).toBe('redis://[redacted]@cache:6379/0');
    expect(withoutCredentialsInUrls('postgres://u:p@[::1]:5432/db')).toBe('postgres://[redacted]@[::1]:5432/db');
    expect(withoutCredentialsInUrls('postgres://[2001:db8::1]:5432/db?password=pw')).toBe(
      'postgres://[2001:db8::1]:5432/db?password=[redacted]',
    );
    const stack = 'Error: connect ECONNREFUSED postgres://u:p@db/x\n    at run (file:///app/node_modules/@apollo/server/x.js:1:1)';
    expect(withoutCredentialsInUrls(stack)).toBe(
      'Error: connect ECONNREFUSED postgres://[redacted]@db/x\n    at run (file:///app/node_modules/@apollo/server/x.js:1:1)',
    );
    const plain = 'a sentence with a = b and ops@example.test, no URL';
    expect(withoutCredentialsInUrls(plain)).toBe(plain);
    expect(withoutCredentialsInUrls('12://u:p@h')).toBe('12://u:p@h');
  });

  it('stops the user information at whitespace after a host and path: the next line keeps its e-mail address', () => {
    // A URL with user information, then a line naming an address: censored to the last @, since a
    // password with an @ and a space has that shape too (stricter than needed, never looser).
    expect(withoutCredentialsInUrls('connect postgres://u:p@db/x failed\nnotified ops@example.test')).toBe(
      'connect postgres://[redacted]@example.test',
    );
    expect(withoutCredentialsInUrls('redis://:pw@cache:6379 down; paging ops@example.test')).toBe('redis://[redacted]@example.test');
    // A URL without user information, with a path, then an address: nothing to censor.
    for (const text of [
      'POST http://127.0.0.1:4002/graphql failed\nuser alice@example.test',
      'GET https://hooks.example.test/charges?x=1 for ops@example.test',
      'from http://[::1]:4000/ by bob@example.test',
      'see http://host#part\tmail bob@example.test',
    ]) {
      expect(withoutCredentialsInUrls(text)).toBe(text);
    }
  });

  it('still censors a malformed password holding whitespace, an @ or a / before the whitespace', () => {
    for (const [text, censored] of [
      ['redis://:pass word@cache:6379', 'redis://[redacted]@cache:6379'],
      ['redis://:pass\nword@cache:6379', 'redis://[redacted]@cache:6379'],
      ['postgres://us er:pw@db/x', 'postgres://[redacted]@db/x'],
      ['postgres://u:p@ss w@rd@db/x', 'postgres://[redacted]@db/x'],
      ['postgres://u:p/x@ss word@db/x', 'postgres://[redacted]@db/x'],
      ['redis://:pa/ss word@cache', 'redis://[redacted]@cache'],
      ['redis://:pa?ss word@cache', 'redis://[redacted]@cache'],
      // Without a path the authority may be a password's start: censored past the whitespace, as before.
      ['http://host:8080 for ops@example.test', 'http://[redacted]@example.test'],
    ]) {
      expect(withoutCredentialsInUrls(text!), text).toBe(censored);
    }
  });

  it('never shows part of a malformed password: one holding an @ and spaces, or starting with / ? # (redis://:#pass word@host)', () => {
    // After an @ nothing tells a password's next words from the text after a URL
    // (`u:p@ss my word@db` and `u:p@db is down, ops@example.test` have one shape): censored to
    // the last @. Before one, only a host with a non-empty port, if any, ends the authority.
    for (const [text, censored] of [
      ['postgres://u:p@ss my word@db/x', 'postgres://[redacted]@db/x'],
      ['redis://:p@ss  two words@cache', 'redis://[redacted]@cache'],
      ['postgres://u:p@a/b c@db/x', 'postgres://[redacted]@db/x'],
      ['redis://:a@b c/d e@cache', 'redis://[redacted]@cache'],
      ['redis://:#my pass@cache:6379', 'redis://[redacted]@cache:6379'],
      ['redis://:/my pass@cache', 'redis://[redacted]@cache'],
      ['redis://default:?my pass@cache', 'redis://[redacted]@cache'],
    ]) {
      expect(withoutCredentialsInUrls(text!), text).toBe(censored);
    }
  });

  // The regular expressions this replaced took quadratic time on a long run of scheme characters
  // and cubic time on a run of `;pass` (10 kB: 12 s, 1 MB: days), blocking the event loop of any
  // service logging such a string. Here each finishes well within the test's timeout.
  it('censors a long line in one pass: many URLs, a long run of letters, a long run of parameter names', () => {
    const many = 'a://b:c@d '.repeat(100_000);
    expect(withoutCredentialsInUrls(many)).toBe('a://[redacted]@d '.repeat(100_000));
    const letters = `x://u:p@h ${'a'.repeat(100_000)}`;
    expect(withoutCredentialsInUrls(letters)).toBe(`x://[redacted]@h ${'a'.repeat(100_000)}`);
    const words = `x://u:p ${'w@h '.repeat(100_000)}`;
    expect(withoutCredentialsInUrls(words)).toBe(`x://[redacted]@h `);
    const spaces = `x://u${' '.repeat(100_000)}v@h`;
    expect(withoutCredentialsInUrls(spaces)).toBe('x://[redacted]@h');
    const names = `x://h/${';pass'.repeat(2_000)} =`;
    expect(withoutCredentialsInUrls(names)).toBe(names);
    const { logger, parsed } = capturingLogger();
    logger.info({ blob: letters }, 'logged');
    expect(parsed()[0]).toMatchObject({ blob: `x://[redacted]@h ${'a'.repeat(100_000)}` });
  });
});
