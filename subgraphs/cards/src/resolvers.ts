import type { GraphQLResolverMap } from '@apollo/subgraph';
import type { Database } from '@ghostpay/db';
import {
  DateTimeScalar,
  ForbiddenError,
  type Logger,
  NotFoundError,
  requirePrincipal,
  requireScope,
  type SubgraphContext,
} from '@ghostpay/platform';
import type DataLoader from 'dataloader';

import { cancelCard } from './cancel-card.ts';
import { canSeeCard } from './card-access.ts';
import { type CardView, type JudgedCardRow, toCardView } from './card-view.ts';
import { type IssueCardInput, type IssueCardLimits, issueCard } from './issue-card.ts';
import { type CardFilter, listCards } from './list-cards.ts';
import type { PanSecrets } from './pan-crypto.ts';
import { revealCard } from './reveal-card.ts';
import { isPossibleId } from './storable-text.ts';

export interface CardsContext extends SubgraphContext {
  cardLoader: DataLoader<string, JudgedCardRow | undefined>;
}

export interface CardsResolverDeps {
  db: Database;
  panSecrets: PanSecrets;
  limits: IssueCardLimits;
  logger: Logger;
}

type PageArgs = { first?: number | null; after?: string | null };

/** A card the caller may see, through the request's DataLoader; NOT_FOUND otherwise. */
async function loadVisibleCard(context: CardsContext, id: string): Promise<JudgedCardRow> {
  const principal = requirePrincipal(context);
  const row = await context.cardLoader.load(id);
  if (!row || !canSeeCard(principal, row)) throw new NotFoundError('Card', id);
  return row;
}

export function createCardsResolvers(deps: CardsResolverDeps): GraphQLResolverMap<CardsContext> {
  const { db, panSecrets } = deps;
  return {
    DateTime: DateTimeScalar,
    Query: {
      async card(_parent, args: { id: string }, context: CardsContext) {
        requireScope(context, 'cards:read');
        return toCardView(await loadVisibleCard(context, args.id));
      },
      async cards(_parent, args: { filter?: CardFilter | null } & PageArgs, context: CardsContext) {
        const principal = requireScope(context, 'cards:read');
        return listCards(db, principal, args);
      },
    },
    Mutation: {
      async issueCard(_parent, args: { input: IssueCardInput; idempotencyKey?: string | null }, context: CardsContext) {
        const principal = requireScope(context, 'cards:write');
        // Scope and role both: a token must never widen what its role may do.
        if (principal.role !== 'merchant' && principal.role !== 'admin') throw new ForbiddenError('Only merchants and admins issue cards');
        const row = await issueCard({ ...deps, logger: context.logger }, principal, args.input, args.idempotencyKey);
        context.logger.info({ cardId: row.id, issuerId: principal.userId, amount: row.amount, currency: row.currency }, 'card issued');
        return toCardView(row);
      },
      async cancelCard(_parent, args: { id: string }, context: CardsContext) {
        const principal = requirePrincipal(context);
        const row = await cancelCard(db, principal, args.id);
        context.logger.info({ cardId: row.id, actorId: principal.userId }, 'card canceled');
        return toCardView(row);
      },
      async revealCard(_parent, args: { id: string }, context: CardsContext) {
        const principal = requireScope(context, 'cards:reveal');
        const secret = await revealCard(db, panSecrets, principal, args.id, context.requestId);
        // Only the fact of the reveal is logged; the audit row is the durable record.
        context.logger.info({ cardId: args.id, actorId: principal.userId, actorRole: principal.role }, 'card revealed');
        return secret;
      },
    },
    Card: {
      async __resolveReference(reference: { id: string }, context: CardsContext): Promise<CardView | null> {
        const principal = requirePrincipal(context);
        const row = await context.cardLoader.load(reference.id);
        // A card the caller may not see resolves to null, exactly like one that does not exist.
        return row && canSeeCard(principal, row) ? toCardView(row) : null;
      },
      owner: (card: CardView) => ({ __typename: 'User', id: card.ownerId }),
      issuedBy: (card: CardView) => ({ __typename: 'User', id: card.issuerId }),
    },
    User: {
      async cards(user: { id: string }, args: PageArgs, context: CardsContext) {
        const principal = requireScope(context, 'cards:read');
        // A representation's id no user can have owns no cards (it is not the caller's filter).
        if (!isPossibleId(user.id)) return { edges: [], pageInfo: { hasNextPage: false, endCursor: null } };
        return listCards(db, principal, { filter: { userId: user.id }, first: args.first, after: args.after });
      },
    },
  } as GraphQLResolverMap<CardsContext>;
}
