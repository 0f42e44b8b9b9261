/**
 * When a failed callback is tried again. The schedule lists the wait before each attempt,
 * the first being the first delivery (Standard Webhooks' example: at once, 5 s, 5 min, 30 min,
 * 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: ten attempts over about three days). Each wait gets ±10 %
 * jitter, so the retries of many events failed by one outage do not arrive together.
 */

/** Longest Retry-After we accept from a receiver (a day; anything longer is a typo or abuse). */
const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000;

/**
 * Milliseconds to wait after attempt number `attemptsMade` (1-based) failed, or null when the
 * schedule is exhausted (the event is dead).
 */
export function retryDelayMs(
  schedule: readonly number[],
  attemptsMade: number,
  retryAfterMs: number | null = null,
  random: () => number = Math.random,
): number | null {
  if (attemptsMade >= schedule.length) return null;
  if (retryAfterMs !== null) return Math.min(Math.max(0, retryAfterMs), MAX_RETRY_AFTER_MS);
  const base = schedule[attemptsMade]! * 1000;
  return Math.round(base * (0.9 + 0.2 * random()));
}

/** Retry-After: delta-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent or invalid. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs = Date.now()): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return null;
  const trimmed = v.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}
