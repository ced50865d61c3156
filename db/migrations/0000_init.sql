CREATE SCHEMA "auth";
--> statement-breakpoint
CREATE SCHEMA "cards";
--> statement-breakpoint
CREATE SCHEMA "charges";
--> statement-breakpoint
CREATE TABLE "auth"."api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"prefix" text NOT NULL,
	"secret_hash" text NOT NULL,
	"rate_limit_per_minute" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_keys_rate_limit_check" CHECK ("auth"."api_keys"."rate_limit_per_minute" is null or "auth"."api_keys"."rate_limit_per_minute" > 0)
);
--> statement-breakpoint
CREATE TABLE "auth"."signing_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"alg" text NOT NULL,
	"state" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"private_key_ciphertext" text NOT NULL,
	"kek_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"activated_at" timestamp with time zone,
	"retired_at" timestamp with time zone,
	"verify_until" timestamp with time zone,
	"removed_at" timestamp with time zone,
	CONSTRAINT "signing_keys_state_check" CHECK ("auth"."signing_keys"."state" in ('next', 'current', 'retired', 'removed'))
);
--> statement-breakpoint
CREATE TABLE "auth"."users" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"email" text NOT NULL,
	"role" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "users_role_check" CHECK ("auth"."users"."role" in ('admin', 'merchant', 'user'))
);
--> statement-breakpoint
CREATE TABLE "cards"."idempotency_keys" (
	"issuer_id" text NOT NULL,
	"key" text NOT NULL,
	"fingerprint" text NOT NULL,
	"card_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "idempotency_keys_issuer_id_key_pk" PRIMARY KEY("issuer_id","key")
);
--> statement-breakpoint
CREATE TABLE "cards"."cards" (
	"id" text PRIMARY KEY NOT NULL,
	"owner_id" text NOT NULL,
	"issuer_id" text NOT NULL,
	"pan_ciphertext" text NOT NULL,
	"pan_key_id" text NOT NULL,
	"pan_fingerprint" text NOT NULL,
	"bin" char(6) NOT NULL,
	"last4" char(4) NOT NULL,
	"brand" text NOT NULL,
	"exp_month" smallint NOT NULL,
	"exp_year" smallint NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"amount" bigint NOT NULL,
	"currency" char(3) NOT NULL,
	"status" text DEFAULT 'ACTIVE' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"used_at" timestamp with time zone,
	"canceled_at" timestamp with time zone,
	CONSTRAINT "cards_amount_positive" CHECK ("cards"."cards"."amount" > 0),
	CONSTRAINT "cards_status_check" CHECK ("cards"."cards"."status" in ('ACTIVE', 'USED', 'EXPIRED', 'CANCELED')),
	CONSTRAINT "cards_currency_format" CHECK ("cards"."cards"."currency" ~ '^[A-Z]{3}$'),
	CONSTRAINT "cards_exp_month_range" CHECK ("cards"."cards"."exp_month" between 1 and 12)
);
--> statement-breakpoint
CREATE TABLE "cards"."reveal_audit" (
	"id" text PRIMARY KEY NOT NULL,
	"card_id" text NOT NULL,
	"actor_id" text NOT NULL,
	"actor_role" text NOT NULL,
	"request_id" text,
	"revealed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "cards"."reveal_counters" (
	"actor_id" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"count" integer NOT NULL,
	CONSTRAINT "reveal_counters_actor_id_window_start_pk" PRIMARY KEY("actor_id","window_start")
);
--> statement-breakpoint
CREATE TABLE "charges"."charge_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"charge_id" text NOT NULL,
	"status" text NOT NULL,
	"data" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "charges"."idempotency_keys" (
	"principal_id" text NOT NULL,
	"key" text NOT NULL,
	"operation" text NOT NULL,
	"fingerprint" text NOT NULL,
	"state" text NOT NULL,
	"charge_id" text,
	"response" jsonb,
	"locked_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone,
	CONSTRAINT "idempotency_keys_principal_id_operation_key_pk" PRIMARY KEY("principal_id","operation","key")
);
--> statement-breakpoint
CREATE TABLE "charges"."charges" (
	"id" text PRIMARY KEY NOT NULL,
	"card_id" text NOT NULL,
	"merchant_id" text NOT NULL,
	"amount" bigint NOT NULL,
	"currency" char(3) NOT NULL,
	"status" text NOT NULL,
	"decline_code" text,
	"refunded_amount" bigint DEFAULT 0 NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"authorized_at" timestamp with time zone,
	"settled_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "charges_amount_positive" CHECK ("charges"."charges"."amount" > 0),
	CONSTRAINT "charges_refund_bounds" CHECK ("charges"."charges"."refunded_amount" >= 0 and "charges"."charges"."refunded_amount" <= "charges"."charges"."amount"),
	CONSTRAINT "charges_status_check" CHECK ("charges"."charges"."status" in ('AUTHORIZED', 'SETTLED', 'DECLINED', 'REFUNDED', 'PARTIALLY_REFUNDED')),
	CONSTRAINT "charges_decline_code_check" CHECK (("charges"."charges"."status" = 'DECLINED') = ("charges"."charges"."decline_code" is not null)),
	CONSTRAINT "charges_currency_format" CHECK ("charges"."charges"."currency" ~ '^[A-Z]{3}$')
);
--> statement-breakpoint
CREATE TABLE "charges"."refunds" (
	"id" text PRIMARY KEY NOT NULL,
	"charge_id" text NOT NULL,
	"amount" bigint NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "refunds_amount_positive" CHECK ("charges"."refunds"."amount" > 0)
);
--> statement-breakpoint
ALTER TABLE "auth"."api_keys" ADD CONSTRAINT "api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "auth"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cards"."idempotency_keys" ADD CONSTRAINT "idempotency_keys_card_id_cards_id_fk" FOREIGN KEY ("card_id") REFERENCES "cards"."cards"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cards"."cards" ADD CONSTRAINT "cards_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "auth"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cards"."cards" ADD CONSTRAINT "cards_issuer_id_users_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "auth"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cards"."reveal_audit" ADD CONSTRAINT "reveal_audit_card_id_cards_id_fk" FOREIGN KEY ("card_id") REFERENCES "cards"."cards"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "charges"."charge_events" ADD CONSTRAINT "charge_events_charge_id_charges_id_fk" FOREIGN KEY ("charge_id") REFERENCES "charges"."charges"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "charges"."charges" ADD CONSTRAINT "charges_card_id_cards_id_fk" FOREIGN KEY ("card_id") REFERENCES "cards"."cards"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "charges"."charges" ADD CONSTRAINT "charges_merchant_id_users_id_fk" FOREIGN KEY ("merchant_id") REFERENCES "auth"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "charges"."refunds" ADD CONSTRAINT "refunds_charge_id_charges_id_fk" FOREIGN KEY ("charge_id") REFERENCES "charges"."charges"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_prefix_key" ON "auth"."api_keys" USING btree ("prefix");--> statement-breakpoint
CREATE INDEX "api_keys_user_id_idx" ON "auth"."api_keys" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "signing_keys_one_current_key" ON "auth"."signing_keys" USING btree ("state") WHERE "auth"."signing_keys"."state" = 'current';--> statement-breakpoint
CREATE UNIQUE INDEX "users_email_lower_key" ON "auth"."users" USING btree (lower("email"));--> statement-breakpoint
CREATE INDEX "users_created_at_id_idx" ON "auth"."users" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "card_idempotency_created_idx" ON "cards"."idempotency_keys" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "cards_pan_fingerprint_key" ON "cards"."cards" USING btree ("pan_fingerprint");--> statement-breakpoint
CREATE INDEX "cards_owner_id_created_idx" ON "cards"."cards" USING btree ("owner_id","created_at","id");--> statement-breakpoint
CREATE INDEX "cards_issuer_id_created_idx" ON "cards"."cards" USING btree ("issuer_id","created_at","id");--> statement-breakpoint
CREATE INDEX "cards_created_id_idx" ON "cards"."cards" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "reveal_audit_card_idx" ON "cards"."reveal_audit" USING btree ("card_id","revealed_at");--> statement-breakpoint
CREATE INDEX "charge_events_charge_idx" ON "charges"."charge_events" USING btree ("charge_id","id");--> statement-breakpoint
CREATE INDEX "charge_idempotency_created_idx" ON "charges"."idempotency_keys" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "charges_one_success_per_card" ON "charges"."charges" USING btree ("card_id") WHERE "charges"."charges"."status" <> 'DECLINED';--> statement-breakpoint
CREATE INDEX "charges_card_idx" ON "charges"."charges" USING btree ("card_id");--> statement-breakpoint
CREATE INDEX "charges_merchant_created_idx" ON "charges"."charges" USING btree ("merchant_id","created_at","id");--> statement-breakpoint
CREATE INDEX "charges_created_id_idx" ON "charges"."charges" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "charges_settlement_idx" ON "charges"."charges" USING btree ("authorized_at") WHERE "charges"."charges"."status" = 'AUTHORIZED';--> statement-breakpoint
CREATE INDEX "refunds_charge_idx" ON "charges"."refunds" USING btree ("charge_id");