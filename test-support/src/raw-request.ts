import { connect } from 'node:net';

/**
 * Writes `request` as it is (a string in UTF-8, bytes as they are) to the HTTP server at `url`
 * (its host is ignored: 127.0.0.1) and resolves with the whole answer, decoded as UTF-8 once it
 * has all arrived, for requests `fetch` will not send, such as a request target that is no URL.
 * End the request with `Connection: close` so the server closes.
 */
export function rawHttpRequest(url: string, request: string | Uint8Array): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1', () => socket.end(request));
    // Decoded at the end, not chunk by chunk: a character split between two packets would
    // otherwise come out as two replacement characters.
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
    });
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', reject);
  });
}
