/**
 * The Node options the router runs with (its image sets them as NODE_OPTIONS; `npm start` in
 * router/ passes them too). The bench runs every server process with them.
 *
 * `--max-semi-space-size=64` (MiB; V8's default on 64-bit is 16): the router allocates a
 * parsed subgraph answer and a shaped response per request and holds them across awaits, so
 * with the default young generation much of that survived two scavenges and was promoted,
 * then collected again by the old generation's mark-compact. Measured on the federation
 * benchmark (bench/RESULTS.md, change 17): garbage collection 17% → 12% of the router's CPU
 * profile, CPU per operation ~6% lower, peak RSS ~100 MiB higher (the chart's router memory
 * limit allows for it).
 */
export const routerNodeOptions = '--max-semi-space-size=64';
