/**
 * The default store: one directory per cache, holding a snapshot, append-only segments
 * and a manifest naming them (Bitcask / Redis multi-part AOF style), so the cost of a sync
 * follows the number of changes, not the size of the cache.
 *
 * ```text
 * <dir>/                              store root (0700)
 *   <stem>.cgc/                       one cache ("stem" from names.ts), 0700
 *     MANIFEST                        which snapshot and segments, in order (manifest.ts)
 *     <n>.snapshot                    a full copy in the frame format (frame.ts)
 *     <n>.log                         a segment: batches of changes (segment.ts)
 *     .<file>.tmp-<pid>-<hex>         a file being written (debris if <pid> is gone)
 *   <stem>.cgc.corrupt-<time>/        a quarantined cache
 *   .<stem>.cgc.del.tmp-<pid>-<hex>/  a cache being deleted
 * ```
 *
 * Loading reads the manifest, decodes the snapshot chunk by chunk, and replays the
 * segments in order. `save` writes a new snapshot and a manifest with no segments;
 * `saveChanges` appends one checksummed batch to the last segment. Compaction rewrites
 * the live entries into a new snapshot in a worker thread while appends go to a fresh
 * segment. The manifest is the only file ever replaced, by rename after fsync, and files
 * are deleted only once a durable manifest no longer names them, so a crash at any
 * instant leaves the old state or the new one, complete.
 *
 * @module
 */

import { randomInt } from 'node:crypto';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { builtinCodec } from '../codec/index.js';
import type { Codec } from '../codec/types.js';
import {
  CorruptFileError,
  InvalidNameError,
  InvalidOptionError,
  LockedError,
  StoreIOError,
  UnsupportedFormatError,
} from '../errors.js';
import { systemTimers, type TimerHandle, type TimerProvider } from '../sync/clock.js';
import { encodeFrame, frameChecksum, type FrameSummary } from './frame.js';
import { compactFiles, runInWorker, SNAPSHOT_CHUNK_ENTRIES, type CompactedChunk, type CompactionJob, type CompactionOutput } from './log/compact.js';
import {
  APPEND_FLAGS,
  errorCode,
  FileWriter,
  io,
  isAlive,
  openForRead,
  syncDir,
  tempSuffix,
  writeFileAtomic,
  yieldIfBusy,
} from './log/fsio.js';
import { describeCacheDir } from './log/describe.js';
import { KeyIndex, type FileRef } from './log/key-index.js';
import { lstatOrUndefined, MISSING, READ_ATTEMPTS, readCache, readRecord, regularFileSize, type LoadedCache, type TornTail } from './log/read.js';
import {
  dataFileNumber,
  encodeManifest,
  MANIFEST_FILE,
  readManifest,
  removeFile,
  segmentFileName,
  snapshotFileName,
  type Manifest,
} from './log/manifest.js';
import {
  decodeOperations,
  encodeBatch,
  encodeSegmentHeader,
  readSegmentHeader,
  walkSegment,
  type EncodedBatch,
  type Operation,
} from './log/segment.js';
import { DirectoryLock } from './lock.js';
import { fromFileName, isHashedFileName, toFileName } from './names.js';
import { lockKeyInDirectory } from './key-lock.js';
import type {
  CacheStore,
  ChangeBatch,
  KeyLockResult,
  LockKeyOptions,
  SaveResult,
  StoreContext,
  StoredEntry,
  StoredInfo,
  StoredSnapshot,
  StoreWarning,
} from './types.js';

/**
 * Extension of cache directories.
 *
 * @example
 * path.basename(store.locate('users')); // 'users' + FILE_EXTENSION
 */
export const FILE_EXTENSION = '.cgc';

/** When appended batches are fsync'd (Redis `appendfsync`). */
export type AppendFsync = 'always' | 'everysec' | 'no';

/**
 * When and how FileStore compacts a cache's files.
 *
 * @example
 * const compaction: CompactionOptions = { minDeadRatio: 0.6, minDeadBytes: 8 * 1024 * 1024 };
 */
export interface CompactionOptions {
  /**
   * Compact once at least this share of the payload bytes is dead (overwritten, deleted
   * or cleared values). Between 0 (exclusive) and 1.
   * @default 0.5
   */
  readonly minDeadRatio?: number;
  /**
   * ... and at least this many payload bytes are dead, so small caches are not rewritten
   * for a few bytes.
   * @default 1 MiB
   */
  readonly minDeadBytes?: number;
  /**
   * Compact in a `worker_threads` Worker. Caches whose codec is not built in are always
   * compacted in this thread (a codec's functions cannot cross to a worker), in small
   * steps that let the event loop run.
   * @default true
   */
  readonly worker?: boolean;
}

/**
 * Options of {@link FileStore}.
 *
 * @example
 * const options: FileStoreOptions = { dir: './.cache', appendfsync: 'always', compaction: { minDeadRatio: 0.7 } };
 */
export interface FileStoreOptions {
  /** Directory holding the caches; created (recursively) on the first write. */
  readonly dir: string;
  /**
   * Permissions of cache files: caches often hold what only this user should read.
   * @default 0o600
   */
  readonly fileMode?: number;
  /**
   * Permissions of directories the store creates.
   * @default 0o700
   */
  readonly dirMode?: number;
  /**
   * When an appended batch is fsync'd: `'always'` before `saveChanges` resolves;
   * `'everysec'` at most once a second, by a timer (a crash or power loss may lose the
   * last second of acknowledged batches, never more, and never the file's consistency);
   * `'no'`: when the OS decides (and on `flush()`/`close()`). Snapshots and manifests are
   * always fsync'd.
   * @default 'everysec'
   */
  readonly appendfsync?: AppendFsync;
  /**
   * Automatic compaction, or `false` to compact only when {@link FileStore.compact} is called.
   * @default { minDeadRatio: 0.5, minDeadBytes: 1 MiB, worker: true }
   */
  readonly compaction?: false | CompactionOptions;
  /**
   * Open for reading only: never takes the directory lock, never writes (not even to cut
   * a torn tail); every write is refused with `StoreIOError` (syscallCode `EROFS`).
   * @default false
   */
  readonly readOnly?: boolean;
  /**
   * How long the first write waits for the directory's writer lock, in ms (0: fail at
   * once with `LockedError`, E_LOCKED).
   * @default 0
   */
  readonly lockTimeout?: number;
  /**
   * Timers for the `'everysec'` fsync (sinon fake timers work with the default).
   * @default the global timers, looked up at call time, unref'd
   */
  readonly timers?: TimerProvider;
}

/**
 * What {@link FileStore.compact} did.
 *
 * @example
 * const { bytesBefore, bytesAfter } = (await store.compact('users', ctx)) ?? { bytesBefore: 0, bytesAfter: 0 };
 */
export interface CompactionResult {
  /** Entries in the new snapshot. */
  readonly entries: number;
  /** Size of the files it replaced. */
  readonly bytesBefore: number;
  /** Size of the new snapshot. */
  readonly bytesAfter: number;
  /** The cache's directory. */
  readonly location: string;
}

const modeSchema = z.number().int().min(0).max(0o777);
const optionsSchema = z.strictObject({
  dir: z.string().min(1),
  fileMode: modeSchema.optional(),
  dirMode: modeSchema.optional(),
  appendfsync: z.enum(['always', 'everysec', 'no']).optional(),
  compaction: z
    .union([
      z.literal(false),
      z.strictObject({
        minDeadRatio: z.number().gt(0).max(1).optional(),
        minDeadBytes: z.number().int().min(0).optional(),
        worker: z.boolean().optional(),
      }),
    ])
    .optional(),
  readOnly: z.boolean().optional(),
  lockTimeout: z.number().int().min(0).optional(),
  timers: z
    .custom<TimerProvider>(
      (v) =>
        typeof v === 'object' &&
        v !== null &&
        typeof (v as Record<string, unknown>)['setTimeout'] === 'function' &&
        typeof (v as Record<string, unknown>)['clearTimeout'] === 'function',
      { message: 'must be a timer provider { setTimeout, clearTimeout }' },
    )
    .optional(),
});

const EVERYSEC_MS = 1000;
const DEFAULT_MIN_DEAD_BYTES = 1024 * 1024;
/** First delay before an automatic compaction is tried again after a failure; doubles, up to an hour. */
const COMPACTION_BACKOFF_MS = 5000;

/** The last segment of a cache, appended to by the writer. */
interface ActiveSegment {
  readonly no: number;
  readonly path: string;
  readonly ref: FileRef;
  readonly codecName: string;
  /** Offset after the last whole batch. */
  end: number;
  handle: FileHandle | undefined;
  /** Appended since the last fsync. */
  unsynced: boolean;
  /** A failed append could not be cut back: cut before the next one. */
  broken: boolean;
}

interface RunningCompaction {
  readonly controller: AbortController;
  /** File numbers it replaces. */
  readonly retired: ReadonlySet<number>;
  /** File number reserved for its snapshot. */
  readonly output: number;
  readonly temp: string;
  cancelled: boolean;
  promise: Promise<CompactionResult | undefined>;
}

/** What this store knows about one cache's files. */
class CacheState {
  readonly name: string;
  readonly stem: string;
  readonly dir: string;
  manifest: Manifest | undefined;
  /** Whether the manifest could not be read (only a full save can proceed). */
  unreadable = false;
  segment: ActiveSegment | undefined;
  index: KeyIndex | undefined;
  snapshotBytes = 0;
  /** Sizes of the segments before the last one. */
  sealedBytes = 0;
  /** This store holds the lock and the state matches the disk. */
  verified = false;
  compaction: RunningCompaction | undefined;
  /** An fsync failed: what was appended may not be durable; only a full save clears this. */
  poisoned: StoreIOError | undefined;
  warn: ((warning: StoreWarning) => void) | undefined;
  compactionFailures = 0;
  /** No automatic compaction before this time (after a failure). */
  compactAfter = 0;

  constructor(name: string, stem: string, dir: string) {
    this.name = name;
    this.stem = stem;
    this.dir = dir;
  }

  get fileBytes(): number {
    return this.snapshotBytes + this.sealedBytes + (this.segment?.end ?? 0);
  }
}

/** A compaction was cancelled (by a full save, a delete, close()). */
class CompactionCancelled extends Error {}

function readOnlyError(dir: string): StoreIOError {
  return new StoreIOError('write', dir, Object.assign(new Error('the store was opened with readOnly: true'), { code: 'EROFS' }));
}

/**
 * Persists caches as log-structured file groups in one directory. The default store of a
 * `CacheManager`.
 *
 * - Each cache is a directory `<dir>/<stem>.cgc` (`stem` from `names.ts`: safe, injective,
 *   never outside `dir`), mode 0700, holding files of mode 0600; see the module comment.
 * - `save` writes a full snapshot (atomic: temp file, checked writes, fsync, rename,
 *   directory fsync, then the manifest likewise). `saveChanges` appends one batch with
 *   the changed keys, fsync'd per `appendfsync`. Both leave the previous state intact on
 *   failure and reject with {@link StoreIOError} (op and path) or the codec's
 *   `UnserializableError`.
 * - Loads verify every byte before decoding; a missing cache, an empty directory or a
 *   zero-byte manifest is "nothing saved"; a partly written last batch is cut off with a
 *   `'torn-tail'` warning; any other damage is a `CorruptFileError` naming the file and
 *   offset. Symbolic links are never followed.
 * - `loadEntry` reads one key: the snapshot chunk or batch part holding its latest value
 *   (at most 1024 entries), found through a per-key index built while loading or saving.
 * - Dead bytes (overwritten, deleted, cleared values) are tracked; past `compaction`'s
 *   thresholds the live entries are rewritten into a new snapshot by a worker thread.
 * - One writer per directory: the first write takes the directory lock (`lockTimeout`);
 *   `readOnly` stores never lock and never write. `close()` fsyncs pending appends,
 *   cancels compactions, clears its timer and releases the lock; it is idempotent, and
 *   the store can be used again afterwards (it locks again on the next write).
 *
 * @example
 * const store = new FileStore({ dir: './.cache' });
 * await store.save('users', [['u1', { name: 'Ada' }, 0]], { codec: v8Codec, clock: systemClock });
 * await store.saveChanges('users', { cleared: false, sets: [['u2', { name: 'Grace' }, 0]], deletes: ['u1'] }, ctx);
 * const snapshot = await store.load('users', { codec: v8Codec, clock: systemClock });
 */
export class FileStore implements CacheStore {
  /**
   * Always `'file'`.
   *
   * @example
   * new FileStore({ dir: '.cache' }).kind; // 'file'
   */
  readonly kind = 'file';
  readonly #dir: string;
  readonly #fileMode: number;
  readonly #dirMode: number;
  readonly #appendfsync: AppendFsync;
  readonly #compaction: Required<CompactionOptions> | undefined;
  readonly #readOnly: boolean;
  readonly #lockTimeout: number;
  readonly #timers: TimerProvider;
  readonly #states = new Map<string, CacheState>();
  /** Tail of each cache's queue of file operations. */
  readonly #queues = new Map<string, Promise<void>>();
  /** Stems whose debris of dead processes was already removed. */
  readonly #swept = new Set<string>();
  #rootSwept = false;
  /** Background work: automatic compactions and timed fsyncs. */
  readonly #background = new Set<Promise<void>>();
  #fsyncTimer: TimerHandle | undefined;
  #lock: DirectoryLock | undefined;
  #locking: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #shuttingDown = false;

  /**
   * @param options - see {@link FileStoreOptions}
   * @throws {InvalidOptionError} naming the option, for a missing `dir`, a bad value, or an unknown key
   * @example
   * const store = new FileStore({ dir: path.join(os.homedir(), '.cache', 'my-app') });
   */
  constructor(options: FileStoreOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const keys = issue !== undefined && 'keys' in issue ? (issue.keys as string[]) : [];
      const option = [...(issue?.path ?? []).map(String), ...keys.slice(0, 1)].join('.');
      throw new InvalidOptionError(option, `${issue?.message ?? 'invalid'} (FileStore)`);
    }
    const o = parsed.data;
    this.#dir = path.resolve(o.dir);
    this.#fileMode = o.fileMode ?? 0o600;
    this.#dirMode = o.dirMode ?? 0o700;
    this.#appendfsync = o.appendfsync ?? 'everysec';
    this.#compaction =
      o.compaction === false
        ? undefined
        : Object.freeze({
            minDeadRatio: o.compaction?.minDeadRatio ?? 0.5,
            minDeadBytes: o.compaction?.minDeadBytes ?? DEFAULT_MIN_DEAD_BYTES,
            worker: o.compaction?.worker ?? true,
          });
    this.#readOnly = o.readOnly ?? false;
    this.#lockTimeout = o.lockTimeout ?? 0;
    this.#timers = o.timers ?? systemTimers;
  }

  /**
   * The store's directory, absolute.
   *
   * @example
   * new FileStore({ dir: '.cache' }).dir; // '/home/me/app/.cache'
   */
  get dir(): string {
    return this.#dir;
  }

  /**
   * A lock on one key shared by every process using this directory, for single flight
   * across processes: a lock file in `<dir>/.flights/<hash>/` recording the holder's pid and
   * start time, so the lock of a process that died is taken over at once. A live holder is
   * waited for up to `waitMs` (polling every 20 ms); a lock file older than `ttlMs` is
   * presumed abandoned and removed. A read-only store takes no locks
   * (resolves `{ lock: undefined, waited: false }`: the caller computes alone).
   *
   * @throws {StoreIOError} the lock file cannot be created (permissions, disk full)
   * @example
   * const { lock, waited } = await store.lockKey('memo', key, { waitMs: 60_000, ttlMs: 600_000 });
   * try { ... } finally { await lock?.release(); }
   */
  async lockKey(name: string, key: string, options: LockKeyOptions): Promise<KeyLockResult> {
    if (this.#readOnly) return { lock: undefined, waited: false };
    return lockKeyInDirectory(this.#dir, name, key, options, this.#timers);
  }

  /**
   * The absolute path of `name`'s directory (whether or not it exists).
   *
   * @throws {InvalidNameError} for a name no file can be made for (empty, lone surrogate)
   * @example
   * store.locate('users'); // '/…/.cache/users.cgc'
   */
  locate(name: string): string {
    const stem = toFileName(name);
    const file = path.join(this.#dir, stem + FILE_EXTENSION);
    // The encoding makes this impossible; the check makes it impossible to break unnoticed.
    if (path.dirname(file) !== this.#dir || path.basename(file) !== stem + FILE_EXTENSION) {
      throw new InvalidNameError(name, `would resolve outside the store directory ${this.#dir}`);
    }
    return file;
  }

  /**
   * Reads `name`'s snapshot and replays its segments; `undefined` when nothing was saved.
   * A torn last batch is cut off (unless read-only) and reported through `ctx.warn`.
   *
   * @throws {CorruptFileError} a damaged, truncated, missing or foreign file, or a symbolic link
   * @throws {UnsupportedFormatError} newer format, or a codec this process lacks
   * @throws {StoreIOError} a file could not be opened or read
   * @example
   * const snapshot = await store.load('users', { codec: v8Codec, clock: systemClock });
   */
  async load(name: string, ctx: StoreContext): Promise<StoredSnapshot | undefined> {
    const stem = toFileName(name);
    const cacheDir = this.locate(name);
    await this.#sweepDebris(stem, cacheDir);
    return this.#exclusive(stem, async () => {
      const loaded = await this.#loadAndInstall(name, stem, cacheDir, ctx);
      if (loaded === undefined) return undefined;
      return { entries: loaded.entries, savedAt: loaded.savedAt, location: cacheDir, bytes: loaded.snapshotBytes + loaded.sealedBytes + (loaded.last?.end ?? 0), codec: loaded.codec };
    });
  }

  /**
   * Reads one entry without loading the whole cache: the snapshot chunk or the batch part
   * holding the key's latest value (at most 1024 entries) is read, checked and decoded.
   * `undefined` when the key is absent, or expired by `ctx.clock`. The first call for a
   * cache this store has not loaded or saved builds its index (a full read).
   *
   * @throws {CorruptFileError} the record fails its checksum or does not decode
   * @example
   * const entry = await store.loadEntry('users', 'u1', ctx); // ['u1', { name: 'Ada' }, 0]
   */
  async loadEntry(name: string, key: unknown, ctx: StoreContext): Promise<StoredEntry | undefined> {
    const stem = toFileName(name);
    const cacheDir = this.locate(name);
    for (let attempt = 0; ; attempt++) {
      let state = this.#states.get(stem);
      if (state === undefined || !(await this.#refresh(state))) {
        const loaded = await this.#exclusive(stem, () => this.#loadAndInstall(name, stem, cacheDir, ctx));
        if (loaded === undefined) return undefined;
        state = this.#states.get(stem);
      }
      const index = state?.index;
      if (index === undefined) return undefined;
      const record = index.lookup(key);
      if (record === undefined) return undefined;
      const entry = await readRecord(name, record, key, index.keys.codec);
      if (entry === MISSING) {
        // Retired by a compaction or save since the lookup: look again (the writer's index
        // was updated before the retirement; a reader's refresh notices the new manifest).
        if (attempt < READ_ATTEMPTS) continue;
        throw new CorruptFileError(record.file.path, 'named by the index but missing', { cacheName: name });
      }
      if (entry === undefined) return undefined;
      if (entry[2] !== 0 && entry[2] <= ctx.clock.now()) return undefined;
      return entry;
    }
  }

  /**
   * Replaces `name`'s contents with `entries`: a new snapshot, then a manifest naming only
   * it; the previous files are deleted afterwards. `entries` is read while writing: pass a
   * snapshot if the cache can change meanwhile. Cancels a compaction of the cache.
   *
   * @throws {UnserializableError} an entry the codec cannot encode (nothing changed on disk)
   * @throws {StoreIOError} op `mkdir`, `open`, `write`, `fsync`, `close`, `rename` or
   *   `fsync-dir`; except for a `fsync-dir` of the manifest, the previous state is intact
   * @throws {LockedError} another process holds the directory's writer lock
   * @example
   * await store.save('users', cache.entriesForSave(), { codec: v8Codec, clock: systemClock });
   */
  async save(name: string, entries: Iterable<StoredEntry>, ctx: StoreContext): Promise<SaveResult> {
    const stem = toFileName(name);
    this.locate(name);
    await this.#writable(name, ctx);
    return this.#exclusive(stem, async () => {
      const state = await this.#openForWrite(name, ctx, 'save');
      this.#cancelCompaction(state);
      const previous = state.manifest;
      const retired = state.unreadable ? await this.#dataFiles(state.dir) : this.#filesOf(state.dir, previous);
      const n = await this.#nextNumber(state);
      const ref: FileRef = { no: n, kind: 'snapshot', path: path.join(state.dir, snapshotFileName(n)), codec: ctx.codec };
      const index = new KeyIndex(ctx.codec);
      let summary: FrameSummary | undefined;
      let last: Uint8Array | undefined;
      function* pieces(): Generator<Uint8Array, void, undefined> {
        const frame = encodeFrame(name, entries, ctx, {
          chunkEntries: SNAPSHOT_CHUNK_ENTRIES,
          onChunk: (chunk, chunkEntries) => index.addChunk(ref, chunk, chunkEntries),
        });
        for (let step = frame.next(); ; step = frame.next()) {
          if (step.done === true) {
            summary = step.value;
            return;
          }
          last = step.value;
          yield step.value;
        }
      }
      await writeFileAtomic(ref.path, pieces(), this.#fileMode);
      const written = { ...(summary as FrameSummary), crc: frameChecksum(last as Uint8Array) };
      // The snapshot's name must be durable before a manifest names it.
      await this.#syncDirOrRemove(state.dir, [ref.path]);
      const manifest: Manifest = {
        cache: name,
        generation: previous === undefined ? firstGeneration() : previous.generation + 1,
        next: n + 1,
        snapshot: { file: n, bytes: written.bytes, crc: written.crc },
        segments: [],
        savedAt: timestamp(ctx),
        ...linksOf(ctx, previous),
      };
      await this.#commit(state, manifest, [ref.path]);
      await this.#closeSegment(state.segment);
      state.manifest = manifest;
      state.unreadable = false;
      state.index = index;
      state.segment = undefined;
      state.snapshotBytes = written.bytes;
      state.sealedBytes = 0;
      state.poisoned = undefined;
      state.warn = ctx.warn;
      await retire(retired.filter((file) => file !== ref.path));
      return { entries: written.entries, bytes: written.bytes, location: state.dir };
    });
  }

  /**
   * Appends one batch of changes to `name`'s last segment: one checksummed record with
   * only the changed keys, applied whole or not at all. Creates the manifest and segment
   * when the cache has none (the batch then applies to an empty cache). Resolves once
   * written and, with `appendfsync: 'always'`, fsync'd. May start a compaction in the
   * background (failures reported through `ctx.warn`, kind `'compaction-failed'`).
   *
   * @throws {UnserializableError} a value the codec cannot encode (nothing written)
   * @throws {StoreIOError} the append failed (it was cut back: the previous state is
   *   intact), or an earlier fsync of this cache failed (op `fsync`; only `save` recovers)
   * @throws {CorruptFileError} the cache's files are damaged
   * @throws {LockedError} another process holds the directory's writer lock
   * @example
   * await store.saveChanges('users', { cleared: false, sets: [['u1', { name: 'Ada' }, 0]], deletes: ['u2'] }, ctx);
   */
  async saveChanges(name: string, batch: ChangeBatch, ctx: StoreContext): Promise<SaveResult> {
    const stem = toFileName(name);
    this.locate(name);
    await this.#writable(name, ctx);
    return this.#exclusive(stem, async () => {
      const state = await this.#openForWrite(name, ctx, 'append');
      if (state.poisoned !== undefined) await this.#recover(state, ctx);
      state.warn = ctx.warn;
      const empty = !batch.cleared && batch.sets.length === 0 && batch.deletes.length === 0;
      if (empty && state.manifest !== undefined) return { entries: 0, bytes: 0, location: state.dir };
      let encoded: EncodedBatch | undefined;
      let at: number;
      if (state.manifest === undefined) {
        // A new cache: its first batch is written into its first segment before a manifest
        // names it, so a failure leaves nothing saved, as before. (An empty batch still
        // creates the cache, empty.)
        const n = await this.#nextNumber(state);
        if (!empty) encoded = await encodeBatch(name, ctx.codec, n, batch, timestamp(ctx));
        await this.#startLog(state, ctx, n, encoded);
        at = (state.segment as ActiveSegment).end - (encoded?.bytes ?? 0);
      } else {
        await this.#recordLinks(state, ctx);
        if (state.segment === undefined || state.segment.codecName !== ctx.codec.name) await this.#rotate(state, ctx, 0);
        const last = state.segment as ActiveSegment;
        encoded = await encodeBatch(name, ctx.codec, last.no, batch, timestamp(ctx));
        at = last.end;
        await this.#append(state, last, encoded);
      }
      const segment = state.segment as ActiveSegment;
      if (encoded === undefined) return { entries: 0, bytes: 0, location: state.dir };
      const index = state.index;
      if (index !== undefined) {
        if (batch.cleared) index.clear();
        let next = 0;
        for (const part of encoded.parts) {
          const operations = encoded.operations.slice(next, next + part.operations) as Operation[];
          next += part.operations;
          index.addPart(segment.ref, { ...part, offset: at + part.offset }, operations);
          await yieldIfBusy();
        }
      }
      // The index now matches the file, whether or not this fsync succeeds.
      if (this.#appendfsync === 'always') await this.#syncSegment(state, segment);
      else if (this.#appendfsync === 'everysec') this.#scheduleFsync();
      this.#maybeCompact(state, ctx);
      return { entries: batch.sets.length + batch.deletes.length, bytes: encoded.bytes, location: state.dir };
    });
  }

  /**
   * Rewrites `name`'s live entries into a new snapshot now (dropping expired ones), in a
   * worker thread unless a codec involved is not built in. Appends made meanwhile go to a
   * new segment and survive. Resolves when the new manifest is durable and the old files
   * are gone, or `undefined` when there is nothing to compact (or it was cancelled by a
   * save, delete or close). If one is already running, waits for it.
   *
   * @throws {CorruptFileError} the files to compact are damaged
   * @throws {StoreIOError} writing the new snapshot or manifest failed (nothing lost)
   * @example
   * const result = await store.compact('users', ctx); // { entries, bytesBefore, bytesAfter, location }
   */
  async compact(name: string, ctx: StoreContext): Promise<CompactionResult | undefined> {
    const stem = toFileName(name);
    this.locate(name);
    await this.#writable(name, ctx);
    const running = await this.#exclusive(stem, async () => {
      const state = await this.#openForWrite(name, ctx, 'append');
      return state.compaction ?? (await this.#beginCompaction(state, ctx));
    });
    return running?.promise;
  }

  /**
   * Removes every file of `name` (the directory is renamed aside, which is atomic, then
   * deleted); `true` if a saved copy was there. Cancels a compaction of the cache.
   *
   * @throws {StoreIOError} op `delete` or `fsync-dir`
   * @throws {LockedError} another process holds the directory's writer lock
   * @example
   * await store.delete('users'); // true
   */
  async delete(name: string, ctx?: StoreContext): Promise<boolean> {
    const stem = toFileName(name);
    const cacheDir = this.locate(name);
    if (this.#readOnly) throw readOnlyError(this.#dir);
    if ((await lstatOrUndefined(cacheDir)) === undefined && !this.#states.has(stem)) return false;
    await this.#writable(name, ctx);
    return this.#exclusive(stem, async () => {
      const state = this.#states.get(stem);
      if (state !== undefined) await this.#forget(state);
      const present = (await this.#presence(cacheDir)) !== 'none';
      const aside = path.join(this.#dir, `.${stem}${FILE_EXTENSION}.del${tempSuffix()}`);
      try {
        await fs.rename(cacheDir, aside);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return false;
        throw new StoreIOError('delete', cacheDir, error);
      }
      // Without it a crash could bring an invalidated cache back to life.
      await syncDir(this.#dir);
      await fs.rm(aside, { recursive: true, force: true }).catch(() => undefined);
      return present;
    });
  }

  /**
   * Whether something is saved under `name` (it may still be damaged): a cache directory
   * with a manifest, or a non-empty file or link where the directory should be.
   *
   * @throws {StoreIOError} op `stat`
   * @example
   * await store.has('users'); // true
   */
  async has(name: string): Promise<boolean> {
    return (await this.#presence(this.locate(name))) !== 'none';
  }

  /**
   * What is saved under `name`, from the manifest and the files' headers, without decoding
   * any value: bytes, log bytes, save time, codec, recorded dependency links, and the entry
   * count when no appended batch makes a replay necessary (else `entries: undefined`).
   * Never writes (works on a read-only store and beside a running writer).
   *
   * @throws {CorruptFileError} a damaged manifest or file header
   * @example
   * await store.describe('stats'); // { name: 'stats', entries: 2, dependsOn: ['users'], … }
   */
  async describe(name: string): Promise<StoredInfo | undefined> {
    const cacheDir = this.locate(name);
    for (let attempt = 1; ; attempt++) {
      if ((await this.#presence(cacheDir)) !== 'cache') return undefined;
      const info = await describeCacheDir(name, cacheDir);
      // undefined with a manifest there: a writer replaced the files meanwhile; look again.
      if (info !== undefined || attempt >= READ_ATTEMPTS) return info;
    }
  }

  /**
   * Names of the caches with a saved copy, sorted. Temp, deleted and quarantined copies,
   * and entries that are not the canonical path of any name, are skipped; hashed names
   * are read from the manifest (skipped when unreadable).
   *
   * @throws {StoreIOError} op `list`
   * @example
   * await store.list(); // ['Users', 'stats']
   */
  async list(): Promise<string[]> {
    let dirents;
    try {
      dirents = await fs.readdir(this.#dir, { withFileTypes: true });
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return [];
      throw new StoreIOError('list', this.#dir, error);
    }
    const names: string[] = [];
    for (const dirent of dirents) {
      const fileName = dirent.name;
      if (fileName.startsWith('.') || !fileName.endsWith(FILE_EXTENSION)) continue;
      const stem = fileName.slice(0, -FILE_EXTENSION.length);
      const cacheDir = path.join(this.#dir, fileName);
      if ((await this.#presence(cacheDir)) === 'none') continue;
      const name = fromFileName(stem);
      if (name !== undefined) {
        names.push(name);
      } else if (isHashedFileName(stem) && dirent.isDirectory()) {
        const manifest = await readManifest(cacheDir, undefined).catch(() => undefined);
        const recorded = typeof manifest === 'object' ? manifest.cache : undefined;
        if (recorded !== undefined && toFileName(recorded) === stem) names.push(recorded);
      }
    }
    return names.sort();
  }

  /**
   * Renames `name`'s directory (all its files) to `<dir>.corrupt-<time>` (time from
   * `ctx.clock`, ISO 8601 without colons; `-1`, `-2`... appended if taken) and returns
   * the new path, or `undefined` when nothing is there.
   *
   * @throws {StoreIOError} op `quarantine`
   * @throws {LockedError} another process holds the directory's writer lock
   * @example
   * await store.quarantine('users', ctx); // '/…/users.cgc.corrupt-2024-05-01T120000.000Z'
   */
  async quarantine(name: string, ctx: StoreContext): Promise<string | undefined> {
    const stem = toFileName(name);
    const cacheDir = this.locate(name);
    if (this.#readOnly) throw readOnlyError(this.#dir);
    if ((await lstatOrUndefined(cacheDir)) === undefined) return undefined;
    await this.#writable(name, ctx);
    return this.#exclusive(stem, async () => {
      const state = this.#states.get(stem);
      if (state !== undefined) await this.#forget(state);
      const time = new Date(ctx.clock.now());
      const stamp = Number.isNaN(time.getTime()) ? 'unknown-time' : time.toISOString().replaceAll(':', '');
      let target = `${cacheDir}.corrupt-${stamp}`;
      // rename() replaces an empty directory silently: never let a second quarantine touch the first.
      for (let n = 1; (await lstatOrUndefined(target)) !== undefined; n++) target = `${cacheDir}.corrupt-${stamp}-${n}`;
      try {
        await fs.rename(cacheDir, target);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return undefined;
        throw new StoreIOError('quarantine', cacheDir, error);
      }
      await syncDir(this.#dir);
      return target;
    });
  }

  /**
   * fsyncs every segment with appends not yet fsync'd (with `appendfsync` `'everysec'` or
   * `'no'`).
   *
   * @throws {StoreIOError} op `fsync`: those appends may not be durable
   * @example
   * await store.flush();
   */
  async flush(): Promise<void> {
    let failure: unknown;
    for (const state of [...this.#states.values()]) {
      if (state.segment?.unsynced !== true) continue;
      await this.#exclusive(state.stem, () => this.#syncSegment(state, state.segment)).catch((error: unknown) => {
        failure ??= error;
      });
    }
    if (failure !== undefined) throw failure;
  }

  /**
   * Resolves when no background work is under way: automatic or requested compactions,
   * and a timed fsync. Their failures are not thrown here (they go to `ctx.warn`, or to
   * whoever called `compact`).
   *
   * @example
   * await store.idle();
   */
  async idle(): Promise<void> {
    for (;;) {
      const pending: Promise<unknown>[] = [...this.#background];
      for (const state of this.#states.values()) if (state.compaction !== undefined) pending.push(state.compaction.promise);
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * fsyncs pending appends, cancels running compactions (their partial output is
   * removed; nothing is lost), clears the fsync timer, closes file handles and releases
   * the directory lock. Idempotent; the store can be used again afterwards.
   *
   * @throws {StoreIOError} op `fsync` when pending appends could not be fsync'd (the rest is still released)
   * @example
   * await store.close();
   */
  close(): Promise<void> {
    this.#closing ??= this.#close().finally(() => {
      this.#closing = undefined;
    });
    return this.#closing;
  }

  async #close(): Promise<void> {
    // No compaction may start from here on (an automatic one may be queued behind a write).
    this.#shuttingDown = true;
    try {
      await this.#shutDown();
    } finally {
      this.#shuttingDown = false;
    }
  }

  async #shutDown(): Promise<void> {
    const running: Promise<unknown>[] = [];
    for (const state of this.#states.values()) {
      if (state.compaction !== undefined) running.push(state.compaction.promise);
      this.#cancelCompaction(state);
    }
    await Promise.allSettled(running);
    if (this.#fsyncTimer !== undefined) {
      this.#timers.clearTimeout(this.#fsyncTimer);
      this.#fsyncTimer = undefined;
    }
    await Promise.allSettled([...this.#background]);
    let failure: unknown;
    for (const state of [...this.#states.values()]) {
      await this.#exclusive(state.stem, async () => {
        try {
          await this.#syncSegment(state, state.segment);
        } catch (error) {
          failure ??= error;
        }
        await this.#closeSegment(state.segment);
      });
    }
    this.#states.clear();
    this.#swept.clear();
    this.#rootSwept = false;
    const lock = this.#lock;
    this.#lock = undefined;
    await lock?.release();
    if (failure !== undefined) throw failure;
  }

  // ------------------------------------------------------------------ lock and queues

  /** Refuses writes to a read-only store; takes the directory lock on the first write. */
  async #writable(name?: string, ctx?: StoreContext): Promise<void> {
    if (this.#readOnly) throw readOnlyError(this.#dir);
    if (this.#lock !== undefined) return;
    this.#locking ??= (async () => {
      await io('mkdir', this.#dir, () => fs.mkdir(this.#dir, { recursive: true, mode: this.#dirMode }));
      const lock = await this.#acquireLock();
      this.#lock = lock;
      const stale = lock.staleLock;
      if (stale !== undefined && name !== undefined) {
        const owner = stale.owner === undefined ? 'an unknown process' : `process ${stale.owner.pid} on ${stale.owner.host}`;
        ctx?.warn?.({ name, kind: 'stale-lock', message: `Took over the lock ${lock.path} left by ${owner} (${stale.reason})`, path: lock.path });
      }
      // What was read before the lock may have been changed by the previous writer.
      for (const state of this.#states.values()) state.verified = false;
    })().finally(() => {
      this.#locking = undefined;
    });
    await this.#locking;
  }

  /** THE single call site of the directory lock (one writer per store directory). */
  async #acquireLock(): Promise<DirectoryLock> {
    return DirectoryLock.acquire(this.#dir, { timeoutMs: this.#lockTimeout, timers: this.#timers });
  }

  /** Runs `task` after every earlier file operation on the same cache (one at a time). */
  #exclusive<T>(stem: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(stem) ?? Promise.resolve();
    const run = previous.then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(stem, tail);
    void tail.then(() => {
      if (this.#queues.get(stem) === tail) this.#queues.delete(stem);
    });
    return run;
  }

  /** Keeps track of a background task (for idle() and close()); it must not reject. */
  #track(task: Promise<void>): void {
    this.#background.add(task);
    void task.finally(() => this.#background.delete(task));
  }

  // ------------------------------------------------------------------ reading

  /** Reads the cache and makes what was read the cache's state; cuts a torn tail. */
  async #loadAndInstall(name: string, stem: string, cacheDir: string, ctx: StoreContext): Promise<LoadedCache | undefined> {
    const loaded = await readCache(name, cacheDir, ctx);
    if (loaded === undefined) {
      const state = this.#states.get(stem);
      if (state !== undefined && state.compaction === undefined) {
        await this.#closeSegment(state.segment);
        this.#states.delete(stem);
      }
      return undefined;
    }
    if (loaded.torn !== undefined) await this.#cutTornTail(name, loaded.torn, ctx);
    let state = this.#states.get(stem);
    if (state === undefined) {
      state = new CacheState(name, stem, cacheDir);
      this.#states.set(stem, state);
    }
    state.manifest = loaded.manifest;
    state.unreadable = false;
    state.index = loaded.index;
    state.snapshotBytes = loaded.snapshotBytes;
    state.sealedBytes = loaded.sealedBytes;
    state.warn = ctx.warn;
    const last = loaded.last;
    if (last === undefined || state.segment?.no !== last.no) {
      await this.#closeSegment(state.segment);
      state.segment = last === undefined ? undefined : { ...last, handle: undefined, unsynced: false, broken: false };
    } else {
      state.segment.end = last.end;
    }
    state.verified = this.#lock !== undefined;
    return loaded;
  }

  /** What is at a cache's path: nothing (or nothing saved), a cache, or something else. */
  async #presence(cacheDir: string): Promise<'none' | 'cache' | 'other'> {
    const stat = await lstatOrUndefined(cacheDir);
    if (stat === undefined) return 'none';
    if (stat.isDirectory()) {
      const manifest = await lstatOrUndefined(path.join(cacheDir, MANIFEST_FILE));
      return manifest === undefined || (manifest.isFile() && manifest.size === 0) ? 'none' : 'cache';
    }
    return stat.isFile() && stat.size === 0 ? 'none' : 'other';
  }

  /**
   * Whether the cache's index still describes its files; for a store that is not the
   * writer, checks the manifest and catches up with batches appended meanwhile.
   */
  async #refresh(state: CacheState): Promise<boolean> {
    const index = state.index;
    if (index === undefined) return false;
    if (state.verified && this.#lock !== undefined) return true;
    const manifest = await readManifest(state.dir, state.name).catch(() => undefined);
    if (typeof manifest !== 'object' || manifest.generation !== state.manifest?.generation) return false;
    const segment = state.segment;
    if (segment === undefined) return true;
    const handle = await openForRead(segment.path, state.name).catch(() => undefined);
    if (handle === undefined) return false;
    try {
      const size = (await handle.stat()).size;
      if (size === segment.end) return true;
      if (size < segment.end) return false;
      const walk = await walkSegment(handle, size, segment.path, state.name, segment.no, segment.end, true, (batch) => {
        if (batch.cleared) index.clear();
        for (const [j, part] of batch.parts.entries()) {
          const operations = decodeOperations(segment.ref.codec, batch.payloads[j] as Uint8Array, segment.path, part.offset, state.name);
          index.addPart(segment.ref, { ...part, operations: operations.length }, operations);
        }
      });
      segment.end = walk.end;
      return true;
    } catch {
      return false;
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /** Cuts a torn last batch off (when this store may write) and reports it. */
  async #cutTornTail(name: string, torn: TornTail, ctx: StoreContext): Promise<void> {
    const what = `${torn.size - torn.offset} bytes from offset ${torn.offset} (${torn.reason})`;
    const warn = (message: string): void => ctx.warn?.({ name, kind: 'torn-tail', message, path: torn.path });
    if (this.#readOnly) {
      warn(`Ignored a partly written last batch in ${torn.path}: ${what}; not cut off (read-only store; it may also be a write in progress)`);
      return;
    }
    try {
      await this.#writable(name, ctx);
    } catch (error) {
      if (!(error instanceof LockedError)) throw error;
      // The lock's owner may be appending this very batch: leave it alone.
      return;
    }
    await cutFile(torn.path, torn.offset);
    warn(`Cut a partly written last batch off ${torn.path}: ${what}`);
  }

  /** Removes debris of dead processes: temp files of the cache, deleted directories. */
  async #sweepDebris(stem: string, cacheDir: string): Promise<void> {
    if (this.#readOnly) return; // removing files is writing
    if (!this.#rootSwept) {
      this.#rootSwept = true;
      const names = await fs.readdir(this.#dir).catch(() => [] as string[]);
      for (const fileName of names) {
        const match = /^\..*\.cgc\.del\.tmp-(\d+)-[0-9a-f]+$/.exec(fileName);
        if (match !== null && !isAlive(Number(match[1]))) {
          await fs.rm(path.join(this.#dir, fileName), { recursive: true, force: true }).catch(() => undefined);
        }
      }
    }
    if (this.#swept.has(stem)) return;
    this.#swept.add(stem);
    const names = await fs.readdir(cacheDir).catch(() => [] as string[]);
    for (const fileName of names) {
      const match = /^\..*\.tmp-(\d+)-[0-9a-f]+$/.exec(fileName);
      if (match === null) continue;
      const pid = Number(match[1]);
      // Temp files of live processes (this one included) may be writes in progress: kept.
      if (pid === process.pid || isAlive(pid)) continue;
      await fs.unlink(path.join(cacheDir, fileName)).catch(() => undefined);
    }
  }

  // ------------------------------------------------------------------ writing

  /**
   * The state of a cache about to be written, matching the disk: reads the manifest (and,
   * for appends, walks the last segment to its last whole batch, cutting a torn tail)
   * unless this store already knows it. Creates the cache's directory.
   */
  async #openForWrite(name: string, ctx: StoreContext, purpose: 'save' | 'append'): Promise<CacheState> {
    const stem = toFileName(name);
    const cacheDir = this.locate(name);
    await this.#writable(name, ctx);
    await this.#sweepDebris(stem, cacheDir);
    let state = this.#states.get(stem);
    if (state?.verified === true && (purpose === 'save' || !state.unreadable)) return state;
    await this.#ensureCacheDir(cacheDir);

    let manifest: Manifest | undefined;
    let unreadable = false;
    try {
      const read = await readManifest(cacheDir, name);
      manifest = typeof read === 'object' ? read : undefined;
    } catch (error) {
      if (purpose !== 'save' || !(error instanceof CorruptFileError || error instanceof UnsupportedFormatError)) throw error;
      unreadable = true;
    }
    // Under the lock and the cache's queue, a data file the manifest does not name is the
    // leftover of a crashed writer (nothing of this store is half-committed here).
    if (!unreadable) await this.#removeOrphans(cacheDir, manifest);
    if (state !== undefined && state.manifest !== undefined && manifest?.generation === state.manifest.generation && !unreadable) {
      const size = state.segment === undefined ? undefined : (await lstatOrUndefined(state.segment.path))?.size;
      if (size === state.segment?.end) {
        state.verified = true;
        return state;
      }
    }
    if (state !== undefined) await this.#forget(state);
    state = new CacheState(name, stem, cacheDir);
    state.manifest = manifest;
    state.unreadable = unreadable;
    state.warn = ctx.warn;
    if (manifest !== undefined) {
      state.snapshotBytes = manifest.snapshot?.bytes ?? 0;
      const lastNo = manifest.segments.at(-1);
      for (const no of manifest.segments.slice(0, -1)) state.sealedBytes += (await lstatOrUndefined(path.join(cacheDir, segmentFileName(no))))?.size ?? 0;
      if (lastNo !== undefined && purpose === 'append') state.segment = await this.#openLastSegment(name, cacheDir, lastNo, ctx);
    }
    state.verified = true;
    this.#states.set(stem, state);
    return state;
  }

  /** Reads the header of the last segment and walks its batches to the last whole one. */
  async #openLastSegment(name: string, cacheDir: string, no: number, ctx: StoreContext): Promise<ActiveSegment> {
    const file = path.join(cacheDir, segmentFileName(no));
    const handle = await openForRead(file, name);
    if (handle === undefined) throw new CorruptFileError(file, 'the manifest names it but it does not exist', { cacheName: name });
    let codecName: string;
    let codec: Codec | undefined;
    let walk;
    let size: number;
    try {
      size = await regularFileSize(handle, file, name);
      const { header, end: start } = await readSegmentHeader(handle, size, file, name, no);
      codecName = header.codec;
      codec = header.codec === ctx.codec.name ? ctx.codec : builtinCodec(header.codec);
      walk = await walkSegment(handle, size, file, name, no, start, true);
    } finally {
      await handle.close().catch(() => undefined);
    }
    if (walk.torn !== undefined) await this.#cutTornTail(name, { path: file, offset: walk.end, size, reason: walk.torn.reason }, ctx);
    // A segment of a codec this process lacks is never appended to (a new one is started),
    // so its codec is only needed to read it back, which will fail clearly then.
    const ref: FileRef = { no, kind: 'segment', path: file, codec: codec ?? ctx.codec };
    return { no, path: file, ref, codecName, end: walk.end, handle: undefined, unsynced: false, broken: false };
  }

  /** Makes sure `<stem>.cgc` is a directory; replaces a planted link or an empty file. */
  async #ensureCacheDir(cacheDir: string): Promise<void> {
    const stat = await lstatOrUndefined(cacheDir);
    if (stat?.isDirectory() === true) return;
    if (stat !== undefined) {
      // A link is replaced, never written through; an empty file means nothing saved.
      if (stat.isSymbolicLink() || (stat.isFile() && stat.size === 0)) {
        await io('unlink', cacheDir, () => fs.unlink(cacheDir));
      } else {
        throw new StoreIOError(
          'mkdir',
          cacheDir,
          Object.assign(new Error('something that is not a cache directory is in the way (quarantine or delete it first)'), { code: 'EEXIST' }),
        );
      }
    }
    await io('mkdir', cacheDir, () => fs.mkdir(cacheDir, { mode: this.#dirMode }));
    await syncDir(this.#dir);
  }

  /** Removes data files the manifest does not name (left by a crash), and temp files of dead processes. */
  async #removeOrphans(cacheDir: string, manifest: Manifest | undefined): Promise<void> {
    const named = new Set<number>(manifest === undefined ? [] : [...(manifest.snapshot === null ? [] : [manifest.snapshot.file]), ...manifest.segments]);
    const names = await fs.readdir(cacheDir).catch(() => [] as string[]);
    for (const fileName of names) {
      const n = dataFileNumber(fileName);
      if (n !== undefined && !named.has(n)) await removeFile(path.join(cacheDir, fileName));
    }
  }

  /** Paths of the data files a manifest names. */
  #filesOf(cacheDir: string, manifest: Manifest | undefined): string[] {
    if (manifest === undefined) return [];
    const files = manifest.segments.map((no) => path.join(cacheDir, segmentFileName(no)));
    if (manifest.snapshot !== null) files.push(path.join(cacheDir, snapshotFileName(manifest.snapshot.file)));
    return files;
  }

  /** Paths of every data file in a cache directory. */
  async #dataFiles(cacheDir: string): Promise<string[]> {
    const names = await fs.readdir(cacheDir).catch(() => [] as string[]);
    return names.filter((fileName) => dataFileNumber(fileName) !== undefined).map((fileName) => path.join(cacheDir, fileName));
  }

  /** The number for a new file. */
  async #nextNumber(state: CacheState): Promise<number> {
    if (state.manifest !== undefined) return state.manifest.next;
    let max = 0;
    for (const file of await this.#dataFiles(state.dir)) max = Math.max(max, dataFileNumber(path.basename(file)) ?? 0);
    return max + 1;
  }

  /**
   * Writes `manifest` as the cache's committed state. Before its rename, a failure leaves
   * the old manifest and removes `created`; after it (the directory fsync failed), the
   * new manifest may or may not survive a crash, so nothing is removed and this store
   * forgets what it knew about the cache.
   */
  async #commit(state: CacheState, manifest: Manifest, created: readonly string[]): Promise<void> {
    const file = path.join(state.dir, MANIFEST_FILE);
    try {
      await writeFileAtomic(file, [encodeManifest(manifest)], this.#fileMode);
    } catch (error) {
      await retire(created);
      throw error;
    }
    try {
      await syncDir(state.dir);
    } catch (error) {
      await this.#forget(state);
      throw error;
    }
  }

  async #syncDirOrRemove(dir: string, created: readonly string[]): Promise<void> {
    try {
      await syncDir(dir);
    } catch (error) {
      await retire(created);
      throw error;
    }
  }

  /** Creates segment `n` (its header, and `first` if given), durably, not yet named by the manifest. */
  async #createSegment(state: CacheState, n: number, ctx: StoreContext, first?: EncodedBatch): Promise<ActiveSegment> {
    const file = path.join(state.dir, segmentFileName(n));
    const header = encodeSegmentHeader({ codec: ctx.codec.name, cache: state.name, segment: n, createdAt: timestamp(ctx) });
    const size = await writeFileAtomic(file, [header, ...(first?.pieces ?? [])], this.#fileMode);
    await this.#syncDirOrRemove(state.dir, [file]);
    const ref: FileRef = { no: n, kind: 'segment', path: file, codec: ctx.codec };
    return { no: n, path: file, ref, codecName: ctx.codec.name, end: size, handle: undefined, unsynced: false, broken: false };
  }

  /** First write of a cache by `saveChanges`: an empty base and one segment holding `first`. */
  async #startLog(state: CacheState, ctx: StoreContext, n: number, first: EncodedBatch | undefined): Promise<void> {
    const segment = await this.#createSegment(state, n, ctx, first);
    const manifest: Manifest = { cache: state.name, generation: firstGeneration(), next: n + 1, snapshot: null, segments: [n], savedAt: timestamp(ctx), ...linksOf(ctx, undefined) };
    await this.#commit(state, manifest, [segment.path]);
    state.manifest = manifest;
    state.unreadable = false;
    state.segment = segment;
    state.index = new KeyIndex(ctx.codec);
    state.snapshotBytes = 0;
    state.sealedBytes = 0;
  }

  /**
   * Commits a manifest recording the cache's new dependency links when a batch carries
   * links that differ from the recorded ones (rare: links change with the code, not with
   * the data), so the manifest is not rewritten on every append.
   */
  async #recordLinks(state: CacheState, ctx: StoreContext): Promise<void> {
    const manifest = state.manifest;
    if (manifest === undefined || ctx.dependsOn === undefined || sameLinks(manifest.dependsOn, ctx.dependsOn)) return;
    const next: Manifest = { ...manifest, generation: manifest.generation + 1, ...linksOf(ctx, manifest) };
    await this.#commit(state, next, []);
    state.manifest = next;
  }

  /**
   * Starts a new last segment (the current one is fsync'd first: only the last segment
   * may have a torn tail). Reserves `reserve` more file numbers, returning the first.
   */
  async #rotate(state: CacheState, ctx: StoreContext, reserve: number): Promise<number> {
    const manifest = state.manifest as Manifest;
    const old = state.segment;
    await this.#syncSegment(state, old);
    const n = manifest.next;
    const segment = await this.#createSegment(state, n, ctx);
    const next: Manifest = { ...manifest, generation: manifest.generation + 1, next: n + 1 + reserve, segments: [...manifest.segments, n], savedAt: timestamp(ctx) };
    await this.#commit(state, next, [segment.path]);
    if (old !== undefined) {
      await this.#closeSegment(old);
      state.sealedBytes += old.end;
    }
    state.manifest = next;
    state.segment = segment;
    return n + 1;
  }

  /** Writes one batch at the end of the segment (not fsync'd); cuts it back if the write fails. */
  async #append(state: CacheState, segment: ActiveSegment, encoded: EncodedBatch): Promise<void> {
    if (segment.handle === undefined) {
      const handle = await io('open', segment.path, () => fs.open(segment.path, APPEND_FLAGS));
      try {
        const size = await regularFileSize(handle, segment.path, state.name);
        if (size < segment.end) {
          throw new CorruptFileError(segment.path, `${size} bytes, shorter than its ${segment.end} bytes of batches (changed by another program?)`, {
            offset: size,
            cacheName: state.name,
          });
        }
        // Bytes after the last whole batch: a failed append that could not be cut back.
        if (size > segment.end) await io('truncate', segment.path, () => handle.truncate(segment.end));
      } catch (error) {
        await handle.close().catch(() => undefined);
        throw error;
      }
      segment.handle = handle;
    }
    const handle = segment.handle;
    if (segment.broken) {
      await io('truncate', segment.path, () => handle.truncate(segment.end));
      segment.broken = false;
    }
    try {
      const writer = new FileWriter(handle, segment.path, segment.end);
      for (const piece of encoded.pieces) await writer.write(piece);
      await writer.flush();
    } catch (error) {
      // A disk-full append leaves part of a batch: cut it, so the next append (after space
      // returns) starts at the last whole batch. If even that fails, try again next time.
      await handle.truncate(segment.end).catch(() => {
        segment.broken = true;
      });
      throw error;
    }
    segment.end += encoded.bytes;
    segment.unsynced = true;
  }

  /** fsyncs a segment's pending appends; a failure poisons the cache (see CacheState). */
  async #syncSegment(state: CacheState, segment: ActiveSegment | undefined): Promise<void> {
    if (segment?.unsynced !== true || segment.handle === undefined) return;
    segment.unsynced = false;
    const handle = segment.handle;
    try {
      await handle.sync();
    } catch (error) {
      const failure = new StoreIOError('fsync', segment.path, error);
      state.poisoned = failure;
      throw failure;
    }
  }

  async #closeSegment(segment: ActiveSegment | undefined): Promise<void> {
    const handle = segment?.handle;
    if (segment === undefined || handle === undefined) return;
    segment.handle = undefined;
    await handle.close().catch(() => undefined);
  }

  /** Arms the `'everysec'` timer, if not armed: one fsync pass a second at most. */
  #scheduleFsync(): void {
    if (this.#fsyncTimer !== undefined) return;
    this.#fsyncTimer = this.#timers.setTimeout(() => {
      this.#fsyncTimer = undefined;
      this.#track(this.#syncAll());
    }, EVERYSEC_MS);
  }

  async #syncAll(): Promise<void> {
    for (const state of [...this.#states.values()]) {
      const segment = state.segment;
      if (segment?.unsynced !== true) continue;
      try {
        await this.#exclusive(state.stem, () => this.#syncSegment(state, state.segment === segment ? segment : undefined));
      } catch (error) {
        state.warn?.({
          name: state.name,
          kind: 'fsync-failed',
          message: `fsync of ${segment.path} failed (${error instanceof Error ? error.message : String(error)}); recent changes may not be durable, and the next save of this cache must be a full save`,
          path: segment.path,
        });
      }
    }
  }

  /**
   * After a failed fsync, what the cache's files hold may not all be on disk, and fsyncing
   * them again proves nothing (the kernel may have dropped the failed pages). So the cache
   * is rewritten from its files into a new snapshot, fsync'd, like a compaction, before
   * anything is appended again; if that fails too, the cache stays poisoned.
   */
  async #recover(state: CacheState, ctx: StoreContext): Promise<void> {
    this.#cancelCompaction(state);
    const running = await this.#beginCompaction(state, ctx, true);
    await running?.promise;
    if (running === undefined || state.manifest === undefined) throw state.poisoned;
    state.poisoned = undefined;
  }

  /** Drops what this store knows about a cache (cancelling its compaction, closing handles). */
  async #forget(state: CacheState): Promise<void> {
    this.#cancelCompaction(state);
    await this.#closeSegment(state.segment);
    if (this.#states.get(state.stem) === state) this.#states.delete(state.stem);
  }

  // ------------------------------------------------------------------ compaction

  /** Starts a compaction in the background when the cache's dead bytes pass the thresholds. */
  #maybeCompact(state: CacheState, ctx: StoreContext): void {
    const policy = this.#compaction;
    if (policy === undefined || state.compaction !== undefined || state.manifest === undefined) return;
    if (ctx.clock.now() < state.compactAfter) return;
    let dead: number;
    let total: number;
    if (state.index !== undefined) {
      dead = state.index.deadBytes;
      total = state.index.payloadBytes;
    } else {
      // Not loaded by this store, so overwrites are unknown: Redis' rule instead (rewrite
      // when the log has grown as large as the snapshot), counting log bytes as dead.
      total = state.fileBytes;
      dead = total - state.snapshotBytes;
    }
    if (total <= 0 || dead < policy.minDeadBytes || dead / total < policy.minDeadRatio) return;
    this.#track(
      (async () => {
        try {
          const running = await this.#exclusive(state.stem, async () =>
            this.#states.get(state.stem) === state && state.compaction === undefined && state.manifest !== undefined ? this.#beginCompaction(state, ctx) : undefined,
          );
          await running?.promise;
        } catch (error) {
          ctx.warn?.({
            name: state.name,
            kind: 'compaction-failed',
            message: `Compaction of cache ${JSON.stringify(state.name)} failed, nothing was lost: ${error instanceof Error ? error.message : String(error)}`,
            path: state.dir,
          });
        }
      })(),
    );
  }

  /**
   * Phase 1 (under the cache's queue): seals the last segment and starts a new one in a
   * committed manifest, so appends made during the compaction land after its input.
   * Then runs phases 2 and 3 in the background (or, `recovering`, for the caller to await
   * while it keeps the queue).
   */
  async #beginCompaction(state: CacheState, ctx: StoreContext, recovering = false): Promise<RunningCompaction | undefined> {
    const manifest = state.manifest;
    if (manifest === undefined || this.#shuttingDown) return undefined;
    if (state.poisoned !== undefined && !recovering) throw state.poisoned;
    await this.#syncSegment(state, state.segment);
    const segments: { no: number; path: string; end: number }[] = [];
    for (const no of manifest.segments) {
      const file = path.join(state.dir, segmentFileName(no));
      const end = no === state.segment?.no ? state.segment.end : ((await lstatOrUndefined(file))?.size ?? 0);
      segments.push({ no, path: file, end });
    }
    const snapshot =
      manifest.snapshot === null
        ? null
        : { path: path.join(state.dir, snapshotFileName(manifest.snapshot.file)), bytes: manifest.snapshot.bytes, crc: manifest.snapshot.crc };
    const retired = new Set<number>([...(manifest.snapshot === null ? [] : [manifest.snapshot.file]), ...manifest.segments]);
    const retiredFiles = this.#filesOf(state.dir, manifest);
    const bytesBefore = (snapshot?.bytes ?? 0) + segments.reduce((sum, segment) => sum + segment.end, 0);
    const output = await this.#rotate(state, ctx, 1);
    const identity = state.index?.keys.codec;
    const job: CompactionJob = {
      cacheName: state.name,
      snapshot,
      segments,
      temp: path.join(state.dir, `.${snapshotFileName(output)}${tempSuffix()}`),
      fileMode: this.#fileMode,
      codec: ctx.codec.name,
      identityCodec: identity?.name ?? null,
      now: ctx.clock.now(),
      savedAt: timestamp(ctx),
    };
    const running: RunningCompaction = {
      controller: new AbortController(),
      retired,
      output,
      temp: job.temp,
      cancelled: false,
      promise: Promise.resolve(undefined),
    };
    state.compaction = running;
    running.promise = this.#runCompaction(state, running, job, ctx, identity, retiredFiles, bytesBefore, recovering);
    // Never an unhandled rejection: callers of compact() and the auto-compaction task await it.
    running.promise.catch(() => undefined);
    return running;
  }

  /** Phases 2 (rewrite, off this thread when possible) and 3 (commit, under the queue). */
  async #runCompaction(
    state: CacheState,
    running: RunningCompaction,
    job: CompactionJob,
    ctx: StoreContext,
    identity: Codec | undefined,
    retiredFiles: readonly string[],
    bytesBefore: number,
    inQueue: boolean,
  ): Promise<CompactionResult | undefined> {
    const chunks: CompactedChunk[] = [];
    const collect = (chunk: CompactedChunk): void => {
      chunks.push(chunk);
    };
    const signal = running.controller.signal;
    const inThisThread = (): Promise<CompactionOutput> =>
      compactFiles(job, { codec: ctx.codec, identity, lookup: (name) => (name === ctx.codec.name ? ctx.codec : builtinCodec(name)) }, collect, signal);
    try {
      let output: CompactionOutput;
      const builtin = builtinCodec(ctx.codec.name) === ctx.codec && (identity === undefined || builtinCodec(identity.name) === identity);
      if (this.#compaction?.worker !== false && builtin) {
        try {
          output = await runInWorker(job, collect, signal);
        } catch (error) {
          // An input written with a custom codec: only this thread has it.
          if (!(error instanceof UnsupportedFormatError) || signal.aborted) throw error;
          chunks.length = 0;
          await removeFile(job.temp);
          output = await inThisThread();
        }
      } else {
        output = await inThisThread();
      }
      // A recovery runs inside a saveChanges, which holds the cache's queue already.
      const commit = <T>(task: () => Promise<T>): Promise<T> => (inQueue ? task() : this.#exclusive(state.stem, task));
      return await commit(async () => {
        if (running.cancelled || state.compaction !== running || this.#states.get(state.stem) !== state || state.manifest === undefined) {
          throw new CompactionCancelled();
        }
        const target = path.join(state.dir, snapshotFileName(running.output));
        await io('rename', target, () => fs.rename(job.temp, target));
        await this.#syncDirOrRemove(state.dir, [target]);
        const current = state.manifest;
        const manifest: Manifest = {
          ...current,
          generation: current.generation + 1,
          snapshot: { file: running.output, bytes: output.bytes, crc: output.crc },
          segments: current.segments.filter((no) => !running.retired.has(no)),
          savedAt: timestamp(ctx),
        };
        await this.#commit(state, manifest, [target]);
        state.manifest = manifest;
        state.snapshotBytes = output.bytes;
        state.sealedBytes = 0;
        for (const no of manifest.segments) {
          if (no !== state.segment?.no) state.sealedBytes += (await lstatOrUndefined(path.join(state.dir, segmentFileName(no))))?.size ?? 0;
        }
        const index = state.index;
        if (index !== undefined && index.keys.codec === identity) {
          const ref: FileRef = { no: running.output, kind: 'snapshot', path: target, codec: ctx.codec };
          for (const chunk of chunks) await index.rehome(ref, chunk, chunk, running.retired);
          index.forget(output.expired, running.retired);
          index.dropFiles(running.retired);
        } else {
          // Keys of the new snapshot are unknown: rebuilt on the next load or loadEntry.
          state.index = undefined;
        }
        await retire(retiredFiles);
        state.compactionFailures = 0;
        return { entries: output.entries, bytesBefore, bytesAfter: output.bytes, location: state.dir };
      });
    } catch (error) {
      await removeFile(job.temp);
      if (running.cancelled || error instanceof CompactionCancelled) return undefined;
      state.compactionFailures += 1;
      state.compactAfter = ctx.clock.now() + Math.min(3_600_000, COMPACTION_BACKOFF_MS * 2 ** (state.compactionFailures - 1));
      throw error;
    } finally {
      if (state.compaction === running) state.compaction = undefined;
    }
  }

  /** Cancels a cache's compaction (its worker is terminated; its temp file removed later). */
  #cancelCompaction(state: CacheState): void {
    const running = state.compaction;
    if (running === undefined) return;
    running.cancelled = true;
    running.controller.abort(new CompactionCancelled('compaction cancelled'));
    state.compaction = undefined;
  }
}

/** The links a new manifest records: the save's, else the previous manifest's. */
function linksOf(ctx: StoreContext, previous: Manifest | undefined): { dependsOn?: readonly string[] } {
  const links = ctx.dependsOn ?? previous?.dependsOn;
  return links === undefined ? {} : { dependsOn: [...links] };
}

function sameLinks(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((link, i) => link === b[i]);
}

/** A random first generation: a re-created cache never repeats the generations of its predecessor. */
function firstGeneration(): number {
  return randomInt(1, 2 ** 40);
}

/** `ctx.clock.now()` if it is a finite number, else 0 (a manifest never records NaN). */
function timestamp(ctx: StoreContext): number {
  const now = ctx.clock.now();
  return Number.isFinite(now) ? now : 0;
}

/** Deletes files no manifest names any more. Best effort: leftovers are orphans, removed later. */
async function retire(files: readonly string[]): Promise<void> {
  for (const file of files) await removeFile(file);
}

/** Truncates a file to `length` and fsyncs it. */
async function cutFile(file: string, length: number): Promise<void> {
  const handle = await io('open', file, () => fs.open(file, APPEND_FLAGS));
  try {
    await io('truncate', file, () => handle.truncate(length));
    await io('fsync', file, () => handle.sync());
  } finally {
    await handle.close().catch(() => undefined);
  }
}
