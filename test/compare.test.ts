/**
 * Experiments compared (GET /api/v1/jobs/compare and the /jobs/compare page) on PGlite and
 * PostgreSQL: only the arguments that differ, the final metrics, the best job by its engine's
 * declared best metric and direction (the lowest val_loss for transformers, the highest mAP50-95
 * for detection), and the sentence that says why.
 *
 * Jobs move through the job store the executor uses (test/helpers/job-driver.ts), with the
 * metrics a run would record; the recommendation's wording is also checked on its own
 * (jobs/compare.ts `recommend`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { shortNumber } from '../src/jobs/compare.js';
import { backends } from './helpers/database.js';
import { jobDriver } from './helpers/job-driver.js';
import { TOKEN, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

test('numbers in the sentence read as a person writes them', () => {
  assert.equal(shortNumber(0.0002), '2e-4');
  assert.equal(shortNumber(0.00005), '5e-5');
  assert.equal(shortNumber(1.23456), '1.235');
  assert.equal(shortNumber(12), '12');
  assert.equal(shortNumber(true), 'true');
  assert.equal(shortNumber('lora'), '"lora"');
});

for (const backend of backends()) {
  describe(`jobs compared on ${backend}`, () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    let drive: ReturnType<typeof jobDriver>;

    before(async () => {
      server = await startTestServer({ backend, env: { RUN_JOBS: 'false', LOG_LEVEL: 'warn', TRAIN_RATE_LIMIT_PER_MINUTE: '1000' } });
      call = api(server.url);
      drive = jobDriver(server, 'compare-node');
    });
    after(() => server?.stop());

    /** A job submitted, claimed and finished with its epochs' metrics (the best one kept as the store keeps it). */
    async function ran(modelConfig: Record<string, unknown>, epochs: Record<string, number>[], bestEpoch: number): Promise<string> {
      const r = await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: modelConfig }) });
      assert.equal(r.status, 202, r.text);
      const id = r.json.job_id as string;
      const started = await drive.start();
      assert.equal(started.id, id);
      for (const [i, metrics] of epochs.entries()) {
        await drive.record(id, { phase: 'training', currentEpoch: i + 1, totalEpochs: epochs.length, metricsCurrent: metrics }, 'epoch', {
          epoch: i + 1,
          metrics,
          epochSeconds: 1,
        });
      }
      await drive.finish(id, 'completed', { progress: 100, phase: 'done', metricsBest: { epoch: bestEpoch, ...epochs[bestEpoch - 1]! } });
      return id;
    }

    const lm = (name: string, learningRate: number, extra: Record<string, unknown> = {}) => ({
      framework: 'transformers',
      task: 'causal-lm',
      base_model: 'tiny-llama',
      name,
      epochs: 2,
      learning_rate: learningRate,
      ...extra,
    });
    const losses = (val: number[]) => val.map((v, i) => ({ train_loss: v + 0.1, val_loss: v, val_token_accuracy: 0.5 + i / 10, learning_rate: 1e-4 }));

    test('transformers: the lowest val_loss wins, and the sentence names the argument that differs most', async () => {
      const slow = await ran(lm('lr-5e-5', 5e-5), losses([2.0, 1.5]), 2);
      // Its best epoch (1.23) is what its model holds, though the last epoch rose again.
      const fast = await ran(lm('lr-2e-4', 2e-4, { lora_dropout: 0.1 }), losses([1.23, 1.4]), 1);
      const r = await call(`/api/v1/jobs/compare?ids=${slow},${fast}`);
      assert.equal(r.status, 200, r.text);
      // Only what differs is under differences; the rest is under same.
      assert.deepEqual(Object.keys(r.json.config.differences).sort(), ['learning_rate', 'lora_dropout']);
      assert.deepEqual(r.json.config.differences.learning_rate, { [slow]: 5e-5, [fast]: 2e-4 });
      assert.deepEqual(r.json.config.differences.lora_dropout, { [slow]: 0.05, [fast]: 0.1 });
      assert.equal(r.json.config.same.method, 'lora');
      assert.equal(r.json.config.same.lora_r, 8);
      assert.equal(r.json.config.same.framework, 'transformers');
      assert.equal('learning_rate' in r.json.config.same, false);
      // Final metrics: the last epoch's values; best: the best epoch's.
      assert.deepEqual(r.json.metrics.final.val_loss, { [slow]: 1.5, [fast]: 1.4 });
      assert.deepEqual(r.json.metrics.best.val_loss, { [slow]: 1.5, [fast]: 1.23 });
      assert.equal(r.json.metrics.leader.val_loss, fast);
      assert.equal(r.json.jobs[1].base_model, 'tiny-llama');

      const rec = r.json.recommendation;
      assert.equal(rec.metric, 'val_loss');
      assert.equal(rec.goal, 'min');
      assert.equal(rec.best_job_id, fast);
      assert.equal(rec.best_value, 1.23);
      assert.equal(rec.runner_up_job_id, slow);
      assert.equal(rec.runner_up_value, 1.5);
      assert.ok(Math.abs(rec.relative_difference - 0.18) < 1e-9, String(rec.relative_difference));
      // learning_rate changed 4×, lora_dropout 2×: the learning rate is the main difference.
      assert.deepEqual(rec.main_difference, { key: 'learning_rate', best: 2e-4, runner_up: 5e-5 });
      assert.equal(rec.text, 'Job lr-2e-4 has the lowest val_loss (1.23, 18% below lr-5e-5); its learning_rate 2e-4 vs 5e-5 is the main difference.');

      // The status page says the same, with the differing arguments and the final metrics.
      const cookie = await login(server);
      const page = await fetch(`${server.url}/jobs/compare?ids=${slow}&ids=${fast}`, { headers: { cookie } });
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.ok(html.includes(rec.text.replace(/'/g, '&#39;')) || html.includes(rec.text), 'the recommendation on the page');
      assert.match(html, /<tr data-key="learning_rate"><th scope="row"><code>learning_rate<\/code><\/th><td>0\.000050<\/td><td>0\.000200<\/td><\/tr>/);
      assert.doesNotMatch(html, /<tr data-key="lora_r">/, 'an argument that is the same is not in the table of differences');
      assert.match(html, /<tr data-key="val_loss"><th scope="row"><code>val_loss<\/code><\/th><td>1\.5000<\/td><td>1\.4000 ★<\/td><\/tr>/);
      assert.match(html, new RegExp(`<a href="/jobs/${fast}">lr-2e-4</a> <strong>★ best</strong>`));
      // Comma-separated ids work too; one id is not a comparison.
      assert.equal((await fetch(`${server.url}/jobs/compare?ids=${slow},${fast}`, { headers: { cookie } })).status, 200);
      const one = await fetch(`${server.url}/jobs/compare?ids=${slow}`, { headers: { cookie } });
      assert.equal(one.status, 400);
      assert.match(await one.text(), /Choose 2 to 20 jobs/);
      // The history page lets a reader pick the jobs.
      const history = await (await fetch(`${server.url}/jobs`, { headers: { cookie } })).text();
      assert.match(history, /<form method="get" action="\/jobs\/compare" id="compare-form">/);
      assert.ok(history.includes(`<input type="checkbox" name="ids" value="${fast}"`));
    });

    test('detection: the highest mAP50-95 wins; no difference but the name is said as such; no metric yet, no recommendation', async () => {
      const det = (name: string) => ({ name, base_model: 'yolo11n.yaml', epochs: 1, batch_size: 4, image_size: 64 });
      const metrics = (map: number) => [{ box_loss: 1, cls_loss: 1, dfl_loss: 1, mAP50: map + 0.2, 'mAP50-95': map, precision: 0.5, recall: 0.5 }];
      const a = await ran(det('det-a'), metrics(0.3), 1);
      const b = await ran(det('det-b'), metrics(0.36), 1);
      const r = await call(`/api/v1/jobs/compare?ids=${a},${b}`);
      assert.equal(r.status, 200, r.text);
      const rec = r.json.recommendation;
      assert.equal(rec.goal, 'max');
      assert.equal(rec.best_job_id, b, JSON.stringify(rec));
      assert.equal(rec.main_difference, null);
      assert.match(rec.text, new RegExp(`^Job det-b has the highest ${rec.metric} \\(\\S+, 20% above det-a\\); their training arguments are the same, so the gap is run-to-run variation\\.$`), rec.text);

      // A job that has not run has no metric: the one that has is named as the only one.
      const queued = (await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: det('det-queued') }) })).json.job_id;
      const partial = await call(`/api/v1/jobs/compare?ids=${queued},${a}`);
      assert.equal(partial.json.recommendation.best_job_id, a);
      assert.match(partial.json.recommendation.text, /^Job det-a is the only one with a mAP50-95 \(0\.3\); the other job has none yet\.$/);
      const second = (await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: det('det-queued-2') }) })).json.job_id;
      const none = await call(`/api/v1/jobs/compare?ids=${queued},${second}`);
      assert.equal(none.status, 200, none.text);
      assert.equal(none.json.recommendation, null);
    });
  });
}

async function login(server: TestServer): Promise<string> {
  const res = await fetch(`${server.url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: server.url },
    body: new URLSearchParams({ token: TOKEN, next: '/' }),
  });
  assert.equal(res.status, 303);
  return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
}
