/**
 * Turns the conditions that hold at each look into transitions: `fired` once when a condition
 * starts holding, `resolved` once when it stops, nothing in between, however often it is
 * sampled. Conditions that could not be observed this time (a database read failed, nvidia-smi
 * timed out) keep their state rather than resolve and fire again.
 */
import type { ActiveCondition, ConditionName } from './conditions.js';

export interface AlertTransition {
  type: 'alert.fired' | 'alert.resolved';
  condition: ActiveCondition;
  /** When the condition started holding (for resolved: how long it lasted). */
  since: Date;
  at: Date;
}

export class AlertTracker {
  private readonly active = new Map<string, { condition: ActiveCondition; since: Date }>();

  update(now: Date, holding: ActiveCondition[], unobserved: ReadonlySet<ConditionName> = new Set()): AlertTransition[] {
    const out: AlertTransition[] = [];
    const seen = new Set<string>();
    for (const c of holding) {
      seen.add(c.key);
      const prev = this.active.get(c.key);
      if (prev) {
        prev.condition = c; // the latest value, for the resolved event
        continue;
      }
      this.active.set(c.key, { condition: c, since: now });
      out.push({ type: 'alert.fired', condition: c, since: now, at: now });
    }
    for (const [key, { condition, since }] of this.active) {
      if (seen.has(key) || unobserved.has(condition.condition)) continue;
      this.active.delete(key);
      out.push({ type: 'alert.resolved', condition, since, at: now });
    }
    return out;
  }

  /** Conditions that hold now (for the logs and tests). */
  current(): ActiveCondition[] {
    return [...this.active.values()].map((a) => a.condition);
  }
}
