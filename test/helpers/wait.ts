/** Polls until fn returns something truthy, or fails naming what it waited for. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

type Call = (pathname: string, init?: RequestInit & { json?: unknown }) => Promise<{ status: number; json: any }>;

/** A job's view once it has ended (completed, failed or cancelled). */
export function jobEnded(call: Call, id: string, timeoutMs = 300_000): Promise<any> {
  return waitFor(`job ${id}`, async () => {
    const j = await call(`/api/v1/jobs/${id}`);
    return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
  }, timeoutMs);
}

/** POST /jobs/{id}/retry once the cancelled job's worker has stopped (409 JOB_STOPPING until then). */
export function retryWhenStopped(call: Call, id: string): Promise<{ status: number; json: any; text?: string }> {
  return waitFor('the retry to be accepted', async () => {
    const again = await call(`/api/v1/jobs/${id}/retry`, { method: 'POST' });
    return !(again.status === 409 && again.json.error.code === 'JOB_STOPPING') && again;
  }, 60_000);
}
