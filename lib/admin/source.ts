/**
 * What the admin service shows and operates: a running {@link CacheManager} (inside an
 * application: live memory, hit counts, the AutoSync timeline) or a store alone
 * (`cachegraph serve`: saved copies and their recorded links). Both answer the same
 * questions, so one handler and one dashboard serve both.
 *
 * @module
 */

import { UnknownCacheError } from '../errors.js';
import type { CacheManager } from '../manager.js';
import type { CacheStore, StoredEntry } from '../store/types.js';
import { codecFor, describeStored, readCatalog, storeContext } from '../cli/catalog.js';
import { invalidateStored } from '../cli/commands.js';
import { ManagerMetrics, type TimelineEvent } from './metrics.js';

/**
 * One row of the caches table.
 *
 * @example
 * const row: CacheRow = (await source.caches())[0];
 */
export interface CacheRow {
  /** The cache. */
  readonly name: string;
  /** Registered in the manager (always `false` for a store source). */
  readonly registered: boolean;
  /** Saved at all (`undefined`: unknown). */
  readonly persistent: boolean | undefined;
  /** Entries in memory (manager) or in the saved copy (store); `undefined`: unknown. */
  readonly entries: number | undefined;
  /** Bytes of the saved copy (store source only). */
  readonly bytes: number | undefined;
  /** Unsaved changes. */
  readonly pendingChanges: number;
  /** Distinct keys changed since the last save. */
  readonly dirtyKeys: number;
  /** Reads answered: memoized calls answered by a stored result for a cache of memoized results, else the cache's own count of `get`/`fetch` hits. */
  readonly hits: number | undefined;
  /** Reads not answered (likewise). */
  readonly misses: number | undefined;
  /** Writes (when the cache counts them). */
  readonly sets: number | undefined;
  /** LRU evictions. */
  readonly evictions: number | undefined;
  /** Successful saves. */
  readonly saves: number;
  /** Failed saves. */
  readonly saveErrors: number;
  /** When the last save finished, ms since the epoch. */
  readonly lastSaveAt: number | undefined;
  /** When AutoSync will save next. */
  readonly nextSaveAt: number | undefined;
  /** A save is running. */
  readonly saving: boolean;
  /** Direct upstreams. */
  readonly dependsOn: readonly string[];
}

/**
 * The graph as drawn: nodes (caches and linked names) and direct edges.
 *
 * @example
 * const { nodes, edges } = await source.graph();
 */
export interface GraphView {
  readonly nodes: readonly { readonly name: string; readonly known: boolean }[];
  readonly edges: readonly { readonly from: string; readonly to: string }[];
}

/**
 * What the admin handler needs.
 *
 * @example
 * const source = managerSource(manager);
 */
export interface AdminSource {
  /** `'manager'` or `'store'`. */
  readonly kind: 'manager' | 'store';
  /** A title: the manager's name, or the store's location (no credentials). */
  readonly label: string;
  /** Rows of every cache. */
  caches(): Promise<CacheRow[]>;
  /** Whether `name` is a cache this source knows. */
  has(name: string): Promise<boolean>;
  /** The graph of links. */
  graph(): Promise<GraphView>;
  /** The entry of `key` in `name`, or `undefined`. */
  lookup(name: string, key: unknown): Promise<StoredEntry | undefined>;
  /** What invalidating `name` would touch, upstreams first. */
  cascade(name: string): Promise<string[]>;
  /** Invalidates `name` (cascading); resolves the caches touched, upstreams first. */
  invalidate(name: string): Promise<string[]>;
  /** Saves `name` now; `undefined` for a source with nothing unsaved (a store). */
  readonly save: ((name: string) => Promise<void>) | undefined;
  /** The timeline (manager source only). */
  timeline(since: number): TimelineEvent[];
  /** Event counters (manager source only). */
  readonly metrics: ManagerMetrics | undefined;
  /** Stops listening. */
  close(): void;
}

/** A numeric field of a stats object, when the cache reports it (newer Cache.stats()). */
function counter(stats: object, field: string): number | undefined {
  const value = (stats as Record<string, unknown>)[field];
  return typeof value === 'number' ? value : undefined;
}

/**
 * Direct upstreams of `name`, from the manager's transitive `dependenciesOf` (its public
 * API has no direct-parents query): an upstream is drawn as a parent unless another
 * upstream already depends on it, so a link also implied by a longer path is not drawn.
 */
function directParents(manager: CacheManager, name: string): string[] {
  const upstream = manager.dependenciesOf(name);
  const implied = new Set<string>();
  for (const q of upstream) for (const p of manager.dependenciesOf(q)) implied.add(p);
  return upstream.filter((p) => !implied.has(p));
}

/**
 * A source over a running manager. It listens to the manager's events from now on
 * (counters, timeline) until {@link AdminSource.close}.
 *
 * @example
 * const source = managerSource(manager);
 */
export function managerSource(manager: CacheManager): AdminSource {
  const metrics = new ManagerMetrics(manager);
  const names = (): string[] => {
    const all = new Set(manager.cacheNames());
    for (const name of [...all]) for (const linked of [...manager.dependenciesOf(name), ...manager.dependentsOf(name)]) all.add(linked);
    return [...all];
  };
  return {
    kind: 'manager',
    label: manager.name,
    metrics,
    async caches() {
      return manager.cacheNames().map((name): CacheRow => {
        const stats = manager.getCache(name).stats();
        const events = metrics.counters(name);
        // A cache of memoized results is read by the memoizer itself (a lookup, then a fetch on a
        // miss): for it, the calls answered and computed are the rate that means something.
        const memo = events.memoHits + events.memoMisses > 0;
        const hits = memo ? events.memoHits : counter(stats, 'hits');
        const misses = memo ? events.memoMisses : counter(stats, 'misses');
        return {
          name,
          registered: true,
          persistent: stats.persistent,
          entries: stats.entries,
          bytes: undefined,
          pendingChanges: stats.pendingChanges,
          dirtyKeys: stats.dirtyKeys,
          hits: hits ?? events.memoHits,
          misses: misses ?? events.memoMisses,
          sets: counter(stats, 'sets'),
          evictions: counter(stats, 'evictions') ?? events.evictions,
          saves: stats.saves,
          saveErrors: stats.saveErrors,
          lastSaveAt: stats.lastSaveAt,
          nextSaveAt: stats.nextSaveAt,
          saving: stats.saving,
          dependsOn: directParents(manager, name),
        };
      });
    },
    async has(name) {
      return manager.hasCache(name);
    },
    async graph() {
      const all = names();
      return {
        nodes: all.map((name) => ({ name, known: manager.hasCache(name) })),
        edges: all.flatMap((to) => directParents(manager, to).map((from) => ({ from, to }))),
      };
    },
    async lookup(name, key) {
      const cache = manager.getCache(name);
      if (cache.has(key)) return [key, cache.peek(key), 0];
      const value = await cache.fetch(key);
      return value === undefined ? undefined : [key, value, 0];
    },
    async cascade(name) {
      if (!manager.hasCache(name)) throw new UnknownCacheError(name);
      return [name, ...manager.dependentsOf(name)];
    },
    async invalidate(name) {
      const affected = [name, ...manager.dependentsOf(name)];
      await manager.invalidate(name);
      return affected;
    },
    save: (name) => manager.save(name),
    timeline: (since) => metrics.timeline(since),
    close: () => metrics.close(),
  };
}

/**
 * A source over a store alone: the saved caches and their recorded links. Invalidation
 * deletes copies along the recorded graph and, on a store with a bus, tells running
 * applications (as `cachegraph invalidate` does).
 *
 * @example
 * const source = storeSource(new FileStore({ dir: '.cache' }), '.cache');
 */
export function storeSource(store: CacheStore, label: string): AdminSource {
  return {
    kind: 'store',
    label,
    metrics: undefined,
    async caches() {
      const catalog = await readCatalog(store);
      return [...catalog.caches.values()].map(
        (info): CacheRow => ({
          name: info.name,
          registered: false,
          persistent: true,
          entries: info.entries,
          bytes: info.bytes,
          pendingChanges: 0,
          dirtyKeys: 0,
          hits: undefined,
          misses: undefined,
          sets: undefined,
          evictions: undefined,
          saves: 0,
          saveErrors: 0,
          lastSaveAt: info.savedAt,
          nextSaveAt: undefined,
          saving: false,
          dependsOn: info.dependsOn,
        }),
      );
    },
    async has(name) {
      return (await store.has(name)) || (await readCatalog(store)).graph.has(name);
    },
    async graph() {
      const catalog = await readCatalog(store);
      const nodes = catalog.graph.topologicalOrder();
      return {
        nodes: nodes.map((name) => ({ name, known: catalog.caches.has(name) })),
        edges: nodes.flatMap((from) => catalog.graph.childrenOf(from).map((to) => ({ from, to }))),
      };
    },
    async lookup(name, key) {
      const info = await describeStored(store, name);
      const codec = codecFor(info?.codec);
      if (info === undefined || codec === undefined) return undefined;
      const context = storeContext(codec);
      if (store.loadEntry !== undefined) return store.loadEntry(name, key, context);
      return (await store.load(name, context))?.entries.find((entry) => Object.is(entry[0], key));
    },
    async cascade(name) {
      return (await readCatalog(store)).cascade(name);
    },
    async invalidate(name) {
      return invalidateStored(store, await readCatalog(store), name);
    },
    save: undefined,
    timeline: () => [],
    close: () => undefined,
  };
}
