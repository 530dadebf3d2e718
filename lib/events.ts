/**
 * Every event a {@link CacheManager} emits, with its payload type. Event names appear as
 * string literals nowhere else: code emits through {@link EVENTS}.
 *
 * Events report what happened; they never shape an operation (that is what hooks do).
 * The manager uses eventemitter3, which, unlike Node's emitter, never throws for an
 * `error` event without a listener: background failures cannot crash the process.
 *
 * @module
 */
import { EventEmitter } from 'eventemitter3';
import type { StoreWarning } from './store/types.js';

/**
 * Why an operation touched a cache: it was named (`'direct'`), it is downstream of the one
 * named (`'dependency'`), or another process did it and told this one over the bus
 * (`'remote'`).
 */
export type CascadeCause = 'direct' | 'dependency' | 'remote';

/** Where a cache's contents came from. */
export type ContentsSource = 'store' | 'loader' | 'builder' | 'contents';

/**
 * Why a save ran: asked for (`'manual'`), AutoSync rules (`'auto'`), deregister, close,
 * unsaved entries evicted from a bounded cache (`'evict'`, write-behind), memoization
 * (`'flight'`: a result other processes may be waiting for, or the flush before `clear()` of
 * a bounded cache), or the store's connection coming back after a loss (`'reconnect'`: the
 * changes that could not be saved meanwhile).
 */
export type SaveReason = 'manual' | 'auto' | 'deregister' | 'close' | 'evict' | 'flight' | 'reconnect';

/** Why an entry left memory without `delete()` or `clear()` being called for it. */
export type RemovalReason = 'evict' | 'expire';

/** Payload of `cache:registered`. */
export interface CacheRegisteredEvent {
  /** The cache. */
  readonly name: string;
  /** Where its first contents came from. */
  readonly source: ContentsSource;
  /** Entries in memory once registered. */
  readonly entries: number;
}

/** Payload of `cache:loaded`: valid contents were loaded (on register or reload). */
export interface CacheLoadedEvent {
  /** The cache. */
  readonly name: string;
  /** `'store'` for the default loader, `'loader'` for a custom one. */
  readonly source: 'store' | 'loader';
  /** Entries loaded (expired ones are not counted: they are dropped). */
  readonly entries: number;
  /** Time spent loading and validating, ms. */
  readonly ms: number;
}

/** Payload of `cache:rejected`: loaded contents were refused, so the builder runs. */
export interface CacheRejectedEvent {
  /** The cache. */
  readonly name: string;
  /** `'invalid'`: the validator returned false; `'validator-error'`: it threw; `'corrupt'`: the copy was damaged and quarantined. */
  readonly reason: 'invalid' | 'validator-error' | 'corrupt';
  /** What the validator threw, or the corruption error. */
  readonly error?: unknown;
  /** Where a damaged copy was moved (`reason: 'corrupt'`). */
  readonly quarantinedTo?: string;
}

/** Payload of `cache:built`. */
export interface CacheBuiltEvent {
  /** The cache. */
  readonly name: string;
  /** Entries the builder produced. */
  readonly entries: number;
  /** Time the builder took, ms. */
  readonly ms: number;
}

/** Payload of `cache:invalidated`: emitted once per affected cache, upstream first. */
export interface CacheInvalidatedEvent {
  /** The invalidated cache. */
  readonly name: string;
  /**
   * `'direct'` for the cache named in the call, `'dependency'` for those downstream, and
   * `'remote'` for the caches another process invalidated (told over the bus).
   */
  readonly cause: CascadeCause;
  /** The cache named in the call that started the cascade (in whichever process). */
  readonly source: string;
}

/** Payload of `cache:saved-deleted`: a persisted copy was removed (`deleteSaved`). */
export interface CacheSavedDeletedEvent {
  /** The cache. */
  readonly name: string;
  /** `'direct'` or `'dependency'`. */
  readonly cause: CascadeCause;
  /** The cache named in the call. */
  readonly source: string;
}

/**
 * Payload of `cache:refreshed`: another process saved the cache (told over the bus) and
 * this one brought its memory up to date: the keys it announced, or the whole cache.
 */
export interface CacheRefreshedEvent {
  /** The cache. */
  readonly name: string;
  /** `'keys'`: the announced keys were read one by one; `'reload'`: the whole copy was loaded. */
  readonly mode: 'keys' | 'reload';
  /** Entries of memory that changed (`'keys'`), or entries loaded (`'reload'`). */
  readonly entries: number;
  /**
   * Announced keys left alone because this process changed them since its last save: its
   * own change wins and is saved next (`'keys'` only).
   */
  readonly skipped: number;
}

/** Payload of `cache:deregistered`. */
export interface CacheDeregisteredEvent {
  /** The cache. */
  readonly name: string;
}

/** Payload of `cache:removed`: an entry left memory by LRU eviction or expiry. */
export interface CacheRemovedEvent {
  /** The cache. */
  readonly name: string;
  /** The entry's key. */
  readonly key: unknown;
  /** `'evict'` (over `maxEntries`) or `'expire'` (TTL passed). */
  readonly reason: RemovalReason;
}

/** Payload of `store:warning`: the store repaired something or wants it known (see {@link StoreWarning}). */
export type StoreWarningEvent = StoreWarning;

/** Payload of `sync:start`. */
export interface SyncStartEvent {
  /** The cache. */
  readonly name: string;
  /** Why it is saved. */
  readonly reason: SaveReason;
}

/** Payload of `sync:done`. */
export interface SyncDoneEvent {
  /** The cache. */
  readonly name: string;
  /** Why it was saved. */
  readonly reason: SaveReason;
  /** Entries written. */
  readonly entries: number;
  /** Bytes written (`0` when a custom saver did the writing). */
  readonly bytes: number;
  /** Duration, ms. */
  readonly ms: number;
}

/** Payload of `sync:error`. The cache keeps its changes. */
export interface SyncErrorEvent {
  /** The cache. */
  readonly name: string;
  /** Why it was being saved. */
  readonly reason: SaveReason;
  /** What failed. */
  readonly error: unknown;
}

/** Where a memoized call found its result. */
export type MemoHitSource = 'memory' | 'store' | 'process';

/** A memoized call was answered by a stored result (`memo:hit`). */
export interface MemoHitEvent {
  /** The cache holding the function's results. */
  readonly cache: string;
  /** The function's name. */
  readonly name: string;
  /** The result's key in the cache. */
  readonly key: string;
  /**
   * `'memory'`; `'store'` (read back from the store: a bounded cache had evicted it);
   * `'process'` (found in the store once this process held the key's lock: another process
   * computed it, while this one waited or just before).
   */
  readonly source: MemoHitSource;
}

/** A memoized call computed its result (`memo:miss`). */
export interface MemoMissEvent {
  /** The cache holding the function's results. */
  readonly cache: string;
  /** The function's name. */
  readonly name: string;
  /** The result's key in the cache. */
  readonly key: string;
  /** Time the computation took, ms. */
  readonly ms: number;
  /** Whether it threw (and whether that error was stored: `cachedError`). */
  readonly threw: boolean;
  /** Whether a thrown error was stored (`cacheErrors`). */
  readonly cachedError: boolean;
  /** Why it was computed: nothing stored, or a stored result that was no longer valid. */
  readonly reason: 'absent' | 'stale';
}

/**
 * A failure in the background, which nobody awaits: an automatic, write-behind, memoize
 * `'flight'` or reconnection save, or the bus. At most one per `during` and cache every 5
 * seconds (by the manager's clock); the next one counts those left out (`suppressed`), so a
 * store that is down for a while cannot flood the listeners.
 */
export interface BackgroundErrorEvent {
  /** The cache concerned, when there is one. */
  readonly name?: string;
  /**
   * What was being done: `'save'`, `'publish'` (announcing a change on the bus), or
   * `'refresh'` (applying another process's change).
   */
  readonly during: 'save' | 'publish' | 'refresh';
  /** The error. */
  readonly error: unknown;
  /** Errors of the same kind and cache left out since the previous event. */
  readonly suppressed: number;
}

/**
 * The event map: event name → listener signature. `manager.on(name, listener)` is typed by it.
 *
 * @example
 * manager.on('cache:invalidated', (e) => console.log(e.name, e.cause, e.source));
 */
export interface CacheManagerEvents {
  'cache:registered': (event: CacheRegisteredEvent) => void;
  'cache:loaded': (event: CacheLoadedEvent) => void;
  'cache:rejected': (event: CacheRejectedEvent) => void;
  'cache:built': (event: CacheBuiltEvent) => void;
  'cache:invalidated': (event: CacheInvalidatedEvent) => void;
  'cache:saved-deleted': (event: CacheSavedDeletedEvent) => void;
  'cache:deregistered': (event: CacheDeregisteredEvent) => void;
  'cache:refreshed': (event: CacheRefreshedEvent) => void;
  'cache:removed': (event: CacheRemovedEvent) => void;
  'store:warning': (event: StoreWarningEvent) => void;
  'sync:start': (event: SyncStartEvent) => void;
  'sync:done': (event: SyncDoneEvent) => void;
  'sync:error': (event: SyncErrorEvent) => void;
  'memo:hit': (event: MemoHitEvent) => void;
  'memo:miss': (event: MemoMissEvent) => void;
  /**
   * A background failure. Unlike Node's EventEmitter, an `error` event nobody listens to is
   * dropped, never thrown: background failures cannot crash the process.
   */
  error: (event: BackgroundErrorEvent) => void;
}

/** A name of {@link CacheManagerEvents}. */
export type CacheManagerEventName = keyof CacheManagerEvents;

/** The event names, for emitting without string literals scattered through the code. */
export const EVENTS = Object.freeze({
  registered: 'cache:registered',
  loaded: 'cache:loaded',
  rejected: 'cache:rejected',
  built: 'cache:built',
  invalidated: 'cache:invalidated',
  savedDeleted: 'cache:saved-deleted',
  deregistered: 'cache:deregistered',
  refreshed: 'cache:refreshed',
  removed: 'cache:removed',
  storeWarning: 'store:warning',
  syncStart: 'sync:start',
  syncDone: 'sync:done',
  syncError: 'sync:error',
  memoHit: 'memo:hit',
  memoMiss: 'memo:miss',
  error: 'error',
} as const satisfies Record<string, CacheManagerEventName>);

/** The narrow emit function a {@link Cache} is given, so it does not hold the manager. */
export type Emit = <E extends CacheManagerEventName>(event: E, payload: Parameters<CacheManagerEvents[E]>[0]) => void;

/**
 * Which events have a listener right now, read by hot paths that would otherwise build a
 * payload nobody receives (an LRU eviction per `set` of a full cache).
 */
export interface Listening {
  /** `cache:removed` has a listener. */
  removed: boolean;
}

type Name = EventEmitter.EventNames<CacheManagerEvents>;
type Listener<T extends Name> = EventEmitter.EventListener<CacheManagerEvents, T>;

/**
 * eventemitter3's emitter, keeping {@link Listening} up to date as listeners come and go.
 * The base of {@link CacheManager}; its methods are eventemitter3's.
 */
export class ListenedEmitter extends EventEmitter<CacheManagerEvents> {
  /** @internal Shared with the caches, which read it on their hot paths. */
  protected readonly listening: Listening = { removed: false };

  /**
   * Adds a listener for `event`.
   *
   * @example
   * manager.on(EVENTS.removed, ({ name, key, reason }) => log(name, key, reason));
   */
  override on<T extends Name>(event: T, fn: Listener<T>, context?: unknown): this {
    super.on(event, fn, context);
    return this.#changed();
  }

  /**
   * The same as {@link ListenedEmitter.on}.
   *
   * @example
   * manager.addListener(EVENTS.removed, onRemoved);
   */
  override addListener<T extends Name>(event: T, fn: Listener<T>, context?: unknown): this {
    super.addListener(event, fn, context);
    return this.#changed();
  }

  /**
   * Adds a listener for the next `event` only.
   *
   * @example
   * manager.once(EVENTS.syncDone, ({ name }) => console.log(`${name} saved`));
   */
  override once<T extends Name>(event: T, fn: Listener<T>, context?: unknown): this {
    super.once(event, fn, context);
    return this.#changed();
  }

  /**
   * Removes the listeners of `event` that match `fn` (all of them without `fn`).
   *
   * @example
   * manager.removeListener(EVENTS.removed, onRemoved);
   */
  override removeListener<T extends Name>(event: T, fn?: Listener<T>, context?: unknown, once?: boolean): this {
    super.removeListener(event, fn, context, once);
    return this.#changed();
  }

  /**
   * The same as {@link ListenedEmitter.removeListener}.
   *
   * @example
   * manager.off(EVENTS.removed, onRemoved);
   */
  override off<T extends Name>(event: T, fn?: Listener<T>, context?: unknown, once?: boolean): this {
    super.off(event, fn, context, once);
    return this.#changed();
  }

  /**
   * Removes every listener of `event`, or of every event.
   *
   * @example
   * manager.removeAllListeners(EVENTS.removed);
   */
  override removeAllListeners(event?: Name): this {
    super.removeAllListeners(event);
    return this.#changed();
  }

  #changed(): this {
    this.listening.removed = this.listenerCount(EVENTS.removed) !== 0;
    return this;
  }
}
