/**
 * Keeps the disk from filling: a periodic sweep removes the files of jobs that finished more
 * than RETENTION_DAYS ago (their dataset reference, checkpoints, plots; the log, the job's row
 * and its registered model stay), then every archive of the shared dataset store that no
 * uploaded dataset and no job with files still refers to, then old rows others name (callback
 * attempts, replay-guard signatures) through the pruners it is handed. A purge does the same
 * for one finished job at once.
 *
 * The Hugging Face Hub snapshots in workdir/hf-cache/ go too once unused for RETENTION_DAYS,
 * unless an unfinished job trains from one (a queued job would download it again; a running
 * job's worker reads it) or a registered model names it as its base model (an adapter loads on it
 * to predict, generate and export).
 *
 * Each node sweeps the jobs it ran and its own snapshots (their folders are on its disk).
 */
import { and, eq, inArray, isNull, lt, notInArray } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { datasets, jobs, models, type JobRow } from '../db/schema.js';
import type { Logger } from '../core/logger.js';
import type { Engines } from '../engines/index.js';
import { hubCacheDir } from '../engines/hub.js';
import type { JobFiles } from './files.js';
import { hubSnapshotDir, listHubSnapshots, removeHubSnapshot } from './hub-cache.js';
import { setDiskUsage } from './transitions.js';

const FINISHED = ['completed', 'failed', 'cancelled'] as const;
const BATCH = 200;
const DAY_MS = 24 * 3600 * 1000;

export type Pruner = { name: string; prune: (now: Date) => Promise<number> };

export type SweepReport = { jobs: number; archives: number; hubSnapshots: number; pruned: Record<string, number> };

export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SweepReport> | null = null;

  constructor(
    private readonly opts: {
      database: Database;
      files: JobFiles;
      /** Which Hub snapshot an unfinished job's request trains from (each engine says). */
      engines: Engines;
      logger: Logger;
      nodeId: string;
      /** 0: finished jobs keep their files. */
      days: number;
      sweepMs: number;
      pruners: readonly Pruner[];
      /** Called with each job whose row changed here (the status read cache drops it). */
      changed: (job: JobRow) => void;
    },
  ) {}

  start(): void {
    const run = () =>
      void this.sweep().catch((err) => this.opts.logger.warn({ err }, 'retention sweep failed'));
    run();
    this.timer = setInterval(run, this.opts.sweepMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => {});
  }

  /** One sweep (a second caller while one runs gets that one's report). */
  sweep(now = new Date()): Promise<SweepReport> {
    this.running ??= this.runSweep(now).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async runSweep(now: Date): Promise<SweepReport> {
    const { database, files, logger, days } = this.opts;
    const report: SweepReport = { jobs: 0, archives: 0, hubSnapshots: 0, pruned: {} };
    if (days > 0) {
      const cutoff = new Date(now.getTime() - days * DAY_MS);
      for (;;) {
        const expired = await database.db
          .select({ id: jobs.id })
          .from(jobs)
          .where(
            and(
              inArray(jobs.state, [...FINISHED]),
              isNull(jobs.filesRemovedAt),
              lt(jobs.finishedAt, cutoff),
              eq(jobs.nodeId, this.opts.nodeId),
            ),
          )
          .limit(BATCH);
        for (const { id } of expired) {
          await this.removeFiles(id);
          report.jobs++;
        }
        if (expired.length < BATCH) break;
      }
      report.hubSnapshots = await this.collectHubSnapshots(cutoff);
    }
    report.archives = await this.collectArchives(files.datasets.list());
    if (report.archives) await files.datasets.forgetStaleUrls();
    for (const p of this.opts.pruners) report.pruned[p.name] = await p.prune(now);
    if (report.jobs || report.archives || report.hubSnapshots || Object.values(report.pruned).some((n) => n > 0)) {
      logger.info({ retention_days: days, ...report }, 'retention sweep removed old files and rows');
    }
    return report;
  }

  private async removeFiles(id: string): Promise<JobRow | undefined> {
    const left = this.opts.files.removeFiles(id);
    // Remote storage keeps the log, as the disk does.
    await this.opts.files.removeRemote(id).catch((err) => this.opts.logger.warn({ err, job_id: id }, 'job files not removed from storage'));
    const row = await setDiskUsage(this.opts.database.db, id, left, true);
    if (row) this.opts.changed(row);
    return row;
  }

  /**
   * Removes a finished job's files now. 'not_found'; { unfinished } for a queued or running
   * job (its worker writes there); else the job as it is after.
   */
  async purge(id: string): Promise<'not_found' | { unfinished: JobRow } | JobRow> {
    const [job] = await this.opts.database.db.select().from(jobs).where(eq(jobs.id, id));
    if (!job) return 'not_found';
    if (!(FINISHED as readonly string[]).includes(job.state)) return { unfinished: job };
    const row = (await this.removeFiles(id)) ?? job;
    if (job.datasetSha256) await this.collectArchives([job.datasetSha256]);
    return row;
  }

  /** Deletes the Hub snapshots last used before `cutoff` that nothing uses; answers how many. */
  private async collectHubSnapshots(cutoff: Date): Promise<number> {
    const { workdir } = this.opts.files;
    const unused = listHubSnapshots(workdir).filter((s) => s.lastUsed < cutoff);
    if (!unused.length) return 0;
    const inUse = await this.hubSnapshotsInUse();
    let removed = 0;
    for (const s of unused) {
      if (inUse.has(s.dir) || !removeHubSnapshot(s.dir, cutoff)) continue;
      this.opts.logger.info({ base_model: s.id, last_used: s.lastUsed.toISOString() }, 'unused Hub snapshot removed');
      removed++;
    }
    return removed;
  }

  /** The snapshot folders unfinished jobs and registered models use. */
  private async hubSnapshotsInUse(): Promise<Set<string>> {
    const { db } = this.opts.database;
    const { workdir } = this.opts.files;
    const used = new Set<string>();
    const add = (id: string | null | undefined) => {
      const dir = id ? hubSnapshotDir(workdir, id) : null;
      if (dir) used.add(dir);
    };
    const unfinished = await db
      .select({ engine: jobs.engine, request: jobs.request, baseModel: jobs.baseModel })
      .from(jobs)
      .where(notInArray(jobs.state, [...FINISHED]));
    for (const job of unfinished) {
      add(job.baseModel?.name);
      const modelConfig = (job.request as { model_config?: unknown } | null)?.model_config;
      try {
        const source = modelConfig ? this.opts.engines.get(job.engine)?.baseModel(modelConfig as never) : undefined;
        if (source?.kind === 'hub') used.add(hubCacheDir(workdir, source));
      } catch {
        // A request its engine no longer reads names no snapshot it could use.
      }
    }
    const registered = await db.selectDistinct({ baseModel: models.baseModel }).from(models);
    for (const m of registered) add(m.baseModel);
    return used;
  }

  /** Deletes the archives among these that nothing refers to any more; answers how many. */
  private async collectArchives(candidates: readonly string[]): Promise<number> {
    const { db } = this.opts.database;
    const store = this.opts.files.datasets;
    let removed = 0;
    for (const sha256 of candidates) {
      const gone = await store.remove(sha256, async () => {
        const [upload] = await db.select({ id: datasets.id }).from(datasets).where(eq(datasets.sha256, sha256)).limit(1);
        if (upload) return true;
        const [job] = await db
          .select({ id: jobs.id })
          .from(jobs)
          .where(and(eq(jobs.datasetSha256, sha256), isNull(jobs.filesRemovedAt)))
          .limit(1);
        return !!job;
      });
      if (gone) removed++;
    }
    return removed;
  }
}

/** A pruner that deletes rows older than a number of days. */
export function olderThan(name: string, days: number, prune: (before: Date) => Promise<number>): Pruner {
  return { name, prune: (now) => prune(new Date(now.getTime() - days * DAY_MS)) };
}
