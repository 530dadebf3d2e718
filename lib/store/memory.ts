/**
 * A store in process memory, for tests and for caches that only need to survive a
 * manager, not the process.
 *
 * It keeps each cache as the same framed bytes a file would hold, not as live objects:
 * a loaded value is a fresh copy (mutating it does not change what was saved), a value
 * the codec cannot encode fails the save exactly as it would with files, and every load
 * runs the same checks.
 *
 * @module
 */

import { decodeFrame, encodeFrameToBytes } from './frame.js';
import { KeyMap, Patch } from './log/keys.js';
import type { CacheStore, ChangeBatch, SaveResult, StoreContext, StoredEntry, StoredInfo, StoredSnapshot } from './types.js';

const LOCATION_PREFIX = 'memory:';

/**
 * Keeps caches as framed byte blobs in a Map.
 *
 * `close()` keeps the blobs and the store stays usable, so one store can outlive a manager:
 * close a manager, build another on the same store, and it loads what the first saved.
 *
 * @example
 * const store = new MemoryStore();
 * await store.save('users', [['u1', { name: 'Ada' }, 0]], { codec: v8Codec, clock: systemClock });
 * const snapshot = await store.load('users', { codec: v8Codec, clock: systemClock });
 */
export class MemoryStore implements CacheStore {
  /**
   * Always `'memory'`.
   *
   * @example
   * new MemoryStore().kind; // 'memory'
   */
  readonly kind = 'memory';
  // Maps, not objects: '__proto__' is a fine cache name.
  readonly #blobs = new Map<string, Uint8Array>();
  readonly #quarantined = new Map<string, Uint8Array>();
  /** What {@link MemoryStore.describe} reports, kept beside each blob. */
  readonly #info = new Map<string, StoredInfo>();

  /**
   * `memory:<name>`.
   *
   * @example
   * store.locate('users'); // 'memory:users'
   */
  locate(name: string): string {
    return LOCATION_PREFIX + name;
  }

  /**
   * The saved copy of `name`, decoded afresh; `undefined` when nothing was saved.
   *
   * @throws {CorruptFileError} when the blob fails its checks
   * @example
   * const snapshot = await store.load('users', ctx);
   */
  async load(name: string, ctx: StoreContext): Promise<StoredSnapshot | undefined> {
    const blob = this.#blobs.get(name);
    if (blob === undefined || blob.byteLength === 0) return undefined;
    const location = this.locate(name);
    // Decode from a copy: a custom codec may return views into the bytes it decodes, and
    // a loaded value must never be a window onto the saved copy.
    const frame = await decodeFrame(Uint8Array.prototype.slice.call(blob), location, { codec: ctx.codec, cacheName: name });
    return { entries: frame.entries, savedAt: frame.header.savedAt, location, bytes: frame.bytes, codec: frame.header.codec };
  }

  /**
   * Replaces the saved copy of `name`; nothing changes if encoding fails.
   *
   * @throws {UnserializableError} naming the key the codec cannot encode
   * @example
   * await store.save('users', [['u1', 1, 0]], ctx); // { entries: 1, bytes: …, location: 'memory:users' }
   */
  async save(name: string, entries: Iterable<StoredEntry>, ctx: StoreContext): Promise<SaveResult> {
    const { bytes, summary } = encodeFrameToBytes(name, entries, ctx);
    this.#blobs.set(name, bytes);
    this.#remember(name, summary.entries, bytes.byteLength, ctx);
    return { entries: summary.entries, bytes: summary.bytes, location: this.locate(name) };
  }

  /**
   * Applies a batch of changes to the saved copy (all of it, or nothing if encoding fails).
   * Unlike FileStore, this re-encodes the whole copy: MemoryStore is for tests and small
   * caches, and keeps one blob per cache so every load exercises the frame checks.
   *
   * @throws {UnserializableError} naming the key the codec cannot encode
   * @example
   * await store.saveChanges('users', { cleared: false, sets: [['u2', 2, 0]], deletes: ['u1'] }, ctx);
   */
  async saveChanges(name: string, batch: ChangeBatch, ctx: StoreContext): Promise<SaveResult> {
    const base = batch.cleared ? [] : ((await this.load(name, ctx))?.entries ?? []);
    const patch = new Patch(ctx.codec);
    for (const entry of batch.sets) patch.apply(entry);
    for (const key of batch.deletes) patch.apply([key]);
    const { bytes, summary } = encodeFrameToBytes(name, await patch.merge(base), ctx);
    this.#blobs.set(name, bytes);
    this.#remember(name, summary.entries, bytes.byteLength, ctx);
    return { entries: batch.sets.length + batch.deletes.length, bytes: bytes.byteLength, location: this.locate(name) };
  }

  /**
   * Reads one entry of the saved copy; `undefined` if absent or expired by `ctx.clock`.
   * (It decodes the whole copy: see {@link MemoryStore.saveChanges}.)
   *
   * @example
   * await store.loadEntry('users', 'u2', ctx); // ['u2', 2, 0]
   */
  async loadEntry(name: string, key: unknown, ctx: StoreContext): Promise<StoredEntry | undefined> {
    const snapshot = await this.load(name, ctx);
    if (snapshot === undefined) return undefined;
    const byKey = new KeyMap<StoredEntry>(ctx.codec, false);
    for (const entry of snapshot.entries) byKey.set(entry[0], entry);
    const entry = byKey.get(key);
    if (entry === undefined || (entry[2] !== 0 && entry[2] <= ctx.clock.now())) return undefined;
    return entry;
  }

  /**
   * Forgets the saved copy; `true` if there was one.
   *
   * @example
   * await store.delete('users'); // true
   */
  async delete(name: string): Promise<boolean> {
    this.#info.delete(name);
    return this.#blobs.delete(name);
  }

  /**
   * What is saved under `name`: entries, bytes, save time, codec and the dependency links
   * the last save carried; `undefined` when nothing is saved.
   *
   * @example
   * await store.describe('stats'); // { name: 'stats', entries: 2, dependsOn: ['users'], … }
   */
  async describe(name: string): Promise<StoredInfo | undefined> {
    return this.#blobs.has(name) ? this.#info.get(name) : undefined;
  }

  /** Records what describe() reports after a write; links not carried by `ctx` are kept. */
  #remember(name: string, entries: number, bytes: number, ctx: StoreContext): void {
    const now = ctx.clock.now();
    this.#info.set(name, {
      name,
      entries,
      bytes,
      savedAt: Number.isFinite(now) ? now : 0,
      codec: ctx.codec.name,
      dependsOn: [...(ctx.dependsOn ?? this.#info.get(name)?.dependsOn ?? [])],
      location: this.locate(name),
      logBytes: 0,
    });
  }

  /**
   * Whether a copy of `name` is saved.
   *
   * @example
   * await store.has('users'); // true
   */
  async has(name: string): Promise<boolean> {
    return this.#blobs.has(name);
  }

  /**
   * Names with a saved copy, sorted; quarantined copies are not listed.
   *
   * @example
   * await store.list(); // ['stats', 'users']
   */
  async list(): Promise<string[]> {
    return [...this.#blobs.keys()].sort();
  }

  /**
   * Moves the copy of `name` to the slot `<name>.corrupt-<time>` (not listed, not loaded)
   * and returns its location, or `undefined` when nothing was saved.
   *
   * @example
   * await store.quarantine('users', ctx); // 'memory:users.corrupt-2024-05-01T120000.000Z'
   */
  async quarantine(name: string, ctx: StoreContext): Promise<string | undefined> {
    const blob = this.#blobs.get(name);
    if (blob === undefined) return undefined;
    const time = new Date(ctx.clock.now());
    const stamp = Number.isNaN(time.getTime()) ? 'unknown-time' : time.toISOString().replaceAll(':', '');
    let slot = `${name}.corrupt-${stamp}`;
    for (let n = 1; this.#quarantined.has(slot); n++) slot = `${name}.corrupt-${stamp}-${n}`;
    this.#quarantined.set(slot, blob);
    this.#blobs.delete(name);
    this.#info.delete(name);
    return this.locate(slot);
  }

  /**
   * Nothing to release; the saved copies stay (see the class comment). Idempotent.
   *
   * @example
   * await store.close();
   */
  async close(): Promise<void> {
    // Deliberately empty: see the class comment.
  }
}
