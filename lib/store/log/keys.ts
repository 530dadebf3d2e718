/**
 * Key identity across a log: strings, numbers, bigints, booleans, `null` and `undefined`
 * are their own identity (as in a `Map`); any other key (an object, an array, a Date ...)
 * is identified by its encoding, because a key read back from disk is a new object that
 * must still match the key it was written with. Two structurally equal object keys that
 * are distinct objects in memory are therefore one key on disk.
 *
 * The encoding is v8's serialization whatever codec the cache uses: it encodes whatever
 * the built-in codecs decode, so identities do not change when a cache switches codecs
 * (a key read from a v8 file by a manager now using json still matches). Only a key v8
 * cannot serialize (something a custom codec decoded) is identified by that codec's
 * encoding instead, behind a prefix no v8 identity has.
 *
 * @module
 */

import v8 from 'node:v8';
import type { Codec } from '../../codec/types.js';
import { encodeArgs } from '../../memo/key.js';
import type { StoredEntry } from '../types.js';
import { yieldIfBusy } from './fsio.js';
import { isSet, type Operation } from './segment.js';

/** Whether a key is its own identity. */
export function isPrimitiveKey(key: unknown): boolean {
  return (typeof key !== 'object' && typeof key !== 'function') || key === null;
}

/** Latin-1 chars are at most U+00FF: this prefix never starts a v8 identity. */
const FALLBACK_PREFIX = '\u0100';

/**
 * The identity string of a non-primitive key: its canonical structural encoding (the one
 * memoization keys use: object keys sorted, type-tagged, starting with `k1;`). A v8
 * serialization would not do: a freshly built `[1, 2]` serializes as a dense array but the
 * same array after a round trip through v8 as a sparse one, so a key read back from disk
 * would not find itself. Keys the canonical encoding refuses (class instances, ...) fall
 * back to their v8 serialization, one char per byte (it starts with 0xFF, never `k`), or
 * to `fallback`'s encoding behind a prefix.
 */
export function objectIdentity(fallback: Codec, key: unknown): string {
  try {
    return encodeArgs([key]);
  } catch {
    // not canonically encodable: fall through to the byte encodings
  }
  let bytes: Uint8Array;
  try {
    bytes = v8.serialize(key);
  } catch {
    const encoded = fallback.encode(key);
    return FALLBACK_PREFIX + Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength).toString('latin1');
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/**
 * A Map keyed by key identity. Object keys go through an intern table (identity string →
 * a token object), so primitive and object keys share one insertion order.
 */
export class KeyMap<V> {
  readonly codec: Codec;
  readonly #map = new Map<unknown, V>();
  readonly #interned = new Map<string, { readonly id: string }>();
  readonly #ordered: boolean;

  /**
   * @param codec - encodes object keys v8 cannot serialize (see {@link objectIdentity})
   * @param ordered - whether `set` moves a key to the end (twice the cost of a plain set
   *   on a large Map; the index does not need it, a replay does)
   */
  constructor(codec: Codec, ordered: boolean) {
    this.codec = codec;
    this.#ordered = ordered;
  }

  get size(): number {
    return this.#map.size;
  }

  #token(key: unknown, create: boolean): unknown {
    if (isPrimitiveKey(key)) return key;
    return this.#tokenOf(objectIdentity(this.codec, key), create);
  }

  #tokenOf(id: string, create: boolean): { readonly id: string } | undefined {
    let token = this.#interned.get(id);
    if (token === undefined && create) {
      token = { id };
      this.#interned.set(id, token);
    }
    return token;
  }

  get(key: unknown): V | undefined {
    const token = this.#token(key, false);
    return token === undefined && !isPrimitiveKey(key) ? undefined : this.#map.get(token);
  }

  has(key: unknown): boolean {
    const token = this.#token(key, false);
    return token === undefined && !isPrimitiveKey(key) ? false : this.#map.has(token);
  }

  /** Sets `key` (moving it to the end if ordered); returns the previous value. */
  set(key: unknown, value: V): V | undefined {
    return this.#setToken(this.#token(key, true), value);
  }

  /** Removes `key`; returns its value. */
  delete(key: unknown): V | undefined {
    if (isPrimitiveKey(key)) return this.#deleteToken(key);
    const id = objectIdentity(this.codec, key);
    const token = this.#interned.get(id);
    if (token === undefined) return undefined;
    this.#interned.delete(id);
    return this.#deleteToken(token);
  }

  /** Looks up by identity: a primitive key, or the identity string of an object key. */
  getById(id: unknown, isObject: boolean): V | undefined {
    if (!isObject) return this.#map.get(id);
    const token = this.#tokenOf(id as string, false);
    return token === undefined ? undefined : this.#map.get(token);
  }

  /** Sets by identity (see {@link getById}), keeping the key's place in the order. */
  replaceById(id: unknown, isObject: boolean, value: V): void {
    const token = isObject ? this.#tokenOf(id as string, true) : id;
    this.#map.set(token, value);
  }

  /** Removes by identity (see {@link getById}). */
  deleteById(id: unknown, isObject: boolean): void {
    if (!isObject) {
      this.#map.delete(id);
      return;
    }
    const token = this.#interned.get(id as string);
    if (token === undefined) return;
    this.#interned.delete(id as string);
    this.#map.delete(token);
  }

  clear(): void {
    this.#map.clear();
    this.#interned.clear();
  }

  values(): IterableIterator<V> {
    return this.#map.values();
  }

  #setToken(token: unknown, value: V): V | undefined {
    const previous = this.#map.get(token);
    if (this.#ordered && (previous !== undefined || this.#map.has(token))) this.#map.delete(token);
    this.#map.set(token, value);
    return previous;
  }

  #deleteToken(token: unknown): V | undefined {
    const previous = this.#map.get(token);
    this.#map.delete(token);
    return previous;
  }
}

/**
 * The net effect of a run of batches: whether they cleared the base, and the last
 * operation on each key they touched, in the order of the last write.
 */
export class Patch {
  #cleared = false;
  readonly #ops: KeyMap<StoredEntry | null>;

  constructor(codec: Codec) {
    this.#ops = new KeyMap(codec, true);
  }

  /** Whether the batches were empty (nothing to merge). */
  get empty(): boolean {
    return !this.#cleared && this.#ops.size === 0;
  }

  clear(): void {
    this.#cleared = true;
    this.#ops.clear();
  }

  apply(op: Operation): void {
    if (isSet(op)) this.#ops.set(op[0], op);
    else this.#ops.set(op[0], null);
  }

  /**
   * The entries of `base` after the batches: base entries not touched by them, in their
   * order, then the entries the batches set, in the order of their last write. Yields to
   * the event loop now and then (large bases).
   */
  async merge(base: readonly StoredEntry[]): Promise<StoredEntry[]> {
    const out: StoredEntry[] = [];
    if (!this.#cleared) {
      for (let i = 0; i < base.length; i++) {
        const entry = base[i] as StoredEntry;
        if (!this.#ops.has(entry[0])) out.push(entry);
        if ((i & 0x3fff) === 0x3fff) await yieldIfBusy();
      }
    }
    for (const entry of this.#ops.values()) if (entry !== null) out.push(entry);
    return out;
  }

  /** Like {@link merge}, lazily (for streaming into a new snapshot). */
  *mergeLazily(base: readonly StoredEntry[]): Generator<StoredEntry, void, undefined> {
    if (!this.#cleared) {
      for (const entry of base) if (!this.#ops.has(entry[0])) yield entry;
    }
    for (const entry of this.#ops.values()) if (entry !== null) yield entry;
  }
}
