import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Whether `promtool` (Debian's `prometheus` package) is on PATH. */
export async function hasPromtool(): Promise<boolean> {
  try {
    await run('promtool', ['--version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Runs promtool and returns its combined output; rejects with that output on a non-zero exit. */
export async function promtool(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    return `${stdout}${stderr}`;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${stdout}${stderr}`);
  }
}
