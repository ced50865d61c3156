// Targets come from env (`k6 run -e BASE_URL=... script.js` or exported variables) and a
// missing one stops the run before any traffic: load scripts must never guess a target.

/** The value of a required env variable; throws (aborting the test in init) when unset. */
export function requireEnv(name) {
  const value = __ENV[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set: see k6/README.md for the variables each script needs`);
  }
  return value;
}

/** An optional env variable with a default. */
export function optionalEnv(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

/** A positive integer env variable with a default; throws on anything else. */
export function intEnv(name, fallback) {
  const raw = optionalEnv(name, String(fallback));
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return value;
}

/** A URL env variable without a trailing slash. */
export function urlEnv(name) {
  const value = requireEnv(name).replace(/\/+$/, '');
  if (!/^https?:\/\//.test(value)) throw new Error(`${name} must be an http(s) URL, got "${value}"`);
  return value;
}

const secondsPerUnit = { ms: 0.001, s: 1, m: 60, h: 3600 };

/**
 * A k6 duration env variable ("30s", "5m", "1h30m") with a default: `text` for the stage and
 * `seconds` for the arithmetic the scripts do on it (the spike's recovery phase, the token
 * lifetime check); throws on anything else.
 */
export function durationEnv(name, fallback) {
  const text = optionalEnv(name, fallback);
  if (!/^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/.test(text)) {
    throw new Error(`${name} must be a duration such as 30s, 5m or 1h30m, got "${text}"`);
  }
  const part = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let seconds = 0;
  for (let m = part.exec(text); m !== null; m = part.exec(text)) seconds += Number(m[1]) * secondsPerUnit[m[2]];
  return { text, seconds };
}
