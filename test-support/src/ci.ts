/**
 * Whether the tests run under CI: `CI` is `true` or `1` (what CI providers set), not any
 * non-empty value, so `CI=false` or `CI=0` is a developer machine. Under CI a missing service
 * (PostgreSQL, redis-server, promtool, a non-loopback address) fails the run; elsewhere the tests
 * needing it skip.
 */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.CI === 'true' || env.CI === '1';
}
