/**
 * The default store: one file per cache, `<dir>/<stem>.cgc`, in the frame format of
 * `frame.ts`, replaced atomically.
 *
 * A save never touches the existing file: it streams the new frame into a temp file in
 * the same directory, checks every write, fsyncs it, renames it over the old file and
 * fsyncs the directory (Redis RDB's recipe). A crash at any point leaves either the old
 * or the new file, complete, plus perhaps a temp file that later saves and loads remove.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CacheGraphError, CorruptFileError, InvalidNameError, InvalidOptionError, StoreIOError } from '../errors.js';
import { decodeFrame, encodeFrame, readFrameHeader, type FrameReader, type FrameSummary } from './frame.js';
import { fromFileName, isHashedFileName, toFileName } from './names.js';
import type { CacheStore, SaveResult, StoreContext, StoredEntry, StoredSnapshot } from './types.js';

/**
 * Extension of cache files.
 *
 * @example
 * path.basename(store.locate('users')); // 'users' + FILE_EXTENSION
 */
export const FILE_EXTENSION = '.cgc';

// Flags missing on a platform are 0: O_NOFOLLOW does not exist on Windows (symlinks are
// then refused by an lstat before opening), O_NONBLOCK keeps a FIFO planted at a cache
// path from blocking the open forever.
const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fsConstants.O_NONBLOCK ?? 0;
const READ_FLAGS = fsConstants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
const WRITE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | O_NOFOLLOW;

/** Errors of fsync on a directory that mean "not supported here", not "failed". */
const DIR_FSYNC_UNSUPPORTED = new Set(['EINVAL', 'EISDIR', 'EPERM', 'EACCES', 'ENOTSUP', 'EBADF']);

const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Pieces at least this large are written directly rather than copied into the buffer. */
const DIRECT_WRITE_BYTES = 256 * 1024;

/**
 * Options of {@link FileStore}.
 *
 * @example
 * const options: FileStoreOptions = { dir: './.cache', fileMode: 0o640 };
 */
export interface FileStoreOptions {
  /** Directory holding the cache files; created (recursively) on the first save. */
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
}

const modeSchema = z.number().int().min(0).max(0o777);
const optionsSchema = z.strictObject({
  dir: z.string().min(1),
  fileMode: modeSchema.optional(),
  dirMode: modeSchema.optional(),
});

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Runs an fs call; system errors become {@link StoreIOError} naming `op` and `file`. */
async function io<T>(op: string, file: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof CacheGraphError) throw error;
    throw new StoreIOError(op, file, error);
  }
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) !== 'ESRCH';
  }
}

/**
 * Writes pieces at increasing positions, coalescing small ones. Every write loops until
 * all bytes are written: a short write is normal (signals, quotas), and trusting one is
 * how write-file-atomic renamed truncated files over good ones on full disks.
 */
class FileWriter {
  readonly #handle: FileHandle;
  readonly #file: string;
  readonly #buffer = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
  #used = 0;
  #position = 0;

  constructor(handle: FileHandle, file: string) {
    this.#handle = handle;
    this.#file = file;
  }

  async write(piece: Uint8Array): Promise<void> {
    if (piece.byteLength >= DIRECT_WRITE_BYTES) {
      await this.flush();
      await this.#writeFully(piece);
      return;
    }
    if (this.#used + piece.byteLength > this.#buffer.byteLength) await this.flush();
    this.#buffer.set(piece, this.#used);
    this.#used += piece.byteLength;
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const used = this.#used;
    this.#used = 0;
    await this.#writeFully(this.#buffer.subarray(0, used));
  }

  async #writeFully(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const position = this.#position + done;
      const { bytesWritten } = await io('write', this.#file, () =>
        this.#handle.write(bytes, done, bytes.byteLength - done, position),
      );
      if (!(bytesWritten > 0)) {
        // No progress and no error: retrying could spin forever.
        throw new StoreIOError('write', this.#file, new Error(`short write: 0 of ${bytes.byteLength - done} bytes written at offset ${position}`));
      }
      done += bytesWritten;
    }
    this.#position += bytes.byteLength;
  }
}

/** A {@link FrameReader} over an open file; every read is checked for its full length. */
class FileReader implements FrameReader {
  readonly size: number;
  readonly #handle: FileHandle;
  readonly #file: string;
  readonly #cacheName: string;

  constructor(handle: FileHandle, size: number, file: string, cacheName: string) {
    this.#handle = handle;
    this.size = size;
    this.#file = file;
    this.#cacheName = cacheName;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    // Not from Buffer's shared pool: file bytes go to the codec and must not share memory
    // with unrelated buffers.
    const bytes = Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await io('read', this.#file, () => this.#handle.read(bytes, done, length - done, offset + done));
      if (bytesRead === 0) {
        throw new CorruptFileError(this.#file, 'the file became shorter while being read', { offset: offset + done, cacheName: this.#cacheName });
      }
      done += bytesRead;
    }
    return bytes;
  }
}

/**
 * Persists caches as files in one directory. The default store of a `CacheManager`.
 *
 * - Files are `<dir>/<stem>.cgc`, `stem` from `names.ts` (safe, injective, never outside
 *   `dir`), mode 0600 in a 0700 directory created on the first save.
 * - Saves are atomic (temp file, checked writes, fsync, rename, directory fsync). On
 *   failure the previous file is intact, the temp file removed, and the error is a
 *   {@link StoreIOError} (op and path) or the codec's `UnserializableError`.
 * - Loads verify the whole file first (see `frame.ts`); a missing or zero-byte file is
 *   "nothing saved", anything damaged is a `CorruptFileError` naming the path. A symbolic
 *   link at a cache path is never followed: it is reported as a `CorruptFileError`, so
 *   `quarantine` can move the link itself aside.
 * - Temp files left by a crashed process (`.<stem>.cgc.tmp-<pid>-<random>`, pid no longer
 *   running) are removed on the first save or load of their cache.
 *
 * The store holds no handle between calls: `close()` has nothing to release, and the store
 * stays usable afterwards.
 *
 * @example
 * const store = new FileStore({ dir: './.cache' });
 * await store.save('users', [['u1', { name: 'Ada' }, 0]], { codec: v8Codec, clock: systemClock });
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
  /** Stems whose crash debris was already looked for by this store. */
  readonly #swept = new Set<string>();

  /**
   * @param options - the directory, and file and directory modes
   * @throws {InvalidOptionError} naming the option, for a missing `dir`, a bad mode, or an unknown key
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
    this.#dir = path.resolve(parsed.data.dir);
    this.#fileMode = parsed.data.fileMode ?? 0o600;
    this.#dirMode = parsed.data.dirMode ?? 0o700;
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
   * The absolute path of `name`'s file (whether or not it exists).
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
   * Reads `name`'s file; `undefined` when there is none (or it is empty).
   *
   * @throws {CorruptFileError} damaged, truncated, not a regular file, a symbolic link, or another cache's file
   * @throws {UnsupportedFormatError} newer format, or a codec this process lacks
   * @throws {StoreIOError} the file could not be opened or read
   * @example
   * const snapshot = await store.load('users', { codec: v8Codec, clock: systemClock });
   */
  async load(name: string, ctx: StoreContext): Promise<StoredSnapshot | undefined> {
    const file = this.locate(name);
    await this.#sweep(name);
    const handle = await this.#openForRead(file, name);
    if (handle === undefined) return undefined;
    try {
      const stat = await io('stat', file, () => handle.stat());
      if (!stat.isFile()) throw new CorruptFileError(file, 'not a regular file', { cacheName: name });
      if (stat.size === 0) return undefined;
      const frame = await decodeFrame(new FileReader(handle, stat.size, file, name), file, { codec: ctx.codec, cacheName: name });
      return { entries: frame.entries, savedAt: frame.header.savedAt, location: file, bytes: frame.bytes, codec: frame.header.codec };
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /**
   * Replaces `name`'s file with `entries`, atomically. `entries` is read while writing:
   * pass a snapshot if the cache can change meanwhile.
   *
   * @throws {UnserializableError} an entry the codec cannot encode (nothing changed on disk)
   * @throws {StoreIOError} op `mkdir`, `open`, `write`, `fsync`, `close`, `rename` or `fsync-dir`;
   *   except for `fsync-dir` the previous file is intact
   * @example
   * await store.save('users', cache.entriesForSave(), { codec: v8Codec, clock: systemClock });
   */
  async save(name: string, entries: Iterable<StoredEntry>, ctx: StoreContext): Promise<SaveResult> {
    const file = this.locate(name);
    const stem = toFileName(name);
    await io('mkdir', this.#dir, () => fs.mkdir(this.#dir, { recursive: true, mode: this.#dirMode }));
    await this.#sweep(name);
    const temp = path.join(this.#dir, `.${stem}${FILE_EXTENSION}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    let handle: FileHandle | undefined;
    let summary: FrameSummary;
    try {
      handle = await io('open', file, () => fs.open(temp, WRITE_FLAGS, this.#fileMode));
      const writer = new FileWriter(handle, file);
      const frame = encodeFrame(name, entries, ctx);
      for (let step = frame.next(); ; step = frame.next()) {
        if (step.done === true) {
          summary = step.value;
          break;
        }
        await writer.write(step.value);
      }
      await writer.flush();
      const written = handle;
      await io('fsync', file, () => written.sync());
      handle = undefined;
      await io('close', file, () => written.close());
      await io('rename', file, () => fs.rename(temp, file));
    } catch (error) {
      await handle?.close().catch(() => undefined);
      await fs.unlink(temp).catch(() => undefined);
      throw error;
    }
    // After the rename: the new file is complete, but not durably linked until this.
    await this.#syncDir();
    return { entries: summary.entries, bytes: summary.bytes, location: file };
  }

  /**
   * Removes `name`'s file; `true` if there was one.
   *
   * @throws {StoreIOError} op `delete` or `fsync-dir`
   * @example
   * await store.delete('users'); // true
   */
  async delete(name: string): Promise<boolean> {
    const file = this.locate(name);
    try {
      await fs.unlink(file);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false;
      throw new StoreIOError('delete', file, error);
    }
    // Without it a crash could bring an invalidated cache back to life.
    await this.#syncDir();
    return true;
  }

  /**
   * Whether something exists at `name`'s path (it may still be damaged).
   *
   * @throws {StoreIOError} op `stat`
   * @example
   * await store.has('users'); // true
   */
  async has(name: string): Promise<boolean> {
    const file = this.locate(name);
    try {
      await fs.lstat(file);
      return true;
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw new StoreIOError('stat', file, error);
    }
  }

  /**
   * Names of the caches with a file, sorted. Temp and quarantined files, and files that
   * are not the canonical file of any name, are skipped; hashed names are read from the
   * file header (skipped when unreadable).
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
      if (!dirent.isFile() && !dirent.isSymbolicLink()) continue;
      const stem = fileName.slice(0, -FILE_EXTENSION.length);
      const name = fromFileName(stem);
      if (name !== undefined) {
        names.push(name);
      } else if (isHashedFileName(stem) && dirent.isFile()) {
        const recorded = await this.#readRecordedName(path.join(this.#dir, fileName));
        if (recorded !== undefined && toFileName(recorded) === stem) names.push(recorded);
      }
    }
    return names.sort();
  }

  /**
   * Renames `name`'s file to `<file>.corrupt-<time>` (time from `ctx.clock`, ISO 8601
   * without colons; `-1`, `-2`... appended if taken) and returns the new path, or
   * `undefined` when there is no file.
   *
   * @throws {StoreIOError} op `quarantine`
   * @example
   * await store.quarantine('users', ctx); // '/…/users.cgc.corrupt-2024-05-01T120000.000Z'
   */
  async quarantine(name: string, ctx: StoreContext): Promise<string | undefined> {
    const file = this.locate(name);
    const time = new Date(ctx.clock.now());
    const stamp = Number.isNaN(time.getTime()) ? 'unknown-time' : time.toISOString().replaceAll(':', '');
    let target = `${file}.corrupt-${stamp}`;
    // rename() replaces silently: never let a second quarantine destroy the first.
    for (let n = 1; await this.#exists(target); n++) target = `${file}.corrupt-${stamp}-${n}`;
    try {
      await fs.rename(file, target);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw new StoreIOError('quarantine', file, error);
    }
    await this.#syncDir();
    return target;
  }

  /**
   * Nothing to release (no handle outlives a call); idempotent, and the store stays usable.
   *
   * @example
   * await store.close();
   */
  async close(): Promise<void> {
    // Deliberately empty: see the class comment.
  }

  async #exists(file: string): Promise<boolean> {
    try {
      await fs.lstat(file);
      return true;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false;
      throw new StoreIOError('stat', file, error);
    }
  }

  /** Opens a cache file for reading without following a symlink; `undefined` if absent. */
  async #openForRead(file: string, name: string): Promise<FileHandle | undefined> {
    const refuseLink = (): CorruptFileError =>
      new CorruptFileError(file, 'it is a symbolic link, which a cache file never is; refusing to follow it', { cacheName: name });
    if (O_NOFOLLOW === 0) {
      // No O_NOFOLLOW (Windows): check first. Racy, but Windows needs privileges to plant links.
      const stat = await fs.lstat(file).catch(() => undefined);
      if (stat?.isSymbolicLink() === true) throw refuseLink();
    }
    try {
      return await fs.open(file, READ_FLAGS);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return undefined;
      // ELOOP (Linux) / EMLINK (FreeBSD): the last component is a link and O_NOFOLLOW refused it.
      if (code === 'ELOOP' || code === 'EMLINK') {
        const stat = await fs.lstat(file).catch(() => undefined);
        if (stat?.isSymbolicLink() === true) throw refuseLink();
      }
      throw new StoreIOError('open', file, error);
    }
  }

  /** The cache name recorded in a file's header (unverified), or `undefined`. */
  async #readRecordedName(file: string): Promise<string | undefined> {
    let handle: FileHandle | undefined;
    try {
      handle = await fs.open(file, READ_FLAGS);
      const stat = await handle.stat();
      if (!stat.isFile()) return undefined;
      return (await readFrameHeader(new FileReader(handle, stat.size, file, ''), file)).cache;
    } catch {
      return undefined;
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }

  /**
   * Removes temp files of `name` left by processes that no longer run, once per store and
   * name. Best effort: debris is never loaded, so failing to remove it is not an error.
   * Temp files of live processes (this one included) may be saves in progress: kept.
   */
  async #sweep(name: string): Promise<void> {
    const stem = toFileName(name);
    if (this.#swept.has(stem)) return;
    this.#swept.add(stem);
    const prefix = `.${stem}${FILE_EXTENSION}.tmp-`;
    let fileNames: string[];
    try {
      fileNames = await fs.readdir(this.#dir);
    } catch {
      return;
    }
    for (const fileName of fileNames) {
      if (!fileName.startsWith(prefix)) continue;
      const match = /^(\d+)-[0-9a-f]+$/.exec(fileName.slice(prefix.length));
      if (match === null) continue;
      const pid = Number(match[1]);
      if (pid === process.pid || isAlive(pid)) continue;
      await fs.unlink(path.join(this.#dir, fileName)).catch(() => undefined);
    }
  }

  /** fsyncs the directory so a rename or unlink survives power loss. */
  async #syncDir(): Promise<void> {
    let handle: FileHandle | undefined;
    try {
      handle = await fs.open(this.#dir, fsConstants.O_RDONLY);
      await handle.sync();
    } catch (error) {
      const code = errorCode(error);
      // Some platforms (Windows, some network file systems) cannot fsync a directory.
      if (code === undefined || !DIR_FSYNC_UNSUPPORTED.has(code)) throw new StoreIOError('fsync-dir', this.#dir, error);
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }
}
