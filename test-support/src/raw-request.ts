import { connect } from 'node:net';

/**
 * Writes `request` as it is to the HTTP server at `url` (its host is ignored: 127.0.0.1) and
 * resolves with every byte of the answer, for requests `fetch` will not send, such as a request
 * target that is no URL. End the request with `Connection: close` so the server closes.
 */
export function rawHttpRequest(url: string, request: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1', () => socket.end(request));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk;
    });
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
}
