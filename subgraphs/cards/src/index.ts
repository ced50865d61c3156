export { canRevealCard, canSeeCard } from './card-access.ts';
export { effectiveStatus } from './card-view.ts';
export { type CardsConfig, cardsConfigSchema } from './config.ts';
export { currencyExponent, currencyExponents } from './iso-4217.ts';
export { brandOf, generatePan, isLuhnValid } from './pan.ts';
export { decryptPan, deriveCvc, encryptPan, type PanKeyring, panFingerprint, panSecretNames, parsePanKeyring } from './pan-crypto.ts';
export { type ReencryptOptions, type ReencryptResult, reencryptCards } from './reencrypt-cards.ts';
export { createPostgresRateLimitStore, pruneRevealCounters } from './reveal-rate-limit-store.ts';
export { type CardsServiceDeps, cardsTypeDefs, createCardsService } from './service.ts';
