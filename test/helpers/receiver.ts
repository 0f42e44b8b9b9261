/**
 * A real webhook receiver for tests: node:http on 127.0.0.1, recording every request (headers,
 * raw body, time) and answering what the test's `respond` says: a status, headers, or never
 * (a receiver that hangs). Paths tell receivers apart: one server can play several.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
  json: any;
  at: number;
  /** The status answered (null: left hanging). */
  status: number | null;
}

export type Reply = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

export interface Receiver {
  url: string;
  received: Received[];
  /** Requests answered so far for a path (counting failures). */
  count(path?: string): number;
  /** Requests left hanging that the sender has not given up on yet. */
  hanging(): number;
  respond: (r: Received, nth: number) => Reply;
  waitFor(predicate: (all: Received[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(respond: Receiver['respond'] = () => ({ status: 200 })): Promise<Receiver> {
  const received: Received[] = [];
  const hanging = new Set<http.ServerResponse>();
  const perPath = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: unknown = null;
      try {
        json = JSON.parse(body);
      } catch {
        /* not JSON */
      }
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const r: Received = { path: req.url ?? '/', headers, body, json, at: Date.now(), status: null };
      received.push(r);
      const nth = (perPath.get(r.path) ?? 0) + 1;
      perPath.set(r.path, nth);
      const reply = receiver.respond(r, nth);
      if (reply !== 'hang') r.status = reply.status;
      if (reply === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      res.writeHead(reply.status, { 'content-type': 'text/plain', ...reply.headers });
      res.end(reply.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}`,
    received,
    respond,
    count: (path) => (path ? (perPath.get(path) ?? 0) : received.length),
    hanging: () => hanging.size,
    async waitFor(predicate, timeoutMs = 15_000, what = 'callbacks') {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(received)) {
        if (Date.now() > deadline) {
          const seen = received.map((r) => `${r.path} ${r.headers['x-callback-type']} ${r.headers['webhook-id']}`);
          throw new Error(`timed out waiting for ${what}; received ${received.length}:\n${seen.join('\n')}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return receiver;
}
