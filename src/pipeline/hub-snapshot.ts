/**
 * Downloads a Hugging Face Hub model repo's snapshot for a base model, as the service (the
 * worker never downloads: it runs with HF_HUB_OFFLINE=1 and loads the folder this writes).
 *
 * 1. `GET {HF_ENDPOINT}/api/models/{repo}/revision/{revision}`: the commit sha and the repo's
 *    files (siblings). A few redirects are followed (a renamed repo answers 307 to its new
 *    name; its file URLs under the old name redirect the same way), each hop SSRF-guarded.
 * 2. Only the files a model needs (`selectHubFiles`): configs and tokenizer/processor files,
 *    *.safetensors, tokenizer.model and the like; pickled *.bin weights only when the repo has no
 *    safetensors; nothing in subfolders (other formats, original checkpoints), no code.
 * 3. Each file from `{HF_ENDPOINT}/{repo}/resolve/{sha}/{file}` (the commit, so that every file
 *    is of the same one), through the guarded downloader (SSRF guard, retries), with
 *    `Authorization: Bearer $HF_TOKEN` when a token is set (HUGGING_FACE_HUB_TOKEN, its older
 *    name, otherwise; sent to the endpoint only: a redirect to a CDN of another origin goes
 *    without it, here as for the model info), under one byte cap for the whole snapshot.
 * 4. Into a temporary folder beside the target, renamed into place with a record of what it
 *    holds: a half-downloaded snapshot is never seen, and the next job reuses the folder.
 *
 * HF_HUB_OFFLINE on the service, or any failure, fails the job with MODEL_DOWNLOAD_FAILED naming
 * the repo and the cause (a network error or 5xx is marked transient, so the job is retried).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { getFollowingRedirects, RedirectError } from '../net/redirects.js';
import { JobError } from '../core/errors.js';
import { downloadToFile, redactUrl } from '../datasets/download.js';
import { SNAPSHOT_RECORD, hubCacheDir, type HubRef } from '../engines/hub.js';

export interface HubOptions {
  workdir: string;
  /** HF_ENDPOINT, without a trailing slash. */
  endpoint: string;
  /** HF_TOKEN (or HUGGING_FACE_HUB_TOKEN): sent as a bearer token to the endpoint's origin only; never logged. */
  token?: string | undefined;
  /** HF_HUB_OFFLINE: only snapshots already in the cache are used. */
  offline: boolean;
  /** The most bytes one snapshot may have, all files together. */
  maxBytes: number;
  dispatcher: Dispatcher;
  timeoutMs: number;
  retries: number;
  signal?: AbortSignal | undefined;
  /** The disk pre-flight, with each file's announced size before its body is read (throws INSUFFICIENT_DISK). */
  checkSpace?: ((bytes: number) => Promise<void>) | undefined;
}

export interface HubSnapshot {
  dir: string;
  /** The commit the files are of. */
  sha: string | null;
  files: string[];
  bytes: number;
  /** Whether it was downloaded now (false: found in the cache). */
  downloaded: boolean;
}


/** One top-level file name of a repo (no folder, no hidden file). */
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$/;
/** What a model loads besides its weights: configs, tokenizers, processors, chat templates. */
const SUPPORT = [
  /\.json$/,
  /^tokenizer\.model$/,
  /^(spiece|sentencepiece[\w.-]*)\.model$/,
  /\.tiktoken$/,
  /^vocab\.txt$/,
  /^merges\.txt$/,
  /^chat_template\.jinja$/,
];

/**
 * The files of a repo to download: top-level support files and safetensors weights; the
 * pickled PyTorch weights (*.bin and their index) only when the repo has no safetensors, since
 * loading a pickle can run code.
 */
export function selectHubFiles(siblings: readonly string[]): string[] {
  const top = siblings.filter((f) => FILE_NAME.test(f) && !f.includes('..'));
  const safetensors = top.filter((f) => f.endsWith('.safetensors'));
  const pickles = /^pytorch_model(-\d+-of-\d+)?\.bin$/;
  const out = new Set<string>(safetensors);
  for (const f of top) {
    if (f.endsWith('.bin.index.json')) {
      if (safetensors.length === 0) out.add(f);
    } else if (SUPPORT.some((re) => re.test(f))) out.add(f);
    else if (safetensors.length === 0 && pickles.test(f)) out.add(f);
  }
  return [...out].sort();
}

const inFlight = new Map<string, Promise<HubSnapshot>>();

/** The snapshot's folder, downloaded once (concurrent jobs of this node share one download). */
export function hubSnapshot(ref: HubRef, opts: HubOptions): Promise<HubSnapshot> {
  const dir = hubCacheDir(opts.workdir, ref);
  let running = inFlight.get(dir);
  if (!running) {
    running = fetchSnapshot(ref, dir, opts).finally(() => inFlight.delete(dir));
    inFlight.set(dir, running);
  }
  return running;
}

function cached(dir: string): HubSnapshot | null {
  try {
    const record = JSON.parse(fs.readFileSync(path.join(dir, SNAPSHOT_RECORD), 'utf8')) as { sha?: string; files?: string[]; bytes?: number };
    return { dir, sha: record.sha ?? null, files: record.files ?? [], bytes: record.bytes ?? 0, downloaded: false };
  } catch {
    return null;
  }
}

function fail(ref: HubRef, opts: HubOptions, cause: string, details: Record<string, unknown> = {}, err?: unknown): JobError {
  return new JobError(
    'MODEL_DOWNLOAD_FAILED',
    `could not download base model ${ref.repo}@${ref.revision} from ${opts.endpoint}: ${cause}`,
    { base_model: `${ref.repo}@${ref.revision}`, endpoint: opts.endpoint, ...details },
    err === undefined ? undefined : { cause: err },
  );
}

const authHeaders = (opts: HubOptions): Record<string, string> => (opts.token ? { authorization: `Bearer ${opts.token}` } : {});

/** Redirects the model info request follows (the Hub answers a renamed repo with a 307 to its new name). */
export const MAX_INFO_REDIRECTS = 5;
/** The model info answer's cap. */
const INFO_MAX_BYTES = 16 * 1024 * 1024;

/**
 * The repo's commit and file names at the revision (the Hub's model info API). Redirects are
 * followed by hand, each hop through the same guarded dispatcher (the SSRF guard judges every
 * address), with the token only while the hop is on the endpoint's own origin.
 */
async function listFiles(ref: HubRef, opts: HubOptions): Promise<{ sha: string | null; siblings: string[] }> {
  const url = `${opts.endpoint}/api/models/${ref.repo}/revision/${encodeURIComponent(ref.revision)}`;
  let res: Dispatcher.ResponseData;
  try {
    ({ res } = await getFollowingRedirects(new URL(url), {
      dispatcher: opts.dispatcher,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      headers: { accept: 'application/json', 'user-agent': 'trainhook' },
      originHeaders: authHeaders(opts),
      maxRedirects: MAX_INFO_REDIRECTS,
    }));
  } catch (err) {
    if (err instanceof RedirectError) {
      throw fail(ref, opts, `${err.message} from the model info API`, { url: redactUrl(err.url.href), status: err.status }, err);
    }
    const code = (err as { code?: string }).code;
    const message = err instanceof Error ? err.message : String(err);
    // The SSRF guard's refusal would come back the same; anything else on the wire may not.
    throw fail(ref, opts, `network error: ${code ? `${code} ` : ''}${message}`, { url: redactUrl(url), transient: code !== 'SSRF_BLOCKED' }, err);
  }
  if (res.statusCode !== 200) {
    await res.body.dump().catch(() => {});
    const status = res.statusCode;
    const why =
      status === 401 || status === 403
        ? `HTTP ${status}: the repo is private or gated, or HF_TOKEN is ${opts.token ? 'not allowed to read it' : 'not set'}`
        : status === 404
          ? `HTTP 404: no model repo ${ref.repo} with revision ${ref.revision}`
          : `HTTP ${status} from the model info API`;
    throw fail(ref, opts, why, { url: redactUrl(url), status, transient: status >= 500 || status === 429 });
  }
  // The answer lists every file of the repo: a few MB at most even for large repos. Counted as it
  // arrives, so an endpoint that sends without end is cut off at the cap, not held in memory.
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > INFO_MAX_BYTES) {
      res.body.destroy();
      throw fail(ref, opts, 'the model info answer is over 16 MB');
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let info: { sha?: unknown; siblings?: unknown };
  try {
    info = JSON.parse(text) as typeof info;
  } catch (err) {
    throw fail(ref, opts, 'the model info API did not answer JSON', { url: redactUrl(url) }, err);
  }
  if (!Array.isArray(info.siblings)) throw fail(ref, opts, 'the model info has no list of files (siblings)', { url: redactUrl(url) });
  const siblings = info.siblings
    .map((s) => (s && typeof s === 'object' ? (s as { rfilename?: unknown }).rfilename : null))
    .filter((f): f is string => typeof f === 'string');
  const sha = typeof info.sha === 'string' && /^[0-9a-f]{40}$/.test(info.sha) ? info.sha : null;
  return { sha, siblings };
}

async function fetchSnapshot(ref: HubRef, dir: string, opts: HubOptions): Promise<HubSnapshot> {
  const have = cached(dir);
  if (have) {
    // Used now: the retention sweep keeps a snapshot for RETENTION_DAYS after its last use.
    const now = new Date();
    try {
      fs.utimesSync(path.join(dir, SNAPSHOT_RECORD), now, now);
    } catch {
      // A read-only cache placed by hand is still a cache.
    }
    return have;
  }
  if (opts.offline) {
    throw fail(ref, opts, `HF_HUB_OFFLINE is set and the snapshot is not in the cache (${dir}); unset it, or place the snapshot there`, {
      expected_path: dir,
      offline: true,
    });
  }
  const { sha, siblings } = await listFiles(ref, opts);
  const files = selectHubFiles(siblings);
  if (!files.includes('config.json')) {
    throw fail(ref, opts, `the repo has no config.json at its top level (${siblings.length} files): not a transformers model`, { files: siblings.slice(0, 50) });
  }
  if (!files.some((f) => f.endsWith('.safetensors') || f.endsWith('.bin'))) {
    throw fail(ref, opts, 'the repo has no weights at its top level (*.safetensors, pytorch_model*.bin)', { files: siblings.slice(0, 50) });
  }
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = path.join(path.dirname(dir), `.${path.basename(dir)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp);
  let bytes = 0;
  try {
    for (const file of files) {
      const url = `${opts.endpoint}/${ref.repo}/resolve/${encodeURIComponent(sha ?? ref.revision)}/${file}`;
      try {
        const r = await downloadToFile(url, path.join(tmp, file), {
          dispatcher: opts.dispatcher,
          maxBytes: Math.max(1, opts.maxBytes - bytes),
          timeoutMs: opts.timeoutMs,
          retries: opts.retries,
          signal: opts.signal,
          headers: authHeaders(opts),
          errorCode: 'MODEL_DOWNLOAD_FAILED',
          beforeBody: async (total) => {
            if (total !== null) await opts.checkSpace?.(total);
          },
        });
        bytes += r.bytes;
      } catch (err) {
        // A cancel or the disk pre-flight's refusal keeps its own code.
        if (err instanceof JobError && err.code === 'MODEL_DOWNLOAD_FAILED') {
          const tooLarge = (err.details as { reason?: unknown } | undefined)?.reason === 'TOO_LARGE';
          throw fail(
            ref,
            opts,
            tooLarge ? `${file} takes the snapshot past its ${opts.maxBytes}-byte limit (HF_DOWNLOAD_MAX_BYTES)` : `${file}: ${err.message}`,
            { file, cause: err.details ?? null },
            err,
          );
        }
        throw err;
      }
    }
    fs.writeFileSync(path.join(tmp, SNAPSHOT_RECORD), JSON.stringify({ repo: ref.repo, revision: ref.revision, sha, files, bytes, endpoint: opts.endpoint, downloaded_at: new Date().toISOString() }));
    try {
      fs.renameSync(tmp, dir);
    } catch (err) {
      // Another node's download of the same snapshot finished first: use that one.
      const other = cached(dir);
      if (!other) throw err;
      fs.rmSync(tmp, { recursive: true, force: true });
      return other;
    }
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return { dir, sha, files, bytes, downloaded: true };
}
