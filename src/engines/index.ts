/**
 * The engines this server trains with. The first one is the default: a request that names no
 * framework is for it. Adding an engine is one line in BUILTIN_ENGINES (and its two folders).
 */
import type { AnyEngine } from './types.js';
import { rfdetrEngine } from './rfdetr/index.js';
import { transformersEngine } from './transformers/index.js';
import { ultralyticsEngine } from './ultralytics/index.js';

export const BUILTIN_ENGINES: readonly AnyEngine[] = [ultralyticsEngine, rfdetrEngine, transformersEngine];

export class Engines {
  private readonly byName = new Map<string, AnyEngine>();

  constructor(list: readonly AnyEngine[] = BUILTIN_ENGINES) {
    if (list.length === 0) throw new Error('at least one engine is needed');
    for (const engine of list) {
      if (this.byName.has(engine.name)) throw new Error(`two engines are named ${engine.name}`);
      this.byName.set(engine.name, engine);
    }
  }

  get default(): AnyEngine {
    return this.byName.values().next().value!;
  }

  list(): AnyEngine[] {
    return [...this.byName.values()];
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  get(name: string): AnyEngine | undefined {
    return this.byName.get(name);
  }

  /** The engine of a stored job or a validated request: its absence is a server bug or a missing plug-in. */
  require(name: string): AnyEngine {
    const engine = this.byName.get(name);
    if (!engine) throw new Error(`no engine ${name} on this server (engines: ${this.names().join(', ')})`);
    return engine;
  }
}
