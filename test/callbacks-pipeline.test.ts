/**
 * Callbacks from the real training pipeline (src/jobs/execute.ts), on a path that needs no
 * Python: a dataset URL answering 404 fails the job in its downloading phase.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { backends } from './helpers/database.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

const SECRET = `whsec_${Buffer.from('pipeline test secret, 32 bytes!!').toString('base64')}`;

for (const backend of backends()) {
  describe(`callbacks from the pipeline on ${backend}`, () => {
    let receiver: Receiver;
    let server: TestServer;
    before(async () => {
      receiver = await startReceiver((r) => (r.path === '/hook' ? { status: 200 } : { status: 404 }));
      server = await startTestServer({ backend, env: { DEVICES: 'cpu', LOG_LEVEL: 'warn', DOWNLOAD_RETRIES: '0' } });
    });
    after(async () => {
      await server?.stop();
      await receiver?.close();
    });

    test('a dataset that 404s: progress for the downloading phase, then training_failed', async () => {
      const call = api(server.url);
      const r = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({ dataset: { url: `${receiver.url}/missing.zip` }, callback_url: `${receiver.url}/hook`, callback_secret: SECRET }),
      });
      assert.equal(r.status, 202, r.text);
      const id = r.json.job_id;
      await receiver.waitFor((all) => all.some((x) => x.json?.type === 'training_failed'), 30_000);
      const got = receiver.received.filter((x) => x.path === '/hook');
      const wh = new Webhook(SECRET); // a whsec_ secret: the library's own format
      for (const g of got) wh.verify(g.body, g.headers);
      assert.equal(got[0]!.json.type, 'training_progress');
      assert.equal(got[0]!.json.progress.phase, 'downloading');
      const failed = got.at(-1)!.json;
      assert.equal(failed.job_id, id);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.error.code, 'DATASET_DOWNLOAD_FAILED');
      assert.equal(failed.error.phase, 'downloading');
      assert.equal(failed.error.details.status, 404);
      assert.equal(failed.partial_metrics, null);
      const job = await call(`/api/v1/jobs/${id}`);
      assert.equal(job.json.status, 'failed');
    });
  });
}
