/**
 * Locks on single keys in Redis, for single flight across processes
 * (`RedisStore.lockKey`): SET NX PX with a token that names the holder (host, pid, a UUID);
 * release by compare-and-delete, which also PUBLISHes the lock's key on the namespace's
 * locks channel so that waiters try again at once. Waiters also poll (every 250 ms, or
 * when the holder's lock would expire, whichever is sooner), so a missed message or an
 * expired holder only costs time.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { InvalidOptionError } from '../../errors.js';
import type { KeyLock, KeyLockResult, LockKeyOptions } from '../types.js';
import { runScript, type RedisClient } from './connection.js';
import type { RedisKeys } from './keys.js';
import { LOCK, UNLOCK } from './scripts.js';
import type { ChannelListener } from './subscriber.js';

/** How often a lock waiter tries again without having heard of a release, ms. */
const LOCK_POLL_MS = 250;
/** What the LOCK script answers when the lock was taken. */
const LOCK_TAKEN = -3;
/** What PTTL answers when the key is gone. */
const PTTL_GONE = -2;

/**
 * What the locks need from their store.
 *
 * @example
 * const backend: LockBackend = { keys, run: (op, at, action) => action(client), listen: (channel, l) => subscriber.add(channel, l) };
 */
export interface LockBackend {
  readonly keys: RedisKeys;
  /** Runs `action` on the store's connected client (connecting if needed). */
  run<T>(op: string, location: string, action: (client: RedisClient) => Promise<T>): Promise<T>;
  /** Adds a listener to a channel on the store's subscriber connection. */
  listen(channel: string, listener: ChannelListener): Promise<void>;
}

/** A lock waiter: woken by a release message, or cancelled by close(). */
class Waiter {
  #wake: (() => void) | undefined;
  #woken = false;
  #failure: Error | undefined;
  #fail: ((error: Error) => void) | undefined;

  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  cancel(error: Error): void {
    this.#failure = error;
    this.#fail?.(error);
  }

  /** Resolves after `ms`, or at once when woken since the last wait; rejects on abort or cancel. */
  wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (this.#woken || ms <= 0) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const done = (error?: unknown): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#wake = undefined;
        this.#fail = undefined;
        this.#woken = false;
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => done(signal?.reason);
      const timer = setTimeout(() => done(), ms);
      timer.unref();
      this.#wake = () => done();
      this.#fail = (error) => done(error);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * The key locks of one store: its waiters and the locks it holds.
 *
 * @example
 * const locks = new RedisKeyLocks({ keys, run, listen });
 * const { lock } = await locks.lock('memo', key, { waitMs: 1000, ttlMs: 60_000 });
 */
export class RedisKeyLocks {
  readonly #backend: LockBackend;
  readonly #tokenPrefix = `${os.hostname()}:${process.pid}:`;
  /** Waiters by lock key. */
  readonly #waiters = new Map<string, Set<Waiter>>();
  /** The locks held (their release), released by {@link RedisKeyLocks.close}. */
  readonly #held = new Set<(client?: RedisClient) => Promise<void>>();
  readonly #onReleased: ChannelListener = (lockKey) => {
    for (const waiter of this.#waiters.get(lockKey) ?? []) waiter.wake();
  };

  /**
   * @param backend - the store's connection, key names and subscriber
   * @example
   * new RedisKeyLocks({ keys, run: (op, at, action) => store.run(op, at, action), listen });
   */
  constructor(backend: LockBackend) {
    this.#backend = backend;
  }

  /**
   * Takes the lock on `key` of cache `name` (see `CacheStore.lockKey`).
   *
   * @throws {InvalidOptionError} option `waitMs` or `ttlMs`
   * @throws {StoreUnavailableError} the server cannot be reached
   * @throws the signal's reason when it aborts; `ClosedError` when the store closes
   * @example
   * const { lock, waited } = await locks.lock('memo', key, { waitMs: 10_000, ttlMs: 60_000 });
   */
  async lock(name: string, key: string, options: LockKeyOptions): Promise<KeyLockResult> {
    const { waitMs, ttlMs, signal } = options;
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new InvalidOptionError('waitMs', `must be a number of ms >= 0, got ${waitMs}`);
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new InvalidOptionError('ttlMs', `must be a number of ms > 0, got ${ttlMs}`);
    signal?.throwIfAborted();
    const { keys, run, listen } = this.#backend;
    const lockKey = keys.lock(name, key);
    const token = `${this.#tokenPrefix}${randomUUID()}`;
    const ttl = String(Math.ceil(ttlMs));
    const attempt = (): Promise<number> => run('lockKey', lockKey, async (client) => Number(await runScript(client, LOCK, [lockKey], [token, ttl])));

    let remaining = await attempt();
    if (remaining === LOCK_TAKEN) return { lock: this.#grant(lockKey, token), waited: false };
    if (waitMs === 0) return { lock: undefined, waited: true };
    const deadline = performance.now() + waitMs;
    const waiter = new Waiter();
    let waiters = this.#waiters.get(lockKey);
    if (waiters === undefined) {
      waiters = new Set();
      this.#waiters.set(lockKey, waiters);
    }
    waiters.add(waiter);
    try {
      try {
        await listen(keys.locksChannel, this.#onReleased);
      } catch {
        // No pub/sub: polling alone still finds the lock free, later.
      }
      for (;;) {
        // The first pass runs right after subscribing: a release before it was not heard.
        await waiter.wait(0, signal);
        remaining = await attempt();
        if (remaining === LOCK_TAKEN) return { lock: this.#grant(lockKey, token), waited: true };
        const left = deadline - performance.now();
        if (left <= 0) return { lock: undefined, waited: true };
        const pause = remaining === PTTL_GONE ? 0 : remaining < 0 ? LOCK_POLL_MS : Math.min(LOCK_POLL_MS, remaining + 1);
        await waiter.wait(Math.min(left, pause), signal);
      }
    } finally {
      waiters.delete(waiter);
      if (waiters.size === 0 && this.#waiters.get(lockKey) === waiters) this.#waiters.delete(lockKey);
    }
  }

  #grant(lockKey: string, token: string): KeyLock {
    let released: Promise<void> | undefined;
    // `client`: the connection to use while the store closes (run() would wait for the close).
    const release = (client?: RedisClient): Promise<void> =>
      (released ??= (async () => {
        this.#held.delete(release);
        const unlock = (c: RedisClient): Promise<unknown> => runScript(c, UNLOCK, [lockKey], [token, this.#backend.keys.locksChannel]);
        try {
          if (client === undefined) await this.#backend.run('unlock', lockKey, unlock);
          else if (client.status === 'ready') await unlock(client);
        } catch {
          // The lock expires after its ttl anyway.
        }
      })());
    this.#held.add(release);
    return { release: () => release() };
  }

  /**
   * Cancels every wait (rejecting with `error`) and releases every held lock through
   * `client` (when it is connected).
   *
   * @example
   * await locks.close(client, new ClosedError('RedisStore'));
   */
  async close(client: RedisClient | undefined, error: Error): Promise<void> {
    for (const waiters of this.#waiters.values()) for (const waiter of waiters) waiter.cancel(error);
    const held = [...this.#held];
    this.#held.clear();
    if (client !== undefined) await Promise.all(held.map((release) => release(client)));
  }
}
