/**
 * The manifest of a cache directory: which snapshot and which segments, in which order,
 * make up the cache. It is the only file ever replaced, and its replacement (temp file,
 * checked writes, fsync, rename, directory fsync) is the commit point of every change to
 * the set of files; the data files it names are complete and durable before it is written.
 *
 * Byte layout, format version 1 (integers unsigned, big-endian):
 *
 * ```text
 * offset  size  field
 * 0       8     magic: ASCII "CGMANI" then 0x0D 0x0A
 * 8       2     major version (u16) = 1; readers refuse any other major
 * 10      2     minor version (u16) = 0; any minor of a known major is accepted
 * 12      4     L = body length (u32), at most 1 MiB
 * 16      L     body: UTF-8 JSON
 *               { "cache": string,        the cache's real name
 *                 "generation": number,   +1 at every manifest write (1, 2, ...)
 *                 "next": number,         number for the next new file; greater than
 *                                         every file number ever named
 *                 "snapshot": null | { "file": n, "bytes": number, "crc": u32 },
 *                                         file `<n>.snapshot`, its exact size and the crc
 *                                         in its frame trailer
 *                 "segments": [n, ...],   files `<n>.log`, replayed in this order
 *                 "savedAt": number, "node": string, "v8": string,
 *                 "dependsOn"?: [string, ...] }  (minor 1) the caches this one directly
 *                                         depends on, as the last save carried them, so
 *                                         tools can draw and cascade the graph offline
 * 16+L    4     crc32 of bytes 0 .. 16+L-1
 * ```
 *
 * The file is exactly 20 + L bytes. File numbers are integers in 1 .. 2^32-1; segment
 * numbers are also written into every batch of the segment, so a file renamed or copied
 * into the wrong place is caught.
 *
 * @module
 */

import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { CorruptFileError, UnsupportedFormatError } from '../../errors.js';
import { io, openForRead, readFully, syncDir, writeFileAtomic } from './fsio.js';

/** File name of the manifest inside a cache directory. */
export const MANIFEST_FILE = 'MANIFEST';
/** `CGMANI\r\n`. */
export const MANIFEST_MAGIC: Readonly<Uint8Array> = Uint8Array.of(0x43, 0x47, 0x4d, 0x41, 0x4e, 0x49, 0x0d, 0x0a);
/** Manifest format major version. */
export const MANIFEST_VERSION = 1;
/** Minor 1 added `dependsOn` (readers of minor 0 ignore it). */
const MANIFEST_MINOR_VERSION = 1;
const PREFIX_SIZE = 16;
const MAX_BODY_BYTES = 1 << 20;
/** Largest file number (segment numbers are u32 in batch headers). */
export const MAX_FILE_NUMBER = 0xffffffff;

/** The snapshot a manifest names. */
export interface ManifestSnapshot {
  /** Its file number: the file is `<file>.snapshot`. */
  readonly file: number;
  /** Its exact size. */
  readonly bytes: number;
  /** The crc32 in its frame trailer. */
  readonly crc: number;
}

/** What a manifest says. */
export interface Manifest {
  /** The cache's real name. */
  readonly cache: string;
  /** Increases by one at every write of the manifest. */
  readonly generation: number;
  /** Number for the next new file. */
  readonly next: number;
  /** The base snapshot, or `null` (an empty base). */
  readonly snapshot: ManifestSnapshot | null;
  /** Segment numbers, in replay order; the last one is appended to. */
  readonly segments: readonly number[];
  /** When the manifest was written (ms since the epoch). */
  readonly savedAt: number;
  /** The caches this one directly depends on, when a save recorded them. */
  readonly dependsOn?: readonly string[];
}

/** File name of snapshot number `n`. */
export function snapshotFileName(n: number): string {
  return `${n}.snapshot`;
}

/** File name of segment number `n`. */
export function segmentFileName(n: number): string {
  return `${n}.log`;
}

/** The number of a data file name (`12.snapshot`, `13.log`), or `undefined`. */
export function dataFileNumber(fileName: string): number | undefined {
  const match = /^([1-9]\d{0,9})\.(?:snapshot|log)$/.exec(fileName);
  return match === null ? undefined : Number(match[1]);
}

function isFileNumber(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_FILE_NUMBER;
}

/** Encodes a manifest. */
export function encodeManifest(manifest: Manifest): Buffer {
  const body = Buffer.from(
    JSON.stringify({
      cache: manifest.cache,
      generation: manifest.generation,
      next: manifest.next,
      snapshot: manifest.snapshot,
      segments: manifest.segments,
      savedAt: manifest.savedAt,
      node: process.version,
      v8: process.versions.v8,
      ...(manifest.dependsOn === undefined ? {} : { dependsOn: manifest.dependsOn }),
    }),
    'utf8',
  );
  if (body.byteLength > MAX_BODY_BYTES) throw new RangeError(`manifest of ${body.byteLength} bytes exceeds ${MAX_BODY_BYTES}`);
  return encodeJsonBlock(MANIFEST_MAGIC, MANIFEST_VERSION, MANIFEST_MINOR_VERSION, body);
}

/**
 * The framing a manifest and a segment header share: 8 bytes of magic, major and minor
 * version (u16), the JSON length (u32), the JSON, and a crc32 of everything before it.
 */
export function encodeJsonBlock(magic: Uint8Array, major: number, minor: number, json: Uint8Array): Buffer {
  const bytes = Buffer.allocUnsafe(PREFIX_SIZE + json.byteLength + 4);
  bytes.set(magic, 0);
  bytes.writeUInt16BE(major, 8);
  bytes.writeUInt16BE(minor, 10);
  bytes.writeUInt32BE(json.byteLength, 12);
  bytes.set(json, PREFIX_SIZE);
  bytes.writeUInt32BE(crc32(bytes.subarray(0, PREFIX_SIZE + json.byteLength)), PREFIX_SIZE + json.byteLength);
  return bytes;
}

/**
 * Verifies and decodes a manifest.
 *
 * @param cacheName - the cache it must belong to, or `undefined` to accept any (listing)
 * @throws {CorruptFileError} bad magic, length, checksum or contents
 * @throws {UnsupportedFormatError} a newer major version
 */
export function decodeManifest(bytes: Uint8Array, file: string, cacheName: string | undefined): Manifest {
  const details = (offset: number): { offset: number; cacheName?: string } =>
    cacheName === undefined ? { offset } : { offset, cacheName };
  const corrupt = (reason: string, offset: number): CorruptFileError => new CorruptFileError(file, reason, details(offset));
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < Math.min(buffer.byteLength, MANIFEST_MAGIC.byteLength); i++) {
    if (buffer[i] !== MANIFEST_MAGIC[i]) throw corrupt('not a cachegraph manifest (bad magic bytes)', i);
  }
  if (buffer.byteLength < PREFIX_SIZE + 4) throw corrupt(`truncated: ${buffer.byteLength} bytes`, buffer.byteLength);
  const version = buffer.readUInt16BE(8);
  if (version > MANIFEST_VERSION) {
    throw new UnsupportedFormatError(
      file,
      `format version ${version}`,
      `written by a newer cachegraph (this version reads manifest version ${MANIFEST_VERSION})`,
    );
  }
  if (version !== MANIFEST_VERSION) throw corrupt(`manifest version ${version} does not exist`, 8);
  const length = buffer.readUInt32BE(12);
  if (length > MAX_BODY_BYTES || PREFIX_SIZE + length + 4 !== buffer.byteLength) {
    throw corrupt(`body length ${length} does not match the ${buffer.byteLength}-byte file (truncated or damaged)`, 12);
  }
  if (crc32(buffer.subarray(0, PREFIX_SIZE + length)) !== buffer.readUInt32BE(PREFIX_SIZE + length)) {
    throw corrupt('checksum mismatch', PREFIX_SIZE + length);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(buffer.toString('utf8', PREFIX_SIZE, PREFIX_SIZE + length));
  } catch {
    throw corrupt('body is not valid JSON', PREFIX_SIZE);
  }
  const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const { cache, generation, next, snapshot, segments, savedAt, dependsOn } = body;
  const invalid = (what: string): CorruptFileError => corrupt(`invalid ${what}`, PREFIX_SIZE);
  if (typeof cache !== 'string') throw invalid('cache name');
  if (cacheName !== undefined && cache !== cacheName) {
    throw corrupt(`it belongs to cache ${JSON.stringify(cache)}, not ${JSON.stringify(cacheName)}`, PREFIX_SIZE);
  }
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 1) throw invalid('generation');
  if (!isFileNumber(next) && next !== MAX_FILE_NUMBER + 1) throw invalid('next file number');
  if (typeof savedAt !== 'number' || !Number.isFinite(savedAt)) throw invalid('savedAt');
  let base: ManifestSnapshot | null = null;
  const seen = new Set<number>();
  if (snapshot !== null) {
    const s = (typeof snapshot === 'object' && snapshot !== undefined ? snapshot : {}) as Record<string, unknown>;
    if (!isFileNumber(s['file']) || s['file'] >= next) throw invalid('snapshot file number');
    if (typeof s['bytes'] !== 'number' || !Number.isSafeInteger(s['bytes']) || s['bytes'] < 0) throw invalid('snapshot size');
    if (typeof s['crc'] !== 'number' || !Number.isInteger(s['crc']) || s['crc'] < 0 || s['crc'] > 0xffffffff) throw invalid('snapshot crc');
    base = { file: s['file'], bytes: s['bytes'], crc: s['crc'] };
    seen.add(base.file);
  }
  if (!Array.isArray(segments)) throw invalid('segment list');
  for (const n of segments as unknown[]) {
    if (!isFileNumber(n) || n >= next || seen.has(n)) throw invalid('segment list');
    seen.add(n);
  }
  if (dependsOn !== undefined && (!Array.isArray(dependsOn) || !dependsOn.every((link) => typeof link === 'string'))) throw invalid('dependency list');
  const manifest: Manifest = { cache, generation, next, snapshot: base, segments: segments as number[], savedAt };
  return dependsOn === undefined ? manifest : { ...manifest, dependsOn: dependsOn as string[] };
}

/**
 * Reads the manifest of a cache directory: `undefined` when there is none, `'empty'` for a
 * zero-byte file (nothing saved, like a missing one).
 *
 * @throws {CorruptFileError} damaged, a link, not a regular file, or another cache's
 * @throws {StoreIOError} op `open`, `stat` or `read`
 */
export async function readManifest(cacheDir: string, cacheName: string | undefined): Promise<Manifest | 'empty' | undefined> {
  const file = path.join(cacheDir, MANIFEST_FILE);
  const handle = await openForRead(file, cacheName ?? '');
  if (handle === undefined) return undefined;
  try {
    const stat = await io('stat', file, () => handle.stat());
    if (!stat.isFile()) throw new CorruptFileError(file, 'not a regular file', cacheName === undefined ? {} : { cacheName });
    if (stat.size === 0) return 'empty';
    if (stat.size > PREFIX_SIZE + MAX_BODY_BYTES + 4) {
      throw new CorruptFileError(file, `${stat.size} bytes, larger than any manifest`, cacheName === undefined ? {} : { cacheName });
    }
    return decodeManifest(await readFully(handle, 0, stat.size, file, cacheName ?? ''), file, cacheName);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Replaces the manifest of a cache directory atomically and durably: temp file, checked
 * writes, fsync, rename, directory fsync. After it resolves the new manifest is the
 * committed state; if it rejects before the rename, the old one still is.
 *
 * @throws {StoreIOError} op `open`, `write`, `fsync`, `close`, `rename` or `fsync-dir`
 */
export async function writeManifest(cacheDir: string, manifest: Manifest, fileMode: number): Promise<void> {
  const file = path.join(cacheDir, MANIFEST_FILE);
  await writeFileAtomic(file, [encodeManifest(manifest)], fileMode);
  await syncDir(cacheDir);
}

/** Removes a file, ignoring its absence. */
export async function removeFile(file: string): Promise<void> {
  await fs.unlink(file).catch(() => undefined);
}
