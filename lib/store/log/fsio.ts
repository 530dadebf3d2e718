/**
 * File I/O shared by FileStore and its compaction worker: open flags, checked reads and
 * writes, atomic file replacement, directory fsync, temp-file names, and a cooperative
 * yield for long loops.
 *
 * Every write loops until all bytes are written and a write that makes no progress is an
 * error: trusting one short write is how npm's write-file-atomic renamed truncated files
 * over good ones on full disks.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { CacheGraphError, CorruptFileError, StoreIOError } from '../../errors.js';
import type { FrameReader } from '../frame.js';

// Flags missing on a platform are 0: O_NOFOLLOW does not exist on Windows (symlinks are
// then refused by an lstat before opening), O_NONBLOCK keeps a FIFO planted at a cache
// path from blocking the open forever.
const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fsConstants.O_NONBLOCK ?? 0;

/** Whether this platform refuses to open a symbolic link by itself (O_NOFOLLOW). */
export const HAS_NOFOLLOW = O_NOFOLLOW !== 0;
/** Reading a store file: never through a symbolic link, never blocking on a FIFO. */
export const READ_FLAGS = fsConstants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
/** Creating a temp file: it must not exist, and must not be a link. */
export const CREATE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | O_NOFOLLOW;
/** Appending to an existing segment (positional writes; no O_APPEND, the store tracks the end). */
export const APPEND_FLAGS = fsConstants.O_WRONLY | O_NOFOLLOW;

/** Errors of fsync on a directory that mean "not supported here", not "failed". */
const DIR_FSYNC_UNSUPPORTED = new Set(['EINVAL', 'EISDIR', 'EPERM', 'EACCES', 'ENOTSUP', 'EBADF']);

const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Pieces at least this large are written directly rather than copied into the buffer. */
const DIRECT_WRITE_BYTES = 256 * 1024;

/** The `code` of a system error, if any. */
export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Runs an fs call; system errors become {@link StoreIOError} naming `op` and `file`. */
export async function io<T>(op: string, file: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof CacheGraphError) throw error;
    throw new StoreIOError(op, file, error);
  }
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) !== 'ESRCH';
  }
}

/** Suffix of temp files: `.tmp-<pid>-<12 hex>`; the pid tells whether the writer still runs. */
export function tempSuffix(): string {
  return `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Pid of a temp name made with {@link tempSuffix} (after `prefix`), or `undefined`. */
export function tempOwner(fileName: string, prefix: string): number | undefined {
  if (!fileName.startsWith(prefix)) return undefined;
  const match = /\.tmp-(\d+)-[0-9a-f]+$/.exec(fileName.slice(prefix.length - 1));
  return match === null ? undefined : Number(match[1]);
}

/** Writes `bytes` at `position` completely, looping over short writes. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const at = position + done;
    const { bytesWritten } = await io('write', file, () => handle.write(bytes, done, bytes.byteLength - done, at));
    if (!(bytesWritten > 0)) {
      throw new StoreIOError('write', file, new Error(`short write: ${bytesWritten} of ${bytes.byteLength - done} bytes at offset ${at}`));
    }
    done += bytesWritten;
  }
}

/**
 * Writes pieces at increasing positions from `start`, coalescing small ones into a 1 MiB
 * buffer. Each flush awaits real I/O, which also lets the event loop run between pieces.
 */
export class FileWriter {
  readonly #handle: FileHandle;
  readonly #file: string;
  readonly #buffer = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
  #used = 0;
  #position: number;
  readonly #signal: AbortSignal | undefined;

  constructor(handle: FileHandle, file: string, start = 0, signal?: AbortSignal) {
    this.#handle = handle;
    this.#file = file;
    this.#position = start;
    this.#signal = signal;
  }

  /** Bytes written or buffered so far (the position of the next piece). */
  get position(): number {
    return this.#position + this.#used;
  }

  async write(piece: Uint8Array): Promise<void> {
    if (piece.byteLength >= DIRECT_WRITE_BYTES) {
      await this.flush();
      await this.#writeOut(piece);
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
    await this.#writeOut(this.#buffer.subarray(0, used));
  }

  async #writeOut(bytes: Uint8Array): Promise<void> {
    this.#signal?.throwIfAborted();
    await writeFully(this.#handle, bytes, this.#position, this.#file);
    this.#position += bytes.byteLength;
  }
}

/** Reads exactly `length` bytes at `offset` into memory of its own (not Buffer's shared pool). */
export async function readFully(handle: FileHandle, offset: number, length: number, file: string, cacheName: string): Promise<Buffer> {
  // Not from the shared pool: file bytes go to the codec and must not share memory with
  // unrelated buffers.
  const bytes = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await io('read', file, () => handle.read(bytes, done, length - done, offset + done));
    if (bytesRead === 0) {
      throw new CorruptFileError(file, 'the file became shorter while being read', { offset: offset + done, cacheName });
    }
    done += bytesRead;
  }
  return bytes;
}

/** A {@link FrameReader} over an open file. */
export class FileReader implements FrameReader {
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

  read(offset: number, length: number): Promise<Uint8Array> {
    return readFully(this.#handle, offset, length, this.#file, this.#cacheName);
  }
}

/**
 * Opens a store file for reading without following a symbolic link; `undefined` if absent.
 *
 * @throws {CorruptFileError} when a symbolic link sits at `file`
 * @throws {StoreIOError} op `open` for any other failure
 */
export async function openForRead(file: string, cacheName: string): Promise<FileHandle | undefined> {
  const refuseLink = (): CorruptFileError =>
    new CorruptFileError(file, 'it is a symbolic link, which a cache file never is; refusing to follow it', { cacheName });
  if (!HAS_NOFOLLOW) {
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

/**
 * fsyncs a directory so a rename, link or unlink in it survives power loss.
 *
 * @throws {StoreIOError} op `fsync-dir`, unless the platform cannot fsync directories
 */
export async function syncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(dir, fsConstants.O_RDONLY);
    await handle.sync();
  } catch (error) {
    const code = errorCode(error);
    // Some platforms (Windows, some network file systems) cannot fsync a directory.
    if (code === undefined || !DIR_FSYNC_UNSUPPORTED.has(code)) throw new StoreIOError('fsync-dir', dir, error);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * Writes a new file atomically: streams `pieces` into a temp file next to `target`
 * (created exclusively, never through a link), fsyncs and closes it, then renames it over
 * `target`. The caller fsyncs the directory when the rename must be durable. On failure the
 * temp file is removed and `target` is untouched.
 *
 * `reportAs` is the path named in errors (the file the user knows about).
 *
 * @returns the number of bytes written
 */
export async function writeFileAtomic(
  target: string,
  pieces: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  mode: number,
  reportAs = target,
): Promise<number> {
  const temp = path.join(path.dirname(target), `.${path.basename(target)}${tempSuffix()}`);
  let handle: FileHandle | undefined;
  try {
    handle = await io('open', reportAs, () => fs.open(temp, CREATE_FLAGS, mode));
    const writer = new FileWriter(handle, reportAs);
    for await (const piece of pieces) {
      await writer.write(piece);
      // Producing pieces (encoding) is synchronous work between the buffered writes.
      await yieldIfBusy();
    }
    await writer.flush();
    const written = handle;
    await io('fsync', reportAs, () => written.sync());
    handle = undefined;
    await io('close', reportAs, () => written.close());
    await io('rename', reportAs, () => fs.rename(temp, target));
    return writer.position;
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await fs.unlink(temp).catch(() => undefined);
    throw error;
  }
}

// Captured at load time: a sinon fake installed later must not swallow our yields (and
// fake timers freeze performance.now(), so under them we simply never yield).
const realSetImmediate = globalThis.setImmediate;
let lastYield = 0;

/**
 * Lets the event loop run if the current task has held it for `budgetMs` or more. Called
 * in long synchronous loops (decoding, merging, index updates) so that no step of a large
 * load, save or compaction blocks other work for long.
 */
export async function yieldIfBusy(budgetMs = 8): Promise<void> {
  const now = performance.now();
  if (now - lastYield < budgetMs) return;
  await new Promise<void>((resolve) => realSetImmediate(resolve));
  lastYield = performance.now();
}

/** Marks the start of a task for {@link yieldIfBusy} (after an await that yielded anyway). */
export function noteYield(): void {
  lastYield = performance.now();
}
