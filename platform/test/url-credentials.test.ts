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

  // The regular expressions this replaced took quadratic time on a long run of scheme characters
  // and cubic time on a run of `;pass` (10 kB: 12 s, 1 MB: days), blocking the event loop of any
  // service logging such a string. Here each finishes well within the test's timeout.
  it('censors a long line in one pass: many URLs, a long run of letters, a long run of parameter names', () => {
    const many = 'a://b:c@d '.repeat(100_000);
    expect(withoutCredentialsInUrls(many)).toBe('a://[redacted]@d '.repeat(100_000));
    const letters = `x://u:p@h ${'a'.repeat(100_000)}`;
    expect(withoutCredentialsInUrls(letters)).toBe(`x://[redacted]@h ${'a'.repeat(100_000)}`);
    const names = `x://h/${';pass'.repeat(2_000)} =`;
    expect(withoutCredentialsInUrls(names)).toBe(names);
    const { logger, parsed } = capturingLogger();
    logger.info({ blob: letters }, 'logged');
    expect(parsed()[0]).toMatchObject({ blob: `x://[redacted]@h ${'a'.repeat(100_000)}` });
  });
});
