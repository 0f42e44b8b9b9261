/**
 * Every environment variable trainhook reads, in one place, parsed once with zod into a frozen
 * typed config that is passed down. No module reads process.env on its own.
 */
import path from 'node:path';
import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const list = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

const EnvSchema = z.object({
  PORT: int(0, 65535).default(8000),
  HOST: z.string().min(1).default('127.0.0.1'),
  /** Public base URL used in links (download links, status page links in callbacks). */
  PUBLIC_URL: z.string().url().optional(),
  WORKDIR: z.string().min(1).default('workdir'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional(),
  API_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  REQUEST_SIGNING_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Rotation: a second accepted signing secret. */
  REQUEST_SIGNING_SECRET_PREVIOUS: z.string().min(16).optional(),
  SIGNATURE_TOLERANCE_SECONDS: int(1, 3600).default(300),
  /** Key for signed download links; generated under workdir/ when absent. */
  LINK_SIGNING_KEY: z.string().min(32).optional(),
  DOWNLOAD_LINK_TTL_SECONDS: int(60).default(7 * 24 * 3600),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  MAX_BODY_BYTES: int(1024).default(1024 * 1024),
  /** Body limit of POST /api/v1/models/{id}/predict and …/generate (images), instead of MAX_BODY_BYTES. */
  PREDICT_MAX_BYTES: int(1024).default(64 * 1024 * 1024),
  MAX_QUEUE_LENGTH: int(1).default(100),
  /** How long GET /jobs/{id} may serve a job read before (changes made on this node show at once). */
  JOB_CACHE_SIZE: int(0, 1_000_000).default(10_000),
  /** Requests per minute per client on POST /train. */
  TRAIN_RATE_LIMIT_PER_MINUTE: int(1).default(30),

  /** false: an API-only node that queues jobs for other nodes sharing its PostgreSQL. */
  RUN_JOBS: bool.default(true),
  /** Devices that get one training slot each: "auto" finds GPUs, else e.g. "cpu" or "cuda:0,cuda:1". */
  DEVICES: z.string().default('auto'),
  LEASE_SECONDS: int(5).default(60),
  NODE_ID: z.string().optional(),
  CANCEL_GRACE_SECONDS: int(1).default(30),

  /** An interpreter for every engine's worker (with every engine's requirements); <ENGINE>_PYTHON for one. */
  PYTHON: z.string().optional(),
  /** Base model downloads fetch `<prefix><file name>` instead of the official URL (sites without internet). */
  BASE_MODEL_MIRROR: z
    .string()
    .url()
    .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL prefix')
    .optional(),
  /** Local model folders (save_pretrained directories) that base_model may name; default WORKDIR/hf-models. */
  HF_MODELS_DIR: z.string().min(1).optional(),
  /** The Hugging Face Hub that base_model ids (owner/name[@revision]) are downloaded from, by the service. */
  HF_ENDPOINT: z
    .string()
    .url()
    .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
    .default('https://huggingface.co'),
  /** A Hub access token for private or gated repos: sent as a bearer token to HF_ENDPOINT only. */
  HF_TOKEN: z.string().min(1).optional(),
  /** The Hub's older name for HF_TOKEN, read when HF_TOKEN is unset. */
  HUGGING_FACE_HUB_TOKEN: z.string().min(1).optional(),
  /** Hub ids are then only served from the cache (workdir/hf-cache/); anything else fails with MODEL_DOWNLOAD_FAILED. */
  HF_HUB_OFFLINE: bool.default(false),
  /** The most bytes of one Hub snapshot, all its files together. */
  HF_DOWNLOAD_MAX_BYTES: int(1024).default(50 * 1024 ** 3),
  DATASET_MAX_DOWNLOAD_BYTES: int(1024).default(20 * 1024 ** 3),
  DATASET_MAX_UNCOMPRESSED_BYTES: int(1024).default(50 * 1024 ** 3),
  DATASET_MAX_ENTRIES: int(1).default(500_000),
  DATASET_MAX_COMPRESSION_RATIO: int(1).default(200),
  DOWNLOAD_TIMEOUT_SECONDS: int(1).default(600),
  DOWNLOAD_RETRIES: int(0, 10).default(3),
  /** Hosts, IPs or CIDRs that may be private/loopback (SSRF allow-list), e.g. "127.0.0.1,10.0.0.0/8". */
  OUTBOUND_ALLOW: list.default([]),

  CALLBACK_SEND_SECRET_HEADER: bool.default(true),
  CALLBACK_TIMEOUT_SECONDS: int(1, 120).default(15),
  /** Standard Webhooks example schedule, in seconds after the previous attempt. */
  CALLBACK_RETRY_SCHEDULE: list
    .default(['0', '5', '300', '1800', '7200', '18000', '36000', '50400', '72000', '86400'])
    .pipe(z.array(z.string().regex(/^\d+(\.\d+)?$/, 'must be seconds').transform(Number))),
  CALLBACK_PROGRESS_MIN_INTERVAL_MS: int(0).default(500),
  /** Callback attempts in flight at once on this node (at most one per job). */
  CALLBACK_CONCURRENCY: int(1, 1000).default(128),
  /** How often the dispatcher looks for callbacks written by other nodes. */
  CALLBACK_POLL_INTERVAL_MS: int(50).default(1000),

  UI_PUBLIC_READ: bool.default(false),
  MONITOR_INTERVAL_SECONDS: int(1).default(5),
  GPU_TEMP_WARN_C: int(0).default(85),
  GPU_MEMORY_WARN_PERCENT: int(1, 100).default(95),
  /** Seconds between SSE heartbeat events. */
  SSE_HEARTBEAT_SECONDS: z.coerce.number().positive().max(3600).default(15),
  /** Bytes one SSE client may have waiting before it is disconnected as too slow. */
  SSE_CLIENT_BUFFER_BYTES: int(4096).default(1024 * 1024),

  /** A training worker silent (no event) this long is stopped; the attempt fails with WORKER_STALLED. */
  WORKER_STALL_SECONDS: z.coerce.number().positive().default(900),
  /** A job running longer than this (hours, fractions allowed) is stopped for good with JOB_TIMEOUT. */
  JOB_MAX_HOURS: z.coerce.number().positive().default(72),
  /** Failed attempts (worker crash, stall, network or 5xx on downloads) before a job fails for good. */
  JOB_MAX_ATTEMPTS: int(1, 100).default(3),
  /** Wait before the first retry; doubled before each next one. */
  JOB_RETRY_BACKOFF_SECONDS: z.coerce.number().min(0).default(30),
  /** Under this much free disk in the workdir, POST /train answers 503 and /health is degraded (0: off). */
  MIN_FREE_DISK_GB: z.coerce.number().min(0).default(1),
  /**
   * Disk kept free for the database and logs: on top of every pre-flight, and a running worker is
   * stopped under it. Half of it (at most 16 MiB) is held as workdir/disk-reserve (pipeline/disk-ballast.ts).
   */
  DISK_RESERVE_MB: z.coerce.number().min(0).default(256),
  /** Disk a job's outputs (checkpoints, plots, logs) are expected to take, counted by the pre-flight. */
  JOB_OUTPUT_DISK_MB: z.coerce.number().min(0).default(2048),
  /** Available RAM a job needs to start when its request sets no resources.max_memory_gb. */
  MIN_FREE_MEMORY_GB: z.coerce.number().min(0).default(1),
  /** Free memory a job needs on its GPU to start. */
  MIN_FREE_GPU_MEMORY_GB: z.coerce.number().min(0).default(1),
  /** /health is degraded when the database takes longer than this to answer `select 1`. */
  DB_SLOW_MS: int(1).default(1000),
  /** Days after a job finished when its dataset, checkpoints and plots are removed (fractions allowed; 0 keeps them). */
  RETENTION_DAYS: z.coerce.number().min(0).max(36500).default(30),
  /** Seconds between two retention sweeps (the first runs at start). */
  RETENTION_SWEEP_SECONDS: z.coerce.number().positive().max(7 * 24 * 3600).default(3600),
  /** Days callback delivery attempts are kept once their event is no longer pending (fractions allowed). */
  CALLBACK_HISTORY_DAYS: z.coerce.number().positive().max(36500).default(30),
  /**
   * Where job files, registered models and dataset archives are kept: `local` (the workdir,
   * nothing copied), `file:///path` (a folder every node mounts) or `s3://bucket/prefix`.
   */
  STORAGE_URL: z
    .string()
    .regex(/^(local|file:\/\/\/.+|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?)$/, 'must be local, file:///path or s3://bucket/prefix')
    .default('local'),
  /** An S3-compatible endpoint other than AWS (MinIO, Ceph, R2), e.g. http://10.0.0.5:9000. */
  S3_ENDPOINT: z.string().url().refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL').optional(),
  /** Bucket in the path (http://host/bucket/key) instead of the host name; default true with S3_ENDPOINT. */
  S3_FORCE_PATH_STYLE: bool.optional(),
  /** true: downloads redirect to presigned bucket URLs; false: trainhook streams them (clients cannot reach the bucket). */
  STORAGE_PUBLIC: bool.default(true),
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),
  AWS_SESSION_TOKEN: z.string().optional(),
  AWS_REGION: z.string().default('us-east-1'),
  /**
   * The SDK's own settings for the CRC checksums it adds to uploads and checks on downloads.
   * Default: WHEN_SUPPORTED on AWS; WHEN_REQUIRED with S3_ENDPOINT, since many S3-compatible
   * stores refuse those checksums' headers or aws-chunked bodies.
   */
  AWS_REQUEST_CHECKSUM_CALCULATION: z.enum(['WHEN_SUPPORTED', 'WHEN_REQUIRED']).optional(),
  AWS_RESPONSE_CHECKSUM_VALIDATION: z.enum(['WHEN_SUPPORTED', 'WHEN_REQUIRED']).optional(),
  /** Alerts: where fired/resolved events go (a Standard Webhooks receiver, or a Slack incoming webhook). */
  ALERT_WEBHOOK_URL: z.string().url().refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL').optional(),
  /** Signs alert events as callbacks are signed (`whsec_…` or a plain string of 24+ characters). */
  ALERT_WEBHOOK_SECRET: z.string().optional(),
  /** smtp://user:pass@host:port (STARTTLS when offered) or smtps://…: alerts also go by email. */
  SMTP_URL: z.string().regex(/^smtps?:\/\/[^/]+/, 'must be an smtp:// or smtps:// URL').optional(),
  ALERT_EMAIL_TO: list.optional(),
  ALERT_EMAIL_FROM: z.string().min(3).optional(),
  /** A job running longer than this many hours raises an alert. */
  ALERT_JOB_HOURS: z.coerce.number().positive().default(24),
  /** More queued jobs than this raises an alert. */
  ALERT_QUEUE_LENGTH: int(0).default(50),
  /** The workdir's file system used at or above this percentage raises an alert. */
  ALERT_DISK_PERCENT: z.coerce.number().min(0).max(100).default(90),
  /** A running job with no recorded change (phase, progress, epoch) for this long raises an alert. */
  ALERT_STALL_SECONDS: int(1).default(900),
  /** A callback endpoint with nothing delivered and an event waiting for this many hours raises an alert. */
  ALERT_CALLBACK_FAILING_HOURS: z.coerce.number().positive().default(24),
});

export type Config = Readonly<{
  port: number;
  host: string;
  publicUrl: string | undefined;
  workdir: string;
  databaseUrl: string | undefined;
  apiToken: string | undefined;
  requestSigningSecrets: readonly string[];
  signatureToleranceSeconds: number;
  linkSigningKey: string | undefined;
  downloadLinkTtlSeconds: number;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  maxBodyBytes: number;
  predictMaxBytes: number;
  maxQueueLength: number;
  jobCacheSize: number;
  trainRateLimitPerMinute: number;
  runJobs: boolean;
  devices: string;
  leaseSeconds: number;
  nodeId: string | undefined;
  cancelGraceSeconds: number;
  python: string | undefined;
  /** <ENGINE>_PYTHON settings (ULTRALYTICS_PYTHON, RFDETR_PYTHON…), by engine name in lower case. */
  enginePython: Readonly<Record<string, string>>;
  baseModelMirror: string | undefined;
  /** Where base_model folders of the engines that take one are placed by hand (HF_MODELS_DIR). */
  hfModelsDir: string;
  /** The Hugging Face Hub for base_model ids (HF_ENDPOINT without a trailing slash, HF_TOKEN, HF_HUB_OFFLINE, HF_DOWNLOAD_MAX_BYTES). */
  hub: Readonly<{ endpoint: string; token: string | undefined; offline: boolean; maxBytes: number }>;
  dataset: Readonly<{
    maxDownloadBytes: number;
    maxUncompressedBytes: number;
    maxEntries: number;
    maxCompressionRatio: number;
    downloadTimeoutMs: number;
    downloadRetries: number;
  }>;
  outboundAllow: readonly string[];
  callbacks: Readonly<{
    sendSecretHeader: boolean;
    timeoutMs: number;
    retryScheduleSeconds: readonly number[];
    progressMinIntervalMs: number;
    concurrency: number;
    pollIntervalMs: number;
  }>;
  uiPublicRead: boolean;
  monitor: Readonly<{ intervalMs: number; gpuTempWarnC: number; gpuMemoryWarnPercent: number }>;
  stream: Readonly<{ heartbeatMs: number; clientBufferBytes: number }>;
  retries: Readonly<{ workerStallMs: number; jobMaxMs: number; maxAttempts: number; backoffMs: number }>;
  resourceGuard: Readonly<{
    minFreeDiskBytes: number;
    diskReserveBytes: number;
    jobOutputBytes: number;
    minFreeMemoryBytes: number;
    minFreeGpuMemoryBytes: number;
    dbSlowMs: number;
  }>;
  retention: Readonly<{ days: number; sweepMs: number; callbackHistoryDays: number }>;
  storage: StorageConfig;
  alerts: Readonly<{
    webhookUrl: string | undefined;
    webhookSecret: string | undefined;
    smtpUrl: string | undefined;
    emailTo: readonly string[];
    emailFrom: string | undefined;
    jobHours: number;
    queueLength: number;
    diskPercent: number;
    stallSeconds: number;
    callbackFailingHours: number;
  }>;
}>;

/** When the S3 SDK adds checksums to uploads (request) and checks them on downloads (response). */
export type S3Checksums = Readonly<{ request: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED'; response: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED' }>;

export type StorageConfig = Readonly<
  | { kind: 'local'; /** Unset: the workdir itself. */ path: string | undefined }
  | {
      kind: 's3';
      bucket: string;
      prefix: string;
      endpoint: string | undefined;
      region: string;
      forcePathStyle: boolean;
      checksums: S3Checksums;
      /** Unset: the SDK's default chain (instance role, shared config files). */
      credentials: { accessKeyId: string; secretAccessKey: string; sessionToken: string | undefined } | undefined;
      public: boolean;
    }
>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings count as unset, as in most .env tooling.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ''),
    workdir: path.resolve(e.WORKDIR),
    databaseUrl: e.DATABASE_URL,
    apiToken: e.API_TOKEN,
    requestSigningSecrets: [e.REQUEST_SIGNING_SECRET, e.REQUEST_SIGNING_SECRET_PREVIOUS].filter(
      (s): s is string => !!s,
    ),
    signatureToleranceSeconds: e.SIGNATURE_TOLERANCE_SECONDS,
    linkSigningKey: e.LINK_SIGNING_KEY,
    downloadLinkTtlSeconds: e.DOWNLOAD_LINK_TTL_SECONDS,
    logLevel: e.LOG_LEVEL,
    maxBodyBytes: e.MAX_BODY_BYTES,
    predictMaxBytes: e.PREDICT_MAX_BYTES,
    maxQueueLength: e.MAX_QUEUE_LENGTH,
    jobCacheSize: e.JOB_CACHE_SIZE,
    trainRateLimitPerMinute: e.TRAIN_RATE_LIMIT_PER_MINUTE,
    runJobs: e.RUN_JOBS,
    devices: e.DEVICES,
    leaseSeconds: e.LEASE_SECONDS,
    nodeId: e.NODE_ID,
    cancelGraceSeconds: e.CANCEL_GRACE_SECONDS,
    python: e.PYTHON,
    enginePython: Object.freeze(
      Object.fromEntries(
        Object.entries(cleaned)
          .filter(([k]) => /^[A-Z][A-Z0-9]*_PYTHON$/.test(k))
          .map(([k, v]) => [k.slice(0, -'_PYTHON'.length).toLowerCase(), v as string]),
      ),
    ),
    baseModelMirror: e.BASE_MODEL_MIRROR,
    hfModelsDir: path.resolve(e.HF_MODELS_DIR ?? path.join(e.WORKDIR, 'hf-models')),
    hub: Object.freeze({ endpoint: e.HF_ENDPOINT.replace(/\/+$/, ''), token: e.HF_TOKEN ?? e.HUGGING_FACE_HUB_TOKEN, offline: e.HF_HUB_OFFLINE, maxBytes: e.HF_DOWNLOAD_MAX_BYTES }),
    dataset: Object.freeze({
      maxDownloadBytes: e.DATASET_MAX_DOWNLOAD_BYTES,
      maxUncompressedBytes: e.DATASET_MAX_UNCOMPRESSED_BYTES,
      maxEntries: e.DATASET_MAX_ENTRIES,
      maxCompressionRatio: e.DATASET_MAX_COMPRESSION_RATIO,
      downloadTimeoutMs: e.DOWNLOAD_TIMEOUT_SECONDS * 1000,
      downloadRetries: e.DOWNLOAD_RETRIES,
    }),
    outboundAllow: Object.freeze([...e.OUTBOUND_ALLOW]),
    callbacks: Object.freeze({
      sendSecretHeader: e.CALLBACK_SEND_SECRET_HEADER,
      timeoutMs: e.CALLBACK_TIMEOUT_SECONDS * 1000,
      retryScheduleSeconds: Object.freeze([...e.CALLBACK_RETRY_SCHEDULE]),
      progressMinIntervalMs: e.CALLBACK_PROGRESS_MIN_INTERVAL_MS,
      concurrency: e.CALLBACK_CONCURRENCY,
      pollIntervalMs: e.CALLBACK_POLL_INTERVAL_MS,
    }),
    uiPublicRead: e.UI_PUBLIC_READ,
    monitor: Object.freeze({
      intervalMs: e.MONITOR_INTERVAL_SECONDS * 1000,
      gpuTempWarnC: e.GPU_TEMP_WARN_C,
      gpuMemoryWarnPercent: e.GPU_MEMORY_WARN_PERCENT,
    }),
    stream: Object.freeze({
      heartbeatMs: Math.round(e.SSE_HEARTBEAT_SECONDS * 1000),
      clientBufferBytes: e.SSE_CLIENT_BUFFER_BYTES,
    }),
    retries: Object.freeze({
      workerStallMs: Math.round(e.WORKER_STALL_SECONDS * 1000),
      jobMaxMs: Math.round(e.JOB_MAX_HOURS * 3600 * 1000),
      maxAttempts: e.JOB_MAX_ATTEMPTS,
      backoffMs: Math.round(e.JOB_RETRY_BACKOFF_SECONDS * 1000),
    }),
    resourceGuard: Object.freeze({
      minFreeDiskBytes: Math.round(e.MIN_FREE_DISK_GB * 1024 ** 3),
      diskReserveBytes: Math.round(e.DISK_RESERVE_MB * 1024 ** 2),
      jobOutputBytes: Math.round(e.JOB_OUTPUT_DISK_MB * 1024 ** 2),
      minFreeMemoryBytes: Math.round(e.MIN_FREE_MEMORY_GB * 1024 ** 3),
      minFreeGpuMemoryBytes: Math.round(e.MIN_FREE_GPU_MEMORY_GB * 1024 ** 3),
      dbSlowMs: e.DB_SLOW_MS,
    }),
    retention: Object.freeze({
      days: e.RETENTION_DAYS,
      sweepMs: Math.round(e.RETENTION_SWEEP_SECONDS * 1000),
      callbackHistoryDays: e.CALLBACK_HISTORY_DAYS,
    }),
    storage: storageConfig(e),
    alerts: Object.freeze({
      webhookUrl: e.ALERT_WEBHOOK_URL,
      webhookSecret: e.ALERT_WEBHOOK_SECRET,
      smtpUrl: e.SMTP_URL,
      emailTo: Object.freeze(alertEmailTo(e.SMTP_URL, e.ALERT_EMAIL_TO)),
      emailFrom: e.ALERT_EMAIL_FROM,
      jobHours: e.ALERT_JOB_HOURS,
      queueLength: e.ALERT_QUEUE_LENGTH,
      diskPercent: e.ALERT_DISK_PERCENT,
      stallSeconds: e.ALERT_STALL_SECONDS,
      callbackFailingHours: e.ALERT_CALLBACK_FAILING_HOURS,
    }),
  });
}

/**
 * Who gets alert emails: ALERT_EMAIL_TO, else the SMTP login when it is an address (a mailbox
 * mailing itself). With SMTP_URL set and neither, there is nobody to send to: a config error.
 */
function alertEmailTo(smtpUrl: string | undefined, to: string[] | undefined): string[] {
  if (!smtpUrl) return [];
  if (to?.length) return to;
  let user = '';
  try {
    user = decodeURIComponent(new URL(smtpUrl).username);
  } catch {
    throw new ConfigError('invalid configuration:\n  SMTP_URL: not a valid URL');
  }
  if (user.includes('@')) return [user];
  throw new ConfigError('invalid configuration:\n  ALERT_EMAIL_TO: required when SMTP_URL is set and its user name is not an email address');
}

function storageConfig(e: z.infer<typeof EnvSchema>): StorageConfig {
  const url = e.STORAGE_URL;
  if (url === 'local') return Object.freeze({ kind: 'local', path: undefined });
  if (url.startsWith('file://')) return Object.freeze({ kind: 'local', path: path.resolve(decodeURIComponent(url.slice('file://'.length))) });
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
  if (prefix && !prefix.split('/').every((p) => /^[\w][\w.=-]{0,199}$/.test(p))) {
    throw new ConfigError('invalid configuration:\n  STORAGE_URL: the prefix may hold only letters, digits and . _ = - between slashes');
  }
  if (!!e.AWS_ACCESS_KEY_ID !== !!e.AWS_SECRET_ACCESS_KEY) {
    throw new ConfigError('invalid configuration:\n  AWS_SECRET_ACCESS_KEY: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together');
  }
  return Object.freeze({
    kind: 's3',
    bucket,
    prefix,
    endpoint: e.S3_ENDPOINT,
    region: e.AWS_REGION,
    forcePathStyle: e.S3_FORCE_PATH_STYLE ?? !!e.S3_ENDPOINT,
    checksums: Object.freeze({
      request: e.AWS_REQUEST_CHECKSUM_CALCULATION ?? (e.S3_ENDPOINT ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED'),
      response: e.AWS_RESPONSE_CHECKSUM_VALIDATION ?? (e.S3_ENDPOINT ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED'),
    }),
    credentials:
      e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY
        ? Object.freeze({ accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY, sessionToken: e.AWS_SESSION_TOKEN })
        : undefined,
    public: e.STORAGE_PUBLIC,
  });
}
