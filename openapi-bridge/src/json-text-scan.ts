type Frame = { kind: 'object'; keys: Set<string>; key?: string } | { kind: 'array'; index: number };

const quote = 0x22;
const backslash = 0x5c;

/** What `scanJsonText` finds in a JSON text that `JSON.parse` hides. */
export interface JsonTextScan {
  /** The dotted path (`amount`, `items.0.id`) of the first key that appears twice in one object. */
  duplicateKey?: string;
  /**
   * The paths of the numbers written with a fraction or an exponent (`1.0`, `1e2`,
   * `1.0000000000000001`), in text order; undefined when there are none.
   */
  nonIntegerLiterals?: string[];
}

function pathOf(frames: Frame[], last?: string): string {
  const segments = frames.map((f) => (f.kind === 'object' ? (f.key ?? '') : String(f.index)));
  if (last !== undefined) segments.push(last);
  return segments.join('.');
}

/**
 * One pass over a JSON text `JSON.parse` accepted, for what parsing loses:
 *
 * - repeated keys: `JSON.parse` keeps the last of them silently, so
 *   `{"amount": 1, …, "amount": 99999999}` would charge the second amount while a log or a
 *   reviewer reading the text sees the first. The first repeat is reported (keys compared
 *   decoded: `"a"` and `"\u0061"` are the same key) and the scan stops there;
 * - how each number was written: `100.0`, `1e2` and `1.0000000000000001` all parse to an
 *   integer (the last rounds to `1`), which JSON Schema's `integer` then accepts. A client that
 *   writes an amount with a fraction means something other than minor units, and must be
 *   refused as `1.5` is, not charged a rounded or a hundredfold-smaller amount.
 *
 * Call it only on text `JSON.parse` accepted: it scans tokens without validating them.
 */
export function scanJsonText(text: string): JsonTextScan {
  const frames: Frame[] = [];
  let nonIntegerLiterals: string[] | undefined;
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text.charCodeAt(end) !== quote) end += text.charCodeAt(end) === backslash ? 2 : 1;
      const frame = frames.at(-1);
      if (expectingKey && frame?.kind === 'object') {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (frame.keys.has(key))
          return { duplicateKey: pathOf(frames.slice(0, -1), key), ...(nonIntegerLiterals ? { nonIntegerLiterals } : {}) };
        frame.keys.add(key);
        frame.key = key;
        expectingKey = false;
      }
      i = end;
    } else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      // Outside strings, `-` and digits only start numbers; a number runs to the next delimiter.
      let end = i + 1;
      let integer = true;
      for (; end < text.length; end++) {
        const d = text[end] as string;
        if (d === '.' || d === 'e' || d === 'E') integer = false;
        else if (!(d === '+' || d === '-' || (d >= '0' && d <= '9'))) break;
      }
      if (!integer) {
        nonIntegerLiterals ??= [];
        nonIntegerLiterals.push(pathOf(frames));
      }
      i = end - 1;
    } else if (c === '{') {
      frames.push({ kind: 'object', keys: new Set() });
      expectingKey = true;
    } else if (c === '[') {
      frames.push({ kind: 'array', index: 0 });
      expectingKey = false;
    } else if (c === '}' || c === ']') {
      frames.pop();
      expectingKey = false;
    } else if (c === ',') {
      const frame = frames.at(-1);
      if (frame?.kind === 'object') expectingKey = true;
      else if (frame) frame.index++;
    }
  }
  return nonIntegerLiterals ? { nonIntegerLiterals } : {};
}
