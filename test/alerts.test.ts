/**
 * Alerts end to end: a real server whose conditions are made cheap by configuration (a queue
 * longer than 1 job, a disk over 1 %, a callback endpoint failing for 2 seconds, a job that
 * records nothing for 1 second), a real webhook receiver that verifies the Standard Webhooks
 * signature, and a real SMTP server. Each condition fires once when it starts and resolves
 * once when it ends, however many samples are taken in between.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { SystemMonitor } from '../src/monitor/monitor.js';
import type { PipelineContext } from '../src/pipeline/execute.js';
import type { Executor } from '../src/scheduler/scheduler.js';
import { backends } from './helpers/database.js';
import { startReceiver, type Receiver, type Received } from './helpers/receiver.js';
import { api, startTestServer, trainBody, type TestServer } from './helpers/server.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';
import { waitFor } from './helpers/wait.js';
import { checkAlertConfig } from '../src/alerts/index.js';
import { AlertDelivery } from '../src/alerts/delivery.js';
import { createEmailSender } from '../src/alerts/email.js';
import { alertEvent } from '../src/alerts/event.js';
import { postAlert } from '../src/alerts/webhook.js';
import { ConfigError, loadConfig } from '../src/core/config.js';
import { createLoggers } from '../src/core/logger.js';
import { createOutboundDispatcher } from '../src/net/outbound.js';

const ALERT_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwQv0ncKBH3Vc=';
const CALLBACK_SECRET = 'sk_live_abc123xyz789_0123456';
const LOGIN = { user: 'alerts@example.com', pass: 'p@ss word' };

const alertsOf = (r: Receiver, condition: string, type: string) =>
  r.received.filter((x) => x.path === '/alerts' && x.json?.condition === condition && x.json?.type === type);

/** Resolves after the server's monitor has taken `n` more samples (each one a look for alerts). */
function samples(server: TestServer, n: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    // The server's monitor; its dependents see only part of it.
    const off = (server.deps.monitor as SystemMonitor).onSample(() => {
      if (++seen >= n) {
        off();
        resolve();
      }
    });
  });
}

function verified(r: Received): Record<string, unknown> {
  return new Webhook(ALERT_SECRET).verify(r.body, r.headers) as Record<string, unknown>;
}

for (const backend of backends()) {
  describe(`alerts on ${backend}`, () => {
    let receiver: Receiver;
    let smtp: SmtpSink;
    let server: TestServer;
    let failCallbacks = true;

    before(async () => {
      receiver = await startReceiver((r) => (r.path === '/cb' && failCallbacks ? { status: 500 } : { status: 200 }));
      smtp = await startSmtpSink(LOGIN);
      server = await startTestServer({
        backend,
        env: {
          RUN_JOBS: 'false',
          MONITOR_INTERVAL_SECONDS: '1',
          ALERT_WEBHOOK_URL: `${receiver.url}/alerts`,
          ALERT_WEBHOOK_SECRET: ALERT_SECRET,
          SMTP_URL: `smtp://${encodeURIComponent(LOGIN.user)}:${encodeURIComponent(LOGIN.pass)}@127.0.0.1:${smtp.port}`,
          ALERT_EMAIL_FROM: 'trainhook <noreply@example.com>',
          ALERT_QUEUE_LENGTH: '1',
          ALERT_DISK_PERCENT: '1',
          ALERT_CALLBACK_FAILING_HOURS: String(2 / 3600),
          CALLBACK_RETRY_SCHEDULE: Array(60).fill('0.5').join(','),
        },
      });
    });
    after(async () => {
      await server?.stop();
      await receiver?.close();
      await smtp?.close();
    });

    test('queue, disk and a failing callback endpoint: fired once, resolved once, signed, by webhook and email', async () => {
      const call = api(server.url);
      // The disk is over 1 % from the first sample on.
      await receiver.waitFor((all) => alertsOf(receiver, 'disk_usage', 'alert.fired').length > 0, 20_000, 'disk alert');

      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const body = i === 0 ? trainBody({ callback_url: `${receiver.url}/cb`, callback_secret: CALLBACK_SECRET }) : trainBody();
        const res = await call('/api/v1/train', { method: 'POST', json: body });
        assert.equal(res.status, 202, res.text);
        ids.push(res.json.job_id);
      }
      await receiver.waitFor(() => alertsOf(receiver, 'queue_length', 'alert.fired').length > 0, 20_000, 'queue alert');

      // Cancelling the job with a callback writes its training_failed event, which /cb refuses.
      assert.equal((await call(`/api/v1/jobs/${ids[0]}`, { method: 'DELETE' })).status, 200);
      await receiver.waitFor(() => alertsOf(receiver, 'callback_failing', 'alert.fired').length > 0, 30_000, 'callback alert');
      assert.ok(receiver.count('/cb') >= 2, 'the endpoint was tried more than once before the alert');

      // Still 2 queued (over 1): several more looks fire nothing again.
      await samples(server, 3);
      assert.equal(alertsOf(receiver, 'queue_length', 'alert.fired').length, 1);
      assert.equal(alertsOf(receiver, 'queue_length', 'alert.resolved').length, 0);

      // One job left queued: the queue alert resolves.
      assert.equal((await call(`/api/v1/jobs/${ids[1]}`, { method: 'DELETE' })).status, 200);
      await receiver.waitFor(() => alertsOf(receiver, 'queue_length', 'alert.resolved').length > 0, 20_000, 'queue resolved');

      // The endpoint answers again: its waiting event is delivered and the alert resolves.
      failCallbacks = false;
      await receiver.waitFor(() => alertsOf(receiver, 'callback_failing', 'alert.resolved').length > 0, 30_000, 'callback resolved');
      await samples(server, 3);
      await server.deps.monitor.sampleNow();

      for (const condition of ['queue_length', 'callback_failing']) {
        assert.equal(alertsOf(receiver, condition, 'alert.fired').length, 1, `${condition} fired once`);
        assert.equal(alertsOf(receiver, condition, 'alert.resolved').length, 1, `${condition} resolved once`);
      }
      assert.equal(alertsOf(receiver, 'disk_usage', 'alert.fired').length, 1, 'disk fired once');
      assert.equal(alertsOf(receiver, 'disk_usage', 'alert.resolved').length, 0, 'disk still over 1 %');

      // Every alert is signed with ALERT_WEBHOOK_SECRET, and its body says what happened.
      const queueFired = alertsOf(receiver, 'queue_length', 'alert.fired')[0]!;
      const body = verified(queueFired);
      assert.equal(body['type'], 'alert.fired');
      assert.equal(body['severity'], 'warning');
      assert.ok(body['value'] === 2 || body['value'] === 3, `queue length at the first look: ${body['value']}`);
      assert.equal(body['threshold'], 1);
      assert.equal(typeof body['node'], 'string');
      assert.ok(!Number.isNaN(Date.parse(String(body['time']))));
      assert.match(String(body['text']), /FIRING.*queue_length.*[23] jobs queued, more than 1/);
      assert.equal(queueFired.headers['webhook-id'], body['id']);
      const resolved = verified(alertsOf(receiver, 'queue_length', 'alert.resolved')[0]!);
      assert.equal(resolved['value'], 2, 'the last value seen while it held');
      assert.match(String(resolved['text']), /RESOLVED.*queue_length/);
      const callbackFired = verified(alertsOf(receiver, 'callback_failing', 'alert.fired')[0]!);
      assert.equal(callbackFired['subject'], `${receiver.url}/cb`);
      assert.ok(Number(callbackFired['value']) >= Number(callbackFired['threshold']));
      assert.throws(() => new Webhook('whsec_' + Buffer.alloc(32, 7).toString('base64')).verify(queueFired.body, queueFired.headers));
      for (const r of receiver.received.filter((x) => x.path === '/alerts')) verified(r);

      // The same events by email, through the SMTP login of SMTP_URL.
      const alertCount = receiver.received.filter((x) => x.path === '/alerts').length;
      await waitFor('every alert by email', async () => smtp.mails.length >= alertCount, 20_000);
      assert.equal(smtp.mails.length, alertCount);
      for (const m of smtp.mails) {
        assert.equal(m.user, LOGIN.user);
        assert.deepEqual(m.to, [LOGIN.user]);
        assert.equal(m.from, 'noreply@example.com');
      }
      const subjects = smtp.mails.map((m) => m.subject);
      assert.equal(subjects.filter((s) => /^\[trainhook\] FIRING warning: queue_length on /.test(s)).length, 1, subjects.join('\n'));
      assert.equal(subjects.filter((s) => /^\[trainhook\] RESOLVED: queue_length on /.test(s)).length, 1, subjects.join('\n'));
      assert.equal(subjects.filter((s) => /FIRING .*disk_usage/.test(s)).length, 1, subjects.join('\n'));
      assert.match(smtp.mails.find((m) => /RESOLVED: callback_failing/.test(m.subject))!.raw, /callback_failing/);
    });
  });
}

/** Starts each job, records one step, then records nothing until the test lets it finish. */
function quietTraining(release: Promise<void>) {
  return (ctx: PipelineContext): Executor =>
    async function executeQuietly(claimed, { signal }) {
      if (!(await ctx.store.start(claimed.id))) return;
      if (!(await ctx.store.record(claimed.id, { phase: 'training', progress: 42 }, 'progress'))) return;
      await Promise.race([release, new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
      if (signal.aborted) return;
      await ctx.store.finish(claimed.id, 'completed', { progress: 100 });
    };
}

describe('alerts for running jobs', () => {
  let receiver: Receiver;
  let server: TestServer;
  let finish!: () => void;
  const release = new Promise<void>((resolve) => (finish = resolve));

  before(async () => {
    receiver = await startReceiver();
    server = await startTestServer({
      env: {
        DEVICES: 'cpu',
        MONITOR_INTERVAL_SECONDS: '1',
        ALERT_WEBHOOK_URL: `${receiver.url}/alerts`,
        ALERT_WEBHOOK_SECRET: ALERT_SECRET,
        ALERT_DISK_PERCENT: '100',
        ALERT_STALL_SECONDS: '1',
        ALERT_JOB_HOURS: String(1 / 3600),
      },
      overrides: { makeExecutor: quietTraining(release) },
    });
  });
  after(async () => {
    finish();
    await server?.stop();
    await receiver?.close();
  });

  test('a job that records nothing and runs too long: stalled and too long once each, resolved when it ends; per-job gauges while it runs', async () => {
    const call = api(server.url);
    const res = await call('/api/v1/train', { method: 'POST', json: trainBody() });
    assert.equal(res.status, 202, res.text);
    const jobId: string = res.json.job_id;
    await receiver.waitFor(
      () => alertsOf(receiver, 'worker_stalled', 'alert.fired').length > 0 && alertsOf(receiver, 'job_duration', 'alert.fired').length > 0,
      30_000,
      'stall and duration alerts',
    );
    const stalled = verified(alertsOf(receiver, 'worker_stalled', 'alert.fired')[0]!);
    assert.equal(stalled['job_id'], jobId);
    assert.equal(stalled['severity'], 'critical');
    assert.ok(Number(stalled['value']) >= 1);
    assert.equal(verified(alertsOf(receiver, 'job_duration', 'alert.fired')[0]!)['job_id'], jobId);

    const metrics = (await call('/metrics')).text;
    assert.match(metrics, new RegExp(`training_job_progress\\{job_id="${jobId}",name="test-model",engine="ultralytics",task="detect"\\} 42\\b`));
    assert.match(metrics, new RegExp(`training_job_started_timestamp_seconds\\{job_id="${jobId}"\\} \\d`));
    assert.match(metrics, new RegExp(`training_job_last_progress_timestamp_seconds\\{job_id="${jobId}"\\} \\d`));
    for (const name of ['host_cpu_cores', 'host_memory_total_bytes', 'host_memory_used_bytes']) assert.match(metrics, new RegExp(`^${name} \\d`, 'm'));
    assert.match(metrics, /^host_disk_used_bytes\{path="[^"]+"\} \d/m);

    await samples(server, 3);
    finish();
    await receiver.waitFor(
      () => alertsOf(receiver, 'worker_stalled', 'alert.resolved').length > 0 && alertsOf(receiver, 'job_duration', 'alert.resolved').length > 0,
      30_000,
      'resolved alerts',
    );
    await samples(server, 2);
    for (const condition of ['worker_stalled', 'job_duration']) {
      assert.equal(alertsOf(receiver, condition, 'alert.fired').length, 1, `${condition} fired once`);
      assert.equal(alertsOf(receiver, condition, 'alert.resolved').length, 1, `${condition} resolved once`);
    }
    assert.equal((await call(`/api/v1/jobs/${jobId}`)).json.status, 'completed');
    // The job ended: its series are gone.
    assert.doesNotMatch((await call('/metrics')).text, new RegExp(`job_id="${jobId}"`));
  });
});

describe('alert delivery', () => {
  const { logger } = createLoggers('silent');
  const event = () =>
    alertEvent(
      {
        type: 'alert.fired',
        condition: { key: 'queue_length|queue', condition: 'queue_length', severity: 'warning', subject: 'queue', value: 3, threshold: 1, unit: 'jobs', summary: '3 jobs queued, more than 1' },
        since: new Date(),
        at: new Date(),
      },
      'node-a',
    );

  test('retried with the same id and body until the receiver takes it; a 4xx is not retried', async () => {
    const receiver = await startReceiver((r, nth) => (r.path === '/flaky' && nth <= 2 ? { status: 503 } : r.path === '/refuses' ? { status: 400 } : { status: 200 }));
    const dispatcher = createOutboundDispatcher(['127.0.0.1']);
    const key = Buffer.from(ALERT_SECRET.slice('whsec_'.length), 'base64');
    const channel = (path: string) => ({
      name: path,
      send: (e: ReturnType<typeof event>, signal: AbortSignal) =>
        postAlert({ url: `${receiver.url}${path}`, key, dispatcher, userAgent: 'test', timeoutMs: 5000 }, e, signal),
    });
    try {
      const delivery = new AlertDelivery({ channels: [channel('/flaky'), channel('/refuses')], logger, retryDelaysMs: [10, 10, 10] });
      const e = event();
      delivery.enqueue(e);
      await delivery.idle();
      const flaky = receiver.received.filter((r) => r.path === '/flaky');
      assert.deepEqual(flaky.map((r) => r.status), [503, 503, 200]);
      assert.ok(flaky.every((r) => r.headers['webhook-id'] === e.id && r.body === flaky[0]!.body));
      for (const r of flaky) verified(r);
      assert.equal(receiver.count('/refuses'), 1, 'a 400 is final');
    } finally {
      await dispatcher.destroy();
      await receiver.close();
    }
  });

  test('the SMTP connection goes through the SSRF guard: a loopback server not in OUTBOUND_ALLOW gets nothing', async () => {
    const smtp = await startSmtpSink(LOGIN);
    try {
      const target = { smtpUrl: `smtp://${encodeURIComponent(LOGIN.user)}:${encodeURIComponent(LOGIN.pass)}@127.0.0.1:${smtp.port}`, to: [LOGIN.user], from: undefined, timeoutMs: 5000 };
      const refused = createEmailSender({ ...target, outboundAllow: [] });
      await assert.rejects(refused.send(event()), (err: Error & { permanent?: boolean }) => /SSRF_BLOCKED.*127\.0\.0\.1/.test(err.message) && err.permanent === true);
      refused.close();
      assert.equal(smtp.mails.length, 0);
      const allowed = createEmailSender({ ...target, outboundAllow: ['127.0.0.1'] });
      await allowed.send(event());
      allowed.close();
      assert.equal(smtp.mails.length, 1);
      assert.match(smtp.mails[0]!.subject, /FIRING warning: queue_length on node-a/);
    } finally {
      await smtp.close();
    }
  });

  test('a webhook the SSRF guard refuses, or a secret that cannot sign, stops the start with the key named', () => {
    const check = (env: Record<string, string>) => () => checkAlertConfig(loadConfig({ WORKDIR: '/tmp', ...env }));
    assert.throws(check({ ALERT_WEBHOOK_URL: 'http://127.0.0.1:9/alerts' }), (e: Error) => e instanceof ConfigError && /ALERT_WEBHOOK_URL: refused to connect to 127\.0\.0\.1/.test(e.message));
    assert.throws(check({ ALERT_WEBHOOK_URL: 'https://alerts.example.com/x', ALERT_WEBHOOK_SECRET: 'whsec_' }), (e: Error) => e instanceof ConfigError && /ALERT_WEBHOOK_SECRET/.test(e.message));
    assert.throws(() => loadConfig({ SMTP_URL: 'smtp://relay:25' }), (e: Error) => e instanceof ConfigError && /ALERT_EMAIL_TO: required/.test(e.message));
    assert.doesNotThrow(check({ ALERT_WEBHOOK_URL: 'http://127.0.0.1:9/alerts', OUTBOUND_ALLOW: '127.0.0.1', ALERT_WEBHOOK_SECRET: ALERT_SECRET }));
  });
});
