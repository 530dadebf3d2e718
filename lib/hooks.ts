/**
 * Hooks shape what an operation does with a cache's contents: where they are loaded from,
 * whether they are valid, how they are built, saved and deleted. Each is optional, sync or
 * async, and gets a {@link HookContext}. This module holds their types, the defaults (the
 * store) and the one function that runs any hook with its timeout and error wrapping.
 *
 * @module
 */
import { HookError, HookTimeoutError, InvalidContentsError, type HookName } from './errors.js';
import type { CacheManager } from './manager.js';
import { yieldIfBusy } from './store/log/fsio.js';
import type { CacheStore, StoreContext, StoredEntry } from './store/types.js';
import type { Clock, TimerProvider } from './sync/clock.js';

/**
 * What every hook is given.
 *
 * @example
 * const builder = async ({ manager, signal }: HookContext) => fetchAll({ signal });
 */
export interface HookContext {
  /** The cache the hook runs for. */
  readonly name: string;
  /** The manager, to read other caches (`ctx.manager.getCache('users')`). */
  readonly manager: CacheManager;
  /** Aborted when the hook times out (`hookTimeout`) or the manager closes. */
  readonly signal: AbortSignal;
}

/**
 * Contents a hook can return: any iterable of `[key, value]` pairs (a Map, an array of
 * pairs, a generator) or a plain object (its own enumerable string keys).
 */
export type Contents<K, V> = Iterable<readonly [K, V]> | Readonly<Record<string, V>>;

/** A value or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * The five hooks of a cache.
 *
 * | hook | called | default |
 * |---|---|---|
 * | loader | on register and `reload` | the store's persisted copy |
 * | validator | after every load; throwing counts as invalid | accept |
 * | builder | when nothing valid was loaded, and on `invalidate` | empty |
 * | saver | on `save` / sync | the store |
 * | deleter | on `deleteSaved` and `invalidate` | the store |
 *
 * @example
 * await manager.registerCache('stats', {
 *   builder: (ctx) => [['total', ctx.manager.getCache('users').size]],
 *   validator: (contents) => contents.has('total'),
 * });
 */
export interface CacheHooks<K, V> {
  /** Returns the contents to start from, or `undefined` for "nothing saved" (then the builder runs). */
  loader?: (ctx: HookContext) => MaybePromise<Contents<K, V> | undefined>;
  /** Accepts or refuses loaded contents; `false` or a throw makes the builder run. */
  validator?: (contents: ReadonlyMap<K, V>, ctx: HookContext) => MaybePromise<boolean>;
  /** Computes the contents from scratch. */
  builder?: (ctx: HookContext) => MaybePromise<Contents<K, V>>;
  /** Persists a snapshot of the contents (replaces the store's save). */
  saver?: (contents: ReadonlyMap<K, V>, ctx: HookContext) => MaybePromise<void>;
  /** Removes the persisted copy (replaces the store's delete). */
  deleter?: (ctx: HookContext) => MaybePromise<void>;
}

/** Contents in the form the manager hands to a cache: values and absolute expiry times. */
export interface LoadedContents<K, V> {
  readonly values: Map<K, V>;
  /** Expiry (ms since the epoch) of the entries that expire. */
  readonly expiry: Map<K, number>;
}

/**
 * Normalizes hook output (pairs or a plain object) to a Map, rejecting anything else.
 * Entries built or loaded by hooks get the cache's default TTL, if it has one.
 *
 * @throws InvalidContentsError naming the cache and the hook
 * @internal used by the manager and caches; not exported from the package.
 */
export function normalizeContents<K, V>(
  cacheName: string,
  source: HookName | 'contents',
  contents: unknown,
  ttlMs: number | undefined,
  clock: Clock,
): LoadedContents<K, V> {
  const values = new Map<K, V>();
  const expiry = new Map<K, number>();
  if (contents === undefined || contents === null)
    throw new InvalidContentsError(cacheName, source, `expected pairs or a plain object, got ${String(contents)}`);
  if (typeof (contents as Iterable<unknown>)[Symbol.iterator] === 'function') {
    if (typeof contents === 'string') throw new InvalidContentsError(cacheName, source, 'expected pairs or a plain object, got a string');
    let index = 0;
    for (const pair of contents as Iterable<unknown>) {
      if (!Array.isArray(pair) || pair.length < 2)
        throw new InvalidContentsError(cacheName, source, `item ${index} is not a [key, value] pair`);
      values.set(pair[0] as K, pair[1] as V);
      index++;
    }
  } else if (typeof contents === 'object') {
    const proto = Object.getPrototypeOf(contents);
    if (proto !== Object.prototype && proto !== null)
      throw new InvalidContentsError(cacheName, source, 'expected pairs or a plain object, got a class instance');
    for (const key of Object.keys(contents)) values.set(key as K, (contents as Record<string, V>)[key] as V);
  } else {
    throw new InvalidContentsError(cacheName, source, `expected pairs or a plain object, got ${typeof contents}`);
  }
  if (ttlMs !== undefined) {
    const expiresAt = clock.now() + ttlMs;
    for (const key of values.keys()) expiry.set(key, expiresAt);
  }
  return { values, expiry };
}

/**
 * Reads a cache's persisted copy through the store (the default loader), dropping entries
 * that have expired by `clock`.
 * @internal used by the manager and caches; not exported from the package.
 */
export async function loadFromStore<K, V>(
  store: CacheStore,
  name: string,
  ctx: StoreContext,
): Promise<LoadedContents<K, V> | undefined> {
  const snapshot = await store.load(name, ctx);
  if (snapshot === undefined) return undefined;
  const now = ctx.clock.now();
  const values = new Map<K, V>();
  const expiry = new Map<K, number>();
  const { entries } = snapshot;
  for (let i = 0; i < entries.length; i++) {
    const [key, value, expiresAt] = entries[i] as StoredEntry;
    // A million entries take a few hundred ms to insert: let other work run meanwhile.
    if ((i & 0x3fff) === 0x3fff) await yieldIfBusy();
    if (expiresAt !== 0) {
      if (expiresAt <= now) continue;
      expiry.set(key as K, expiresAt);
    }
    values.set(key as K, value as V);
  }
  return { values, expiry };
}

/** How {@link runHook} limits a hook. */
export interface HookRunOptions {
  /** Abort the hook and fail after this many ms. */
  readonly timeoutMs: number | undefined;
  /** Timers for the timeout. */
  readonly timers: TimerProvider;
  /** Aborted when the manager closes; aborts the hook's own signal. */
  readonly parentSignal: AbortSignal;
}

/**
 * Runs one hook: gives it a signal, enforces the timeout, and wraps whatever it throws in
 * {@link HookError} (with `cause`). A hook that times out is abandoned; its late result or
 * rejection is ignored.
 * @internal used by the manager and caches; not exported from the package.
 */
export async function runHook<T>(
  hook: HookName,
  cacheName: string,
  options: HookRunOptions,
  call: (signal: AbortSignal) => MaybePromise<T>,
): Promise<T> {
  const controller = new AbortController();
  const onParentAbort = (): void => controller.abort(options.parentSignal.reason);
  if (options.parentSignal.aborted) onParentAbort();
  else options.parentSignal.addEventListener('abort', onParentAbort, { once: true });
  let timer: unknown;
  try {
    const work = (async () => call(controller.signal))();
    if (options.timeoutMs === undefined) return await work;
    const timeoutMs = options.timeoutMs;
    // The abandoned hook may still reject later; that must not become an unhandled rejection.
    work.catch(() => undefined);
    return await new Promise<T>((resolve, reject) => {
      timer = options.timers.setTimeout(() => {
        const error = new HookTimeoutError(hook, cacheName, timeoutMs);
        controller.abort(error);
        reject(error);
      }, timeoutMs);
      work.then(resolve, reject);
    });
  } catch (err) {
    if (err instanceof HookTimeoutError || err instanceof InvalidContentsError) throw err;
    throw new HookError(hook, cacheName, err);
  } finally {
    if (timer !== undefined) options.timers.clearTimeout(timer);
    options.parentSignal.removeEventListener('abort', onParentAbort);
  }
}
