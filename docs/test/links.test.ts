/**
 * docs/ARCHITECTURE.md names files to back every claim: a renamed or deleted file must fail
 * here, not leave the page pointing at nothing. Checks every relative Markdown link (and its
 * `#anchor`, against the target's headings as GitHub slugs them) and every repository path
 * written in backticks, and that the root README links the page.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const docPath = resolve(repoRoot, 'docs/ARCHITECTURE.md');
const doc = readFileSync(docPath, 'utf8');

/** The page without its fenced code blocks, where link-like text is not a link. */
const prose = doc.replace(/^```[\s\S]*?^```/gm, '');

/** GitHub's heading anchor: lower case, punctuation but `-` and `_` dropped, spaces to `-`. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const withoutCode = markdown.replace(/^```[\s\S]*?^```/gm, '');
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const [, heading] of withoutCode.matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = slug(heading ?? '');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Relative link targets: `](target)`, not URLs with a scheme. */
const links = [...prose.matchAll(/\]\(([^)\s]+)\)/g)]
  .map((match) => match[1] as string)
  .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));

const topLevel = new Set(readdirSync(repoRoot));

/**
 * Repository paths in backticks: one token of path characters whose first segment is an
 * entry at the repository's root (`router/src/main.ts`, `bench/`, `.github/workflows/ci.yml`).
 * Globs (`subgraphs/*\/Dockerfile`) and paths relative to a package (`src/main.ts`) are not checked.
 */
const paths = [...prose.matchAll(/`([^`\s]+)`/g)]
  .map((match) => match[1] as string)
  .filter((span) => /^[\w.@-]+(\/[\w.@-]*)+$/.test(span) && topLevel.has(span.split('/')[0] as string));

describe('docs/ARCHITECTURE.md', () => {
  it('has links and repository paths to check', () => {
    expect(links.length).toBeGreaterThan(10);
    expect(paths.length).toBeGreaterThan(50);
  });

  it.each([...new Set(links)])('links %s, which resolves', (target) => {
    const [file = '', anchor] = target.split('#');
    const path = file === '' ? docPath : resolve(dirname(docPath), file);
    expect(existsSync(path), `${file} does not exist`).toBe(true);
    if (anchor) expect([...anchorsOf(readFileSync(path, 'utf8'))]).toContain(anchor);
  });

  it.each([...new Set(paths)])('names %s, which exists', (path) => {
    expect(existsSync(resolve(repoRoot, path))).toBe(true);
  });

  it('is what the root README links as the design', () => {
    expect(readFileSync(resolve(repoRoot, 'README.md'), 'utf8')).toContain('](docs/ARCHITECTURE.md)');
  });
});
