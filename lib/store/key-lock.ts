/**
 * Locks on single keys, for single flight across processes ({@link CacheStore.lockKey}):
 * one implementation over lock files for {@link FileStore}, one in memory for
 * {@link MemoryStore} (stores shared by several managers of one process).
 *
 * @module
 */
import { hash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { LockedError, StoreIOError } from '../errors.js';
import type { TimerProvider } from '../sync/clock.js';
import { DirectoryLock } from './lock.js';
import type { KeyLock, KeyLockResult, LockKeyOptions } from './types.js';

/** The folder of a file store holding one lock folder per key being computed. */
export const FLIGHTS_DIR = '.flights';

/** How often a waiter looks at a file lock again, ms. */
const FILE_POLL_MS = 20;

/** Attempts when the lock folder vanishes under us (its previous holder removed it). */
const VANISHED_ATTEMPTS = 8;

/**
 * Takes the lock on `key` of cache `name` under a file store's `root`: the folder
 * `<root>/.flights/<hash>/` holding a {@link DirectoryLock} (owner pid and start time, so a
 * dead holder's lock is taken over at once). A live holder is waited for up to `waitMs`.
 * Releasing removes the lock file and then its folder.
 *
 * @example
 * const { lock } = await lockKeyInDirectory(dir, 'memo', key, { waitMs: 60_000, ttlMs: 600_000 }, systemTimers);
 * try { ... } finally { await lock?.release(); }
 */
export async function lockKeyInDirectory(
  root: string,
  name: string,
  key: string,
  options: LockKeyOptions,
  timers: TimerProvider,
): Promise<KeyLockResult> {
  const dir = path.join(root, FLIGHTS_DIR, hash('sha256', `${name}\0${key}`, 'hex').slice(0, 40));
  let waited = false;
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      // First without waiting, to learn whether someone else had it.
      const lock = await DirectoryLock.acquire(dir, { timeoutMs: waited ? options.waitMs : 0, pollMs: FILE_POLL_MS, timers });
      return { lock: directoryKeyLock(lock, dir), waited };
    } catch (error) {
      if (error instanceof LockedError) {
        if (waited) return { lock: undefined, waited };
        waited = true;
        continue;
      }
      // The previous holder removed the folder between our mkdir and our create: try again.
      if (error instanceof StoreIOError && error.syscallCode === 'ENOENT' && attempt < VANISHED_ATTEMPTS) continue;
      throw error;
    }
  }
}

function directoryKeyLock(lock: DirectoryLock, dir: string): KeyLock {
  let released: Promise<void> | undefined;
  return {
    release: () =>
      (released ??= (async () => {
        await lock.release().catch(() => undefined);
        // Fails harmlessly (ENOTEMPTY) when a waiter has already created its lock inside.
        await fs.rmdir(dir).catch(() => undefined);
      })()),
  };
}

interface Held {
  readonly token: string;
  readonly released: Promise<void>;
  readonly wake: () => void;
  readonly expiry: { clear(): void };
}

/**
 * Key locks within one process, for stores that live in memory. A holder that never
 * releases loses the lock after `ttlMs`.
 *
 * @example
 * const locks = new InProcessKeyLocks(systemTimers);
 * const { lock } = await locks.lock('memo', key, { waitMs: 1000, ttlMs: 60_000 });
 */
export class InProcessKeyLocks {
  readonly #held = new Map<string, Held>();
  readonly #timers: TimerProvider;

  /**
   * @param timers - for `waitMs` and `ttlMs`
   * @example
   * new InProcessKeyLocks(systemTimers);
   */
  constructor(timers: TimerProvider) {
    this.#timers = timers;
  }

  /**
   * Takes the lock on `key` of `name`, waiting up to `waitMs` for its holder.
   *
   * @example
   * const { lock, waited } = await locks.lock('memo', 'k', { waitMs: 100, ttlMs: 1000 });
   */
  async lock(name: string, key: string, options: LockKeyOptions): Promise<KeyLockResult> {
    const id = `${name}\0${key}`;
    let waited = false;
    let deadline: Promise<'timeout'> | undefined;
    let timer: ReturnType<TimerProvider['setTimeout']> | undefined;
    try {
      for (;;) {
        options.signal?.throwIfAborted();
        const held = this.#held.get(id);
        if (held === undefined) return { lock: this.#take(id, options.ttlMs), waited };
        waited = true;
        deadline ??= new Promise((resolve) => {
          timer = this.#timers.setTimeout(() => resolve('timeout'), options.waitMs);
        });
        if ((await Promise.race([held.released, deadline])) === 'timeout') return { lock: undefined, waited };
      }
    } finally {
      if (timer !== undefined) this.#timers.clearTimeout(timer);
    }
  }

  #take(id: string, ttlMs: number): KeyLock {
    const token = randomUUID();
    let wake!: () => void;
    const released = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const drop = (): void => {
      const held = this.#held.get(id);
      if (held?.token !== token) return;
      this.#held.delete(id);
      held.expiry.clear();
      held.wake();
    };
    const handle = this.#timers.setTimeout(drop, ttlMs);
    this.#held.set(id, { token, released, wake, expiry: { clear: () => this.#timers.clearTimeout(handle) } });
    return {
      release: async () => {
        drop();
      },
    };
  }
}
