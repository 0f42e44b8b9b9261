/**
 * Storage bench: `npx tsx bench/storage.ts [--epochs N] [--runs N] [--images N]` (or
 * BENCH_STORAGE_EPOCHS, BENCH_STORAGE_RUNS, BENCH_STORAGE_IMAGES). Not a test.
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
 * and the uploader's own account, logged at the end of each s3 job: uploads, bytes, the CPU
 * they took (against the job's epoch time), how often last.pt went up.
 *
 * Ratios s3 / local are printed from the same bench run. Target: epoch time ≤ 1.02. On a shared
 * machine wall times move by several per cent with other tenants' load, so the bench also
 * prints the steadier figure: the extra server CPU of the s3 runs as a share of their epoch time
 * (an upper bound of what the uploads could take from the trainer, on a machine short of cores).
 */
import fs from 'node:fs';
import path from 'node:path';
import { setupPython } from '../scripts/setup-python.mjs';
import { serveFile, startFileServer } from '../test/helpers/file-server.js';
import { startS3Server } from '../test/helpers/s3-server.js';
import { api, startChildServer, TOKEN, tempDir, trainBody } from '../test/helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from '../test/helpers/synthetic-dataset.js';
import { cleanUp, cpuOf, median } from './lib/proc.js';
import { runTrainhookJob } from './lib/trainhook-job.js';

/** BENCH_STORAGE_<NAME>, or --<name> on the command line. */
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  const env = process.env[`BENCH_STORAGE_${name.toUpperCase()}`];
  return i >= 0 ? Number(process.argv[i + 1]) : env ? Number(env) : dflt;
};
const EPOCHS = arg('epochs', 6);
const RUNS = arg('runs', 2);
/** Training images: enough for epochs of a few seconds on a CPU (checkpoints do not grow with it). */
const IMAGES = arg('images', 256);
const BUCKET = 'trainhook-bench';

type Mode = 'local' | 's3';
interface Uploader {
  uploads: number;
  upload_bytes: number;
  upload_ms: number;
  upload_cpu_ms: number;
  /** Of upload_cpu_ms, what the flush before completion took (once per job). */
  flush_cpu_ms: number;
  uploads_by_file: Record<string, number>;
}
interface Result {
  mode: Mode;
  /** What the job's uploader logged at its end (s3 runs). */
  uploader: Uploader | undefined;
  epochS: number;
  epochs: number[];
  wall: number;
  serverCpu: number;
  /** CPU of the S3 server itself (moto, on this machine only in the bench: it competes with the trainer here). */
  motoCpu: number;
  uploaded: number;
}

async function main() {
  const steps: (() => unknown)[] = [];
  try {
    const python = await setupPython();
    const s3 = await startS3Server();
    steps.push(() => s3.close());
    const bucket = s3.storage(BUCKET, '');
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
          ? s3.env(BUCKET, path.basename(workdir))
          : {}),
      };
      const server = await startChildServer(env);
      try {
        const before = cpuOf(server.child.pid!);
        const motoBefore = cpuOf(s3.pid);
        const run = await runTrainhookJob(server, workdir, request, 500);
        const after = cpuOf(server.child.pid!);
        const motoAfter = cpuOf(s3.pid);
        const epochs = ((await api(server.url)(`/api/v1/jobs/${run.id}/metrics`)).json.epochs as { epoch_seconds: number }[]).map((e) => e.epoch_seconds);
        const uploaded = mode === 's3' ? (await bucket.list(`${path.basename(workdir)}/`)).reduce((n, o) => n + o.size, 0) : 0;
        // Logged as the attempt ends, just after the job reads completed.
        let stats: Uploader | undefined;
        for (let i = 0; i < 50 && mode === 's3' && !stats; i++) {
          stats = server.output
            .filter((l) => l.includes('"job files uploaded to storage"'))
            .map((l) => JSON.parse(l) as Uploader)
            .at(-1);
          if (!stats) await new Promise((r) => setTimeout(r, 100));
        }
        if (stats) {
          console.log(
            `      the job's uploader: ${stats.uploads} uploads, ${(stats.upload_bytes / 1e6).toFixed(1)} MB, ${(stats.upload_ms / 1000).toFixed(2)} s of upload time in the background, ${(stats.upload_cpu_ms / 1000).toFixed(2)} s CPU`,
          );
        }
        const r: Result = {
          mode,
          uploader: stats,
          epochs,
          epochS: median(epochs.slice(1)),
          wall: run.wall,
          serverCpu: before && after ? after.own - before.own : NaN,
          motoCpu: motoBefore && motoAfter ? motoAfter.own - motoBefore.own : NaN,
          uploaded,
        };
        results.push(r);
        console.log(
          `${mode.padEnd(5)} epoch ${r.epochS.toFixed(3)} s (each: ${epochs.map((e) => e.toFixed(2)).join(' ')})  worker wall ${r.wall.toFixed(2)} s  server CPU ${r.serverCpu.toFixed(2)} s  moto CPU ${r.motoCpu.toFixed(2)} s  uploaded ${(uploaded / 1e6).toFixed(1)} MB`,
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

    const moto = med('s3', (r) => r.motoCpu);
    console.log(`S3 server    moto took ${moto.toFixed(2)} s of CPU per s3 run = ${((100 * moto) / s3EpochTime).toFixed(2)} % of epoch time, on the trainer's cores here (a real bucket is on other machines)`);
    const up = of('s3').map((r) => r.uploader).filter((u): u is Uploader => !!u);
    if (up.length) {
      const epochSeconds = (i: number) => of('s3')[i]!.epochs.reduce((a, b) => a + b, 0);
      const during = median(up.map((u, i) => (u.upload_cpu_ms - u.flush_cpu_ms) / (1000 * epochSeconds(i))));
      const flush = median(up.map((u) => u.flush_cpu_ms / 1000));
      const lastPt = Object.entries(up[0]!.uploads_by_file).find(([f]) => /(^|\/)last\.pt$/.test(f))?.[1] ?? 0;
      console.log(
        `uploader     while training: ${(100 * during).toFixed(2)} % of epoch time in upload CPU (its own count; target <= 2 %); last.pt went up ${lastPt} times in ${EPOCHS} epochs, final flush included (the rest coalesced)`,
      );
      console.log(`uploader     the flush before completion: ${flush.toFixed(2)} s of CPU, once per job`);
    }
    bucket.destroy();
  } finally {
    await cleanUp(steps);
  }
}

await main();
