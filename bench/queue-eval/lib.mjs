// Shared by the queue-library experiments: a temp folder with the library installed at run time
// (never in package.json), a scratch PostgreSQL database, and PGlite as src/db/client.ts opens it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

export const ADMIN_URL = process.env.QEVAL_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** npm install into a temp prefix; returns { dir, import(name) }. QEVAL_PREFIX reuses one. */
export function installInto(packages) {
  const dir = process.env.QEVAL_PREFIX ?? fs.mkdtempSync(path.join(os.tmpdir(), 'qeval-'));
  const own = !process.env.QEVAL_PREFIX;
  if (!fs.existsSync(path.join(dir, 'package.json'))) fs.writeFileSync(path.join(dir, 'package.json'), '{"private":true}');
  execFileSync('npm', ['install', '--prefix', dir, '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', ...packages], { stdio: 'inherit' });
  const req = createRequire(path.join(dir, 'package.json'));
  const version = (name) => JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  return {
    dir,
    version,
    import: (name) => import(pathToFileURL(req.resolve(name)).href),
    cleanup: () => { if (own) fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

/** The project's own pg driver is not pg; both libraries bring pg, so use theirs. */
export async function scratchDatabase(pg, name) {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = '/' + name;
  return {
    url: url.toString(),
    drop: async () => {
      const a = new pg.Client({ connectionString: ADMIN_URL });
      await a.connect();
      await a.query(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

/** PGlite from the project's node_modules, in a temp data dir, like src/db/client.ts. */
export async function openPglite() {
  const req = createRequire(path.join(REPO, 'package.json'));
  const { PGlite } = await import(pathToFileURL(req.resolve('@electric-sql/pglite')).href);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qeval-pglite-'));
  const db = await PGlite.create({ dataDir });
  const version = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules/@electric-sql/pglite/package.json'), 'utf8')).version;
  return { db, version, dataDir, close: async () => { await db.close(); fs.rmSync(dataDir, { recursive: true, force: true }); } };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs fn, returns its result or the error's message (an experiment records both). */
export async function attempt(fn) {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, error: `${err?.constructor?.name ?? 'Error'}: ${err?.message ?? err}` };
  }
}

export function report(results) {
  console.log(JSON.stringify(results, null, 2));
  if (process.env.QEVAL_JSON) fs.writeFileSync(process.env.QEVAL_JSON, JSON.stringify(results, null, 2));
}
