import { unstorableReason } from '@ghostpay/platform';

/**
 * Whether `id` can be an id we issued (1–100 characters PostgreSQL stores as given). Reads skip
 * the others as not found: no row has them.
 */
export function isPossibleId(id: string): boolean {
  return id.length > 0 && id.length <= 100 && unstorableReason(id) === undefined;
}
