/**
 * Uploaded datasets (POST /api/v1/datasets): a streamed ZIP, hashed and capped as it arrives,
 * adopted into the shared store (extraction guards and all), checked in a format for a task
 * like a downloaded one, and named by a row of the datasets table. The same bytes uploaded
 * again are the same dataset.
 */
import crypto from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { and, desc, eq, lt, sql } from 'drizzle-orm';
import type { Config } from '../core/config.js';
import type { Database, Tx } from '../db/client.js';
import { datasets, jobs, type DatasetRow } from '../db/schema.js';
import type { DatasetFormat } from './formats.js';
import { checkStored } from './index.js';
import type { DatasetStore } from './store.js';

export type UploadResult = { row: DatasetRow; created: boolean };

/** Jobs not yet finished that train on a given uploaded dataset. */
const unfinishedUsing = (id: string) =>
  and(lt(jobs.state, 'completed'), sql`${jobs.request}->'dataset'->>'id' = ${id}`);

export class UploadedDatasets {
  constructor(
    private readonly opts: { database: Database; store: DatasetStore; limits: Config['dataset'] },
  ) {}

  /**
   * Receives, adopts and checks an upload. Throws a JobError (DATASET_INVALID,
   * DATASET_CORRUPTED) when it is refused, TooLargeError past the size cap.
   */
  async upload(
    body: Readable,
    opts: { name: string | null; task: string; formats: readonly DatasetFormat[]; requested?: DatasetFormat | undefined; signal?: AbortSignal },
  ): Promise<UploadResult> {
    // Not marked preparing() yet: nothing is adopted while the body arrives, and a refused
    // archive must be removable by adopt().
    const received = await this.opts.store.receive(body, this.opts.limits.maxDownloadBytes);
    return this.adopt(received, { ...opts, origin: 'upload' });
  }

  /**
   * Adopts a ZIP already hashed in the store's temporary folder (an upload, or one that convert
   * or split wrote), checks it and names it by a row. The ZIP is deleted either way.
   */
  async adopt(
    received: { file: string; sha256: string; bytes: number },
    opts: {
      name: string | null;
      task: string;
      formats: readonly DatasetFormat[];
      requested?: DatasetFormat | undefined;
      signal?: AbortSignal | undefined;
      origin: DatasetRow['origin'];
      parentId?: string | null;
      stats?: Record<string, unknown> | null;
    },
  ): Promise<UploadResult> {
    const { store, limits, database } = this.opts;
    const release = store.preparing();
    try {
      try {
        await store.adopt(received.file, received.sha256, limits, { signal: opts.signal });
      } finally {
        await rm(received.file, { force: true });
      }
      let checked: Awaited<ReturnType<typeof checkStored>>;
      try {
        checked = await checkStored(received.sha256, {
          store,
          formats: opts.formats,
          task: opts.task,
          requested: opts.requested,
          signal: opts.signal,
        });
      } catch (err) {
        // A refused archive is not kept, unless a dataset or job already holds the same bytes.
        release();
        await store.remove(received.sha256, () => this.referenced(received.sha256));
        throw err;
      }
      const values = {
        id: crypto.randomUUID(),
        sha256: received.sha256,
        name: opts.name,
        format: checked.format,
        task: opts.task,
        info: { ...checked.info, format: checked.format } as unknown as Record<string, unknown>,
        archiveBytes: received.bytes,
        diskBytes: store.bytes(received.sha256),
        origin: opts.origin,
        parentId: opts.parentId ?? null,
        stats: opts.stats ?? null,
      };
      const [inserted] = await database.db.insert(datasets).values(values).onConflictDoNothing({ target: datasets.sha256 }).returning();
      if (inserted) return { row: inserted, created: true };
      const [existing] = await database.db.select().from(datasets).where(eq(datasets.sha256, received.sha256));
      return { row: existing!, created: false };
    } finally {
      release();
    }
  }

  /** Stores the last validation report of a dataset. */
  async saveValidation(id: string, report: Record<string, unknown>): Promise<DatasetRow | undefined> {
    const [row] = await this.opts.database.db.update(datasets).set({ validation: report }).where(eq(datasets.id, id)).returning();
    return row;
  }

  /** Whether a dataset row or an unfinished job refers to an archive. */
  private async referenced(sha256: string): Promise<boolean> {
    const { db } = this.opts.database;
    const [row] = await db.select({ id: datasets.id }).from(datasets).where(eq(datasets.sha256, sha256)).limit(1);
    if (row) return true;
    const [job] = await db.select({ id: jobs.id }).from(jobs).where(and(eq(jobs.datasetSha256, sha256), lt(jobs.state, 'completed'))).limit(1);
    return !!job;
  }

  async get(id: string): Promise<DatasetRow | undefined> {
    const [row] = await this.opts.database.db.select().from(datasets).where(eq(datasets.id, id));
    return row;
  }

  async list(limit: number, offset: number): Promise<{ total: number; rows: DatasetRow[] }> {
    const { db } = this.opts.database;
    const rows = await db.select().from(datasets).orderBy(desc(datasets.createdAt), desc(datasets.id)).limit(limit).offset(offset);
    const [count] = await db.select({ n: sql<number>`count(*)::int` }).from(datasets);
    return { total: count?.n ?? 0, rows };
  }

  /**
   * Deletes a dataset and its archive. 'in_use' while a queued or running job trains on it;
   * the row is locked meanwhile, so a job submitted at the same moment either sees it gone or
   * holds it first.
   */
  async delete(id: string): Promise<'deleted' | 'not_found' | { inUse: string[] }> {
    const { db } = this.opts.database;
    const outcome = await db.transaction(async (tx) => {
      const [row] = await tx.select().from(datasets).where(eq(datasets.id, id)).for('update');
      if (!row) return 'not_found' as const;
      const using = await tx.select({ id: jobs.id }).from(jobs).where(unfinishedUsing(id)).limit(20);
      if (using.length) return { inUse: using.map((j) => j.id) };
      await tx.delete(datasets).where(eq(datasets.id, id));
      return row;
    });
    if (typeof outcome === 'string' || 'inUse' in outcome) return outcome;
    // Another job may train on the same bytes (under a URL): those keep the archive.
    await this.opts.store.remove(outcome.sha256, () => this.referenced(outcome.sha256));
    return 'deleted';
  }
}

/** Inside a submit's transaction: the uploaded dataset's archive, locked against deletion until commit; undefined when there is none. */
export async function lockUploadedDataset(tx: Tx, id: string): Promise<string | undefined> {
  const [row] = await tx.select({ sha256: datasets.sha256 }).from(datasets).where(eq(datasets.id, id)).for('share');
  return row?.sha256;
}
