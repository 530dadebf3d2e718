/**
 * The snapshot format shared by every store: a versioned, checksummed, chunked binary
 * frame around codec-encoded entries. FileStore streams it to disk, MemoryStore keeps it
 * as one blob; both read it back through {@link decodeFrame}, which verifies every byte
 * before the codec sees any.
 *
 * Byte layout, format version 1 (all integers unsigned, big-endian):
 *
 * ```text
 * offset         size  field
 * ------         ----  -----
 * 0              8     magic: ASCII "CGRAPH" then 0x0D 0x0A ("\r\n": a text-mode copy that
 *                      rewrites line endings breaks the magic instead of the payload)
 * 8              2     format major version (u16) = 1; readers refuse any other major
 * 10             2     format minor version (u16) = 0; readers accept any minor of their
 *                      major (a minor bump may only add header fields)
 * 12             4     H = header length in bytes (u32), at most 1 MiB
 * 16             H     header: UTF-8 JSON object
 *                      { "codec": string, "cache": string, "savedAt": number,
 *                        "node": string, "v8": string }
 *                      codec = name of the codec that encoded every chunk;
 *                      cache = the cache's real name (file names may be hashed);
 *                      savedAt = ms since the epoch, from the saving manager's clock;
 *                      node, v8 = process.version, process.versions.v8 of the writer
 * 16+H           ...   zero or more chunks, each:
 *                        +0  4  L = payload length (u32), 0 <= L <= 0xFFFFFFFE
 *                        +4  4  crc32 of the payload (u32)
 *                        +8  L  payload = codec.encode(array of [key, value, expiresAt])
 *                      Chunks hold at most 4096 entries, fewer when the encoded entries
 *                      are large (aiming at <= 16 MiB per chunk), so no single encode or
 *                      decode has to handle the whole cache. Empty caches have no chunk.
 * size-20        4     trailer marker 0xFFFFFFFF (never a valid chunk length)
 * size-16        4     number of chunks (u32)
 * size-12        8     number of entries (u64, <= 2^53 - 1)
 * size-4         4     crc32 (node:zlib) of every byte of the file before this field
 * ```
 *
 * The trailer sits at a fixed distance from the end, so a truncated file is recognised
 * without trusting any length field: the chunk walk must land exactly on it.
 *
 * Reading checks, in this order, and allocates nothing a length field asks for before
 * that length has been checked against the bytes actually there:
 * 1. magic, major version, header length (structure only);
 * 2. walk of the chunk lengths to the trailer, every chunk's crc and the file's crc;
 * 3. header contents, cache name, codec;
 * 4. decoding, chunk by chunk, each chunk's crc verified again on the bytes handed to
 *    the codec (a file can change between two reads; the codec only sees checked bytes);
 * 5. that the chunks decode to `[key, value, expiresAt]` triples, as many as announced.
 *
 * @module
 */

import { crc32 } from 'node:zlib';
import {
  CorruptFileError,
  InvalidContentsError,
  InvalidNameError,
  InvalidOptionError,
  UnserializableError,
  UnsupportedFormatError,
} from '../errors.js';
import { builtinCodec } from '../codec/index.js';
import type { Codec } from '../codec/types.js';
import type { StoreContext, StoredEntry } from './types.js';

/**
 * The first 8 bytes of every frame: `CGRAPH\r\n`.
 *
 * @example
 * Buffer.from(FRAME_MAGIC).toString('latin1'); // 'CGRAPH\r\n'
 */
export const FRAME_MAGIC: Readonly<Uint8Array> = Uint8Array.of(0x43, 0x47, 0x52, 0x41, 0x50, 0x48, 0x0d, 0x0a);
/**
 * The format major version this module writes and reads.
 *
 * @example
 * Buffer.from(frameBytes).readUInt16BE(8) === FRAME_VERSION; // true
 */
export const FRAME_VERSION = 1;
/**
 * The format minor version this module writes.
 *
 * @example
 * Buffer.from(frameBytes).readUInt16BE(10) === FRAME_MINOR_VERSION; // true
 */
export const FRAME_MINOR_VERSION = 0;
/**
 * Largest header accepted: far above any real one, far below a harmful allocation.
 *
 * @example
 * Buffer.from(frameBytes).readUInt32BE(12) <= MAX_HEADER_BYTES; // true
 */
export const MAX_HEADER_BYTES = 1 << 20;
/**
 * Default number of entries per chunk.
 *
 * @example
 * encodeFrame('users', entries, ctx, { chunkEntries: DEFAULT_CHUNK_ENTRIES / 4 });
 */
export const DEFAULT_CHUNK_ENTRIES = 4096;
/**
 * Default target size of a chunk's payload.
 *
 * @example
 * encodeFrame('blobs', entries, ctx, { chunkBytes: DEFAULT_CHUNK_BYTES / 4 });
 */
export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;

const PREFIX_SIZE = 16;
const CHUNK_HEADER_SIZE = 8;
const TRAILER_SIZE = 20;
const TRAILER_MARKER = 0xffffffff;
const MAX_PAYLOAD_BYTES = 0xfffffffe;
/** Block size of the checksum pass: bounds memory while reading a huge chunk. */
const VERIFY_BLOCK_BYTES = 1024 * 1024;

/**
 * What the header of a frame says.
 *
 * @example
 * const header: FrameHeader = await readFrameHeader(bytes, 'memory:users');
 * header.cache; // 'users'
 */
export interface FrameHeader {
  /** Format major version. */
  readonly version: number;
  /** Name of the codec the chunks were encoded with. */
  readonly codec: string;
  /** The cache's name. */
  readonly cache: string;
  /** When it was saved, ms since the epoch. */
  readonly savedAt: number;
  /** `process.version` of the writer. */
  readonly node: string;
  /** `process.versions.v8` of the writer. */
  readonly v8: string;
}

/**
 * Tuning of {@link encodeFrame}; the defaults suit every cache size.
 *
 * @example
 * const options: FrameEncodeOptions = { chunkEntries: 1024, chunkBytes: 4 * 1024 * 1024 };
 */
export interface FrameEncodeOptions {
  /**
   * Most entries per chunk.
   * @default 4096
   */
  readonly chunkEntries?: number;
  /**
   * Target payload size of a chunk: after a chunk above it, the next ones take fewer
   * entries (down to one); after small ones, more again.
   * @default 16 MiB
   */
  readonly chunkBytes?: number;
  /**
   * Called for every chunk written, with where its payload sits in the frame and the
   * entries it holds (FileStore indexes keys by chunk this way, for single-key reads).
   */
  readonly onChunk?: (chunk: FrameChunk, entries: readonly StoredEntry[]) => void;
}

/**
 * Where one chunk's payload sits inside a frame, and its checksum.
 *
 * @example
 * const chunk: FrameChunk = { offset: 120, length: 4096, crc: 0x1234abcd };
 */
export interface FrameChunk {
  /** Byte offset of the payload from the start of the frame (after its 8-byte chunk header). */
  readonly offset: number;
  /** Payload length in bytes. */
  readonly length: number;
  /** crc32 of the payload. */
  readonly crc: number;
}

/**
 * What {@link encodeFrame} wrote, returned when its generator finishes.
 *
 * @example
 * const { summary } = encodeFrameToBytes('users', entries, ctx);
 * summary.entries; // entries.length
 */
export interface FrameSummary {
  /** Entries written. */
  readonly entries: number;
  /** Chunks written. */
  readonly chunks: number;
  /** Total bytes of the frame. */
  readonly bytes: number;
}

/**
 * Random access to the bytes of a frame: a file handle, a buffer, a blob in a database.
 * `read` resolves exactly `length` bytes (or rejects), in a view the caller may keep.
 *
 * @example
 * const reader: FrameReader = { size: blob.length, read: async (offset, length) => blob.subarray(offset, offset + length) };
 * await decodeFrame(reader, 'redis:cg:users', { codec: v8Codec });
 */
export interface FrameReader {
  /** Total size in bytes. */
  readonly size: number;
  /**
   * `true` when two reads of the same range always return the same bytes (an in-memory
   * buffer), which spares the second checksum of each chunk.
   */
  readonly stable?: boolean;
  /** Reads `length` bytes at `offset`; never called beyond `size`. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/**
 * A decoded, verified frame.
 *
 * @example
 * const { header, entries, bytes }: DecodedFrame = await decodeFrame(blob, 'memory:users', { codec: v8Codec });
 */
export interface DecodedFrame {
  /** Its header. */
  readonly header: FrameHeader;
  /** Its entries, in saved order. */
  readonly entries: StoredEntry[];
  /** Its size in bytes. */
  readonly bytes: number;
  /** The frame's checksum (its last four bytes). */
  readonly crc: number;
}

/**
 * What {@link decodeFrame} needs besides the bytes.
 *
 * @example
 * await decodeFrame(blob, path, { codec: ctx.codec, cacheName: 'users' });
 */
export interface FrameDecodeOptions {
  /** The current codec; used when the header names it, else the built-in of that name. */
  readonly codec: Codec;
  /** The cache the frame must belong to; a frame of another cache is corrupt. */
  readonly cacheName?: string;
  /** Called after each chunk is decoded, with its place in the frame and its entries. */
  readonly onChunk?: (chunk: FrameChunk, entries: readonly StoredEntry[]) => void;
}

/**
 * A {@link FrameReader} over bytes in memory.
 *
 * @example
 * const reader = bytesReader(encodeFrameToBytes('users', [], ctx).bytes);
 */
export function bytesReader(bytes: Uint8Array): FrameReader {
  return {
    size: bytes.byteLength,
    stable: true,
    read(offset: number, length: number): Promise<Uint8Array> {
      if (offset < 0 || length < 0 || offset + length > bytes.byteLength) {
        return Promise.reject(new RangeError(`read of ${length} bytes at ${offset} is outside ${bytes.byteLength} bytes`));
      }
      return Promise.resolve(bytes.subarray(offset, offset + length));
    },
  };
}

/** Checks an entry handed to a save: a bad one would write a file that can never load. */
function assertEntry(cacheName: string, entry: unknown, index: number): asserts entry is StoredEntry {
  if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[2] !== 'number' || !Number.isFinite(entry[2])) {
    throw new InvalidContentsError(cacheName, 'save', `entry #${index} is not a [key, value, expiresAt] triple with a finite expiresAt`);
  }
}

/**
 * The error for an entry the codec refused: the key, and where inside the entry when the
 * codec's `check` can tell (it usually can; the encoder's own message is the fallback).
 */
function unserializable(cacheName: string, codec: Codec, entry: StoredEntry, cause: unknown): UnserializableError {
  const [key, value] = entry;
  let path = '';
  let reason = cause instanceof Error ? cause.message : String(cause);
  if (cause instanceof RangeError && /size|length|too large|allocation/i.test(reason)) {
    reason = `too large to encode in one piece: ${reason}`;
  }
  try {
    const keyProblem = codec.check?.(key);
    const problem = keyProblem ?? codec.check?.(value);
    if (problem !== undefined) {
      path = keyProblem === undefined ? problem.path : '(key)';
      reason = problem.reason;
    }
  } catch {
    // A custom check that throws adds nothing; the encoder's message stands.
  }
  return new UnserializableError(cacheName, key, codec.name, path, reason, { cause });
}

/**
 * One encoded payload and the items it holds (`items.slice(start, end)`).
 *
 * @example
 * for (const { payload, start, end } of encodePayloads('users', v8Codec, entries)) write(payload);
 */
export interface EncodedPayload {
  /** The codec's bytes. */
  readonly payload: Uint8Array;
  /** Index of the first item it holds. */
  readonly start: number;
  /** Index after the last item it holds. */
  readonly end: number;
}

/**
 * Encodes `items` (entries `[key, value, expiresAt]`, or any array whose first element is
 * a key and second a value) as one or more payloads. When the codec throws on several
 * items (an unencodable value, or too much for one buffer or string), they are split in
 * two and each half retried, left first, so payloads come in item order; a single item
 * that still fails is the culprit and is reported by key.
 *
 * @throws {UnserializableError} naming the key of the first item the codec cannot encode
 * @example
 * const parts = [...encodePayloads('users', v8Codec, [['a', 1, 0], ['b', 2, 0]])];
 */
export function* encodePayloads(
  cacheName: string,
  codec: Codec,
  items: readonly (readonly unknown[])[],
): Generator<EncodedPayload, void, undefined> {
  const ranges: [number, number][] = [[0, items.length]];
  while (ranges.length > 0) {
    const [start, end] = ranges.pop() as [number, number];
    if (start === end) continue;
    let payload: Uint8Array | undefined;
    let failure: unknown;
    try {
      payload = codec.encode(start === 0 && end === items.length ? items : items.slice(start, end));
      if (!(payload instanceof Uint8Array)) {
        throw new TypeError(`codec ${JSON.stringify(codec.name)} returned ${typeof payload} instead of a Uint8Array`);
      }
      if (payload.byteLength > MAX_PAYLOAD_BYTES) throw new RangeError(`encoded size ${payload.byteLength} exceeds the chunk size limit`);
    } catch (error) {
      failure = error;
      payload = undefined;
    }
    if (payload !== undefined) {
      yield { payload, start, end };
    } else if (end - start === 1) {
      throw unserializable(cacheName, codec, items[start] as StoredEntry, failure);
    } else {
      const middle = start + Math.floor((end - start) / 2);
      ranges.push([middle, end], [start, middle]);
    }
  }
}

/**
 * Encodes a cache as a frame, piece by piece, so a store can stream it to disk without
 * holding the whole file in memory. The generator returns a {@link FrameSummary}.
 *
 * `entries` is consumed lazily, while the pieces are being written: pass a snapshot if
 * the cache may change meanwhile.
 *
 * @throws {UnserializableError} naming the key of the first entry the codec cannot encode
 * @throws {InvalidContentsError} when an entry is not a `[key, value, expiresAt]` triple
 * @throws {InvalidOptionError} option `clock`, when `ctx.clock.now()` is not a finite number
 * @example
 * const frame = encodeFrame('users', [['u1', { name: 'Ada' }, 0]], { codec: v8Codec, clock: systemClock });
 * for (const piece of frame) await file.write(piece);
 */
export function* encodeFrame(
  cacheName: string,
  entries: Iterable<StoredEntry>,
  ctx: StoreContext,
  options: FrameEncodeOptions = {},
): Generator<Uint8Array, FrameSummary, undefined> {
  const codec = ctx.codec;
  const maxEntries = Math.max(1, Math.floor(options.chunkEntries ?? DEFAULT_CHUNK_ENTRIES));
  const targetBytes = Math.max(1, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  let crc = 0;
  let bytes = 0;
  let chunks = 0;
  let count = 0;

  const savedAt = ctx.clock.now();
  // JSON would write NaN as null, and the file could never be read back.
  if (!Number.isFinite(savedAt)) throw new InvalidOptionError('clock', `now() returned ${savedAt}, not a finite number of milliseconds`);
  const header = Buffer.from(
    JSON.stringify({
      codec: codec.name,
      cache: cacheName,
      savedAt,
      node: process.version,
      v8: process.versions.v8,
    }),
    'utf8',
  );
  if (header.byteLength > MAX_HEADER_BYTES) throw new InvalidNameError(cacheName, 'too long to be recorded in a file header');
  const prefix = Buffer.allocUnsafe(PREFIX_SIZE + header.byteLength);
  prefix.set(FRAME_MAGIC, 0);
  prefix.writeUInt16BE(FRAME_VERSION, 8);
  prefix.writeUInt16BE(FRAME_MINOR_VERSION, 10);
  prefix.writeUInt32BE(header.byteLength, 12);
  prefix.set(header, PREFIX_SIZE);
  crc = crc32(prefix, crc);
  bytes += prefix.byteLength;
  yield prefix;

  // Entries per chunk adapts to the size of the values: start at the maximum, shrink after
  // a chunk over the target, grow back after small ones.
  let limit = maxEntries;
  let batch: StoredEntry[] = [];

  const onChunk = options.onChunk;

  function* flush(): Generator<Uint8Array, void, undefined> {
    for (const { payload, start, end } of encodePayloads(cacheName, codec, batch)) {
      const chunkHeader = Buffer.allocUnsafe(CHUNK_HEADER_SIZE);
      const payloadCrc = crc32(payload);
      chunkHeader.writeUInt32BE(payload.byteLength, 0);
      chunkHeader.writeUInt32BE(payloadCrc, 4);
      crc = crc32(payload, crc32(chunkHeader, crc));
      onChunk?.({ offset: bytes + CHUNK_HEADER_SIZE, length: payload.byteLength, crc: payloadCrc }, start === 0 && end === batch.length ? batch : batch.slice(start, end));
      bytes += CHUNK_HEADER_SIZE + payload.byteLength;
      chunks += 1;
      yield chunkHeader;
      yield payload;
      if (payload.byteLength > targetBytes) {
        limit = Math.max(1, Math.floor((limit * targetBytes) / payload.byteLength));
      } else if (payload.byteLength < targetBytes / 4) {
        limit = Math.min(maxEntries, limit * 2);
      }
    }
    batch = [];
  }

  for (const entry of entries) {
    assertEntry(cacheName, entry, count);
    batch.push(entry);
    count += 1;
    if (batch.length >= limit) yield* flush();
  }
  if (batch.length > 0) yield* flush();

  const trailer = Buffer.allocUnsafe(TRAILER_SIZE);
  trailer.writeUInt32BE(TRAILER_MARKER, 0);
  trailer.writeUInt32BE(chunks, 4);
  trailer.writeBigUInt64BE(BigInt(count), 8);
  crc = crc32(trailer.subarray(0, TRAILER_SIZE - 4), crc);
  trailer.writeUInt32BE(crc, TRAILER_SIZE - 4);
  bytes += TRAILER_SIZE;
  yield trailer;
  return { entries: count, chunks, bytes };
}

/**
 * The checksum of a frame, read from its trailer (the last piece {@link encodeFrame}
 * yields, or the frame's last bytes); {@link DecodedFrame.crc} gives it on reading.
 *
 * @example
 * frameChecksum(bytes) === (await decodeFrame(bytes, 'mem', { codec: v8Codec })).crc; // true
 */
export function frameChecksum(trailerOrFrame: Uint8Array): number {
  if (trailerOrFrame.byteLength < TRAILER_SIZE) throw new RangeError('not a frame trailer');
  return view(trailerOrFrame).getUint32(trailerOrFrame.byteLength - 4);
}

/**
 * Encodes a cache as one frame in memory.
 *
 * @throws {UnserializableError} naming the key of the first entry the codec cannot encode
 * @example
 * const { bytes } = encodeFrameToBytes('users', [['u1', 1, 0]], { codec: v8Codec, clock: systemClock });
 */
export function encodeFrameToBytes(
  cacheName: string,
  entries: Iterable<StoredEntry>,
  ctx: StoreContext,
  options: FrameEncodeOptions = {},
): { bytes: Uint8Array; summary: FrameSummary } {
  const pieces: Uint8Array[] = [];
  const frame = encodeFrame(cacheName, entries, ctx, options);
  for (;;) {
    const step = frame.next();
    if (step.done === true) return { bytes: Buffer.concat(pieces, step.value.bytes), summary: step.value };
    pieces.push(step.value);
  }
}

/** Compares dotted version strings by their leading numeric parts (`11.3.244.8-node.38`). */
function compareVersions(a: string, b: string): number {
  const parts = (version: string): number[] => (version.match(/\d+/g) ?? []).slice(0, 4).map(Number);
  const left = parts(a);
  const right = parts(b);
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

function toReader(input: Uint8Array | FrameReader): FrameReader {
  return input instanceof Uint8Array ? bytesReader(input) : input;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A chunk located and checksummed by the verification pass. */
interface ChunkInfo {
  readonly offset: number;
  readonly length: number;
  readonly crc: number;
}

/**
 * Reads and checks the fixed prefix, returning the header length. Shared by
 * {@link decodeFrame} and {@link readFrameHeader}.
 */
async function readPrefix(reader: FrameReader, source: string, cacheName: string | undefined): Promise<{ prefix: Uint8Array; headerLength: number }> {
  const size = reader.size;
  const details = (offset: number): { offset: number; cacheName?: string } =>
    cacheName === undefined ? { offset } : { offset, cacheName };
  if (size === 0) throw new CorruptFileError(source, 'empty', details(0));
  const prefix = await reader.read(0, Math.min(size, PREFIX_SIZE));
  const magicBytes = Math.min(prefix.byteLength, FRAME_MAGIC.byteLength);
  for (let i = 0; i < magicBytes; i++) {
    if (prefix[i] !== FRAME_MAGIC[i]) throw new CorruptFileError(source, 'not a cachegraph file (bad magic bytes)', details(i));
  }
  if (size < PREFIX_SIZE) {
    throw new CorruptFileError(source, `truncated: ${size} bytes, shorter than the ${PREFIX_SIZE}-byte fixed header`, details(size));
  }
  const fields = view(prefix);
  const version = fields.getUint16(8);
  if (version > FRAME_VERSION) {
    throw new UnsupportedFormatError(
      source,
      `format version ${version}`,
      `written by a newer cachegraph (this version reads format version ${FRAME_VERSION})`,
    );
  }
  if (version !== FRAME_VERSION) throw new CorruptFileError(source, `format version ${version} does not exist`, details(8));
  const headerLength = fields.getUint32(12);
  if (headerLength > MAX_HEADER_BYTES || PREFIX_SIZE + headerLength + TRAILER_SIZE > size) {
    throw new CorruptFileError(
      source,
      `header length ${headerLength} does not fit in the ${size}-byte file (truncated or damaged)`,
      details(12),
    );
  }
  return { prefix, headerLength };
}

/** Parses header JSON; `undefined` when it is not a valid version-1 header. */
function parseHeader(bytes: Uint8Array): FrameHeader | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { codec, cache, savedAt, node, v8 } = parsed as Record<string, unknown>;
  if (typeof codec !== 'string' || codec === '' || typeof cache !== 'string' || typeof savedAt !== 'number') return undefined;
  if (!Number.isFinite(savedAt) || typeof node !== 'string' || typeof v8 !== 'string') return undefined;
  return { version: FRAME_VERSION, codec, cache, savedAt, node, v8 };
}

/**
 * Reads only the header of a frame, WITHOUT verifying the checksum (that needs the whole
 * frame). For listings: FileStore reads the cache name of files whose names are hashed.
 *
 * @throws {CorruptFileError} bad magic, truncated, or unreadable header
 * @throws {UnsupportedFormatError} newer format version
 * @example
 * const { cache } = await readFrameHeader(bytes, 'memory:users');
 */
export async function readFrameHeader(input: Uint8Array | FrameReader, source: string): Promise<FrameHeader> {
  const reader = toReader(input);
  const { headerLength } = await readPrefix(reader, source, undefined);
  const header = parseHeader(await reader.read(PREFIX_SIZE, headerLength));
  if (header === undefined) throw new CorruptFileError(source, 'header is not valid', { offset: PREFIX_SIZE });
  return header;
}

/**
 * Verifies and decodes a frame. Nothing reaches the codec before the whole frame passed
 * its checks; every error names `source` (a path, a key) and, where known, the offset.
 *
 * @param input - the frame's bytes, or a reader over them
 * @param source - where the frame comes from, for messages
 * @param options - the current codec, and the cache the frame must belong to
 * @throws {CorruptFileError} bad magic, truncation, bad length, checksum mismatch, wrong cache,
 *   or a chunk that does not decode to entries
 * @throws {UnsupportedFormatError} newer format version, unknown codec, or v8 data from a
 *   newer Node that this one cannot decode
 * @example
 * const { entries, header } = await decodeFrame(bytes, 'memory:users', { codec: v8Codec, cacheName: 'users' });
 */
export async function decodeFrame(input: Uint8Array | FrameReader, source: string, options: FrameDecodeOptions): Promise<DecodedFrame> {
  const reader = toReader(input);
  const size = reader.size;
  const { cacheName } = options;
  const corrupt = (reason: string, offset?: number, cause?: unknown): CorruptFileError => {
    const details: { offset?: number; cacheName?: string; cause?: unknown } = {};
    if (offset !== undefined) details.offset = offset;
    if (cacheName !== undefined) details.cacheName = cacheName;
    if (cause !== undefined) details.cause = cause;
    return new CorruptFileError(source, reason, details);
  };

  // 1. Structure of the prefix.
  const { prefix, headerLength } = await readPrefix(reader, source, cacheName);
  let crc = crc32(prefix);
  const headerBytes = await reader.read(PREFIX_SIZE, headerLength);
  crc = crc32(headerBytes, crc);

  // 2. Walk the chunks to the trailer, checksumming everything. Each length is checked
  //    against the bytes left before the trailer, so no read exceeds the file.
  const trailerStart = size - TRAILER_SIZE;
  const chunks: ChunkInfo[] = [];
  let offset = PREFIX_SIZE + headerLength;
  while (offset < trailerStart) {
    if (offset + CHUNK_HEADER_SIZE > trailerStart) {
      throw corrupt(`chunk ${chunks.length} header runs into the trailer (truncated or damaged)`, offset);
    }
    const chunkHeader = await reader.read(offset, CHUNK_HEADER_SIZE);
    crc = crc32(chunkHeader, crc);
    const fields = view(chunkHeader);
    const length = fields.getUint32(0);
    const expected = fields.getUint32(4);
    if (length > trailerStart - offset - CHUNK_HEADER_SIZE) {
      throw corrupt(`chunk ${chunks.length} claims ${length} bytes, more than the file holds (truncated or damaged)`, offset);
    }
    let chunkCrc = 0;
    for (let at = offset + CHUNK_HEADER_SIZE, end = at + length; at < end; at += VERIFY_BLOCK_BYTES) {
      const block = await reader.read(at, Math.min(VERIFY_BLOCK_BYTES, end - at));
      chunkCrc = crc32(block, chunkCrc);
      crc = crc32(block, crc);
    }
    if (chunkCrc !== expected) throw corrupt(`checksum mismatch in chunk ${chunks.length}`, offset + CHUNK_HEADER_SIZE);
    chunks.push({ offset: offset + CHUNK_HEADER_SIZE, length, crc: expected });
    offset += CHUNK_HEADER_SIZE + length;
  }
  const trailer = await reader.read(trailerStart, TRAILER_SIZE);
  const trailerFields = view(trailer);
  if (trailerFields.getUint32(0) !== TRAILER_MARKER) throw corrupt('trailer missing (truncated or damaged)', trailerStart);
  crc = crc32(trailer.subarray(0, TRAILER_SIZE - 4), crc);
  if (trailerFields.getUint32(TRAILER_SIZE - 4) !== crc) throw corrupt('checksum mismatch', trailerStart + TRAILER_SIZE - 4);
  if (trailerFields.getUint32(4) !== chunks.length) {
    throw corrupt(`trailer announces ${trailerFields.getUint32(4)} chunks, found ${chunks.length}`, trailerStart + 4);
  }
  const announced = trailerFields.getBigUint64(8);
  if (announced > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`trailer announces ${announced} entries`, trailerStart + 8);

  // 3. The header, now known to be what the writer wrote.
  const header = parseHeader(headerBytes);
  if (header === undefined) throw corrupt('header is not valid', PREFIX_SIZE);
  if (cacheName !== undefined && header.cache !== cacheName) {
    throw corrupt(`it holds cache ${JSON.stringify(header.cache)}, not ${JSON.stringify(cacheName)}`, PREFIX_SIZE);
  }
  const codec = header.codec === options.codec.name ? options.codec : builtinCodec(header.codec);
  if (codec === undefined) {
    throw new UnsupportedFormatError(source, `codec ${header.codec}`, `written with codec ${JSON.stringify(header.codec)} which this process does not have`);
  }

  // 4. and 5. Decode, chunk by chunk.
  const entries: StoredEntry[] = [];
  for (const [index, chunk] of chunks.entries()) {
    const payload = await reader.read(chunk.offset, chunk.length);
    if (reader.stable !== true && crc32(payload) !== chunk.crc) {
      throw corrupt(`chunk ${index} changed while being read`, chunk.offset);
    }
    let decoded: unknown;
    try {
      decoded = codec.decode(payload);
    } catch (error) {
      // v8 reads what older versions wrote, not what newer ones wrote: a file from a newer
      // Node is not damaged, this process is too old for it.
      if (codec.name === 'v8' && compareVersions(header.v8, process.versions.v8) > 0) {
        throw new UnsupportedFormatError(
          source,
          `v8 ${header.v8}`,
          `written by Node ${header.node} (v8 ${header.v8}), whose serialization this Node ${process.version} (v8 ${process.versions.v8}) cannot decode`,
        );
      }
      throw corrupt(`chunk ${index} passed its checksum but codec ${JSON.stringify(codec.name)} cannot decode it`, chunk.offset, error);
    }
    if (!Array.isArray(decoded)) throw corrupt(`chunk ${index} does not decode to a list of entries`, chunk.offset);
    for (const entry of decoded as unknown[]) {
      if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[2] !== 'number') {
        throw corrupt(`chunk ${index} holds something that is not a [key, value, expiresAt] entry`, chunk.offset);
      }
      entries.push(entry as unknown as StoredEntry);
    }
    options.onChunk?.(chunk, decoded as StoredEntry[]);
  }
  if (BigInt(entries.length) !== announced) {
    throw corrupt(`trailer announces ${announced} entries, chunks hold ${entries.length}`, trailerStart + 8);
  }
  return { header, entries, bytes: size, crc };
}
