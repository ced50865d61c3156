/** Values the global setup provides to every test file through `inject`. */
export {};

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the run's throwaway cluster; empty when PGlite stands in. */
    postgresAdminUrl: string;
    /** A migrated database that fresh test databases are cloned from. */
    postgresTemplate: string;
    /** URL of the run's throwaway redis-server; empty when none is available. */
    redisUrl: string;
  }
}
