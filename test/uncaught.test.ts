/**
 * Defence in depth: an error nothing caught ends the server on purpose, cleanly. The server
 * runs as a child process exactly as `npm start` runs it; a preloaded fixture (not server code)
 * raises the error on SIGUSR2. The error is logged with its stack, the running worker is
 * stopped and its job re-queued, the process exits with status 1 (for a supervisor to restart
 * it), and the job resumes from last.pt at the next start and completes, no epoch counted twice.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { backends } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { ROOT, TOKEN, api, backendEnv, startChildServer, tempDir, trainBody, type ChildServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const FAULT = path.join(ROOT, 'test/fixtures/fault-on-signal.cjs');

/** Live processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

async function exited(child: ChildServer): Promise<number | null> {
  if (child.child.exitCode === null && child.child.signalCode === null) await once(child.child, 'exit');
  return child.child.exitCode;
}

describe('an uncaught error in the server process', () => {
  let files: string;
  let host: FileServer;
  const cleanup: Array<() => Promise<void>> = [];
  before(async () => {
    files = tempDir('trainhook-uncaught-');
    await writeSyntheticDataset(path.join(files, 'src'), { task: 'detect', train: 8, val: 4, imgsz: 64, classes: ['a', 'b'], seed: 5 });
    await zipDirectory(path.join(files, 'src'), path.join(files, 'dataset.zip'));
    host = await startFileServer();
    host.route('/dataset.zip', serveFile(path.join(files, 'dataset.zip')));
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    await host.close();
    fs.rmSync(files, { recursive: true, force: true });
  });

  test('an unhandled rejection: logged with its stack, exit status 1', async () => {
    const child = await startChildServer({
      WORKDIR: tempDir('trainhook-uncaught-work-'),
      API_TOKEN: TOKEN,
      NODE_OPTIONS: `--require ${FAULT}`,
      TEST_FAULT: 'rejection',
    });
    cleanup.push(() => child.kill());
    child.child.kill('SIGUSR2');
    assert.equal(await exited(child), 1, child.output.join('\n'));
    const fatal = child.output.find((l) => l.includes('"level":"fatal"'));
    assert.ok(fatal, child.output.join('\n'));
    const line = JSON.parse(fatal) as { kind: string; stack: string };
    assert.equal(line.kind, 'unhandledRejection');
    assert.match(line.stack, /rejected by the test\n\s+at /);
  });

  for (const backend of backends()) {
    test(`a thrown error with a job training (${backend}): the worker stops, the job resumes at the next start`, async () => {
      const db = await backendEnv(backend);
      cleanup.push(db.drop);
      const env = {
        WORKDIR: tempDir('trainhook-uncaught-work-'),
        API_TOKEN: TOKEN,
        OUTBOUND_ALLOW: '127.0.0.1',
        DEVICES: 'cpu',
        NODE_ID: 'uncaught-drill',
        ...db.env,
      };
      let child = await startChildServer({ ...env, NODE_OPTIONS: `--require ${FAULT}`, TEST_FAULT: 'exception' });
      cleanup.push(() => child.kill());
      let call = api(child.url);
      const r = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({
          model_config: { name: 'uncaught', base_model: 'yolo11n.yaml', epochs: 4, batch_size: 4, image_size: 64, seed: 1 },
          dataset: { url: host.url('/dataset.zip') },
        }),
      });
      assert.equal(r.status, 202, r.text);
      const id = r.json.job_id as string;
      await waitFor('the first epoch', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 1, 300_000);
      const workers = childrenOf(child.child.pid!);
      assert.ok(workers.length > 0, 'a worker process is running');

      child.child.kill('SIGUSR2');
      assert.equal(await exited(child), 1, child.output.slice(-20).join('\n'));
      const fatal = child.output.find((l) => l.includes('"level":"fatal"'));
      assert.ok(fatal, child.output.slice(-20).join('\n'));
      const line = JSON.parse(fatal) as { kind: string; stack: string };
      assert.equal(line.kind, 'uncaughtException');
      assert.match(line.stack, /thrown by the test\n\s+at /);
      assert.deepEqual(workers.filter(alive), [], 'no worker left behind');
      assert.ok(child.output.some((l) => l.includes('job re-queued for shutdown')), 'the job was re-queued');

      child = await startChildServer(env);
      cleanup.push(() => child.kill());
      call = api(child.url);
      const job = await waitFor(
        'the job to finish after the restart',
        async () => {
          const j = (await call(`/api/v1/jobs/${id}`)).json;
          return ['completed', 'failed'].includes(j.status) && j;
        },
        300_000,
      );
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs.map((e: { epoch: number }) => e.epoch);
      assert.deepEqual(epochs, [1, 2, 3, 4]);
      await child.kill('SIGTERM');
    });
  }
});
