/**
 * Non-admin callers are not told our topology: a subgraph that cannot be reached is answered
 * SUBGRAPH_UNAVAILABLE with a fixed message (not `Subgraph "auth" is unavailable (ECONNREFUSED)`),
 * and no error carries `extensions.serviceName`; the code and path stay, and a subgraph's own
 * error keeps its message. Admins keep every detail.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { post, withRouter } from './router-harness.ts';

const fixedMessage = 'A service this request needs is temporarily unavailable; retry later';
const partialQuery = { query: '{ user(id: "usr_1") { id name } card(id: "card_1") { id last4 } }' };

describe('errors that name our services', () => {
  const setup = withRouter({
    env: { ROUTER_BREAKER_FAILURES: '1000', ROUTER_RATE_LIMIT_PER_MINUTE: '1000' },
    bearer: { userId: 'usr_mask', role: 'merchant', apiKeyId: 'key_mask_merchant' },
  });
  let merchant: string;
  let admin: string;

  beforeAll(async () => {
    merchant = setup.authorization;
    admin = await setup.issuer.bearer({ userId: 'usr_mask_admin', role: 'admin', apiKeyId: 'key_mask_admin' });
  });

  it('a stopped subgraph: a fixed message for a merchant and an anonymous caller, the detail for an admin', async () => {
    await setup.subgraphs.stop('auth');
    try {
      const asMerchant = await post(setup.router.graphqlUrl, partialQuery, { authorization: merchant });
      expect(asMerchant.status).toBe(200);
      expect(asMerchant.body.data).toEqual({ user: null, card: { id: 'card_1', last4: '4242' } });
      expect(asMerchant.body.errors).toEqual([{ message: fixedMessage, extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }]);

      const asAdmin = await post(setup.router.graphqlUrl, partialQuery, { authorization: admin });
      expect(asAdmin.body.data).toEqual({ user: null, card: { id: 'card_1', last4: '4242' } });
      expect(asAdmin.body.errors?.[0]).toMatchObject({
        message: 'Subgraph "auth" is unavailable (ECONNREFUSED)',
        extensions: { code: 'SUBGRAPH_UNAVAILABLE', serviceName: 'auth' },
      });

      // An entity fetch under another subgraph's field: data and path (where the gateway gives one) as the admin's.
      const nested = { query: '{ card(id: "card_1") { id owner { name } } }' };
      const nestedAdmin = await post(setup.router.graphqlUrl, nested, { authorization: admin });
      const nestedMerchant = await post(setup.router.graphqlUrl, nested, { authorization: merchant });
      expect(nestedAdmin.body.errors?.[0]?.extensions?.serviceName).toBe('auth');
      const { path } = nestedAdmin.body.errors?.[0] ?? {};
      expect(nestedMerchant.body).toEqual({
        data: nestedAdmin.body.data,
        errors: [{ message: fixedMessage, ...(path ? { path } : {}), extensions: { code: 'SUBGRAPH_UNAVAILABLE' } }],
      });

      // Anonymous: the token exchange reaches auth too.
      const anonymous = await post(setup.router.graphqlUrl, { query: 'mutation { createToken(apiKey: "gp_x") { accessToken } }' });
      expect(
        anonymous.body.errors?.map((e) => ({ message: e.message, code: e.extensions?.code, serviceName: e.extensions?.serviceName })),
      ).toEqual([{ message: fixedMessage, code: 'SUBGRAPH_UNAVAILABLE', serviceName: undefined }]);
    } finally {
      await setup.subgraphs.restart('auth');
    }
  });

  it("a subgraph's own error with our code: its message kept, serviceName only for an admin", async () => {
    const query = { query: '{ charge(id: "ch_db_down") { id } }' };
    const asMerchant = await post(setup.router.graphqlUrl, query, { authorization: merchant });
    expect(asMerchant.body.errors).toEqual([
      { message: 'Database unavailable', path: ['charge'], extensions: { code: 'SERVICE_UNAVAILABLE' } },
    ]);
    const asAdmin = await post(setup.router.graphqlUrl, query, { authorization: admin });
    expect(asAdmin.body.errors?.[0]).toMatchObject({
      message: 'Database unavailable',
      path: ['charge'],
      extensions: { code: 'SERVICE_UNAVAILABLE', serviceName: 'charges' },
    });
  });

  it('a successful answer is untouched', async () => {
    const ok = await post(setup.router.graphqlUrl, partialQuery, { authorization: merchant });
    expect(ok.body).toEqual({ data: { user: { id: 'usr_1', name: 'User usr_1' }, card: { id: 'card_1', last4: '4242' } } });
  });
});
