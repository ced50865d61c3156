import type { GraphQLResolverMap } from '@apollo/subgraph';
import { type ChargeStatus, inIdOrder } from '@ghostpay/db';
import { NotFoundError, requireScope, type SubgraphContext } from '@ghostpay/platform';
import DataLoader from 'dataloader';
import { type AuthorizeChargeDeps, authorizeCharge } from './authorize-charge.ts';
import type { ChargeEventBus } from './charge-event-bus.ts';
import type { CreateChargeInput } from './charge-input.ts';
import { type ChargeLookups, listCharges } from './charge-queries.ts';
import type { ChargeRow } from './charge-record.ts';
import { openChargeUpdateStream } from './charge-update-stream.ts';
import { refundCharge } from './refund-charge.ts';

export interface ChargesContext extends SubgraphContext {
  /** Visible charges by id, for the caller (undefined when not visible or no caller). */
  chargeLoader: DataLoader<string, ChargeRow | undefined>;
  /** Visible charges by card id, newest first. */
  chargesByCardLoader: DataLoader<string, ChargeRow[]>;
}

/** Per-request loaders; each checks visibility for the request's principal. */
export function createLoaders(lookups: ChargeLookups, base: SubgraphContext): Pick<ChargesContext, 'chargeLoader' | 'chargesByCardLoader'> {
  return {
    chargeLoader: new DataLoader(async (ids) => {
      if (!base.principal) return ids.map(() => undefined);
      return inIdOrder(ids, await lookups.byIds(base.principal, ids));
    }),
    chargesByCardLoader: new DataLoader(async (cardIds) => {
      if (!base.principal) return cardIds.map(() => []);
      const rows = await lookups.byCardIds(base.principal, cardIds);
      return cardIds.map((cardId) => rows.filter((row) => row.cardId === cardId));
    }),
  };
}

export interface ResolverDeps extends AuthorizeChargeDeps {
  bus: ChargeEventBus;
  lookups: ChargeLookups;
}

const iso = (date: Date | null) => date?.toISOString() ?? null;

export function createResolvers(deps: ResolverDeps): GraphQLResolverMap<ChargesContext> {
  const { db } = deps;
  return {
    Query: {
      async charge(_: unknown, { id }: { id: string }, ctx: ChargesContext) {
        requireScope(ctx, 'charges:read');
        const charge = await ctx.chargeLoader.load(id);
        if (!charge) throw new NotFoundError('Charge', id);
        return charge;
      },
      async charges(
        _: unknown,
        args: { filter?: { status?: ChargeStatus; cardId?: string } | null; first?: number | null; after?: string | null },
        ctx: ChargesContext,
      ) {
        const principal = requireScope(ctx, 'charges:read');
        return listCharges(db, principal, args.filter, args.first, args.after);
      },
    },
    Mutation: {
      async createCharge(_: unknown, args: { input: CreateChargeInput; idempotencyKey: string }, ctx: ChargesContext) {
        const principal = requireScope(ctx, 'charges:write');
        const { charge, replayed } = await authorizeCharge(deps, principal, args.input, args.idempotencyKey);
        ctx.logger.info({ chargeId: charge.id, status: charge.status, declineCode: charge.declineCode, replayed }, 'createCharge');
        return charge;
      },
      async refundCharge(_: unknown, args: { id: string; amount?: number | null; idempotencyKey: string }, ctx: ChargesContext) {
        const principal = requireScope(ctx, 'charges:write');
        const { charge, replayed } = await refundCharge(deps, principal, args.id, args.amount, args.idempotencyKey);
        ctx.logger.info({ chargeId: charge.id, status: charge.status, replayed }, 'refundCharge');
        return charge;
      },
    },
    Subscription: {
      chargeUpdated: {
        // Authorized exactly like Query.charge: scope, then visibility (NOT_FOUND otherwise).
        async subscribe(_: unknown, { id }: { id: string }, ctx: ChargesContext) {
          const principal = requireScope(ctx, 'charges:read');
          const [visible] = await deps.lookups.byIds(principal, [id]);
          if (!visible) throw new NotFoundError('Charge', id);
          return openChargeUpdateStream(db, deps.bus, id);
        },
        resolve: (charge: ChargeRow) => charge,
      },
    },
    Charge: {
      async __resolveReference(ref: { id: string }, ctx: ChargesContext) {
        return (await ctx.chargeLoader.load(ref.id)) ?? null;
      },
      card: (charge: ChargeRow) => ({ __typename: 'Card', id: charge.cardId }),
      merchant: (charge: ChargeRow) => ({ __typename: 'User', id: charge.merchantId }),
      amount: (charge: ChargeRow) => Number(charge.amount),
      refundedAmount: (charge: ChargeRow) => Number(charge.refundedAmount),
      createdAt: (charge: ChargeRow) => charge.createdAt.toISOString(),
      authorizedAt: (charge: ChargeRow) => iso(charge.authorizedAt),
      settledAt: (charge: ChargeRow) => iso(charge.settledAt),
    },
    Card: {
      __resolveReference: (ref: { id: string }) => ({ id: ref.id }),
      async charges(card: { id: string }, _: unknown, ctx: ChargesContext) {
        requireScope(ctx, 'charges:read');
        return ctx.chargesByCardLoader.load(card.id);
      },
    },
  };
}
