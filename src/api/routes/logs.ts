/**
 * A job's log (workdir/jobs/{id}/worker.log: the worker's stderr and everything it prints that
 * is not an event, plus the monitor's warnings): GET /api/v1/jobs/{id}/logs pages it by line,
 * GET /api/v1/jobs/{id}/logs/download sends the file as it is. The status page's Download logs
 * uses the same reader behind its own (cookie) auth.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { HttpError } from '../../errors.js';
import type { AppDeps } from '../deps.js';
import { JobIdParam, UUID_RE, errorResponses } from '../schemas.js';
import { jobLogFile } from '../../jobs/paths.js';

/** Longer lines (a progress bar redrawn thousands of times) are cut to this. */
const MAX_LINE_CHARS = 8192;


export interface LogPage {
  offset: number;
  limit: number;
  total_lines: number;
  next_offset: number | null;
  lines: string[];
}

/**
 * Lines [offset, offset + limit) of a log, streamed (the file is never read whole). A line
 * redrawn with carriage returns (tqdm) reads as its last state, as a terminal shows it.
 */
export async function readLogPage(file: string, offset: number, limit: number): Promise<LogPage> {
  const lines: string[] = [];
  let total = 0;
  const take = (raw: string) => {
    if (total >= offset && lines.length < limit) {
      const segments = raw.split('\r').filter((seg) => seg.length > 0);
      let line = segments.length ? segments[segments.length - 1]! : '';
      if (line.length > MAX_LINE_CHARS) line = `${line.slice(0, MAX_LINE_CHARS)}… [line cut at ${MAX_LINE_CHARS} characters]`;
      lines.push(line);
    }
    total++;
  };
  if (fs.existsSync(file)) {
    // Split on \n only: readline would also break at every lone \r of a progress bar.
    let rest = '';
    for await (const chunk of fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 })) {
      const parts = (rest + (chunk as string)).split('\n');
      rest = parts.pop()!;
      for (const part of parts) take(part);
      // A line longer than any page shows is not kept whole in memory.
      if (rest.length > 16 * MAX_LINE_CHARS) rest = rest.slice(-16 * MAX_LINE_CHARS);
    }
    if (rest.length > 0) take(rest);
  }
  const end = offset + lines.length;
  return { offset, limit, total_lines: total, next_offset: end < total ? end : null, lines };
}

/** The whole file as a download; an empty one when the job has not written a log yet. */
export function logDownload(file: string, jobId: string): Response {
  const headers = {
    'content-type': 'text/plain; charset=utf-8',
    'content-disposition': `attachment; filename="trainhook-${jobId}.log"`,
    'x-content-type-options': 'nosniff',
  };
  if (!fs.existsSync(file)) return new Response('', { status: 200, headers });
  const size = fs.statSync(file).size;
  // Up to the size seen now: a log still being written ends where it ended when asked.
  const body = Readable.toWeb(fs.createReadStream(file, { start: 0, end: Math.max(0, size - 1) })) as ReadableStream<Uint8Array>;
  return new Response(size === 0 ? '' : body, { status: 200, headers: { ...headers, 'content-length': String(size) } });
}

const pageRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/logs',
  summary: "Lines of a job's log, paged: ?offset= (first line, 0-based) and ?limit=",
  security: [{ bearer: [] }],
  request: {
    params: JobIdParam,
    query: z
      .object({
        offset: z.coerce.number().int().min(0).default(0),
        limit: z.coerce.number().int().min(1).max(5000).default(500),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'A page of log lines',
      content: {
        'application/json': {
          schema: z.object({
            job_id: z.string(),
            offset: z.number(),
            limit: z.number(),
            total_lines: z.number(),
            next_offset: z.number().nullable(),
            lines: z.array(z.string()),
          }),
        },
      },
    },
    ...errorResponses(400, 401, 404),
  },
});

const downloadRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/logs/download',
  summary: "A job's whole log as a text file",
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    200: { description: 'The log file', content: { 'text/plain': { schema: z.string() } } },
    ...errorResponses(401, 404),
  },
});

export async function requireJob(deps: AppDeps, id: string): Promise<void> {
  if (!UUID_RE.test(id) || !(await deps.jobs.get(id))) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
}

export function registerLogs(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(pageRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { offset, limit } = c.req.valid('query');
    await requireJob(deps, id);
    const page = await readLogPage(jobLogFile(deps.config.workdir, id), offset, limit);
    return c.json({ job_id: id, ...page }, 200);
  });

  app.openapi(downloadRoute, async (c) => {
    const { id } = c.req.valid('param');
    await requireJob(deps, id);
    return logDownload(jobLogFile(deps.config.workdir, id), id) as never;
  });
}
