import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { looksSecret } from './request-event.ts';

export const requestIdHeader = 'x-request-id';

const saneToken = /^[A-Za-z0-9._:-]{1,128}$/;
// As NotFoundError's echo rule: 12+ digits in a row are a card number's shape, Luhn-valid or not.
const longDigitRun = /\d{12,}/;

/**
 * Whether an id may be used as a request id: a sane token (1–128 of `A-Z a-z 0-9 . _ : -`)
 * holding no run of 12+ digits and nothing else `looksSecret` finds (a Luhn-valid 13–19 digit
 * run even with separators, a JWT, an API key): the request id is echoed in headers and error
 * bodies, written to every log line and forwarded to the next service, so it must never carry
 * card data or a credential. `looksSecret` is the test the router's `callerSafeId` applies to the
 * ids it puts in request events, so an id accepted here is kept there too.
 */
export function isAcceptableRequestId(id: string): boolean {
  return saneToken.test(id) && !longDigitRun.test(id) && !looksSecret(id);
}

/**
 * A fresh random id that passes `isAcceptableRequestId`: about 1% of UUIDs hold a digit run the
 * check refuses, and the next service would then replace the id instead of keeping it.
 */
export function freshRequestId(): string {
  for (;;) {
    const id = randomUUID();
    if (isAcceptableRequestId(id)) return id;
  }
}

/** The caller's request id when it is acceptable (`isAcceptableRequestId`), else a fresh one. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers[requestIdHeader];
  return typeof given === 'string' && isAcceptableRequestId(given) ? given : freshRequestId();
}
