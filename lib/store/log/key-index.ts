/**
 * The per-key index of a cache's files: for every live key, the record holding its latest
 * value (a snapshot chunk or a batch part), plus live/dead byte accounting for compaction.
 *
 * Records are shared by all the keys they hold, so the index costs one `Map` slot per key
 * and one small object per chunk or part. A record is read back whole (at most 1024
 * entries) to answer a single-key lookup.
 *
 * Dead bytes are estimated per record: a record of L payload bytes holding N operations,
 * of which `live` are still the latest value of their key, counts `L * (N - live) / N`
 * dead bytes. Deletes are never live; a clear makes every earlier record dead.
 *
 * @module
 */

import type { Codec } from '../../codec/types.js';
import type { FrameChunk } from '../frame.js';
import type { StoredEntry } from '../types.js';
import { yieldIfBusy } from './fsio.js';
import { KeyMap } from './keys.js';
import { isSet, type BatchPart, type Operation } from './segment.js';

/** A data file a record lives in. */
export interface FileRef {
  /** File number. */
  readonly no: number;
  /** Snapshot (frame chunks) or segment (batch parts). */
  readonly kind: 'snapshot' | 'segment';
  /** Absolute path. */
  readonly path: string;
  /** The codec its payloads were written with (known once its header has been read). */
  codec: Codec;
}

/** A snapshot chunk or a batch part. */
export interface IndexRecord {
  readonly file: FileRef;
  /** File offset of the payload. */
  readonly offset: number;
  /** Payload length. */
  readonly length: number;
  /** crc32 of the payload. */
  readonly crc: number;
  /** Operations (entries) it holds. */
  readonly operations: number;
  /** How many of them are the latest value of their key. */
  live: number;
}

/** Keys of one chunk of a new snapshot, by identity (see {@link KeyMap.getById}). */
export interface ChunkKeys {
  /** Primitive keys. */
  readonly prims: unknown[];
  /** Identity strings of object keys. */
  readonly objs: string[];
}

/** The index of one cache. */
export class KeyIndex {
  readonly keys: KeyMap<IndexRecord>;
  readonly records = new Set<IndexRecord>();
  #payloadBytes = 0;
  #deadBytes = 0;

  /** @param codec - encodes object keys v8 cannot serialize (see `objectIdentity`) */
  constructor(codec: Codec) {
    this.keys = new KeyMap(codec, false);
  }

  /** Payload bytes of all records. */
  get payloadBytes(): number {
    return this.#payloadBytes;
  }

  /** Estimated payload bytes that no longer hold a live value. */
  get deadBytes(): number {
    return Math.max(0, this.#deadBytes);
  }

  /** The record holding `key`'s latest value. */
  lookup(key: unknown): IndexRecord | undefined {
    return this.keys.get(key);
  }

  /** Indexes a snapshot chunk. */
  addChunk(file: FileRef, chunk: FrameChunk, entries: readonly StoredEntry[]): void {
    const record = this.#add(file, chunk.offset, chunk.length, chunk.crc, entries.length);
    for (const entry of entries) this.#point(entry[0], record);
    this.#settle(record);
  }

  /** Indexes a batch part (its operations in order). */
  addPart(file: FileRef, part: BatchPart, operations: readonly Operation[]): void {
    const record = this.#add(file, part.offset, part.length, part.crc, operations.length);
    for (const op of operations) {
      if (isSet(op)) {
        this.#point(op[0], record);
      } else {
        const previous = this.keys.delete(op[0]);
        if (previous !== undefined) this.#kill(previous);
      }
    }
    this.#settle(record);
  }

  /** A batch cleared the cache: everything indexed so far is dead. */
  clear(): void {
    for (const record of this.records) record.live = 0;
    this.#deadBytes = this.#payloadBytes;
    this.keys.clear();
  }

  /**
   * After a compaction: points the keys of a new snapshot chunk at it, for the keys whose
   * latest value was in one of the compacted files (`retired`); keys written since the
   * compaction began keep their newer record.
   */
  async rehome(file: FileRef, chunk: FrameChunk & { readonly operations: number }, keys: ChunkKeys, retired: ReadonlySet<number>): Promise<void> {
    const record = this.#add(file, chunk.offset, chunk.length, chunk.crc, chunk.operations);
    const move = (id: unknown, isObject: boolean): void => {
      const current = this.keys.getById(id, isObject);
      if (current !== undefined && retired.has(current.file.no)) {
        this.keys.replaceById(id, isObject, record);
        record.live += 1;
      }
    };
    for (const id of keys.prims) move(id, false);
    for (const id of keys.objs) move(id, true);
    this.#settle(record);
    await yieldIfBusy();
  }

  /** Forgets keys a compaction dropped (expired) if they still point into retired files. */
  forget(keys: ChunkKeys, retired: ReadonlySet<number>): void {
    const drop = (id: unknown, isObject: boolean): void => {
      const current = this.keys.getById(id, isObject);
      if (current !== undefined && retired.has(current.file.no)) this.keys.deleteById(id, isObject);
    };
    for (const id of keys.prims) drop(id, false);
    for (const id of keys.objs) drop(id, true);
  }

  /** Removes the records of retired files and recomputes the byte counts. */
  dropFiles(retired: ReadonlySet<number>): void {
    this.#payloadBytes = 0;
    this.#deadBytes = 0;
    for (const record of [...this.records]) {
      if (retired.has(record.file.no)) {
        this.records.delete(record);
        continue;
      }
      this.#payloadBytes += record.length;
      if (record.operations > 0) this.#deadBytes += (record.length * (record.operations - record.live)) / record.operations;
    }
  }

  #add(file: FileRef, offset: number, length: number, crc: number, operations: number): IndexRecord {
    const record: IndexRecord = { file, offset, length, crc, operations, live: 0 };
    this.records.add(record);
    this.#payloadBytes += length;
    return record;
  }

  #point(key: unknown, record: IndexRecord): void {
    const previous = this.keys.set(key, record);
    if (previous === record) return;
    record.live += 1;
    if (previous !== undefined) this.#kill(previous);
  }

  /** Counts the dead share of a record just added (its deletes and overwritten sets). */
  #settle(record: IndexRecord): void {
    if (record.operations > 0) this.#deadBytes += (record.length * (record.operations - record.live)) / record.operations;
  }

  #kill(record: IndexRecord): void {
    record.live -= 1;
    if (record.operations > 0) this.#deadBytes += record.length / record.operations;
  }
}
