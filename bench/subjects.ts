// The implementations under test: cachegraph, the Map floor and the peers, behind the three
// operations the workloads call. Each is created empty, filled and checked before it is timed.
import { isDeepStrictEqual } from 'node:util';
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { createCache } from 'cache-manager';
import { LRUCache } from 'lru-cache';
import NodeCache from 'node-cache';
import QuickLRU from 'quick-lru';
import { CacheManager, MemoryStore, type Cache } from './built.js';
import type { Dataset } from './data.js';

/**
 * What a workload calls: `get`, `set` and `delete`, spelled as on a `Map`. Implementations that
 * spell them otherwise are wrapped in an adapter object (the wrapper is inlined by V8 in the
 * timed loops, see `opLoop` in harness.ts). For async implementations each returns a promise.
 */
export interface CacheLike {
  get(key: unknown): unknown;
  set(key: unknown, value: unknown): unknown;
  delete(key: unknown): unknown;
}

/** How a result is drawn and compared: the floor (Map), ours, or a peer. */
export type Role = 'floor' | 'ours' | 'peer';

/** One implementation, opened empty for each dataset. */
export interface Subject {
  readonly name: string;
  readonly role: Role;
  /** Its operations return promises; timed loops await each one. */
  readonly async: boolean;
  /** It takes string keys only (integer-key workloads skip it). */
  readonly stringKeysOnly: boolean;
  /**
   * An empty instance. `capacity`: the entries it must hold; bounded implementations are
   * sized to hold them without evicting, unless `evict` asks for a bound of exactly `capacity`.
   */
  open(capacity: number, evict: boolean): Promise<Instance>;
}

/** An opened implementation. */
export interface Instance {
  readonly cache: CacheLike;
  /** Brings it to its resting state before a memory measurement (cachegraph: a save). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

const nothing = async (): Promise<void> => undefined;
let managers = 0;

/** A cachegraph cache in a manager of its own, on a MemoryStore (no files), without AutoSync. */
export async function openCachegraph<K = unknown, V = unknown>(persistent: boolean, maxEntries: number | undefined): Promise<{ manager: CacheManager; cache: Cache<K, V> }> {
  const manager = new CacheManager({ name: `bench-${++managers}`, store: new MemoryStore(), autoSync: false });
  const cache = await manager.registerCache<K, V>('bench', maxEntries === undefined ? { persistent } : { persistent, maxEntries });
  return { manager, cache };
}

/**
 * cachegraph. `persistent: false` is a pure in-memory cache; `persistent: true` also checks
 * every key and value against the codec at `set()` and tracks the changed keys for the next
 * save (change tracking on). `settle`, once filled: `'save'` saves it (which forgets the
 * changed keys: later writes are tracked key by key); `'save-and-rewrite-half'` saves it,
 * then writes half the entries again: the most changed keys a cache lists one by one
 * (beyond half, on an unshared store, it counts every entry as changed and lists none).
 * Unsettled, a cache written since it was empty lists no keys either.
 */
export function cachegraph(name: string, options: { persistent: boolean; settle?: 'save' | 'save-and-rewrite-half' }): Subject {
  return {
    name,
    role: 'ours',
    async: false,
    stringKeysOnly: false,
    async open(capacity, evict) {
      const { manager, cache } = await openCachegraph(options.persistent, evict ? capacity : undefined);
      return {
        cache,
        async settle() {
          if (options.settle === undefined) return;
          await manager.save(cache.name);
          if (options.settle !== 'save-and-rewrite-half') return;
          let left = Math.floor(cache.size / 2);
          for (const [key, value] of cache) {
            if (left-- === 0) break;
            cache.set(key, value);
          }
        },
        async close() {
          // Emptied first, so close() has a small save to make instead of every entry.
          cache.clear();
          await manager.close();
        },
      };
    },
  };
}

/** bentocache with its memory (L1) driver alone, holding values as they are (serialize: false). */
export function memoryBentoCache(capacity: number): BentoCache<{ memory: ReturnType<typeof bentostore> }> {
  return new BentoCache({ default: 'memory', stores: { memory: bentostore().useL1Layer(memoryDriver({ maxItems: capacity, serialize: false })) } });
}

/** A subject whose instance needs no settling. */
function simple(name: string, role: Role, open: (capacity: number, evict: boolean) => { cache: CacheLike; close?: () => Promise<unknown> }, flags: { async?: boolean; stringKeysOnly?: boolean } = {}): Subject {
  return {
    name,
    role,
    async: flags.async ?? false,
    stringKeysOnly: flags.stringKeysOnly ?? false,
    async open(capacity, evict) {
      const { cache, close } = open(capacity, evict);
      return { cache, settle: nothing, close: async () => void (await close?.()) };
    },
  };
}

export const map = simple('Map', 'floor', () => ({ cache: new Map<unknown, unknown>() }));
export const cachegraphMemory = cachegraph('cachegraph (persistent: false)', { persistent: false });
export const cachegraphPersistent = cachegraph('cachegraph (persistent, change tracking)', { persistent: true, settle: 'save' });
export const lruCache = simple('lru-cache', 'peer', (capacity) => ({ cache: new LRUCache<{}, {}>({ max: capacity }) as CacheLike }));
// quick-lru keeps between maxSize and 2 × maxSize entries; one more than the capacity keeps
// it from ever rotating its two maps when it must hold everything.
export const quickLru = simple('quick-lru', 'peer', (capacity, evict) => ({ cache: new QuickLRU<unknown, unknown>({ maxSize: evict ? capacity : capacity + 1 }) }));
export const nodeCache = simple('node-cache', 'peer', () => {
  // useClones: false stores references like every other implementation here (the default
  // deep-copies each value on get and set); checkperiod: 0, no expiry timer.
  const cache = new NodeCache({ useClones: false, checkperiod: 0 });
  return {
    cache: { get: (key) => cache.get(key as string), set: (key, value) => cache.set(key as string, value), delete: (key) => cache.del(key as string) },
    close: async () => cache.close(),
  };
});
export const bentocache = simple(
  'bentocache (memory)',
  'peer',
  (capacity) => {
    const bento = memoryBentoCache(capacity);
    return {
      cache: {
        get: (key) => bento.get({ key: key as string }),
        set: (key, value) => bento.set({ key: key as string, value }),
        delete: (key) => bento.delete({ key: key as string }),
      },
      close: () => bento.disconnectAll(),
    };
  },
  { async: true, stringKeysOnly: true },
);
export const cacheManager = simple(
  'cache-manager',
  'peer',
  () => {
    // Its default store: an in-memory Keyv.
    const cache = createCache();
    return {
      cache: { get: (key) => cache.get(key as string), set: (key, value) => cache.set(key as string, value), delete: (key) => cache.del(key as string) },
      close: () => cache.disconnect(),
    };
  },
  { async: true, stringKeysOnly: true },
);

/** The implementations of the unbounded workloads, the floor first. */
export const UNBOUNDED: readonly Subject[] = [map, cachegraphMemory, cachegraphPersistent, lruCache, quickLru, nodeCache, bentocache, cacheManager];

/** Whether `subject` can run workloads on `data`'s keys. */
export function accepts(subject: Subject, data: Dataset): boolean {
  return data.kind === 'string' || !subject.stringKeysOnly;
}

/** Stores `data.values[i]` under `data.keys[i]` for every `i`. */
export async function fill(subject: Subject, cache: CacheLike, data: Dataset, from = 0, to = data.n): Promise<void> {
  for (let i = from; i < to; i++) {
    const stored = cache.set(data.keys[i], data.values[i]);
    if (subject.async) await stored;
  }
}

/**
 * The correctness gate: each sampled key must read back its own value, and each of `absent`
 * must read back nothing. Returns what went wrong, or `undefined` when every check passed.
 */
export async function check(cache: CacheLike, data: Dataset, present: Iterable<number>, absent: Iterable<unknown> = []): Promise<string | undefined> {
  for (const i of present) {
    const got = await cache.get(data.keys[i]);
    if (!isDeepStrictEqual(got, data.values[i])) return `get(${JSON.stringify(data.keys[i])}) returned ${JSON.stringify(got)}, expected ${JSON.stringify(data.values[i])}`;
  }
  for (const key of absent) {
    const got = await cache.get(key);
    if (got !== undefined && got !== null) return `get(${JSON.stringify(key)}) returned ${JSON.stringify(got)} for a key that should be absent`;
  }
  return undefined;
}

/** A deleted key must read back as absent, then read back its value once set again. */
export async function checkDelete(subject: Subject, cache: CacheLike, data: Dataset): Promise<string | undefined> {
  await cache.delete(data.keys[0]);
  const problem = await check(cache, data, [], [data.keys[0]]);
  await fill(subject, cache, data, 0, 1);
  return problem ?? (await check(cache, data, [0]));
}

/** A sample of `count` indices in `[0, n)`, spread over the whole range, the ends included. */
export function sample(n: number, count = 1_000): number[] {
  const step = Math.max(1, Math.floor(n / count));
  const indices: number[] = [];
  for (let i = 0; i < n; i += step) indices.push(i);
  if (indices[indices.length - 1] !== n - 1) indices.push(n - 1);
  return indices;
}
