/**
 * The proof of the engine seam: a toy engine that lives in test/engines/toy/ (its object and
 * a few lines of torch) is handed to a server, and a job for it runs through the same API,
 * queue, pipeline, callbacks, pages, registry and metrics as an Ultralytics job, with nothing
 * outside its folder knowing it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { BUILTIN_ENGINES } from '../src/engines/index.js';
import { toyEngine } from './engines/toy/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, type TestServer } from './helpers/server.js';
import { writeSyntheticClassifyDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const SECRET = `whsec_${Buffer.alloc(32, 3).toString('base64')}`;

describe('a toy engine registered by a test', { timeout: 10 * 60_000 }, () => {
  let host: FileServer;
  let receiver: Receiver;
  let server: TestServer;
  let call: ReturnType<typeof api>;

  before(async () => {
    await setupPython();
    const dir = tempDir('trainhook-toy-');
    await writeSyntheticClassifyDataset(path.join(dir, 'src'), { train: 24, val: 12, imgsz: 32, classes: ['box', 'disc', 'tri'], seed: 5 });
    await zipDirectory(path.join(dir, 'src'), path.join(dir, 'toy.zip'));
    host = await startFileServer();
    host.route('/toy.zip', serveFile(path.join(dir, 'toy.zip')));
    receiver = await startReceiver();
    server = await startTestServer({ env: { DEVICES: 'cpu' }, overrides: { engines: [...BUILTIN_ENGINES, toyEngine] } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await receiver?.close();
    await host?.close();
  });

  test('it is listed, with its schema and presets', async () => {
    const engines = (await call('/api/v1/engines')).json.engines;
    const toy = engines.find((e: any) => e.name === 'toy');
    assert.ok(toy, JSON.stringify(engines.map((e: any) => e.name)));
    assert.equal(toy.default, false);
    assert.deepEqual(toy.tasks[0].dataset_formats, ['classify']);
    assert.equal(toy.config_schema.properties.framework.const, 'toy');
    const defaults = await call('/api/v1/config/default?framework=toy&mode=user');
    assert.equal(defaults.status, 200, defaults.text);
    assert.deepEqual(defaults.json.editable, ['epochs']);
    const refused = await call('/api/v1/config/resolve', { method: 'POST', json: { framework: 'toy', mode: 'user', overrides: { learning_rate: 0.5 } } });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.details[0].code, 'not_allowed');
  });

  test('a toy job trains through the API like any other, and a bad toy config is refused', async () => {
    const bad = await call('/api/v1/train', {
      method: 'POST',
      json: { model_config: { framework: 'toy', name: 'x', epochs: 0 }, dataset: { url: host.url('/toy.zip') } },
    });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json.error.details[0].path, ['model_config', 'epochs']);

    const submit = await call('/api/v1/train', {
      method: 'POST',
      json: {
        model_config: { framework: 'toy', name: 'toy-1', epochs: 4 },
        dataset: { url: host.url('/toy.zip') },
        resources: { device: 'cpu', workers: 0 },
        callback_url: `${receiver.url}/toy`,
        callback_secret: SECRET,
      },
    });
    assert.equal(submit.status, 202, submit.text);
    const id = submit.json.job_id;
    const job = await waitFor('the toy job', async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return ['completed', 'failed'].includes(j.json.status) && j.json;
    }, 300_000);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.equal(job.dataset_info.classes.length, 3);
    assert.equal(typeof job.metrics.current.accuracy, 'number');
    assert.equal(job.metrics.best.epoch >= 1, true);

    const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
    assert.deepEqual(epochs.map((e: any) => e.epoch), [1, 2, 3, 4]);

    // The callbacks carry the toy's metric blocks, signed like every callback.
    await receiver.waitFor((all) => all.some((r) => r.json?.type === 'training_completed'), 30_000, 'completion');
    const verifier = new Webhook(SECRET);
    const done = receiver.received.find((r) => r.json?.type === 'training_completed')!;
    assert.deepEqual(verifier.verify(done.body, done.headers), done.json);
    assert.deepEqual(Object.keys(done.json.final_metrics), ['accuracy', 'loss', 'best_epoch', 'total_epochs']);
    assert.ok(done.json.artifacts.metrics_csv);
    assert.ok(done.json.model.download_url);
    const progress = receiver.received.filter((r) => r.json?.type === 'training_progress').at(-1)!;
    assert.deepEqual(Object.keys(progress.json.metrics.current), ['loss', 'accuracy']);

    // Its model is in the registry; the status page and /metrics know the job.
    const model = await waitFor('the toy model', async () => (await call(`/api/v1/models?job_id=${id}`)).json.models[0], 30_000);
    assert.equal(model.framework, 'toy');
    assert.equal(model.imgsz, 32);
    const exported = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'onnx' } });
    assert.equal(exported.status, 409, 'the toy exports to nothing');
    assert.equal(exported.json.error.code, 'EXPORT_UNSUPPORTED');
    const page = await call(`/jobs/${id}`);
    assert.equal(page.status, 200);
    assert.match(page.text, /id="chart-accuracy"/);
    assert.match(page.text, /Toy classifier/);
  });
});
