/**
 * Opening the store a CLI command works on: a FileStore directory (`--dir`) or a RedisStore
 * (`--redis URL`), and the errors and exit codes every command shares.
 *
 * @module
 */

import { InvalidOptionError, LockedError, StoreUnavailableError } from '../errors.js';
import { FileStore } from '../store/file.js';
import { RedisStore } from '../store/redis.js';
import type { CacheStore } from '../store/types.js';

/**
 * The exit codes of `cachegraph`.
 *
 * @example
 * process.exitCode = EXIT.usage;
 */
export const EXIT = Object.freeze({
  /** Done. */
  ok: 0,
  /** Damage found (`verify`), an unknown cache, or an operation failed. */
  failure: 1,
  /** Bad command line: unknown command or option, missing argument. */
  usage: 2,
  /** The store cannot be used now: Redis unreachable, or the directory locked by a running writer. */
  unavailable: 3,
});

/**
 * A mistake on the command line (exit code 2).
 *
 * @example
 * throw new UsageError('invalidate needs a cache name');
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A failure already explained to the user, with its exit code.
 *
 * @example
 * throw new CommandFailure('2 caches are damaged', EXIT.failure);
 */
export class CommandFailure extends Error {
  override readonly name = 'CommandFailure';
  /** The exit code. */
  readonly exitCode: number;

  /**
   * @param message - what to print
   * @param exitCode - the process's exit code
   */
  constructor(message: string, exitCode: number = EXIT.failure) {
    super(message);
    this.exitCode = exitCode;
  }
}

/**
 * Where the store is, from the global options.
 *
 * @example
 * const target: StoreTarget = { dir: './.cache' };
 */
export interface StoreTarget {
  /** A FileStore directory. */
  readonly dir?: string | undefined;
  /** A Redis URL (may hold a password: never printed). */
  readonly redis?: string | undefined;
  /** RedisStore namespace. */
  readonly namespace?: string | undefined;
  /** RedisStore key prefix. */
  readonly keyPrefix?: string | undefined;
  /** How long a writing command waits for a FileStore directory's lock, ms. */
  readonly waitMs?: number | undefined;
}

/**
 * Opens the store: read-only for commands that only read a directory (they never take
 * its lock, so they work beside a running application), writable otherwise.
 *
 * @throws {UsageError} neither or both of `dir` and `redis`
 * @throws {InvalidOptionError} a bad URL or namespace
 * @example
 * const store = openStore({ dir: '.cache' }, { write: false });
 */
export function openStore(target: StoreTarget, { write }: { readonly write: boolean }): CacheStore {
  if ((target.dir === undefined) === (target.redis === undefined)) {
    throw new UsageError(
      target.dir === undefined
        ? 'no store given: pass --dir DIR (a cache directory) or --redis URL (or set CACHEGRAPH_DIR / CACHEGRAPH_REDIS)'
        : 'give either --dir or --redis, not both',
    );
  }
  if (target.redis !== undefined) {
    return new RedisStore({
      url: target.redis,
      ...(target.namespace === undefined ? {} : { namespace: target.namespace }),
      ...(target.keyPrefix === undefined ? {} : { keyPrefix: target.keyPrefix }),
      connectTimeoutMs: 3000,
      retry: { attempts: 1 },
    });
  }
  if (target.namespace !== undefined || target.keyPrefix !== undefined) throw new UsageError('--namespace and --key-prefix apply to --redis only');
  return new FileStore({ dir: target.dir as string, readOnly: !write, lockTimeout: target.waitMs ?? 0, compaction: false });
}

/**
 * Where the store is, for messages: the directory, or the Redis endpoint without credentials.
 *
 * @example
 * describeTarget(store); // 'redis://127.0.0.1:6379 (namespace default)'
 */
export function describeTarget(store: CacheStore, target: StoreTarget): string {
  if (store instanceof RedisStore) return `${store.endpoint} (namespace ${target.namespace ?? 'default'})`;
  if (store instanceof FileStore) return store.dir;
  return store.kind;
}

/**
 * The exit code and message for an error thrown by a command.
 *
 * @example
 * const { code, message } = explain(error);
 */
export function explain(error: unknown): { code: number; message: string } {
  if (error instanceof CommandFailure) return { code: error.exitCode, message: error.message };
  if (error instanceof UsageError) return { code: EXIT.usage, message: `${error.message} (see cachegraph --help)` };
  if (error instanceof InvalidOptionError) return { code: EXIT.usage, message: error.message };
  if (error instanceof LockedError) {
    return {
      code: EXIT.unavailable,
      message: `${error.message}: a running application writes this directory. Stop it, run the command through its admin service, or pass --wait MS.`,
    };
  }
  if (error instanceof StoreUnavailableError) return { code: EXIT.unavailable, message: error.message };
  return { code: EXIT.failure, message: error instanceof Error ? error.message : String(error) };
}
