/**
 * Every failure cachegraph reports is an instance of one class below. Each class has a
 * stable `code` (safe to switch on), data fields naming the culprit (option, cache, key,
 * file) and, when another error caused it, the standard `cause`.
 *
 * Messages never contain cache *values*: they may be secrets. Keys are shown, shortened.
 *
 * @module
 */

/** The stable codes carried by {@link CacheGraphError.code}. */
export type ErrorCode =
  | 'E_INVALID_OPTION'
  | 'E_INVALID_NAME'
  | 'E_INVALID_CONTENTS'
  | 'E_MANAGER_CONFLICT'
  | 'E_UNKNOWN_CACHE'
  | 'E_CACHE_EXISTS'
  | 'E_DEPENDENCY_CYCLE'
  | 'E_HOOK_FAILED'
  | 'E_HOOK_TIMEOUT'
  | 'E_UNSERIALIZABLE'
  | 'E_CORRUPT_FILE'
  | 'E_UNSUPPORTED_FORMAT'
  | 'E_STORE_IO'
  | 'E_SAVE_FAILED'
  | 'E_LOCKED'
  | 'E_MEMO_KEY'
  | 'E_MEMO_RECURSION'
  | 'E_CLOSED'
  | 'E_STORE_UNAVAILABLE';

/**
 * Shortens a key for an error message: keys are data, and data can be long.
 *
 * @example
 * describeKey('k'.repeat(100)); // '"kkk…' cut at 80 characters
 */
export function describeKey(key: unknown): string {
  let text: string;
  if (typeof key === 'string') text = JSON.stringify(key);
  else if (typeof key === 'bigint') text = `${key}n`;
  else if (typeof key === 'symbol') text = key.toString();
  else if (key === null || typeof key !== 'object') text = String(key);
  else text = `[${Object.prototype.toString.call(key).slice(8, -1)}]`;
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * Base class of every cachegraph error.
 *
 * @example
 * try { manager.getCache('nope'); }
 * catch (err) { if (err instanceof CacheGraphError && err.code === 'E_UNKNOWN_CACHE') {} }
 */
export class CacheGraphError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;

  /**
   * @param code - the stable code
   * @param message - a sentence naming the culprit
   * @param options - `cause`, when another error caused this one
   */
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * An option failed validation. `option` is its dotted path (`dependsOn.2`).
 *
 * @example
 * new CacheManager({ nmae: 'x' } as never); // InvalidOptionError: E_INVALID_OPTION, option 'nmae'
 */
export class InvalidOptionError extends CacheGraphError {
  /** Dotted path of the offending option, `''` for the object itself. */
  readonly option: string;
  /** The cache the options were for, when they were cache options. */
  readonly cacheName: string | undefined;

  /**
   * @param option - dotted path of the option
   * @param message - what is wrong with it
   * @param cacheName - the cache, for cache options
   */
  constructor(option: string, message: string, cacheName?: string, options?: { cause?: unknown }) {
    const where = cacheName === undefined ? '' : ` of cache ${JSON.stringify(cacheName)}`;
    super('E_INVALID_OPTION', `Invalid option ${option === '' ? '(root)' : `'${option}'`}${where}: ${message}`, options);
    this.option = option;
    this.cacheName = cacheName;
  }
}

/**
 * A cache name cannot be used: empty, not a string, too long, or holding control characters.
 *
 * @example
 * await manager.registerCache(''); // InvalidNameError: E_INVALID_NAME
 */
export class InvalidNameError extends CacheGraphError {
  /** The rejected name, as given. */
  readonly cacheName: unknown;

  /**
   * @param cacheName - the rejected name
   * @param reason - why it is rejected
   */
  constructor(cacheName: unknown, reason: string) {
    super('E_INVALID_NAME', `Invalid cache name ${describeKey(cacheName)}: ${reason}`);
    this.cacheName = cacheName;
  }
}

/**
 * Contents given by a hook or the `contents` option are neither an iterable of `[key, value]`
 * pairs nor a plain object.
 *
 * @example
 * await manager.registerCache('a', { builder: () => 42 as never }); // E_INVALID_CONTENTS
 */
export class InvalidContentsError extends CacheGraphError {
  /** The cache the contents were for. */
  readonly cacheName: string;
  /** Where they came from: a hook name or `'contents'`. */
  readonly source: string;

  /**
   * @param cacheName - the cache
   * @param source - hook name or `'contents'`
   * @param reason - what is wrong
   */
  constructor(cacheName: string, source: string, reason: string) {
    super('E_INVALID_CONTENTS', `Invalid contents from ${source} of cache ${JSON.stringify(cacheName)}: ${reason}`);
    this.cacheName = cacheName;
    this.source = source;
  }
}

/**
 * `getCacheManager(name, options)` was called again for a name with different options.
 *
 * @example
 * getCacheManager('app', { dir: 'a' }); getCacheManager('app', { dir: 'b' }); // E_MANAGER_CONFLICT
 */
export class ManagerConflictError extends CacheGraphError {
  /** The manager's name. */
  readonly managerName: string;
  /** The options whose values differ. */
  readonly options: readonly string[];

  /**
   * @param managerName - name of the existing manager
   * @param options - the differing option names
   */
  constructor(managerName: string, options: readonly string[]) {
    super(
      'E_MANAGER_CONFLICT',
      `A cache manager named ${JSON.stringify(managerName)} already exists with different options (${options.join(', ')})`,
    );
    this.managerName = managerName;
    this.options = options;
  }
}

/**
 * No cache is registered under that name.
 *
 * @example
 * manager.getCache('missing'); // UnknownCacheError: E_UNKNOWN_CACHE
 */
export class UnknownCacheError extends CacheGraphError {
  /** The name looked up. */
  readonly cacheName: string;

  /** @param cacheName - the name looked up */
  constructor(cacheName: string) {
    super('E_UNKNOWN_CACHE', `No cache named ${JSON.stringify(cacheName)} is registered`);
    this.cacheName = cacheName;
  }
}

/**
 * A cache with that name is already registered (or being registered).
 *
 * @example
 * await manager.registerCache('a'); await manager.registerCache('a'); // E_CACHE_EXISTS
 */
export class CacheExistsError extends CacheGraphError {
  /** The name registered twice. */
  readonly cacheName: string;

  /** @param cacheName - the name registered twice */
  constructor(cacheName: string) {
    super('E_CACHE_EXISTS', `A cache named ${JSON.stringify(cacheName)} is already registered`);
    this.cacheName = cacheName;
  }
}

/**
 * Declaring a dependency would close a cycle. `cyclePath` starts and ends with the same cache,
 * following dependency links downstream (`['a', 'b', 'a']`: b depends on a, a on b).
 *
 * @example
 * manager.registerDependentCache('a', 'b'); manager.registerDependentCache('b', 'a'); // E_DEPENDENCY_CYCLE
 */
export class DependencyCycleError extends CacheGraphError {
  /** The cycle, first element repeated at the end. */
  readonly cyclePath: readonly string[];

  /** @param cyclePath - the cycle, first element repeated at the end */
  constructor(cyclePath: readonly string[]) {
    super('E_DEPENDENCY_CYCLE', `Dependency cycle: ${cyclePath.map((n) => JSON.stringify(n)).join(' -> ')}`);
    this.cyclePath = cyclePath;
  }
}

/** The hooks a cache can have. */
export type HookName = 'loader' | 'saver' | 'builder' | 'validator' | 'deleter';

/**
 * A hook threw or rejected. The original error is `cause`.
 *
 * @example
 * await manager.registerCache('a', { builder: () => { throw new Error('db down'); } }); // E_HOOK_FAILED
 */
export class HookError extends CacheGraphError {
  /** Which hook failed. */
  readonly hook: HookName;
  /** The cache it belongs to. */
  readonly cacheName: string;

  /**
   * @param hook - the hook
   * @param cacheName - its cache
   * @param cause - what it threw
   */
  constructor(hook: HookName, cacheName: string, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super('E_HOOK_FAILED', `The ${hook} of cache ${JSON.stringify(cacheName)} failed: ${detail}`, { cause });
    this.hook = hook;
    this.cacheName = cacheName;
  }
}

/**
 * A hook did not settle within `hookTimeout`; its `signal` was aborted.
 *
 * @example
 * new CacheManager({ hookTimeout: 5_000 }); // a builder still running after 5 s fails with E_HOOK_TIMEOUT
 */
export class HookTimeoutError extends CacheGraphError {
  /** Which hook timed out. */
  readonly hook: HookName;
  /** The cache it belongs to. */
  readonly cacheName: string;
  /** The limit, in milliseconds. */
  readonly timeoutMs: number;

  /**
   * @param hook - the hook
   * @param cacheName - its cache
   * @param timeoutMs - the limit that passed
   */
  constructor(hook: HookName, cacheName: string, timeoutMs: number) {
    super('E_HOOK_TIMEOUT', `The ${hook} of cache ${JSON.stringify(cacheName)} did not finish within ${timeoutMs} ms`);
    this.hook = hook;
    this.cacheName = cacheName;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A key or value cannot be encoded by the cache's codec. Raised by `set()` before anything
 * changes, or by a save that found a value mutated after `set()`.
 *
 * @example
 * cache.set('k', () => 1); // UnserializableError: E_UNSERIALIZABLE, key 'k'
 */
export class UnserializableError extends CacheGraphError {
  /** The cache. */
  readonly cacheName: string;
  /** The key whose entry cannot be encoded. */
  readonly key: unknown;
  /** Path inside the value (`.items[3]`), `''` for the value itself, `'(key)'` for the key. */
  readonly path: string;
  /** The codec that refused it. */
  readonly codec: string;

  /**
   * @param cacheName - the cache
   * @param key - the key of the entry
   * @param codec - the codec's name
   * @param path - where inside the entry
   * @param reason - what cannot be encoded
   */
  constructor(cacheName: string, key: unknown, codec: string, path: string, reason: string, options?: { cause?: unknown }) {
    const where = path === '' ? 'value' : path === '(key)' ? 'key' : `value at ${path}`;
    super(
      'E_UNSERIALIZABLE',
      `Cache ${JSON.stringify(cacheName)}, key ${describeKey(key)}: the ${codec} codec cannot encode the ${where} (${reason})`,
      options,
    );
    this.cacheName = cacheName;
    this.key = key;
    this.path = path;
    this.codec = codec;
  }
}

/**
 * A persisted file (or stored blob) failed its checks: bad magic, bad length, bad checksum,
 * truncated. Never loaded, never overwritten silently.
 *
 * @example
 * await manager.registerCache('users'); // CorruptFileError: E_CORRUPT_FILE, path '/…/users.cgc'
 */
export class CorruptFileError extends CacheGraphError {
  /** The file (or store location) that is damaged. */
  readonly path: string;
  /** Byte offset where the damage was found, when known. */
  readonly offset: number | undefined;
  /** The cache the file belongs to, when known. */
  readonly cacheName: string | undefined;

  /**
   * @param path - the damaged file
   * @param reason - what check failed
   * @param details - offset, cache name and cause when known
   */
  constructor(path: string, reason: string, details: { offset?: number; cacheName?: string; cause?: unknown } = {}) {
    const at = details.offset === undefined ? '' : ` at byte ${details.offset}`;
    super('E_CORRUPT_FILE', `Corrupt cache file ${path}${at}: ${reason}`, details.cause === undefined ? {} : { cause: details.cause });
    this.path = path;
    this.offset = details.offset;
    this.cacheName = details.cacheName;
  }
}

/**
 * A persisted file was written by a newer cachegraph format, or with a codec this process
 * does not have.
 *
 * @example
 * await manager.registerCache('users'); // UnsupportedFormatError: E_UNSUPPORTED_FORMAT, version 9
 */
export class UnsupportedFormatError extends CacheGraphError {
  /** The file. */
  readonly path: string;
  /** What the file declares (format version or codec name). */
  readonly found: string;

  /**
   * @param path - the file
   * @param found - the declared version or codec
   * @param reason - why it cannot be read
   */
  constructor(path: string, found: string, reason: string) {
    super('E_UNSUPPORTED_FORMAT', `Cannot read cache file ${path}: ${reason} (found ${found})`);
    this.path = path;
    this.found = found;
  }
}

/**
 * A storage operation failed at the operating-system level (ENOSPC, EACCES, EIO, …).
 * The previous persisted state is intact; `cause` is the system error.
 *
 * @example
 * await manager.save('users'); // StoreIOError: E_STORE_IO, op 'write', path '/…/users.cgc'
 */
export class StoreIOError extends CacheGraphError {
  /** What was being done: `'write'`, `'fsync'`, `'rename'`, `'read'`, `'delete'`, … */
  readonly op: string;
  /** The file or location involved. */
  readonly path: string;
  /** The system error code (`ENOSPC`), when there is one. */
  readonly syscallCode: string | undefined;

  /**
   * @param op - the operation
   * @param path - the file
   * @param cause - the system error
   */
  constructor(op: string, path: string, cause: unknown) {
    const sys = (cause as NodeJS.ErrnoException | undefined)?.code;
    const detail = cause instanceof Error ? cause.message : String(cause);
    super('E_STORE_IO', `Store ${op} failed for ${path}: ${detail}`, { cause });
    this.op = op;
    this.path = path;
    this.syscallCode = sys;
  }
}

/**
 * One or more saves failed during `saveAll()` or `close()`. Each failure is in `errors`;
 * `cause` is the first. Caches whose save failed keep their changes.
 *
 * @example
 * await manager.close(); // SaveFailedError: E_SAVE_FAILED, cacheNames ['users']
 */
export class SaveFailedError extends CacheGraphError {
  /** The caches whose save failed. */
  readonly cacheNames: readonly string[];
  /** The individual errors, in the order of `cacheNames`. */
  readonly errors: readonly unknown[];

  /**
   * @param cacheNames - the failed caches
   * @param errors - their errors
   */
  constructor(cacheNames: readonly string[], errors: readonly unknown[]) {
    const first = errors[0];
    const detail = first instanceof Error ? first.message : String(first);
    super('E_SAVE_FAILED', `Saving ${cacheNames.map((n) => JSON.stringify(n)).join(', ')} failed: ${detail}`, {
      cause: first,
    });
    this.cacheNames = cacheNames;
    this.errors = errors;
  }
}

/**
 * Another live process holds the writer lock of a store directory (and `lockTimeout`, if
 * any, passed while waiting for it). The lock's owner is described, never its secrets.
 *
 * @example
 * new FileStore({ dir }); await store.save(...); // in a second process: LockedError, E_LOCKED
 */
export class LockedError extends CacheGraphError {
  /** The lock file. */
  readonly path: string;
  /** Process id of the owner, as recorded in the lock. */
  readonly ownerPid: number | undefined;
  /** Host name of the owner, as recorded in the lock. */
  readonly ownerHost: string | undefined;

  /**
   * @param path - the lock file
   * @param owner - what the lock records about its owner
   */
  constructor(path: string, owner: { pid?: number; host?: string } = {}) {
    const who = owner.pid === undefined ? 'another process' : `process ${owner.pid} on ${owner.host ?? 'an unknown host'}`;
    super('E_LOCKED', `The store at ${path} is locked by ${who}`);
    this.path = path;
    this.ownerPid = owner.pid;
    this.ownerHost = owner.host;
  }
}

/**
 * The arguments of a memoized call cannot be turned into a stable key: a function, an
 * unregistered symbol, a class instance without a `key` function, a cycle, ... `path`
 * names the culprit (`args[1].user`).
 *
 * @example
 * hashArgs([new User()]); // MemoKeyError: E_MEMO_KEY, path 'args[0]'
 */
export class MemoKeyError extends CacheGraphError {
  /** Where: `args` and a path into it, or `identity.<field>`. */
  readonly path: string;
  /** What is there: `'function'`, `'class instance User ...'`, `'cycle (...)'`, ... */
  readonly reason: string;

  /**
   * @param path - where the culprit is
   * @param reason - what it is and, when useful, what to do
   * @param options - `cause`, when reading the value threw
   */
  constructor(path: string, reason: string, options?: { cause?: unknown }) {
    super('E_MEMO_KEY', `Cannot build a memoization key from ${path}: ${reason}`, options);
    this.path = path;
    this.reason = reason;
  }
}

/**
 * A memoized function called itself with the same arguments while computing them: with
 * single flight it would wait for itself forever, so the inner call fails instead.
 *
 * @example
 * const f = manager.memoize(async (n: number): Promise<number> => f(n), { name: 'f' });
 * await f(1); // MemoRecursionError: E_MEMO_RECURSION
 */
export class MemoRecursionError extends CacheGraphError {
  /** The cache holding the function's results. */
  readonly cacheName: string;
  /** The function's name. */
  readonly functionName: string;

  /**
   * @param cacheName - the cache
   * @param functionName - the function
   * @example
   * new MemoRecursionError('memo', 'fib');
   */
  constructor(cacheName: string, functionName: string) {
    super('E_MEMO_RECURSION', `Memoized function ${JSON.stringify(functionName)} (cache ${JSON.stringify(cacheName)}) called itself with the same arguments while computing them`);
    this.cacheName = cacheName;
    this.functionName = functionName;
  }
}

/**
 * The manager is closed, or the cache was deregistered, and cannot take this call.
 *
 * @example
 * await manager.close(); await manager.registerCache('a'); // ClosedError: E_CLOSED
 */
export class ClosedError extends CacheGraphError {
  /** What is closed: the manager's name or `cache <name>`. */
  readonly target: string;

  /** @param target - what is closed */
  constructor(target: string) {
    super('E_CLOSED', `${target} is closed`);
    this.target = target;
  }
}

/**
 * The store's server cannot be reached: the connection was refused, timed out, or is down
 * while the client reconnects. A write that failed this way may or may not have been applied
 * (the connection can drop after the server ran it); the caller keeps its changes and retries.
 *
 * @example
 * await new RedisStore({ url: 'redis://127.0.0.1:1' }).has('users'); // StoreUnavailableError: E_STORE_UNAVAILABLE
 */
export class StoreUnavailableError extends CacheGraphError {
  /** The server, without credentials (`redis://127.0.0.1:6379/0`). */
  readonly endpoint: string;
  /** What was being done: `'connect'`, `'load'`, `'save'`, … */
  readonly op: string;

  /**
   * @param endpoint - the server, without credentials
   * @param op - the operation
   * @param reason - why it failed
   * @param options - `cause`, the client's error
   * @example
   * new StoreUnavailableError('redis://127.0.0.1:6379/0', 'connect', 'connect ECONNREFUSED 127.0.0.1:6379');
   */
  constructor(endpoint: string, op: string, reason: string, options?: { cause?: unknown }) {
    super('E_STORE_UNAVAILABLE', `Store ${endpoint} is unavailable (${op}): ${reason}`, options);
    this.endpoint = endpoint;
    this.op = op;
  }
}
