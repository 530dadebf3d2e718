/**
 * Locks on single keys over lock files, for single flight across processes sharing a
 * {@link FileStore} ({@link CacheStore.lockKey}).
 *
 * @module
 */
import { hash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { LockedError, StoreIOError } from '../errors.js';
import type { TimerProvider } from '../sync/clock.js';
import { DirectoryLock } from './lock.js';
import { io } from './log/fsio.js';
import type { KeyLock, KeyLockResult, LockKeyOptions } from './types.js';

/** The folder of a file store holding one lock folder per key being computed. */
export const FLIGHTS_DIR = '.flights';

/** How often a waiter looks at a file lock again, ms. */
const FILE_POLL_MS = 20;

/** Attempts when the lock folder vanishes under us (its previous holder removed it). */
const VANISHED_ATTEMPTS = 8;

/** The lock file inside a key's lock folder. */
const KEY_LOCK_FILE = 'LOCK';

/**
 * Takes the lock on `key` of cache `name` under a file store's `root`: the folder
 * `<root>/.flights/<hash>/` holding a {@link DirectoryLock} (owner pid and start time, so a
 * dead holder's lock is taken over at once). A live holder is waited for up to `waitMs`.
 * A lock older than `ttlMs` is presumed abandoned (its holder hung, or died on another host
 * where its pid cannot be checked) and removed. Releasing removes the lock file and then its
 * folder. Lock files are not fsynced: a key lock need not outlive the machine.
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
  const flights = path.join(root, FLIGHTS_DIR);
  const dir = path.join(flights, hash('sha256', `${name}\0${key}`, 'hex').slice(0, 40));
  await io('mkdir', flights, () => fs.mkdir(flights, { recursive: true, mode: 0o700 }));
  let waited = false;
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    // mkdir (here and in DirectoryLock.acquire) goes through a symbolic link planted at either
    // folder: refuse one rather than write lock files wherever it points.
    await refuseLink(flights);
    await refuseLink(dir);
    try {
      // First without waiting, to learn whether someone else had it.
      const lock = await DirectoryLock.acquire(dir, { timeoutMs: waited ? options.waitMs : 0, pollMs: FILE_POLL_MS, timers, durable: false });
      return { lock: directoryKeyLock(lock, dir), waited };
    } catch (error) {
      if (error instanceof LockedError) {
        // Held for longer than any holder may: remove it (at worst two processes compute).
        if (await removeIfOlderThan(path.join(dir, KEY_LOCK_FILE), options.ttlMs)) continue;
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

/** Throws StoreIOError (ELOOP) when `folder` is anything but a real directory or absent. */
async function refuseLink(folder: string): Promise<void> {
  const stat = await fs.lstat(folder).catch(() => undefined);
  if (stat === undefined || stat.isDirectory()) return;
  const what = stat.isSymbolicLink() ? 'a symbolic link' : 'not a directory';
  throw new StoreIOError('lock', folder, Object.assign(new Error(`${what} where the key lock folder belongs; not followed`), { code: 'ELOOP' }));
}

/** Removes `file` if its last change is more than `ageMs` ago; whether it did. */
async function removeIfOlderThan(file: string, ageMs: number): Promise<boolean> {
  const stat = await fs.stat(file).catch(() => undefined);
  if (stat === undefined || Date.now() - stat.mtimeMs <= ageMs) return false;
  return fs.unlink(file).then(
    () => true,
    () => false,
  );
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
