/**
 * capturingLogger: what the service logger writes, one entry per line, as a real destination
 * would receive it. Log tests (no PAN in any line) pass vacuously if lines go missing.
 */
import { PassThrough } from 'node:stream';
import { createLogger } from '@ghostpay/platform';
import { describe, expect, it } from 'vitest';
import { capturingLogger } from '../src/capturing-logger.ts';

describe('capturingLogger', () => {
  it('captures every entry at info and above as its own JSON line, as a real destination receives them', () => {
    const error = new Error('boom');
    const log = (logger: ReturnType<typeof capturingLogger>['logger']) => {
      logger.info({ orderId: 'o1' }, 'first');
      logger.child({ requestId: 'r1' }).warn('second, Zoë');
      logger.debug('below the level');
      logger.error(error);
      logger.info({ card: { pan: '4242424242424242' } }, 'with a card');
    };
    const captured = capturingLogger('capture-test');
    log(captured.logger);

    const written: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (chunk) => written.push(String(chunk)));
    log(createLogger({ service: 'capture-test', destination: stream }));

    expect(captured.lines).toHaveLength(4);
    for (const line of captured.lines) expect(line.indexOf('\n')).toBe(line.length - 1);
    const withoutTime = (text: string) => text.replace(/"time":"[^"]*"/g, '');
    expect(captured.lines.map(withoutTime)).toEqual(
      written
        .join('')
        .split(/(?<=\n)/)
        .map(withoutTime),
    );
    expect(captured.parsed()).toMatchObject([
      { service: 'capture-test', msg: 'first', orderId: 'o1' },
      { msg: 'second, Zoë', requestId: 'r1' },
      { msg: 'boom' },
      { msg: 'with a card' },
    ]);
    // The real logger's redaction, not a copy: no PAN in what was captured.
    expect(captured.lines.join('')).not.toContain('4242424242424242');
  });

  it('captures at the level asked for: debug lines at debug, only warnings and errors at warn', () => {
    const atDebug = capturingLogger('capture-test', { level: 'debug' });
    const atWarn = capturingLogger('capture-test', { level: 'warn' });
    for (const { logger } of [atDebug, atWarn]) {
      logger.debug({ step: 1 }, 'detail');
      logger.info('progress');
      logger.warn('odd');
      logger.child({ requestId: 'r1' }).error('broken');
    }
    expect(atDebug.parsed<{ level: number; msg: string }>().map(({ level, msg }) => [level, msg])).toEqual([
      [20, 'detail'],
      [30, 'progress'],
      [40, 'odd'],
      [50, 'broken'],
    ]);
    expect(atDebug.parsed()[0]).toMatchObject({ service: 'capture-test', step: 1 });
    expect(atWarn.parsed().map((line) => line.msg)).toEqual(['odd', 'broken']);
    expect(atWarn.lines).toHaveLength(2);
  });
});
