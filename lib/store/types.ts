import type { Codec } from '../codec/types.js';
import type { Clock } from '../sync/clock.js';

/**
 * One persisted entry: key, value and absolute expiry time (ms since the epoch by the
 * manager's clock; `0` when the entry never expires). Absolute times keep their meaning
 * across restarts.
 */
export type StoredEntry = readonly [key: unknown, value: unknown, expiresAt: number];

/** What every store call is given by the manager. */
export interface StoreContext {
  /** The codec to encode with; files record its name and are decoded by that codec. */
  readonly codec: Codec;
  /** The manager's clock (for timestamps such as `savedAt`). */
  readonly clock: Clock;
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
  /** Removes the persisted copy; resolves `true` if there was one. */
  delete(name: string): Promise<boolean>;
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
}
