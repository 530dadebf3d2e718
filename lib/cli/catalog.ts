/**
 * What a store holds, read without the application: every saved cache with its
 * {@link StoredInfo}, and the dependency graph drawn from the links the saves recorded.
 * The CLI and `cachegraph serve` cascade invalidations over it.
 *
 * @module
 */

import { builtinCodec } from '../codec/index.js';
import { v8Codec } from '../codec/v8.js';
import type { Codec } from '../codec/types.js';
import { DependencyGraph } from '../graph.js';
import type { CacheStore, StoreContext, StoredInfo } from '../store/types.js';
import { systemClock } from '../sync/clock.js';

/**
 * The saved caches of a store and the graph of their recorded links.
 *
 * @example
 * const catalog = await readCatalog(store);
 * catalog.cascade('users'); // ['users', 'stats', 'report']
 */
export interface Catalog {
  /** Each saved cache, by name, in the store's order (sorted). */
  readonly caches: ReadonlyMap<string, StoredInfo>;
  /** Every cache named by a copy or a link, with an edge `parent → dependent` per recorded link. */
  readonly graph: DependencyGraph;
  /**
   * `name` and everything downstream of it, upstreams first: the caches an invalidation of
   * `name` empties.
   */
  cascade(name: string): string[];
}

/**
 * The {@link StoredInfo} of a cache: the store's `describe`, or for a store without it, a
 * full load (with no links known).
 *
 * @example
 * const info = await describeStored(store, 'users');
 */
export async function describeStored(store: CacheStore, name: string): Promise<StoredInfo | undefined> {
  if (store.describe !== undefined) return store.describe(name);
  const snapshot = await store.load(name, storeContext(v8Codec));
  if (snapshot === undefined) return undefined;
  const { entries, bytes, savedAt, codec, location } = snapshot;
  return { name, entries: entries.length, bytes, savedAt, codec, dependsOn: [], location, logBytes: 0 };
}

/**
 * Reads every saved cache of `store` and builds the graph of their recorded links.
 * `onProgress(done, total)` is called after each cache.
 *
 * @throws what the store's `list` or `describe` throws (a damaged manifest: CorruptFileError)
 * @example
 * const { caches, graph } = await readCatalog(store);
 */
export async function readCatalog(store: CacheStore, onProgress?: (done: number, total: number) => void): Promise<Catalog> {
  const names = await store.list();
  const caches = new Map<string, StoredInfo>();
  const graph = new DependencyGraph();
  for (const [i, name] of names.entries()) {
    const info = await describeStored(store, name);
    if (info !== undefined) caches.set(name, info);
    onProgress?.(i + 1, names.length);
  }
  for (const info of caches.values()) {
    graph.addNode(info.name);
    // A link that would close a cycle can only come from copies saved by different
    // versions of an application; the graph keeps the first links it was given.
    for (const parent of info.dependsOn) {
      try {
        graph.addDependency(parent, info.name);
      } catch {
        // Skipped: see above.
      }
    }
  }
  return {
    caches,
    graph,
    cascade: (name) => [name, ...graph.dependentsOf(name)],
  };
}

/**
 * The codec a copy was written with, when this process has it (the built-in ones).
 *
 * @example
 * codecFor('json') === jsonCodec; // true
 */
export function codecFor(name: string | undefined): Codec | undefined {
  return name === undefined ? v8Codec : builtinCodec(name);
}

/**
 * A store context for tools: the system clock and the given codec.
 *
 * @example
 * await store.load('users', storeContext(v8Codec));
 */
export function storeContext(codec: Codec, extra: Partial<StoreContext> = {}): StoreContext {
  return { codec, clock: systemClock, ...extra };
}
