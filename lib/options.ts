/**
 * Options: one zod schema per options object, and one function per object that turns raw
 * input into a frozen, resolved internal form. Every error names the option.
 *
 * @module
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { Codec } from './codec/types.js';
import { InvalidNameError, InvalidOptionError } from './errors.js';
import type { CacheHooks } from './hooks.js';
import type { CacheStore } from './store/types.js';
import { autoSyncSchema, resolveAutoSync, type AutoSyncOption, type ResolvedAutoSync } from './sync/autosync.js';
import type { Clock, TimerProvider } from './sync/clock.js';

/** A duration: milliseconds, or a string such as `'500ms'`, `'10s'`, `'10m'`, `'1h'`, `'2d'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
/** Longest accepted duration: far beyond any sane TTL, short of losing integer precision. */
const MAX_DURATION_MS = 100 * 365 * UNIT_MS.d;

/**
 * Parses a {@link Duration} to milliseconds; `undefined` when it is not a valid positive duration.
 *
 * @example
 * parseDuration('10m'); // 600000
 */
export function parseDuration(input: unknown): number | undefined {
  let ms: number;
  if (typeof input === 'number') ms = input;
  else if (typeof input === 'string') {
    const match = DURATION_RE.exec(input.trim());
    if (match === null) return undefined;
    ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  } else return undefined;
  if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_DURATION_MS) return undefined;
  return Math.ceil(ms);
}

const durationSchema = z.custom<Duration>((v) => parseDuration(v) !== undefined, {
  message: "must be a positive number of milliseconds or a string like '500ms', '10s', '10m', '1h', '1d' (at most 100 years)",
});

/** Longest cache name accepted, in UTF-16 code units. Stores encode long names safely. */
export const MAX_CACHE_NAME_LENGTH = 1_000;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * Checks a cache (or manager) name: a non-empty, well-formed string of at most
 * {@link MAX_CACHE_NAME_LENGTH} characters without control characters. Anything else
 * (`'../x'`, `'.'`, `'CON'`, Unicode) is a valid name: stores encode it safely.
 *
 * @throws InvalidNameError naming the reason
 * @example
 * validateCacheName('users'); // ok
 * validateCacheName('a\u0000b'); // throws E_INVALID_NAME
 */
export function validateCacheName(name: unknown): asserts name is string {
  if (typeof name !== 'string') throw new InvalidNameError(name, `must be a string, got ${typeof name}`);
  if (name.length === 0) throw new InvalidNameError(name, 'must not be empty');
  if (name.length > MAX_CACHE_NAME_LENGTH)
    throw new InvalidNameError(name, `must be at most ${MAX_CACHE_NAME_LENGTH} characters, got ${name.length}`);
  if (CONTROL_RE.test(name)) throw new InvalidNameError(name, 'must not contain control characters (NUL, newline, ...)');
  if (!name.isWellFormed()) throw new InvalidNameError(name, 'must be well-formed Unicode (no lone surrogates)');
}

const nameSchema = z.string().superRefine((value, ctx) => {
  try {
    validateCacheName(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const fn = (what: string) =>
  z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', { message: `must be a function (${what})` });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

const storeSchema = z.custom<CacheStore>(
  (v) =>
    isObject(v) &&
    ['load', 'save', 'delete', 'has', 'list', 'quarantine', 'locate', 'close'].every((m) => typeof v[m] === 'function'),
  { message: 'must be a CacheStore (FileStore, MemoryStore, RedisStore, or an object with the CacheStore methods)' },
);
const codecSchema = z.union([
  z.enum(['v8', 'json']),
  z.custom<Codec>(
    (v) => isObject(v) && typeof v['name'] === 'string' && v['name'] !== '' && typeof v['encode'] === 'function' && typeof v['decode'] === 'function',
    { message: "must be 'v8', 'json' or a Codec { name, encode, decode }" },
  ),
]);
const clockSchema = z.custom<Clock>((v) => isObject(v) && typeof v['now'] === 'function', {
  message: 'must be a clock { now(): number }',
});
const timersSchema = z.custom<TimerProvider>(
  (v) => isObject(v) && typeof v['setTimeout'] === 'function' && typeof v['clearTimeout'] === 'function',
  { message: 'must be a timer provider { setTimeout(fn, ms), clearTimeout(handle) }' },
);

/** Schema of {@link CacheManagerOptions}. */
export const managerOptionsSchema = z.strictObject({
  /** Name of the manager; also the last segment of the default `dir`. @default 'default' */
  name: nameSchema.optional(),
  /** Root directory of the default FileStore. Ignored when `store` is given. @default `<os tmpdir>/cachegraph/<name>` */
  dir: z.string().min(1, { message: 'must be a non-empty path' }).optional(),
  /** Where caches are persisted. @default a FileStore in `dir` */
  store: storeSchema.optional(),
  /** How values are encoded. @default 'v8' */
  codec: codecSchema.optional(),
  /** What to do with a damaged persisted copy: fail loudly, or move it aside and rebuild. @default 'throw' */
  onCorrupt: z.enum(['throw', 'quarantine']).optional(),
  /** Wall-clock time source (entry expiry, timestamps). @default Date.now */
  clock: clockSchema.optional(),
  /** Timers, for hook timeouts. @default the global timers, looked up at call time */
  timers: timersSchema.optional(),
  /** Longest a hook may run before its signal is aborted and it fails with E_HOOK_TIMEOUT (ms or '30s'). @default no limit */
  hookTimeout: durationSchema.optional(),
  /** When caches are saved without being asked: Redis-style rules, or false. @default DEFAULT_AUTOSYNC_RULES */
  autoSync: autoSyncSchema.optional(),
  /** Whether to exchange invalidations and saves with other processes over the store's bus. @default true */
  bus: z.boolean({ message: 'must be a boolean' }).optional(),
});

/**
 * Options of `new CacheManager(options)`.
 *
 * @example
 * const options: CacheManagerOptions = { name: 'app', dir: './.cache', codec: 'v8', onCorrupt: 'quarantine' };
 */
export interface CacheManagerOptions {
  /** Name of the manager; also the last segment of the default `dir`. @default 'default' */
  name?: string;
  /** Root directory of the default FileStore. Ignored when `store` is given. @default `<os tmpdir>/cachegraph/<name>` */
  dir?: string;
  /** Where caches are persisted. @default a FileStore in `dir` */
  store?: CacheStore;
  /** How values are encoded. @default 'v8' */
  codec?: 'v8' | 'json' | Codec;
  /** What to do with a damaged persisted copy: fail loudly, or move it aside and rebuild. @default 'throw' */
  onCorrupt?: 'throw' | 'quarantine';
  /** Wall-clock time source (entry expiry, timestamps). @default Date.now */
  clock?: Clock;
  /** Timers, for hook timeouts. @default the global timers, looked up at call time */
  timers?: TimerProvider;
  /** Longest a hook may run before its signal is aborted and it fails with E_HOOK_TIMEOUT. @default no limit */
  hookTimeout?: Duration;
  /**
   * When caches are saved without being asked: `{ rules: [{ seconds, changes }, ...] }`
   * (Redis `save S C` semantics, see docs/autosync.md), or `false` to save only on `save`,
   * `saveAll`, `deregister` and `close`. @default `{60 s, 10 000}`, `{300 s, 10}`, `{900 s, 1}`
   */
  autoSync?: AutoSyncOption;
  /**
   * Whether to tell other processes sharing the store what this manager invalidates, saves
   * and deletes, and to apply what they tell it (see docs/redis.md). Only stores with
   * `publish`/`subscribe` carry a bus (RedisStore); with others this option changes
   * nothing. @default true
   */
  bus?: boolean;
}

/** {@link CacheManagerOptions} after validation and defaults. */
export interface ResolvedManagerOptions {
  readonly name: string;
  readonly dir: string;
  readonly store: CacheStore | undefined;
  readonly codec: 'v8' | 'json' | Codec;
  readonly onCorrupt: 'throw' | 'quarantine';
  readonly clock: Clock | undefined;
  readonly timers: TimerProvider | undefined;
  readonly hookTimeoutMs: number | undefined;
  readonly autoSync: ResolvedAutoSync;
  readonly bus: boolean;
}

/** Turns zod issues into one InvalidOptionError naming the first bad option. */
function toOptionError(error: z.ZodError, cacheName?: string): InvalidOptionError {
  const issue = error.issues[0];
  if (issue === undefined) return new InvalidOptionError('', error.message, cacheName);
  const base = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys;
    const where = base === '' ? '' : `${base}.`;
    return new InvalidOptionError(
      `${where}${keys[0] ?? ''}`,
      `unknown option${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${where}${k}'`).join(', ')}`,
      cacheName,
    );
  }
  if (issue.code === 'invalid_type' && issue.path.length === 0)
    return new InvalidOptionError('', 'options must be an object', cacheName);
  return new InvalidOptionError(base, issue.message, cacheName);
}

/**
 * Validates manager options and applies defaults.
 *
 * @throws InvalidOptionError naming the option
 * @example
 * resolveManagerOptions({ name: 'app' }).dir; // '/tmp/cachegraph/app'
 */
export function resolveManagerOptions(input: unknown): ResolvedManagerOptions {
  const parsed = managerOptionsSchema.safeParse(input ?? {});
  if (!parsed.success) throw toOptionError(parsed.error);
  const o = parsed.data;
  const name = o.name ?? 'default';
  return Object.freeze({
    name,
    // The default dir is per manager name, so two managers never share files by accident.
    dir: path.resolve(o.dir ?? path.join(os.tmpdir(), 'cachegraph', encodeURIComponent(name))),
    store: o.store,
    codec: o.codec ?? 'v8',
    onCorrupt: o.onCorrupt ?? 'throw',
    clock: o.clock,
    timers: o.timers,
    hookTimeoutMs: o.hookTimeout === undefined ? undefined : parseDuration(o.hookTimeout),
    autoSync: resolveAutoSync(o.autoSync),
    bus: o.bus ?? true,
  });
}

/** Schema of the `lock` option of memoize and of caches: `false`, or how to wait for another process. */
const memoLockSchema = z.union([
  z.literal(false),
  z.strictObject({
    /** How long to wait for another process computing the same key. @default '60s' */
    wait: durationSchema.optional(),
    /** The longest a lock is held before others may take it over. @default '10m' */
    ttl: durationSchema.optional(),
  }),
]);

/** Schema of {@link CacheOptions}. */
export const cacheOptionsSchema = z.strictObject({
  /** Whether the cache is loaded from and saved to the store. @default true */
  persistent: z.boolean({ message: 'must be a boolean' }).optional(),
  /** Initial contents: used instead of loading or building on registration. @default undefined */
  contents: z.unknown().optional(),
  /** Caches this one is derived from: invalidating any of them invalidates this one. @default [] */
  dependsOn: z.array(nameSchema, { message: 'must be an array of cache names' }).optional(),
  /** Custom loader hook. @default the store's persisted copy */
  loader: fn('loader(ctx)').optional(),
  /** Custom saver hook. @default the store */
  saver: fn('saver(contents, ctx)').optional(),
  /** Builder hook. @default builds an empty cache */
  builder: fn('builder(ctx)').optional(),
  /** Validator hook. @default accepts everything */
  validator: fn('validator(contents, ctx)').optional(),
  /** Custom deleter hook. @default deletes the store's copy */
  deleter: fn('deleter(ctx)').optional(),
  /** Most entries kept in memory; the least recently used are evicted beyond it. @default unbounded */
  maxEntries: z
    .number({ message: 'must be a positive integer' })
    .int({ message: 'must be a positive integer' })
    .positive({ message: 'must be a positive integer' })
    .max(2 ** 31, { message: 'must be at most 2^31' })
    .optional(),
  /** Default time-to-live of entries. @default entries never expire */
  ttl: durationSchema.optional(),
  /** AutoSync rules of this cache, or false. @default the manager's */
  autoSync: autoSyncSchema.optional(),
  /** Single flight of getOrBuild across processes. @default { wait: '60s', ttl: '10m' } on a store shared by writers (RedisStore), else false */
  lock: memoLockSchema.optional(),
});

/**
 * Options of `manager.registerCache(name, options)`.
 *
 * @example
 * await manager.registerCache<string, number>('scores', { dependsOn: ['users'], ttl: '10m', maxEntries: 10_000 });
 */
export interface CacheOptions<K = unknown, V = unknown> extends CacheHooks<K, V> {
  /** Whether the cache is loaded from and saved to the store. `false`: it writes nothing and takes no loader, saver or deleter. @default true */
  persistent?: boolean;
  /** Initial contents (pairs or a plain object), used instead of loading or building on registration. */
  contents?: Iterable<readonly [K, V]> | Readonly<Record<string, V>>;
  /** Caches this one is derived from; they need not be registered yet. @default [] */
  dependsOn?: readonly string[];
  /** Most entries kept in memory; the least recently used are evicted beyond it. @default unbounded */
  maxEntries?: number;
  /** Default time-to-live of entries (ms or '10m'); stored as an absolute expiry. @default never */
  ttl?: Duration;
  /** This cache's AutoSync rules, or `false` (never saved automatically). @default the manager's `autoSync` */
  autoSync?: AutoSyncOption;
  /**
   * Single flight of `getOrBuild` across processes: one process takes the store's lock on
   * the key, builds and saves the value at once; the others wait up to `wait` and read it.
   * Needs a persistent cache without a custom saver, on a store with key locks.
   * @default `{ wait: '60s', ttl: '10m' }` on a store that several processes write and
   * that has a bus (RedisStore); `false` otherwise (single flight per process)
   */
  lock?: false | { readonly wait?: Duration; readonly ttl?: Duration };
}

/** {@link CacheOptions} after validation and defaults. */
export interface ResolvedCacheOptions<K, V> {
  readonly persistent: boolean;
  readonly contents: CacheOptions<K, V>['contents'];
  readonly dependsOn: readonly string[];
  readonly hooks: Readonly<CacheHooks<K, V>>;
  readonly maxEntries: number;
  readonly ttlMs: number | undefined;
  /** The cache's own `autoSync` option, resolved against the manager's at registration. */
  readonly autoSync: AutoSyncOption | undefined;
  /** The `lock` option; `undefined`: the store decides (see {@link CacheOptions.lock}). */
  readonly lock: FlightLock | false | undefined;
}

/** How a flight waits for another process holding a key's lock, in ms. */
export interface FlightLock {
  readonly waitMs: number;
  readonly ttlMs: number;
}

/** The `lock` of memoize and of caches where it is on by default: wait 60 s, hold at most 10 min. */
export const DEFAULT_FLIGHT_LOCK: FlightLock = Object.freeze({ waitMs: 60_000, ttlMs: 600_000 });

/** Resolves a `lock` option (`{}` takes {@link DEFAULT_FLIGHT_LOCK}). */
function resolveLock(lock: false | { readonly wait?: Duration | undefined; readonly ttl?: Duration | undefined }): FlightLock | false {
  if (lock === false) return false;
  return Object.freeze({
    waitMs: (lock.wait === undefined ? undefined : parseDuration(lock.wait)) ?? DEFAULT_FLIGHT_LOCK.waitMs,
    ttlMs: (lock.ttl === undefined ? undefined : parseDuration(lock.ttl)) ?? DEFAULT_FLIGHT_LOCK.ttlMs,
  });
}

/**
 * Validates cache options and applies defaults.
 *
 * @throws InvalidOptionError naming the option and the cache
 * @example
 * resolveCacheOptions('users', { ttl: '1h' }).ttlMs; // 3600000
 */
export function resolveCacheOptions<K, V>(cacheName: string, input: unknown): ResolvedCacheOptions<K, V> {
  const parsed = cacheOptionsSchema.safeParse(input ?? {});
  if (!parsed.success) throw toOptionError(parsed.error, cacheName);
  const o = parsed.data as unknown as CacheOptions<K, V>;
  const persistent = o.persistent ?? true;
  if (!persistent) {
    // A non-persistent cache writes nothing; a saver, loader or deleter on it is a contradiction.
    for (const hook of ['loader', 'saver', 'deleter'] as const) {
      if (o[hook] !== undefined)
        throw new InvalidOptionError(hook, `cannot be used with persistent: false (the cache is never loaded, saved or deleted)`, cacheName);
    }
  }
  const hooks: CacheHooks<K, V> = {};
  if (o.loader) hooks.loader = o.loader;
  if (o.saver) hooks.saver = o.saver;
  if (o.builder) hooks.builder = o.builder;
  if (o.validator) hooks.validator = o.validator;
  if (o.deleter) hooks.deleter = o.deleter;
  return Object.freeze({
    persistent,
    contents: o.contents,
    dependsOn: Object.freeze([...new Set(o.dependsOn ?? [])]),
    hooks: Object.freeze(hooks),
    maxEntries: o.maxEntries ?? Number.POSITIVE_INFINITY,
    ttlMs: o.ttl === undefined ? undefined : parseDuration(o.ttl),
    autoSync: o.autoSync,
    lock: o.lock === undefined ? undefined : resolveLock(o.lock),
  });
}

/**
 * Parses a per-entry `ttl` given to `cache.set()`.
 *
 * @throws InvalidOptionError naming `ttl` and the cache
 * @internal used by the manager and caches; not exported from the package.
 */
export function resolveEntryTtl(cacheName: string, ttl: unknown): number {
  const ms = parseDuration(ttl);
  if (ms === undefined)
    throw new InvalidOptionError(
      'ttl',
      `must be a positive number of milliseconds or a string like '10s', got ${typeof ttl === 'string' ? JSON.stringify(ttl) : String(ttl)}`,
      cacheName,
    );
  return ms;
}

const cascadeOptionsSchema = z.strictObject({
  cascade: z.boolean({ message: 'must be a boolean' }).optional(),
});

/**
 * Validates the `{ cascade }` options of an operation and applies its default.
 *
 * @throws InvalidOptionError naming the option
 * @internal used by the manager; not exported from the package.
 */
export function resolveCascade(input: unknown, fallback: boolean): boolean {
  if (input === undefined) return fallback;
  const parsed = cascadeOptionsSchema.safeParse(input);
  if (!parsed.success) throw toOptionError(parsed.error);
  return parsed.data.cascade ?? fallback;
}

// ------------------------------------------------------------------ memoize and proxy

const positiveInt = (what: string) =>
  z
    .number({ message: `must be a positive integer (${what})` })
    .int({ message: `must be a positive integer (${what})` })
    .positive({ message: `must be a positive integer (${what})` })
    .max(2 ** 31, { message: 'must be at most 2^31' });


/** Schema of {@link MemoizeOptions}. */
export const memoizeOptionsSchema = z.strictObject({
  /** The cache holding the results; registered on first use. @default 'memo' */
  cache: nameSchema.optional(),
  /** The function's name in that cache. @default fn.name */
  name: z.string({ message: 'must be a string' }).min(1, { message: 'must not be empty' }).optional(),
  /** The function's version. @default a hash of fn.toString() */
  version: z.union([z.string(), z.number()], { message: 'must be a string or a number' }).optional(),
  /** Maps the arguments to what identifies the call. @default the arguments */
  key: fn('key(...args)').optional(),
  /** Time-to-live of each result. @default the cache's */
  ttl: durationSchema.optional(),
  /** Most results kept for this function (least recently used dropped beyond it). @default unbounded */
  maxEntries: positiveInt('maxEntries').optional(),
  /** Whether thrown errors are stored and re-thrown on a hit; or a predicate. @default false */
  cacheErrors: z.union([z.boolean(), fn('cacheErrors(error)')], { message: 'must be a boolean or a function (error) => boolean' }).optional(),
  /** Single flight across processes sharing the store. @default { wait: '60s', ttl: '10m' } when the store has locks */
  lock: memoLockSchema.optional(),
});

/**
 * Options of `manager.memoize(fn, options)`.
 *
 * @example
 * manager.memoize(fetchPrice, { cache: 'prices', ttl: '10m', maxEntries: 10_000, cacheErrors: true });
 */
export interface MemoizeOptions<A extends unknown[] = unknown[]> {
  /** The cache holding the results, registered (persistent, default options) on first use if it is not already. @default 'memo' */
  readonly cache?: string;
  /** The function's name within the cache: part of its identity. @default `fn.name` (required for anonymous functions) */
  readonly name?: string;
  /**
   * The function's version: part of its identity, so changing it retires the old results.
   * @default a hash of `fn.toString()`: editing the function's source retires its results
   */
  readonly version?: string | number;
  /**
   * Maps the arguments (with the call's `this`) to the value that identifies the call; it is
   * encoded like arguments are. Needed for arguments that cannot be keyed (class instances).
   * @default the arguments themselves
   */
  readonly key?: (...args: A) => unknown;
  /** Time-to-live of each result (ms or '10m'). @default the cache's `ttl` (none) */
  readonly ttl?: Duration;
  /** Most results kept for this function; the least recently used are deleted beyond it. @default unbounded */
  readonly maxEntries?: number;
  /**
   * Store errors the function throws and throw them again on a hit (in every process).
   * Aborts, timeouts, system errors (`errno`) and cachegraph's own errors are never stored.
   * A function decides per error. @default false
   */
  readonly cacheErrors?: boolean | ((error: unknown) => boolean);
  /**
   * Single flight across processes sharing the store: the first computes while holding a
   * lock on the call's key and saves the result at once; the others wait (`wait`) and read
   * it. `false`: single flight within this process only, results saved by AutoSync.
   * @default { wait: '60s', ttl: '10m' } when the store supports key locks
   */
  readonly lock?: false | { readonly wait?: Duration; readonly ttl?: Duration };
}

/** {@link MemoizeOptions} after validation and defaults. */
export interface ResolvedMemoizeOptions {
  readonly cache: string;
  readonly name: string;
  readonly version: string | undefined;
  readonly key: ((...args: unknown[]) => unknown) | undefined;
  readonly ttlMs: number | undefined;
  readonly maxEntries: number;
  readonly cacheErrors: boolean | ((error: unknown) => boolean);
  readonly lock: FlightLock | false;
}

/** The cache memoized results go to when no `cache` is given. */
export const DEFAULT_MEMO_CACHE = 'memo';

/**
 * Validates memoize options and applies defaults.
 *
 * @throws InvalidOptionError naming the option
 * @internal used by the manager; not exported from the package.
 */
export function resolveMemoizeOptions(fnName: string, input: unknown): ResolvedMemoizeOptions {
  const parsed = memoizeOptionsSchema.safeParse(input ?? {});
  if (!parsed.success) throw toOptionError(parsed.error);
  const o = parsed.data;
  const name = o.name ?? fnName;
  if (name === '')
    throw new InvalidOptionError('name', 'is required for an anonymous function (it is part of where its results are stored)');
  const lock = o.lock ?? {};
  return Object.freeze({
    cache: o.cache ?? DEFAULT_MEMO_CACHE,
    name,
    version: o.version === undefined ? undefined : String(o.version),
    key: o.key as ((...args: unknown[]) => unknown) | undefined,
    ttlMs: o.ttl === undefined ? undefined : parseDuration(o.ttl),
    maxEntries: o.maxEntries ?? Number.POSITIVE_INFINITY,
    cacheErrors: (o.cacheErrors ?? false) as boolean | ((error: unknown) => boolean),
    lock: resolveLock(lock),
  });
}

/** Schema of {@link ProxyOptions}. */
export const proxyOptionsSchema = z.strictObject({
  cache: nameSchema.optional(),
  name: z.string({ message: 'must be a string' }).min(1, { message: 'must not be empty' }).optional(),
  methods: z.array(z.string({ message: 'must be method names' }), { message: 'must be an array of method names' }),
  invalidates: z.record(z.string(), z.array(z.string({ message: 'must be method names' }), { message: 'must map a method to an array of method names' })).optional(),
  ttl: durationSchema.optional(),
  maxEntries: positiveInt('maxEntries').optional(),
  version: z.union([z.string(), z.number()], { message: 'must be a string or a number' }).optional(),
  cacheErrors: z.union([z.boolean(), fn('cacheErrors(error)')], { message: 'must be a boolean or a function (error) => boolean' }).optional(),
  lock: memoLockSchema.optional(),
});

/**
 * Options of `manager.proxy(target, options)`.
 *
 * @example
 * manager.proxy(repo, { cache: 'repo', methods: ['list', 'byId'], invalidates: { add: ['list'] }, ttl: '5m' });
 */
export interface ProxyOptions<T, M extends keyof T, I extends keyof T = never> {
  /** The cache holding the results. @default 'memo' */
  readonly cache?: string;
  /** Prefix of the cached methods' names in the cache. @default the target's class name */
  readonly name?: string;
  /** Methods whose results are cached, by method name and arguments. */
  readonly methods: readonly M[];
  /** Methods that, after they run, drop every cached result of the listed methods. */
  readonly invalidates?: { readonly [P in I]?: readonly M[] };
  /** Time-to-live of each result. */
  readonly ttl?: Duration;
  /** Most results kept per cached method. */
  readonly maxEntries?: number;
  /** Version of every cached method (default: a hash of each method's source). */
  readonly version?: string | number;
  /** As in {@link MemoizeOptions.cacheErrors}. */
  readonly cacheErrors?: boolean | ((error: unknown) => boolean);
  /** As in {@link MemoizeOptions.lock}. */
  readonly lock?: false | { readonly wait?: Duration; readonly ttl?: Duration };
}

/**
 * Validates proxy options (the shape only; the manager checks the methods against the target).
 *
 * @throws InvalidOptionError naming the option
 * @internal used by the manager; not exported from the package.
 */
export function resolveProxyOptions(input: unknown): z.infer<typeof proxyOptionsSchema> {
  const parsed = proxyOptionsSchema.safeParse(input);
  if (!parsed.success) throw toOptionError(parsed.error);
  return parsed.data;
}
