/**
 * A scriptable HTTP server on 127.0.0.1 for download tests: each path gets a handler, and
 * every request is counted per path so tests can assert retries (or their absence).
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Route = (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void;

export type FileServer = {
  url(pathname: string): string;
  route(pathname: string, handler: Route): void;
  hits(pathname: string): number;
  close(): Promise<void>;
};

export async function startFileServer(): Promise<FileServer> {
  const routes = new Map<string, Route>();
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    const n = (hits.get(pathname) ?? 0) + 1;
    hits.set(pathname, n);
    const handler = routes.get(pathname);
    if (!handler) {
      res.writeHead(404).end('not found');
      return;
    }
    handler(req, res, n);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: (p) => `http://127.0.0.1:${port}${p}`,
    route: (p, h) => void routes.set(p, h),
    hits: (p) => hits.get(p) ?? 0,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Serves a buffer with a Content-Length. */
export const serveBytes = (body: Buffer): Route => (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length });
  res.end(body);
};

/** Streams a file from disk with a Content-Length, as a dataset host would. */
export const serveFile = (file: string): Route => (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/zip', 'content-length': fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
};

/** Accepts the request and never answers: a download that stays in flight. */
export const hang: Route = () => {};
