/**
 * GET /stream/progress/{id} and GET /stream/dashboard. Readable like the pages: the session
 * cookie, a bearer token, or UI_PUBLIC_READ.
 */
import type { ServerResponse } from 'node:http';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import type { AppDeps } from '../http/deps.js';
import { UUID_RE } from '../http/schemas.js';
import { HttpError } from '../core/errors.js';
import type { UiAuth } from '../http/session.js';

export function registerStreams(app: OpenAPIHono, deps: AppDeps, auth: UiAuth): void {
  app.use('/stream/*', async function streamAuth(c, next) {
    if (!auth.access(c).read) {
      throw new HttpError(401, 'UNAUTHORIZED', 'log in, send a bearer token, or enable UI_PUBLIC_READ', null, {
        'WWW-Authenticate': 'Bearer realm="trainhook"',
      });
    }
    await next();
  });

  const lastId = (c: { req: { header(n: string): string | undefined; query(n: string): string | undefined } }) =>
    c.req.header('last-event-id') ?? c.req.query('last_event_id');

  app.get('/stream/progress/:id', async (c) => {
    const id = c.req.param('id');
    if (!UUID_RE.test(id)) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    const res = await deps.streams.openJob(id.toLowerCase(), lastId(c), outgoing(c));
    if (!res) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    return res;
  });

  app.get('/stream/dashboard', (c) => deps.streams.openDashboard(lastId(c), outgoing(c)));
}

/** Node's response, when served by @hono/node-server: streams write to it directly. */
function outgoing(c: Context): ServerResponse | undefined {
  const env = c.env as Partial<HttpBindings> | undefined;
  return env?.outgoing as ServerResponse | undefined;
}
