/**
 * Streams a URL to a file on disk: never buffered in memory, size-capped, hashed on the fly,
 * retried on network errors and 5xx.
 *
 * Per attempt: GET (redirects followed by hand, at most maxRedirects hops, each hop through
 * the SSRF-guarded dispatcher) → stream into `<dest>.part` → verify length and sha256 →
 * rename to dest. Retried: network errors, timeouts, 5xx, 408 and 429 (both mean "try again
 * later"); not retried: other 4xx, SSRF refusals, size-cap and sha256 failures (the same bytes
 * would come back). The URL's query string never appears in errors or logs: signed URLs
 * carry their token there.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { JobError, toJobError, type JobErrorCode } from '../core/errors.js';
import { isOutboundBlockedError } from '../net/outbound.js';
import { getFollowingRedirects, RedirectError } from '../net/redirects.js';

export type DownloadOptions = {
  dispatcher: Dispatcher;
  maxBytes: number;
  /** Idle timeout: for the response headers, and between two body chunks (ms). */
  timeoutMs: number;
  /** Extra attempts after the first. */
  retries: number;
  sha256?: string | undefined;
  /** Throttled to about 10 calls a second, plus a final one. total is null without Content-Length. */
  onProgress?: ((bytes: number, total: number | null) => void) | undefined;
  signal?: AbortSignal | undefined;
  maxRedirects?: number;
  /** First retry delay (doubles each time, with jitter, capped at 30 s). */
  backoffMs?: number;
  /** DATASET_DOWNLOAD_FAILED for datasets; MODEL_DOWNLOAD_FAILED when fetching base weights. */
  errorCode?: JobErrorCode;
  /**
   * Called with the announced length (null without Content-Length) before the body is read; a
   * JobError it throws ends the download at once, unretried (the disk pre-flight refuses here).
   */
  beforeBody?: ((total: number | null) => void | Promise<void>) | undefined;
  /**
   * What an earlier download of this URL was answered with: sent as If-None-Match and
   * If-Modified-Since, so that a server whose file has not changed answers 304 and nothing is
   * downloaded (the result then has notModified: true and no file is written).
   */
  validators?: Validators | undefined;
  /**
   * Headers for the URL's own origin (a bearer token): a redirect to another origin (a CDN) is
   * followed without them, so a credential never leaves the host it was meant for.
   */
  headers?: Record<string, string> | undefined;
};

/** A response's ETag and Last-Modified, as the server sent them. */
export type Validators = { etag: string | null; lastModified: string | null };

export type DownloadResult = { bytes: number; sha256: string; attempts: number; validators: Validators; notModified: boolean };

/** The URL as it may be shown: scheme, host and path; no credentials, query or fragment. */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

/** Why an attempt failed, and whether another attempt may succeed. */
class AttemptError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly extra: { status?: number; reason?: string; retryAfterMs?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
]);

function hint(status: number): string {
  if (status === 401 || status === 403) return 'the link may have expired or need credentials; send a fresh signed URL';
  if (status === 404 || status === 410) return 'check that the URL is right and the file still exists';
  if (status >= 500) return 'the server failed; try again later';
  return 'check the URL';
}

function retryAfterMs(headers: Record<string, string | string[] | undefined>): number | undefined {
  const v = headers['retry-after'];
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const secs = Number(s);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(s);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

function validatorsOf(headers: Record<string, string | string[] | undefined>): Validators {
  const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v) ?? null;
  return { etag: one(headers['etag']), lastModified: one(headers['last-modified']) };
}

type AttemptResult = { bytes: number; sha256: string; validators: Validators; notModified: boolean };

async function attempt(url: URL, dest: string, opts: DownloadOptions): Promise<AttemptResult> {
  const conditional: Record<string, string> = {};
  if (opts.validators?.etag) conditional['if-none-match'] = opts.validators.etag;
  if (opts.validators?.lastModified) conditional['if-modified-since'] = opts.validators.lastModified;
  let res: Dispatcher.ResponseData;
  let current: URL;
  try {
    ({ res, url: current } = await getFollowingRedirects(url, {
      dispatcher: opts.dispatcher,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      headers: { 'accept-encoding': 'identity', 'user-agent': 'trainhook', ...conditional },
      originHeaders: opts.headers,
      maxRedirects: opts.maxRedirects ?? 5,
    }));
  } catch (err) {
    if (err instanceof RedirectError) throw new AttemptError(err.message, false, { status: err.status });
    throw classify(err);
  }
  const status = res.statusCode;
  if (status === 304 && Object.keys(conditional).length > 0) {
    await res.body.dump();
    return { bytes: 0, sha256: '', validators: opts.validators!, notModified: true };
  }
  if (status < 200 || status >= 300) {
    await res.body.dump().catch(() => {});
    const retryable = status >= 500 || status === 408 || status === 429;
    throw new AttemptError(`HTTP ${status} from ${redactUrl(current)} (${hint(status)})`, retryable, {
      status,
      retryAfterMs: retryAfterMs(res.headers),
    });
  }
  return save(res, current, dest, opts);
}

/**
 * Drops a body not read: undici's readable then emits an AbortError, which with no listener
 * would be an uncaught exception (seen when the body had already arrived whole).
 */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {});
  body.destroy();
}

async function save(res: Dispatcher.ResponseData, url: URL, dest: string, opts: DownloadOptions) {
  const lengthHeader = res.headers['content-length'];
  const total = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
  if (total !== null && total > opts.maxBytes) {
    discard(res.body);
    throw new AttemptError(`the file is ${total} bytes, over the ${opts.maxBytes}-byte limit`, false, {
      status: res.statusCode,
      reason: 'TOO_LARGE',
    });
  }
  if (opts.beforeBody) {
    try {
      await opts.beforeBody(total);
    } catch (err) {
      discard(res.body);
      throw err;
    }
  }
  const hash = createHash('sha256');
  let bytes = 0;
  let lastReport = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      // Counted, not trusted from headers: a server may send more than it announced, or no length at all.
      if (bytes > opts.maxBytes) {
        cb(new AttemptError(`the download passed the ${opts.maxBytes}-byte limit`, false, { status: res.statusCode, reason: 'TOO_LARGE' }));
        return;
      }
      hash.update(chunk);
      const now = Date.now();
      if (opts.onProgress && now - lastReport >= 100) {
        lastReport = now;
        opts.onProgress(bytes, total);
      }
      cb(null, chunk);
    },
  });
  const part = `${dest}.part`;
  try {
    await pipeline(res.body, meter, createWriteStream(part));
  } catch (err) {
    await rm(part, { force: true });
    const code = (err as { code?: string }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw toJobError(err);
    throw err instanceof AttemptError ? err : classify(err);
  }
  if (total !== null && bytes !== total) {
    await rm(part, { force: true });
    throw new AttemptError(`the connection closed after ${bytes} of ${total} bytes`, true, { status: res.statusCode });
  }
  const sha256 = hash.digest('hex');
  if (opts.sha256 && sha256 !== opts.sha256.trim().toLowerCase()) {
    await rm(part, { force: true });
    throw new AttemptError(
      `sha256 mismatch: expected ${opts.sha256.trim().toLowerCase()}, got ${sha256} (${bytes} bytes from ${redactUrl(url)}); the file changed or the checksum is wrong`,
      false,
      { status: res.statusCode, reason: 'SHA256_MISMATCH' },
    );
  }
  await rename(part, dest);
  opts.onProgress?.(bytes, total);
  return { bytes, sha256, validators: validatorsOf(res.headers), notModified: false };
}

function classify(err: unknown): AttemptError {
  if (err instanceof AttemptError) return err;
  if (isOutboundBlockedError(err)) {
    return new AttemptError(err.message, false, { reason: 'SSRF_BLOCKED' }, { cause: err });
  }
  const code = (err as { code?: string }).code ?? '';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new AttemptError(`the server stopped answering (${code === 'UND_ERR_HEADERS_TIMEOUT' ? 'no response headers' : 'no data'} within the timeout)`, true, { reason: code }, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  // Never echo undici's message verbatim when it might hold the URL: it holds host only, but be sure.
  const safe = message.replace(/\?[^\s'"]*/g, '?…');
  return new AttemptError(`network error: ${code ? `${code} ` : ''}${safe}`, RETRYABLE_CODES.has(code) || !code, { reason: code || undefined }, { cause: err });
}

export async function downloadToFile(url: string, dest: string, opts: DownloadOptions): Promise<DownloadResult> {
  const errorCode = opts.errorCode ?? 'DATASET_DOWNLOAD_FAILED';
  const shown = redactUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new JobError(errorCode, 'the download URL is not a valid URL', { url: shown });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new JobError(errorCode, `unsupported URL scheme ${parsed.protocol} (only http and https)`, { url: shown });
  }
  const attempts = opts.retries + 1;
  const base = opts.backoffMs ?? 1000;
  for (let n = 1; ; n++) {
    if (opts.signal?.aborted) throw new JobError('CANCELLED', 'download cancelled', { url: shown });
    try {
      const r = await attempt(parsed, dest, opts);
      return { ...r, attempts: n };
    } catch (e) {
      if (opts.signal?.aborted) throw new JobError('CANCELLED', 'download cancelled', { url: shown }, { cause: e });
      if (e instanceof JobError) throw e; // the host's own refusal (disk), not the transfer's
      const err = e instanceof AttemptError ? e : classify(e);
      if (!err.retryable || n >= attempts) {
        const tries = n > 1 ? ` after ${n} attempts` : '';
        throw new JobError(
          errorCode,
          `download of ${shown} failed${tries}: ${err.message}`,
          // transient: a later try may succeed (network error, 5xx), so the job may be retried.
          { url: shown, status: err.extra.status ?? null, attempt: n, reason: err.extra.reason ?? null, transient: err.retryable },
          { cause: err },
        );
      }
      const backoff = Math.min(30_000, base * 2 ** (n - 1)) * (0.5 + Math.random() * 0.5);
      const wait = err.extra.retryAfterMs !== undefined ? Math.min(60_000, err.extra.retryAfterMs) : backoff;
      await sleep(wait, undefined, { signal: opts.signal }).catch(() => {});
    }
  }
}
