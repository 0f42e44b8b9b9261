/**
 * The live streams: one channel per job (GET /stream/progress/{id}) and one for the dashboard
 * (GET /stream/dashboard), fed by the job event bus and the resource monitor.
 *
 * Event ids are `<boot>-<seq>`: seq is one counter for the whole hub, boot a random tag of this
 * process. A client that comes back with Last-Event-ID (the header EventSource sends, or
 * ?last_event_id= when the page's script reopens the stream itself) gets every frame of its
 * channel after that id from a bounded ring; when the id is from another process, older than
 * the ring, or from a channel that was evicted, it gets a fresh snapshot instead (for a job: its
 * state and every epoch from the database; for the dashboard: a `snapshot` event telling the
 * page to reload its live part). Either way nothing is missed.
 *
 * A new client is added to its channel before its snapshot is read, and the snapshot carries
 * the id current at that moment, so a change that commits meanwhile arrives after it (perhaps
 * twice, never zero times: payloads are states, applying one again is harmless).
 */
import crypto from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Database } from '../db/client.js';
import type { JobRow } from '../db/schema.js';
import { getJob, jobEpochRows } from '../jobs/queries.js';
import type { JobChangeEvent, JobEvents } from '../jobs/events.js';
import type { Logger } from '../core/logger.js';
import type { ResourceSample } from '../monitor/monitor.js';
import { resourcesView } from '../monitor/view.js';
import { dashboardJobData, jobStreamEvent, progressData, terminalData, type ModelUrl } from './payload.js';
import type { Engines } from '../engines/index.js';
import { jobMetrics } from '../jobs/metrics.js';
import { Channel, SSE_HEADERS, SseClient, encodeFrame, type CloseReason, type Frame } from './sse.js';

export interface JobSnapshot {
  job: JobRow;
  epochs: Array<{ epoch: number; metrics: Record<string, number | null>; epochSeconds: number | null }>;
}

export interface StreamHubOptions {
  events: JobEvents;
  /** Each job's engine declares which metrics its frames carry. */
  engines: Engines;
  /** The `completed` frame's model_url: a signed download link of the job's model, wherever it is kept. */
  modelUrl?: ModelUrl;
  monitor?: { onSample(l: (s: ResourceSample) => void): () => void; latest(): ResourceSample | null } | undefined;
  loadSnapshot(jobId: string): Promise<JobSnapshot | null>;
  logger: Logger;
  heartbeatMs: number;
  /** Bytes one client may have queued before it is cut off. */
  clientBufferBytes: number;
  /** Frames kept per channel for resumes. */
  ringSize?: number;
  /** A job channel with no client and no event for this long is dropped. */
  idleChannelMs?: number;
  /** Reconnection delay suggested to EventSource (the `retry:` field). */
  retryMs?: number;
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

export class StreamHub {
  readonly boot = crypto.randomBytes(4).toString('hex');
  private seq = 0;
  private readonly jobs = new Map<string, Channel>();
  private readonly dashboard: Channel;
  /** Any channel created from now on may have lost frames up to here (an older one was evicted). */
  private evictionFloor = 0;
  private readonly snapshots = new Map<string, { atSeq: number; frames: Promise<Frame[] | null> }>();
  private readonly cleanups: Array<() => void> = [];
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** The last change still waiting to be published (behind a completed frame's model link). */
  private pending: Promise<void> | null = null;
  private counters = { opened: 0, dropped_slow: 0, resumed: 0, snapshots: 0 };

  constructor(private readonly opts: StreamHubOptions) {
    this.dashboard = new Channel(opts.ringSize ?? 256, 0);
  }

  start(): void {
    this.cleanups.push(this.opts.events.on((e) => this.onJobChange(e)));
    if (this.opts.monitor) {
      this.cleanups.push(
        this.opts.monitor.onSample((s) => this.dashboard.publish({ seq: 0, bytes: encodeFrame({ event: 'resources', data: resourcesView(s) }) })),
      );
    }
    this.timers.push(setInterval(() => this.heartbeat(), this.opts.heartbeatMs));
    this.timers.push(setInterval(() => this.sweep(), Math.min(60_000, this.opts.idleChannelMs ?? 600_000)));
    for (const t of this.timers) t.unref();
  }

  /** The id a page rendered now should resume from. */
  currentId(): string {
    return `${this.boot}-${this.seq}`;
  }

  stats() {
    let clients = this.dashboard.clients.size;
    for (const ch of this.jobs.values()) clients += ch.clients.size;
    return { clients, job_channels: this.jobs.size, seq: this.seq, ...this.counters };
  }

  /** GET /stream/progress/{id}; null when there is no such job. */
  async openJob(jobId: string, lastEventId: string | undefined, res?: ServerResponse): Promise<Response | null> {
    if (this.closed) return new Response('shutting down', { status: 503 });
    const fresh = !this.jobs.has(jobId);
    const channel = this.channel(jobId);
    const client = this.newClient(channel, res);
    const atSeq = this.seq;
    const last = this.parseId(lastEventId);
    if (!fresh && last !== null) {
      const frames = channel.since(last);
      if (frames) {
        this.counters.resumed++;
        this.hello(client);
        client.lastSeq = last;
        for (const f of frames) client.write(f);
        client.ready();
        return this.response(client);
      }
    }
    let frames: Frame[] | null;
    try {
      frames = await this.snapshot(jobId, atSeq);
    } catch (err) {
      client.close('rejected');
      throw err;
    }
    if (!frames) {
      client.close('rejected');
      if (channel.clients.size === 0 && fresh) this.jobs.delete(jobId);
      return null;
    }
    this.counters.snapshots++;
    this.hello(client);
    for (const f of frames) client.write({ seq: 0, bytes: f.bytes });
    client.lastSeq = atSeq;
    client.ready();
    return this.response(client);
  }

  /** GET /stream/dashboard. */
  openDashboard(lastEventId: string | undefined, res?: ServerResponse): Response {
    if (this.closed) return new Response('shutting down', { status: 503 });
    const client = this.newClient(this.dashboard, res);
    this.hello(client);
    const last = this.parseId(lastEventId);
    const frames = last === null ? null : this.dashboard.since(last);
    if (frames) {
      this.counters.resumed++;
      client.lastSeq = last!;
      for (const f of frames) client.write(f);
    } else {
      // The page reloads its live part: counts, active and queued jobs, as of now.
      client.write({ seq: 0, bytes: encodeFrame({ id: this.currentId(), event: 'snapshot', data: { timestamp: new Date().toISOString() } }) });
      client.lastSeq = this.seq;
    }
    const sample = this.opts.monitor?.latest();
    if (sample) client.write({ seq: 0, bytes: encodeFrame({ event: 'resources', data: resourcesView(sample) }) });
    client.ready();
    return this.response(client);
  }

  /**
   * Ends every open stream as a dropped connection would, without stopping the hub: clients
   * reconnect and resume from their last id. (The drill for the reconnect path.)
   */
  disconnectAll(): number {
    let n = 0;
    for (const ch of [this.dashboard, ...this.jobs.values()]) {
      for (const client of [...ch.clients]) {
        client.close('shutdown');
        n++;
      }
    }
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const c of this.cleanups.splice(0)) c();
    for (const ch of [this.dashboard, ...this.jobs.values()]) for (const client of [...ch.clients]) client.close('shutdown');
  }

  /**
   * A completed frame waits for its model link (the file may have to be looked up in remote
   * storage); the frames after it wait behind it, so every channel keeps the order of the events.
   */
  private onJobChange(e: JobChangeEvent): void {
    if (this.closed) return;
    const link = e.change === 'completed' && this.opts.modelUrl ? this.modelLink(e.job) : null;
    if (!link && !this.pending) return this.publishChange(e, null);
    const before = this.pending ?? Promise.resolve();
    const mine: Promise<void> = before
      .then(async () => this.publishChange(e, await link))
      .catch((err: unknown) => this.opts.logger.error({ err, job_id: e.job.id, change: e.change }, 'a stream frame could not be published'))
      .finally(() => {
        if (this.pending === mine) this.pending = null;
      });
    this.pending = mine;
  }

  /** The model link, or null when it cannot be had (logged: a frame without it beats no frame). */
  private async modelLink(job: JobRow): Promise<string | null> {
    try {
      return (await this.opts.modelUrl?.(job)) ?? null;
    } catch (err) {
      this.opts.logger.warn({ err, job_id: job.id }, 'the model link of a completed job could not be made');
      return null;
    }
  }

  private publishChange(e: JobChangeEvent, modelUrl: string | null): void {
    if (this.closed) return;
    const channel = this.channel(e.job.id);
    this.snapshots.delete(e.job.id);
    const spec = jobMetrics(this.opts.engines, e.job);
    const { event, data } = jobStreamEvent(spec, e, modelUrl);
    const seq = ++this.seq;
    channel.publish({ seq, bytes: encodeFrame({ id: `${this.boot}-${seq}`, event, data }) });
    const dseq = ++this.seq;
    this.dashboard.publish({ seq: dseq, bytes: encodeFrame({ id: `${this.boot}-${dseq}`, event: 'job', data: dashboardJobData(spec, e.job, e.change) }) });
  }

  /** A job's state now, and every epoch: shared by the clients that connect before the next change. */
  private snapshot(jobId: string, atSeq: number): Promise<Frame[] | null> {
    const cached = this.snapshots.get(jobId);
    if (cached && cached.atSeq === atSeq) return cached.frames;
    const id = `${this.boot}-${atSeq}`;
    const frames = this.opts.loadSnapshot(jobId).then(async (snap) => {
      if (!snap) return null;
      const { job, epochs } = snap;
      const out: Frame[] = [
        {
          seq: 0,
          bytes: encodeFrame({
            id,
            event: 'progress',
            data: {
              ...progressData(jobMetrics(this.opts.engines, job), job, 'snapshot'),
              snapshot: true,
              epochs: epochs.map((e) => ({ epoch: e.epoch, metrics: e.metrics, epoch_seconds: e.epochSeconds })),
            },
          }),
        },
      ];
      if (TERMINAL.has(job.state)) {
        const modelUrl = job.state === 'completed' ? await this.modelLink(job) : null;
        out.push({ seq: 0, bytes: encodeFrame({ id, event: job.state, data: terminalData(jobMetrics(this.opts.engines, job), job, modelUrl) }) });
      }
      return out;
    });
    frames.catch(() => this.snapshots.delete(jobId));
    this.snapshots.set(jobId, { atSeq, frames });
    if (this.snapshots.size > 1000) this.snapshots.delete(this.snapshots.keys().next().value!);
    return frames;
  }

  private channel(jobId: string): Channel {
    let ch = this.jobs.get(jobId);
    if (!ch) {
      ch = new Channel(this.opts.ringSize ?? 256, this.evictionFloor);
      this.jobs.set(jobId, ch);
    }
    return ch;
  }

  private newClient(channel: Channel, res?: ServerResponse): SseClient {
    this.counters.opened++;
    const client = new SseClient(this.opts.clientBufferBytes, (c, reason: CloseReason) => {
      channel.clients.delete(c);
      channel.lastActivity = Date.now();
      if (reason === 'slow') {
        this.counters.dropped_slow++;
        this.opts.logger.warn({ buffer_cap_bytes: this.opts.clientBufferBytes }, 'SSE client too slow; disconnected');
      }
    }, res);
    channel.clients.add(client);
    return client;
  }

  /** The first bytes of a stream: the reconnection delay EventSource should use. */
  private hello(client: SseClient): void {
    client.write({ seq: 0, bytes: encodeFrame({ retryMs: this.opts.retryMs ?? 2000, comment: 'trainhook stream' }) });
  }

  private parseId(id: string | undefined): number | null {
    const m = /^([0-9a-f]+)-(\d+)$/.exec(id?.trim() ?? '');
    if (!m || m[1] !== this.boot) return null;
    const seq = Number(m[2]);
    return Number.isSafeInteger(seq) && seq <= this.seq ? seq : null;
  }

  /** The body, or (Node) a marker that the response is being written directly. */
  private response(client: SseClient): Response {
    // The very object @hono/node-server checks for: a copy would be answered with its own head.
    if (!client.stream) return RESPONSE_ALREADY_SENT;
    return new Response(client.stream, { status: 200, headers: SSE_HEADERS });
  }

  private heartbeat(): void {
    const bytes = encodeFrame({ event: 'heartbeat', data: { timestamp: new Date().toISOString() } });
    for (const ch of [this.dashboard, ...this.jobs.values()]) {
      for (const client of ch.clients) client.push({ seq: 0, bytes });
    }
  }

  private sweep(): void {
    const idleMs = this.opts.idleChannelMs ?? 600_000;
    const now = Date.now();
    for (const [id, ch] of this.jobs) {
      if (ch.clients.size === 0 && now - ch.lastActivity > idleMs) {
        this.jobs.delete(id);
        this.snapshots.delete(id);
        this.evictionFloor = this.seq;
      }
    }
  }
}

/** Reads a job's snapshot from the database. */
export function snapshotFromDatabase(database: Database): (jobId: string) => Promise<JobSnapshot | null> {
  return async (jobId) => {
    const job = await getJob(database.db, jobId);
    if (!job) return null;
    return { job, epochs: await jobEpochRows(database.db, jobId) };
  };
}
