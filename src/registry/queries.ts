/** Reads and writes of the model registry tables (no files: see register.ts, export.ts). */
import { and, count, desc, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { jobs, modelExports, models, type JobRow, type ModelExportRow, type ModelRow } from '../db/schema.js';

export async function getModel(db: DbOrTx, id: string): Promise<ModelRow | undefined> {
  const [row] = await db.select().from(models).where(eq(models.id, id)).limit(1);
  return row;
}

export async function modelOfJob(db: DbOrTx, jobId: string): Promise<ModelRow | undefined> {
  const [row] = await db.select().from(models).where(eq(models.sourceJobId, jobId)).limit(1);
  return row;
}

export async function listModels(
  db: DbOrTx,
  opts: { task?: string | undefined; framework?: string | undefined; jobId?: string | undefined; limit: number; offset: number },
): Promise<{ total: number; rows: ModelRow[] }> {
  const where = and(
    opts.task ? eq(models.task, opts.task) : undefined,
    opts.framework ? eq(models.framework, opts.framework) : undefined,
    opts.jobId ? eq(models.sourceJobId, opts.jobId) : undefined,
  );
  const [total] = await db.select({ n: count() }).from(models).where(where);
  const rows = await db
    .select()
    .from(models)
    .where(where)
    .orderBy(desc(models.createdAt), desc(models.id))
    .limit(opts.limit)
    .offset(opts.offset);
  return { total: total?.n ?? 0, rows };
}

/** Inserts a model; undefined when its source job already has one (a concurrent registration won). */
export async function insertModel(db: DbOrTx, values: typeof models.$inferInsert): Promise<ModelRow | undefined> {
  const [row] = await db.insert(models).values(values).onConflictDoNothing({ target: models.sourceJobId }).returning();
  return row;
}

export async function deleteModelRow(db: DbOrTx, id: string): Promise<ModelRow | undefined> {
  const [row] = await db.delete(models).where(eq(models.id, id)).returning();
  return row;
}

export async function exportsOf(db: DbOrTx, modelIds: string[]): Promise<ModelExportRow[]> {
  if (modelIds.length === 0) return [];
  return db.select().from(modelExports).where(inArray(modelExports.modelId, modelIds)).orderBy(modelExports.format);
}

export async function upsertExport(db: DbOrTx, values: typeof modelExports.$inferInsert): Promise<ModelExportRow> {
  const [row] = await db
    .insert(modelExports)
    .values(values)
    .onConflictDoUpdate({
      target: [modelExports.modelId, modelExports.format],
      set: {
        fileName: values.fileName,
        sizeBytes: values.sizeBytes,
        sha256: values.sha256,
        check: values.check ?? null,
        createdAt: sql`now()`,
      },
    })
    .returning();
  return row!;
}

/** Unfinished jobs that will train from this model (`base_model: "model:<id>"`). */
export async function jobsUsingModel(db: DbOrTx, id: string): Promise<Pick<JobRow, 'id' | 'state'>[]> {
  return db
    .select({ id: jobs.id, state: jobs.state })
    .from(jobs)
    .where(
      and(
        inArray(jobs.state, ['queued', 'claimed', 'running']),
        sql`${jobs.request} -> 'model_config' ->> 'base_model' = ${`model:${id}`}`,
      ),
    );
}

/** Completed jobs with no registered model (a registration lost to a crash, or jobs from before the registry). */
export async function completedJobsWithoutModel(db: DbOrTx, limit = 1000): Promise<JobRow[]> {
  const rows = await db
    .select({ job: jobs })
    .from(jobs)
    .leftJoin(models, eq(models.sourceJobId, jobs.id))
    .where(and(eq(jobs.state, 'completed'), isNull(models.id)))
    .orderBy(jobs.seq)
    .limit(limit);
  return rows.map((r) => r.job);
}
