/**
 * The one censoring of credentials in URLs, used by config (problems, `redactConfig`) and by the
 * logger (every logged string, `URL`, error text and message argument): a value config would not
 * show is never logged either.
 *
 * Every scan here is linear in the text: no backtracking regular expression runs over logged
 * text, whose length and content a client may choose (a long run of letters, or of `;pass`, made
 * the regular expressions this replaced take quadratic and cubic time).
 */

/** What a censored credential becomes (the logger's `redactedValue`). */
const redacted = '[redacted]';

/** What a query parameter's name holds when its value is a credential. */
const credentialName = /pass|pwd|secret|token|key|credential|authmechanismproperties/i;

/** A character of a URL scheme after its first (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )). */
function isSchemeChar(code: number): boolean {
  return (
    (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || (code >= 48 && code <= 57) || code === 43 || code === 45 || code === 46
  );
}

function isLetter(code: number): boolean {
  return (code >= 97 && code <= 122) || (code >= 65 && code <= 90);
}

function isSpace(code: number): boolean {
  return code === 32 || (code >= 9 && code <= 13) || code === 160 || code === 0x2028 || code === 0x2029 || code === 0xfeff;
}

/**
 * The start of the scheme ending at the `://` at `colon`, no earlier than `floor`: the first
 * letter of the run of scheme characters before it (`1+http://` is `http://`), or -1 when the run
 * holds no letter (`12://` is no URL).
 */
function schemeStartBefore(text: string, colon: number, floor: number): number {
  let start = colon;
  while (start > floor && isSchemeChar(text.charCodeAt(start - 1))) start--;
  while (start < colon && !isLetter(text.charCodeAt(start))) start++;
  return start < colon ? start : -1;
}

/** The `scheme://` starts in `text`, in order, as `[at, length of scheme://]`. */
function urlStarts(text: string): Array<[number, number]> {
  const starts: Array<[number, number]> = [];
  let floor = 0;
  for (let colon = text.indexOf('://'); colon !== -1; colon = text.indexOf('://', floor)) {
    const at = schemeStartBefore(text, colon, floor);
    if (at !== -1) starts.push([at, colon + 3 - at]);
    floor = colon + 3;
  }
  return starts;
}

/**
 * `rest` (a URL after its `scheme://`) with the value of every query parameter naming a
 * credential censored. A parameter starts at `?`, `&` or `;` (anywhere, inside another's value
 * too); a credential's value runs to the next `&`, fragment or space: a comma or `;` is part of it
 * (a password may hold one, and MongoDB's `authMechanismProperties` is a comma list,
 * `SERVICE_NAME:x,AWS_SESSION_TOKEN:…`), except commas that end the URL (a list's).
 */
function withoutCredentialParameters(rest: string): string {
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < rest.length) {
    const code = rest.charCodeAt(i);
    if (code !== 63 && code !== 38 && code !== 59) {
      i++;
      continue;
    }
    // A parameter's name runs to its `=`; another parameter, a fragment or a space first: none.
    let j = i + 1;
    for (; j < rest.length; j++) {
      const c = rest.charCodeAt(j);
      if (c === 61 || c === 38 || c === 35 || c === 63 || c === 59 || isSpace(c)) break;
    }
    if (rest.charCodeAt(j) !== 61 || !credentialName.test(rest.slice(i + 1, j))) {
      i = j;
      continue;
    }
    const valueStart = j + 1;
    let valueEnd = valueStart;
    for (; valueEnd < rest.length; valueEnd++) {
      const c = rest.charCodeAt(valueEnd);
      if (c === 38 || c === 35 || isSpace(c)) break;
    }
    let kept = valueEnd;
    if (valueEnd === rest.length) while (kept > valueStart && rest.charCodeAt(kept - 1) === 44) kept--;
    if (kept > valueStart) {
      out += rest.slice(copied, valueStart) + redacted;
      copied = kept;
    }
    i = valueEnd;
  }
  return copied === 0 ? rest : out + rest.slice(copied);
}

/**
 * An authority without user information: a host (a name, an IPv4 or a bracketed IPv6 address) and
 * an optional port of at least one digit. Neither may be empty: `redis://:#pass word@cache` and
 * `redis://default:/pass word@cache` are a password's start, not a host.
 */
const hostAndPort = /^(?:\[[0-9A-Fa-f:.]+\]|[^\s:[\]@]+)(?::\d+)?$/;

/**
 * Where the user information of `rest` (a URL after its `scheme://`, up to the next one) ends:
 * the index of its last `@`, or -1 when it has none. A URL holds no whitespace, but a malformed
 * one may (a password with a space: `redis://:pass word@cache`, which config refuses and then
 * quotes in its problem), so the user information runs over whitespace to the last `@`, unless
 * the URL's first word holds no `@` and its authority ended there (a `/`, `?` or `#`) as a host
 * and port (`host:8080/x`, not `user:pa/ss`, `:#pass`): what follows is the URL's path, or other
 * text. Once an `@` has been seen it always runs to the last one: nothing tells a password's next
 * words from text after the URL (`u:p@ss my word@db` and `u:p@db is down, ops@example.test` have
 * one shape), and a password must never show. So `http://host:8080/x` followed by a line naming
 * `ops@example.test` keeps that line, and `postgres://u:p@db/x` followed by it does not. A
 * password with a space and a `/`, `?` or `#` after leading digits (`u:12/3 4@h`) would still
 * show: every character of that is illegal in a URL. One pass over the first word, one anchored
 * test of the authority and one `lastIndexOf`: linear in `rest`.
 */
function userInfoEnd(rest: string): number {
  const lastAt = rest.lastIndexOf('@');
  if (lastAt === -1) return -1;
  let authorityEnd = -1;
  for (let i = 0; i < rest.length; i++) {
    const code = rest.charCodeAt(i);
    if (code === 64) return lastAt;
    if (isSpace(code)) break;
    if (authorityEnd === -1 && (code === 47 || code === 63 || code === 35)) authorityEnd = i;
  }
  return authorityEnd !== -1 && hostAndPort.test(rest.slice(0, authorityEnd)) ? -1 : lastAt;
}

/**
 * `text` with the credentials of every URL in it censored: the user information
 * (`postgres://[redacted]@db/x`) and query parameters naming a credential (`?password=`,
 * `sslpassword=`, `token=`, `pwd=`, `authMechanismProperties=`). A URL is taken to run to the next
 * `scheme://`, and its user information to the last `@` in it (`userInfoEnd`: not past
 * whitespace after a host's path, `http://host:8080/x`): a malformed URL (the ones config refuses: a password with `/`, `#`, `?`, `@` or a space)
 * is censored too, at the cost of sometimes censoring more than needed
 * (`http://host:8080 for ops@example.test`, without a path, loses `host:8080 for ops`).
 * `file://` URLs have no user information (an `@` in one is a path's:
 * `file:///app/node_modules/@scope/pkg`, in every stack of an ES module), so only their query is
 * looked at.
 *
 * `text` itself comes back when it has no `://`, or neither `@` nor `=`: a substring test or
 * three, which is what nearly every logged string costs. Linear in the length of `text`.
 */
export function withoutCredentialsInUrls(text: string): string {
  if (!text.includes('://') || (!text.includes('@') && !text.includes('='))) return text;
  const starts = urlStarts(text);
  if (starts.length === 0) return text;
  let out = text.slice(0, starts[0]![0]);
  starts.forEach(([at, schemeLength], index) => {
    const scheme = text.slice(at, at + schemeLength);
    let rest = text.slice(at + schemeLength, starts[index + 1]?.[0] ?? text.length);
    const lastAt = scheme.toLowerCase() === 'file://' ? -1 : userInfoEnd(rest);
    if (lastAt !== -1) rest = `${redacted}${rest.slice(lastAt)}`;
    if (rest.includes('=')) rest = withoutCredentialParameters(rest);
    out += scheme + rest;
  });
  return out;
}
