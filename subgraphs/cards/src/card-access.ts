import { cards } from '@ghostpay/db';
import type { Principal } from '@ghostpay/platform';
import { type AnyColumn, eq, type SQL, sql } from 'drizzle-orm';
import type { CardRow } from './card-view.ts';

/**
 * Who may see a card: its owner, the merchant that issued it, any admin. Everyone else is
 * told NOT_FOUND, exactly as for an id that does not exist.
 */
export function canSeeCard(principal: Principal, card: Pick<CardRow, 'ownerId' | 'issuerId'>): boolean {
  if (principal.role === 'admin') return true;
  if (principal.role === 'merchant') return card.issuerId === principal.userId;
  return card.ownerId === principal.userId;
}

/**
 * Who may read the PAN and CVC: admins, and the owner when a `user`. Never a merchant, not even
 * one a card was issued to (`issueCard` takes any user id as the owner, the merchant's own too):
 * ownership alone let a merchant that issued a card to itself read its PAN with a token carrying
 * `cards:reveal`, which the issuing merchant must never do. Role and scope both, as for issuing.
 */
export function canRevealCard(principal: Principal, card: Pick<CardRow, 'ownerId'>): boolean {
  return principal.role === 'admin' || (principal.role === 'user' && card.ownerId === principal.userId);
}

/**
 * `canSeeCard` as a SQL condition for list queries, on `table` (the cards table, or an alias
 * of it in a subquery).
 */
export function visibleCardsCondition(principal: Principal, table: { issuerId: AnyColumn; ownerId: AnyColumn } = cards): SQL {
  if (principal.role === 'admin') return sql`true`;
  if (principal.role === 'merchant') return eq(table.issuerId, principal.userId);
  return eq(table.ownerId, principal.userId);
}
