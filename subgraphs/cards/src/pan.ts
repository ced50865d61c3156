import { randomInt } from 'node:crypto';
import { luhnValid } from '@ghostpay/platform';

/** Length of every PAN this service issues. */
export const panLength = 16;

/** Luhn (mod 10) check over a string of digits (platform's `luhnValid`); false for anything but digits. */
export function isLuhnValid(digits: string): boolean {
  return /^\d+$/.test(digits) && luhnValid(digits);
}

/** The check digit that makes `partial` + digit Luhn-valid. */
export function luhnCheckDigit(partial: string): number {
  let sum = 0;
  for (let i = 0; i < partial.length; i++) {
    // Positions are counted from the right once the check digit is appended, so the
    // rightmost digit of `partial` is doubled.
    let d = partial.charCodeAt(partial.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

/**
 * A fresh random 16-digit PAN under `bin`: BIN + uniformly random account digits (from the
 * CSPRNG, so PANs cannot be predicted from one another) + the Luhn check digit.
 */
export function generatePan(bin: string): string {
  const accountLength = panLength - bin.length - 1;
  let account = '';
  for (let i = 0; i < accountLength; i++) account += String(randomInt(10));
  const partial = bin + account;
  return partial + String(luhnCheckDigit(partial));
}

/** Card brand from the BIN's leading digits (only the ranges this service may issue under). */
export function brandOf(bin: string): string {
  if (bin.startsWith('4')) return 'VISA';
  if (/^5[1-5]/.test(bin) || /^2[2-7]/.test(bin)) return 'MASTERCARD';
  return 'UNKNOWN';
}
