-- Money invariants the database enforces whatever a service writes (db/README.md, "Invariants").
-- The CHECK constraints are added NOT VALID: each ALTER holds its table's ACCESS EXCLUSIVE lock
-- only for a catalog change (no scan of existing rows), and new and updated rows are checked from
-- this commit on. `migrate` validates them after the migration's transaction has committed, one
-- VALIDATE CONSTRAINT per transaction under SHARE UPDATE EXCLUSIVE, which lets reads and writes
-- go on while it scans. Tables are taken in the order the services' transactions take them
-- (idempotency keys, charges, refunds, events), so the migration does not deadlock with them.
ALTER TABLE "charges"."idempotency_keys" ADD CONSTRAINT "charge_idempotency_operation_check" CHECK ("charges"."idempotency_keys"."operation" in ('create_charge', 'refund_charge')) NOT VALID;--> statement-breakpoint
ALTER TABLE "charges"."idempotency_keys" ADD CONSTRAINT "charge_idempotency_state_check" CHECK ("charges"."idempotency_keys"."state" in ('in_progress', 'completed')) NOT VALID;--> statement-breakpoint
ALTER TABLE "charges"."charges" ADD CONSTRAINT "charges_decline_code_values" CHECK ("charges"."charges"."decline_code" in ('CARD_ALREADY_USED', 'CARD_EXPIRED', 'CARD_CANCELED', 'AMOUNT_EXCEEDS_LIMIT', 'CURRENCY_MISMATCH')) NOT VALID;--> statement-breakpoint
ALTER TABLE "charges"."charges" ADD CONSTRAINT "charges_refunded_matches_status" CHECK (case "charges"."charges"."status" when 'REFUNDED' then "charges"."charges"."refunded_amount" = "charges"."charges"."amount" when 'PARTIALLY_REFUNDED' then "charges"."charges"."refunded_amount" > 0 and "charges"."charges"."refunded_amount" < "charges"."charges"."amount" else "charges"."charges"."refunded_amount" = 0 end) NOT VALID;--> statement-breakpoint
ALTER TABLE "charges"."charges" ADD CONSTRAINT "charges_times_match_status" CHECK (case when "charges"."charges"."status" = 'DECLINED' then "charges"."charges"."authorized_at" is null and "charges"."charges"."settled_at" is null else "charges"."charges"."authorized_at" is not null and ("charges"."charges"."settled_at" is null or "charges"."charges"."settled_at" >= "charges"."charges"."authorized_at") end and ("charges"."charges"."status" <> 'SETTLED' or "charges"."charges"."settled_at" is not null) and ("charges"."charges"."status" <> 'AUTHORIZED' or "charges"."charges"."settled_at" is null)) NOT VALID;--> statement-breakpoint
-- A charge agrees with its card: its merchant issued the card (or is an admin), and a charge that
-- was not declined is in the card's currency, within the card's amount, on a card now USED.
-- Checked when a charge is written (not when a card changes: its issuer, currency and amount
-- never do, and the partial unique index keeps a card to one successful charge).
CREATE FUNCTION "charges"."check_charge_matches_card"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	card record;
BEGIN
	SELECT c.issuer_id, c.currency, c.amount, c.status INTO card FROM "cards"."cards" c WHERE c.id = NEW.card_id;
	IF NOT FOUND THEN
		-- The foreign key refuses the row.
		RETURN NULL;
	END IF;
	IF NEW.merchant_id <> card.issuer_id THEN
		IF NOT EXISTS (SELECT 1 FROM "auth"."users" u WHERE u.id = NEW.merchant_id AND u.role = 'admin') THEN
			RAISE EXCEPTION 'a charge''s merchant neither issued its card nor is an admin'
				USING ERRCODE = 'check_violation', SCHEMA = 'charges', TABLE = 'charges', CONSTRAINT = 'charges_match_card';
		END IF;
	END IF;
	IF NEW.status <> 'DECLINED' THEN
		IF NEW.currency <> card.currency THEN
			RAISE EXCEPTION 'a charge that was not declined is in another currency than its card'
				USING ERRCODE = 'check_violation', SCHEMA = 'charges', TABLE = 'charges', CONSTRAINT = 'charges_match_card';
		END IF;
		IF NEW.amount > card.amount THEN
			RAISE EXCEPTION 'a charge that was not declined is above its card''s amount'
				USING ERRCODE = 'check_violation', SCHEMA = 'charges', TABLE = 'charges', CONSTRAINT = 'charges_match_card';
		END IF;
		IF card.status <> 'USED' THEN
			RAISE EXCEPTION 'a charge that was not declined is on a card that is not USED'
				USING ERRCODE = 'check_violation', SCHEMA = 'charges', TABLE = 'charges', CONSTRAINT = 'charges_match_card';
		END IF;
	END IF;
	RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE TRIGGER "charges_match_card" AFTER INSERT ON "charges"."charges" FOR EACH ROW EXECUTE FUNCTION "charges"."check_charge_matches_card"();--> statement-breakpoint
CREATE TRIGGER "charges_match_card_on_update" AFTER UPDATE OF "card_id", "merchant_id", "amount", "currency", "status" ON "charges"."charges" FOR EACH ROW
	WHEN (OLD.card_id IS DISTINCT FROM NEW.card_id OR OLD.merchant_id IS DISTINCT FROM NEW.merchant_id OR OLD.amount IS DISTINCT FROM NEW.amount
		OR OLD.currency IS DISTINCT FROM NEW.currency OR (OLD.status = 'DECLINED') IS DISTINCT FROM (NEW.status = 'DECLINED'))
	EXECUTE FUNCTION "charges"."check_charge_matches_card"();--> statement-breakpoint
-- The refund rows of a charge add up to its refunded_amount (which charges_refund_bounds keeps
-- within the charged amount), so refunds never pay out more than was charged. Checked at commit
-- (deferred), whichever of the two a transaction writes first.
CREATE FUNCTION "charges"."check_refunds_match_charge"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	target text;
	targets text[];
	refunded bigint;
	total numeric;
BEGIN
	IF TG_TABLE_NAME = 'charges' THEN
		targets := ARRAY[NEW.id];
	ELSIF TG_OP = 'INSERT' THEN
		targets := ARRAY[NEW.charge_id];
	ELSIF TG_OP = 'DELETE' THEN
		targets := ARRAY[OLD.charge_id];
	ELSE
		targets := ARRAY[OLD.charge_id, NEW.charge_id];
	END IF;
	FOREACH target IN ARRAY targets LOOP
		SELECT c.refunded_amount INTO refunded FROM "charges"."charges" c WHERE c.id = target;
		CONTINUE WHEN NOT FOUND;
		SELECT coalesce(sum(r.amount), 0) INTO total FROM "charges"."refunds" r WHERE r.charge_id = target;
		IF total <> refunded THEN
			RAISE EXCEPTION 'a charge''s refund rows do not add up to its refunded_amount'
				USING ERRCODE = 'check_violation', SCHEMA = 'charges', TABLE = 'refunds', CONSTRAINT = 'refunds_match_charge';
		END IF;
	END LOOP;
	RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "charges_refunded_matches_refunds" AFTER INSERT ON "charges"."charges" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
	WHEN (NEW.refunded_amount <> 0) EXECUTE FUNCTION "charges"."check_refunds_match_charge"();--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "charges_refunded_matches_refunds_on_update" AFTER UPDATE OF "refunded_amount" ON "charges"."charges" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
	WHEN (OLD.refunded_amount IS DISTINCT FROM NEW.refunded_amount) EXECUTE FUNCTION "charges"."check_refunds_match_charge"();--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "refunds_match_charge" AFTER INSERT OR UPDATE OR DELETE ON "charges"."refunds" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
	EXECUTE FUNCTION "charges"."check_refunds_match_charge"();--> statement-breakpoint
ALTER TABLE "charges"."charge_events" ADD CONSTRAINT "charge_events_status_check" CHECK ("charges"."charge_events"."status" in ('AUTHORIZED', 'SETTLED', 'DECLINED', 'REFUNDED', 'PARTIALLY_REFUNDED')) NOT VALID;
