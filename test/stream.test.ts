/**
 * The SSE streams over real HTTP with a fetch-based EventSource (the wire format parsed by
 * hand): events and their ids, resuming with Last-Event-ID without missing or repeating
 * anything, a snapshot when the id is too old or from another process, heartbeats, the
 * dashboard stream, and the cut-off of a client that does not read.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SseClient, encodeFrame } from '../src/stream/sse.js';
import { jobDriver } from './helpers/job-driver.js';
import { TOKEN, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

interface SseEvent {
  id: string | null;
  event: string;
  data: any;
}

/** A minimal EventSource over fetch: keeps the last id as EventSource does. */
async function openSse(url: string, headers: Record<string, string> = {}) {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}`, accept: 'text/event-stream', ...headers }, signal: ac.signal });
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let lastId: string | null = null;
  let retry: number | null = null;
  const queue: SseEvent[] = [];
  let ended = false;

  const parse = () => {
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      let data: string[] = [];
      let id: string | null = null;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id') id = value;
        else if (field === 'retry') retry = Number(value);
      }
      if (id !== null) lastId = id;
      if (data.length) queue.push({ id, event, data: JSON.parse(data.join('\n')) });
    }
  };

  // One read in flight at a time: a read that lost a race with the timeout is kept for the next call.
  let pending: Promise<ReadableStreamReadResult<string>> | null = null;
  const next = async (timeoutMs = 5000): Promise<SseEvent> => {
    const deadline = Date.now() + timeoutMs;
    while (!queue.length) {
      if (ended) throw new Error('stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      pending ??= reader.read();
      const r = await Promise.race([pending, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), left)))]);
      clearTimeout(timer);
      if (r === null) continue;
      pending = null;
      if (r.done) ended = true;
      else buf += r.value;
      parse();
    }
    return queue.shift()!;
  };
  /** Next event that is not a heartbeat. */
  const nextData = async (timeoutMs = 5000) => {
    for (;;) {
      const e = await next(timeoutMs);
      if (e.event !== 'heartbeat') return e;
    }
  };
  /** Asserts nothing but heartbeats arrives for a while. */
  const quiet = async (ms: number) => {
    try {
      const e = await nextData(ms);
      assert.fail(`unexpected event ${e.event} ${JSON.stringify(e.data).slice(0, 200)}`);
    } catch (err) {
      if (!/no event within/.test((err as Error).message)) throw err;
    }
  };
  return {
    next,
    nextData,
    quiet,
    get lastId() {
      return lastId;
    },
    get retry() {
      return retry;
    },
    close: () => {
      ac.abort();
      pending?.catch(() => {});
      reader.cancel().catch(() => {});
    },
  };
}

const NODE = 'stream-test-node';

function driver(server: TestServer) {
  const base = jobDriver(server, NODE);
  return {
    ...base,
    epoch(id: string, n: number) {
      const metrics = { mAP50: n / 10, 'mAP50-95': n / 20, box_loss: 1 / n, cls_loss: 1 / n, dfl_loss: 1 / n };
      return base.record(id, { progress: 10 + n, currentEpoch: n, metricsCurrent: metrics }, 'epoch', { epoch: n, metrics, epochSeconds: 1 });
    },
  };
}

describe('SSE streams', () => {
  let server: TestServer;
  let drive: ReturnType<typeof driver>;
  let jobId: string;

  before(async () => {
    server = await startTestServer({ env: { RUN_JOBS: 'false', SSE_HEARTBEAT_SECONDS: '0.4', SSE_CLIENT_BUFFER_BYTES: '8192' } });
    drive = driver(server);
    const r = await api(server.url)('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name: 'sse', base_model: 'yolo11n.yaml', epochs: 400 } }) });
    jobId = r.json.job_id;
    await drive.start();
  });
  after(() => server.stop());

  test('a first connection gets a snapshot, then every change with increasing ids', async () => {
    const es = await openSse(`${server.url}/stream/progress/${jobId}`);
    const snap = await es.nextData();
    assert.equal(snap.event, 'progress');
    assert.equal(snap.data.snapshot, true);
    assert.equal(snap.data.status, 'training');
    assert.deepEqual(snap.data.epochs, []);
    assert.match(snap.id!, /^[0-9a-f]+-\d+$/);
    assert.ok(es.retry! > 0, 'a retry: hint for EventSource');

    await drive.record(jobId, { phase: 'training', progress: 10 }, 'phase');
    const phase = await es.nextData();
    assert.equal(phase.event, 'progress');
    assert.equal(phase.data.phase, 'training');
    assert.equal(phase.data.change, 'phase');
    await drive.epoch(jobId, 1);
    const epoch = await es.nextData();
    assert.equal(epoch.data.epoch, 1);
    assert.equal(epoch.data.mAP50, 0.1);
    assert.equal(epoch.data.loss, 3);
    assert.deepEqual(epoch.data.epoch_metrics.epoch, 1);
    const seq = (id: string | null) => Number(id!.split('-')[1]);
    assert.ok(seq(snap.id) < seq(phase.id) && seq(phase.id) < seq(epoch.id));
    es.close();
  });

  test('Last-Event-ID resumes with exactly what was missed (header or ?last_event_id=)', async () => {
    const es = await openSse(`${server.url}/stream/progress/${jobId}`);
    await es.nextData(); // snapshot
    await drive.epoch(jobId, 2);
    assert.equal((await es.nextData()).data.epoch, 2);
    const last = es.lastId!;
    es.close();

    await drive.epoch(jobId, 3);
    await drive.record(jobId, { progress: 13.5 }, 'progress');
    await drive.epoch(jobId, 4);

    for (const how of ['header', 'query'] as const) {
      const back =
        how === 'header'
          ? await openSse(`${server.url}/stream/progress/${jobId}`, { 'last-event-id': last })
          : await openSse(`${server.url}/stream/progress/${jobId}?last_event_id=${encodeURIComponent(last)}`);
      // The second resume is from the same id, so it also gets epoch 5, sent after the first one.
      const want: [string, number][] = [['epoch', 3], ['progress', 3], ['epoch', 4], ...(how === 'query' ? [['epoch', 5] as [string, number]] : [])];
      const got = [];
      for (let i = 0; i < want.length; i++) got.push(await back.nextData());
      assert.deepEqual(got.map((e) => [e.data.change, e.data.epoch]), want, how);
      assert.ok(got.every((e) => e.data.snapshot === undefined), 'no snapshot on a resume');
      await back.quiet(300);
      await drive.epoch(jobId, how === 'header' ? 5 : 6);
      assert.equal((await back.nextData()).data.epoch, how === 'header' ? 5 : 6);
      back.close();
    }
  });

  test('an id from another process or older than the ring gets a full snapshot instead', async () => {
    const foreign = await openSse(`${server.url}/stream/progress/${jobId}`, { 'last-event-id': 'deadbeef-3' });
    const snap = await foreign.nextData();
    assert.equal(snap.data.snapshot, true);
    assert.deepEqual(snap.data.epochs.map((e: { epoch: number }) => e.epoch), [1, 2, 3, 4, 5, 6]);
    foreign.close();

    const es = await openSse(`${server.url}/stream/progress/${jobId}`);
    await es.nextData();
    const last = es.lastId!;
    es.close();
    // More changes than the ring keeps (256), announced without touching the database.
    const row = (await server.deps.jobs.get(jobId))!;
    for (let i = 0; i < 300; i++) server.deps.events.emit({ job: { ...row, progress: 20 + i / 100 }, change: 'progress' });
    await drive.epoch(jobId, 7);
    const back = await openSse(`${server.url}/stream/progress/${jobId}`, { 'last-event-id': last });
    const again = await back.nextData();
    assert.equal(again.data.snapshot, true);
    assert.equal(again.data.epochs.length, 7);
    assert.equal(again.data.epoch, 7);
    await back.quiet(200);
    back.close();
  });

  test('heartbeats come on the configured interval and carry no id', async () => {
    const es = await openSse(`${server.url}/stream/progress/${jobId}`);
    await es.nextData();
    const before = es.lastId;
    const started = Date.now();
    const beat = await es.next(3000);
    assert.equal(beat.event, 'heartbeat');
    assert.equal(beat.id, null);
    assert.ok(Date.parse(beat.data.timestamp) > 0);
    assert.ok(Date.now() - started < 1500);
    assert.equal(es.lastId, before, 'a heartbeat does not move Last-Event-ID');
    es.close();
  });

  test('cancellation ends with a cancelled event; a late client gets the snapshot and the outcome', async () => {
    const es = await openSse(`${server.url}/stream/progress/${jobId}`);
    await es.nextData();
    const dash = await openSse(`${server.url}/stream/dashboard?last_event_id=${encodeURIComponent(server.deps.streams.currentId())}`);
    const cancel = await api(server.url)(`/api/v1/jobs/${jobId}`, { method: 'DELETE' });
    assert.equal(cancel.status, 200);
    const ev = await es.nextData();
    assert.equal(ev.event, 'cancelled');
    assert.equal(ev.data.status, 'cancelled');
    assert.equal(ev.data.error.code, 'CANCELLED');
    es.close();
    let job;
    do job = await dash.nextData();
    while (job.event !== 'job');
    assert.equal(job.data.job_id, jobId);
    assert.equal(job.data.change, 'cancelled');
    dash.close();

    const late = await openSse(`${server.url}/stream/progress/${jobId}`);
    const snap = await late.nextData();
    assert.equal(snap.data.status, 'cancelled');
    assert.equal((await late.nextData()).event, 'cancelled');
    late.close();
  });

  test('the dashboard stream: resources on connect, a snapshot for a stale id', async () => {
    await server.deps.monitor.sampleNow();
    const es = await openSse(`${server.url}/stream/dashboard`, { 'last-event-id': 'cafe-1' });
    const first = await es.nextData();
    assert.equal(first.event, 'snapshot');
    const res = await es.nextData();
    assert.equal(res.event, 'resources');
    assert.ok(res.data.ram.total_gb > 0);
    assert.ok(Array.isArray(res.data.gpus));
    es.close();
  });

  test('unknown jobs are 404', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const res = await fetch(`${server.url}/stream/progress/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'JOB_NOT_FOUND');
    }
  });

  test('a real socket that stops reading is cut off once the kernel buffers and the cap are full', async () => {
    const r = await api(server.url)('/api/v1/train', { method: 'POST', json: trainBody() });
    const row = (await server.deps.jobs.get(r.json.job_id))!;
    const before = server.deps.streams.stats();
    const { port } = new URL(server.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`GET /stream/progress/${row.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.pause(); // from here on this client reads nothing
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const pad = 'x'.repeat(4000);
    let sent = 0;
    // Loopback buffers take a few MB before the server sees any backlog: send until it gives up.
    while (server.deps.streams.stats().dropped_slow === before.dropped_slow && sent < 64 * 1024 * 1024) {
      for (let i = 0; i < 200; i++) server.deps.events.emit({ job: { ...row, name: pad, progress: i }, change: 'progress' });
      sent += 200 * 4600;
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(server.deps.streams.stats().dropped_slow, before.dropped_slow + 1, `cut off after ${(sent / 1e6).toFixed(1)} MB`);
    assert.equal(server.deps.streams.stats().clients, before.clients);
    socket.resume();
    await closed;
  });

  test('a client that does not read is cut off at its buffer cap', async () => {
    const r = await api(server.url)('/api/v1/train', { method: 'POST', json: trainBody() });
    const row = (await server.deps.jobs.get(r.json.job_id))!;
    const before = server.deps.streams.stats();
    const res = await server.deps.streams.openJob(row.id, undefined);
    assert.ok(res);
    // Never read: each change queues ~1 KB more until the 8 KiB cap is passed.
    for (let i = 0; i < 40; i++) server.deps.events.emit({ job: { ...row, progress: i }, change: 'progress' });
    const after = server.deps.streams.stats();
    assert.equal(after.dropped_slow, before.dropped_slow + 1);
    assert.equal(after.clients, before.clients);
    await assert.rejects(res.body!.getReader().read(), /too slow/);
  });
});

describe('the completed frame', () => {
  test('carries model_url, a signed link that downloads the model, in the order of the events', async () => {
    const server = await startTestServer({ env: { RUN_JOBS: 'false' } });
    try {
      const drive = jobDriver(server, NODE);
      const r = await api(server.url)('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name: 'done', epochs: 1 } }) });
      const job = await drive.start();
      assert.equal(job.id, r.json.job_id);
      const es = await openSse(`${server.url}/stream/progress/${job.id}`);
      await es.nextData(); // snapshot
      const weights = path.join(server.deps.files.dir(job.id), 'weights', 'best.pt');
      fs.mkdirSync(path.dirname(weights), { recursive: true });
      fs.writeFileSync(weights, 'the weights');
      await drive.finish(job.id, 'completed', { model: { best: weights, last: weights, size_bytes: 11, format: 'pytorch' } });
      const done = await es.nextData();
      assert.equal(done.event, 'completed');
      assert.match(done.data.model_url, /^http:\/\/127\.0\.0\.1:\d+\/downloads\/.+\/best\.pt\?exp=\d+&sig=/);
      assert.equal(await (await fetch(done.data.model_url)).text(), 'the weights');
      // The completed frame waits for its link (looked up where the file is); a change right
      // behind it still arrives after it.
      const row = (await server.deps.jobs.get(job.id))!;
      server.deps.events.emit({ job: row, change: 'completed' });
      server.deps.events.emit({ job: { ...row, state: 'running' }, change: 'progress' });
      const again = await es.nextData();
      assert.equal(again.event, 'completed');
      assert.match(again.data.model_url, /\/best\.pt\?exp=/);
      assert.equal((await es.nextData()).event, 'progress');
      es.close();
    } finally {
      await server.stop();
    }
  });
});

describe('SseClient', () => {
  test('queues up to its cap, then errors the stream instead of growing', () => {
    const closed: string[] = [];
    const client = new SseClient(1000, (_c, reason) => closed.push(reason));
    client.ready();
    const frame = (seq: number) => ({ seq, bytes: encodeFrame({ id: `a-${seq}`, event: 'progress', data: { pad: 'x'.repeat(200) } }) });
    for (let i = 1; i <= 4; i++) client.push(frame(i));
    assert.equal(client.isClosed, false);
    for (let i = 5; i <= 10; i++) client.push(frame(i));
    assert.equal(client.isClosed, true);
    assert.deepEqual(closed, ['slow']);
  });

  test('skips frames it already delivered (replay overlapping live)', async () => {
    const client = new SseClient(100_000, () => {});
    client.write({ seq: 5, bytes: encodeFrame({ id: 'a-5', data: 5 }) });
    client.push({ seq: 6, bytes: encodeFrame({ id: 'a-6', data: 6 }) });
    client.ready();
    client.push({ seq: 6, bytes: encodeFrame({ id: 'a-6', data: 6 }) });
    client.push({ seq: 7, bytes: encodeFrame({ id: 'a-7', data: 7 }) });
    client.close();
    let text = '';
    for await (const chunk of client.stream!) text += new TextDecoder().decode(chunk);
    assert.deepEqual([...text.matchAll(/^data: (\d+)$/gm)].map((m) => Number(m[1])), [5, 6, 7]);
  });
});
