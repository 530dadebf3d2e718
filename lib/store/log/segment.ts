/**
 * Segments: the append logs of a cache. Each sync appends one batch holding only the
 * changed keys; a batch is atomic (it is applied whole or not at all) and checksummed.
 *
 * Byte layout, format version 1 (integers unsigned, big-endian):
 *
 * ```text
 * segment header
 * 0       8  magic: ASCII "CGSEGM" then 0x0D 0x0A
 * 8       2  major version (u16) = 1; readers refuse any other major
 * 10      2  minor version (u16) = 0
 * 12      4  H = header length (u32), at most 64 KiB
 * 16      H  UTF-8 JSON { "codec": string, "cache": string, "segment": n,
 *                         "createdAt": number, "node": string, "v8": string }
 * 16+H    4  crc32 of bytes 0 .. 16+H-1
 *
 * then zero or more batches, each:
 * +0      4  batch magic "CGB1" (0x43 0x47 0x42 0x31)
 * +4      4  segment number (u32), the n of the file's header and name
 * +8      8  savedAt (IEEE 754 double), ms since the epoch by the writer's clock
 * +16     4  flags (u32): bit 0 = cleared (the cache was emptied before this batch's
 *            operations); other bits are 0
 * +20     4  P = number of parts (u32)
 * +24     8  B = body length in bytes (u64, at most 2^53-1)
 * +32     4  crc32 of bytes +0 .. +31 of this batch
 * +36     B  body: P parts, each
 *              +0  4  L = payload length (u32)
 *              +4  4  crc32 of the payload
 *              +8  L  payload = codec.encode(array of operations), where an operation is
 *                     [key, value, expiresAt]   set (expiresAt absolute ms, 0 = never)
 *                     [key]                     delete
 *            The parts must fill B exactly. A part holds at most 1024 operations
 *            (fewer when values are large), so one key is read back by decoding one part.
 * ```
 *
 * Replaying a batch: if cleared, forget everything before it; then apply its operations
 * in order. A set of an existing key moves it to the end (most recently written).
 *
 * A batch that fails any check at the end of the last segment is a torn tail (a crash
 * during an append, or damage to the last batch, which cannot be told apart): it is cut
 * off. Anywhere else it is corruption. The rule, for the first bad batch at offset X of
 * the last segment: if its header checks out, it is a torn tail when it reaches the end
 * of the file (it was being appended when the writer stopped), and corruption when
 * bytes follow it; if its header is damaged, it is a torn tail unless a valid batch of
 * this segment can be found after X (then the damage is in the middle).
 *
 * @module
 */

import type { FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { CorruptFileError, InvalidContentsError, InvalidOptionError, UnsupportedFormatError } from '../../errors.js';
import type { Codec } from '../../codec/types.js';
import { encodePayloads } from '../frame.js';
import type { ChangeBatch, StoredEntry } from '../types.js';
import { readFully, yieldIfBusy } from './fsio.js';
import { encodeJsonBlock } from './manifest.js';

/** `CGSEGM\r\n`. */
export const SEGMENT_MAGIC: Readonly<Uint8Array> = Uint8Array.of(0x43, 0x47, 0x53, 0x45, 0x47, 0x4d, 0x0d, 0x0a);
/** Segment format major version. */
export const SEGMENT_VERSION = 1;
const SEGMENT_MINOR_VERSION = 0;
const PREFIX_SIZE = 16;
const MAX_HEADER_BYTES = 64 * 1024;
/** `CGB1` as a u32. */
const BATCH_MAGIC = 0x43474231;
/** Size of a batch header. */
export const BATCH_HEADER_SIZE = 36;
const PART_HEADER_SIZE = 8;
const FLAG_CLEARED = 1;
/** Most operations in one part. */
export const PART_OPERATIONS = 1024;
const PART_TARGET_BYTES = 16 * 1024 * 1024;
const SCAN_BLOCK_BYTES = 1024 * 1024;

/** What a segment header says. */
export interface SegmentHeader {
  /** Codec of every part in the segment. */
  readonly codec: string;
  /** The cache's real name. */
  readonly cache: string;
  /** The segment's number. */
  readonly segment: number;
  /** When it was created. */
  readonly createdAt: number;
}

/** Encodes a segment header (the whole content of a new segment). */
export function encodeSegmentHeader(header: SegmentHeader): Buffer {
  const json = Buffer.from(
    JSON.stringify({ ...header, node: process.version, v8: process.versions.v8 }),
    'utf8',
  );
  if (json.byteLength > MAX_HEADER_BYTES) throw new RangeError('segment header too long');
  return encodeJsonBlock(SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_MINOR_VERSION, json);
}

/**
 * Reads and verifies a segment's header.
 *
 * @returns the header and the offset of the first batch
 * @throws {CorruptFileError} damaged, truncated, another cache's or another number's
 * @throws {UnsupportedFormatError} a newer major version
 */
export async function readSegmentHeader(
  handle: FileHandle,
  size: number,
  file: string,
  cacheName: string,
  segment: number,
): Promise<{ header: SegmentHeader; end: number }> {
  const corrupt = (reason: string, offset: number): CorruptFileError => new CorruptFileError(file, reason, { offset, cacheName });
  if (size === 0) throw corrupt('empty segment (no header)', 0);
  const prefix = await readFully(handle, 0, Math.min(size, PREFIX_SIZE), file, cacheName);
  for (let i = 0; i < Math.min(prefix.byteLength, SEGMENT_MAGIC.byteLength); i++) {
    if (prefix[i] !== SEGMENT_MAGIC[i]) throw corrupt('not a cachegraph log segment (bad magic bytes)', i);
  }
  if (size < PREFIX_SIZE + 4) throw corrupt(`truncated: ${size} bytes, shorter than a segment header`, size);
  const version = prefix.readUInt16BE(8);
  if (version > SEGMENT_VERSION) {
    throw new UnsupportedFormatError(file, `format version ${version}`, `written by a newer cachegraph (this version reads segment version ${SEGMENT_VERSION})`);
  }
  if (version !== SEGMENT_VERSION) throw corrupt(`segment version ${version} does not exist`, 8);
  const length = prefix.readUInt32BE(12);
  if (length > MAX_HEADER_BYTES || PREFIX_SIZE + length + 4 > size) throw corrupt(`header length ${length} does not fit in the file`, 12);
  const rest = await readFully(handle, PREFIX_SIZE, length + 4, file, cacheName);
  const crc = crc32(rest.subarray(0, length), crc32(prefix));
  if (crc !== rest.readUInt32BE(length)) throw corrupt('header checksum mismatch', PREFIX_SIZE + length);
  let parsed: unknown;
  try {
    parsed = JSON.parse(rest.toString('utf8', 0, length));
  } catch {
    throw corrupt('header is not valid JSON', PREFIX_SIZE);
  }
  const fields = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const { codec, cache, createdAt } = fields;
  if (typeof codec !== 'string' || codec === '' || typeof cache !== 'string' || typeof createdAt !== 'number') {
    throw corrupt('header is not valid', PREFIX_SIZE);
  }
  if (cache !== cacheName) throw corrupt(`it belongs to cache ${JSON.stringify(cache)}, not ${JSON.stringify(cacheName)}`, PREFIX_SIZE);
  if (fields['segment'] !== segment) throw corrupt(`it is segment ${String(fields['segment'])}, not ${segment}`, PREFIX_SIZE);
  return { header: { codec, cache, segment, createdAt }, end: PREFIX_SIZE + length + 4 };
}

/** One part of a batch, as read or written. */
export interface BatchPart {
  /** File offset (when read) or offset within the record (when encoded) of the payload. */
  readonly offset: number;
  /** Payload length. */
  readonly length: number;
  /** crc32 of the payload. */
  readonly crc: number;
  /** Number of operations in the part. */
  readonly operations: number;
}

/** An encoded batch, ready to append. */
export interface EncodedBatch {
  /** The record's bytes, in order. */
  readonly pieces: readonly Uint8Array[];
  /** Total size of the record. */
  readonly bytes: number;
  /** Its parts, with offsets relative to the start of the record. */
  readonly parts: readonly BatchPart[];
  /** The operations, in part order: parts[i] holds the next parts[i].operations of them. */
  readonly operations: readonly (readonly unknown[])[];
}

/** One operation of a batch: a set `[key, value, expiresAt]` or a delete `[key]`. */
export type Operation = readonly [key: unknown, value: unknown, expiresAt: number] | readonly [key: unknown];

/**
 * Encodes a change batch as one record. Nothing is written: a value the codec cannot
 * encode fails here, before the file is touched.
 *
 * @throws {UnserializableError} naming the key of the first entry the codec cannot encode
 * @throws {InvalidContentsError} a set that is not a `[key, value, expiresAt]` triple
 */
export async function encodeBatch(cacheName: string, codec: Codec, segment: number, batch: ChangeBatch, savedAt: number): Promise<EncodedBatch> {
  if (!Number.isFinite(savedAt)) throw new InvalidOptionError('clock', `now() returned ${savedAt}, not a finite number of milliseconds`);
  const operations: (readonly unknown[])[] = [];
  const { sets, deletes } = batch;
  for (let i = 0; i < sets.length; i++) {
    const entry = sets[i];
    if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[2] !== 'number' || !Number.isFinite(entry[2])) {
      throw new InvalidContentsError(cacheName, 'save', `set #${i} is not a [key, value, expiresAt] triple with a finite expiresAt`);
    }
    operations.push(entry);
    if ((i & 0x3fff) === 0x3fff) await yieldIfBusy();
  }
  for (const key of deletes) operations.push([key]);

  const pieces: Uint8Array[] = [];
  const parts: BatchPart[] = [];
  let bodyBytes = 0;
  let limit = PART_OPERATIONS;
  for (let at = 0; at < operations.length; ) {
    const slice = operations.slice(at, at + limit);
    for (const { payload, start, end } of encodePayloads(cacheName, codec, slice)) {
      const partHeader = Buffer.allocUnsafe(PART_HEADER_SIZE);
      const crc = crc32(payload);
      partHeader.writeUInt32BE(payload.byteLength, 0);
      partHeader.writeUInt32BE(crc, 4);
      pieces.push(partHeader, payload);
      parts.push({ offset: BATCH_HEADER_SIZE + bodyBytes + PART_HEADER_SIZE, length: payload.byteLength, crc, operations: end - start });
      bodyBytes += PART_HEADER_SIZE + payload.byteLength;
      if (payload.byteLength > PART_TARGET_BYTES) {
        limit = Math.max(1, Math.floor((limit * PART_TARGET_BYTES) / payload.byteLength));
      } else if (payload.byteLength < PART_TARGET_BYTES / 4) {
        limit = Math.min(PART_OPERATIONS, limit * 2);
      }
    }
    at += slice.length;
    await yieldIfBusy();
  }

  const header = Buffer.allocUnsafe(BATCH_HEADER_SIZE);
  header.writeUInt32BE(BATCH_MAGIC, 0);
  header.writeUInt32BE(segment, 4);
  header.writeDoubleBE(savedAt, 8);
  header.writeUInt32BE(batch.cleared ? FLAG_CLEARED : 0, 16);
  header.writeUInt32BE(parts.length, 20);
  header.writeBigUInt64BE(BigInt(bodyBytes), 24);
  header.writeUInt32BE(crc32(header.subarray(0, 32)), 32);
  return { pieces: [header, ...pieces], bytes: BATCH_HEADER_SIZE + bodyBytes, parts, operations };
}

/** A verified batch read back from a segment. */
export interface ReadBatch {
  /** File offset of the batch. */
  readonly offset: number;
  /** Its total size. */
  readonly bytes: number;
  /** When it was written. */
  readonly savedAt: number;
  /** Whether it starts by clearing the cache. */
  readonly cleared: boolean;
  /** Its parts (file offsets), with `operations` unknown (0) until decoded. */
  readonly parts: readonly BatchPart[];
  /** The payload of each part (views into one buffer; the codec copies what it keeps). */
  readonly payloads: readonly Uint8Array[];
}

/** How a walk over a segment ended. */
export interface SegmentWalk {
  /** Offset just after the last whole batch. */
  readonly end: number;
  /** Set when the walk stopped at a torn tail (only for the last segment). */
  readonly torn?: { readonly offset: number; readonly reason: string };
}

interface HeaderFields {
  readonly savedAt: number;
  readonly cleared: boolean;
  readonly parts: number;
  readonly body: number;
}

/** Parses a batch header; a string says what is wrong with it. */
function parseBatchHeader(bytes: Buffer, segment: number): HeaderFields | string {
  if (bytes.readUInt32BE(0) !== BATCH_MAGIC) return 'bad batch magic';
  if (crc32(bytes.subarray(0, 32)) !== bytes.readUInt32BE(32)) return 'batch header checksum mismatch';
  if (bytes.readUInt32BE(4) !== segment) return `batch of segment ${bytes.readUInt32BE(4)} found in segment ${segment}`;
  const flags = bytes.readUInt32BE(16);
  if ((flags & ~FLAG_CLEARED) !== 0) return `unknown batch flags ${flags}`;
  const body = bytes.readBigUInt64BE(24);
  if (body > BigInt(Number.MAX_SAFE_INTEGER)) return `batch body length ${body} is impossible`;
  const savedAt = bytes.readDoubleBE(8);
  if (!Number.isFinite(savedAt)) return 'batch time is not a number';
  return { savedAt, cleared: (flags & FLAG_CLEARED) !== 0, parts: bytes.readUInt32BE(20), body: Number(body) };
}

/** Splits a body into its parts and checks each; a string says what is wrong. */
function splitParts(body: Buffer, bodyOffset: number, count: number): { parts: BatchPart[]; payloads: Uint8Array[] } | string {
  const parts: BatchPart[] = [];
  const payloads: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + PART_HEADER_SIZE > body.byteLength) return `part ${i} runs past the end of its batch`;
    const length = body.readUInt32BE(at);
    const crc = body.readUInt32BE(at + 4);
    if (length > body.byteLength - at - PART_HEADER_SIZE) return `part ${i} claims ${length} bytes, more than its batch holds`;
    const payload = body.subarray(at + PART_HEADER_SIZE, at + PART_HEADER_SIZE + length);
    if (crc32(payload) !== crc) return `checksum mismatch in part ${i}`;
    parts.push({ offset: bodyOffset + at + PART_HEADER_SIZE, length, crc, operations: 0 });
    payloads.push(payload);
    at += PART_HEADER_SIZE + length;
  }
  if (at !== body.byteLength) return `the parts hold ${at} bytes, the batch announces ${body.byteLength}`;
  return { parts, payloads };
}

/**
 * Reads the batches of a segment from `from` to `size`, verifying each before handing it
 * to `onBatch`. In the last segment a torn tail ends the walk (reported in the result);
 * anywhere else a bad batch is a {@link CorruptFileError} naming the file and offset.
 */
export async function walkSegment(
  handle: FileHandle,
  size: number,
  file: string,
  cacheName: string,
  segment: number,
  from: number,
  last: boolean,
  onBatch?: (batch: ReadBatch) => void | Promise<void>,
): Promise<SegmentWalk> {
  const corrupt = (reason: string, offset: number): CorruptFileError => new CorruptFileError(file, reason, { offset, cacheName });
  let at = from;
  while (at < size) {
    const torn = (reason: string): SegmentWalk => ({ end: at, torn: { offset: at, reason } });
    if (size - at < BATCH_HEADER_SIZE) {
      const reason = `incomplete batch header (${size - at} bytes)`;
      if (last) return torn(reason);
      throw corrupt(reason, at);
    }
    const fields = parseBatchHeader(await readFully(handle, at, BATCH_HEADER_SIZE, file, cacheName), segment);
    if (typeof fields === 'string') {
      if (last && !(await findBatchAfter(handle, size, file, cacheName, segment, at + 1))) return torn(fields);
      throw corrupt(fields, at);
    }
    const end = at + BATCH_HEADER_SIZE + fields.body;
    if (end > size) {
      const reason = `incomplete batch: ${fields.body} bytes announced, ${size - at - BATCH_HEADER_SIZE} present`;
      if (last) return torn(reason);
      throw corrupt(reason, at);
    }
    const body = await readFully(handle, at + BATCH_HEADER_SIZE, fields.body, file, cacheName);
    const split = splitParts(body, at + BATCH_HEADER_SIZE, fields.parts);
    if (typeof split === 'string') {
      // A whole header whose batch reaches the end of the file: the append that was under
      // way when the writer stopped. With bytes after it, it was complete once: damage.
      if (last && end === size) return torn(split);
      throw corrupt(split, at);
    }
    await onBatch?.({ offset: at, bytes: end - at, savedAt: fields.savedAt, cleared: fields.cleared, ...split });
    at = end;
  }
  return { end: at };
}

/** Whether a complete, valid batch of `segment` starts anywhere in `[from, size)`. */
async function findBatchAfter(handle: FileHandle, size: number, file: string, cacheName: string, segment: number, from: number): Promise<boolean> {
  const needle = Buffer.allocUnsafe(8);
  needle.writeUInt32BE(BATCH_MAGIC, 0);
  needle.writeUInt32BE(segment, 4);
  for (let blockStart = from; blockStart + BATCH_HEADER_SIZE <= size; blockStart += SCAN_BLOCK_BYTES) {
    const length = Math.min(SCAN_BLOCK_BYTES + needle.byteLength - 1, size - blockStart);
    const block = await readFully(handle, blockStart, length, file, cacheName);
    for (let hit = block.indexOf(needle); hit !== -1; hit = block.indexOf(needle, hit + 1)) {
      const at = blockStart + hit;
      if (at + BATCH_HEADER_SIZE > size) break;
      const fields = parseBatchHeader(await readFully(handle, at, BATCH_HEADER_SIZE, file, cacheName), segment);
      if (typeof fields === 'string' || at + BATCH_HEADER_SIZE + fields.body > size) continue;
      const body = await readFully(handle, at + BATCH_HEADER_SIZE, fields.body, file, cacheName);
      if (typeof splitParts(body, at + BATCH_HEADER_SIZE, fields.parts) !== 'string') return true;
    }
  }
  return false;
}

/**
 * Decodes one verified part into its operations.
 *
 * @throws {CorruptFileError} when the payload does not decode to operations
 */
export function decodeOperations(codec: Codec, payload: Uint8Array, file: string, offset: number, cacheName: string): Operation[] {
  let decoded: unknown;
  try {
    decoded = codec.decode(payload);
  } catch (error) {
    throw new CorruptFileError(file, `a batch part passed its checksum but codec ${JSON.stringify(codec.name)} cannot decode it`, { offset, cacheName, cause: error });
  }
  if (!Array.isArray(decoded)) throw new CorruptFileError(file, 'a batch part does not decode to a list of operations', { offset, cacheName });
  for (const op of decoded as unknown[]) {
    const ok = Array.isArray(op) && (op.length === 1 || (op.length === 3 && typeof op[2] === 'number'));
    if (!ok) throw new CorruptFileError(file, 'a batch part holds something that is not an operation', { offset, cacheName });
  }
  return decoded as Operation[];
}

/** Whether an operation is a set (else a delete). */
export function isSet(op: Operation): op is readonly [key: unknown, value: unknown, expiresAt: number] {
  return op.length === 3;
}

/** The entry a set operation stands for. */
export function setEntry(op: readonly [unknown, unknown, number]): StoredEntry {
  return op;
}
