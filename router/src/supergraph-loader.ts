import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { SupergraphSdlHook } from '@apollo/gateway';
import type { Logger } from 'pino';

/**
 * A gateway `supergraphSdl` hook that reads the composed file and, on change, hands the new
 * SDL to the gateway's `update` (no restart). The folder is watched, not the file, because
 * editors and `npm run compose` may replace the file rather than write into it.
 */
export function watchSupergraphFile(
  path: string,
  logger: Logger,
  options: { debounceMs?: number; transform?: (sdl: string) => string } = {},
): SupergraphSdlHook {
  const transform = options.transform ?? ((sdl: string) => sdl);
  return async ({ update }) => {
    let current = readFileSync(path, 'utf8');
    let timer: NodeJS.Timeout | undefined;
    let watcher: FSWatcher | undefined;
    const reload = () => {
      let next: string;
      try {
        next = readFileSync(path, 'utf8');
      } catch (error) {
        logger.warn({ err: (error as Error).message, path }, 'supergraph file unreadable; keeping the current one');
        return;
      }
      if (next === current || next.trim() === '') return;
      try {
        update(transform(next));
        current = next;
        logger.info({ path }, 'supergraph reloaded');
      } catch (error) {
        logger.error({ err: (error as Error).message, path }, 'new supergraph rejected; keeping the current one');
      }
    };
    try {
      watcher = watch(dirname(path), (_event, filename) => {
        if (filename && filename !== basename(path)) return;
        clearTimeout(timer);
        timer = setTimeout(reload, options.debounceMs ?? 100);
      });
      watcher.on('error', (error) => logger.warn({ err: error.message }, 'supergraph watcher failed'));
    } catch (error) {
      logger.warn({ err: (error as Error).message, path }, 'cannot watch the supergraph file; hot reload is off');
    }
    return {
      supergraphSdl: transform(current),
      async cleanup() {
        clearTimeout(timer);
        watcher?.close();
      },
    };
  };
}
