/**
 * Dependency tracking: while a memoized function computes, an {@link AsyncLocalStorage}
 * holds a {@link Collector}; the memoized calls it makes and the cache entries it reads with
 * `fetch` / `getOrBuild` are added to it, and the stored result keeps the list.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { MemoDependency } from './record.js';

/** What one computation reads, and which computation it runs inside of. */
export class Collector {
  /** The manager the computation stores into: reads from other managers are not recorded. */
  readonly owner: object;
  /** The cache and key the result will be stored under. */
  readonly cache: string;
  readonly key: string;
  /** The computation that called this one, if any. */
  readonly parent: Collector | undefined;
  readonly #deps = new Map<string, Map<unknown, MemoDependency>>();

  /**
   * @param owner - the manager
   * @param cache - where the result goes
   * @param key - its key
   * @param parent - the enclosing computation
   * @example
   * new Collector(manager, 'memo', key, tracking.getStore());
   */
  constructor(owner: object, cache: string, key: string, parent: Collector | undefined) {
    this.owner = owner;
    this.cache = cache;
    this.key = key;
    this.parent = parent;
  }

  /**
   * Records a dependency (the latest read of one cache entry wins).
   *
   * @example
   * collector.add(['memo', key, record.s, 'stepA@1', 0]);
   */
  add(dep: MemoDependency): void {
    let byKey = this.#deps.get(dep[0]);
    if (byKey === undefined) this.#deps.set(dep[0], (byKey = new Map()));
    byKey.set(dep[1], dep);
  }

  /**
   * Everything recorded, in first-read order per cache.
   *
   * @example
   * const deps = collector.dependencies();
   */
  dependencies(): MemoDependency[] {
    const all: MemoDependency[] = [];
    for (const byKey of this.#deps.values()) for (const dep of byKey.values()) all.push(dep);
    return all;
  }

  /**
   * Whether `cache`/`key` is being computed by this computation or one that called it.
   *
   * @example
   * if (tracking.getStore()?.computing('memo', key)) throw new MemoRecursionError(...);
   */
  computing(cache: string, key: string): boolean {
    for (let c: Collector | undefined = this; c !== undefined; c = c.parent) if (c.key === key && c.cache === cache) return true;
    return false;
  }
}

/** The computation the current async context runs inside of. */
export const tracking = new AsyncLocalStorage<Collector>();
