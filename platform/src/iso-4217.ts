/**
 * Active ISO 4217 currencies (List One, as maintained by SIX for ISO) with their minor-unit
 * exponent: the number of decimal places between the major unit and the minor unit the API
 * counts in. Most currencies have 2; the exceptions (0 and 3) are listed explicitly below.
 *
 * Deliberately absent:
 * - funds codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW): units of account, not
 *   currencies a card is funded or charged in (ICU does not list them either);
 * - funds and metals without a minor unit ("N.A." in List One: XAU, XAG, XPT, XPD, XDR, XSU,
 *   XUA, XBA–XBD, XTS, XXX): a card cannot be funded in them;
 * - withdrawn codes (HRK 2023, SLL, CUC, ANG → XCG 2025, ZWL → ZWG 2024, BGN → EUR 2026).
 *
 * `Intl.supportedValuesOf('currency')` also lists historic codes, and CLDR's display digits
 * differ from ISO's minor units for some (IQD, RSD, HUF...), so it cross-checks membership
 * only (see subgraphs/cards/test/currency-and-config.test.ts). Update this table when ISO publishes an amendment.
 */
const exponentExceptions: Record<string, number> = {
  // exponent 0
  BIF: 0,
  CLP: 0,
  DJF: 0,
  GNF: 0,
  ISK: 0,
  JPY: 0,
  KMF: 0,
  KRW: 0,
  PYG: 0,
  RWF: 0,
  UGX: 0,
  VND: 0,
  VUV: 0,
  XAF: 0,
  XOF: 0,
  XPF: 0,
  // exponent 3
  BHD: 3,
  IQD: 3,
  JOD: 3,
  KWD: 3,
  LYD: 3,
  OMR: 3,
  TND: 3,
};

const twoDecimalCodes = `
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK
LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO
NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS
SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST
XCD XCG YER ZAR ZMW ZWG
`
  .trim()
  .split(/\s+/);

/** Code → minor-unit exponent for every active ISO 4217 currency a card may be issued in. */
export const currencyExponents: ReadonlyMap<string, number> = new Map([
  ...twoDecimalCodes.map((code) => [code, 2] as const),
  ...Object.entries(exponentExceptions),
]);

/** The minor-unit exponent of an active ISO 4217 code, or undefined for anything else. */
export function currencyExponent(code: string): number | undefined {
  return currencyExponents.get(code);
}
