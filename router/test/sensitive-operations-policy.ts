/**
 * Who may call the sensitive operations, written out by hand: NOT derived from the
 * supergraph's directives or from the router's reading of them (`computeAuthMatrix` is), so a
 * router or a supergraph that stops requiring a scope disagrees with this table even when its
 * generated matrix still agrees with itself.
 *
 * Sources: README "Roles and scopes" (the role → scope table), ARCHITECTURE's auth section
 * and the seed README (admin: full access; merchant: can issue and charge; user: its own data,
 * and it reveals its own cards; analytics and key rotation are admin queries). Ownership
 * (cancelCard: owner, issuer or admin; createApiKey/revokeApiKey: your own keys, admins any)
 * is the subgraphs' to enforce, so the router lets every signed-in role through to those.
 * Anonymous callers are refused every one of them (UNAUTHENTICATED).
 */
export interface PolicyRow {
  operationType: 'query' | 'mutation';
  operation: string;
  /** An operation that reaches the field; its ids name nothing, so no allowed call changes data. */
  document: string;
  admin: PolicyDecision;
  merchant: PolicyDecision;
  user: PolicyDecision;
}

export type PolicyDecision = 'allowed' | 'FORBIDDEN';

const ok = 'allowed';
const no = 'FORBIDDEN';
const range = 'from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z"';

export const sensitiveOperationsPolicy: PolicyRow[] = [
  {
    operationType: 'mutation',
    operation: 'issueCard',
    document: 'mutation { issueCard(input: { userId: "usr_policy_none", amount: 100, currency: "USD" }) { id } }',
    admin: ok,
    merchant: ok,
    user: no,
  },
  {
    operationType: 'mutation',
    operation: 'createCharge',
    document:
      'mutation { createCharge(input: { cardId: "card_policy_none", amount: 100, currency: "USD" }, idempotencyKey: "policy") { id } }',
    admin: ok,
    merchant: ok,
    user: no,
  },
  {
    operationType: 'mutation',
    operation: 'refundCharge',
    document: 'mutation { refundCharge(id: "ch_policy_none", idempotencyKey: "policy") { id } }',
    admin: ok,
    merchant: ok,
    user: no,
  },
  {
    operationType: 'mutation',
    operation: 'revealCard',
    document: 'mutation { revealCard(id: "card_policy_none") { pan } }',
    admin: ok,
    merchant: no,
    user: ok,
  },
  {
    operationType: 'mutation',
    operation: 'cancelCard',
    document: 'mutation { cancelCard(id: "card_policy_none") { id } }',
    admin: ok,
    merchant: ok,
    user: ok,
  },
  {
    operationType: 'mutation',
    operation: 'createUser',
    // An invalid email: even the admin's allowed call creates nothing.
    document: 'mutation { createUser(input: { name: "Policy", email: "not-an-email", role: USER }) { user { id } } }',
    admin: ok,
    merchant: no,
    user: no,
  },
  {
    operationType: 'mutation',
    operation: 'rotateSigningKey',
    document: 'mutation { rotateSigningKey { kid } }',
    admin: ok,
    merchant: no,
    user: no,
  },
  {
    operationType: 'mutation',
    operation: 'createApiKey',
    document: 'mutation { createApiKey(userId: "usr_policy_none") { apiKey { id } } }',
    admin: ok,
    merchant: ok,
    user: ok,
  },
  {
    operationType: 'mutation',
    operation: 'revokeApiKey',
    document: 'mutation { revokeApiKey(id: "key_policy_none") { id } }',
    admin: ok,
    merchant: ok,
    user: ok,
  },
  { operationType: 'query', operation: 'users', document: 'query { users { __typename } }', admin: ok, merchant: no, user: no },
  {
    operationType: 'query',
    operation: 'usage',
    document: `query { usage(apiKeyId: "key_policy_none", ${range}) { requests } }`,
    admin: ok,
    merchant: no,
    user: no,
  },
  {
    operationType: 'query',
    operation: 'topOperations',
    document: `query { topOperations(${range}) { requests } }`,
    admin: ok,
    merchant: no,
    user: no,
  },
  { operationType: 'query', operation: 'errorRate', document: `query { errorRate(${range}) { rate } }`, admin: ok, merchant: no, user: no },
  {
    operationType: 'query',
    operation: 'latency',
    document: `query { latency(operation: "Policy", ${range}) { count } }`,
    admin: ok,
    merchant: no,
    user: no,
  },
  { operationType: 'query', operation: 'requestLog', document: 'query { requestLog { __typename } }', admin: ok, merchant: no, user: no },
];
