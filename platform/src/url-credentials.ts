/**
 * The one censoring of credentials in URLs, used by config (problems, `redactConfig`) and by the
 * logger (every logged string, `URL`, error text and message argument): a value config would not
 * show is never logged either.
 */

/** What a censored credential becomes (the logger's `redactedValue`). */
const redacted = '[redacted]';

/** Where a URL starts: its scheme and `//`. */
const schemeStart = /[a-z][a-z\d+.-]*:\/\//gi;

/**
 * A query parameter whose name says credential (`?password=`, `sslpassword=`, `token=`,
 * `api_key=`, MongoDB's `authMechanismProperties=`) and its value, up to the next parameter,
 * fragment, space or list comma.
 */
const credentialParameter = /([?&;][^=&#\s]*(?:pass|secret|token|key|credential|authmechanismproperties)[^=&#\s]*=)[^&#\s,]*/gi;

/**
 * `text` with the credentials of every URL in it censored: the user information
 * (`postgres://[redacted]@db/x`) and query parameters naming a credential (`?password=`,
 * `sslpassword=`, `token=`). A URL is taken to run to the next `scheme://`, and its user
 * information to the last `@` in it: a malformed URL (the ones config refuses: a password with
 * `/`, `#`, `?` or a space) is censored too, at the cost of sometimes censoring more than needed
 * (`http://host/x for ops@example.test` loses `host/x for ops`). `file://` URLs have no user
 * information (an `@` in one is a path's: `file:///app/node_modules/@scope/pkg`, in every stack
 * of an ES module), so only their query is looked at.
 *
 * `text` itself comes back when it has no `://`, or neither `@` nor `=`: a substring test or
 * three, which is what nearly every logged string costs.
 */
export function withoutCredentialsInUrls(text: string): string {
  if (!text.includes('://') || (!text.includes('@') && !text.includes('='))) return text;
  schemeStart.lastIndex = 0;
  let match = schemeStart.exec(text);
  if (!match) return text;
  let out = text.slice(0, match.index);
  while (match) {
    const scheme = match[0];
    const restStart = match.index + scheme.length;
    const next = schemeStart.exec(text);
    let rest = text.slice(restStart, next ? next.index : text.length);
    const lastAt = scheme.length === 7 && scheme.toLowerCase() === 'file://' ? -1 : rest.lastIndexOf('@');
    if (lastAt !== -1) rest = `${redacted}${rest.slice(lastAt)}`;
    if (rest.includes('=')) rest = rest.replace(credentialParameter, `$1${redacted}`);
    out += scheme + rest;
    match = next;
  }
  return out;
}
