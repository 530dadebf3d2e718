/**
 * Reading a cache's files: the full read behind `load` (manifest, snapshot, segments,
 * replay, index) and the single-record read behind `loadEntry`.
 *
 * @module
 */

import type { Stats } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { builtinCodec } from '../../codec/index.js';
import type { Codec } from '../../codec/types.js';
import { CorruptFileError, StoreIOError, UnsupportedFormatError } from '../../errors.js';
import { decodeFrame } from '../frame.js';
import type { StoreContext, StoredEntry } from '../types.js';
import { errorCode, FileReader, io, openForRead, readFully, yieldIfBusy } from './fsio.js';
import { KeyIndex, type FileRef, type IndexRecord } from './key-index.js';
import { isPrimitiveKey, objectIdentity, Patch } from './keys.js';
import { readManifest, segmentFileName, snapshotFileName, type Manifest } from './manifest.js';
import { decodeOperations, isSet, readSegmentHeader, walkSegment, type Operation } from './segment.js';

/** Retries of a read whose files were retired by another process meanwhile. */
export const READ_ATTEMPTS = 5;

/** What a full read of a cache found. */
export interface LoadedCache {
  readonly manifest: Manifest;
  readonly entries: StoredEntry[];
  readonly index: KeyIndex;
  readonly savedAt: number;
  readonly codec: string;
  readonly snapshotBytes: number;
  readonly sealedBytes: number;
  readonly last: { readonly no: number; readonly path: string; readonly ref: FileRef; readonly codecName: string; readonly end: number } | undefined;
  readonly torn: TornTail | undefined;
}

export interface TornTail {
  readonly path: string;
  readonly offset: number;
  readonly size: number;
  readonly reason: string;
}

/** A file the manifest names was gone when opened (retired by a writer meanwhile?). */
class Vanished extends Error {
  constructor(
    readonly file: string,
    readonly generation: number,
  ) {
    super(`${file} vanished`);
  }
}

/** Returned by a record read whose file was retired meanwhile. */
export const MISSING = Symbol('missing');

function sameKey(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b); // SameValueZero, as Map keys
}

/** lstat, or `undefined` when nothing is there. */
export async function lstatOrUndefined(file: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(file);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new StoreIOError('stat', file, error);
  }
}

/**
 * Reads a cache's manifest, snapshot and segments (every byte checked before decoding),
 * replays the segments and builds the per-key index; `undefined` when nothing is saved.
 * Retries when a writer retires the files between the manifest read and their opening.
 * A torn last batch is reported in the result, not cut (that is a write).
 *
 * @throws {CorruptFileError} damage anywhere but the end of the last segment; a missing file
 * @throws {UnsupportedFormatError} a newer format or an unknown codec
 */
export async function readCache(name: string, cacheDir: string, ctx: StoreContext): Promise<LoadedCache | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readOnce(name, cacheDir, ctx);
    } catch (error) {
      if (!(error instanceof Vanished)) throw error;
      const now = await readManifest(cacheDir, name).catch(() => undefined);
      const changed = typeof now !== 'object' || now.generation !== error.generation;
      if (!changed || attempt >= READ_ATTEMPTS) {
        throw new CorruptFileError(error.file, 'the manifest names it but it does not exist', { cacheName: name });
      }
    }
  }
}

async function readOnce(name: string, cacheDir: string, ctx: StoreContext): Promise<LoadedCache | undefined> {
  if (!(await isCacheDir(cacheDir, name))) return undefined;
  const manifest = await readManifest(cacheDir, name);
  if (manifest === undefined || manifest === 'empty') return undefined;
  const handles: FileHandle[] = [];
  try {
    // Open everything first: once open, files a writer retires can still be read.
    const open = async (file: string): Promise<FileHandle> => {
      const handle = await openForRead(file, name);
      if (handle === undefined) throw new Vanished(file, manifest.generation);
      handles.push(handle);
      return handle;
    };
    const snapshotPath = manifest.snapshot === null ? undefined : path.join(cacheDir, snapshotFileName(manifest.snapshot.file));
    const snapshotHandle = snapshotPath === undefined ? undefined : await open(snapshotPath);
    const segmentHandles: FileHandle[] = [];
    for (const no of manifest.segments) segmentHandles.push(await open(path.join(cacheDir, segmentFileName(no))));

    const index = new KeyIndex(ctx.codec);
    let base: StoredEntry[] = [];
    let savedAt = manifest.savedAt;
    let codec = ctx.codec.name;
    let snapshotBytes = 0;
    if (manifest.snapshot !== null && snapshotHandle !== undefined && snapshotPath !== undefined) {
      const expected = manifest.snapshot;
      const size = await regularFileSize(snapshotHandle, snapshotPath, name);
      if (size !== expected.bytes) {
        throw new CorruptFileError(snapshotPath, `${size} bytes where the manifest says ${expected.bytes} (truncated or replaced)`, {
          offset: Math.min(size, expected.bytes),
          cacheName: name,
        });
      }
      const ref: FileRef = { no: expected.file, kind: 'snapshot', path: snapshotPath, codec: ctx.codec };
      const frame = await decodeFrame(new FileReader(snapshotHandle, size, snapshotPath, name), snapshotPath, {
        codec: ctx.codec,
        cacheName: name,
        onChunk: (chunk, entries) => index.addChunk(ref, chunk, entries),
      });
      if (frame.crc !== expected.crc) {
        throw new CorruptFileError(snapshotPath, 'it is not the snapshot the manifest names (its checksum differs)', { offset: size - 4, cacheName: name });
      }
      ref.codec = frame.header.codec === ctx.codec.name ? ctx.codec : (builtinCodec(frame.header.codec) as Codec);
      base = frame.entries;
      savedAt = frame.header.savedAt;
      codec = frame.header.codec;
      snapshotBytes = size;
    }

    const patch = new Patch(ctx.codec);
    let sealedBytes = 0;
    let last: LoadedCache['last'];
    let torn: TornTail | undefined;
    for (const [i, no] of manifest.segments.entries()) {
      const handle = segmentHandles[i] as FileHandle;
      const file = path.join(cacheDir, segmentFileName(no));
      const size = await regularFileSize(handle, file, name);
      const { header, end: start } = await readSegmentHeader(handle, size, file, name, no);
      const segmentCodec = header.codec === ctx.codec.name ? ctx.codec : builtinCodec(header.codec);
      if (segmentCodec === undefined) {
        throw new UnsupportedFormatError(file, `codec ${header.codec}`, `written with codec ${JSON.stringify(header.codec)} which this process does not have`);
      }
      const ref: FileRef = { no, kind: 'segment', path: file, codec: segmentCodec };
      const isLast = i === manifest.segments.length - 1;
      const walk = await walkSegment(handle, size, file, name, no, start, isLast, async (batch) => {
        if (batch.cleared) {
          patch.clear();
          index.clear();
        }
        for (const [j, part] of batch.parts.entries()) {
          const operations = decodeOperations(segmentCodec, batch.payloads[j] as Uint8Array, file, part.offset, name);
          index.addPart(ref, { ...part, operations: operations.length }, operations);
          for (const op of operations) patch.apply(op);
          await yieldIfBusy();
        }
        savedAt = batch.savedAt;
        codec = header.codec;
      });
      if (isLast) {
        last = { no, path: file, ref, codecName: header.codec, end: walk.end };
        if (walk.torn !== undefined) torn = { path: file, offset: walk.end, size, reason: walk.torn.reason };
      } else {
        sealedBytes += size;
      }
    }
    const entries = patch.empty ? base : await patch.merge(base);
    return { manifest, entries, index, savedAt, codec, snapshotBytes, sealedBytes, last, torn };
  } finally {
    await Promise.allSettled(handles.map((handle) => handle.close()));
  }
}

export async function regularFileSize(handle: FileHandle, file: string, name: string): Promise<number> {
  const stat = await io('stat', file, () => handle.stat());
  if (!stat.isFile()) throw new CorruptFileError(file, 'not a regular file', { cacheName: name });
  return stat.size;
}

/**
 * Whether a cache directory is there; `false` for nothing or a zero-byte file.
 *
 * @throws {CorruptFileError} a link, a non-empty file or anything else is in its place
 */
async function isCacheDir(cacheDir: string, name: string): Promise<boolean> {
  const stat = await lstatOrUndefined(cacheDir);
  if (stat === undefined) return false;
  if (stat.isDirectory()) return true;
  if (stat.isSymbolicLink()) {
    throw new CorruptFileError(cacheDir, 'it is a symbolic link, which a cache directory never is; refusing to follow it', { cacheName: name });
  }
  if (stat.isFile() && stat.size === 0) return false;
  throw new CorruptFileError(cacheDir, stat.isFile() ? 'a file where the cache directory should be (not written by this version of cachegraph?)' : 'not a directory', {
    cacheName: name,
  });
}

/**
 * Reads the snapshot chunk or batch part holding `key` (checksum verified) and returns the
 * key's entry in it, or {@link MISSING} when the file was retired meanwhile.
 */
export async function readRecord(name: string, record: IndexRecord, key: unknown, identityCodec: Codec): Promise<StoredEntry | undefined | typeof MISSING> {
  const file = record.file.path;
  const handle = await openForRead(file, name);
  if (handle === undefined) return MISSING;
  let payload: Buffer;
  try {
    payload = await readFully(handle, record.offset, record.length, file, name);
  } finally {
    await handle.close().catch(() => undefined);
  }
  if (crc32(payload) !== record.crc) {
    throw new CorruptFileError(file, 'checksum mismatch in the record holding the key', { offset: record.offset, cacheName: name });
  }
  const codec = record.file.codec;
  let items: readonly Operation[];
  if (record.file.kind === 'segment') {
    items = decodeOperations(codec, payload, file, record.offset, name);
  } else {
    let decoded: unknown;
    try {
      decoded = codec.decode(payload);
    } catch (error) {
      throw new CorruptFileError(file, `a chunk passed its checksum but codec ${JSON.stringify(codec.name)} cannot decode it`, { offset: record.offset, cacheName: name, cause: error });
    }
    const valid = Array.isArray(decoded) && decoded.every((entry) => Array.isArray(entry) && entry.length === 3 && typeof entry[2] === 'number');
    if (!valid) throw new CorruptFileError(file, 'a chunk holds something that is not a [key, value, expiresAt] entry', { offset: record.offset, cacheName: name });
    items = decoded as Operation[];
  }
  const primitive = isPrimitiveKey(key);
  const id = primitive ? undefined : objectIdentity(identityCodec, key);
  let found: StoredEntry | undefined;
  for (const item of items) {
    const matches = primitive ? sameKey(item[0], key) : !isPrimitiveKey(item[0]) && objectIdentity(identityCodec, item[0]) === id;
    if (matches && isSet(item)) found = item;
  }
  return found;
}

