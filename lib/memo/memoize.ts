/**
 * Persistent memoization: `manager.memoize(fn, options)` stores each call's result in a
 * cache, under a key made of the function's identity (cache, name, version) and its
 * arguments (see `key.ts`), with the dependencies the computation read (see `track.ts`).
 *
 * A hit is a result found in memory or the store whose dependencies are all unchanged: each
 * dependency's record still exists with the stamp recorded (a memoized call, checked
 * recursively) or still has the value fingerprinted (a cache entry), and the dependency's
 * function still has the recorded version. Checks are remembered until something changes in
 * the manager (its epoch moves), so a hit with dependencies usually costs one lookup too.
 *
 * Single flight: concurrent calls for one key share one computation in this process; with
 * a store that has key locks, one process computes while the others wait for its saved
 * result (the `lock` option).
 *
 * @module
 */
import { hash } from 'node:crypto';
import type { Cache } from '../cache.js';
import { InvalidOptionError, MemoRecursionError } from '../errors.js';
import { EVENTS, type Emit, type MemoHitSource } from '../events.js';
import { parseDuration, type Duration, type ResolvedMemoizeOptions } from '../options.js';
import type { KeyLockResult, LockKeyOptions, StoredEntry } from '../store/types.js';
import type { Clock } from '../sync/clock.js';
import { argsKey, memoKeyPrefix, type MemoIdentity } from './key.js';
import { ACCESS_RESOLUTION_MS, fingerprint, isMemoRecord, isStorableError, newRecord, restoreError, type MemoDependency, type MemoRecord } from './record.js';
import { Collector, tracking } from './track.js';

/** What a memoizer needs from its manager. Internal. */
export interface MemoHost {
  /** The manager: collectors only record reads made through it. */
  readonly owner: object;
  readonly clock: Clock;
  readonly emit: Emit;
  /** Whether anyone listens to `event` (to skip building payloads). */
  listening(event: 'memo:hit' | 'memo:miss'): boolean;
  /** The cache, registered with default options when it is not (one registration per name). */
  cache(name: string): Promise<Cache<string, unknown>>;
  /** The cache if registered. */
  registered(name: string): Cache<unknown, unknown> | undefined;
  /** Reads an entry from the store, past memory; `undefined` when absent or the cache has no store. */
  readStored(name: string, key: string): Promise<StoredEntry | undefined>;
  /** Puts an entry read from the store into memory. */
  adopt(name: string, key: string, value: unknown, expiresAt: number): void;
  /** A cross-process lock on the key, or `undefined` when the cache's store has none. */
  lockKey(name: string, key: string, options: LockKeyOptions): Promise<KeyLockResult> | undefined;
  /** Saves the cache now, for the processes waiting on a result. */
  persist(name: string): Promise<void>;
  /** Every entry the store holds for a bounded cache (those memory evicted included). */
  storedEntries(name: string): Promise<readonly StoredEntry[]>;
  /** Moves whenever a cache changes: remembered dependency checks are void after it moves. */
  epoch(): number;
}

/**
 * Counters of one memoized function since it was memoized in this process.
 *
 * @example
 * const { hits, misses, entries, computeMs } = price.stats();
 */
export interface MemoStats {
  /** The cache holding its results. */
  readonly cache: string;
  /** Its name. */
  readonly name: string;
  /** Its version. */
  readonly version: string;
  /** Calls answered from a stored result (memory, the store, or another process's computation). */
  readonly hits: number;
  /** Calls that computed. */
  readonly misses: number;
  /** Results of this version in memory now. */
  readonly entries: number;
  /** Total time spent computing, ms. */
  readonly computeMs: number;
  /** Computations that threw. */
  readonly errors: number;
  /** Hits that re-threw a stored error. */
  readonly errorHits: number;
  /** Stored results found no longer valid (a dependency changed). */
  readonly stale: number;
  /** Calls that waited for another process computing the same key. */
  readonly waits: number;
  /** Results another process computed while this one waited. */
  readonly shared: number;
}

/**
 * Options of `memoized.clear()`.
 *
 * @example
 * await price.clear({ maxAge: '1d' }); // results unused for a day
 */
export interface MemoClearOptions {
  /** Only results not used (computed or hit) for at least this long. @default all results */
  readonly maxAge?: Duration;
}

/**
 * A memoized function: `fn`'s parameters, a promise of its result, plus housekeeping.
 *
 * @example
 * const price = manager.memoize(fetchPrice, { cache: 'prices' });
 * await price('AAPL'); await price.invalidate('AAPL'); price.stats().hits;
 */
export interface Memoized<F extends (...args: never[]) => unknown> {
  (this: ThisParameterType<F>, ...args: Parameters<F>): Promise<Awaited<ReturnType<F>>>;
  /** The cache holding the results. */
  readonly cacheName: string;
  /** The function's name in it. */
  readonly functionName: string;
  /** The function's version. */
  readonly version: string;
  /**
   * Drops the stored result for these arguments (memory and store); results that depended on
   * it become stale. Resolves whether there was one in memory.
   */
  invalidate(this: ThisParameterType<F>, ...args: Parameters<F>): Promise<boolean>;
  /**
   * Drops this function's results (of every version), or with `maxAge` those not used for
   * that long. Resolves how many were dropped.
   */
  clear(options?: MemoClearOptions): Promise<number>;
  /**
   * The stored result for these arguments if it is in memory and valid, else `undefined`.
   * Does not compute, count as a use, or read the store; a stored error reads as `undefined`.
   */
  peek(this: ThisParameterType<F>, ...args: Parameters<F>): Awaited<ReturnType<F>> | undefined;
  /** Counters since it was memoized. */
  stats(): MemoStats;
}

/**
 * One computation in progress (or a lookup that may end in one). Invalidating its key while
 * it runs cancels it: callers still get its result, but it is not stored.
 */
interface Flight {
  done: Promise<Outcome>;
  cancelled: boolean;
}

/**
 * What a shared flight settles to: a record (with the original error when this process
 * computed a stored error: its callers get that object, not a copy), or an error not stored.
 */
type Outcome = { readonly record: MemoRecord; readonly original?: unknown } | { readonly thrown: unknown };

/** Most single arguments whose key {@link FunctionState} remembers (then it starts over). */
const KEY_MEMO_SIZE = 65_536;

/** Dependency chains deeper than this are not followed: the result is recomputed. */
const MAX_DEPENDENCY_DEPTH = 1_000;

/**
 * The memoization state of one manager: which functions (and versions) are memoized in this
 * process, and which dependency checks still hold.
 */
export class Memoizer {
  readonly #host: MemoHost;
  /** `<cache>\0<name>` → the version memoized in this process. */
  readonly #versions = new Map<string, string>();
  /** Caches memoized functions of this process store into. */
  readonly #memoCaches = new Set<string>();
  /** The epoch at which a record's dependencies were last found valid. */
  readonly #validAt = new WeakMap<MemoRecord, number>();
  /**
   * Flights by `<cache>\0<key>`: shared by every wrapper of one identity (two proxies of
   * one class, a function memoized twice), so they compute once too.
   */
  readonly flights = new Map<string, Flight>();

  /**
   * @param host - the manager's side
   * @example
   * new Memoizer(host);
   */
  constructor(host: MemoHost) {
    this.#host = host;
  }

  /**
   * Wraps `fn` (see `CacheManager.memoize`).
   *
   * @example
   * memoizer.memoize(fetchPrice, resolveMemoizeOptions('fetchPrice', { cache: 'prices' }));
   */
  memoize<F extends (...args: never[]) => unknown>(fn: F, options: ResolvedMemoizeOptions): Memoized<F> {
    const version = options.version ?? hash('sha256', Function.prototype.toString.call(fn), 'hex').slice(0, 16);
    const identity: MemoIdentity = { cache: options.cache, name: options.name, version };
    const fnId = `${encodeURIComponent(options.name)}@${encodeURIComponent(version)}`;
    this.#versions.set(`${options.cache}\0${options.name}`, version);
    this.#memoCaches.add(options.cache);
    const state = new FunctionState(this, this.#host, fn as unknown as (...args: unknown[]) => unknown, options, identity, fnId);
    const memoized = function (this: unknown, ...args: unknown[]): Promise<unknown> {
      return state.call(this, args);
    } as unknown as Memoized<F>;
    Object.defineProperties(memoized, {
      name: { value: `memoized ${options.name}` },
      length: { value: fn.length },
      cacheName: { value: options.cache, enumerable: true },
      functionName: { value: options.name, enumerable: true },
      version: { value: version, enumerable: true },
      // Regular functions: a `key` option may use the receiver (methods, the decorator).
      invalidate: {
        value: function (this: unknown, ...args: unknown[]) {
          return state.invalidate(this, args);
        },
      },
      peek: {
        value: function (this: unknown, ...args: unknown[]) {
          return state.peek(this, args);
        },
      },
      clear: { value: (clearOptions?: MemoClearOptions) => state.clear(clearOptions) },
      stats: { value: () => state.stats() },
    });
    return memoized;
  }

  /**
   * Records a read of a cache entry into the current computation, if any (called by caches'
   * `fetch` / `getOrBuild`).
   *
   * @example
   * memoizer.recordRead('users', 'u1', value, 0);
   */
  recordRead(cache: string, key: unknown, value: unknown, expiresAt: number): void {
    const collector = tracking.getStore();
    if (collector === undefined || collector.owner !== this.#host.owner) return;
    collector.add([cache, key, fingerprint(value), null, expiresAt]);
  }

  /**
   * Whether the record's dependencies are all unchanged (reading through to the store).
   *
   * @example
   * if (await memoizer.valid(record)) return record.v;
   */
  async valid(record: MemoRecord, depth = 0): Promise<boolean> {
    const known = this.#verdictWithoutReading(record, depth);
    if (known !== undefined) return known;
    const epoch = this.#host.epoch();
    // Checks read caches: they must not be recorded as dependencies of a running computation.
    for (const dep of record.d) if (!(await tracking.exit(() => this.#dependencyValid(dep, depth)))) return false;
    this.#validAt.set(record, epoch);
    return true;
  }

  /**
   * Like {@link Memoizer.valid}, from memory only: `false` when something it needs is not
   * in memory.
   *
   * @example
   * memoizer.validInMemory(record);
   */
  validInMemory(record: MemoRecord, depth = 0): boolean {
    const known = this.#verdictWithoutReading(record, depth);
    if (known !== undefined) return known;
    const epoch = this.#host.epoch();
    for (const [cacheName, key, token, fn] of record.d) {
      const cache = this.#host.registered(cacheName);
      if (cache === undefined || !cache.has(key)) return false;
      const value = cache.peek(key);
      if (fn === null) {
        if (fingerprint(value) !== token) return false;
      } else if (!this.#versionCurrent(cacheName, fn) || !isMemoRecord(value) || value.s !== token || !this.validInMemory(value, depth + 1)) {
        return false;
      }
    }
    this.#validAt.set(record, epoch);
    return true;
  }

  /**
   * What can be said of a record's validity without reading its dependencies: valid (none,
   * or checked since nothing changed), stale (one expired), too deep to follow (stale), or
   * `undefined`: read them.
   */
  #verdictWithoutReading(record: MemoRecord, depth: number): boolean | undefined {
    if (record.d.length === 0) return true;
    if (record.x !== 0 && record.x <= this.#host.clock.now()) return false;
    if (this.#validAt.get(record) === this.#host.epoch()) return true;
    if (depth > MAX_DEPENDENCY_DEPTH) return false;
    return undefined;
  }

  async #dependencyValid([cacheName, key, token, fn]: MemoDependency, depth: number): Promise<boolean> {
    if (fn !== null && !this.#versionCurrent(cacheName, fn)) return false;
    let cache = this.#host.registered(cacheName);
    if (cache === undefined) {
      // A cache no memoized function of this process uses cannot be checked: recompute.
      if (!this.#memoCaches.has(cacheName)) return false;
      cache = (await this.#host.cache(cacheName)) as Cache<unknown, unknown>;
    }
    const value = await cache.fetch(key);
    if (fn === null) return fingerprint(value) === token;
    return isMemoRecord(value) && value.s === token && this.valid(value, depth + 1);
  }

  /** False when the dependency's function is memoized here with another version. */
  #versionCurrent(cacheName: string, fn: string): boolean {
    const at = fn.lastIndexOf('@');
    const current = this.#versions.get(`${cacheName}\0${decodeURIComponent(fn.slice(0, at))}`);
    return current === undefined || encodeURIComponent(current) === fn.slice(at + 1);
  }
}

/** One memoized function: its key building, flights, counters and per-function LRU. */
class FunctionState {
  readonly #memoizer: Memoizer;
  readonly #host: MemoHost;
  readonly #fn: (...args: unknown[]) => unknown;
  readonly #options: ResolvedMemoizeOptions;
  readonly #identity: MemoIdentity;
  readonly #fnId: string;
  readonly #prefix: string;
  /** The start of every key of every version of this function. */
  readonly #allVersionsPrefix: string;
  #cache: Cache<string, unknown> | undefined;
  #ready: Promise<Cache<string, unknown>> | undefined;
  /**
   * The key of each recent single string or number argument: a key is a pure function of the
   * argument, and looking the argument up costs far less than encoding it and hashing the new
   * key string (the key returned is the very string the cache holds, so its lookup is fast too).
   */
  readonly #keyMemo: Map<unknown, string> | undefined;
  /** Keys of this function's results, least recently used first (only with `maxEntries`). */
  #lru: Map<string, true> | undefined;
  #hits = 0;
  #misses = 0;
  #computeMs = 0;
  #errors = 0;
  #errorHits = 0;
  #stale = 0;
  #waits = 0;
  #shared = 0;

  constructor(
    memoizer: Memoizer,
    host: MemoHost,
    fn: (...args: unknown[]) => unknown,
    options: ResolvedMemoizeOptions,
    identity: MemoIdentity,
    fnId: string,
  ) {
    this.#memoizer = memoizer;
    this.#host = host;
    this.#fn = fn;
    this.#options = options;
    this.#identity = identity;
    this.#fnId = fnId;
    this.#prefix = memoKeyPrefix(identity);
    this.#allVersionsPrefix = this.#prefix.slice(0, this.#prefix.lastIndexOf('@') + 1);
    this.#keyMemo = options.key === undefined ? new Map() : undefined;
  }

  /** The key of a call: the identity prefix, then the arguments (or what `key` maps them to). */
  #keyOf(thisArg: unknown, args: unknown[]): string {
    const custom = this.#options.key;
    return this.#prefix + (custom === undefined ? argsKey(args) : argsKey([custom.apply(thisArg, args)]));
  }

  call(thisArg: unknown, args: unknown[]): Promise<unknown> {
    let key: string | undefined;
    const keyMemo = this.#keyMemo;
    try {
      if (keyMemo !== undefined && args.length === 1) {
        const arg = args[0];
        // Map keys compare with SameValueZero, keys with Object.is: leave -0 to the encoding.
        if (typeof arg === 'string' || (typeof arg === 'number' && !Object.is(arg, -0))) {
          key = keyMemo.get(arg);
          if (key === undefined) {
            key = this.#keyOf(thisArg, args);
            if (keyMemo.size >= KEY_MEMO_SIZE) keyMemo.clear();
            keyMemo.set(arg, key);
          }
        }
      }
      key ??= this.#keyOf(thisArg, args);
    } catch (error) {
      return Promise.reject(error);
    }
    // The hot path: a result in memory, without dependencies, outside any computation.
    const cache = this.#cache;
    if (cache !== undefined) {
      const record = cache.get(key) as MemoRecord | undefined;
      if (record !== undefined && record.d?.length === 0 && typeof record.s === 'string' && tracking.getStore() === undefined) {
        if (this.#host.clock.now() - record.a < ACCESS_RESOLUTION_MS) {
          this.#hit(key, record, 'memory');
          return record.e === 0 ? Promise.resolve(record.v) : Promise.reject(restoreError(record.v));
        }
      }
    }
    return this.#slowCall(thisArg, args, key);
  }

  async #slowCall(thisArg: unknown, args: unknown[], key: string): Promise<unknown> {
    const parent = tracking.getStore();
    if (parent !== undefined && parent.owner === this.#host.owner && parent.computing(this.#options.cache, key))
      throw new MemoRecursionError(this.#options.cache, this.#options.name);
    const cache = await this.#cacheReady();
    const flights = this.#memoizer.flights;
    const id = `${this.#options.cache}\0${key}`;
    let flight = flights.get(id);
    if (flight === undefined) {
      // The flight is created before its work, which checks `cancelled` on it when done.
      const started = { cancelled: false } as Flight;
      started.done = this.#resolve(thisArg, args, key, cache, parent, started);
      flights.set(id, started);
      const done = (): void => {
        if (flights.get(id) === started) flights.delete(id);
      };
      started.done.then(done, done);
      flight = started;
    }
    const outcome = await flight.done;
    if ('thrown' in outcome) throw outcome.thrown;
    const { record } = outcome;
    if (parent !== undefined && parent.owner === this.#host.owner) {
      // The result goes stale when it expires, or when any of its own dependencies does.
      const expires = cache.expiresAt(key) ?? 0;
      parent.add([this.#options.cache, key, record.s, this.#fnId, record.x !== 0 && (expires === 0 || record.x < expires) ? record.x : expires]);
    }
    if (record.e === 1) throw 'original' in outcome ? outcome.original : restoreError(record.v);
    return record.v;
  }

  /** Finds a valid stored result, else computes one (once across processes when the store locks keys). */
  async #resolve(
    thisArg: unknown,
    args: unknown[],
    key: string,
    cache: Cache<string, unknown>,
    parent: Collector | undefined,
    flight: Flight,
  ): Promise<Outcome> {
    const inMemory = cache.has(key);
    const stored = await tracking.exit(() => cache.fetch(key));
    if (isMemoRecord(stored)) {
      if (await this.#memoizer.valid(stored)) return this.#found(cache, key, stored, inMemory ? 'memory' : 'store');
      this.#stale++;
    }
    const reason = isMemoRecord(stored) ? 'stale' : 'absent';
    const lockOptions = this.#options.lock;
    const locking = lockOptions === false ? undefined : this.#host.lockKey(this.#options.cache, key, lockOptions);
    if (locking === undefined) return this.#compute(thisArg, args, key, cache, parent, reason, flight);
    const { lock, waited } = await locking;
    if (waited) this.#waits++;
    try {
      // Another process may have computed it while we waited (or just before we asked).
      const entry = await this.#host.readStored(this.#options.cache, key);
      const theirs = entry?.[1];
      if (isMemoRecord(theirs) && theirs.s !== (isMemoRecord(stored) ? stored.s : undefined) && (await this.#memoizer.valid(theirs))) {
        this.#host.adopt(this.#options.cache, key, theirs, entry?.[2] ?? 0);
        this.#shared++;
        return this.#found(cache, key, theirs, 'process');
      }
      const outcome = await this.#compute(thisArg, args, key, cache, parent, reason, flight);
      // Waiters in other processes read the result from the store: save it before unlocking.
      if (lock !== undefined && 'record' in outcome) await this.#host.persist(this.#options.cache).catch(() => undefined);
      return outcome;
    } finally {
      await lock?.release();
    }
  }

  #found(cache: Cache<string, unknown>, key: string, record: MemoRecord, source: MemoHitSource): Outcome {
    const now = this.#host.clock.now();
    let current = record;
    if (now - record.a >= ACCESS_RESOLUTION_MS && cache.peek(key) === record) {
      // Records are never changed in place: a new one carries the new time.
      current = { ...record, a: now };
      this.#write(cache, key, current, cache.expiresAt(key));
    }
    this.#hit(key, current, source);
    return { record: current };
  }

  #hit(key: string, record: MemoRecord, source: MemoHitSource): void {
    this.#hits++;
    if (record.e === 1) this.#errorHits++;
    const lru = this.#lru;
    if (lru !== undefined) {
      lru.delete(key);
      lru.set(key, true);
    }
    if (this.#host.listening(EVENTS.memoHit))
      this.#host.emit(EVENTS.memoHit, { cache: this.#options.cache, name: this.#options.name, key, source });
  }

  async #compute(
    thisArg: unknown,
    args: unknown[],
    key: string,
    cache: Cache<string, unknown>,
    parent: Collector | undefined,
    reason: 'absent' | 'stale',
    flight: Flight,
  ): Promise<Outcome> {
    const collector = new Collector(this.#host.owner, this.#options.cache, key, parent);
    const started = performance.now();
    let value: unknown;
    let threw = false;
    try {
      value = await tracking.run(collector, () => this.#fn.apply(thisArg, args));
    } catch (error) {
      threw = true;
      value = error;
    }
    const ms = performance.now() - started;
    this.#misses++;
    this.#computeMs += ms;
    if (threw) this.#errors++;
    const store = !threw || this.#storesError(value);
    if (this.#host.listening(EVENTS.memoMiss))
      this.#host.emit(EVENTS.memoMiss, { cache: this.#options.cache, name: this.#options.name, key, ms, threw, cachedError: threw && store, reason });
    if (!store) return { thrown: value };
    const record = newRecord(value, threw, collector.dependencies(), this.#host.clock.now(), ms);
    // Invalidated while it ran: the callers get it, the cache does not.
    if (!flight.cancelled) this.#write(cache, key, record, undefined);
    return threw ? { record, original: value } : { record };
  }

  #storesError(error: unknown): boolean {
    const policy = this.#options.cacheErrors;
    if (policy === false || !isStorableError(error)) return false;
    return policy === true || policy(error) === true;
  }

  /** Stores a record, keeping an existing expiry (`expiresAt`) or applying the function's ttl. */
  #write(cache: Cache<string, unknown>, key: string, record: MemoRecord, expiresAt: number | undefined): void {
    if (expiresAt !== undefined) {
      const left = expiresAt - this.#host.clock.now();
      if (left <= 0) return;
      cache.set(key, record, { ttl: left });
    } else if (this.#options.ttlMs !== undefined) cache.set(key, record, { ttl: this.#options.ttlMs });
    else cache.set(key, record);
    const lru = this.#lru;
    if (lru === undefined) return;
    lru.delete(key);
    lru.set(key, true);
    while (lru.size > this.#options.maxEntries) {
      const oldest = lru.keys().next().value as string;
      lru.delete(oldest);
      cache.delete(oldest);
    }
  }

  #cacheReady(): Promise<Cache<string, unknown>> {
    if (this.#cache !== undefined) return Promise.resolve(this.#cache);
    this.#ready ??= this.#host.cache(this.#options.cache).then(
      (cache) => {
        if (this.#options.maxEntries !== Number.POSITIVE_INFINITY) this.#lru = this.#residentKeysByUse(cache);
        this.#cache = cache;
        return cache;
      },
      (error: unknown) => {
        this.#ready = undefined;
        throw error;
      },
    );
    return this.#ready;
  }

  /** This version's results in memory, least recently used first. */
  #residentKeysByUse(cache: Cache<string, unknown>): Map<string, true> {
    const found: [string, number][] = [];
    for (const [key, value] of cache.entries()) {
      if (typeof key === 'string' && key.startsWith(this.#prefix) && isMemoRecord(value)) found.push([key, value.a]);
    }
    found.sort((a, b) => a[1] - b[1]);
    return new Map(found.map(([key]) => [key, true]));
  }

  async invalidate(thisArg: unknown, args: unknown[]): Promise<boolean> {
    const key = this.#keyOf(thisArg, args);
    const cache = await this.#cacheReady();
    this.#cancel(key);
    this.#lru?.delete(key);
    return cache.delete(key);
  }

  async clear(options: MemoClearOptions | undefined): Promise<number> {
    let maxAgeMs: number | undefined;
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null)
        throw new InvalidOptionError('', 'the options of clear() must be an object like { maxAge }', this.#options.cache);
      for (const k of Object.keys(options))
        if (k !== 'maxAge') throw new InvalidOptionError(k, `unknown option '${k}' of clear() (only 'maxAge')`, this.#options.cache);
      if (options.maxAge !== undefined) {
        maxAgeMs = parseDuration(options.maxAge);
        if (maxAgeMs === undefined)
          throw new InvalidOptionError('maxAge', "must be a positive number of milliseconds or a string like '1d'", this.#options.cache);
      }
    }
    const cache = await this.#cacheReady();
    if (maxAgeMs === undefined) for (const id of [...this.#memoizer.flights.keys()]) this.#cancel(id.slice(id.indexOf('\0') + 1), true);
    // A bounded cache keeps only part of its results in memory, and unsaved evicted ones in
    // neither memory's view nor the store: save first, then look at the store's copy too.
    const bounded = cache.maxEntries !== Number.POSITIVE_INFINITY;
    if (bounded) await this.#host.persist(this.#options.cache).catch(() => undefined);
    const cutoff = maxAgeMs === undefined ? Number.POSITIVE_INFINITY : this.#host.clock.now() - maxAgeMs;
    const doomed = new Set<string>();
    const consider = (key: unknown, value: unknown): void => {
      if (typeof key !== 'string' || !key.startsWith(this.#allVersionsPrefix)) return;
      if (!isMemoRecord(value) || value.a <= cutoff) doomed.add(key);
    };
    for (const [key, value] of cache.entries()) consider(key, value);
    // A bounded cache keeps only part of its results in memory: look at the store's too.
    if (bounded) {
      for (const [key, value] of await this.#host.storedEntries(this.#options.cache)) if (!cache.has(key as string)) consider(key, value);
    }
    for (const key of doomed) {
      this.#lru?.delete(key);
      cache.delete(key);
    }
    return doomed.size;
  }

  /** Stops a running computation of `key` from storing its result (every version with `allVersions`). */
  #cancel(key: string, allVersions = false): void {
    const flights = this.#memoizer.flights;
    if (allVersions && !key.startsWith(this.#allVersionsPrefix)) return;
    const id = `${this.#options.cache}\0${key}`;
    const flight = flights.get(id);
    if (flight === undefined) return;
    flight.cancelled = true;
    flights.delete(id);
  }

  peek(thisArg: unknown, args: unknown[]): unknown {
    const cache = this.#cache ?? this.#host.registered(this.#options.cache);
    if (cache === undefined) return undefined;
    const record = cache.peek(this.#keyOf(thisArg, args));
    if (!isMemoRecord(record) || record.e === 1 || !this.#memoizer.validInMemory(record)) return undefined;
    return record.v;
  }

  stats(): MemoStats {
    let entries = 0;
    if (this.#lru !== undefined) entries = this.#lru.size;
    else {
      const cache = this.#cache ?? this.#host.registered(this.#options.cache);
      if (cache !== undefined) for (const key of cache.keys()) if (typeof key === 'string' && key.startsWith(this.#prefix)) entries++;
    }
    return {
      cache: this.#options.cache,
      name: this.#options.name,
      version: this.#identity.version,
      hits: this.#hits,
      misses: this.#misses,
      entries,
      computeMs: this.#computeMs,
      errors: this.#errors,
      errorHits: this.#errorHits,
      stale: this.#stale,
      waits: this.#waits,
      shared: this.#shared,
    };
  }
}
