/**
 * Restart drill (issue 2): a server is SIGKILLed with one job running and others queued, and
 * started again on the same database. Every job must still be there, in submission order, and
 * none left "running" with no process behind it: the interrupted job is taken back at once
 * (same node id) and started again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { backends } from './helpers/database.js';
import { hang, startFileServer, type FileServer } from './helpers/file-server.js';
import { waitFor } from './helpers/wait.js';
import { TOKEN, api, backendEnv, startChildServer, tempDir, trainBody, type ChildServer } from './helpers/server.js';

for (const backend of backends()) {
  describe(`restart after SIGKILL on ${backend}`, () => {
    let host: FileServer;
    let env: Record<string, string>;
    let drop: () => Promise<void>;
    let server: ChildServer | undefined;

    before(async () => {
      host = await startFileServer();
      const db = await backendEnv(backend);
      drop = db.drop;
      env = {
        ...db.env,
        WORKDIR: tempDir(),
        API_TOKEN: TOKEN,
        DEVICES: 'cpu',
        OUTBOUND_ALLOW: '127.0.0.1',
        DOWNLOAD_TIMEOUT_SECONDS: '600',
      };
    });
    after(async () => {
      await server?.kill();
      await host.close();
      await drop();
    });

    test('every job survives, in order, and the running one is taken back', async () => {
      server = await startChildServer(env);
      let call = api(server.url);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        // A dataset host that never answers: the job that starts stays "downloading".
        host.route(`/job${i}.zip`, hang);
        const r = await call('/api/v1/train', {
          method: 'POST',
          json: trainBody({ dataset: { url: host.url(`/job${i}.zip`) }, model_config: { name: `job-${i}`, epochs: 3 } }),
        });
        assert.equal(r.status, 202, r.text);
        ids.push(r.json.job_id);
      }
      const first = await waitFor('the first job to start downloading', async () => {
        const j = await call(`/api/v1/jobs/${ids[0]}`);
        return j.json.status === 'training' && j.json.phase === 'downloading' && host.hits('/job0.zip') === 1 && j.json;
      });
      assert.equal(first.device, 'cpu');

      await server.kill('SIGKILL');
      server = await startChildServer(env);
      call = api(server.url);

      // The interrupted job is claimed again by the new process: a second download request.
      await waitFor('the interrupted job to restart', async () => host.hits('/job0.zip') === 2);
      const list = await call('/api/v1/jobs?limit=50');
      assert.equal(list.json.total, 5);
      // Newest first in the listing: reversed, it is the submission order.
      assert.deepEqual(list.json.jobs.map((j: { job_id: string }) => j.job_id).reverse(), ids);
      const restarted = await call(`/api/v1/jobs/${ids[0]}`);
      assert.equal(restarted.json.status, 'training');
      assert.equal(restarted.json.phase, 'downloading');
      // The attempt the SIGKILL cut short is recorded as interrupted: no failure, nothing to retry.
      assert.deepEqual(
        restarted.json.attempts.map((a: { attempt: number; outcome: string | null }) => [a.attempt, a.outcome]),
        [
          [1, 'interrupted'],
          [2, null],
        ],
      );
      for (let i = 1; i < 5; i++) {
        const j = await call(`/api/v1/jobs/${ids[i]}`);
        assert.equal(j.json.status, 'queued');
        assert.equal(j.json.queue_position, i, `job ${i} keeps its place in line`);
      }
      for (let i = 1; i < 5; i++) assert.equal(host.hits(`/job${i}.zip`), 0, 'queued jobs never started');
      assert.ok(
        server.output.some((l) => l.includes('re-queued after restart') && l.includes(ids[0]!)),
        'the takeover is logged with the job id',
      );
    });
  });
}
