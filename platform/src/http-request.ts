/**
 * One HTTP request over an undici `Pool`/`Client`/`Agent` whose answer is read whole as text,
 * through the dispatcher's low-level `dispatch` API instead of `request()`.
 *
 * Why not `pool.request()`: its per-request `RequestHandler` is an `AsyncResource`, and on
 * Node 24 a keep-alive client driven that way kept roughly a third of everything it allocated
 * alive through a young-generation collection (measured in isolation: 31–36% of allocations
 * survived a scavenge and were promoted with `request()`, 0.7% with `dispatch` and a plain
 * handler, 0.4% with `node:http`). In the router those survivors were whole request graphs and
 * made each scavenge copy ~6 MB (15–30 ms pauses): bench/RESULTS.md, change 25. The status,
 * headers and text are all our callers need, so the stream, the AsyncResource and the body
 * mixins of `request()` are left out.
 *
 * Context propagation is unaffected: the promise is awaited by the caller, so its continuation
 * runs in the caller's async context; the undici OpenTelemetry instrumentation hooks the core
 * request (diagnostics channels), which `dispatch` goes through as `request()` does.
 */

/** The part of an undici dispatcher this uses (Pool, Client and Agent all have it). */
export interface TextDispatcher {
  dispatch(options: TextRequestDispatchOptions, handler: TextRequestHandler): boolean;
}

export interface TextRequestOptions {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Abort when this signal aborts (the error is the signal's reason). */
  signal?: AbortSignal;
  /** Fail (and abort the request) once the body exceeds this many bytes. @default unlimited */
  maxResponseBytes?: number;
  headersTimeout?: number;
  bodyTimeout?: number;
}

export interface TextResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** undici's dispatch options, as far as `requestText` sets them: its own options less the two it handles itself. */
type TextRequestDispatchOptions = Omit<TextRequestOptions, 'signal' | 'maxResponseBytes'>;

interface DispatchController {
  abort(reason: Error): void;
}

/** undici's (v7+) dispatch handler, as far as `requestText` implements it. */
export interface TextRequestHandler {
  onRequestStart(controller: DispatchController): void;
  onResponseStart(controller: DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void;
  onResponseData(controller: DispatchController, chunk: Buffer): void;
  onResponseEnd(controller: DispatchController): void;
  onResponseError(controller: DispatchController, error: Error): void;
}

/** The body grew past `maxResponseBytes`. */
export class ResponseTooLargeError extends Error {
  readonly code = 'RESPONSE_TOO_LARGE';
}

export function requestText(dispatcher: TextDispatcher, options: TextRequestOptions): Promise<TextResponse> {
  const { signal, maxResponseBytes = Number.POSITIVE_INFINITY, ...dispatchOptions } = options;
  return new Promise<TextResponse>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let settled = false;
    let controller: DispatchController | undefined;
    let statusCode = 0;
    let headers: TextResponse['headers'] = {};
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => controller?.abort(signal?.reason);
    const settle = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error) {
        reject(error);
        return;
      }
      const text = chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks, size).toString('utf8');
      resolve({ statusCode, headers, text });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const handler: TextRequestHandler = {
      onRequestStart(requestController) {
        controller = requestController;
        if (signal?.aborted) requestController.abort(signal.reason);
      },
      onResponseStart(_controller, status, responseHeaders) {
        // 1xx (informational) answers precede the real one.
        if (status < 200) return;
        statusCode = status;
        headers = responseHeaders;
      },
      onResponseData(requestController, chunk) {
        size += chunk.length;
        if (size > maxResponseBytes) {
          requestController.abort(new ResponseTooLargeError(`response larger than ${maxResponseBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      },
      onResponseEnd() {
        settle(undefined);
      },
      onResponseError(_controller, error) {
        settle(error);
      },
    };
    try {
      dispatcher.dispatch(dispatchOptions, handler);
    } catch (error) {
      // Invalid options throw synchronously: reject, and drop the abort listener with it.
      settle(error as Error);
    }
  });
}
