/**
 * This node in the registry: announced at start, touched at each lease-renewal tick (the
 * scheduler calls tick), marked left on a graceful stop. A failed write is logged, never
 * thrown: a node that cannot reach the database shows as stale to the others, which is true.
 */
import type { Database } from '../db/client.js';
import type { Logger } from '../core/logger.js';
import { announceNode, markNodeLeft, touchNode, type NodeAnnouncement } from './registry.js';

export class NodePresence {
  private left = false;

  constructor(
    private readonly opts: { database: Database; node: NodeAnnouncement; logger: Logger },
  ) {}

  get id(): string {
    return this.opts.node.id;
  }

  /** At start: thrown errors stop the start, as any other database failure there does. */
  async announce(): Promise<void> {
    await announceNode(this.opts.database.db, this.opts.node);
  }

  async tick(): Promise<void> {
    if (this.left) return;
    try {
      await touchNode(this.opts.database.db, this.opts.node);
    } catch (err) {
      this.opts.logger.warn({ err, node_id: this.id }, 'node heartbeat not recorded');
    }
  }

  async leave(): Promise<void> {
    this.left = true;
    try {
      await markNodeLeft(this.opts.database.db, this.id);
    } catch (err) {
      this.opts.logger.warn({ err, node_id: this.id }, 'node not marked left');
    }
  }
}
