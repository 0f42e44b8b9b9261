/**
 * Downloads of a job's model and artifacts.
 *
 * With the API token: GET /api/v1/jobs/{id}/model and /api/v1/jobs/{id}/artifacts/{name} answer
 * a signed link `{url, expires_at}` (or, with ?download=true, the file itself), and
 * /api/v1/jobs/{id}/artifacts lists every file with its link.
 * Without it: GET /downloads/{id}/{name}?exp=…&sig=… (the links in training_completed
 * callbacks) streams the file while the link is valid; expired or edited links get 403.
 *
 * A file this node does not have (another node trained the job) comes from remote storage: a
 * 302 to a presigned bucket URL when STORAGE_PUBLIC, else streamed through here.
 */
import { Readable } from 'node:stream';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { contentType, fileMediaTypes, type JobFiles, type LocatedFile } from '../../jobs/files.js';
import type { JobRow } from '../../db/schema.js';
import { HttpError } from '../../core/errors.js';
import { downloadPath, signDownloadLink, verifyDownloadLink } from '../../security/links.js';
import type { AppDeps } from '../../http/deps.js';
import { JobIdParam, UUID_RE, errorResponses } from '../../http/schemas.js';

const LinkSchema = z
  .object({ job_id: z.string(), name: z.string(), size_bytes: z.number(), url: z.string(), expires_at: z.string() })
  .openapi('DownloadLink');

const DownloadQuery = z
  .object({
    download: z
      .enum(['true', 'false', '1', '0'])
      .optional()
      .openapi({ description: 'true: answer the file itself instead of a signed link' }),
  })
  .strict();

const fileContent = () =>
  Object.fromEntries(
    fileMediaTypes()
      .filter((t) => t !== 'application/json')
      .map((t) => [t, { schema: z.string().openapi({ format: 'binary' }) }]),
  );

const fileResponse = {
  description: 'The file, typed by its extension (.png, .csv, .yaml, .log…; weights are application/octet-stream)',
  content: fileContent(),
};

/** The signed link as JSON, or with ?download=true the file itself. */
const linkOrFileResponse = {
  description: 'A signed link, or with ?download=true the file itself, typed by its extension',
  content: { 'application/json': { schema: LinkSchema }, ...fileContent() },
};

const NameParam = z.object({
  name: z.string().openapi({
    param: { name: 'name', in: 'path' },
    description:
      'A file name from the job (confusion_matrix.png, results.csv, args.yaml, best.pt, last.pt, worker.log) or a callback key (confusion_matrix, pr_curve, f1_curve, results_csv, training_logs, model)',
    example: 'results.csv',
  }),
});

const modelRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/model',
  summary: "A signed, expiring download link for the job's trained model (the best checkpoint)",
  security: [{ bearer: [] }],
  request: { params: JobIdParam, query: DownloadQuery },
  responses: {
    200: linkOrFileResponse,
    ...errorResponses(400, 401, 404),
  },
});

const artifactRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/artifacts/{name}',
  summary: 'A signed, expiring download link for one artifact of a job',
  security: [{ bearer: [] }],
  request: { params: JobIdParam.merge(NameParam), query: DownloadQuery },
  responses: {
    200: linkOrFileResponse,
    ...errorResponses(400, 401, 404),
  },
});

const artifactsRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/artifacts',
  summary: 'Every downloadable file of a job, each with a signed link',
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    200: {
      description: 'Files',
      content: { 'application/json': { schema: z.object({ job_id: z.string(), files: z.array(LinkSchema) }) } },
    },
    ...errorResponses(401, 404),
  },
});

const signedRoute = createRoute({
  method: 'get',
  path: '/downloads/{id}/{name}',
  summary: 'Download through a signed link (no token: the signature and expiry are the credential)',
  request: {
    params: JobIdParam.merge(NameParam),
    query: z.object({ exp: z.string().optional(), sig: z.string().optional() }),
  },
  responses: {
    200: fileResponse,
    403: errorResponses(403)[403]!,
    404: errorResponses(404)[404]!,
  },
});

export function registerDownloads(app: OpenAPIHono, deps: AppDeps): void {
  const { files } = deps;

  const loadJob = async (id: string): Promise<JobRow> => {
    const job = UUID_RE.test(id) ? await deps.jobs.get(id) : undefined;
    if (!job) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    return job;
  };

  const linkFor = (c: Context, job: JobRow, name: string, size: number) => ({
    job_id: job.id,
    name,
    size_bytes: size,
    ...signDownloadLink({
      key: deps.secrets.linkSigningKey,
      baseUrl: deps.baseUrl(c.req.url),
      jobId: job.id,
      name,
      ttlSeconds: deps.config.downloadLinkTtlSeconds,
    }),
  });

  const answer = async (c: Context, job: JobRow, requested: string, download: boolean) => {
    const name = files.resolveName(job, requested);
    const file = name ? await files.locate(job, name) : null;
    if (!name || !file) {
      const available: string[] = [];
      for (const n of files.downloadable(job).keys()) if (await files.locate(job, n)) available.push(n);
      throw new HttpError(404, 'FILE_NOT_FOUND', `job ${job.id} has no file ${requested}`, { available });
    }
    return download ? sendFile(c, files, job.id, name, file, deps.config.downloadLinkTtlSeconds) : c.json(linkFor(c, job, name, file.size), 200);
  };

  app.openapi(modelRoute, async (c) => {
    const job = await loadJob(c.req.valid('param').id);
    const q = c.req.valid('query');
    return answer(c, job, 'model', q.download === 'true' || q.download === '1') as never;
  });

  app.openapi(artifactRoute, async (c) => {
    const { id, name } = c.req.valid('param');
    const q = c.req.valid('query');
    return answer(c, await loadJob(id), name, q.download === 'true' || q.download === '1') as never;
  });

  app.openapi(artifactsRoute, async (c) => {
    const job = await loadJob(c.req.valid('param').id);
    const links = [];
    for (const name of files.downloadable(job).keys()) {
      const f = await files.locate(job, name);
      if (f) links.push(linkFor(c, job, name, f.size));
    }
    return c.json({ job_id: job.id, files: links }, 200);
  });

  app.openapi(signedRoute, async (c) => {
    const { id, name } = c.req.valid('param');
    const { exp, sig } = c.req.valid('query');
    const check = verifyDownloadLink({ key: deps.secrets.linkSigningKey, path: downloadPath(id, name), exp, sig });
    if (!check.ok) {
      if (check.reason === 'expired') throw new HttpError(403, 'LINK_EXPIRED', 'this download link has expired; ask the API for a new one');
      throw new HttpError(403, 'LINK_INVALID', 'this download link is not valid (missing, malformed or altered signature)');
    }
    const job = await loadJob(id);
    const file = await files.locate(job, name);
    if (!file) throw new HttpError(404, 'FILE_NOT_FOUND', `job ${id} has no file ${name}`);
    return (await sendFile(c, files, id, name, file, deps.config.downloadLinkTtlSeconds)) as never;
  });
}

async function sendFile(c: Context, files: JobFiles, jobId: string, name: string, file: LocatedFile, ttlSeconds: number): Promise<Response> {
  // In a bucket clients can reach: they fetch it from there, not through this node.
  const direct = await files.remoteLink(file, name, ttlSeconds);
  if (direct) return c.redirect(direct, 302);
  // Bounded to the size announced: a log still being written must not outgrow Content-Length.
  const body = file.size === 0 ? '' : (Readable.toWeb(await files.readLocated(jobId, file)) as unknown as ReadableStream);
  return c.body(body, 200, {
    'Content-Type': contentType(name),
    'Content-Length': String(file.size),
    'Content-Disposition': `attachment; filename="${name}"`,
    'Cache-Control': 'private, no-store',
    'X-Content-Type-Options': 'nosniff',
  });
}

