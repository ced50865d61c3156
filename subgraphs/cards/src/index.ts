export { currencyExponent, currencyExponents } from '@ghostpay/platform';
export { canRevealCard, canSeeCard } from './card-access.ts';
export { effectiveStatus } from './card-view.ts';
export { type CardsConfig, cardsConfigSchema } from './config.ts';
export { eraseCardPans } from './erase-card-pans.ts';
export { expireCards } from './expire-cards.ts';
export {
  createCardsHousekeeping,
  type HousekeepingOptions,
  HousekeepingPassError,
  type HousekeepingResult,
  pruneCardIdempotencyKeys,
  runCardsHousekeeping,
} from './housekeeping.ts';
export { issueCard } from './issue-card.ts';
export { brandOf, generatePan, isLuhnValid } from './pan.ts';
export {
  decryptPan,
  deriveCvc,
  encryptPan,
  type PanCiphertextVersion,
  type PanKeyring,
  panCiphertextVersion,
  panCiphertextWriteVersion,
  panFingerprint,
  panSecretNames,
  parsePanKeyring,
} from './pan-crypto.ts';
export { CiphertextVersionRefusedError, type ReencryptOptions, type ReencryptResult, reencryptCards } from './reencrypt-cards.ts';
export { createPostgresRateLimitStore, pruneRevealCounters } from './reveal-rate-limit-store.ts';
export { type CardsService, type CardsServiceDeps, cardsTypeDefs, createCardsService } from './service.ts';
