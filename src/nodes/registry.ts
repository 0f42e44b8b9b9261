/**
 * The node registry's SQL: one statement per change (a node announces itself, ticks, leaves)
 * and the cluster's read. Ages and statuses are computed by the database's clock, never the
 * reader's: nodes on several hosts compare last_seen_at against one now().
 */
import { and, eq, inArray, isNotNull, lt, or, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { jobs, nodes, type NodeDevice, type Phase } from '../db/schema.js';

export type NodeStatus = 'alive' | 'stale' | 'left';

export interface NodeAnnouncement {
  id: string;
  hostname: string;
  pid: number;
  version: string;
  runJobs: boolean;
  devices: NodeDevice[];
  leaseSeconds: number;
}

/** A node starts (or starts again with the same NODE_ID): a fresh row, not left. */
export async function announceNode(db: Db, node: NodeAnnouncement): Promise<void> {
  const values = { ...node, startedAt: sql`now()`, lastSeenAt: sql`now()`, leftAt: null };
  await db.insert(nodes).values(values).onConflictDoUpdate({ target: nodes.id, set: values });
}

/**
 * The lease-renewal tick. A row missing (pruned while this node could not reach the database)
 * is written again, and a node marked left that still ticks is alive again: the row follows
 * the process, whatever happened to the table.
 */
export async function touchNode(db: Db, node: NodeAnnouncement): Promise<void> {
  await db
    .insert(nodes)
    .values(node)
    .onConflictDoUpdate({ target: nodes.id, set: { lastSeenAt: sql`now()`, leftAt: null } });
}

/** A graceful stop: the node says it left, so readers tell it from one that died. */
export async function markNodeLeft(db: Db, id: string): Promise<void> {
  await db.update(nodes).set({ leftAt: sql`now()` }).where(eq(nodes.id, id));
}

/** Rows of nodes that left or went silent before the cutoff. */
export async function pruneNodes(db: Db, before: Date): Promise<number> {
  const cutoff = sql`${before.toISOString()}::timestamptz`;
  const gone = await db
    .delete(nodes)
    .where(or(and(isNotNull(nodes.leftAt), lt(nodes.leftAt, cutoff)), lt(nodes.lastSeenAt, cutoff)))
    .returning({ id: nodes.id });
  return gone.length;
}

export interface NodeJob {
  id: string;
  name: string;
  /** claimed: not started yet; running: its run started. */
  state: 'claimed' | 'running';
  phase: Phase;
  device: string | null;
  progress: number;
  currentEpoch: number;
  totalEpochs: number;
  leaseExpiresAt: Date | null;
}

export interface ClusterNode extends NodeAnnouncement {
  startedAt: Date;
  lastSeenAt: Date;
  leftAt: Date | null;
  status: NodeStatus;
  /** Seconds since its last lease-renewal tick, by the database's clock. */
  lastSeenSeconds: number;
  /** The jobs it holds now (claimed or running). */
  jobs: NodeJob[];
}

const statusSql = sql<NodeStatus>`case when ${nodes.leftAt} is not null then 'left'
  when ${nodes.lastSeenAt} < now() - make_interval(secs => ${nodes.leaseSeconds}) then 'stale'
  else 'alive' end`;

/** Every node with its status and the jobs it holds: live ones first, then by id. */
export async function listNodes(db: Db): Promise<ClusterNode[]> {
  const rows = await db
    .select({
      id: nodes.id,
      hostname: nodes.hostname,
      pid: nodes.pid,
      version: nodes.version,
      runJobs: nodes.runJobs,
      devices: nodes.devices,
      leaseSeconds: nodes.leaseSeconds,
      startedAt: nodes.startedAt,
      lastSeenAt: nodes.lastSeenAt,
      leftAt: nodes.leftAt,
      status: statusSql,
      lastSeenSeconds: sql<number>`greatest(0, extract(epoch from now() - ${nodes.lastSeenAt}))::float8`,
    })
    .from(nodes)
    .orderBy(sql`${nodes.leftAt} is not null`, nodes.id);
  if (rows.length === 0) return [];
  const held = await db
    .select({
      id: jobs.id,
      name: jobs.name,
      state: jobs.state,
      phase: jobs.phase,
      nodeId: jobs.nodeId,
      device: jobs.device,
      progress: jobs.progress,
      currentEpoch: jobs.currentEpoch,
      totalEpochs: jobs.totalEpochs,
      leaseExpiresAt: jobs.leaseExpiresAt,
    })
    .from(jobs)
    .where(and(inArray(jobs.state, ['claimed', 'running']), isNotNull(jobs.nodeId)))
    .orderBy(jobs.seq);
  return rows.map((r) => ({
    ...r,
    lastSeenSeconds: Number(r.lastSeenSeconds),
    jobs: held.filter((j) => j.nodeId === r.id).map(({ nodeId: _, state, ...j }) => ({ ...j, state: state === 'claimed' ? 'claimed' : 'running' })),
  }));
}
