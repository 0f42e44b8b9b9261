import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { OutboundPolicy, parseIp, formatIp } from './ip-policy.js';
import { assertUrlAllowed, createOutboundDispatcher, isOutboundBlockedError, type Resolver } from './outbound.js';

describe('ip policy', () => {
  const none = new OutboundPolicy([]);
  const blocked = [
    '127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254',
    '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '198.18.0.1', '::1', '::', 'fe80::1', 'fe80::1%eth0',
    'fd00::1', 'fc00::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe',
    '::127.0.0.1', '64:ff9b::a9fe:a9fe', '64:ff9b::10.0.0.1', '2002:7f00:1::', '2002:a9fe:a9fe::1', '[::1]',
  ];
  for (const a of blocked) {
    it(`refuses ${a}`, () => assert.equal(none.checkAddress(a).ok, false));
  }
  const open = ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'];
  for (const a of open) {
    it(`accepts ${a}`, () => assert.deepEqual(none.checkAddress(a), { ok: true }));
  }
  it('names the reason', () => {
    assert.deepEqual(none.checkAddress('169.254.169.254'), { ok: false, reason: 'link-local' });
    assert.deepEqual(none.checkAddress('::ffff:10.0.0.1'), { ok: false, reason: 'private' });
    assert.deepEqual(none.checkAddress('not-an-ip'), { ok: false, reason: 'not an IP address' });
  });
  it('parses IPv6 forms', () => {
    assert.equal(formatIp(parseIp('::ffff:1.2.3.4')!), '0:0:0:0:0:ffff:102:304');
    assert.equal(formatIp(parseIp('2001:db8::8:800:200c:417a')!), '2001:db8:0:0:8:800:200c:417a');
    assert.equal(formatIp(parseIp('1::')!), '1:0:0:0:0:0:0:0');
    assert.equal(parseIp('1.2.3'), null);
  });
  it('allow-lists IPs (mapped forms too), CIDRs and names', () => {
    const p = new OutboundPolicy(['127.0.0.1', '10.0.0.0/8', 'fd00::/8', 'files.internal', '*.corp.example']);
    assert.equal(p.checkAddress('127.0.0.1').ok, true);
    assert.equal(p.checkAddress('::ffff:127.0.0.1').ok, true);
    assert.equal(p.checkAddress('127.0.0.2').ok, false);
    assert.equal(p.checkAddress('10.200.3.4').ok, true);
    assert.equal(p.checkAddress('11.0.0.1').ok, true);
    assert.equal(p.checkAddress('192.168.0.1').ok, false);
    assert.equal(p.checkAddress('fd12::1').ok, true);
    assert.equal(p.checkAddress('fc00::1').ok, false);
    assert.equal(p.hostAllowed('FILES.internal.'), true);
    assert.equal(p.hostAllowed('a.corp.example'), true);
    assert.equal(p.hostAllowed('corp.example.evil'), false);
    assert.throws(() => new OutboundPolicy(['10.0.0.0/33']), /not a valid CIDR/);
  });
});

describe('assertUrlAllowed', () => {
  const refused = [
    'http://127.0.0.1/x', 'http://[::1]:8080/', 'http://2130706433/', 'http://0x7f.1/', 'http://169.254.169.254/latest/meta-data/',
    'http://[::ffff:169.254.169.254]/', 'http://localhost:3000/', 'http://foo.localhost/', 'https://10.0.0.5/data.zip',
  ];
  for (const u of refused) {
    it(`refuses ${u}`, () => assert.throws(() => assertUrlAllowed(u, []), (e: unknown) => isOutboundBlockedError(e)));
  }
  it('refuses other schemes and junk', () => {
    assert.throws(() => assertUrlAllowed('file:///etc/passwd', []), /unsupported URL scheme/);
    assert.throws(() => assertUrlAllowed('ftp://example.com/a.zip', []), /unsupported URL scheme/);
    assert.throws(() => assertUrlAllowed('not a url', []), /not a valid URL/);
  });
  it('accepts public hosts and allow-listed ones', () => {
    assert.equal(assertUrlAllowed('https://example.com/a.zip?sig=1', []).hostname, 'example.com');
    assertUrlAllowed('http://127.0.0.1:9/', ['127.0.0.1']);
    assertUrlAllowed('http://localhost:9/', ['127.0.0.1']);
    assertUrlAllowed('http://localhost:9/', ['localhost']);
    assertUrlAllowed('http://10.1.1.1/', ['10.0.0.0/8']);
  });
  it('says what to do in the message, without the path or query', () => {
    try {
      assertUrlAllowed('http://169.254.169.254/latest?token=secret', []);
      assert.fail('should throw');
    } catch (e) {
      assert.match((e as Error).message, /169\.254\.169\.254: link-local address; add it to OUTBOUND_ALLOW/);
      assert.doesNotMatch((e as Error).message, /secret|latest/);
    }
  });
});

describe('outbound dispatcher (connect-time check)', () => {
  let server: http.Server;
  let port = 0;
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
        return;
      }
      res.end('hello');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const rebind: Resolver = async (hostname) => {
    if (hostname === 'rebind.test' || hostname === 'files.test') return [{ address: '127.0.0.1', family: 4 }];
    if (hostname === 'mixed.test') {
      return [{ address: '::1', family: 6 }, { address: '127.0.0.1', family: 4 }];
    }
    throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
  };

  async function get(url: string, allow: string[], resolve?: Resolver) {
    const dispatcher = createOutboundDispatcher(allow, { resolve, connectTimeoutMs: 2000 });
    try {
      const res = await request(url, { dispatcher });
      return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
    } finally {
      await dispatcher.close();
    }
  }

  it('refuses 127.0.0.1 when not allow-listed', async () => {
    await assert.rejects(get(`http://127.0.0.1:${port}/`, []), (e: unknown) => {
      assert.ok(isOutboundBlockedError(e), String(e));
      assert.match((e as Error).message, /loopback/);
      return true;
    });
  });
  it('connects to 127.0.0.1 when allow-listed', async () => {
    assert.equal((await get(`http://127.0.0.1:${port}/`, ['127.0.0.1'])).body, 'hello');
    assert.equal((await get(`http://127.0.0.1:${port}/`, ['127.0.0.0/8'])).body, 'hello');
  });
  it('refuses 169.254.169.254 at once, without a connect attempt', async () => {
    const t = Date.now();
    await assert.rejects(get('http://169.254.169.254/latest/meta-data/', ['127.0.0.1']), (e: unknown) =>
      isOutboundBlockedError(e),
    );
    assert.ok(Date.now() - t < 1000);
  });
  it('refuses a name whose DNS answer is private (rebinding)', async () => {
    await assert.rejects(get(`http://rebind.test:${port}/`, [], rebind), (e: unknown) => {
      assert.ok(isOutboundBlockedError(e), String(e));
      assert.match((e as Error).message, /rebind\.test \(127\.0\.0\.1\)/);
      return true;
    });
  });
  it('connects when the resolved address or the name is allow-listed', async () => {
    assert.equal((await get(`http://rebind.test:${port}/`, ['127.0.0.1'], rebind)).body, 'hello');
    assert.equal((await get(`http://files.test:${port}/`, ['files.test'], rebind)).body, 'hello');
    // ::1 is dropped (not allow-listed), 127.0.0.1 is used.
    assert.equal((await get(`http://mixed.test:${port}/`, ['127.0.0.1'], rebind)).body, 'hello');
  });
  it('connects to localhost through the system resolver when allow-listed', async () => {
    assert.equal((await get(`http://localhost:${port}/`, ['127.0.0.1'])).body, 'hello');
    await assert.rejects(get(`http://localhost:${port}/`, []), (e: unknown) => isOutboundBlockedError(e));
  });
  it('does not follow redirects by itself', async () => {
    const res = await get(`http://127.0.0.1:${port}/redirect`, ['127.0.0.1']);
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, 'http://169.254.169.254/');
  });
});
