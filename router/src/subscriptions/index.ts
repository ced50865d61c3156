export { apiSchemaFromSupergraph } from './api-schema.ts';
export {
  type EventRead,
  type EventReadOutcome,
  type ExecuteQuery,
  eventReadOutcomes,
  type SubscriptionPayload,
} from './client-subscription.ts';
export { createGatewayQueryExecutor, type GatewayQueryExecutorOptions } from './gateway-query-executor.ts';
export { createRouterSubscriptions, type RouterSubscriptionsOptions } from './router-subscriptions.ts';
export { type ApiKeyTokenSourceOptions, createApiKeyTokenSource } from './service-token.ts';
export {
  createSubscriptionGateway,
  type SubscribeAnswer,
  SubscriptionCloseCode,
  type SubscriptionGateway,
  type SubscriptionGatewayOptions,
  type SubscriptionLimits,
  type WebSocketSubscribeAnswer,
} from './subscription-gateway.ts';
export { defaultSubscriptionRoutes, planSubscription, type SubscriptionPlan, type SubscriptionRoute } from './subscription-plan.ts';
export {
  createLocalSubscriptionSlots,
  createRedisSubscriptionSlots,
  type RedisSubscriptionSlotsOptions,
  type Reservation,
  type SubscriptionSlots,
} from './subscription-slots.ts';
export {
  type RouterSubscriptionsConfig,
  type RouterSubscriptionsSettings,
  routerSubscriptionsConfigSchema,
  routerSubscriptionsSettings,
  subscriptionsApiKeySecret,
} from './subscriptions-config.ts';
export { createUpstreamPool, type UpstreamPool, type UpstreamPoolOptions } from './upstream-pool.ts';
