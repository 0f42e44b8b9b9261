/**
 * The alert event as it travels: one JSON body for the webhook (structured fields, plus a
 * `text` that Slack-compatible incoming webhooks show as the message) and the same facts as
 * an email's subject and text.
 */
import crypto from 'node:crypto';
import type { AlertTransition } from './tracker.js';

export interface AlertEvent {
  type: 'alert.fired' | 'alert.resolved';
  /** Unique per event: the Standard Webhooks `webhook-id`, the same on every retry. */
  id: string;
  condition: string;
  severity: string;
  /** What the alert is about: a device, a job id, a callback endpoint, the queue, a disk. */
  subject: string;
  value: number;
  threshold: number;
  unit: string;
  node: string;
  /** When this event happened (fired or resolved). */
  time: string;
  /** When the condition started holding. */
  since: string;
  job_id: string | null;
  summary: string;
  text: string;
}

export function alertEvent(t: AlertTransition, node: string): AlertEvent {
  const c = t.condition;
  const fired = t.type === 'alert.fired';
  const lasted = fired ? '' : ` (after ${duration(t.at.getTime() - t.since.getTime())})`;
  const text = fired
    ? `:rotating_light: [FIRING ${c.severity}] ${c.condition} on ${node}: ${c.summary}`
    : `:white_check_mark: [RESOLVED] ${c.condition} on ${node}${lasted}: ${c.summary}`;
  return {
    type: t.type,
    id: `alert_${crypto.randomUUID()}`,
    condition: c.condition,
    severity: c.severity,
    subject: c.subject,
    value: c.value,
    threshold: c.threshold,
    unit: c.unit,
    node,
    time: t.at.toISOString(),
    since: t.since.toISOString(),
    job_id: c.jobId ?? null,
    summary: c.summary,
    text,
  };
}

export function emailSubject(e: AlertEvent): string {
  return e.type === 'alert.fired'
    ? `[trainhook] FIRING ${e.severity}: ${e.condition} on ${e.node}`
    : `[trainhook] RESOLVED: ${e.condition} on ${e.node}`;
}

export function emailText(e: AlertEvent): string {
  return [
    e.text.replace(/^:[a-z_]+: /, ''),
    '',
    `condition: ${e.condition}`,
    `severity:  ${e.severity}`,
    `subject:   ${e.subject}`,
    `value:     ${e.value} ${e.unit} (threshold ${e.threshold} ${e.unit})`,
    `node:      ${e.node}`,
    `since:     ${e.since}`,
    `time:      ${e.time}`,
    ...(e.job_id ? [`job:       ${e.job_id}`] : []),
    '',
  ].join('\n');
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}
