/**
 * One cache entry as RedisStore keeps it: a hash field that identifies the key, and a
 * checksummed record holding the codec's encoding of the whole entry.
 *
 * Record layout, version 1 (integers big-endian):
 *
 * ```text
 * offset   size  field
 * 0        2     magic "cg"
 * 2        1     record format version = 1 (a higher one is refused: E_UNSUPPORTED_FORMAT)
 * 3        1     N = length of the codec name in bytes (1..255)
 * 4        N     codec name, UTF-8: the record is decoded by the codec of that name
 * 4+N      P     payload = codec.encode([[key, value, expiresAt]]), as a snapshot chunk of one entry
 * size-12  8     order (f64): the entry's place in the cache; a load sorts by it
 * size-4   4     crc32 (node:zlib) of every byte before it
 * ```
 *
 * The order sits after the payload so that a record can be re-stamped with another order
 * (a writer that lost a race for the order numbers) without hashing the payload again.
 *
 * The field identifies the key (see {@link fieldOf}): a primitive and an object key never
 * collide, and two structurally equal object keys are one key, as in FileStore's index.
 * Fields are well-formed strings, so their UTF-8 bytes are unambiguous.
 *
 * @module
 */

import { crc32 } from 'node:zlib';
import { builtinCodec } from '../../codec/index.js';
import type { Codec } from '../../codec/types.js';
import { CorruptFileError, InvalidContentsError, InvalidOptionError, UnsupportedFormatError } from '../../errors.js';
import { encodePayloads } from '../frame.js';
import { objectIdentity } from '../log/keys.js';
import type { StoredEntry } from '../types.js';

const MAGIC_0 = 0x63; // 'c'
const MAGIC_1 = 0x67; // 'g'
/**
 * The record format version this module writes and reads.
 *
 * @example
 * record[2] === RECORD_VERSION; // true
 */
export const RECORD_VERSION = 1;
const TAIL_SIZE = 12;
const MIN_RECORD_SIZE = 4 + 1 + TAIL_SIZE;

/**
 * An entry ready to be written: its field, its record, and what the store indexes.
 *
 * @example
 * const encoded = new RecordEncoder('users', v8Codec).encode(['u1', { name: 'Ada' }, 0]);
 * stampOrder(encoded, 1); // now encoded.record can be written
 */
export interface EncodedEntry {
  /** The hash field: the key's identity. */
  readonly field: string;
  /** The record; its order and checksum are written by {@link stampOrder}. */
  readonly record: Buffer;
  /** The entry's absolute expiry time, `0` for never. */
  readonly expiresAt: number;
  /** crc32 of the record up to its order field. */
  readonly partialCrc: number;
}

/**
 * The hash field of a key. Primitives have a short tagged text of their own (`s:users:1`,
 * `n:42`, `i:7` for 7n, `b:true`, `null`, `undefined`; a string with a lone surrogate is
 * `w:` and its UTF-16 code units in hex, since UTF-8 cannot carry it), with Map semantics
 * (`-0` is `0`, every NaN is one key). Object keys use the identity of `log/keys.ts`: the
 * versioned canonical encoding of memoization keys (`k1;…`), so two structurally equal
 * objects are one key. No primitive field starts with `k`, nor with the 0xFF or U+0100 of
 * that identity's fallbacks, so the two kinds never collide.
 *
 * Fields are persisted: changing this encoding (or the `k1` format) orphans saved fields.
 *
 * @throws {TypeError} for a symbol (no codec stores one)
 * @example
 * fieldOf(v8Codec, 'u1'); // 's:u1'
 * fieldOf(v8Codec, 7) !== fieldOf(v8Codec, '7'); // true
 */
export function fieldOf(codec: Codec, key: unknown): string {
  switch (typeof key) {
    case 'string':
      return key.isWellFormed() ? `s:${key}` : `w:${Buffer.from(key, 'utf16le').toString('hex')}`;
    case 'number':
      return `n:${key === 0 ? 0 : key}`;
    case 'bigint':
      return `i:${key}`;
    case 'boolean':
      return `b:${key}`;
    case 'undefined':
      return 'undefined';
    case 'symbol':
      throw new TypeError('a symbol cannot be a stored key');
    default:
      return key === null ? 'null' : objectIdentity(codec, key);
  }
}

/**
 * Encodes the entries of one cache with one codec.
 *
 * @example
 * const encoder = new RecordEncoder('users', v8Codec);
 * const encoded = entries.map((entry) => encoder.encode(entry));
 */
export class RecordEncoder {
  readonly #cacheName: string;
  readonly #codec: Codec;
  readonly #head: Buffer;

  /**
   * @param cacheName - the cache, for error messages
   * @param codec - the codec to encode with
   * @throws {InvalidOptionError} option `codec.name`, when the name is longer than 255 bytes
   */
  constructor(cacheName: string, codec: Codec) {
    this.#cacheName = cacheName;
    this.#codec = codec;
    const name = Buffer.from(codec.name, 'utf8');
    if (name.byteLength === 0 || name.byteLength > 255) {
      throw new InvalidOptionError('codec.name', `must be 1 to 255 bytes of UTF-8 for RedisStore, got ${name.byteLength}`);
    }
    this.#head = Buffer.concat([Uint8Array.of(MAGIC_0, MAGIC_1, RECORD_VERSION, name.byteLength), name]);
  }

  /**
   * Encodes one entry; `index` is its position in the caller's list, for error messages.
   *
   * @throws {UnserializableError} naming the key, when the codec cannot encode the entry
   * @throws {InvalidContentsError} when it is not a `[key, value, expiresAt]` triple
   * @example
   * const { field, record } = encoder.encode(['u1', { name: 'Ada' }, 0]); // field 's:u1'
   */
  encode(entry: StoredEntry, index = 0): EncodedEntry {
    if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[2] !== 'number' || !Number.isFinite(entry[2])) {
      throw new InvalidContentsError(this.#cacheName, 'save', `entry #${index} is not a [key, value, expiresAt] triple with a finite expiresAt`);
    }
    let payload: unknown;
    try {
      payload = this.#codec.encode([entry]);
    } catch {
      payload = undefined;
    }
    if (!(payload instanceof Uint8Array)) {
      // The slow path, for the error: with one item, encodePayloads yields exactly one payload
      // or throws UnserializableError naming the key and the place in the value.
      for (const part of encodePayloads(this.#cacheName, this.#codec, [entry])) payload = part.payload;
    }
    const head = this.#head;
    const bytes = payload as Uint8Array;
    const record = Buffer.allocUnsafe(head.byteLength + bytes.byteLength + TAIL_SIZE);
    record.set(head, 0);
    record.set(bytes, head.byteLength);
    const partialCrc = crc32(record.subarray(0, record.byteLength - TAIL_SIZE));
    return { field: fieldOf(this.#codec, entry[0]), record, expiresAt: entry[2], partialCrc };
  }
}

/**
 * Writes the order of an encoded entry and its checksum into its record (in place).
 *
 * @example
 * stampOrder(encoded, 42);
 */
export function stampOrder(encoded: EncodedEntry, order: number): void {
  const { record } = encoded;
  const end = record.byteLength;
  record.writeDoubleBE(order, end - TAIL_SIZE);
  record.writeUInt32BE(crc32(record.subarray(end - TAIL_SIZE, end - 4), encoded.partialCrc), end - 4);
}

/**
 * A record read back and checked.
 *
 * @example
 * const { entry, order } = decodeRecord(bytes, 'cg:default:{users}:g:1a:data', { codec: v8Codec, cacheName: 'users' });
 */
export interface DecodedRecord {
  /** The entry. */
  readonly entry: StoredEntry;
  /** Its place in the cache. */
  readonly order: number;
  /** The name of the codec that encoded it. */
  readonly codec: string;
}

/**
 * Checks and decodes one record. Nothing reaches the codec before the checksum matched.
 *
 * @param bytes - the record
 * @param location - the hash holding it, for messages
 * @param options - the current codec (records written by another built-in codec are decoded by that one) and the cache
 * @throws {CorruptFileError} path = `location`: too short, bad magic, bad checksum, or undecodable
 * @throws {UnsupportedFormatError} a newer record version, or a codec this process does not have
 * @example
 * decodeRecord(bytes, location, { codec: v8Codec, cacheName: 'users' }).entry; // ['u1', { name: 'Ada' }, 0]
 */
export function decodeRecord(bytes: Buffer, location: string, options: { readonly codec: Codec; readonly cacheName: string }): DecodedRecord {
  const corrupt = (reason: string, offset: number, cause?: unknown): CorruptFileError =>
    new CorruptFileError(location, `a record of ${bytes.byteLength} bytes: ${reason}`, cause === undefined ? { offset, cacheName: options.cacheName } : { offset, cacheName: options.cacheName, cause });
  const size = bytes.byteLength;
  if (size < MIN_RECORD_SIZE) throw corrupt('too short to be a record', 0);
  if (bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) throw corrupt('not a cachegraph record (bad magic bytes)', 0);
  const version = bytes[2] as number;
  const nameLength = bytes[3] as number;
  const payloadStart = 4 + nameLength;
  if (nameLength === 0 || payloadStart + TAIL_SIZE > size) throw corrupt(`codec name length ${nameLength} does not fit`, 3);
  if (crc32(bytes.subarray(0, size - 4)) !== bytes.readUInt32BE(size - 4)) throw corrupt('checksum mismatch', size - 4);
  if (version > RECORD_VERSION) {
    throw new UnsupportedFormatError(location, `record version ${version}`, `written by a newer cachegraph (this version reads record version ${RECORD_VERSION})`);
  }
  if (version !== RECORD_VERSION) throw corrupt(`record version ${version} does not exist`, 2);
  const codecName = bytes.toString('utf8', 4, payloadStart);
  const codec = codecName === options.codec.name ? options.codec : builtinCodec(codecName);
  if (codec === undefined) {
    throw new UnsupportedFormatError(location, `codec ${codecName}`, `written with codec ${JSON.stringify(codecName)} which this process does not have`);
  }
  let decoded: unknown;
  try {
    decoded = codec.decode(bytes.subarray(payloadStart, size - TAIL_SIZE));
  } catch (error) {
    throw corrupt(`passed its checksum but codec ${JSON.stringify(codecName)} cannot decode it`, payloadStart, error);
  }
  const entry = Array.isArray(decoded) && decoded.length === 1 ? (decoded[0] as unknown) : undefined;
  if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[2] !== 'number') {
    throw corrupt('does not hold a [key, value, expiresAt] entry', payloadStart);
  }
  const order = bytes.readDoubleBE(size - TAIL_SIZE);
  if (!Number.isFinite(order)) throw corrupt('its order is not a finite number', size - TAIL_SIZE);
  return { entry: entry as unknown as StoredEntry, order, codec: codecName };
}
