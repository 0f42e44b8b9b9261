/**
 * The HTTP application: middleware, routes, the OpenAPI document and the one place where
 * errors become the JSON error shape `{"error": {"code", "message", "details"}}`.
 */
import { requestLog } from './http/context.js';
import { OpenAPIHono } from '@hono/zod-openapi';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import { routePath } from 'hono/route';
import { pruneSeenSignatures, rememberSignature } from './security/replay-guard.js';
import { HttpError } from './core/errors.js';
import { methodNotAllowed, methodRules } from './http/allowed-methods.js';
import { bearerAuth, requestSignature } from './http/auth.js';
import { UiAuth } from './http/session.js';
import type { AppDeps } from './http/deps.js';
import { RateLimiter } from './http/rate-limit.js';
import { registerCallbacks } from './api/routes/callbacks.js';
import { registerCompare } from './api/routes/compare.js';
import { registerConfig } from './api/routes/config.js';
import { registerDocs } from './api/routes/docs.js';
import { registerDownloads } from './api/routes/downloads.js';
import { registerEngines } from './api/routes/engines.js';
import { registerHealth } from './api/routes/health.js';
import { registerJobs } from './api/routes/jobs.js';
import { registerLogs } from './api/routes/logs.js';
import { registerNodes } from './api/routes/nodes.js';
import { isModelUpload, registerModels } from './api/routes/models.js';
import { registerTrain } from './api/routes/train.js';
import { isDatasetUpload, registerDatasets } from './api/routes/datasets.js';
import { registerDataPrep } from './api/routes/dataprep.js';
import { registerUi } from './ui/routes.js';

export function createApp(deps: AppDeps): OpenAPIHono {
  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) {
        throw new HttpError(
          400,
          'VALIDATION_ERROR',
          `invalid request ${result.target}: ${result.error.issues.length} problem(s)`,
          result.error.issues.map((i) => ({ path: i.path, message: i.message, code: i.code })),
        );
      }
    },
  });

  app.use(requestId({ headerName: 'X-Request-Id' }));
  app.use(async function accessLog(c, next) {
    const started = performance.now();
    c.set('logger', deps.logger);
    await next();
    const seconds = (performance.now() - started) / 1000;
    const route = routePath(c) || 'unmatched';
    const status = c.res.status;
    deps.metrics.httpDuration.observe({ method: c.req.method, route, status: String(status) }, seconds);
    if (route !== '/metrics' && route !== '/health') {
      deps.accessLogger.info(
        { request_id: c.get('requestId'), method: c.req.method, route, path: c.req.path, status, ms: Math.round(seconds * 1e4) / 10 },
        'request',
      );
    }
  });

  const apiBodyLimit = bodyLimit({
    maxSize: deps.config.maxBodyBytes,
    onError: () => {
      throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `request body over ${deps.config.maxBodyBytes} bytes`);
    },
  });
  // Prediction uploads and generate requests (images) get their own limit (PREDICT_MAX_BYTES) in
  // routes/models.ts, after auth.
  // GET and HEAD carry no body: skipping the limiter there also spares building a full
  // Request per read (a third of a status read's CPU in bench/api.ts).
  app.use('/api/*', (c, next) =>
    c.req.method === 'GET' || c.req.method === 'HEAD' || isModelUpload(c.req.method, c.req.path) || isDatasetUpload(c.req.method, c.req.path)
      ? next()
      : apiBodyLimit(c, next),
  );
  // The status pages' session opens the API's reads the pages link to (the job's JSON, its logs).
  const pageSession = new UiAuth({ apiToken: deps.secrets.apiToken, publicRead: false, publicUrl: deps.config.publicUrl });
  app.use('/api/*', bearerAuth({ token: deps.secrets.apiToken, pageSession: (c) => pageSession.hasSession(c) }));

  const limiter = new RateLimiter(deps.config.trainRateLimitPerMinute);
  app.post('/api/v1/train', async function rateLimit(c, next) {
    const retryAfter = limiter.take(clientKey(c));
    if (retryAfter > 0) {
      throw new HttpError(429, 'RATE_LIMITED', `too many training requests; retry in ${retryAfter} s`, null, {
        'Retry-After': String(retryAfter),
      });
    }
    await next();
  });
  let remembered = 0;
  app.post(
    '/api/v1/train',
    requestSignature({
      secrets: deps.config.requestSigningSecrets,
      toleranceSeconds: deps.config.signatureToleranceSeconds,
      remember: async (signature, expiresAt) => {
        const { db } = deps.database;
        if (++remembered % 100 === 0) await pruneSeenSignatures(db);
        return rememberSignature(db, signature, expiresAt);
      },
    }),
  );

  // 405 for a method a fixed path lacks, before a pattern route beside it takes the request.
  const methods = methodRules(app);
  app.use(async function allowedMethods(c, next) {
    const allowed = methods.refused(c.req.method, c.req.path);
    if (allowed) throw methodNotAllowed(c.req.method, c.req.path, allowed);
    await next();
  });

  registerTrain(app, deps);
  registerCompare(app, deps); // before registerJobs: /jobs/{id} would take "compare" as an id
  registerJobs(app, deps);
  registerConfig(app, deps);
  registerEngines(app, deps);
  registerModels(app, deps);
  registerHealth(app, deps);
  registerNodes(app, deps);
  registerLogs(app, deps);
  registerUi(app, deps); // status pages, login, /stream/* (SSE), /static/*
  registerCallbacks(app, deps);
  registerDownloads(app, deps);
  registerDataPrep(app, deps); // before registerDatasets: /datasets/{id} would take "convert" as an id
  registerDatasets(app, deps);

  app.get('/metrics', async (c) => {
    return c.text(await deps.metrics.registry.metrics(), 200, { 'Content-Type': deps.metrics.registry.contentType });
  });

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'trainhook',
      version: deps.version,
      description: 'Headless training server (Ultralytics YOLO and other engines): signed job intake, signed webhooks, live status.',
      license: { name: 'AGPL-3.0-only' },
    },
  });
  registerDocs(app); // Swagger UI from the pinned swagger-ui-dist package, no CDN

  app.notFound((c) => {
    const allowed = methods.allowed(c.req.path);
    if (allowed.length > 0) throw methodNotAllowed(c.req.method, c.req.path, allowed);
    return c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}`, details: null } }, 404);
  });
  app.onError((err, c) => {
    if (err instanceof HttpError) {
      for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
      const details = err.details as { job?: unknown } | null;
      // 409 on a duplicate job_id carries the existing job at the top level too.
      const extra = err.status === 409 && details && typeof details === 'object' && 'job' in details ? { job: details.job } : {};
      return c.json(
        { error: { code: err.code, message: err.message, details: err.details ?? null }, ...extra },
        err.status as 400,
      );
    }
    if (err instanceof HTTPException) {
      const status = err.status;
      if (status === 415) {
        const message = 'send the body as JSON, with Content-Type: application/json';
        return c.json({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message, details: null } }, 415);
      }
      const code = status === 400 ? 'INVALID_JSON' : `HTTP_${status}`;
      return c.json({ error: { code, message: err.message || 'bad request', details: null } }, status);
    }
    (c.get('logger') ? requestLog(c) : deps.logger).error({ err }, 'unhandled error');
    return c.json({ error: { code: 'INTERNAL_ERROR', message: 'internal server error', details: null } }, 500);
  });
  return app;
}

function clientKey(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
