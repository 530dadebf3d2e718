/**
 * What FileStore's `describe` reports of a cache directory: sizes from the manifest and the
 * file system, the codec and entry count from the headers and the snapshot's trailer, and
 * the dependency links the manifest records. No value is decoded and no chunk read, so
 * listing a directory of large caches stays cheap.
 *
 * @module
 */

import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { readFrameHeader } from '../frame.js';
import type { StoredInfo } from '../types.js';
import { FileReader, openForRead, readFully } from './fsio.js';
import { readManifest, segmentFileName, snapshotFileName } from './manifest.js';
import { readSegmentHeader } from './segment.js';

/** Offset of the entry count from the end of a frame (see frame.ts: trailer). */
const TRAILER_ENTRIES_FROM_END = 12;

/** What one data file contributed. */
interface FileFacts {
  readonly size: number;
  readonly codec: string;
  /** Bytes past the header (for a segment: its batches). */
  readonly payload: number;
  readonly mtimeMs: number;
  /** Entries in a snapshot's trailer. */
  readonly entries?: number;
}

async function fileFacts(file: string, name: string, read: (handle: FileHandle, size: number) => Promise<Omit<FileFacts, 'size' | 'mtimeMs'>>): Promise<FileFacts | undefined> {
  const handle = await openForRead(file, name);
  if (handle === undefined) return undefined;
  try {
    const stat = await handle.stat();
    return { size: stat.size, mtimeMs: stat.mtimeMs, ...(await read(handle, stat.size)) };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Describes the cache stored in `cacheDir`; `undefined` when nothing is saved there (or its
 * files were replaced meanwhile: the caller may ask again).
 *
 * `savedAt` is the manifest's time, or the last segment's modification time when batches
 * were appended after it (appends do not rewrite the manifest). `entries` is known when
 * no segment holds a batch: the snapshot's trailer counts them.
 *
 * @throws {CorruptFileError} a damaged manifest or header
 * @throws {StoreIOError} a file could not be read
 * @example
 * const info = await describeCacheDir('users', '/srv/cache/users.cgc'); // { entries: 120, dependsOn: [], … }
 */
export async function describeCacheDir(name: string, cacheDir: string): Promise<StoredInfo | undefined> {
  const manifest = await readManifest(cacheDir, name);
  if (typeof manifest !== 'object') return undefined;
  let bytes = 0;
  let logBytes = 0;
  let codec: string | undefined;
  let savedAt = manifest.savedAt;
  let entries: number | undefined = 0;
  if (manifest.snapshot !== null) {
    const file = path.join(cacheDir, snapshotFileName(manifest.snapshot.file));
    const facts = await fileFacts(file, name, async (handle, size) => {
      const header = await readFrameHeader(new FileReader(handle, size, file, name), file);
      const trailer = await readFully(handle, size - TRAILER_ENTRIES_FROM_END, 8, file, name);
      return { codec: header.codec, payload: size, entries: Number(trailer.readBigUInt64BE(0)) };
    });
    if (facts === undefined) return undefined;
    bytes += facts.size;
    codec = facts.codec;
    entries = facts.entries;
  }
  for (const no of manifest.segments) {
    const file = path.join(cacheDir, segmentFileName(no));
    const facts = await fileFacts(file, name, async (handle, size) => {
      const { header, end } = await readSegmentHeader(handle, size, file, name, no);
      return { codec: header.codec, payload: size - end };
    });
    if (facts === undefined) return undefined;
    bytes += facts.size;
    logBytes += facts.size;
    if (facts.payload > 0) {
      // A batch may overwrite or delete keys: only a replay can count them.
      entries = undefined;
      codec = facts.codec;
      savedAt = Math.max(savedAt, Math.floor(facts.mtimeMs));
    }
    codec ??= facts.codec;
  }
  return {
    name,
    entries,
    bytes,
    savedAt,
    codec: codec ?? 'none',
    dependsOn: [...(manifest.dependsOn ?? [])],
    location: cacheDir,
    logBytes,
  };
}
