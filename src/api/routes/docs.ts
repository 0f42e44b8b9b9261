/**
 * GET /docs: Swagger UI over /openapi.json, served by this server from the pinned swagger-ui-dist
 * package, so the page works offline and on air-gapped hosts (no CDN, nothing fetched from
 * elsewhere). Only the files the page uses are served, read once from the package on first use.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { HttpError } from '../../core/errors.js';

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

/** The page's own start-up script: a file too, so the page runs under a CSP without 'unsafe-inline' scripts. */
const INIT_JS = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>trainhook API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
`;

// Swagger UI sets inline styles and draws icons from data: URLs; scripts and fetches stay on this origin.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'";

function packageDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
}

export function registerDocs(app: OpenAPIHono): void {
  const cache = new Map<string, Buffer>();
  const read = (name: string): Buffer => {
    let data = cache.get(name);
    if (!data) {
      data = fs.readFileSync(path.join(packageDir(), name));
      cache.set(name, data);
    }
    return data;
  };

  app.get('/docs', (c) => c.html(PAGE, 200, { 'Content-Security-Policy': CSP }));
  app.get('/docs/assets/:name', (c) => {
    const name = c.req.param('name');
    if (name === 'init.js') {
      return c.body(INIT_JS, 200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'public, max-age=3600' });
    }
    const type = Object.hasOwn(ASSETS, name) ? ASSETS[name]! : null;
    if (!type) throw new HttpError(404, 'NOT_FOUND', `no asset ${name}`);
    return c.body(new Uint8Array(read(name)), 200, {
      'Content-Type': type,
      'Cache-Control': 'public, max-age=3600',
      'X-Content-Type-Options': 'nosniff',
    });
  });
}
