-- The ACTIVE cards by expiry (db/README.md, "Migrations"): the cards housekeeping's expiry sweep
-- (subgraphs/cards expireCards: status = 'ACTIVE' and expires_at <= now(), every 60 s on every
-- replica) read the whole cards table on each pass without it, even with nothing due.
-- Not CONCURRENTLY (drizzle runs migrations in a transaction): the build holds a SHARE lock on
-- cards, so issuance and authorizations wait for it. On a large cards table, build it by hand
-- first (db/README.md, "Migrations") and this statement does nothing.
CREATE INDEX IF NOT EXISTS "cards_expiry_due_idx" ON "cards"."cards" USING btree ("expires_at") WHERE "cards"."cards"."status" = 'ACTIVE';
