/**
 * `Cache<K, V>`: the synchronous, Map-like, in-memory view of one named cache, with TTL,
 * an optional LRU bound, single-flight `fetch`/`getOrBuild` and change tracking. It does no
 * I/O of its own: the manager loads, saves and rebuilds it, always into this same object,
 * and gives it the function `fetch` reads the store through (the read-through tier).
 *
 * @module
 */
import { ClosedError, InvalidOptionError, UnserializableError } from './errors.js';
import { EVENTS, type Emit, type Listening, type SaveReason } from './events.js';
import type { LoadedContents } from './hooks.js';
import { resolveEntryTtl, type Duration } from './options.js';
import type { Codec } from './codec/types.js';
import type { ChangeBatch, KeyLockResult, StoredEntry } from './store/types.js';
import type { AutoSyncRule } from './sync/autosync.js';
import type { Clock } from './sync/clock.js';
import { LruMap } from './lru.js';

/**
 * The fewest listed changed keys at which a cache on an unshared store counts every entry
 * as changed instead (when they are also more than half its entries): below it, the set
 * is small, and the next save writes no entry that did not change.
 */
const LIST_ALL_AT = 1024;

/**
 * Options of a single `set()`.
 *
 * @example
 * cache.set('session', token, { ttl: '15m' });
 */
export interface SetOptions {
  /** Time-to-live of this entry (ms or `'10s'`), overriding the cache's default `ttl`. */
  readonly ttl?: Duration;
}

/** Settings the manager gives a cache. Internal. */
export interface CacheSettings<K = unknown, V = unknown> {
  readonly name: string;
  readonly clock: Clock;
  readonly emit: Emit;
  /** Which events have listeners (the manager's, kept up to date). */
  readonly listening: Listening;
  /** The codec used to check keys and values at `set()`; `undefined` for non-persistent caches. */
  readonly codec: Codec | undefined;
  readonly maxEntries: number;
  readonly ttlMs: number | undefined;
  /** Called after every counted change (AutoSync's hot path). */
  readonly onChange: () => void;
  /** The manager's part of {@link Cache.stats}. */
  readonly describe: () => PersistenceStats;
  /** Whether the cache is ever saved: only then are changed keys remembered. */
  readonly persistent: boolean;
  /**
   * Other processes write to the same store and announce it (a store with a bus): a save
   * must never write back an entry that was not changed here, so changed keys are always
   * known exactly. Otherwise an entry may be counted as changed when it was not (it is
   * written again, with the same value), to keep memory down (see `#allDirty`).
   */
  readonly sharedStore?: boolean;
  /**
   * Reads one entry from the store (the read-through tier of {@link Cache.fetch});
   * `undefined` when the cache has no store behind it (not persistent, or a custom saver).
   */
  readonly readEntry: ((key: K) => Promise<StoredEntry | undefined>) | undefined;
  /**
   * Takes the store's cross-process lock on `key` for a `getOrBuild` flight; `undefined`
   * when builds are single-flight per process only (no `lock`, or a key the lock cannot name).
   */
  readonly lockEntry?: ((key: K) => Promise<KeyLockResult> | undefined) | undefined;
  /** Saves the cache now (a value built under a cross-process lock, which others wait for). */
  readonly persist?: () => Promise<void>;
  /** An unsaved entry was evicted from memory: the manager writes it soon (write-behind). */
  readonly onEvictDirty: () => void;
  /** `fetch`/`getOrBuild` produced `value` for `key` (dependency tracking of memoized functions). */
  readonly onRead: (key: K, value: V | undefined) => void;
}

/** What the manager knows about a cache's persistence, part of {@link CacheStats}. */
export interface PersistenceStats {
  /** Whether the cache is saved at all. */
  readonly persistent: boolean;
  /** Its AutoSync rules, or `false`. */
  readonly autoSync: readonly AutoSyncRule[] | false;
  /** Successful saves since registration. */
  readonly saves: number;
  /** Failed saves since registration. */
  readonly saveErrors: number;
  /** When the last successful save finished (clock ms). */
  readonly lastSaveAt: number | undefined;
  /** How long it took, ms. */
  readonly lastSaveMs: number | undefined;
  /** Bytes it wrote. */
  readonly lastSaveBytes: number | undefined;
  /** Entries (or changes) it wrote. */
  readonly lastSaveEntries: number | undefined;
  /** Why it ran. */
  readonly lastSaveReason: SaveReason | undefined;
  /** The last failure: when, and its message. */
  readonly lastError: { readonly at: number; readonly message: string } | undefined;
  /** When AutoSync will save next with the current changes (clock ms), if a rule can fire. */
  readonly nextSaveAt: number | undefined;
  /** The rule that will fire then. */
  readonly nextRule: AutoSyncRule | undefined;
  /** When a failed automatic save is retried. */
  readonly retryAt: number | undefined;
  /** Whether a save is running now. */
  readonly saving: boolean;
}

/**
 * A snapshot of one cache: its size, unsaved changes, and persistence history.
 *
 * @example
 * const { entries, pendingChanges, lastSaveAt, nextSaveAt } = cache.stats();
 */
export interface CacheStats extends PersistenceStats {
  /** The cache's name. */
  readonly name: string;
  /** Live entries in memory. */
  readonly entries: number;
  /** The LRU bound (`Infinity` when unbounded). */
  readonly maxEntries: number;
  /** Unsaved changes (the dirty count). */
  readonly pendingChanges: number;
  /**
   * Distinct keys the next save writes: changed since the last save, or counted as changed
   * (on a store no other process writes to, once more than half the entries changed, every
   * entry is: the next save writes them all).
   */
  readonly dirtyKeys: number;
  /** `get` and `fetch` calls that found a value in memory, since registration. */
  readonly hits: number;
  /** `get` and `fetch` calls that did not (a stored `undefined` counts as a miss of `get`). */
  readonly misses: number;
  /** `set` calls, since registration. */
  readonly sets: number;
  /** Entries evicted by the LRU bound, since registration. */
  readonly evictions: number;
  /** Entries dropped because their TTL passed, since registration. */
  readonly expirations: number;
}

/**
 * What a save takes from a cache: either every entry (`entries`, for a full rewrite) or only
 * what changed (`batch`), as of the start of the save, plus the change state it covers.
 */
export interface SaveTicket<K> {
  /** Every entry, least recently used first (full saves only). */
  readonly entries: StoredEntry[] | undefined;
  /** The changes since the previous save (incremental saves only). */
  readonly batch: ChangeBatch | undefined;
  /** Changes the save covers (returned to the cache if it fails). */
  readonly changes: number;
  /** Keys changed since the previous save. */
  readonly dirtyKeys: KeySet<K>;
  /** Whether the cache was cleared since the previous save. */
  readonly cleared: boolean;
  /** Unsaved entries that were evicted from memory, carried by `batch`, by key. */
  readonly evicted: ReadonlyMap<K, StoredEntry>;
}

/** The keys a save covers: what is asked of them. */
export interface KeySet<K> extends Iterable<K> {
  has(key: K): boolean;
}

/**
 * The keys of a save that took every entry in memory (`listed`) plus the keys deleted
 * since the previous save (`deleted`). The set to look keys up in is built only if
 * something asks (a read-through or a refresh during the save): listing a million
 * entries is the save's own work, a set of their keys would only be memory.
 */
function listedKeys<K>(listed: readonly StoredEntry[], deleted: ReadonlySet<K>): KeySet<K> {
  let lookup: Set<K> | undefined;
  return {
    has(key) {
      if (lookup === undefined) {
        lookup = new Set(deleted);
        for (const entry of listed) lookup.add(entry[0] as K);
      }
      return lookup.has(key);
    },
    *[Symbol.iterator]() {
      for (const entry of listed) yield entry[0] as K;
      yield* deleted;
    },
  };
}

/** Privileged operations only the manager performs. Reached through {@link cacheInternals}. */
export interface CacheInternals<K, V> {
  /**
   * Swaps in new contents. `dirty`: they differ from the persisted copy. `storeReadable`:
   * the store's copy of a key not in memory is current (read-through may use it) until the
   * next change; otherwise only after the next successful save.
   */
  replace(contents: LoadedContents<K, V>, dirty: boolean, storeReadable: boolean): void;
  /**
   * Empties the cache in place, like `replace` with empty contents that are not dirty, but
   * without allocating (cascades empty thousands of caches).
   */
  reset(storeReadable: boolean): void;
  /**
   * Starts a save: takes every entry (`'full'`) or only the changed ones (`'changes'`) and
   * moves the change state into the ticket, so writes from now on count toward the next save.
   */
  beginSave(mode: 'full' | 'changes'): SaveTicket<K>;
  /** A save failed: its changes count as unsaved again. */
  abortSave(ticket: SaveTicket<K>): void;
  /** A save succeeded: the store now holds what the ticket carried. */
  endSave(ticket: SaveTicket<K>): void;
  /**
   * Puts an entry another process saved into memory: clean when the store's copy of the key
   * is current here, else as a change (so the next save does not undo it).
   */
  adopt(key: K, value: V, expiresAt: number): void;
  /** Whether the store's copy of `key` can be current (no change to it here since the last save landed). */
  storeMayHold(key: K): boolean;
  /**
   * Applies the state of `key` another process saved (its entry, or `undefined` when it was
   * deleted), unless this cache changed the key since its last save: then its own change
   * wins and goes out with its next save. Not a change. A bounded cache only updates an
   * entry it holds (read-through finds the others). Resolves whether memory changed.
   */
  refresh(key: K, entry: StoredEntry | undefined): boolean;
  /**
   * Brings memory up to the store's copy `stored` (read after another process saved the
   * whole cache), key by key as {@link CacheInternals.refresh} does: keys this cache changed
   * since its last save keep their value; the others take the stored one, or leave when the
   * copy lacks them. Not a change. Resolves how many keys changed, and how many stored keys
   * were left alone for a change of this cache's own.
   */
  merge(stored: LoadedContents<K, V>): { changed: number; skipped: number };
  /** Disconnects the cache from its manager: later writes throw E_CLOSED. */
  detach(): void;
}

let internalsOf: <K, V>(cache: Cache<K, V>) => CacheInternals<K, V>;

/**
 * Privileged access for the manager. Not exported from the package.
 * @internal
 */
export function cacheInternals<K, V>(cache: Cache<K, V>): CacheInternals<K, V> {
  return internalsOf(cache);
}

/**
 * One named cache: a Map-like, synchronous store in memory. Get it from
 * `manager.registerCache()` or `manager.getCache()`; it stays the same object across
 * reload, invalidate and rebuild.
 *
 * - `get`/`set`/`has`/`delete`/`clear`/`size`/iteration behave as on a `Map`.
 * - Entries may expire (`ttl`): expiry is an absolute time, kept across restarts; expired
 *   entries are invisible and dropped when met.
 * - With `maxEntries`, the least recently used entries are evicted (`get` counts as a use).
 * - Every write is counted and its key remembered until the next successful save.
 * - With a persistent cache, keys and values are checked against the codec at `set()`:
 *   a value that cannot be saved is refused there, naming the key.
 *
 * @example
 * const users = await manager.registerCache<string, { name: string }>('users');
 * users.set('u1', { name: 'Ada' }, { ttl: '1h' });
 * users.get('u1')?.name; // 'Ada'
 * for (const [id, user] of users) console.log(id, user.name);
 */
export class Cache<K = unknown, V = unknown> implements Iterable<[K, V]> {
  static {
    internalsOf = <K, V>(cache: Cache<K, V>): CacheInternals<K, V> => cache.#internals;
  }

  /** The cache's name in its manager. */
  readonly name: string;

  /**
   * The entries: a `Map` (insertion order) for an unbounded cache, an {@link LruMap} (order
   * of use) for a bounded one. The hot paths (`get`, `set`) test `#bounded` and call the one
   * they know, so each call site sees one kind of object and V8 can inline it.
   */
  #values: Map<K, V> | LruMap<K, V>;
  /** Expiry times of the entries that have one; empty for caches without TTLs (fast path). */
  #expiry = new Map<K, number>();
  /**
   * Keys changed since the last save. While `#allDirty`, the keys deleted since (those of
   * them that are in `#values` again are not taken out: a write would pay a lookup for it),
   * and the entries in memory are changed without being listed.
   */
  #dirtyKeys = new Set<K>();
  /**
   * Every entry in memory counts as changed, without being listed. Unbounded persistent
   * caches only. So that `set` records nothing and no set of keys takes memory:
   * - while every entry in memory is unsaved: written since the cache was last empty
   *   (registered empty, cleared, invalidated, or empty when the last save began) or
   *   swapped in as dirty contents (a build);
   * - on a store no other process writes to, from the moment more than half the entries
   *   (and at least {@link LIST_ALL_AT}) are listed as changed: the next save then writes
   *   the few that were not changed too, with the values the store has already.
   * A saved entry put into memory (read from the store, a refresh) ends it on a shared
   * store, whose other writers' entries must not be written back; elsewhere it joins.
   */
  #allDirty = false;
  /** `#allDirty` may start when half the entries are listed (unbounded, persistent, store not shared). */
  readonly #mayListAll: boolean;
  readonly #sharedStore: boolean;
  /** Unsaved entries that LRU eviction pushed out of memory: the next change batch writes them. */
  #evictedDirty = new Map<K, StoredEntry>();
  #cleared = false;
  /** Whether the store's copy may serve read-through (false while it is known to be out of date). */
  #storeReadable = false;
  #changes = 0;
  #hits = 0;
  #misses = 0;
  #sets = 0;
  #evictions = 0;
  #expirations = 0;
  #pending = new Map<K, Promise<V | undefined>>();
  /** Saves started and not finished: until they land, the store may hold older values of their keys. */
  readonly #saving = new Set<SaveTicket<K>>();
  #detached = false;
  readonly #clock: Clock;
  readonly #emit: Emit;
  readonly #listening: Listening;
  readonly #codec: Codec | undefined;
  readonly #maxEntries: number;
  /** `maxEntries` is finite: `#values` is an {@link LruMap}. */
  readonly #bounded: boolean;
  readonly #ttlMs: number | undefined;
  readonly #onChange: () => void;
  readonly #describe: () => PersistenceStats;
  readonly #persistent: boolean;
  readonly #readEntry: ((key: K) => Promise<StoredEntry | undefined>) | undefined;
  readonly #onEvictDirty: () => void;
  readonly #lockEntry: CacheSettings<K, V>['lockEntry'];
  readonly #persist: () => Promise<void>;
  readonly #onRead: (key: K, value: V | undefined) => void;
  readonly #internals: CacheInternals<K, V>;

  /**
   * @internal Created by the manager; use `manager.registerCache()`.
   *
   * @example
   * const cache = await manager.registerCache('users'); // not `new Cache(...)`
   */
  constructor(settings: CacheSettings<K, V>) {
    this.name = settings.name;
    this.#clock = settings.clock;
    this.#emit = settings.emit;
    this.#listening = settings.listening;
    this.#codec = settings.codec;
    this.#maxEntries = settings.maxEntries;
    this.#bounded = settings.maxEntries !== Number.POSITIVE_INFINITY;
    this.#values = this.#bounded ? new LruMap<K, V>() : new Map<K, V>();
    this.#allDirty = settings.persistent && !this.#bounded;
    this.#sharedStore = settings.sharedStore === true;
    this.#mayListAll = this.#allDirty && !this.#sharedStore;
    this.#ttlMs = settings.ttlMs;
    this.#onChange = settings.onChange;
    this.#describe = settings.describe;
    this.#persistent = settings.persistent;
    this.#readEntry = settings.readEntry;
    this.#onEvictDirty = settings.onEvictDirty;
    this.#lockEntry = settings.lockEntry;
    this.#persist = settings.persist ?? (() => Promise.resolve());
    this.#onRead = settings.onRead;
    this.#internals = {
      replace: (contents, dirty, storeReadable) => this.#replace(contents, dirty, storeReadable),
      reset: (storeReadable) => this.#reset(storeReadable),
      beginSave: (mode) => this.#beginSave(mode),
      abortSave: (ticket) => this.#abortSave(ticket),
      endSave: (ticket) => {
        // A save of contents replaced since (an invalidation emptied them) proves nothing
        // about what the store holds for the new ones.
        if (this.#saving.delete(ticket)) this.#storeReadable = true;
      },
      storeMayHold: (key) => this.#storeMayHold(key),
      adopt: (key, value, expiresAt) => {
        if (this.#detached || (expiresAt !== 0 && expiresAt <= this.#clock.now())) return;
        const clean = this.#storeMayHold(key);
        this.#pending.delete(key);
        this.#evictedDirty.delete(key);
        this.#insert(key, value, expiresAt);
        if (clean) return;
        this.#changes++;
        if (this.#persistent) this.#dirtyKeys.add(key);
        this.#onChange();
      },
      refresh: (key, entry) => {
        if (this.#detached || !this.#storeMayHold(key)) return false;
        // A read-through of the key in flight may carry the older value: it must not land.
        this.#pending.delete(key);
        if (entry === undefined || !this.#live(entry[2])) {
          if (!this.#values.delete(key)) return false;
          if (this.#expiry.size !== 0) this.#expiry.delete(key);
          return true;
        }
        if (this.#bounded && !this.#values.has(key)) return false;
        this.#insert(key, entry[1] as V, entry[2]);
        return true;
      },
      merge: (stored) => {
        let changed = 0;
        let skipped = 0;
        if (this.#detached) return { changed, skipped };
        for (const key of [...this.#values.keys()]) {
          if (!stored.values.has(key) && this.#internals.refresh(key, undefined)) changed++;
        }
        for (const [key, value] of stored.values) {
          if (!this.#storeMayHold(key)) skipped++;
          else if (this.#internals.refresh(key, [key, value, stored.expiry.get(key) ?? 0])) changed++;
        }
        return { changed, skipped };
      },
      detach: () => {
        this.#detached = true;
      },
    };
  }

  /**
   * `'Cache'`, so `Object.prototype.toString` and inspectors name it.
   *
   * @example
   * Object.prototype.toString.call(cache); // '[object Cache]'
   */
  get [Symbol.toStringTag](): string {
    return 'Cache';
  }

  /**
   * Number of live entries (expired ones are dropped first).
   *
   * @example
   * cache.set('a', 1); cache.size; // 1
   */
  get size(): number {
    if (this.#expiry.size !== 0) this.purgeExpired();
    return this.#values.size;
  }

  /**
   * Writes made since the last successful save (each `set`, `delete` of a present key and
   * `clear` counts once). A save started now would cover them.
   *
   * @example
   * cache.set('a', 1); cache.pendingChanges; // 1
   * await manager.save(cache.name); cache.pendingChanges; // 0
   */
  get pendingChanges(): number {
    return this.#changes;
  }

  /**
   * A snapshot of the cache: entries, unsaved changes, last save (time, duration, bytes)
   * and when AutoSync will save next.
   *
   * @example
   * const { pendingChanges, lastSaveAt, nextSaveAt } = cache.stats();
   */
  stats(): CacheStats {
    return {
      name: this.name,
      entries: this.size,
      maxEntries: this.#maxEntries,
      pendingChanges: this.#changes,
      dirtyKeys: this.#allDirty ? this.#values.size + this.#deletedKeys().length : this.#dirtyKeys.size,
      hits: this.#hits,
      misses: this.#misses,
      sets: this.#sets,
      evictions: this.#evictions,
      expirations: this.#expirations,
      ...this.#describe(),
    };
  }

  /**
   * Most entries kept in memory (`Infinity` when unbounded).
   *
   * @example
   * (await manager.registerCache('tiles', { maxEntries: 500 })).maxEntries; // 500
   */
  get maxEntries(): number {
    return this.#maxEntries;
  }

  /**
   * The value for `key`, or `undefined` when absent or expired. Marks the entry as recently
   * used in a bounded cache.
   *
   * @example
   * cache.get('u1');
   */
  get(key: K): V | undefined {
    if (this.#expiry.size !== 0 && this.#expireIfDue(key)) {
      this.#misses++;
      return undefined;
    }
    const value = this.#bounded ? (this.#values as LruMap<K, V>).use(key) : (this.#values as Map<K, V>).get(key);
    if (value === undefined) this.#misses++;
    else this.#hits++;
    return value;
  }

  /**
   * Like {@link Cache.get} but without marking the entry as used.
   *
   * @example
   * cache.peek('u1');
   */
  peek(key: K): V | undefined {
    if (this.#expiry.size !== 0 && this.#expireIfDue(key)) return undefined;
    return this.#values.get(key);
  }

  /**
   * Whether a live entry exists for `key` (does not mark it as used).
   *
   * @example
   * cache.has('u1'); // true
   */
  has(key: K): boolean {
    if (this.#expiry.size !== 0 && this.#expireIfDue(key)) return false;
    return this.#values.has(key);
  }

  /**
   * Stores `value` under `key`. Throws before changing anything if the cache's codec cannot
   * encode them (E_UNSERIALIZABLE, naming the key), or if the cache was deregistered.
   *
   * @param options - `ttl` for this entry (defaults to the cache's `ttl`)
   * @returns the cache, like `Map.prototype.set`
   * @example
   * cache.set('u1', alice).set('u2', bob, { ttl: '10m' });
   */
  set(key: K, value: V, options?: SetOptions): this {
    // Kept under V8's inlining limit (460 bytes of bytecode): the rare paths are methods of
    // their own, so a call site of `set` can inline it.
    if (this.#detached) throw this.#closed();
    const codec = this.#codec;
    if (codec !== undefined && codec.check !== undefined) this.#check(codec, key, value);
    const ttlMs = options === undefined ? this.#ttlMs : this.#entryTtl(options);
    if (ttlMs !== undefined) this.#expiry.set(key, this.#clock.now() + ttlMs);
    else if (this.#expiry.size !== 0) this.#expiry.delete(key);
    if (!this.#bounded) (this.#values as Map<K, V>).set(key, value);
    else this.#setBounded(key, value);
    // A fetch or build in flight for this key must not overwrite the value set now.
    if (this.#pending.size !== 0) this.#pending.delete(key);
    this.#changes++;
    this.#sets++;
    if (this.#persistent) this.#track(key);
    this.#onChange();
    return this;
  }

  /** The error of a write to a deregistered cache. */
  #closed(): ClosedError {
    return new ClosedError(`cache ${JSON.stringify(this.name)}`);
  }

  /** Throws E_UNSERIALIZABLE, naming the key, if the codec cannot encode `key` or `value`. */
  #check(codec: Codec, key: K, value: V): void {
    let problem = codec.check?.(key);
    if (problem !== undefined) throw new UnserializableError(this.name, key, codec.name, '(key)', problem.reason);
    problem = codec.check?.(value);
    if (problem !== undefined) throw new UnserializableError(this.name, key, codec.name, problem.path, problem.reason);
  }

  #setBounded(key: K, value: V): void {
    const lru = this.#values as LruMap<K, V>;
    if (lru.setWithin(key, value, this.#maxEntries)) this.#evicted(lru);
  }

  /** Records that `key` (now in memory) changed. */
  #track(key: K): void {
    if (this.#allDirty) return;
    const listed = this.#dirtyKeys.add(key).size;
    if (listed >= LIST_ALL_AT && this.#mayListAll && listed * 2 > this.#values.size) this.#listAll();
  }

  /**
   * Removes the entry for `key`; `true` if there was a live one.
   *
   * @example
   * cache.delete('u1'); // true
   */
  delete(key: K): boolean {
    if (this.#detached) throw new ClosedError(`cache ${JSON.stringify(this.name)}`);
    // A build in flight for this key must not write its (now stale) result back.
    this.#pending.delete(key);
    const wasEvicted = this.#evictedDirty.size !== 0 && this.#evictedDirty.delete(key);
    const live = this.has(key);
    if (this.#expiry.size !== 0) this.#expiry.delete(key);
    if (!this.#values.delete(key)) {
      // A bounded cache may have evicted the key while its store still holds it: the delete
      // must reach the store. An unbounded cache holds everything it has, so nothing changed.
      if (!this.#bounded || !this.#persistent) return false;
      this.#changes++;
      this.#dirtyKeys.add(key);
      this.#onChange();
      return wasEvicted;
    }
    this.#changes++;
    if (this.#persistent) this.#dirtyKeys.add(key);
    this.#onChange();
    return live;
  }

  /**
   * Removes every entry.
   *
   * @example
   * cache.clear(); cache.size; // 0
   */
  clear(): void {
    if (this.#detached) throw new ClosedError(`cache ${JSON.stringify(this.name)}`);
    this.#values.clear();
    this.#expiry.clear();
    this.#pending.clear();
    this.#dirtyKeys.clear();
    this.#allDirty = this.#persistent && !this.#bounded;
    this.#evictedDirty.clear();
    this.#cleared = true;
    this.#changes++;
    this.#onChange();
  }

  /**
   * The absolute expiry time of `key`'s entry (ms since the epoch), or `undefined` if it
   * has none or is absent.
   *
   * @example
   * cache.set('k', 1, { ttl: 1_000 }); cache.expiresAt('k'); // Date.now() + 1000
   */
  expiresAt(key: K): number | undefined {
    if (this.#expiry.size === 0 || this.#expireIfDue(key)) return undefined;
    return this.#expiry.get(key);
  }

  /**
   * Drops every expired entry now; returns how many. Reads drop them lazily anyway.
   *
   * @example
   * cache.purgeExpired(); // 3
   */
  purgeExpired(): number {
    if (this.#expiry.size === 0) return 0;
    const now = this.#clock.now();
    let removed = 0;
    for (const [key, expiresAt] of this.#expiry) {
      if (expiresAt <= now) {
        this.#removeExpired(key);
        removed++;
      }
    }
    return removed;
  }

  /**
   * The value for `key` from memory, else from the store (the read-through tier: an entry
   * that a bounded cache evicted, or one saved but never loaded), else `undefined`. A value
   * read from the store is put back in memory as a saved (clean) entry and counts as recently
   * used; its expiry time comes with it. Concurrent fetches of one key share one read.
   *
   * The store is not asked when it cannot hold the current value: the key was deleted or the
   * cache cleared since the last save, or a save of it is still running.
   *
   * With `build`, a key found nowhere is built like {@link Cache.getOrBuild}.
   *
   * @example
   * const tile = await tiles.fetch('12/2048/1361'); // memory, then disk
   */
  fetch(key: K): Promise<V | undefined>;
  fetch(key: K, build: (key: K) => V | Promise<V>, options?: SetOptions): Promise<V>;
  async fetch(key: K, build?: (key: K) => V | Promise<V>, options?: SetOptions): Promise<V | undefined> {
    let value: V | undefined;
    if (this.has(key)) value = this.get(key);
    else {
      this.#misses++;
      if (this.#detached) throw new ClosedError(`cache ${JSON.stringify(this.name)}`);
      const pending = this.#pending.get(key);
      value = await (pending ?? this.#startFetch(key, build, options));
      // Joined a plain fetch that found nothing: this call has a builder, so build.
      if (pending !== undefined && value === undefined && build !== undefined && !this.has(key))
        value = await (this.#pending.get(key) ?? this.#startFetch(key, build, options));
    }
    this.#onRead(key, value);
    return value;
  }

  /**
   * The cached value for `key` (from memory, else from the store like {@link Cache.fetch}),
   * or the result of `build(key)` stored under it. Concurrent calls for one key share one
   * read and one `build` (single flight). A failing `build` stores nothing and rejects every
   * waiter. A result is not stored if the key was set or deleted, or the cache cleared,
   * reloaded or invalidated, while it was being built.
   *
   * @example
   * const user = await users.getOrBuild('u3', async (id) => db.user(id), { ttl: '5m' });
   */
  getOrBuild(key: K, build: (key: K) => V | Promise<V>, options?: SetOptions): Promise<V> {
    if (typeof build !== 'function')
      return Promise.reject(new InvalidOptionError('build', 'getOrBuild() needs a build function (key) => value', this.name));
    return this.fetch(key, build, options);
  }

  /** One flight for `key`: evicted buffer, store, then `build`. Registered in #pending. */
  #startFetch(key: K, build: ((key: K) => V | Promise<V>) | undefined, options: SetOptions | undefined): Promise<V | undefined> {
    // The flight compares itself with #pending: a set/delete/clear/replace meanwhile removes it.
    const flight: Promise<V | undefined> = Promise.resolve().then(async () => {
      try {
        const mine = (): boolean => this.#pending.get(key) === flight && !this.#detached;
        // A running save's copy is current only if the key was not written, deleted or
        // cleared since that save began (a write since would be in memory or #evictedDirty).
        const buffered =
          this.#evictedDirty.get(key) ?? (this.#cleared || this.#isDirty(key) ? undefined : this.#evictedBeingSaved(key));
        if (buffered !== undefined) {
          if (this.#live(buffered[2])) {
            // Unsaved or being saved: back into memory. Its key stays dirty where it was (in
            // #dirtyKeys, or in the running save's ticket, which restores it if it fails).
            this.#evictedDirty.delete(key);
            this.#insert(key, buffered[1] as V, buffered[2]);
            return buffered[1] as V;
          }
        } else if (this.#bounded && this.#storeMayHold(key)) {
          const entry = await this.#readStored(key, mine);
          if (entry !== undefined) return entry[1] as V;
        }
        if (build === undefined) return undefined;
        const locking = this.#lockEntry?.(key);
        if (locking === undefined) {
          const value = await build(key);
          if (mine()) this.set(key, value, options);
          return value;
        }
        return await this.#buildLocked(key, build, options, await locking, mine);
      } finally {
        if (this.#pending.get(key) === flight) this.#pending.delete(key);
      }
    });
    this.#pending.set(key, flight);
    return flight;
  }

  /**
   * The end of a flight that took the store's lock on `key` (or waited for it): if another
   * process held it, its result is read from the store; otherwise (or if it stored nothing)
   * this one builds, and saves before releasing the lock, so the waiters find the value.
   */
  async #buildLocked(
    key: K,
    build: (key: K) => V | Promise<V>,
    options: SetOptions | undefined,
    { lock, waited }: KeyLockResult,
    mine: () => boolean,
  ): Promise<V> {
    try {
      if (waited && this.#storeMayHold(key)) {
        const entry = await this.#readStored(key, mine);
        if (entry !== undefined) return entry[1] as V;
      }
      const value = await build(key);
      if (mine()) {
        this.set(key, value, options);
        // A failed save is reported by the manager; the waiters then build for themselves.
        if (lock !== undefined) await this.#persist().catch(() => undefined);
      }
      return value;
    } finally {
      await lock?.release();
    }
  }

  /**
   * `key`'s live entry in the store (`undefined` when the cache has no store, or the store no
   * live entry), put into memory as a saved entry if the flight still owns the key and no
   * change to it was made meanwhile.
   */
  async #readStored(key: K, mine: () => boolean): Promise<StoredEntry | undefined> {
    const entry = await this.#readEntry?.(key);
    if (entry === undefined || !this.#live(entry[2])) return undefined;
    if (mine() && this.#storeMayHold(key)) this.#insert(key, entry[1] as V, entry[2]);
    return entry;
  }

  /** Whether an entry with this absolute expiry time (`0`: none) is still alive. */
  #live(expiresAt: number): boolean {
    return expiresAt === 0 || expiresAt > this.#clock.now();
  }

  /** The entry of `key` if a running save carries it as evicted (it is nowhere else in memory). */
  #evictedBeingSaved(key: K): StoredEntry | undefined {
    for (const ticket of this.#saving) {
      const entry = ticket.evicted.get(key);
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /** Whether a running save writes `key` (the store does not hold its value yet). */
  #beingSaved(key: K): boolean {
    for (const ticket of this.#saving) if (ticket.cleared || ticket.dirtyKeys.has(key)) return true;
    return false;
  }

  /** Whether the store's copy of `key` can be current: not changed here since the last save landed. */
  #storeMayHold(key: K): boolean {
    return this.#storeReadable && !this.#cleared && !this.#isDirty(key) && !this.#beingSaved(key);
  }

  /** Whether `key` was changed since the last save (in memory or not). */
  #isDirty(key: K): boolean {
    return this.#dirtyKeys.has(key) || (this.#allDirty && this.#values.has(key));
  }

  /** While `#allDirty`: the listed keys not in memory, deleted since the last save. */
  #deletedKeys(): unknown[] {
    const deleted: unknown[] = [];
    for (const key of this.#dirtyKeys) if (!this.#values.has(key)) deleted.push(key);
    return deleted;
  }

  /** Starts counting every entry in memory as changed; keeps listing the deleted keys only. */
  #listAll(): void {
    const deleted = new Set<K>();
    for (const key of this.#dirtyKeys) if (!this.#values.has(key)) deleted.add(key);
    this.#dirtyKeys = deleted;
    this.#allDirty = true;
  }

  /** Lists every entry in memory as changed: a saved one is about to join them. */
  #endAllDirty(): void {
    this.#allDirty = false;
    for (const key of this.#values.keys()) this.#dirtyKeys.add(key);
  }

  /** Puts a saved entry (from the store or the evicted buffer) into memory, as most recently used; not a change. */
  #insert(key: K, value: V, expiresAt: number): void {
    if (this.#allDirty && this.#sharedStore) this.#endAllDirty();
    if (expiresAt !== 0) this.#expiry.set(key, expiresAt);
    else if (this.#expiry.size !== 0) this.#expiry.delete(key);
    if (this.#bounded) {
      const lru = this.#values as LruMap<K, V>;
      if (lru.setWithin(key, value, this.#maxEntries)) this.#evicted(lru);
    } else {
      // Delete first: in a Map, only a new key goes to the end.
      this.#values.delete(key);
      this.#values.set(key, value);
    }
  }

  /**
   * Keys of live entries: in insertion order, or, in a bounded cache, least recently used
   * first. A bounded cache's iterators walk the order as it was when they were created: an
   * entry removed before the walk reaches it is skipped, one used or added meanwhile is not
   * visited (again), so a loop may `get` the entries it visits.
   *
   * @example
   * [...cache.keys()];
   */
  keys(): MapIterator<K> {
    if (this.#expiry.size !== 0) this.purgeExpired();
    return this.#values.keys();
  }

  /**
   * Values of live entries.
   *
   * @example
   * [...cache.values()];
   */
  values(): MapIterator<V> {
    if (this.#expiry.size !== 0) this.purgeExpired();
    return this.#values.values();
  }

  /**
   * `[key, value]` pairs of live entries.
   *
   * @example
   * new Map(cache.entries());
   */
  entries(): MapIterator<[K, V]> {
    if (this.#expiry.size !== 0) this.purgeExpired();
    return this.#values.entries();
  }

  /**
   * Same as {@link Cache.entries}.
   *
   * @example
   * for (const [key, value] of cache) {}
   */
  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  /**
   * Calls `callback(value, key, cache)` for each live entry.
   *
   * @example
   * cache.forEach((value, key) => console.log(key, value));
   */
  forEach(callback: (value: V, key: K, cache: this) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }

  /** Validates the options of one `set()` (off the fast path: only when options are given). */
  #entryTtl(options: SetOptions): number | undefined {
    if (typeof options !== 'object' || options === null)
      throw new InvalidOptionError('', 'the options of set() must be an object like { ttl }', this.name);
    for (const key of Object.keys(options)) {
      if (key !== 'ttl') throw new InvalidOptionError(key, `unknown option '${key}' of set() (only 'ttl')`, this.name);
    }
    return options.ttl === undefined ? this.#ttlMs : resolveEntryTtl(this.name, options.ttl);
  }

  /** True (and the entry dropped) if `key` has an expiry that has passed. */
  #expireIfDue(key: K): boolean {
    const expiresAt = this.#expiry.get(key);
    if (expiresAt === undefined || expiresAt > this.#clock.now()) return false;
    this.#removeExpired(key);
    return true;
  }

  /** Expiry is not a change: the persisted copy carries the same expiry time. */
  #removeExpired(key: K): void {
    this.#expirations++;
    this.#expiry.delete(key);
    this.#values.delete(key);
    if (this.#listening.removed) this.#emit(EVENTS.removed, { name: this.name, key, reason: 'expire' });
  }

  /** Finishes an eviction made by `lru.setWithin()`: the entry is out of `#values` already. */
  #evicted(lru: LruMap<K, V>): void {
    const key = lru.evictedKey;
    this.#evictions++;
    if (this.#dirtyKeys.size !== 0 || this.#saving.size !== 0) this.#keepIfUnsaved(key, lru.evictedValue);
    lru.forgetEvicted();
    if (this.#expiry.size !== 0) this.#expiry.delete(key);
    if (this.#listening.removed) this.#emit(EVENTS.removed, { name: this.name, key, reason: 'evict' });
  }

  /**
   * An eviction is not a change: it bounds memory, it does not mean "forget this". An entry
   * that is unsaved, or being saved right now (the store does not hold it yet), is kept in
   * `#evictedDirty` until written. (Out of `#evicted`, which stays small enough for V8 to
   * inline into `set`.)
   */
  #keepIfUnsaved(key: K, value: V): void {
    const unsaved = this.#dirtyKeys.has(key);
    if (unsaved || (this.#saving.size !== 0 && this.#beingSaved(key))) {
      if (!unsaved) this.#dirtyKeys.add(key);
      this.#evictedDirty.set(key, [key, value, this.#expiry.get(key) ?? 0]);
      this.#onEvictDirty();
    }
  }

  #reset(storeReadable: boolean): void {
    this.#storeReadable = storeReadable;
    // Each collection is tested before it is cleared (clearing allocates), and the change
    // state only in a persistent cache (nothing else fills it): a cascade resets thousands of
    // caches, and each object it reads is one more memory access per cache.
    if (this.#values.size !== 0) this.#values.clear();
    if (this.#expiry.size !== 0) this.#expiry.clear();
    if (this.#pending.size !== 0) this.#pending.clear();
    if (this.#persistent) {
      // A running save carries the old contents: fetch must not bring its entries back.
      if (this.#saving.size !== 0) this.#saving.clear();
      // The change state was not handed to a running save (#beginSave swaps in new ones), so
      // clearing it in place is safe.
      if (this.#dirtyKeys.size !== 0) this.#dirtyKeys.clear();
      if (this.#evictedDirty.size !== 0) this.#evictedDirty.clear();
      this.#allDirty = !this.#bounded;
    }
    this.#cleared = false;
    this.#changes = 0;
  }

  #replace(contents: LoadedContents<K, V>, dirty: boolean, storeReadable: boolean): void {
    const loaded = contents.values;
    this.#storeReadable = storeReadable;
    // A running save carries the old contents: fetch must not bring its entries back.
    this.#saving.clear();
    this.#expiry = contents.expiry;
    this.#pending.clear();
    this.#dirtyKeys = new Set();
    this.#evictedDirty = new Map();
    // Contents that differ from the persisted copy must be written whole at the next save.
    this.#cleared = dirty;
    this.#changes = dirty ? Math.max(1, loaded.size) : 0;
    this.#allDirty = this.#persistent && !this.#bounded && (dirty || loaded.size === 0);
    if (dirty && this.#persistent && !this.#allDirty) for (const key of loaded.keys()) this.#dirtyKeys.add(key);
    if (!this.#bounded) {
      this.#values = loaded;
      return;
    }
    // Contents come least recently used first: beyond `maxEntries`, the first ones are
    // evicted, without ever entering the list. They also leave `loaded`, which the manager
    // reports as what was loaded (as when it was the cache's own Map).
    const lru = new LruMap<K, V>();
    this.#values = lru;
    let overflow = loaded.size - this.#maxEntries;
    for (const [key, value] of loaded) {
      if (overflow > 0) {
        overflow--;
        loaded.delete(key);
        this.#keepIfUnsaved(key, value);
        this.#expiry.delete(key);
        if (this.#listening.removed) this.#emit(EVENTS.removed, { name: this.name, key, reason: 'evict' });
      } else lru.set(key, value);
    }
  }

  #beginSave(mode: 'full' | 'changes'): SaveTicket<K> {
    if (this.#expiry.size !== 0) this.purgeExpired();
    const evicted = this.#evictedDirty;
    const entries = mode === 'full' ? this.#allEntries() : undefined;
    const batch = mode === 'changes' ? this.#changeBatch() : undefined;
    const ticket: SaveTicket<K> = {
      entries,
      batch,
      changes: this.#changes,
      dirtyKeys: this.#allDirty ? listedKeys((entries ?? batch?.sets) as StoredEntry[], this.#dirtyKeys) : this.#dirtyKeys,
      cleared: this.#cleared,
      evicted,
    };
    this.#saving.add(ticket);
    // Writes from here on belong to the next save.
    this.#changes = 0;
    this.#dirtyKeys = new Set();
    this.#allDirty = this.#persistent && !this.#bounded && this.#values.size === 0;
    this.#evictedDirty = new Map();
    this.#cleared = false;
    return ticket;
  }

  #allEntries(): StoredEntry[] {
    // Unsaved entries that eviction pushed out of memory come first: they are the oldest.
    const entries: StoredEntry[] = new Array(this.#evictedDirty.size + this.#values.size);
    let i = 0;
    for (const entry of this.#evictedDirty.values()) entries[i++] = entry;
    const expiry = this.#expiry;
    if (expiry.size === 0) this.#values.forEach((value, key) => void (entries[i++] = [key, value, 0]));
    else this.#values.forEach((value, key) => void (entries[i++] = [key, value, expiry.get(key) ?? 0]));
    return entries;
  }

  /** The changed keys' current state: cost follows the changes, not the cache. */
  #changeBatch(): ChangeBatch {
    // Every entry in memory, and the keys deleted since (none of them in memory).
    if (this.#allDirty) return { cleared: this.#cleared, sets: this.#allEntries(), deletes: this.#deletedKeys() };
    const sets: StoredEntry[] = [];
    const deletes: unknown[] = [];
    for (const key of this.#dirtyKeys) {
      if (this.#values.has(key)) sets.push([key, this.#values.get(key), this.#expiry.get(key) ?? 0]);
      else {
        // An entry evicted after it was written is still "set": the store keeps what memory drops.
        const evicted = this.#evictedDirty.get(key);
        if (evicted !== undefined) sets.push(evicted);
        else deletes.push(key);
      }
    }
    return { cleared: this.#cleared, sets, deletes };
  }

  #abortSave(ticket: SaveTicket<K>): void {
    // Contents replaced while it ran: its changes belong to contents that are gone.
    if (!this.#saving.delete(ticket)) return;
    const clearedSince = this.#cleared;
    this.#changes += ticket.changes;
    this.#cleared ||= ticket.cleared;
    // Evicted entries exist nowhere else: keep them for the retry, unless written, deleted
    // or cleared since (the newer state wins).
    if (!clearedSince) {
      for (const entry of ticket.evicted.values()) {
        const key = entry[0] as K;
        if (!this.#dirtyKeys.has(key) && !this.#values.has(key)) this.#evictedDirty.set(key, entry);
      }
    }
    // Listed one by one from here: some of them may be in memory.
    if (this.#allDirty) this.#endAllDirty();
    for (const key of ticket.dirtyKeys) this.#dirtyKeys.add(key);
  }
}
