/**
 * Storage bench: `npx tsx bench/storage.ts [--epochs N] [--runs N]`. Not a test.
 *
 * What does copying checkpoints to S3 while a job trains cost the training? The same small
 * Ultralytics job (generated detect dataset, yolo11n.yaml, 64 px, CPU) runs through a real
 * trainhook server (`src/main.ts` as `npm start`, embedded PGlite) with STORAGE_URL=local and
 * with STORAGE_URL=s3://… against moto's S3 server on 127.0.0.1, alternating (local, s3, s3,
 * local, …) so that drift in the machine's load falls on both alike. Per run:
 *
 *   epoch s       median of the epochs' own seconds (Ultralytics' clock, sent with each epoch
 *                 event), epoch 1 left out (it carries warm-up)
 *   worker wall   the worker's spawn → the job's finished_at (includes the final flush)
 *   server CPU    the trainhook process's own CPU over the job: where the uploads run
 *   uploaded      bytes the bucket holds for the job afterwards
 *
 * and, after the runs, in this process against the same server: the CPU and wall time of one
 * epoch's uploads (last.pt and best.pt of the job, results.csv), against the median epoch.
 *
 * Ratios s3 / local are printed from the same bench run. Target: epoch time ≤ 1.02. On a shared
 * machine wall times move by several per cent with other tenants' load, so the bench also
 * prints the steadier figure: the extra server CPU of the s3 runs as a share of their epoch time
 * (an upper bound of what the uploads could take from the trainer, on a machine short of cores).
 */
import fs from 'node:fs';
import path from 'node:path';
import { setupPython } from '../scripts/setup-python.mjs';
import { S3Storage } from '../src/storage/index.js';
import { serveFile, startFileServer } from '../test/helpers/file-server.js';
import { S3_TEST_CREDENTIALS, startS3Server } from '../test/helpers/s3-server.js';
import { api, startChildServer, TOKEN, tempDir, trainBody } from '../test/helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from '../test/helpers/synthetic-dataset.js';
import { cleanUp, cpuOf, median } from './lib/proc.js';
import { runTrainhookJob } from './lib/trainhook-job.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const EPOCHS = arg('epochs', 6);
const RUNS = arg('runs', 2);
/** Training images: enough for epochs of a few seconds on a CPU (checkpoints do not grow with it). */
const IMAGES = arg('images', 96);
const BUCKET = 'trainhook-bench';

type Mode = 'local' | 's3';
interface Result {
  mode: Mode;
  /** The job's checkpoints, kept for the per-epoch upload measure. */
  checkpoints: string[];
  epochS: number;
  epochs: number[];
  wall: number;
  serverCpu: number;
  uploaded: number;
}

async function main() {
  const steps: (() => unknown)[] = [];
  try {
    const python = await setupPython();
    const s3 = await startS3Server();
    steps.push(() => s3.close());
    const bucket = new S3Storage({
      bucket: BUCKET,
      prefix: '',
      endpoint: s3.endpoint,
      region: S3_TEST_CREDENTIALS.region,
      forcePathStyle: true,
      credentials: S3_TEST_CREDENTIALS,
      public: true,
    });
    await bucket.ensureBucket();
    const dir = tempDir('trainhook-bench-storage-');
    await writeSyntheticDataset(path.join(dir, 'src'), { task: 'detect', train: IMAGES, val: 8, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 7 });
    await zipDirectory(path.join(dir, 'src'), path.join(dir, 'detect.zip'));
    const host = await startFileServer();
    steps.push(() => host.close());
    host.route('/detect.zip', serveFile(path.join(dir, 'detect.zip')));

    const request = trainBody({
      model_config: { name: 'bench-storage', base_model: 'yolo11n.yaml', epochs: EPOCHS, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
      dataset: { url: host.url('/detect.zip') },
      resources: { device: 'cpu', workers: 0 },
    });
    const order: Mode[] = [];
    for (let i = 0; i < RUNS; i++) order.push(...((i % 2 ? ['s3', 'local'] : ['local', 's3']) as Mode[]));

    const results: Result[] = [];
    for (const mode of order) {
      const workdir = tempDir('trainhook-bench-storage-wd-');
      const env: Record<string, string> = {
        WORKDIR: workdir,
        API_TOKEN: TOKEN,
        DEVICES: 'cpu',
        OUTBOUND_ALLOW: '127.0.0.1',
        PYTHON: python,
        // info: startChildServer waits for the 'trainhook listening' line.
        LOG_LEVEL: 'info',
        ...(mode === 's3'
          ? {
              STORAGE_URL: `s3://${BUCKET}/${path.basename(workdir)}`,
              S3_ENDPOINT: s3.endpoint,
              AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId,
              AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey,
            }
          : {}),
      };
      const server = await startChildServer(env);
      try {
        const before = cpuOf(server.child.pid!);
        const run = await runTrainhookJob(server, workdir, request, 500);
        const after = cpuOf(server.child.pid!);
        const epochs = ((await api(server.url)(`/api/v1/jobs/${run.id}/metrics`)).json.epochs as { epoch_seconds: number }[]).map((e) => e.epoch_seconds);
        const uploaded = mode === 's3' ? (await bucket.list(`${path.basename(workdir)}/`)).reduce((n, o) => n + o.size, 0) : 0;
        const keep = tempDir('trainhook-bench-storage-ck-');
        const checkpoints = ['weights/last.pt', 'weights/best.pt', 'results.csv'].map((f) => {
          const to = path.join(keep, f.replace('/', '-'));
          fs.copyFileSync(path.join(run.dir, f), to);
          return to;
        });
        const stats = server.output
          .filter((l) => l.includes('"job files uploaded to storage"'))
          .map((l) => JSON.parse(l) as { uploads: number; upload_bytes: number; upload_ms: number })
          .at(-1);
        if (stats) console.log(`      the job's uploader: ${stats.uploads} uploads, ${(stats.upload_bytes / 1e6).toFixed(1)} MB, ${(stats.upload_ms / 1000).toFixed(2)} s of upload time, in the background`);
        const r: Result = {
          mode,
          checkpoints,
          epochs,
          epochS: median(epochs.slice(1)),
          wall: run.wall,
          serverCpu: before && after ? after.own - before.own : NaN,
          uploaded,
        };
        results.push(r);
        console.log(
          `${mode.padEnd(5)} epoch ${r.epochS.toFixed(3)} s (each: ${epochs.map((e) => e.toFixed(2)).join(' ')})  worker wall ${r.wall.toFixed(2)} s  server CPU ${r.serverCpu.toFixed(2)} s  uploaded ${(uploaded / 1e6).toFixed(1)} MB`,
        );
      } finally {
        await server.kill('SIGTERM');
        fs.rmSync(workdir, { recursive: true, force: true });
      }
    }
    const of = (m: Mode) => results.filter((r) => r.mode === m);
    const med = (m: Mode, f: (r: Result) => number) => median(of(m).map(f));
    const epochRatio = med('s3', (r) => r.epochS) / med('local', (r) => r.epochS);
    const wallRatio = med('s3', (r) => r.wall) / med('local', (r) => r.wall);
    const extraCpu = med('s3', (r) => r.serverCpu) - med('local', (r) => r.serverCpu);
    const s3EpochTime = med('s3', (r) => r.epochs.reduce((a, b) => a + b, 0));
    console.log(`\n${EPOCHS} epochs, ${RUNS} run(s) per mode, medians`);
    console.log(`epoch time   s3/local = ${epochRatio.toFixed(4)}  (target <= 1.02: ${epochRatio <= 1.02 ? 'met' : 'NOT met'})`);
    console.log(`worker wall  s3/local = ${wallRatio.toFixed(4)}`);
    console.log(`server CPU   +${extraCpu.toFixed(2)} s over ${s3EpochTime.toFixed(1)} s of epochs = ${((100 * extraCpu) / s3EpochTime).toFixed(2)} % (includes the one-off: loading the SDK, the dataset archive, the final flush)`);

    // One epoch's uploads on their own, as the background uploader sends them: last.pt and
    // results.csv after every epoch, best.pt too after an epoch that improved.
    const [last, best, csv] = of('s3')[0]!.checkpoints as [string, string, string];
    const epochMs = 1000 * med('local', (r) => r.epochS);
    for (const [label, files] of [
      ['every epoch (last.pt, results.csv)', [last, csv]],
      ['an improving epoch (+ best.pt)', [last, best, csv]],
    ] as const) {
      const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
      for (const f of files) await bucket.putFile(`micro/warm-${path.basename(f)}`, f);
      const n = 10;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) for (const f of files) await bucket.putFile(`micro/${i}-${path.basename(f)}`, f);
      const cpu = process.cpuUsage(c0);
      const cpuMs = (cpu.user + cpu.system) / 1000 / n;
      const wallMs = (performance.now() - t0) / n;
      console.log(
        `per epoch    ${label}: ${(bytes / 1e6).toFixed(1)} MB, ${cpuMs.toFixed(1)} ms CPU, ${wallMs.toFixed(1)} ms wall (in the background) = ${((100 * cpuMs) / epochMs).toFixed(2)} % of a ${(epochMs / 1000).toFixed(2)} s epoch in CPU (target <= 2 %)`,
      );
    }
    bucket.destroy();
  } finally {
    await cleanUp(steps);
  }
}

await main();
