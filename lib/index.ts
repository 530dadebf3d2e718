/**
 * cachegraph: a dependency-aware cache manager for Node.js.
 *
 * @example
 * import { CacheManager } from 'cachegraph';
 * const manager = new CacheManager({ name: 'app', dir: './.cache' });
 * const users = await manager.registerCache<string, { name: string }>('users');
 *
 * @module
 */
export { CacheManager, getCacheManager } from './manager.js';
export type { CascadeOptions, ManagerStats } from './manager.js';
export { Cache } from './cache.js';
export type { CacheStats, PersistenceStats, SetOptions } from './cache.js';
export { DEFAULT_AUTOSYNC_RULES } from './sync/autosync.js';
export type { AutoSyncOption, AutoSyncOptions, AutoSyncRule, ResolvedAutoSync } from './sync/autosync.js';
export { DependencyGraph } from './graph.js';
export { FileStore } from './store/file.js';
export type { AppendFsync, CompactionOptions, CompactionResult, FileStoreOptions } from './store/file.js';
export { MemoryStore } from './store/memory.js';
export { RedisStore } from './store/redis.js';
export type { RedisClient, RedisStoreOptions } from './store/redis.js';
export type { BusHandler, BusMessageMeta, CacheStore, ChangeBatch, KeyLock, KeyLockResult, LockKeyOptions, StoreContext, StoredEntry, StoredSnapshot, StoreWarning, StoredInfo, SaveResult, SubscribeOptions } from './store/types.js';
export { v8Codec, jsonCodec } from './codec/index.js';
export type { Codec, CodecName, CodecProblem } from './codec/types.js';
export { MAX_CACHE_NAME_LENGTH, parseDuration, validateCacheName } from './options.js';
export type { CacheManagerOptions, CacheOptions, Duration, MemoizeOptions, ProxyOptions } from './options.js';
export type { Memoized, MemoStats, MemoClearOptions } from './memo/memoize.js';
export type { CachedProxy, MethodKeys } from './memo/proxy.js';
export type { CacheHooks, Contents, HookContext, MaybePromise } from './hooks.js';
export { systemClock, systemTimers } from './sync/clock.js';
export type { Clock, TimerProvider } from './sync/clock.js';
export { EVENTS } from './events.js';
export type * from './events.js';
export {
  CacheGraphError,
  InvalidOptionError,
  InvalidNameError,
  InvalidContentsError,
  ManagerConflictError,
  UnknownCacheError,
  CacheExistsError,
  DependencyCycleError,
  HookError,
  HookTimeoutError,
  UnserializableError,
  CorruptFileError,
  UnsupportedFormatError,
  StoreIOError,
  StoreUnavailableError,
  SaveFailedError,
  LockedError,
  MemoKeyError,
  MemoRecursionError,
  ClosedError,
} from './errors.js';
export type { ErrorCode, HookName } from './errors.js';
export { createAdminHandler } from './admin/handler.js';
export type { AdminHandler, AdminOptions } from './admin/handler.js';
export { serve as serveAdmin, serveStore } from './admin/serve.js';
export type { AdminServer, ServeOptions } from './admin/serve.js';
export { managerSource, storeSource } from './admin/source.js';
export type { AdminSource, CacheRow, GraphView } from './admin/source.js';
