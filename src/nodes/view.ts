/** A node as the API shows it (GET /api/v1/nodes, /health): snake_case, dates as ISO strings. */
import type { ClusterNode } from './registry.js';

export function nodeView(node: ClusterNode, selfId: string) {
  return {
    node_id: node.id,
    self: node.id === selfId,
    status: node.status,
    hostname: node.hostname,
    pid: node.pid,
    version: node.version,
    run_jobs: node.runJobs,
    lease_seconds: node.leaseSeconds,
    started_at: node.startedAt.toISOString(),
    last_seen_at: node.lastSeenAt.toISOString(),
    last_seen_seconds: Math.round(node.lastSeenSeconds * 10) / 10,
    left_at: node.leftAt?.toISOString() ?? null,
    devices: node.devices.map((d) => ({
      device: d.device,
      slots: d.slots,
      job_ids: node.jobs.filter((j) => j.device === d.device).map((j) => j.id),
    })),
    jobs: node.jobs.map((j) => ({
      job_id: j.id,
      name: j.name,
      state: j.state,
      phase: j.phase,
      device: j.device,
      progress: Math.round(j.progress * 10) / 10,
      epoch: j.currentEpoch,
      total_epochs: j.totalEpochs,
      lease_expires_at: j.leaseExpiresAt?.toISOString() ?? null,
    })),
  };
}
export type NodeView = ReturnType<typeof nodeView>;
