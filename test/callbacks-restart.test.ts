/**
 * The outbox survives a crash: a server SIGKILLed with callbacks waiting (and one in flight)
 * delivers all of them after it starts again, with the same webhook-ids. The server runs as a
 * child process exactly as `npm start` runs it.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { backends } from './helpers/database.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { TOKEN, api, backendEnv, startChildServer, tempDir, trainBody, type ChildServer } from './helpers/server.js';

const SECRET = 'restart-drill-secret-0123456789';

for (const backend of backends()) {
  describe(`callbacks across a SIGKILL on ${backend}`, () => {
    const cleanup: Array<() => Promise<void>> = [];
    after(async () => {
      for (const c of cleanup.reverse()) await c().catch(() => {});
    });

    test('undelivered and in-flight callbacks are delivered after the restart', async () => {
      let mode: 'hang' | 'ok' = 'hang';
      const receiver: Receiver = await startReceiver(() => (mode === 'hang' ? 'hang' : { status: 200 }));
      cleanup.push(() => receiver.close());
      const db = await backendEnv(backend);
      cleanup.push(db.drop);
      const env = {
        WORKDIR: tempDir('trainhook-restart-'),
        API_TOKEN: TOKEN,
        RUN_JOBS: 'false',
        OUTBOUND_ALLOW: '127.0.0.1',
        NODE_ID: 'restart-drill-node',
        // One attempt at a time: the first callback hangs in flight, the others wait behind it.
        CALLBACK_CONCURRENCY: '1',
        CALLBACK_TIMEOUT_SECONDS: '60',
        ...db.env,
      };

      let child: ChildServer = await startChildServer(env);
      cleanup.push(() => child.kill());
      const call = api(child.url);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await call('/api/v1/train', {
          method: 'POST',
          json: trainBody({ callback_url: `${receiver.url}/hook`, callback_secret: SECRET }),
        });
        assert.equal(r.status, 202, r.text);
        ids.push(r.json.job_id);
        assert.equal((await call(`/api/v1/jobs/${r.json.job_id}`, { method: 'DELETE' })).status, 200);
      }
      await receiver.waitFor((all) => all.length >= 1, 10_000, 'the first (hanging) attempt');
      const inFlight = receiver.received[0]!.headers['webhook-id'];
      const before = await call(`/api/v1/jobs/${ids[2]}/callbacks`);
      assert.equal(before.json.events[0].state, 'pending');
      assert.equal(before.json.events[0].attempts, 0);

      await child.kill('SIGKILL');
      mode = 'ok';
      child = await startChildServer(env);
      const restarted = api(child.url);

      await receiver.waitFor(
        (all) => ids.every((id) => all.some((r) => r.headers['x-job-id'] === id && r.status === 200)),
        20_000,
        'every cancellation after the restart',
      );
      const delivered = receiver.received.filter((r) => r.status === 200);
      assert.equal(delivered.length, 3, 'each event once after the restart');
      assert.ok(delivered.some((r) => r.headers['webhook-id'] === inFlight), 'the in-flight one again, same id');
      const verifier = new Webhook(new TextEncoder().encode(SECRET), { format: 'raw' });
      for (const r of delivered) {
        const body = verifier.verify(r.body, r.headers) as { type: string; error: { code: string } };
        assert.equal(body.type, 'training_failed');
        assert.equal(body.error.code, 'CANCELLED');
      }
      for (const id of ids) {
        const list = await restarted(`/api/v1/jobs/${id}/callbacks`);
        assert.equal(list.json.events.length, 1);
        assert.equal(list.json.events[0].state, 'delivered');
      }
      await child.kill('SIGTERM');
    });
  });
}
