-- PAN retention and the reveal audit's outcome (db/README.md, "Invariants"; subgraphs/cards/README.md,
-- "PAN retention" and "Reveal limit policy"). Tables are taken in the order the services'
-- transactions take them (cards, then reveal_audit: a reveal locks its card, then writes the audit row).
--
-- A card's PAN ciphertext may be erased once the card has left ACTIVE (only an ACTIVE card reveals):
-- the cards housekeeping sets it null CARD_PAN_RETENTION_DAYS after the card was used, canceled or
-- expired. Dropping NOT NULL is a catalog change (no scan).
ALTER TABLE "cards"."cards" ALTER COLUMN "pan_ciphertext" DROP NOT NULL;--> statement-breakpoint
-- The PANs still to erase, by when their card left ACTIVE (USED: used_at, CANCELED: canceled_at,
-- EXPIRED: expires_at). Not CONCURRENTLY (drizzle runs migrations in a transaction, which holds the
-- ACCESS EXCLUSIVE lock of the statement above until it commits): on a large cards table, build it by
-- hand first (db/README.md, "Migrations") and this statement does nothing.
CREATE INDEX IF NOT EXISTS "cards_pan_retention_idx" ON "cards"."cards" USING btree (coalesce("used_at", "canceled_at", "expires_at")) WHERE "cards"."cards"."pan_ciphertext" is not null and "cards"."cards"."status" <> 'ACTIVE';--> statement-breakpoint
-- An ACTIVE card always has its PAN (it can still be revealed and charged). NOT VALID, validated by
-- `migrate` after the commit, as 0002's and 0003's constraints are.
ALTER TABLE "cards"."cards" ADD CONSTRAINT "cards_active_has_pan" CHECK ("cards"."cards"."status" <> 'ACTIVE' or "cards"."cards"."pan_ciphertext" is not null) NOT VALID;--> statement-breakpoint
-- What a reveal attempt by a caller who may see the card came to: rows before this were all reveals
-- (refusals were not audited). A constant default: no table rewrite.
ALTER TABLE "cards"."reveal_audit" ADD COLUMN "outcome" text DEFAULT 'REVEALED' NOT NULL;--> statement-breakpoint
ALTER TABLE "cards"."reveal_audit" ADD CONSTRAINT "reveal_audit_outcome_check" CHECK ("cards"."reveal_audit"."outcome" in ('REVEALED', 'FORBIDDEN', 'NOT_ACTIVE')) NOT VALID;
