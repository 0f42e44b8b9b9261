/**
 * The status pages: GET / (dashboard), GET /jobs (history), GET /jobs/compare (experiments side
 * by side) and GET /jobs/{id} (one job),
 * the login form, Cancel, Retry and Download logs, the partial the dashboard reloads, static assets,
 * and (through registerStreams) the live streams the pages listen to.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { serveStatic } from '@hono/node-server/serve-static';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, Next } from 'hono';
import type { AppDeps } from '../http/deps.js';
import { RateLimiter } from '../http/rate-limit.js';
import { UUID_RE } from '../http/schemas.js';
import { resourcesView } from '../monitor/view.js';
import { registerStreams } from './stream-routes.js';
import { UiAuth, safeNext, type Access } from '../http/session.js';
import { z } from 'zod';
import { HISTORY_STATUSES, dashboardData, historyData, jobPageData, registeredModel, type HistoryFilters } from './data.js';
import { ToolError } from '../worker/tool.js';
import { COMPARE_MAX_IDS, loadComparison } from '../jobs/compare.js';
import { jobMetrics } from '../jobs/metrics.js';
import { PUBLIC_DIR, render } from './render.js';
import { requestLog } from '../http/context.js';

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** A calendar day that exists, as the date inputs send it. */
const Day = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'a date as YYYY-MM-DD')
  .refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)) && new Date(`${d}T00:00:00Z`).toISOString().startsWith(d), 'not a calendar date');
/** The job history's query; an empty field (the form sends every field) means no filter. */
const HistoryQuery = z
  .object({
    status: z.enum(HISTORY_STATUSES).optional(),
    name: z.string().max(200, 'at most 200 characters').optional(),
    from: Day.optional(),
    to: Day.optional(),
    page: z.coerce.number().int('a whole number').min(1, 'pages start at 1').max(100_000).default(1),
  })
  .strict();
const blankToUndefined = (q: Record<string, string>) => Object.fromEntries(Object.entries(q).filter(([, v]) => v.trim() !== '').map(([k, v]) => [k, v.trim()]));

/** Notices a redirect may ask the job page to show (a fixed list: nothing from the URL is echoed). */
const NOTICES: Record<string, string> = {
  cancelled: 'Cancellation requested: the worker stops at the next batch and keeps last.pt.',
  finished: 'This job had already finished; nothing was cancelled.',
  exported: 'Exported: the file is listed under the registered model below.',
  'already-exported': 'That export already exists: it is listed under the registered model below.',
  retried: 'Queued again: the job resumes from its last checkpoint in a new attempt.',
  not_retryable: 'Only a failed or cancelled job can be retried.',
  stopping: 'The job’s worker is still stopping: retry in a few seconds.',
};

export function registerUi(app: OpenAPIHono, deps: AppDeps): void {
  const auth = new UiAuth({
    apiToken: deps.secrets.apiToken,
    publicRead: deps.config.uiPublicRead,
    publicUrl: deps.config.publicUrl,
  });
  const loginLimiter = new RateLimiter(10);

  const headers = async function uiHeaders(c: Context, next: Next) {
    await next();
    c.header('Content-Security-Policy', CSP);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'same-origin');
    c.header('X-Frame-Options', 'DENY');
  };
  for (const p of ['/', '/login', '/logout', '/jobs', '/jobs/*', '/partials/*', '/static/*']) app.use(p, headers);

  app.use(
    '/static/*',
    serveStatic({
      root: PUBLIC_DIR,
      rewriteRequestPath: (p) => p.replace(/^\/static/, ''),
      onFound: (_path, c) => {
        c.header('Cache-Control', 'public, max-age=300');
      },
    }),
  );

  registerStreams(app, deps, auth);

  /** Page-wide template data. */
  const base = (c: Context, access: Access, title: string) => ({
    title,
    version: deps.version,
    heartbeatMs: deps.config.stream.heartbeatMs,
    access,
    csrf: access.session ? auth.csrfToken(access.session) : null,
    here: c.req.path + (new URL(c.req.url).search || ''),
  });
  const html = (c: Context, body: string, status = 200) => {
    c.header('Cache-Control', 'no-store');
    return c.html(body, status as 200);
  };
  const errorPage = (c: Context, access: Access, status: number, heading: string, message: string) =>
    html(c, render('./error', { ...base(c, access, heading), status, heading, message }), status);

  /** Pages: the reader must be allowed to read, else the login form. */
  const readable = (c: Context): Access | Response => {
    const access = auth.access(c);
    if (access.read) return access;
    const next = c.req.path + (new URL(c.req.url).search || '');
    return c.redirect(`/login?next=${encodeURIComponent(next)}`, 303);
  };

  app.get('/login', (c) => {
    const access = auth.access(c);
    const next = safeNext(c.req.query('next'));
    if (access.via === 'cookie') return c.redirect(next, 303);
    return html(c, render('./login', { ...base(c, access, 'Log in'), next, error: null }));
  });

  app.post('/login', async (c) => {
    const access = auth.access(c);
    const origin = c.req.header('origin');
    if (origin && !auth.sameOrigin(c)) return errorPage(c, access, 403, 'Forbidden', 'Log in from this server’s own page.');
    const retry = loginLimiter.take(clientKey(c));
    if (retry > 0) {
      c.header('Retry-After', String(retry));
      return errorPage(c, access, 429, 'Too many attempts', `Try again in ${retry} s.`);
    }
    const form = await c.req.parseBody();
    const next = safeNext(typeof form['next'] === 'string' ? form['next'] : undefined);
    const token = typeof form['token'] === 'string' ? form['token'] : '';
    if (!token || !auth.checkToken(token)) {
      requestLog(c).warn('status page login refused');
      return html(c, render('./login', { ...base(c, access, 'Log in'), next, error: 'That is not the API token of this server.' }), 401);
    }
    auth.setSession(c, auth.issue());
    return c.redirect(next, 303);
  });

  app.post('/logout', async (c) => {
    const access = auth.access(c);
    if (access.via === 'cookie') {
      const form = await c.req.parseBody();
      if (!auth.sameOrigin(c) || !auth.checkCsrf(access.session!, typeof form['csrf'] === 'string' ? form['csrf'] : undefined)) {
        return errorPage(c, access, 403, 'Forbidden', 'The form was not sent from this server’s page; reload and try again.');
      }
    }
    auth.clearSession(c);
    return c.redirect('/login', 303);
  });

  app.get('/', async (c) => {
    const access = readable(c);
    if (access instanceof Response) return access;
    const streamId = deps.streams.currentId(); // before the reads: no change falls between
    const data = await dashboardData(deps);
    return html(c, render('./dashboard', { ...base(c, access, 'Dashboard'), ...data, streamId, scripts: ['live.js', 'dashboard.js'] }));
  });

  app.get('/partials/dashboard', async (c) => {
    const access = auth.access(c);
    if (!access.read) return c.text('unauthorized', 401);
    const data = await dashboardData(deps);
    return html(c, render('./dashboard-live', { ...base(c, access, 'Dashboard'), ...data }));
  });

  app.get('/partials/resources', async (c) => {
    const access = auth.access(c);
    if (!access.read) return c.text('unauthorized', 401);
    return html(c, render('./resources', { ...base(c, access, 'Resources'), resources: resourcesView(deps.monitor.latest()) }));
  });

  /** Every job, paged and filtered (the dashboard shows only the last few finished ones). */
  app.get('/jobs', async (c) => {
    const access = readable(c);
    if (access instanceof Response) return access;
    const parsed = HistoryQuery.safeParse(blankToUndefined(c.req.query()));
    const page = (filters: HistoryFilters, problems: string[], status = 200) =>
      historyData(deps, filters).then((data) =>
        html(c, render('./history', { ...base(c, access, 'Job history'), ...data, problems }), status),
      );
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`);
      return page({ status: null, name: '', from: null, to: null, page: 1 }, problems, 400);
    }
    const q = parsed.data;
    if (q.from && q.to && q.from > q.to) {
      return page({ status: null, name: '', from: null, to: null, page: 1 }, ['from: the first day comes after the last one'], 400);
    }
    return page({ status: q.status ?? null, name: q.name ?? '', from: q.from ?? null, to: q.to ?? null, page: q.page }, []);
  });

  /**
   * Experiments side by side: /jobs/compare?ids=a,b or ids=a&ids=b (the history's checkboxes).
   * Registered before /jobs/:id, which would take "compare" for an id.
   */
  app.get('/jobs/compare', async (c) => {
    const access = readable(c);
    if (access instanceof Response) return access;
    const ids = [...new Set((c.req.queries('ids') ?? []).flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean))];
    if (ids.length < 2 || ids.length > COMPARE_MAX_IDS) {
      return errorPage(c, access, 400, 'Pick jobs to compare', `Choose 2 to ${COMPARE_MAX_IDS} jobs in the job history to compare them (${ids.length} chosen).`);
    }
    const malformed = ids.filter((id) => !UUID_RE.test(id));
    const loaded = malformed.length ? ({ ok: false, missing: malformed } as const) : await loadComparison(deps.database, deps.engines, ids);
    if (!loaded.ok) return errorPage(c, access, 404, 'Job not found', `There is no job ${loaded.missing.join(', ')} on this server.`);
    const first = await deps.jobs.get(ids[0]!);
    const bestKey = first ? jobMetrics(deps.engines, first).best.key : 'best metric';
    return html(c, render('./compare', { ...base(c, access, 'Compare experiments'), comparison: loaded.comparison, bestKey }));
  });

  app.get('/jobs/:id', async (c) => {
    const access = readable(c);
    if (access instanceof Response) return access;
    const id = c.req.param('id');
    const streamId = deps.streams.currentId();
    const row = UUID_RE.test(id) ? await deps.jobs.get(id) : undefined;
    if (!row) return errorPage(c, access, 404, 'Job not found', `There is no job ${id} on this server.`);
    const data = await jobPageData(deps, row, { links: access.write });
    const notice = NOTICES[c.req.query('notice') ?? ''] ?? null;
    return html(
      c,
      render('./job', { ...base(c, access, `Job ${row.name}`), ...data, streamId, notice, scripts: ['live.js', 'chart.js', 'job.js'] }),
    );
  });

  /** Logs can hold dataset URLs and paths: they need a login even when pages are public. */
  app.get('/jobs/:id/logs', async (c) => {
    const access = auth.access(c);
    const id = c.req.param('id');
    if (!access.write) return c.redirect(`/login?next=${encodeURIComponent(`/jobs/${id}`)}`, 303);
    if (!UUID_RE.test(id) || !(await deps.jobs.get(id))) return errorPage(c, access, 404, 'Job not found', `There is no job ${id}.`);
    return deps.files.logDownload(id);
  });

  /**
   * Exports the job's registered model from the page (the form of its files section), with the
   * session's CSRF token like Cancel. The export runs while the form waits, then the page shows it.
   */
  app.post('/jobs/:id/export', async (c) => {
    const access = auth.access(c);
    const id = c.req.param('id');
    const refuse = (status: number, message: string) => errorPage(c, access, status, 'Not exported', message);
    if (!access.write) return c.redirect(`/login?next=${encodeURIComponent(`/jobs/${id}`)}`, 303);
    const form = await c.req.parseBody();
    if (access.via === 'cookie') {
      if (!auth.sameOrigin(c)) return refuse(403, 'The request did not come from this server’s page.');
      if (!auth.checkCsrf(access.session!, typeof form['csrf'] === 'string' ? form['csrf'] : undefined)) {
        return refuse(403, 'Missing or stale form token; reload the page and try again.');
      }
    }
    const row = UUID_RE.test(id) ? await deps.jobs.get(id) : undefined;
    if (!row) return errorPage(c, access, 404, 'Job not found', `There is no job ${id}.`);
    const model = await registeredModel(deps, row.id);
    if (!model) return refuse(404, 'This job has no registered model (only a completed job’s model is registered).');
    const format = typeof form['format'] === 'string' ? form['format'] : '';
    const formats = deps.registry.exportFormats(model.row);
    if (!formats.includes(format)) {
      return refuse(400, `${format || 'No format'} is not an export format of this model (${formats.join(', ') || 'it has none'}).`);
    }
    try {
      const { created } = await deps.registry.export(model.row, format);
      requestLog(c).info({ job_id: id, model_id: model.model_id, format, via: access.via }, 'model exported from the status page');
      return c.redirect(`/jobs/${id}?notice=${created ? 'exported' : 'already-exported'}#files`, 303);
    } catch (err) {
      if (!(err instanceof ToolError)) throw err;
      requestLog(c).warn({ job_id: id, code: err.code, err_message: err.message }, 'export from the status page failed');
      return refuse(err.code === 'EXPORT_UNSUPPORTED' ? 400 : 500, `${err.code}: ${err.message}`);
    }
  });

  /**
   * A job action posted from the page (a form with its CSRF token) or by a bearer-token client:
   * the checks both make. Answers the refusal, or null when the action may go ahead.
   */
  const refuseAction = async (c: Context, access: Access, id: string, what: string, wantsJson: boolean) => {
    const refuse = (status: number, code: string, message: string) =>
      wantsJson ? c.json({ error: { code, message, details: null } }, status as 403) : errorPage(c, access, status, 'Not allowed', message);
    if (!access.write) {
      if (wantsJson) return refuse(401, 'UNAUTHORIZED', `log in or send a bearer token to ${what} jobs`);
      return c.redirect(`/login?next=${encodeURIComponent(`/jobs/${id}`)}`, 303);
    }
    if (access.via === 'cookie') {
      const form = await c.req.parseBody();
      const token = typeof form['csrf'] === 'string' ? form['csrf'] : c.req.header('x-csrf-token');
      if (!auth.sameOrigin(c)) return refuse(403, 'CSRF_ORIGIN', 'the request did not come from this server’s page');
      if (!auth.checkCsrf(access.session!, token)) return refuse(403, 'CSRF_TOKEN', 'missing or stale form token; reload the page');
    }
    if (!UUID_RE.test(id)) return refuse(404, 'JOB_NOT_FOUND', `no job ${id}`);
    return null;
  };

  app.post('/jobs/:id/cancel', async (c) => {
    const access = auth.access(c);
    const id = c.req.param('id');
    const wantsJson = (c.req.header('accept') ?? '').includes('application/json');
    const refused = await refuseAction(c, access, id, 'cancel', wantsJson);
    if (refused) return refused;
    const outcome = await deps.jobs.cancel(id);
    if (outcome === 'not_found') {
      return wantsJson
        ? c.json({ error: { code: 'JOB_NOT_FOUND', message: `no job ${id}`, details: null } }, 404)
        : errorPage(c, access, 404, 'Not allowed', `no job ${id}`);
    }
    if ('finished' in outcome) {
      if (wantsJson) return c.json({ error: { code: 'JOB_FINISHED', message: `job ${id} has already finished`, details: null } }, 409);
      return c.redirect(`/jobs/${id}?notice=finished`, 303);
    }
    requestLog(c).info({ job_id: id, via: access.via }, 'job cancelled from the status page');
    if (wantsJson) return c.json({ job_id: id, status: 'cancelled', message: 'Job cancelled successfully' }, 200);
    return c.redirect(`/jobs/${id}?notice=cancelled`, 303);
  });

  app.post('/jobs/:id/retry', async (c) => {
    const access = auth.access(c);
    const id = c.req.param('id');
    const wantsJson = (c.req.header('accept') ?? '').includes('application/json');
    const refused = await refuseAction(c, access, id, 'retry', wantsJson);
    if (refused) return refused;
    const outcome = await deps.jobs.retry(id);
    if (outcome === 'stopping') {
      if (wantsJson) return c.json({ error: { code: 'JOB_STOPPING', message: `job ${id} is still stopping its worker`, details: null } }, 409);
      return c.redirect(`/jobs/${id}?notice=stopping`, 303);
    }
    if (outcome === 'not_found') {
      return wantsJson
        ? c.json({ error: { code: 'JOB_NOT_FOUND', message: `no job ${id}`, details: null } }, 404)
        : errorPage(c, access, 404, 'Not allowed', `no job ${id}`);
    }
    if ('notRetryable' in outcome) {
      if (wantsJson) return c.json({ error: { code: 'JOB_NOT_RETRYABLE', message: `job ${id} is not failed or cancelled`, details: null } }, 409);
      return c.redirect(`/jobs/${id}?notice=not_retryable`, 303);
    }
    requestLog(c).info({ job_id: id, via: access.via }, 'job queued again from the status page');
    if (wantsJson) return c.json({ job_id: id, status: 'queued', attempts: outcome.attempts }, 202);
    return c.redirect(`/jobs/${id}?notice=retried`, 303);
  });
}

function clientKey(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
