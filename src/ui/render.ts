/**
 * Server-side rendering of the status pages with eta (views/). Templates escape by default
 * (`<%= %>`); `h` holds the formatting every template shares, so numbers and times read the
 * same on every page and in public/live.js.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const VIEWS_DIR = path.join(ROOT, 'views');
export const PUBLIC_DIR = path.join(ROOT, 'public');

const eta = new Eta({ views: VIEWS_DIR, cache: true, autoTrim: [false, 'nl'] });

export function render(template: string, data: Record<string, unknown>): string {
  return eta.render(template, { ...data, h: helpers });
}

/** "1h 15m", "22m 18s", "45s"; "—" when unknown. */
function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function num(v: unknown, digits = 3): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '—';
}

function pct(v: number | null | undefined, digits = 0): string {
  return typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(digits)}%` : '—';
}

function gb(v: number | null | undefined): string {
  return typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(1)} GB` : '—';
}

function bytes(n: number | null | undefined): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** "2025-01-20 10:30:15 UTC" (the page is read from anywhere: one zone, said out loud). */
function date(value: Date | string | null | undefined): string {
  if (!value) return '—';
  const d = typeof value === 'string' ? new Date(value) : value;
  if (Number.isNaN(d.getTime())) return '—';
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** Status as text with a symbol: the page must read without colour. */
const STATUS: Record<string, { label: string; symbol: string }> = {
  queued: { label: 'Queued', symbol: '◷' },
  training: { label: 'Training', symbol: '▶' },
  completed: { label: 'Completed', symbol: '✔' },
  failed: { label: 'Failed', symbol: '✖' },
  cancelled: { label: 'Cancelled', symbol: '⊘' },
};

function status(s: string): { label: string; symbol: string } {
  return STATUS[s] ?? { label: s, symbol: '•' };
}

/** A node's status as text with a symbol (GET /api/v1/nodes says the same in JSON). */
const NODE_STATUS: Record<string, { label: string; symbol: string }> = {
  alive: { label: 'Alive', symbol: '●' },
  stale: { label: 'Stale: no heartbeat', symbol: '⚠' },
  left: { label: 'Left', symbol: '⏏' },
};

function nodeStatus(s: string): { label: string; symbol: string } {
  return NODE_STATUS[s] ?? { label: s, symbol: '•' };
}

function phase(p: string): string {
  return p.charAt(0).toUpperCase() + p.slice(1);
}

/**
 * The time left, as the pages say it: during validation and finalizing the training-time
 * estimate reads 0 s, which is not the time left, so the phase is said instead; a finished or
 * waiting job has none. public/live.js has the same rule for live updates.
 */
function etaText(status: string, p: string, seconds: number | null | undefined): string {
  if (status !== 'training') return '—';
  if (p === 'validating' || p === 'finalizing') return p;
  if (p !== 'training' && !seconds) return '—';
  return duration(seconds);
}

/** Where a job failed, in words: "phase downloading", or "dataset checks". */
function errorPhase(p: string): string {
  return p === 'checking' ? 'dataset checks' : `phase ${p}`;
}

/** A URL shown without its query and credentials (presigned dataset links carry secrets there). */
function safeUrl(u: unknown): string {
  if (typeof u !== 'string' || !u) return '—';
  try {
    const url = new URL(u);
    return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?…' : ''}`;
  } catch {
    return '—';
  }
}

/** JSON for a <script type="application/json"> block: nothing in it can close the tag. */
function json(v: unknown): string {
  return JSON.stringify(v ?? null)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

export const helpers = { duration, num, pct, gb, bytes, date, status, nodeStatus, phase, eta: etaText, errorPhase, safeUrl, json };
