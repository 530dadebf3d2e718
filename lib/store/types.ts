import type { Codec } from '../codec/types.js';
import type { Clock } from '../sync/clock.js';

/**
 * One persisted entry: key, value and absolute expiry time (ms since the epoch by the
 * manager's clock; `0` when the entry never expires). Absolute times keep their meaning
 * across restarts.
 */
export type StoredEntry = readonly [key: unknown, value: unknown, expiresAt: number];

/** Something a store noticed and repaired, or wants the user to know (not a failure). */
export interface StoreWarning {
  /** The cache concerned. */
  readonly name: string;
  /** Stable kind: `'torn-tail'` (a partly written last batch was cut off), `'stale-lock'`, `'debris'` … */
  readonly kind: string;
  /** A sentence for humans, naming the file. */
  readonly message: string;
  /** The file involved. */
  readonly path?: string;
}

/** What every store call is given by the manager. */
export interface StoreContext {
  /** The codec to encode with; files record its name and are decoded by that codec. */
  readonly codec: Codec;
  /** The manager's clock (for timestamps such as `savedAt`). */
  readonly clock: Clock;
  /** Reports a warning; the manager emits it as `store:warning`. */
  readonly warn?: (warning: StoreWarning) => void;
  /**
   * On `save` and `saveChanges`: the caches the saved one directly depends on (its
   * `dependsOn` links), for stores that record them with the copy, so tools such as the
   * `cachegraph` CLI can draw and cascade the graph without the application.
   */
  readonly dependsOn?: readonly string[];
}

/**
 * The changes made to a cache since its last save, for stores that append them instead of
 * rewriting the whole cache (see {@link CacheStore.saveChanges}).
 */
export interface ChangeBatch {
  /** The cache was cleared before `sets` and `deletes`: everything saved earlier is gone. */
  readonly cleared: boolean;
  /** Entries written since the last save (their current value and absolute expiry). */
  readonly sets: readonly StoredEntry[];
  /** Keys deleted since the last save (and not written again since). */
  readonly deletes: readonly unknown[];
}

/** A cache's persisted copy, as read back by {@link CacheStore.load}. */
export interface StoredSnapshot {
  /** Entries in the order they were saved (least recently used first). */
  readonly entries: readonly StoredEntry[];
  /** When it was saved (the saving manager's clock). */
  readonly savedAt: number;
  /** Where it lives, for messages: a file path or a key. */
  readonly location: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** The name of the codec it was written with. */
  readonly codec: string;
}

/**
 * What a store knows of a cache's persisted copy without decoding its values, as
 * {@link CacheStore.describe} reports it (for `cachegraph ls`, `graph` and the admin service).
 */
export interface StoredInfo {
  /** The cache's name. */
  readonly name: string;
  /**
   * Entries in the copy, or `undefined` when the store cannot tell without reading every
   * record (a FileStore cache with appended batches: a batch may overwrite or delete keys).
   */
  readonly entries: number | undefined;
  /** Its size in bytes (for RedisStore, the server's memory estimate of the data). */
  readonly bytes: number;
  /** When it was last written (the saving manager's clock). */
  readonly savedAt: number;
  /** The name of the codec it was (last) written with. */
  readonly codec: string;
  /**
   * The caches it directly depends on, as recorded by the last save that carried
   * `StoreContext.dependsOn`; `[]` when none were recorded.
   */
  readonly dependsOn: readonly string[];
  /** Where it lives: a directory or a key prefix. */
  readonly location: string;
  /**
   * Bytes appended since the last full snapshot (FileStore: the log segments), which a
   * compaction would fold in; `0` for stores that keep no log.
   */
  readonly logBytes: number;
}

/** What a successful {@link CacheStore.save} reports. */
export interface SaveResult {
  /** Entries written. */
  readonly entries: number;
  /** Bytes written. */
  readonly bytes: number;
  /** Where they were written. */
  readonly location: string;
}

/**
 * A held cross-process lock on one key of one cache (see {@link CacheStore.lockKey}).
 */
export interface KeyLock {
  /**
   * Releases the lock: removes it only if it is still this holder's (compare-and-delete),
   * and wakes the waiters. Idempotent; never throws (a lock that cannot be removed expires).
   */
  release(): Promise<void>;
}

/** Options of {@link CacheStore.lockKey}. */
export interface LockKeyOptions {
  /** How long to wait while another live holder has the lock, in ms; then give up. */
  readonly waitMs: number;
  /**
   * The longest the lock may be held, in ms: past it, a holder is presumed hung and the
   * lock may be taken over even if its process still looks alive.
   */
  readonly ttlMs: number;
  /** Stops waiting (the call rejects with the signal's reason). */
  readonly signal?: AbortSignal;
}

/** What {@link CacheStore.lockKey} resolves. */
export interface KeyLockResult {
  /** The lock, or `undefined` when another holder kept it for all of `waitMs`. */
  readonly lock: KeyLock | undefined;
  /** Whether another holder had it when we asked (it may have stored the result meanwhile). */
  readonly waited: boolean;
}

/** Who sent a bus message: the publishing store object's id. */
export interface BusMessageMeta {
  /** The publisher's id (a store object's `instanceId`). */
  readonly from: string;
}

/** Receives bus messages (see {@link CacheStore.subscribe}). Its errors are caught and dropped. */
export type BusHandler = (message: unknown, meta: BusMessageMeta) => void | Promise<void>;

/** Options of {@link CacheStore.subscribe}. */
export interface SubscribeOptions {
  /**
   * Called when the store's connections come back after a loss: messages published
   * meanwhile were missed, and writes that failed meanwhile can be retried now.
   */
  readonly onResume?: () => void;
}

/**
 * Where caches are persisted. Every implementation passes the shared conformance suite in
 * `spec/store/conformance.ts`.
 *
 * Guarantees every store gives:
 * - `save` is atomic: afterwards `load` returns exactly the saved entries; if it fails, `load`
 *   returns exactly what it returned before.
 * - `load` never returns damaged data: a failed check is `CorruptFileError`; a format or
 *   codec this process cannot read is `UnsupportedFormatError`; an operating-system failure
 *   is `StoreIOError`.
 * - Names are opaque strings; a store maps any name that passed `validateCacheName`
 *   to a location of its own without escaping its root.
 *
 * @example
 * const store: CacheStore = new MemoryStore();
 * await store.save('users', [['u1', { name: 'Ada' }, 0]], { codec: v8Codec, clock: systemClock });
 */
export interface CacheStore {
  /** Short name of the implementation: `'file'`, `'memory'`, `'redis'`. */
  readonly kind: string;
  /** Reads the persisted copy of `name`, or `undefined` when nothing was saved. */
  load(name: string, ctx: StoreContext): Promise<StoredSnapshot | undefined>;
  /** Replaces the persisted copy of `name` with `entries`, atomically. */
  save(name: string, entries: Iterable<StoredEntry>, ctx: StoreContext): Promise<SaveResult>;
  /**
   * Optional: applies a batch of changes to the persisted copy atomically (all of the batch
   * or none of it), at a cost that follows the batch, not the cache. The manager calls it
   * only when the persisted copy is exactly the state the batch starts from (it was loaded
   * from or saved to this store since); otherwise it calls `save`.
   */
  saveChanges?(name: string, batch: ChangeBatch, ctx: StoreContext): Promise<SaveResult>;
  /**
   * Optional: reads one entry without loading the whole cache (`undefined` if absent or
   * expired by `ctx.clock`). Used by the read-through tier.
   */
  loadEntry?(name: string, key: unknown, ctx: StoreContext): Promise<StoredEntry | undefined>;
  /**
   * Optional: a lock on one key shared by every process using this store, for single flight
   * across processes: the holder computes and saves the key's value, the others wait and
   * read it. A holder that dies (its process is gone) or hangs past `ttlMs` loses the lock;
   * a waiter gives up after `waitMs`. Without this method, single flight is per process.
   */
  lockKey?(name: string, key: string, options: LockKeyOptions): Promise<KeyLockResult>;
  /**
   * Optional, with `subscribe`: sends `message` (a JSON value) to every other store object
   * subscribed on the same storage (for RedisStore: the same namespace). Resolves once sent;
   * delivery is at most once (a subscriber that is disconnected misses it).
   */
  publish?(message: unknown): Promise<unknown>;
  /**
   * Optional, with `publish`: calls `handler` with the messages other store objects publish
   * (never this one's own). Resolves a function that unsubscribes. The manager uses the two
   * as its invalidation bus between processes.
   */
  subscribe?(handler: BusHandler, options?: SubscribeOptions): Promise<() => Promise<void>>;
  /**
   * Optional: removes the persisted copies of several caches at once, atomically where the
   * store can (one script on one Redis server); resolves one boolean per name, whether it
   * had a copy. The manager uses it for the store side of an invalidation cascade.
   */
  invalidateCascade?(names: readonly string[]): Promise<boolean[]>;
  /**
   * Removes the persisted copy; resolves `true` if there was one. `ctx` (optional, for
   * callers that have one) lets the store report warnings such as a lock takeover.
   */
  delete(name: string, ctx?: StoreContext): Promise<boolean>;
  /** Whether a persisted copy of `name` exists (it may still be damaged). */
  has(name: string): Promise<boolean>;
  /** Names of the caches that have a persisted copy. */
  list(): Promise<string[]>;
  /**
   * Moves a damaged copy aside (a file becomes `<file>.corrupt-<time>`) so the cache can be
   * rebuilt; resolves its new location, or `undefined` when there was nothing to move.
   */
  quarantine(name: string, ctx: StoreContext): Promise<string | undefined>;
  /** Human-readable location of `name`'s copy (a path, a key), for messages and stats. */
  locate(name: string): string;
  /** Releases resources (handles, connections). Idempotent. */
  close(): Promise<void>;
  /**
   * Optional: what is known of `name`'s persisted copy (size, save time, codec, recorded
   * dependency links) without decoding its values; `undefined` when nothing is saved.
   * Used by the `cachegraph` CLI and admin service to list and draw caches offline.
   */
  describe?(name: string): Promise<StoredInfo | undefined>;
}
