type Frame = { kind: 'object'; keys: Set<string>; key?: string } | { kind: 'array'; index: number };

const quote = 0x22;
const backslash = 0x5c;

/**
 * The dotted path (`amount`, `items.0.id`) of the first key that appears twice in one object
 * of a JSON text, or undefined when there is none. `JSON.parse` keeps the last of duplicate
 * keys silently, so `{"amount": 1, …, "amount": 99999999}` would charge the second amount
 * while a log or a reviewer reading the text sees the first: the bridge refuses such bodies.
 *
 * Call it only on text `JSON.parse` accepted: it scans tokens without validating them.
 * Keys are compared decoded (`"a"` and `"\u0061"` are the same key).
 */
export function firstDuplicateKey(text: string): string | undefined {
  const frames: Frame[] = [];
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text.charCodeAt(end) !== quote) end += text.charCodeAt(end) === backslash ? 2 : 1;
      const frame = frames.at(-1);
      if (expectingKey && frame?.kind === 'object') {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (frame.keys.has(key)) {
          return [...frames.slice(0, -1).map((f) => (f.kind === 'object' ? f.key : String(f.index))), key].join('.');
        }
        frame.keys.add(key);
        frame.key = key;
        expectingKey = false;
      }
      i = end;
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
  return undefined;
}
