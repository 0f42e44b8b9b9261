/**
 * Supabase Edge Function `webhook-ingest` (seed 003 §8.1.2): receives trainhook's callbacks and
 * updates the `training_jobs` table of seed 003 §4.3.
 *
 * Deploy (see README.md beside this file):
 *   supabase secrets set TRAINING_CALLBACK_SECRET=<the callback_secret train-yolo-model sends>
 *   supabase functions deploy webhook-ingest --no-verify-jwt
 *
 * What it checks, in order:
 *   1. the Standard Webhooks signature (webhook-id, webhook-timestamp within 5 min,
 *      webhook-signature = HMAC-SHA256 of "id.timestamp.body" keyed with the secret), which
 *      proves the body came from trainhook unchanged and is not an old replay;
 *   2. when REQUIRE_SIGNATURE=false and the request carries no signature, the seed's plain
 *      X-Callback-Secret header, compared in constant time (older senders).
 * Then it applies the event at most once (webhook-id in `training_webhook_events`) and answers:
 *   2xx  stored (trainhook stops sending this event)
 *   401  not from trainhook (trainhook retries, then gives up: check the secret)
 *   410  the job is not in training_jobs (deleted): trainhook stops this job's callbacks
 *   500  the database failed: trainhook retries with backoff, in order
 */
import { createClient } from 'npm:@supabase/supabase-js@2';
import { Webhook } from 'npm:standardwebhooks@1.1.1';

const SECRET = Deno.env.get('TRAINING_CALLBACK_SECRET') ?? '';
const REQUIRE_SIGNATURE = (Deno.env.get('REQUIRE_SIGNATURE') ?? 'true') !== 'false';

// A `whsec_…` secret is base64 after the prefix; any other secret is keyed by its UTF-8 bytes.
const webhook = SECRET.startsWith('whsec_')
  ? new Webhook(SECRET)
  : new Webhook(new TextEncoder().encode(SECRET), { format: 'raw' });

const supabase = createClient(Deno.env.get('SUPABASE_URL')!, Deno.env.get('SUPABASE_SERVICE_ROLE_KEY')!, {
  auth: { persistSession: false },
});

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
  status: 'failed' | 'cancelled';
  error: { code: string; message: string; details: unknown; phase: string; epoch: number | null };
  partial_metrics: Record<string, number | null> | null;
};
type Callback = Progress | Completed | Failed;

const FINISHED = ['completed', 'failed', 'cancelled'];

function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i % x.length] ?? 0) ^ (y[i % y.length] ?? 0);
  return diff === 0 && x.length > 0;
}

function authenticate(req: Request, body: string): Callback | null {
  const headers = Object.fromEntries(req.headers);
  if (headers['webhook-signature']) {
    try {
      return webhook.verify(body, headers) as Callback;
    } catch {
      return null;
    }
  }
  if (REQUIRE_SIGNATURE) return null;
  const secret = req.headers.get('x-callback-secret') ?? '';
  return constantTimeEqual(secret, SECRET) ? (JSON.parse(body) as Callback) : null;
}

Deno.serve(async (req) => {
  if (req.method !== 'POST') return new Response('Method Not Allowed', { status: 405 });
  if (!SECRET) return new Response('TRAINING_CALLBACK_SECRET is not set', { status: 500 });
  // Verify the raw bytes before parsing anything.
  const body = await req.text();
  const event = authenticate(req, body);
  if (!event) return new Response('Unauthorized', { status: 401 });

  const jobId = req.headers.get('x-job-id') ?? event.job_id;
  if (jobId !== event.job_id) return new Response('X-Job-ID does not match the body', { status: 400 });
  const eventId = req.headers.get('webhook-id');

  const { data: job, error: readError } = await supabase.from('training_jobs').select('id, status').eq('id', jobId).maybeSingle();
  if (readError) return new Response(readError.message, { status: 500 });
  // 410 tells trainhook to stop sending callbacks for this job.
  if (!job) return new Response('Gone', { status: 410 });

  // At most once per webhook-id: trainhook retries until it sees a 2xx, so the same event can
  // arrive again (a lost answer, a manual redelivery).
  if (eventId) {
    const { error } = await supabase.from('training_webhook_events').insert({ id: eventId, job_id: jobId, type: event.type });
    if (error?.code === '23505') return new Response(null, { status: 204 }); // seen before
    if (error) return new Response(error.message, { status: 500 });
  }

  const now = new Date().toISOString();
  let update: Record<string, unknown>;
  switch (event.type) {
    case 'training_progress':
      // Events arrive in order, but a redelivered old progress must not reopen a finished job.
      if (FINISHED.includes(job.status)) return new Response(null, { status: 204 });
      update = {
        status: 'training',
        progress: event.progress.percentage,
        current_epoch: event.progress.current_epoch,
        loss: event.metrics.current.box_loss,
        metrics: event.metrics,
        updated_at: now,
        ...(job.status !== 'training' ? { started_at: now } : {}),
      };
      break;
    case 'training_completed':
      update = {
        status: 'completed',
        progress: 100,
        metrics: event.final_metrics,
        loss: event.final_metrics.box_loss,
        model_url: event.model.download_url,
        completed_at: now,
        updated_at: now,
      };
      break;
    case 'training_failed':
      update = {
        status: event.status, // 'failed', or 'cancelled' (error.code CANCELLED)
        error_message: `${event.error.code}: ${event.error.message}`,
        updated_at: now,
      };
      break;
    default:
      return new Response('unknown X-Callback-Type', { status: 400 });
  }

  const { error: writeError } = await supabase.from('training_jobs').update(update).eq('id', jobId);
  if (writeError) {
    // Let trainhook retry: forget the id so the retry is applied.
    if (eventId) await supabase.from('training_webhook_events').delete().eq('id', eventId);
    return new Response(writeError.message, { status: 500 });
  }
  return new Response(null, { status: 204 });
});
