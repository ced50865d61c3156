import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { readRepoFile, repoPath } from './repo.ts';

/** A service image's deps stage, run up to its `npm ci` in a scratch directory (see {@link withDepsStage}). */
export interface DepsStage {
  /** A package.json (path relative to the stage's WORKDIR) as the stage's steps left it for `npm ci`. */
  packageJson(path: string): Record<string, unknown>;
  /**
   * The names of the packages the stage's `npm ci` installs (workspace links included), from the
   * same command run with `--dry-run --offline`: the lockfile says everything, nothing is fetched
   * or written.
   */
  installs(): string[];
}

/** The instructions of a Dockerfile's first stage, continuation lines joined, comments left out. */
function firstStage(dockerfile: string): string[] {
  const stage = dockerfile.split(/^FROM /m)[1] ?? '';
  return stage
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .slice(1)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** `--name=value` flags at the front of an instruction's arguments, and the rest. */
function splitFlags(args: string): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let rest = args.trim();
  for (let match = /^(--\S+)\s+/.exec(rest); match !== null; match = /^(--\S+)\s+/.exec(rest)) {
    flags.push(match[1]!);
    rest = rest.slice(match[0].length);
  }
  return { flags, rest };
}

/** The repository files a COPY source names (a path or a shell glob), relative to the repository root. */
function expandSource(pattern: string): string[] {
  const found = execFileSync('sh', ['-c', `for f in ${pattern}; do [ -e "$f" ] && echo "$f"; done`], {
    cwd: repoPath('.'),
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean);
  if (found.length === 0) throw new Error(`COPY ${pattern}: nothing in the repository matches`);
  return found;
}

/**
 * Whether the build context (the repository root less `.dockerignore`'s patterns) holds `path`, a
 * path relative to the root: a pattern excludes what it matches and everything under it. `**`,
 * `*` and `?` are modelled; a `!` exception is not and fails here.
 */
export function inBuildContext(path: string): boolean {
  const patterns = readRepoFile('.dockerignore')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  return patterns.every((pattern) => {
    if (pattern.startsWith('!')) throw new Error(`.dockerignore: exception ${pattern} not modelled`);
    const source = pattern
      .replace(/^\/+|\/+$/g, '')
      .split(/(\*\*\/|\*\*|\*|\?)/)
      .map((piece) =>
        piece === '**/'
          ? '(?:.*/)?'
          : piece === '**'
            ? '.*'
            : piece === '*'
              ? '[^/]*'
              : piece === '?'
                ? '[^/]'
                : piece.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
      )
      .join('');
    const regex = new RegExp(`^${source}$`);
    return !prefixes.some((prefix) => regex.test(prefix));
  });
}

/** The environment npm runs with here: this process's, less npm's own variables from an `npm test` run. */
function npmEnvironment(stageEnv: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!/^npm_/i.test(name)) env[name] = value;
  return { ...env, ...stageEnv, npm_config_loglevel: 'error' };
}

/**
 * Runs the first stage of `<folder>/Dockerfile` in a scratch directory standing for its WORKDIR,
 * up to (not including) its `RUN … npm ci …`, and hands it to `use`. Its COPY steps copy from the
 * repository (build context: the root, less `.dockerignore`), its ENV applies, and its RUN steps run with their bind
 * mounts' targets pointing at the repository files they mount. Only what the deps stages do is
 * modelled: a COPY of files (`--parents` allowed), RUN steps that are `node …` or `npm pkg …`, any
 * other step fails here, so a deps stage that outgrows this model fails its tests instead of being
 * checked wrong. The scratch directory is removed afterwards.
 */
export function withDepsStage<T>(folder: string, use: (stage: DepsStage) => T): T {
  const instructions = firstStage(readRepoFile(`${folder}/Dockerfile`));
  const npmCi = instructions.findIndex((line) => /^RUN\b.*\bnpm ci\b/.test(line));
  if (npmCi === -1) throw new Error(`${folder}/Dockerfile: no RUN npm ci in its first stage`);
  const scratch = mkdtempSync(join(tmpdir(), 'ghostpay-deps-stage-'));
  const env: Record<string, string> = {};
  try {
    for (const instruction of instructions.slice(0, npmCi)) {
      const [, keyword, args = ''] = /^(\w+)\s*(.*)$/.exec(instruction) ?? [];
      const { flags, rest } = splitFlags(args);
      if (keyword === 'WORKDIR' || keyword === 'ARG') continue;
      if (keyword === 'ENV') {
        for (const pair of rest.split(/\s+/)) {
          const [name, value] = pair.split('=');
          if (name === undefined || value === undefined) throw new Error(`${folder}/Dockerfile: ENV ${rest} not modelled`);
          env[name] = value;
        }
      } else if (keyword === 'COPY') {
        const parents = flags.includes('--parents');
        if (flags.some((flag) => flag !== '--parents')) throw new Error(`${folder}/Dockerfile: ${instruction} not modelled`);
        const paths = rest.split(/\s+/);
        const destination = paths.pop()!;
        if (!destination.endsWith('/') || destination.startsWith('/'))
          throw new Error(`${folder}/Dockerfile: ${instruction}: only copies into a WORKDIR folder are modelled`);
        for (const file of paths.flatMap(expandSource)) {
          if (!inBuildContext(file)) throw new Error(`${folder}/Dockerfile: ${instruction}: .dockerignore leaves ${file} out`);
          if (!statSync(repoPath(file)).isFile()) throw new Error(`${folder}/Dockerfile: ${instruction}: ${file} is not a file`);
          const target = join(scratch, destination, parents ? file : basename(file));
          mkdirSync(dirname(target), { recursive: true });
          copyFileSync(repoPath(file), target);
        }
      } else if (keyword === 'RUN') {
        let command = rest;
        for (const flag of flags) {
          const mount = /^--mount=(.*)$/.exec(flag)?.[1];
          const options = Object.fromEntries((mount ?? '').split(',').map((option) => option.split('=')));
          if (options.type === 'cache') continue;
          if (options.type !== 'bind' || options.source === undefined || options.target === undefined || options.from !== undefined)
            throw new Error(`${folder}/Dockerfile: ${flag} not modelled`);
          if (!inBuildContext(options.source)) throw new Error(`${folder}/Dockerfile: ${flag}: .dockerignore leaves it out`);
          command = command.replaceAll(options.target, repoPath(options.source));
        }
        if (!/^(node|npm pkg) /.test(command)) throw new Error(`${folder}/Dockerfile: RUN ${rest} not modelled`);
        execFileSync('sh', ['-c', command], { cwd: scratch, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
      } else throw new Error(`${folder}/Dockerfile: ${instruction} before npm ci not modelled`);
    }
    const install = splitFlags(/^RUN\s+(.*)$/.exec(instructions[npmCi]!)![1]!).rest;
    if (!/^npm ci /.test(install)) throw new Error(`${folder}/Dockerfile: ${instructions[npmCi]} is not a plain npm ci`);
    return use({
      packageJson: (path) => JSON.parse(readFileSync(join(scratch, path), 'utf8')),
      installs: () => {
        const output = execFileSync('sh', ['-c', `${install} --dry-run --offline`], {
          cwd: scratch,
          encoding: 'utf8',
          env: npmEnvironment(env),
        });
        return [...output.matchAll(/^add (\S+) \S+$/gm)].map((match) => match[1]!);
      },
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
