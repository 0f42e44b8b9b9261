/**
 * Supabase Edge Function `webhook-ingest`: receives trainhook's callbacks and updates the
 * upstream app's `training_jobs` table (../../migrations/ creates it and the dedup table).
 *
 * Deploy (see README.md at the top of this example):
 *   supabase secrets set TRAINING_CALLBACK_SECRET=<the callback_secret train-yolo-model sends>
 *   supabase functions deploy webhook-ingest --no-verify-jwt
 * Run locally: `deno serve --allow-net --allow-env index.ts` (the default export below is what
 * both Supabase's runtime and `deno serve` start).
 *
 * What it checks, in order:
 *   1. its own settings, on every request (a missing or malformed secret answers 500, so
 *      trainhook keeps retrying until the secret is fixed, and nothing crashes at start);
 *   2. the Standard Webhooks signature (webhook-id, webhook-timestamp within 5 min,
 *      webhook-signature = HMAC-SHA256 of "id.timestamp.body" keyed with the secret), which
 *      proves the body came from trainhook unchanged and is not an old replay;
 *   3. when REQUIRE_SIGNATURE=false and the request carries no signature, the plain
 *      X-Callback-Secret header, compared in constant time (older senders).
 * Then it applies the event at most once (webhook-id in `training_webhook_events`) and answers:
 *   2xx  stored, or seen before (trainhook stops sending this event)
 *   400  not a callback it knows (trainhook retries; nothing is recorded)
 *   401  not from trainhook (trainhook retries, then gives up: check the secret)
 *   410  the job is not in training_jobs (deleted): trainhook stops this job's callbacks
 *   500  misconfigured, or the database failed: trainhook retries with backoff, in order
 */
import { createClient, type SupabaseClient } from 'npm:@supabase/supabase-js@2.119.1';
import { Webhook } from 'npm:standardwebhooks@1.1.1';

type Progress = {
  type: 'training_progress';
  job_id: string;
  timestamp: string;
  progress: { percentage: number; current_epoch: number; total_epochs: number; phase: string; eta_seconds: number | null };
  metrics: {
    current: Record<string, number | null>;
    best: { mAP50: number | null; 'mAP50-95': number | null; epoch: number | null };
  };
  resources: Record<string, unknown> | null;
};
type Completed = {
  type: 'training_completed';
  job_id: string;
  timestamp: string;
  status: 'completed';
  duration_seconds: number;
  model: { name: string; download_url: string | null; size_mb: number | null; format: string; expires_at: string | null };
  final_metrics: Record<string, number | null>;
  artifacts: Record<string, string | null>;
  dataset_info: Record<string, unknown> | null;
};
type Failed = {
  type: 'training_failed';
  job_id: string;
  timestamp: string;
  /** "failed"; "cancelled" for a cancellation when the job asked for it (callback_options). */
  status: 'failed' | 'cancelled';
  error: { code: string; message: string; details: unknown; phase: string; epoch: number | null };
  partial_metrics: Record<string, number | null> | null;
};
type Callback = Progress | Completed | Failed;

const TYPES = ['training_progress', 'training_completed', 'training_failed'];
const FINISHED = ['completed', 'failed', 'cancelled'];

/** What the function needs from its environment, read per request (secrets can be set later). */
type Settings = { secret: string; webhook: Webhook; requireSignature: boolean; supabase: SupabaseClient };

let cached: { key: string; settings: Settings } | null = null;

function settings(): Settings | string {
  const secret = Deno.env.get('TRAINING_CALLBACK_SECRET') ?? '';
  const url = Deno.env.get('SUPABASE_URL') ?? '';
  const serviceKey = Deno.env.get('SUPABASE_SERVICE_ROLE_KEY') ?? '';
  const requireSignature = (Deno.env.get('REQUIRE_SIGNATURE') ?? 'true') !== 'false';
  if (!secret) return 'TRAINING_CALLBACK_SECRET is not set';
  if (!url) return 'SUPABASE_URL is not set';
  if (!serviceKey) return 'SUPABASE_SERVICE_ROLE_KEY is not set';
  const key = JSON.stringify([secret, url, serviceKey, requireSignature]);
  if (cached?.key === key) return cached.settings;
  let webhook: Webhook;
  try {
    // A `whsec_…` secret is base64 after the prefix; any other secret is keyed by its UTF-8 bytes.
    webhook = secret.startsWith('whsec_')
      ? new Webhook(secret)
      : new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
  } catch (err) {
    // Never echo the secret: the library's message names the problem only.
    return `TRAINING_CALLBACK_SECRET is malformed: ${(err as Error).message}`;
  }
  const supabase = createClient(url, serviceKey, { auth: { persistSession: false, autoRefreshToken: false } });
  cached = { key, settings: { secret, webhook, requireSignature, supabase } };
  return cached.settings;
}

function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i % x.length] ?? 0) ^ (y[i % y.length] ?? 0);
  return diff === 0 && x.length > 0;
}

function authenticate(req: Request, body: string, s: Settings): Callback | null {
  const headers = Object.fromEntries(req.headers);
  if (headers['webhook-signature']) {
    try {
      return s.webhook.verify(body, headers) as Callback;
    } catch {
      return null;
    }
  }
  if (s.requireSignature) return null;
  const secret = req.headers.get('x-callback-secret') ?? '';
  if (!constantTimeEqual(secret, s.secret)) return null;
  try {
    return JSON.parse(body) as Callback;
  } catch {
    return null;
  }
}

/** The training_jobs columns an event sets; null: nothing to change. */
function updateFor(event: Callback, job: { status: string }, now: string): Record<string, unknown> | null {
  switch (event.type) {
    case 'training_progress': {
      // Events arrive in order, but a redelivered old progress must not reopen a finished job.
      if (FINISHED.includes(job.status)) return null;
      const loss = event.metrics.current.box_loss;
      return {
        status: 'training',
        progress: event.progress.percentage,
        current_epoch: event.progress.current_epoch,
        // Before the first epoch ends there is no loss yet: keep what is there.
        ...(loss !== null ? { loss } : {}),
        metrics: event.metrics,
        updated_at: now,
        ...(job.status !== 'training' ? { started_at: now } : {}),
      };
    }
    case 'training_completed': {
      const loss = event.final_metrics.box_loss;
      return {
        status: 'completed',
        progress: 100,
        metrics: event.final_metrics,
        ...(loss !== null ? { loss } : {}),
        model_url: event.model.download_url,
        error_message: null,
        completed_at: now,
        updated_at: now,
      };
    }
    case 'training_failed':
      return {
        // A cancellation is stored as such whichever status the job asked trainhook to send
        // (training_jobs has a 'cancelled' status); the code says what happened.
        status: event.error.code === 'CANCELLED' ? 'cancelled' : 'failed',
        error_message: `${event.error.code}: ${event.error.message}`,
        updated_at: now,
      };
  }
}

async function handle(req: Request): Promise<Response> {
  if (req.method !== 'POST') return new Response('Method Not Allowed', { status: 405, headers: { allow: 'POST' } });
  const s = settings();
  if (typeof s === 'string') {
    console.error(`webhook-ingest: ${s}`);
    return new Response(s, { status: 500 });
  }
  // Verify the raw bytes before parsing anything.
  const body = await req.text();
  const event = authenticate(req, body, s);
  if (!event) return new Response('Unauthorized', { status: 401 });
  if (!TYPES.includes(event.type)) return new Response('unknown callback type', { status: 400 });

  const jobId = req.headers.get('x-job-id') ?? event.job_id;
  if (jobId !== event.job_id) return new Response('X-Job-ID does not match the body', { status: 400 });
  const eventId = req.headers.get('webhook-id');

  const { data: job, error: readError } = await s.supabase.from('training_jobs').select('id, status').eq('id', jobId).maybeSingle();
  if (readError) return new Response(readError.message, { status: 500 });
  // 410 tells trainhook to stop sending callbacks for this job.
  if (!job) return new Response('Gone', { status: 410 });

  // At most once per webhook-id: trainhook retries until it sees a 2xx, so the same event can
  // arrive again (a lost answer, a manual redelivery).
  if (eventId) {
    const { error } = await s.supabase.from('training_webhook_events').insert({ id: eventId, job_id: jobId, type: event.type });
    if (error?.code === '23505') return new Response(null, { status: 204 }); // seen before
    if (error) return new Response(error.message, { status: 500 });
  }

  const update = updateFor(event, job, new Date().toISOString());
  if (!update) return new Response(null, { status: 204 });
  const { error: writeError } = await s.supabase.from('training_jobs').update(update).eq('id', jobId);
  if (writeError) {
    // Let trainhook retry: forget the id so the retry is applied.
    if (eventId) await s.supabase.from('training_webhook_events').delete().eq('id', eventId);
    return new Response(writeError.message, { status: 500 });
  }
  return new Response(null, { status: 204 });
}

export default { fetch: handle } satisfies Deno.ServeDefaultExport;
