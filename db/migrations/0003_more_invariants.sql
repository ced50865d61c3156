-- More invariants the database enforces whatever a service writes (db/README.md, "Invariants"),
-- added as migration 0002's were: NOT VALID, so each ALTER holds its table's ACCESS EXCLUSIVE lock
-- only for a catalog change (no scan of existing rows) and new and updated rows are checked from
-- this commit on; `migrate` validates them after the migration's transaction has committed (one
-- VALIDATE CONSTRAINT per transaction, under SHARE UPDATE EXCLUSIVE, which lets reads and writes go
-- on), and leaves one that old rows break NOT VALID with a warning. Tables are taken in the order
-- the services' transactions take them (cards, then charges, then refunds).
--
-- No amount above the services' cap, GraphQL's Int (2^31 - 1: cards' CARD_MAX_AMOUNT is capped at
-- it, charges refuse more): the bigint columns are read as JavaScript numbers, exact only up to
-- 2^53 - 1, so a larger value would be read as another amount.
ALTER TABLE "cards"."cards" ADD CONSTRAINT "cards_amount_max" CHECK ("cards"."cards"."amount" <= 2147483647) NOT VALID;--> statement-breakpoint
-- USED exactly when spent: the authorization sets status USED and used_at in one update, nothing
-- else writes used_at, and no card leaves USED (cancel and the expiry sweep take ACTIVE cards only;
-- a refund changes the charge, not the card).
ALTER TABLE "cards"."cards" ADD CONSTRAINT "cards_used_at_matches_status" CHECK (("cards"."cards"."status" = 'USED') = ("cards"."cards"."used_at" is not null)) NOT VALID;--> statement-breakpoint
-- The revealing principal's role, one of the platform's Roles.
ALTER TABLE "cards"."reveal_audit" ADD CONSTRAINT "reveal_audit_actor_role_check" CHECK ("cards"."reveal_audit"."actor_role" in ('admin', 'merchant', 'user')) NOT VALID;--> statement-breakpoint
ALTER TABLE "charges"."charges" ADD CONSTRAINT "charges_amount_max" CHECK ("charges"."charges"."amount" <= 2147483647 and "charges"."charges"."refunded_amount" <= 2147483647) NOT VALID;--> statement-breakpoint
ALTER TABLE "charges"."refunds" ADD CONSTRAINT "refunds_amount_max" CHECK ("charges"."refunds"."amount" <= 2147483647) NOT VALID;
