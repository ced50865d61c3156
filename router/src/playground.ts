import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { sendJson } from '@ghostpay/platform';

const require = createRequire(import.meta.url);

/** Header the playground's fetcher sends, so the router can refuse non-admin playground use. */
export const playgroundClientHeader = 'x-ghostpay-client';

/** Assets served from the installed npm packages (no CDN): React 18 UMD builds and GraphiQL 3's UMD bundle. */
const assetFiles = new Map<string, { pkg: string; file: string; type: string }>([
  ['react.js', { pkg: 'react', file: 'umd/react.production.min.js', type: 'text/javascript' }],
  ['react-dom.js', { pkg: 'react-dom', file: 'umd/react-dom.production.min.js', type: 'text/javascript' }],
  ['graphiql.js', { pkg: 'graphiql', file: 'graphiql.min.js', type: 'text/javascript' }],
  ['graphiql.css', { pkg: 'graphiql', file: 'graphiql.min.css', type: 'text/css' }],
]);

/** A file inside an installed package, found through its package.json (the UMD files are not in `exports`). */
function packageFile(pkg: string, file: string): string {
  return join(dirname(require.resolve(`${pkg}/package.json`)), file);
}

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>GhostPay admin playground</title>
<link rel="stylesheet" href="/playground/assets/graphiql.css">
<style>
  body { margin: 0; height: 100vh; font-family: system-ui, sans-serif; }
  #login { padding: 2rem; max-width: 40rem; }
  #login input { width: 100%; font-family: monospace; padding: .4rem; }
  #graphiql { height: 100vh; }
  #error { color: #b00020; }
</style>
</head>
<body>
<form id="login">
  <h1>GhostPay admin playground</h1>
  <p>Paste an <strong>admin</strong> access token. It is kept only in this tab's memory.</p>
  <label for="token">Admin token</label>
  <input id="token" name="token" autocomplete="off" spellcheck="false">
  <p><button id="open" type="submit">Open playground</button></p>
  <p id="error" role="alert"></p>
</form>
<div id="graphiql" hidden></div>
<script src="/playground/assets/react.js"></script>
<script src="/playground/assets/react-dom.js"></script>
<script src="/playground/assets/graphiql.js"></script>
<script src="/playground/assets/playground.js"></script>
</body>
</html>
`;

/** Asks for the token, checks it is an admin's (introspection answers only admins), then mounts GraphiQL. */
const script = `(() => {
  const form = document.getElementById('login');
  const errorBox = document.getElementById('error');
  let token = '';
  const fetcher = async (params) => {
    const response = await fetch('/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: 'Bearer ' + token,
        '${playgroundClientHeader}': 'playground',
      },
      body: JSON.stringify(params),
    });
    return response.json();
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    token = document.getElementById('token').value.trim();
    errorBox.textContent = '';
    const probe = await fetcher({ query: '{ __schema { queryType { name } } }' }).catch((e) => ({ errors: [{ message: String(e) }] }));
    if (probe.errors) {
      errorBox.textContent = 'Refused: ' + probe.errors.map((e) => e.message).join('; ');
      return;
    }
    form.hidden = true;
    const root = document.getElementById('graphiql');
    root.hidden = false;
    const query = new URLSearchParams(location.search).get('query') ?? undefined;
    ReactDOM.createRoot(root).render(React.createElement(GraphiQL, { fetcher, query, defaultEditorToolsVisibility: true }));
  });
})();
`;

const cache = new Map<string, Buffer>();

/**
 * Serves `/playground` (the page) and `/playground/assets/*`. The page itself holds nothing
 * secret; every GraphQL request it makes carries the admin token and the playground header,
 * and the router refuses playground requests from non-admin tokens.
 */
export function servePlayground(req: IncomingMessage, res: ServerResponse, pathname: string) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: { code: 'BAD_USER_INPUT', message: 'Method not allowed' } }, { allow: 'GET, HEAD' });
    return;
  }
  const security = {
    'content-security-policy':
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
  if (pathname === '/playground' || pathname === '/playground/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...security });
    res.end(page);
    return;
  }
  const name = pathname.slice('/playground/assets/'.length);
  if (name === 'playground.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', ...security });
    res.end(script);
    return;
  }
  // A Map: the name is the client's, and `constructor` or `toString` must not find Object.prototype's.
  const asset = pathname.startsWith('/playground/assets/') ? assetFiles.get(name) : undefined;
  if (!asset) {
    sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'Not found' } });
    return;
  }
  let body = cache.get(name);
  if (!body) {
    body = readFileSync(packageFile(asset.pkg, asset.file));
    cache.set(name, body);
  }
  res.writeHead(200, {
    'content-type': `${asset.type}; charset=utf-8`,
    'content-length': body.length,
    ...security,
    'cache-control': 'public, max-age=3600',
  });
  res.end(body);
}
