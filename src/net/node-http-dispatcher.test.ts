/**
 * The outbound dispatcher as undici's request() sees it, beyond what outbound.test.ts covers:
 * https through the guard, connection reuse, request bodies, and the timeouts' edges.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { createOutboundDispatcher, isOutboundBlockedError, type Resolver } from './outbound.js';

const TLS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/tls');
const cert = fs.readFileSync(path.join(TLS, 'cert.pem'));
const key = fs.readFileSync(path.join(TLS, 'key.pem'));
const big = Buffer.alloc(300_000, 1);

function handler(req: http.IncomingMessage, res: http.ServerResponse) {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/echo') {
      res.end(JSON.stringify({ length: req.headers['content-length'], body: Buffer.concat(chunks).toString() }));
    } else if (req.url === '/late') {
      setTimeout(() => res.end('late'), 300);
    } else if (req.url === '/big') {
      res.end(big);
    } else {
      res.end('hello');
    }
  });
}

describe('outbound dispatcher over Node http/https', () => {
  let plain: http.Server;
  let secure: https.Server;
  let plainPort = 0;
  let securePort = 0;
  const connections = { plain: 0, secure: 0 };
  before(async () => {
    plain = http.createServer(handler).on('connection', () => connections.plain++);
    secure = https.createServer({ key, cert }, handler).on('connection', () => connections.secure++);
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
    plainPort = (plain.address() as AddressInfo).port;
    securePort = (secure.address() as AddressInfo).port;
  });
  after(async () => {
    plain.closeAllConnections();
    secure.closeAllConnections();
    await new Promise<void>((r) => plain.close(() => r()));
    await new Promise<void>((r) => secure.close(() => r()));
  });

  const toLoopback: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];

  it('speaks https to an allowed host, and refuses a name that resolves to loopback before any connection', async () => {
    const allowed = createOutboundDispatcher(['127.0.0.1'], { ca: cert });
    const strict = createOutboundDispatcher([], { ca: cert, resolve: toLoopback });
    try {
      const res = await request(`https://127.0.0.1:${securePort}/`, { dispatcher: allowed });
      assert.equal(await res.body.text(), 'hello');
      const before = connections.secure;
      await assert.rejects(request(`https://files.example:${securePort}/`, { dispatcher: strict }), (e: unknown) => {
        assert.ok(isOutboundBlockedError(e), String(e));
        return true;
      });
      await assert.rejects(request(`https://127.0.0.1:${securePort}/`, { dispatcher: strict }), (e: unknown) => isOutboundBlockedError(e));
      assert.equal(connections.secure, before, 'no TCP connection was opened');
    } finally {
      await allowed.close();
      await strict.close();
    }
  });

  it('checks the certificate', async () => {
    const d = createOutboundDispatcher(['127.0.0.1']); // system CAs only
    try {
      await assert.rejects(request(`https://127.0.0.1:${securePort}/`, { dispatcher: d }), (e: Error & { code?: string }) => {
        assert.match(String(e.code), /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
        return true;
      });
    } finally {
      await d.close();
    }
  });

  it('reuses a kept-alive connection and sends a body with its Content-Length', async () => {
    const d = createOutboundDispatcher(['127.0.0.1']);
    try {
      const before = connections.plain;
      for (let i = 0; i < 3; i++) {
        const res = await request(`http://127.0.0.1:${plainPort}/echo`, { dispatcher: d, method: 'POST', body: `{"n":${i}}` });
        assert.deepEqual(await res.body.json(), { length: String(`{"n":${i}}`.length), body: `{"n":${i}}` });
      }
      assert.equal(connections.plain - before, 1);
    } finally {
      await d.close();
    }
  });

  it('waits for headers longer than the idle keep-alive time', async () => {
    const d = createOutboundDispatcher(['127.0.0.1'], { agent: { keepAliveTimeout: 50 } });
    try {
      const res = await request(`http://127.0.0.1:${plainPort}/late`, { dispatcher: d, headersTimeout: 5000 });
      assert.equal(await res.body.text(), 'late');
      await assert.rejects(
        request(`http://127.0.0.1:${plainPort}/late`, { dispatcher: d, headersTimeout: 50 }),
        (e: Error & { code?: string }) => e.code === 'UND_ERR_HEADERS_TIMEOUT',
      );
    } finally {
      await d.close();
    }
  });

  it('does not count a reader holding back against the body timeout', async () => {
    const d = createOutboundDispatcher(['127.0.0.1']);
    try {
      const res = await request(`http://127.0.0.1:${plainPort}/big`, { dispatcher: d, bodyTimeout: 100 });
      await sleep(400); // the body waits, unread, past the body timeout
      assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(big));
    } finally {
      await d.close();
    }
  });

  it('destroy() fails the requests in flight', async () => {
    const d = createOutboundDispatcher(['127.0.0.1']);
    const pending = request(`http://127.0.0.1:${plainPort}/late`, { dispatcher: d });
    await sleep(50);
    await d.destroy();
    await assert.rejects(pending, (e: Error & { code?: string }) => e.code === 'UND_ERR_DESTROYED');
    await assert.rejects(request(`http://127.0.0.1:${plainPort}/`, { dispatcher: d }), (e: Error & { code?: string }) =>
      e.code === 'UND_ERR_DESTROYED',
    );
  });
});
