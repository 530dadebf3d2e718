/**
 * `CacheManager`: the registry of named caches and the orchestrator of their operations
 * (load, validate, build, save, delete, invalidate, reload) and of cascades along the
 * dependency graph. It stores nothing itself: caches hold the data, the store persists it,
 * the codec encodes it, hooks shape it.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AdminServer, ServeOptions } from './admin/serve.js';
import { announcedKeys, Bus, hasBus, type AnnouncedKey, type BusMessage, type BusStats } from './bus.js';
import { Cache, cacheInternals, type CacheInternals, type PersistenceStats } from './cache.js';
import { resolveCodec } from './codec/index.js';
import type { Codec } from './codec/types.js';
import {
  CacheExistsError,
  ClosedError,
  CorruptFileError,
  InvalidOptionError,
  ManagerConflictError,
  SaveFailedError,
  UnknownCacheError,
  type HookName,
} from './errors.js';
import {
  EVENTS,
  ListenedEmitter,
  type BackgroundErrorEvent,
  type CacheManagerEvents,
  type CascadeCause,
  type ContentsSource,
  type SaveReason,
} from './events.js';
import { DependencyGraph } from './graph.js';
import {
  loadFromStore,
  normalizeContents,
  runHook,
  type HookContext,
  type HookRunOptions,
  type LoadedContents,
  type MaybePromise,
} from './hooks.js';
import {
  resolveCacheOptions,
  resolveCascade,
  resolveManagerOptions,
  resolveMemoizeOptions,
  validateCacheName,
  type CacheManagerOptions,
  DEFAULT_FLIGHT_LOCK,
  type CacheOptions,
  type FlightLock,
  type MemoizeOptions,
  type ProxyOptions,
  type ResolvedCacheOptions,
  type ResolvedManagerOptions,
} from './options.js';
import { Memoizer, type MemoHost, type Memoized } from './memo/memoize.js';
import { createProxy, type CachedProxy, type MethodKeys } from './memo/proxy.js';
import { FileStore } from './store/file.js';
import type { CacheStore, KeyLockResult, StoreContext, StoreWarning } from './store/types.js';
import { argsKey } from './memo/key.js';
import { AutoSync, resolveAutoSync, sameAutoSync, type ResolvedAutoSync } from './sync/autosync.js';
import { systemClock, systemTimers, type Clock, type TimerProvider } from './sync/clock.js';

/**
 * Options of the operations that can follow dependency links.
 *
 * @example
 * await manager.invalidate('users', { cascade: false }); // only 'users'
 */
export interface CascadeOptions {
  /**
   * Also apply the operation to every cache downstream of the named one, in topological
   * order. @default true for `invalidate` and `deleteSaved`; false for `save` and `reload`
   */
  readonly cascade?: boolean;
}

interface Registration<K = unknown, V = unknown> {
  readonly name: string;
  readonly options: ResolvedCacheOptions<K, V>;
  readonly cache: Cache<K, V>;
  readonly internals: CacheInternals<K, V>;
  /**
   * The store's copy is not known to be the state of the last load or save (a custom loader
   * filled the cache, or `deleteSaved` removed the copy), so a batch of changes would not
   * apply to it: the next save must write everything.
   */
  needsFullSave: boolean;
  /** What the saves of this cache did so far. */
  readonly history: SaveHistory;
  /** A write-behind save (of entries evicted unsaved) is queued. */
  writeBehindQueued: boolean;
  /** After a failed write-behind save, none is queued before this time (clock ms): back-off. */
  writeBehindAfter: number;
  /** A reload for another process's save is queued and has not started. */
  refreshQueued: boolean;
  /**
   * Not persistent and no builder: an invalidation only empties it (see #invalidatesInPlace).
   * Kept here so a cascade over thousands of caches need not read their options.
   */
  readonly emptiedInPlace: boolean;
}

interface SaveHistory {
  saves: number;
  errors: number;
  last: { at: number; ms: number; bytes: number; entries: number; reason: SaveReason } | undefined;
  lastError: { at: number; message: string } | undefined;
}

/**
 * A snapshot of the manager and its caches, for dashboards and logs.
 *
 * @example
 * const { caches, pendingChanges } = manager.stats();
 */
export interface ManagerStats {
  /** The manager's name. */
  readonly name: string;
  /** The store's kind (`'file'`, `'memory'`, ...). */
  readonly store: string;
  /** Registered caches. */
  readonly caches: readonly ReturnType<Cache['stats']>[];
  /** Unsaved changes over all caches. */
  readonly pendingChanges: number;
  /** Entries in memory over all caches. */
  readonly entries: number;
  /** The manager's default AutoSync rules. */
  readonly autoSync: ResolvedAutoSync;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /** The bus to other processes, when the store has one and `bus` is not false. */
  readonly bus: BusStats | undefined;
}

/** How long write-behind saves pause after one failed. */
const WRITE_BEHIND_BACKOFF_MS = 5_000;
/** At most one `error` event per kind and cache in this time; the next one counts the rest. */
const ERROR_EVENT_INTERVAL_MS = 5_000;
/** Saves nobody awaits: their failures are `error` events, and one with nothing to write is skipped. */
const BACKGROUND_SAVES: ReadonlySet<SaveReason> = new Set<SaveReason>(['auto', 'evict', 'flight', 'reconnect']);

/** How an invalidation cascade treats the store and the bus. */
interface InvalidationPlan {
  /** The cache named in the call, announced as the cascade's source (none for invalidateAll). */
  readonly source?: string;
  /**
   * Names another process invalidated and announced (their store copies are gone already):
   * this cascade is the echo of it, and is not announced again.
   */
  readonly remote?: ReadonlySet<string>;
}

const emptyContents = <K, V>(): LoadedContents<K, V> => ({ values: new Map<K, V>(), expiry: new Map<K, number>() });

/**
 * A registry of named caches, their dependency graph and their persistence.
 *
 * The manager is the event emitter (`manager.on('cache:invalidated', ...)`, see
 * {@link CacheManagerEvents}). Operations on one cache run one at a time; a cascade takes
 * its caches one by one in topological order.
 *
 * @example
 * const manager = new CacheManager({ name: 'app', dir: './.cache' });
 * const users = await manager.registerCache<string, User>('users');
 * const stats = await manager.registerCache('stats', {
 *   dependsOn: ['users'],
 *   builder: ({ manager }) => [['count', manager.getCache('users').size]],
 * });
 * users.set('u1', alice);
 * await manager.invalidate('users'); // empties and rebuilds users, then stats
 * await manager.close();             // saves what changed
 */
export class CacheManager extends ListenedEmitter implements AsyncDisposable {
  /** The manager's name. */
  readonly name: string;

  readonly #options: ResolvedManagerOptions;
  readonly #store: CacheStore;
  readonly #ownsStore: boolean;
  readonly #codec: Codec;
  readonly #clock: Clock;
  readonly #timers: TimerProvider;
  readonly #storeContext: StoreContext;
  readonly #graph = new DependencyGraph();
  readonly #caches = new Map<string, Registration>();
  /** See #registrationsOf; replaced whenever `#caches` changes, so it holds no deregistered cache. */
  #registrationsByNames = new WeakMap<readonly string[], readonly (Registration | undefined)[]>();
  readonly #registering = new Set<string>();
  /** Tail of each cache's operation queue. */
  readonly #locks = new Map<string, Promise<void>>();
  /** Names whose lock the current async context holds, so hooks can re-enter. */
  readonly #held = new AsyncLocalStorage<ReadonlySet<string>>();
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #closeController = new AbortController();
  readonly #hookOptions: HookRunOptions;
  readonly #autoSync: AutoSync;
  /** Registrations in progress, so memoized functions can wait for their cache. */
  readonly #registrations = new Map<string, Promise<Cache>>();
  readonly #memo: Memoizer;
  /** The bus to other processes sharing the store, if it has one (RedisStore). */
  readonly #bus: Bus | undefined;
  /** Rate limit of `error` events: per kind and cache, until when to hold them back and how many were. */
  readonly #errorWindows = new Map<string, { until: number; suppressed: number }>();
  /** Moves on every change to any cache: memo dependency checks made before are void. */
  #epoch = 0;
  #closing: Promise<void> | undefined;

  /**
   * @param options - validated with zod; an unknown or invalid option throws
   *   `E_INVALID_OPTION` naming it
   * @example
   * const manager = new CacheManager({ name: 'app', dir: './.cache', onCorrupt: 'quarantine' });
   */
  constructor(options: CacheManagerOptions = {}) {
    super();
    this.#options = resolveManagerOptions(options);
    this.name = this.#options.name;
    this.#codec = resolveCodec(this.#options.codec);
    this.#clock = this.#options.clock ?? systemClock;
    this.#timers = this.#options.timers ?? systemTimers;
    this.#ownsStore = this.#options.store === undefined;
    this.#store = this.#options.store ?? new FileStore({ dir: this.#options.dir });
    this.#storeContext = Object.freeze({
      codec: this.#codec,
      clock: this.#clock,
      warn: (warning: StoreWarning) => this.emit(EVENTS.storeWarning, warning),
    });
    // Failed automatic saves are reported by #save (sync:error and error events); nothing to add here.
    this.#autoSync = new AutoSync({ clock: this.#clock, timers: this.#timers, onError: () => undefined });
    this.#hookOptions = Object.freeze({
      timeoutMs: this.#options.hookTimeoutMs,
      timers: this.#timers,
      parentSignal: this.#closeController.signal,
    });
    this.#memo = new Memoizer(this.#memoHost());
    this.#bus =
      this.#options.bus && hasBus(this.#store)
        ? new Bus(this.#store, {
            receive: (message) => this.#receive(message),
            resumed: () => this.#resumed(),
            report: (error) => this.#report('publish', undefined, error),
          })
        : undefined;
  }

  /**
   * The store caches are persisted in.
   *
   * @example
   * manager.store.locate('users'); // '/tmp/cachegraph/app/users.cgc'
   */
  get store(): CacheStore {
    return this.#store;
  }

  /**
   * The codec values are encoded with.
   *
   * @example
   * manager.codec.name; // 'v8'
   */
  get codec(): Codec {
    return this.#codec;
  }

  /**
   * Whether `close()` was called.
   *
   * @example
   * await manager.close(); manager.closed; // true
   */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Registers a cache and fills it: from `contents` if given; else from the loader (default:
   * the store's persisted copy), if the validator accepts it; else from the builder (default:
   * empty). Resolves once it is ready.
   *
   * @throws InvalidOptionError, InvalidNameError, CacheExistsError, DependencyCycleError,
   *   HookError, CorruptFileError (unless `onCorrupt: 'quarantine'`), ClosedError
   * @example
   * const tiles = await manager.registerCache<string, Uint8Array>('tiles', { maxEntries: 10_000, ttl: '1d' });
   */
  async registerCache<K = unknown, V = unknown>(name: string, options: CacheOptions<K, V> = {}): Promise<Cache<K, V>> {
    this.#assertOpen();
    validateCacheName(name);
    const resolved = resolveCacheOptions<K, V>(name, options);
    if (this.#caches.has(name) || this.#registering.has(name)) throw new CacheExistsError(name);
    const added = this.#link(resolved.dependsOn.map((parent) => [parent, name] as const));
    this.#registering.add(name);
    let registered: Promise<Cache<K, V>> | undefined;
    try {
      registered = this.#track(
        this.#withLock(name, async () => {
          // Listening before loading: a change another process makes after the load is heard.
          await this.#bus?.start();
          const usesStoreCodec = resolved.persistent && resolved.hooks.saver === undefined;
          const rules = resolved.persistent ? resolveAutoSync(resolved.autoSync, this.#options.autoSync) : false;
          // By name until the cache joins AutoSync below, then through its slot (every write calls it).
          let syncChanged = (): void => this.#autoSync.changed(name);
          const history: SaveHistory = { saves: 0, errors: 0, last: undefined, lastError: undefined };
          const store = this.#store;
          const cache: Cache<K, V> = new Cache<K, V>({
            name,
            clock: this.#clock,
            emit: (event, payload) => this.emit(event, payload as never),
            listening: this.listening,
            codec: usesStoreCodec ? this.#codec : undefined,
            maxEntries: resolved.maxEntries,
            ttlMs: resolved.ttlMs,
            onChange:
              rules === false
                ? () => {
                    this.#epoch++;
                  }
                : () => {
                    this.#epoch++;
                    syncChanged();
                  },
            describe: () => this.#persistenceStats(name, resolved.persistent, rules, history),
            persistent: resolved.persistent,
            sharedStore: hasBus(store),
            readEntry:
              usesStoreCodec && store.loadEntry !== undefined
                ? (key) => store.loadEntry!(name, key, this.#storeContext)
                : undefined,
            onEvictDirty: () => this.#writeBehind(reg as Registration),
            lockEntry: this.#flightLock(name, usesStoreCodec, resolved.lock),
            persist: () => this.#saveFlight(reg as Registration),
            onRead: (key, value) => this.#memo.recordRead(name, key, value, cache.expiresAt(key) ?? 0),
          });
          const reg: Registration<K, V> = {
            name,
            options: resolved,
            cache,
            internals: cacheInternals(cache),
            needsFullSave: false,
            history,
            writeBehindQueued: false,
            writeBehindAfter: 0,
            refreshQueued: false,
            emptiedInPlace: !resolved.persistent && resolved.hooks.builder === undefined,
          };
          let source: ContentsSource;
          if (resolved.contents !== undefined) {
            reg.internals.replace(normalizeContents(name, 'contents', resolved.contents, resolved.ttlMs, this.#clock), true, false);
            source = 'contents';
          } else {
            source = await this.#fill(reg);
          }
          this.#caches.set(name, reg as Registration);
          this.#registrationsByNames = new WeakMap();
          // "Since the last save" starts now; contents that are already dirty are scheduled.
          syncChanged = this.#autoSync.add({
            name,
            rules,
            pendingChanges: () => cache.pendingChanges,
            save: () => this.#track(this.#save(reg, 'auto')),
          });
          this.emit(EVENTS.registered, { name, source, entries: cache.size });
          return cache;
        }),
      );
      this.#registrations.set(name, registered as Promise<Cache>);
      return await registered;
    } catch (err) {
      for (const [parent, dependent] of added) this.#graph.removeDependency(parent, dependent);
      throw err;
    } finally {
      this.#registering.delete(name);
      if (this.#registrations.get(name) === registered) this.#registrations.delete(name);
    }
  }

  /**
   * The registered cache `name`. Never creates one.
   *
   * @throws UnknownCacheError (E_UNKNOWN_CACHE)
   * @example
   * const users = manager.getCache<string, User>('users');
   */
  getCache<K = unknown, V = unknown>(name: string): Cache<K, V> {
    return this.#registration<K, V>(name).cache;
  }

  /**
   * Whether a cache named `name` is registered (and ready).
   *
   * @example
   * manager.hasCache('users'); // true
   */
  hasCache(name: string): boolean {
    return this.#caches.has(name);
  }

  /**
   * Names of the registered caches, in registration order.
   *
   * @example
   * manager.cacheNames(); // ['users', 'stats']
   */
  cacheNames(): string[] {
    return [...this.#caches.keys()];
  }

  /**
   * Declares that `dependent` depends on `parent` (CacheMan's spelling of `dependsOn`).
   * Either may be unregistered yet; the link binds when they register.
   *
   * @throws DependencyCycleError (E_DEPENDENCY_CYCLE, with `cyclePath`), InvalidNameError
   * @example
   * manager.registerDependentCache('users', 'audit'); // invalidating users invalidates audit
   */
  registerDependentCache(parent: string, dependent: string): void {
    this.#assertOpen();
    validateCacheName(parent);
    validateCacheName(dependent);
    this.#link([[parent, dependent]]);
  }

  /**
   * Removes a dependency link; `true` if it existed.
   *
   * @example
   * manager.removeDependency('users', 'audit');
   */
  removeDependency(parent: string, dependent: string): boolean {
    return this.#graph.removeDependency(parent, dependent);
  }

  /**
   * Every cache downstream of `name` (registered or not), transitively, in topological
   * order: each after all of its upstreams.
   *
   * @example
   * manager.dependentsOf('users'); // ['stats', 'audit', 'report']
   */
  dependentsOf(name: string): string[] {
    return this.#graph.dependentsOf(name);
  }

  /**
   * Every cache upstream of `name`, transitively, roots first.
   *
   * @example
   * manager.dependenciesOf('report'); // ['users', 'stats']
   */
  dependenciesOf(name: string): string[] {
    return this.#graph.upstreamOf(name);
  }

  /**
   * Empties `name`, deletes its persisted copy and rebuilds it; with `cascade` (default),
   * then does the same to every downstream cache, upstreams first, each once. All affected
   * caches are emptied before the first rebuild, so no reader sees a derived cache that is
   * older than its sources. Emits one `cache:invalidated` per cache.
   *
   * Downstream caches that are not registered have their store copy deleted, so stale
   * derived data cannot come back when they register.
   *
   * If a deleter or builder fails, the remaining caches are still emptied and deleted but
   * not rebuilt, and the first error is thrown.
   *
   * @example
   * await manager.invalidate('users');                    // users, then every dependent
   * await manager.invalidate('users', { cascade: false }); // users only
   */
  async invalidate(name: string, options: CascadeOptions = {}): Promise<void> {
    this.#assertOpen();
    this.#registration(name);
    const names = this.#affected(name, resolveCascade(options, true));
    await this.#track(this.#invalidateNames(names, (n) => (n === name ? 'direct' : 'dependency'), () => name, { source: name }));
  }

  /**
   * Reverts `name` to its persisted copy (through the loader and validator; the builder if
   * nothing valid is saved), dropping unsaved changes. With `cascade`, reloads downstream
   * caches too. On failure the cache keeps its current contents.
   *
   * @example
   * users.set('tmp', 1); await manager.reload('users'); users.has('tmp'); // false
   */
  async reload(name: string, options: CascadeOptions = {}): Promise<void> {
    this.#assertOpen();
    this.#registration(name);
    await this.#track(this.#reloadNames(this.#affected(name, resolveCascade(options, false))));
  }

  /**
   * Persists `name` now, through its saver (default: the store), whether or not it changed.
   * Writes made while the save runs count toward the next one. A non-persistent cache saves
   * nothing. With `cascade`, saves downstream caches too.
   *
   * @throws the saver's error (HookError) or the store's (StoreIOError, UnserializableError);
   *   the cache keeps its changes
   * @example
   * await manager.save('users');
   */
  async save(name: string, options: CascadeOptions = {}): Promise<void> {
    this.#assertOpen();
    this.#registration(name);
    const names = this.#affected(name, resolveCascade(options, false));
    await this.#track(
      (async () => {
        for (const n of names) {
          const reg = this.#caches.get(n);
          if (reg !== undefined) await this.#save(reg, 'manual');
        }
      })(),
    );
  }

  /**
   * Removes `name`'s persisted copy through its deleter (default: the store) and keeps the
   * memory contents; they are saved again only after a new change. With `cascade`
   * (default), removes the copies of downstream caches too.
   *
   * @example
   * await manager.deleteSaved('users'); users.size; // unchanged
   */
  async deleteSaved(name: string, options: CascadeOptions = {}): Promise<void> {
    this.#assertOpen();
    this.#registration(name);
    const names = this.#affected(name, resolveCascade(options, true));
    await this.#track(
      (async () => {
        const deleted: string[] = [];
        try {
          for (const n of names) {
            const cause: CascadeCause = n === name ? 'direct' : 'dependency';
            if (await this.#withLock(n, () => this.#deletePersisted(n))) deleted.push(n);
            this.emit(EVENTS.savedDeleted, { name: n, cause, source: name });
          }
        } finally {
          if (deleted.length > 0) this.#announce({ v: 1, t: 'deleted', names: deleted });
        }
      })(),
    );
  }

  /**
   * Saves `name` if it has unsaved changes, then forgets it. Its dependency links stay
   * declared; registering it again loads the saved copy. The old `Cache` object refuses
   * writes afterwards (E_CLOSED).
   *
   * @throws the save's error; the cache then stays registered
   * @example
   * await manager.deregister('users');
   * const again = await manager.registerCache('users'); // reloaded from disk
   */
  async deregister(name: string): Promise<void> {
    this.#assertOpen();
    const reg = this.#registration(name);
    await this.#track(
      this.#withLock(name, async () => {
        if (this.#caches.get(name) !== reg) return;
        if (reg.options.persistent && reg.cache.pendingChanges > 0) await this.#save(reg, 'deregister');
        reg.internals.detach();
        this.#caches.delete(name);
        this.#registrationsByNames = new WeakMap();
        this.#autoSync.remove(name);
        this.emit(EVENTS.deregistered, { name });
      }),
    );
  }

  /**
   * Saves every registered persistent cache. Every save is attempted even if some fail.
   *
   * @throws SaveFailedError (E_SAVE_FAILED) listing the caches whose save failed
   * @example
   * await manager.saveAll();
   */
  async saveAll(): Promise<void> {
    this.#assertOpen();
    await this.#track(this.#saveEach([...this.#caches.values()], 'manual'));
  }

  /**
   * Reloads every registered cache, upstreams first.
   *
   * @example
   * await manager.reloadAll();
   */
  async reloadAll(): Promise<void> {
    this.#assertOpen();
    // closure() orders through links to unregistered caches too (a -> ghost -> b).
    await this.#track(this.#reloadNames(this.#graph.closure(this.#caches.keys()).filter((n) => this.#caches.has(n))));
  }

  /**
   * Invalidates every registered cache (and the store copies of their unregistered
   * dependents), each once, upstreams first. Every event has `cause: 'direct'`.
   *
   * @example
   * await manager.invalidateAll();
   */
  async invalidateAll(): Promise<void> {
    this.#assertOpen();
    const names = this.#graph.closure(this.#caches.keys());
    await this.#track(this.#invalidateNames(names, () => 'direct', (n) => n, {}));
  }

  /**
   * A snapshot of every registered cache's {@link Cache.stats} and the totals.
   *
   * @example
   * for (const c of manager.stats().caches) console.log(c.name, c.pendingChanges, c.nextSaveAt);
   */
  stats(): ManagerStats {
    const caches = [...this.#caches.values()].map((reg) => reg.cache.stats());
    return {
      name: this.name,
      store: this.#store.kind,
      caches,
      pendingChanges: caches.reduce((sum, c) => sum + c.pendingChanges, 0),
      entries: caches.reduce((sum, c) => sum + c.entries, 0),
      autoSync: this.#options.autoSync,
      closed: this.closed,
      bus: this.#bus?.stats(),
    };
  }

  /**
   * Waits for running operations, saves every cache with unsaved changes, closes the store
   * it created, and refuses further calls. Idempotent: later calls return the same promise.
   *
   * @throws SaveFailedError if a final save failed (the others were still attempted)
   * @example
   * await manager.close();
   * // or: await using manager = new CacheManager();
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = (async () => {
      const autoSaves = this.#autoSync.close();
      await Promise.allSettled([...this.#inFlight, autoSaves]);
      const dirty = [...this.#caches.values()].filter((reg) => reg.options.persistent && reg.cache.pendingChanges > 0);
      let failure: unknown;
      try {
        await this.#saveEach(dirty, 'close');
      } catch (err) {
        failure = err;
      }
      // The final saves are announced before the bus closes.
      await this.#bus?.close();
      for (const reg of this.#caches.values()) reg.internals.detach();
      this.#closeController.abort(new ClosedError(`cache manager ${JSON.stringify(this.name)}`));
      if (this.#ownsStore) await this.#store.close();
      forgetManager(this);
      // A live AsyncLocalStorage slows every promise in the process (Node 20): let it go.
      this.#held.disable();
      if (failure !== undefined) throw failure;
    })();
    return this.#closing;
  }

  /**
   * Same as {@link CacheManager.close}, for `await using`.
   *
   * @example
   * { await using manager = new CacheManager(); } // closed (and flushed) here
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Memoizes `fn` into a cache: each call's result is stored under the function's identity
   * (cache, name, version) and its arguments, survives restarts, and is shared by processes
   * using the same store. Concurrent calls for one key compute once (across processes too,
   * when the store locks keys). A result remembers the memoized calls and cache entries
   * (`fetch`, `getOrBuild`) its computation read; when any of them is invalidated, changes,
   * or its function changes version, the result is recomputed on its next call.
   *
   * The default version is a hash of `fn`'s source: editing the function retires its old
   * results. Arguments are keyed structurally (`f({ a: 1, b: 2 })` and `f({ b: 2, a: 1 })` are
   * one call); class instances need a `key` function.
   *
   * @param fn - the function (sync or async); called with the memoized function's `this`
   * @param options - `cache`, `name`, `version`, `key`, `ttl`, `maxEntries`, `cacheErrors`, `lock`
   * @throws InvalidOptionError naming the option (an anonymous function needs a `name`)
   * @example
   * const price = manager.memoize(fetchPrice, { cache: 'prices', ttl: '10m' });
   * await price('AAPL');            // computed, stored
   * await price('AAPL');            // hit
   * await price.invalidate('AAPL'); // next call computes again
   */
  memoize<F extends (...args: never[]) => unknown>(fn: F, options: MemoizeOptions<Parameters<F>> = {}): Memoized<F> {
    this.#assertOpen();
    if (typeof fn !== 'function') throw new InvalidOptionError('fn', `memoize() needs a function, got ${fn === null ? 'null' : typeof fn}`);
    const resolved = resolveMemoizeOptions(fn.name, options);
    validateCacheName(resolved.cache);
    return this.#memo.memoize(fn, resolved);
  }

  /**
   * A TC39 method decorator memoizing the method with {@link CacheManager.memoize}. Its
   * default name is `<Class>.<method>`. Results are keyed by the arguments only, so they are
   * shared by every instance: give a `key` that includes what tells instances apart.
   *
   * @example
   * class Quotes {
   *   constructor(readonly market: string) {}
   *   \@manager.memoized({ key(symbol: string) { return [this.market, symbol]; } })
   *   async price(symbol: string) { return fetchPrice(this.market, symbol); }
   * }
   */
  memoized<This, A extends unknown[], R>(options: MemoizeOptions<A> = {}) {
    return (method: (this: This, ...args: A) => R, context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => R>) => {
      if (context.kind !== 'method') throw new InvalidOptionError('memoized', `decorates methods, not a ${String(context.kind)}`);
      const manager = this;
      let wrapped: Memoized<(this: This, ...args: A) => R> | undefined;
      const replacement = function (this: This, ...args: A): Promise<Awaited<R>> {
        if (wrapped === undefined) {
          // Named after the class that declares the method, whichever subclass calls first.
          let holder: object | null = context.static ? (this as object) : Object.getPrototypeOf(this);
          while (holder !== null && Object.getOwnPropertyDescriptor(holder, context.name)?.value !== replacement)
            holder = Object.getPrototypeOf(holder);
          const owner = (context.static ? holder : holder?.constructor) as { name?: string } | null | undefined;
          const name = options.name ?? `${owner?.name || 'anonymous'}.${String(context.name)}`;
          wrapped = manager.memoize(method, { ...options, name });
        }
        return wrapped.apply(this, args);
      };
      return replacement;
    };
  }

  /**
   * A proxy of `target` whose listed `methods` are memoized by (method, arguments) and whose
   * `invalidates` methods, once they have run (resolved or rejected), drop every cached
   * result of the methods they name, and only those. `null` and `undefined` results are
   * cached like any other. Other members pass through untouched.
   *
   * @throws InvalidOptionError naming a method that the target lacks or that is not a function
   * @example
   * const repo = manager.proxy(userRepo, { cache: 'repo', methods: ['list', 'byId'], invalidates: { add: ['list'] } });
   * await repo.list();   // computed
   * await repo.add(bob); // runs, then drops list's results (byId's stay)
   */
  proxy<T extends object, M extends MethodKeys<T>, I extends MethodKeys<T> = never>(
    target: T,
    options: ProxyOptions<T, M, I>,
  ): CachedProxy<T, M, I> {
    this.#assertOpen();
    return createProxy(this, target, options);
  }

  /**
   * Serves the admin API, Prometheus metrics and dashboard of this manager on a new HTTP
   * server (127.0.0.1 by default; see docs/admin.md). The admin code is loaded on first use.
   *
   * @example
   * const admin = await manager.serve({ port: 9470 }); // admin.url, then await admin.close()
   */
  async serve(options: ServeOptions = {}): Promise<AdminServer> {
    this.#assertOpen();
    const { serve } = await import('./admin/serve.js');
    return serve(this, options);
  }

  // ---------------------------------------------------------------- internals

  /** The manager's side of memoization. */
  #memoHost(): MemoHost {
    const usesStore = (name: string): Registration | undefined => {
      const reg = this.#caches.get(name);
      return reg?.options.persistent && reg.options.hooks.saver === undefined ? reg : undefined;
    };
    return {
      owner: this,
      clock: this.#clock,
      emit: (event, payload) => this.emit(event, payload as never),
      listening: (event) => this.listenerCount(event) > 0,
      cache: async (name) => {
        const existing = this.#caches.get(name)?.cache ?? (await this.#registrations.get(name)?.catch(() => undefined));
        if (existing !== undefined) return existing as Cache<string, unknown>;
        try {
          return await this.registerCache<string, unknown>(name);
        } catch (err) {
          // Registered meanwhile by someone else (a concurrent first call, the application).
          if (err instanceof CacheExistsError) return (this.#caches.get(name)?.cache ?? (await this.#registrations.get(name))) as Cache<string, unknown>;
          throw err;
        }
      },
      registered: (name) => this.#caches.get(name)?.cache,
      readStored: async (name, key) => {
        const reg = usesStore(name);
        // A key changed here since the last save: the store's copy is older than ours.
        if (reg === undefined || !reg.internals.storeMayHold(key)) return undefined;
        return this.#store.loadEntry?.(name, key, this.#storeContext);
      },
      adopt: (name, key, value, expiresAt) => this.#caches.get(name)?.internals.adopt(key, value, expiresAt),
      lockKey: (name, key, options) => (usesStore(name) === undefined ? undefined : this.#store.lockKey?.(name, key, options)),
      persist: async (name) => {
        const reg = this.#caches.get(name);
        if (reg !== undefined) await this.#saveFlight(reg);
      },
      storedEntries: async (name) => {
        const reg = usesStore(name);
        if (reg === undefined || reg.options.hooks.loader !== undefined) return [];
        return (await this.#store.load(name, this.#storeContext))?.entries ?? [];
      },
      epoch: () => this.#epoch,
    };
  }

  /** Saves a value other processes wait for (under a key lock) at once, unless closing. */
  async #saveFlight(reg: Registration): Promise<void> {
    if (!this.closed) await this.#track(this.#save(reg, 'flight'));
  }

  /**
   * The cross-process lock of a cache's `getOrBuild` flights, if it has one: its `lock`
   * option, by default on when the store is shared by writing processes (it has a bus: a
   * RedisStore). Keys are named like memoized arguments; a key that cannot be (a class
   * instance) builds without the lock.
   */
  #flightLock<K>(name: string, usesStoreCodec: boolean, option: FlightLock | false | undefined): ((key: K) => Promise<KeyLockResult> | undefined) | undefined {
    const store = this.#store;
    const lock = option ?? (hasBus(store) ? DEFAULT_FLIGHT_LOCK : false);
    if (lock === false || !usesStoreCodec || store.lockKey === undefined) return undefined;
    const options = { waitMs: lock.waitMs, ttlMs: lock.ttlMs };
    return (key) => {
      let named: string;
      try {
        named = `getOrBuild#${argsKey([key])}`;
      } catch {
        return undefined;
      }
      return store.lockKey!(name, named, options);
    };
  }

  /**
   * Write-behind: an unsaved entry left memory (a bounded cache evicted it), so save the
   * cache soon, once per burst of evictions. After a failure, evictions queue no save for
   * 5 s (the unsaved entries wait in memory; the next eviction after that tries again).
   */
  #writeBehind(reg: Registration): void {
    if (reg.writeBehindQueued || this.#closing !== undefined || this.#clock.now() < reg.writeBehindAfter) return;
    reg.writeBehindQueued = true;
    queueMicrotask(() => {
      reg.writeBehindQueued = false;
      if (this.#closing !== undefined || this.#caches.get(reg.name) !== reg) return;
      this.#track(this.#save(reg, 'evict')).catch(() => {
        reg.writeBehindAfter = this.#clock.now() + WRITE_BEHIND_BACKOFF_MS;
      });
    });
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new ClosedError(`cache manager ${JSON.stringify(this.name)}`);
  }

  #registration<K, V>(name: string): Registration<K, V> {
    const reg = this.#caches.get(name);
    if (reg === undefined) throw new UnknownCacheError(name);
    return reg as Registration<K, V>;
  }

  #affected(name: string, cascade: boolean): readonly string[] {
    return cascade ? this.#graph.cascadeOf(name) : [name];
  }

  /**
   * The registration of each name (`undefined` where there is none), remembered by the
   * names' identity (the graph's cascade arrays are stable) until a cache is registered or
   * deregistered: a cascade over thousands of caches then looks none of them up.
   */
  #registrationsOf(names: readonly string[]): readonly (Registration | undefined)[] {
    let registrations = this.#registrationsByNames.get(names);
    if (registrations === undefined) {
      registrations = names.map((n) => this.#caches.get(n));
      this.#registrationsByNames.set(names, registrations);
    }
    return registrations;
  }

  /** Adds links all-or-nothing; returns the ones that were new (to undo them on failure). */
  #link(links: readonly (readonly [string, string])[]): Array<readonly [string, string]> {
    const added: Array<readonly [string, string]> = [];
    try {
      for (const [parent, dependent] of links) {
        validateCacheName(parent);
        if (this.#graph.addDependency(parent, dependent)) added.push([parent, dependent]);
      }
    } catch (err) {
      for (const [parent, dependent] of added) this.#graph.removeDependency(parent, dependent);
      throw err;
    }
    return added;
  }

  #track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight.add(work);
    const done = (): void => {
      this.#inFlight.delete(work);
    };
    work.then(done, done);
    return work;
  }

  /**
   * Runs `fn` after every earlier operation on `name` has finished. Re-entrant: a hook
   * running under the lock may call operations on its own cache without deadlocking.
   */
  async #withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const held = this.#held.getStore();
    if (held?.has(name)) return fn();
    const previous = this.#locks.get(name);
    let release!: () => void;
    const tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#locks.set(name, tail);
    try {
      if (previous !== undefined) await previous;
      return await this.#held.run(new Set(held).add(name), fn);
    } finally {
      release();
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }

  #persistenceStats(name: string, persistent: boolean, rules: ResolvedAutoSync, history: SaveHistory): PersistenceStats {
    const auto = this.#autoSync.stats(name);
    return {
      persistent,
      autoSync: rules,
      saves: history.saves,
      saveErrors: history.errors,
      lastSaveAt: history.last?.at,
      lastSaveMs: history.last?.ms,
      lastSaveBytes: history.last?.bytes,
      lastSaveEntries: history.last?.entries,
      lastSaveReason: history.last?.reason,
      lastError: history.lastError,
      nextSaveAt: auto?.nextDueAt,
      nextRule: auto?.dueRule,
      retryAt: auto?.retryAt,
      saving: auto?.saving ?? false,
    };
  }

  #context(name: string, signal: AbortSignal): HookContext {
    return { name, manager: this, signal };
  }

  #hook<T>(hook: HookName, name: string, call: (ctx: HookContext) => MaybePromise<T>): Promise<T> {
    return runHook(hook, name, this.#hookOptions, (signal) => call(this.#context(name, signal)));
  }

  /** Loads (loader or store), validates, else builds; puts the result into the cache. */
  async #fill<K, V>(reg: Registration<K, V>): Promise<ContentsSource> {
    const { name, options } = reg;
    const started = performance.now();
    let loaded: LoadedContents<K, V> | undefined;
    let hadCopy = false;
    const source = options.hooks.loader !== undefined ? 'loader' : 'store';
    if (options.hooks.loader !== undefined) {
      const loader = options.hooks.loader;
      const raw = await this.#hook('loader', name, (ctx) => loader(ctx));
      if (raw !== undefined) loaded = normalizeContents<K, V>(name, 'loader', raw, options.ttlMs, this.#clock);
    } else if (options.persistent) {
      loaded = await this.#loadFromStore<K, V>(name);
      hadCopy = loaded !== undefined;
    }
    if (loaded !== undefined && (await this.#accepts(reg, loaded))) {
      reg.internals.replace(loaded, false, source === 'store');
      this.#epoch++;
      reg.needsFullSave = source === 'loader';
      this.emit(EVENTS.loaded, { name, source, entries: loaded.values.size, ms: performance.now() - started });
      return source;
    }
    await this.#build(reg, hadCopy);
    return 'builder';
  }

  async #loadFromStore<K, V>(name: string): Promise<LoadedContents<K, V> | undefined> {
    try {
      return await loadFromStore<K, V>(this.#store, name, this.#storeContext);
    } catch (err) {
      if (!(err instanceof CorruptFileError) || this.#options.onCorrupt !== 'quarantine') throw err;
      const moved = await this.#store.quarantine(name, this.#storeContext);
      this.emit(EVENTS.rejected, { name, reason: 'corrupt', error: err, ...(moved === undefined ? {} : { quarantinedTo: moved }) });
      return undefined;
    }
  }

  async #accepts<K, V>(reg: Registration<K, V>, loaded: LoadedContents<K, V>): Promise<boolean> {
    const validator = reg.options.hooks.validator;
    if (validator === undefined) return true;
    try {
      if (await this.#hook('validator', reg.name, (ctx) => validator(loaded.values, ctx))) return true;
      this.emit(EVENTS.rejected, { name: reg.name, reason: 'invalid' });
    } catch (err) {
      // A validator that throws is a validator that says no.
      this.emit(EVENTS.rejected, { name: reg.name, reason: 'validator-error', error: err });
    }
    return false;
  }

  /** Runs the builder (default: empty) and puts its result into the cache. */
  async #build<K, V>(reg: Registration<K, V>, replacesCopy: boolean): Promise<void> {
    const { name, options } = reg;
    const started = performance.now();
    const builder = options.hooks.builder;
    let built: LoadedContents<K, V>;
    if (builder === undefined) built = emptyContents();
    else {
      const raw = await this.#hook('builder', name, (ctx) => builder(ctx));
      built = normalizeContents<K, V>(name, 'builder', raw, options.ttlMs, this.#clock);
    }
    // Built contents are unsaved, unless there is nothing to save and nothing to replace.
    // Either way they start from a clear, so a batch of changes applies to any stored copy.
    reg.internals.replace(built, options.persistent && (built.values.size > 0 || replacesCopy), true);
    this.#epoch++;
    reg.needsFullSave = false;
    this.#autoSync.changed(name);
    this.emit(EVENTS.built, { name, entries: built.values.size, ms: performance.now() - started });
  }

  /** Deletes `name`'s persisted copy; resolves whether it was the store's copy (not a deleter hook's, not a non-persistent cache). */
  async #deletePersisted(name: string): Promise<boolean> {
    const reg = this.#caches.get(name);
    if (reg === undefined) {
      await this.#store.delete(name, this.#storeContext);
      return true;
    }
    if (!reg.options.persistent) return false;
    const deleter = reg.options.hooks.deleter;
    if (deleter === undefined) await this.#store.delete(name, this.#storeContext);
    else await this.#hook('deleter', name, (ctx) => deleter(ctx));
    reg.needsFullSave = true;
    return deleter === undefined;
  }

  async #invalidateNames(
    names: readonly string[],
    causeOf: (name: string) => CascadeCause,
    sourceOf: (name: string) => string,
    plan: InvalidationPlan,
  ): Promise<void> {
    // Empty every affected cache first: from here on nobody reads stale derived data. A cache
    // with nothing to wait for (see #invalidatesInPlace) is done with here, in the same pass:
    // a cascade over thousands of caches touches each of them once, not three times.
    // The store copies are about to be deleted: read-through must not bring them back meanwhile.
    const inPlace: boolean[] = new Array<boolean>(names.length);
    const stored: string[] = [];
    const registrations = this.#registrationsOf(names);
    for (let i = 0; i < names.length; i++) {
      const n = names[i] as string;
      const reg = registrations[i];
      const simple = reg !== undefined && this.#invalidatesInPlace(reg);
      inPlace[i] = simple;
      if (reg === undefined) {
        if (!this.#locks.has(n)) stored.push(n);
        continue;
      }
      reg.internals.reset(simple);
      // Copies the store itself deletes (no deleter hook), of caches with no operation queued.
      if (!simple && reg.options.persistent && reg.options.hooks.deleter === undefined && !this.#locks.has(n)) stored.push(n);
    }
    this.#epoch++;
    const dropped = stored.length === 0 ? new Set<string>() : await this.#dropStoreCopies(stored, plan.remote);
    if (plan.remote === undefined) {
      this.#announce(plan.source === undefined ? { v: 1, t: 'invalidated', names } : { v: 1, t: 'invalidated', names, source: plan.source });
    }
    const announce = this.listenerCount(EVENTS.invalidated) !== 0;
    const built = this.listenerCount(EVENTS.built) !== 0;
    let failure: unknown;
    for (let i = 0; i < names.length; i++) {
      const n = names[i] as string;
      if (inPlace[i] === true && failure === undefined) {
        // (Payloads only for listeners: a cascade over thousands of caches emits thousands.)
        if (announce) this.emit(EVENTS.invalidated, { name: n, cause: causeOf(n), source: sourceOf(n) });
        if (built) this.emit(EVENTS.built, { name: n, entries: 0, ms: 0 });
        continue;
      }
      try {
        await this.#withLock(n, async () => {
          const reg = this.#caches.get(n);
          // Again, under the lock: a reload that was queued before us may have refilled it.
          if (reg !== undefined) reg.internals.reset(false);
          if (!dropped.has(n)) await this.#deletePersisted(n);
          else if (reg !== undefined) reg.needsFullSave = true;
          if (reg === undefined) return;
          this.emit(EVENTS.invalidated, { name: n, cause: causeOf(n), source: sourceOf(n) });
          // After a failure, downstream builders would read incomplete upstreams: leave them empty.
          if (failure === undefined) await this.#build(reg, false);
        });
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }

  /**
   * The store side of a cascade, before any cache is rebuilt: the copies the store itself
   * deletes (no deleter hook), of caches with no operation running or queued (a save could
   * write their old contents back afterwards: those are left to the cascade's own step,
   * under their lock), go in one `invalidateCascade` call, atomic on a RedisStore, so no
   * other process loads a derived cache whose source is gone. Copies that another process
   * dropped already (`remote`) are left alone. Resolves the names whose store copies are gone.
   */
  async #dropStoreCopies(names: readonly string[], remote: ReadonlySet<string> | undefined): Promise<Set<string>> {
    const done = new Set<string>();
    const bulk: string[] = [];
    for (const n of names) {
      if (remote?.has(n)) done.add(n);
      else bulk.push(n);
    }
    if (bulk.length > 0 && this.#store.invalidateCascade !== undefined) {
      try {
        await this.#store.invalidateCascade(bulk);
        for (const n of bulk) done.add(n);
      } catch {
        // Each cache's own step deletes its copy again, and reports the failure there.
      }
    }
    return done;
  }

  /** Whether invalidating `reg` needs no I/O, no hook and no wait: it is only emptied. */
  #invalidatesInPlace(reg: Registration): boolean {
    return reg.emptiedInPlace && !this.#locks.has(reg.name);
  }

  async #reloadNames(names: readonly string[]): Promise<void> {
    for (const n of names) {
      await this.#withLock(n, async () => {
        const reg = this.#caches.get(n);
        if (reg !== undefined) await this.#fill(reg);
      });
    }
  }

  /** One save of one cache, under its lock. */
  #save<K, V>(reg: Registration<K, V>, reason: SaveReason): Promise<void> {
    return this.#withLock(reg.name, async () => {
      const { name, options } = reg;
      if (!options.persistent || this.#caches.get(name) !== (reg as Registration)) return;
      // A background save that another save overtook has nothing left to do.
      if (BACKGROUND_SAVES.has(reason) && reg.cache.pendingChanges === 0 && !reg.needsFullSave) return;
      const started = performance.now();
      const saver = options.hooks.saver;
      const incremental = saver === undefined && this.#store.saveChanges !== undefined && !reg.needsFullSave;
      const ticket = reg.internals.beginSave(incremental ? 'changes' : 'full');
      this.emit(EVENTS.syncStart, { name, reason });
      try {
        let entries = 0;
        let bytes = 0;
        /** What to tell other processes: nothing (no store write), some keys, or everything (`undefined`). */
        let announce: false | AnnouncedKey[] | undefined = false;
        if (ticket.batch !== undefined) {
          const { batch } = ticket;
          // Nothing changed since the last save: the store already holds this state.
          if (batch.cleared || batch.sets.length > 0 || batch.deletes.length > 0) {
            bytes = (await this.#store.saveChanges!(name, batch, this.#saveContext(name))).bytes;
            announce = this.#bus === undefined ? false : announcedKeys(batch);
          }
          entries = batch.sets.length + batch.deletes.length;
        } else if (saver === undefined) {
          const all = ticket.entries ?? [];
          bytes = (await this.#store.save(name, all, this.#saveContext(name))).bytes;
          entries = all.length;
          announce = undefined;
        } else {
          const contents = new Map<K, V>();
          for (const [key, value] of ticket.entries ?? []) contents.set(key as K, value as V);
          await this.#hook('saver', name, (ctx) => saver(contents, ctx));
          entries = contents.size;
        }
        reg.internals.endSave(ticket);
        reg.needsFullSave = false;
        reg.writeBehindAfter = 0;
        const ms = performance.now() - started;
        const at = this.#clock.now();
        reg.history.saves++;
        reg.history.last = { at, ms, bytes, entries, reason };
        this.#autoSync.saved(name, at);
        this.emit(EVENTS.syncDone, { name, reason, entries, bytes, ms });
        if (announce !== false) this.#announce(announce === undefined ? { v: 1, t: 'saved', name } : { v: 1, t: 'saved', name, keys: announce });
      } catch (err) {
        reg.internals.abortSave(ticket);
        reg.history.errors++;
        reg.history.lastError = { at: this.#clock.now(), message: err instanceof Error ? err.message : String(err) };
        this.#autoSync.changed(name);
        this.emit(EVENTS.syncError, { name, reason, error: err });
        // Nobody awaits these saves: the error event is where they are reported.
        if (BACKGROUND_SAVES.has(reason)) this.#report('save', name, err);
        throw err;
      }
    });
  }

  /** The store context of a save: it carries the cache's direct upstreams, for stores that record links. */
  #saveContext(name: string): StoreContext {
    return { ...this.#storeContext, dependsOn: this.#graph.parentsOf(name) };
  }

  /** Saves each cache (all attempted); throws SaveFailedError naming those that failed. */
  async #saveEach(regs: readonly Registration[], reason: SaveReason): Promise<void> {
    const results = await Promise.allSettled(regs.map((reg) => this.#save(reg, reason)));
    const failed: string[] = [];
    const errors: unknown[] = [];
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        failed.push(regs[i]?.name ?? '?');
        errors.push(result.reason);
      }
    });
    if (failed.length > 0) throw new SaveFailedError(failed, errors);
  }

  // ---------------------------------------------------------------- the bus

  /** Tells the other processes (nobody waits for it; a failure is an `error` event). */
  #announce(message: BusMessage): void {
    if (this.#bus !== undefined) void this.#track(this.#bus.publish(message));
  }

  /**
   * A background failure, as an `error` event: at most one per kind and cache every
   * {@link ERROR_EVENT_INTERVAL_MS} (by the manager's clock); the next one says how many
   * were held back.
   */
  #report(during: BackgroundErrorEvent['during'], name: string | undefined, error: unknown): void {
    const key = `${during}\0${name ?? ''}`;
    const now = this.#clock.now();
    const window = this.#errorWindows.get(key);
    if (window !== undefined && now < window.until) {
      window.suppressed++;
      return;
    }
    this.#errorWindows.set(key, { until: now + ERROR_EVENT_INTERVAL_MS, suppressed: 0 });
    this.emit(EVENTS.error, { ...(name === undefined ? {} : { name }), during, error, suppressed: window?.suppressed ?? 0 });
  }

  /** The registration of `name` if its contents are the store's to refresh (no loader or saver hook). */
  #storeBacked(name: string): Registration | undefined {
    const reg = this.#caches.get(name);
    const { persistent, hooks } = reg?.options ?? { persistent: false, hooks: {} };
    return persistent && hooks.loader === undefined && hooks.saver === undefined ? reg : undefined;
  }

  /**
   * Whether `name` is, or may be once its registration finishes, a store-backed cache: a
   * reaction to a message is then queued behind the registration, which decides.
   */
  #mayBeStoreBacked(name: string): boolean {
    return this.#storeBacked(name) !== undefined || this.#registering.has(name);
  }

  /** What another process announced. */
  #receive(message: BusMessage): void {
    if (this.#closing !== undefined) return;
    switch (message.t) {
      case 'invalidated': {
        // Its cascade as this process knows it: the caches it holds, plus their own dependents.
        const known = message.names.filter((n) => this.#caches.has(n) || this.#graph.has(n));
        if (known.length === 0) return;
        const remote = new Set(message.names);
        const source = message.source;
        const names = this.#graph.closure(known);
        this.#track(
          this.#invalidateNames(names, (n) => (remote.has(n) ? 'remote' : 'dependency'), (n) => source ?? n, { remote }),
        ).catch((error: unknown) => this.#report('refresh', source, error));
        return;
      }
      case 'saved':
        if (message.keys === undefined || this.#store.loadEntry === undefined) this.#refreshWhole(message.name);
        else this.#refreshKeys(message.name, message.keys);
        return;
      case 'deleted':
        for (const name of message.names) {
          if (!this.#mayBeStoreBacked(name)) continue;
          this.#track(
            this.#withLock(name, async () => {
              const reg = this.#storeBacked(name);
              if (reg === undefined) return;
              // The copy is gone: the next save writes everything (memory stays, as after deleteSaved).
              reg.needsFullSave = true;
              this.emit(EVENTS.savedDeleted, { name, cause: 'remote', source: message.names[0] ?? name });
            }),
          ).catch(() => undefined);
        }
        return;
    }
  }

  /** Another process saved these keys of `name`: read them and apply those this process did not change. */
  #refreshKeys(name: string, keys: readonly AnnouncedKey[]): void {
    if (!this.#mayBeStoreBacked(name)) return;
    const loadEntry = this.#store.loadEntry!.bind(this.#store);
    this.#track(
      this.#withLock(name, async () => {
        const reg = this.#storeBacked(name);
        if (reg === undefined) return;
        const { cache, internals } = reg;
        const bounded = reg.options.maxEntries !== Number.POSITIVE_INFINITY;
        const wanted: AnnouncedKey[] = [];
        let skipped = 0;
        for (const key of keys) {
          // A key changed here since the last save keeps its value (saved next); a bounded
          // cache reads the keys it does not hold when asked for them.
          if (!internals.storeMayHold(key)) skipped++;
          else if (!bounded || cache.has(key)) wanted.push(key);
        }
        // A failure is caught up with when the store is back (#resumed reloads every cache).
        const entries = await Promise.all(wanted.map((key) => loadEntry(name, key, this.#storeContext)));
        let changed = 0;
        wanted.forEach((key, i) => {
          if (internals.refresh(key, entries[i])) changed++;
        });
        if (changed > 0) this.#epoch++;
        this.emit(EVENTS.refreshed, { name, mode: 'keys', entries: changed, skipped });
      }),
    ).catch((error: unknown) => this.#report('refresh', name, error));
  }

  /**
   * Reads the store's whole copy of `name` because another process changed it as a whole
   * (or this one missed messages), and merges it into memory: keys this process changed
   * since its last save keep their value (it is saved next), the others take the stored
   * state, so writes made meanwhile are never lost. Without a stored copy (dropped by an
   * invalidation), a cache with no unsaved change is filled again as on registration
   * (builder); one with unsaved changes keeps only them. Coalesces: one queued refresh serves
   * every announcement made before it starts.
   */
  #refreshWhole(name: string): void {
    const queued = this.#caches.get(name);
    if (queued === undefined ? !this.#registering.has(name) : queued.refreshQueued) return;
    if (queued !== undefined) queued.refreshQueued = true;
    this.#track(
      this.#withLock(name, async () => {
        if (queued !== undefined) queued.refreshQueued = false;
        const reg = this.#storeBacked(name);
        if (reg === undefined) return;
        const stored = await this.#loadFromStore(name);
        if (stored === undefined && reg.cache.pendingChanges === 0) {
          await this.#fill(reg);
          this.emit(EVENTS.refreshed, { name, mode: 'reload', entries: reg.cache.size, skipped: 0 });
          return;
        }
        const { changed, skipped } = reg.internals.merge(stored ?? emptyContents());
        if (changed > 0) this.#epoch++;
        this.emit(EVENTS.refreshed, { name, mode: 'reload', entries: changed, skipped });
      }),
    ).catch((error: unknown) => this.#report('refresh', name, error));
  }

  /**
   * The store's connections are back: save what could not be saved meanwhile, and catch up
   * with what other processes announced meanwhile (every store-backed cache merges the
   * store's copy).
   */
  #resumed(): void {
    if (this.#closing !== undefined) return;
    for (const reg of this.#caches.values()) {
      // A cache whose copy was deleted on purpose (deleteSaved) keeps its memory contents.
      if (this.#storeBacked(reg.name) !== reg || reg.needsFullSave) continue;
      // A failure is reported by #save; AutoSync retries it.
      if (reg.cache.pendingChanges > 0) this.#track(this.#save(reg, 'reconnect')).catch(() => undefined);
      this.#refreshWhole(reg.name);
    }
  }
}

// ------------------------------------------------------------- process-wide registry

const managers = new Map<string, { readonly manager: CacheManager; readonly options: ResolvedManagerOptions }>();

function forgetManager(manager: CacheManager): void {
  if (managers.get(manager.name)?.manager === manager) managers.delete(manager.name);
}

/** Option names whose resolved values differ. */
function differingOptions(a: ResolvedManagerOptions, b: ResolvedManagerOptions): string[] {
  return (Object.keys(a) as Array<keyof ResolvedManagerOptions>).filter((key) =>
    key === 'autoSync' ? !sameAutoSync(a.autoSync, b.autoSync) : !Object.is(a[key], b[key]),
  );
}

/**
 * The process-wide manager called `name` (default `'default'`), created on first use.
 * Asking again returns the same manager; asking again with options that differ from the
 * first call's throws instead of silently ignoring them. A closed manager is forgotten, so
 * the next call creates a new one.
 *
 * @throws ManagerConflictError (E_MANAGER_CONFLICT) naming the differing options
 * @example
 * const manager = getCacheManager('app', { dir: './.cache' });
 * getCacheManager('app') === manager; // true
 */
export function getCacheManager(name = 'default', options?: CacheManagerOptions): CacheManager {
  if (options?.name !== undefined && options.name !== name)
    throw new InvalidOptionError('name', `is ${JSON.stringify(options.name)} but the manager is asked for as ${JSON.stringify(name)}`);
  const requested = { ...options, name };
  const existing = managers.get(name);
  if (existing !== undefined) {
    if (options === undefined) return existing.manager;
    const differs = differingOptions(existing.options, resolveManagerOptions(requested));
    if (differs.length > 0) throw new ManagerConflictError(name, differs);
    return existing.manager;
  }
  const manager = new CacheManager(requested);
  managers.set(name, { manager, options: resolveManagerOptions(requested) });
  return manager;
}
