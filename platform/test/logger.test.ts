import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/index.ts';

describe('logger', () => {
  it('redacts authorization headers, tokens, API keys, PAN and CVC fields', () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = createLogger({ service: 'test', destination });
    logger.info(
      {
        req: { headers: { authorization: 'Bearer eyJhbGciOi.abc.def' } },
        token: 'tok-secret',
        apiKey: 'gp_live_abcdef',
        card: { pan: '4242424242424242', cvc: '123' },
        variables: { pan: '4000056655665556' },
      },
      'hello',
    );
    const line = lines.join('');
    for (const secret of ['eyJhbGciOi', 'tok-secret', 'gp_live_abcdef', '4242424242424242', '"123"', '4000056655665556']) {
      expect(line).not.toContain(secret);
    }
    expect(JSON.parse(line)).toMatchObject({ service: 'test', msg: 'hello', token: '[redacted]' });
  });
});
