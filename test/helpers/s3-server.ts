/**
 * A real S3-compatible server for tests: moto's server mode, started on 127.0.0.1 at a free
 * port and stopped by close(). moto is installed once from PyPI into a venv under
 * ~/.cache/trainhook/moto-<hash of the pin> (built beside it and renamed into place, so a build
 * interrupted half-way is never taken for a complete one); later runs start it at once.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { S3Storage, type S3Options } from '../../src/storage/index.js';

export const MOTO_PIN = 'moto[server]==5.2.5';
/** moto accepts any credentials; the SDK insists on some. */
export const S3_TEST_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing', region: 'us-east-1' };

export interface S3Server {
  endpoint: string;
  port: number;
  /** A client of one bucket and prefix on this server (ensureBucket() creates the bucket). */
  storage(bucket: string, prefix: string, opts?: Partial<S3Options>): S3Storage;
  /** What a trainhook node needs to keep its files under s3://bucket/prefix on this server. */
  env(bucket: string, prefix: string): Record<string, string>;
  /** The moto_server process (benches read its CPU). */
  pid: number;
  close(): Promise<void>;
}

function cacheRoot(): string {
  return process.env['TRAINHOOK_VENV_DIR'] ?? path.join(process.env['XDG_CACHE_HOME'] ?? path.join(os.homedir(), '.cache'), 'trainhook');
}

/** The venv's moto_server, built first when missing. */
export function motoServerBin(): string {
  const hash = crypto.createHash('sha256').update(MOTO_PIN).digest('hex').slice(0, 16);
  const venv = path.join(cacheRoot(), `moto-${hash}`);
  const bin = path.join(venv, 'bin', 'moto_server');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(cacheRoot(), { recursive: true });
  const tmp = `${venv}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const python = process.env['PYTHON3'] ?? 'python3';
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 15 * 60_000 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.slice(-2000) ?? r.error}`);
  };
  try {
    run(python, ['-m', 'venv', tmp]);
    run(path.join(tmp, 'bin', 'python'), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', MOTO_PIN]);
    // Console scripts name the venv's interpreter by its absolute (temporary) path: point them at the final one.
    const script = path.join(tmp, 'bin', 'moto_server');
    fs.writeFileSync(script, fs.readFileSync(script, 'utf8').replace(tmp, venv));
    try {
      fs.renameSync(tmp, venv);
    } catch (err) {
      // Another process built it meanwhile.
      if (!fs.existsSync(bin)) throw err;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return bin;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startS3Server(): Promise<S3Server> {
  const bin = motoServerBin();
  const port = await freePort();
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited (${child.exitCode}): ${stderr}`);
    const up = await fetch(`${endpoint}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto_server did not answer within 60 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    endpoint,
    port,
    pid: child.pid!,
    storage: (bucket, prefix, opts = {}) =>
      new S3Storage({ bucket, prefix, endpoint, region: S3_TEST_CREDENTIALS.region, forcePathStyle: true, credentials: { ...S3_TEST_CREDENTIALS }, public: true, ...opts }),
    env: (bucket, prefix) => ({
      STORAGE_URL: `s3://${bucket}/${prefix}`,
      S3_ENDPOINT: endpoint,
      AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey,
      AWS_REGION: S3_TEST_CREDENTIALS.region,
    }),
    close: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
