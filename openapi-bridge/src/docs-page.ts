import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** Swagger UI's files, served by the bridge itself from the pinned `swagger-ui-dist` package. */
const swaggerUiDir = dirname(require.resolve('swagger-ui-dist/package.json'));

// The page's own start-up script is a file, not inline, so the CSP needs no 'unsafe-inline' script.
const initScript = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: 'StandaloneLayout',
    validatorUrl: null,
  });
});
`;

const page = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>GhostPay-Lite REST API</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="/docs/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/swagger-ui-standalone-preset.js"></script>
    <script src="/docs/docs-init.js"></script>
  </body>
</html>
`;

export interface StaticFile {
  contentType: string;
  body: Buffer;
}

const assetTypes: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
};

/** Every path the docs page is served from: the page, its start-up script and Swagger UI's files. */
export const docsPaths = ['/docs', '/docs/docs-init.js', ...Object.keys(assetTypes).map((name) => `/docs/${name}`)];

/** The docs page and its assets, read once (a few MB) so requests never touch the disk. */
export function loadDocsFiles(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  files.set('/docs', { contentType: 'text/html; charset=utf-8', body: Buffer.from(page) });
  files.set('/docs/docs-init.js', { contentType: 'text/javascript; charset=utf-8', body: Buffer.from(initScript) });
  for (const [name, contentType] of Object.entries(assetTypes)) {
    files.set(`/docs/${name}`, { contentType, body: readFileSync(join(swaggerUiDir, name)) });
  }
  return files;
}
