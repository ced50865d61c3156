export { type AuthorizeChargeResult, authorizeCharge } from './authorize-charge.ts';
export { type ChargeEventNotice, chargeEventsChannel } from './charge-events.ts';
export { type ChargesService, type ChargesServiceDeps, chargesTypeDefs, createChargesService } from './charges-service.ts';
export { type ChargesConfig, chargesConfigSchema, DEFAULT_IDEMPOTENCY_WAIT_MS } from './config.ts';
export { checkLedger, type LedgerViolation } from './ledger-check.ts';
export { refundCharge } from './refund-charge.ts';
export { type SettlementBacklog, settleAllDue, settleDueCharges, settlementBacklog } from './settle-charges.ts';
