/**
 * Renders `{{ define }}` helpers of the chart with real values, for the tests: helm does not run
 * here, and matching a helper's text says nothing about what it writes for a given service.
 * This is the subset of Go's text/template (and of helm's functions) the chart's small helpers
 * use: `define`, `if`/`with` (with `else`), `:=`/`=` variables, pipelines, `.field` and `$var`
 * chains, literals, and the functions `include`, `index`, `default`, `dict`, `and`, `or`,
 * `not`, `eq`, `ne`. Anything else (`range`, `printf`, an unknown function, a field of a missing
 * value) throws, so a helper that outgrows the subset fails the test that renders it instead of
 * being rendered wrong.
 */

type Value = unknown;

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'output'; pipeline: string }
  | { kind: 'assign'; variable: string; declare: boolean; pipeline: string }
  | { kind: 'if' | 'with'; pipeline: string; body: Node[]; otherwise: Node[] }
  | { kind: 'unsupported'; action: string };

interface Action {
  body: string;
  trimLeft: boolean;
  trimRight: boolean;
  at: number;
}

/** The text and the `{{ }}` actions of a template, with `{{-` / `-}}` whitespace trimming applied. */
function lex(source: string): (string | Action)[] {
  const parts: (string | Action)[] = [];
  let i = 0;
  while (i < source.length) {
    const start = source.indexOf('{{', i);
    if (start === -1) {
      parts.push(source.slice(i));
      break;
    }
    parts.push(source.slice(i, start));
    let j = start + 2;
    let quote: string | undefined;
    for (; j < source.length; j++) {
      const c = source[j]!;
      if (quote) {
        if (c === '\\' && quote === '"') j++;
        else if (c === quote) quote = undefined;
      } else if (c === '"' || c === '`') quote = c;
      else if (source.startsWith('/*', j)) j = source.indexOf('*/', j) + 1;
      else if (source.startsWith('}}', j)) break;
    }
    if (j >= source.length) throw new Error(`unclosed action at ${start}`);
    let body = source.slice(start + 2, j);
    const trimLeft = /^-\s/.test(body);
    const trimRight = /\s-$/.test(body);
    if (trimLeft) body = body.slice(1);
    if (trimRight) body = body.slice(0, -1);
    parts.push({ body: body.trim(), trimLeft, trimRight, at: start });
    i = j + 2;
  }
  // Apply trimming to the neighbouring text.
  for (let k = 0; k < parts.length; k++) {
    const part = parts[k]!;
    if (typeof part === 'string') continue;
    if (part.trimLeft && typeof parts[k - 1] === 'string') parts[k - 1] = (parts[k - 1] as string).replace(/\s+$/, '');
    if (part.trimRight && typeof parts[k + 1] === 'string') parts[k + 1] = (parts[k + 1] as string).replace(/^\s+/, '');
  }
  return parts;
}

/** The named templates (`{{ define "name" }}…{{ end }}`) of one or more template files. */
export function parseDefines(...sources: string[]): Map<string, Node[]> {
  const defines = new Map<string, Node[]>();
  for (const source of sources) {
    const parts = lex(source);
    let k = 0;
    const block = (until: (action: string) => boolean): { nodes: Node[]; end: string } => {
      const nodes: Node[] = [];
      while (k < parts.length) {
        const part = parts[k++]!;
        if (typeof part === 'string') {
          if (part) nodes.push({ kind: 'text', text: part });
          continue;
        }
        const body = part.body;
        if (body.startsWith('/*')) continue;
        if (until(body)) return { nodes, end: body };
        const keyword = /^(\w+)\b\s*([\s\S]*)$/.exec(body);
        const word = keyword?.[1];
        if (word === 'if' || word === 'with') {
          const then = block((b) => b === 'end' || b === 'else');
          const otherwise = then.end === 'else' ? block((b) => b === 'end').nodes : [];
          nodes.push({ kind: word, pipeline: keyword![2]!, body: then.nodes, otherwise });
        } else if (word === 'define') {
          const name = /^"([^"]+)"$/.exec(keyword![2]!)?.[1];
          if (!name) throw new Error(`define without a name: {{ ${body} }}`);
          defines.set(name, block((b) => b === 'end').nodes);
        } else if (word === 'range' || word === 'block') {
          // Parsed so the other templates of the file can be rendered; running it throws.
          const inner = block((b) => b === 'end' || b === 'else');
          if (inner.end === 'else') block((b) => b === 'end');
          nodes.push({ kind: 'unsupported', action: body });
        } else if (word === 'template' || word === 'break' || word === 'continue') {
          nodes.push({ kind: 'unsupported', action: body });
        } else if (word === 'else' || word === 'end') {
          throw new Error(`{{ ${body} }} outside a block (at ${part.at})`);
        } else {
          const assign = /^(\$\w*)\s*(:?=)\s*([\s\S]+)$/.exec(body);
          if (assign) nodes.push({ kind: 'assign', variable: assign[1]!, declare: assign[2] === ':=', pipeline: assign[3]! });
          else nodes.push({ kind: 'output', pipeline: body });
        }
      }
      return { nodes, end: '' };
    };
    block(() => false);
  }
  return defines;
}

/** Go's truth: false, 0, nil, and empty strings, slices and maps are false. */
function truthy(value: Value): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return true;
}

type Token = { type: 'open' | 'close' | 'pipe' } | { type: 'term'; text: string };

function tokenize(pipeline: string): Token[] {
  const tokens: Token[] = [];
  const re = /\s*(?:(\()|(\))|(\|)|("(?:[^"\\]|\\.)*"|`[^`]*`|[^\s()|]+))/y;
  let at = 0;
  for (;;) {
    re.lastIndex = at;
    const m = re.exec(pipeline);
    if (!m) break;
    at = re.lastIndex;
    if (m[1]) tokens.push({ type: 'open' });
    else if (m[2]) tokens.push({ type: 'close' });
    else if (m[3]) tokens.push({ type: 'pipe' });
    else tokens.push({ type: 'term', text: m[4]! });
  }
  if (pipeline.slice(at).trim()) throw new Error(`cannot read pipeline: ${pipeline}`);
  return tokens;
}

class Scope {
  private readonly vars: Map<string, Value>;
  private readonly parent: Scope | undefined;
  constructor(vars: Map<string, Value>, parent?: Scope) {
    this.vars = vars;
    this.parent = parent;
  }
  child(): Scope {
    return new Scope(new Map(), this);
  }
  declare(name: string, value: Value) {
    this.vars.set(name, value);
  }
  set(name: string, value: Value) {
    if (this.vars.has(name)) this.vars.set(name, value);
    else if (this.parent) this.parent.set(name, value);
    else throw new Error(`undefined variable ${name}`);
  }
  get(name: string): Value {
    if (this.vars.has(name)) return this.vars.get(name);
    if (this.parent) return this.parent.get(name);
    throw new Error(`undefined variable ${name}`);
  }
}

function field(value: Value, path: string[], what: string): Value {
  let node = value;
  for (const key of path) {
    if (node === undefined || node === null || typeof node !== 'object') throw new Error(`nil pointer evaluating ${what} (.${key})`);
    node = (node as Record<string, Value>)[key];
  }
  return node;
}

export class Renderer {
  private readonly defines: Map<string, Node[]>;
  constructor(...sources: string[]) {
    this.defines = parseDefines(...sources);
  }

  /** `include "<name>" dot`: the text a named template writes. */
  include(name: string, dot: Value): string {
    const nodes = this.defines.get(name);
    if (!nodes) throw new Error(`no template "${name}"`);
    const scope = new Scope(new Map([['$', dot]]));
    return this.run(nodes, dot, scope);
  }

  private run(nodes: Node[], dot: Value, scope: Scope): string {
    let out = '';
    for (const node of nodes) {
      if (node.kind === 'text') out += node.text;
      else if (node.kind === 'unsupported') throw new Error(`{{ ${node.action} }} is outside the subset this renderer supports`);
      else if (node.kind === 'output') {
        const value = this.pipeline(node.pipeline, dot, scope);
        if (value === undefined || value === null) throw new Error(`{{ ${node.pipeline} }} has no value`);
        if (typeof value === 'object') throw new Error(`{{ ${node.pipeline} }} writes an object`);
        out += String(value);
      } else if (node.kind === 'assign') {
        const value = this.pipeline(node.pipeline, dot, scope);
        if (node.declare) scope.declare(node.variable, value);
        else scope.set(node.variable, value);
      } else {
        const value = this.pipeline(node.pipeline, dot, scope);
        if (truthy(value)) out += this.run(node.body, node.kind === 'with' ? value : dot, scope.child());
        else out += this.run(node.otherwise, dot, scope.child());
      }
    }
    return out;
  }

  private pipeline(text: string, dot: Value, scope: Scope): Value {
    const tokens = tokenize(text);
    let k = 0;
    const operand = (): { value: Value; fn?: string } => {
      const token = tokens[k++];
      if (!token) throw new Error(`unexpected end of ${text}`);
      if (token.type === 'open') {
        const value = pipe(true);
        return { value };
      }
      if (token.type !== 'term') throw new Error(`unexpected ${token.type} in ${text}`);
      const t = token.text;
      if (t.startsWith('"')) return { value: JSON.parse(t) };
      if (t.startsWith('`')) return { value: t.slice(1, -1) };
      if (/^-?\d+(\.\d+)?$/.test(t)) return { value: Number(t) };
      if (t === 'true' || t === 'false') return { value: t === 'true' };
      if (t === 'nil') return { value: null };
      if (t === '.') return { value: dot };
      if (t.startsWith('.')) return { value: field(dot, t.slice(1).split('.'), t) };
      if (t.startsWith('$')) {
        const [name, ...path] = t.split('.');
        return { value: field(scope.get(name!), path, t) };
      }
      if (/^\w+$/.test(t)) return { value: undefined, fn: t };
      throw new Error(`cannot read ${t} in ${text}`);
    };
    const command = (piped: Value[]): Value => {
      const first = operand();
      const args: Value[] = [];
      while (k < tokens.length && tokens[k]!.type !== 'pipe' && tokens[k]!.type !== 'close') args.push(operand().value);
      if (!first.fn) {
        if (args.length > 0 || piped.length > 0) throw new Error(`${text}: arguments to a non-function`);
        return first.value;
      }
      return this.call(first.fn, [...args, ...piped]);
    };
    const pipe = (inParens: boolean): Value => {
      let value = command([]);
      while (k < tokens.length && tokens[k]!.type === 'pipe') {
        k++;
        value = command([value]);
      }
      if (inParens) {
        if (tokens[k]?.type !== 'close') throw new Error(`unclosed ( in ${text}`);
        k++;
      }
      return value;
    };
    const value = pipe(false);
    if (k !== tokens.length) throw new Error(`cannot read pipeline: ${text}`);
    return value;
  }

  private call(fn: string, args: Value[]): Value {
    switch (fn) {
      case 'include':
        return this.include(String(args[0]), args[1]);
      case 'index':
        return args
          .slice(1)
          .reduce((node, key) => (node === undefined || node === null ? undefined : (node as Record<string, Value>)[String(key)]), args[0]);
      case 'default':
        return truthy(args[1]) ? args[1] : args[0];
      case 'dict': {
        const out: Record<string, Value> = {};
        for (let i = 0; i < args.length; i += 2) out[String(args[i])] = args[i + 1];
        return out;
      }
      case 'and': {
        const falsy = args.findIndex((a) => !truthy(a));
        return args[falsy === -1 ? args.length - 1 : falsy];
      }
      case 'or':
        return args.find((a) => truthy(a)) ?? args[args.length - 1];
      case 'not':
        return !truthy(args[0]);
      case 'eq':
        return args.slice(1).some((a) => a === args[0]);
      case 'ne':
        return args[0] !== args[1];
      default:
        throw new Error(`function ${fn} is outside the subset this renderer supports`);
    }
  }
}
