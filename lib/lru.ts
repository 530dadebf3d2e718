/**
 * `LruMap<K, V>`: the entries of a bounded cache, kept in order of use (least recently used
 * first). The design is lru-cache's: a `Map` from key to slot number and, per slot, the key,
 * the value and the slots before and after it in a doubly-linked list (two typed arrays), with
 * freed slots reused. Marking an entry used relinks a few slots; the oldest entry is always at
 * the head of the list.
 *
 * Why not a `Map` whose insertion order is the order of use (delete and set again on every
 * use, as `Cache` did first)? Each use then costs a `Map.get`, a `Map.delete` and a
 * `Map.set` (here: one `Map.get` and a relink); and finding the oldest entry with
 * `map.keys().next()` is O(deleted entries): V8 leaves a hole for each deleted entry until
 * the table is rehashed, and every new iterator walks over the holes from the start. An
 * eviction per `set` then costs O(capacity).
 *
 * Unbounded caches keep a plain `Map`: their `get` is one `Map.get`, which a slot number in
 * between would make slower.
 *
 * @module
 */

/** Slot 0 is the list's sentinel: `next[0]` is the oldest entry, `prev[0]` the newest. */
const SENTINEL = 0;

/** The key of a free slot. No key a caller can pass (not even `undefined`) is this one. */
const FREE: unique symbol = Symbol('free slot');

/** Slots allocated at first; the arrays double from there. */
const INITIAL_SLOTS = 16;

/** What an iterator yields. */
const KEYS = 0;
const VALUES = 1;
const ENTRIES = 2;
type Yield = typeof KEYS | typeof VALUES | typeof ENTRIES;

/** A Map holds -0 as 0; so does this, so that iteration yields the keys a Map would. */
function normalizeKey<K>(key: K): K {
  return (key === 0 ? 0 : key) as K;
}

/** `Map`'s key equality (SameValueZero): like `===`, except that NaN equals NaN. */
function sameKey(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b);
}

/**
 * A Map-like store whose order is the order of use: `use(key)` and `set(key, value)` make an
 * entry the most recently used; `get`, `has` and iteration do not. It evicts only in
 * `setWithin`, and leaves reporting the eviction to its caller (the cache).
 *
 * Iterators walk a snapshot of the order taken when they are created: entries removed
 * before they are reached are skipped, each value is read when its entry is reached, and
 * entries added or used meanwhile are not visited (again). A `Map` iterator instead visits
 * what is appended during the walk, which, for an order that every `get` changes, would make
 * `for (const key of cache.keys()) cache.get(key)` loop forever.
 *
 * @example
 * const lru = new LruMap<string, number>();
 * lru.set('a', 1).set('b', 2);
 * lru.use('a');
 * [...lru.keys()]; // ['b', 'a']
 * lru.setWithin('c', 3, 2); // true: 'b' made room
 */
export class LruMap<K, V> {
  readonly #slots = new Map<K, number>();
  #keys: (K | typeof FREE)[] = [FREE];
  #values: (V | undefined)[] = [undefined];
  #prev = new Uint32Array(INITIAL_SLOTS);
  #next = new Uint32Array(INITIAL_SLOTS);
  /** Slots freed by `delete`, reused before the arrays grow. */
  #free: number[] = [];
  /** Bumped by `clear()`: iterators created before it have nothing left to visit. */
  #generation = 0;
  /** The entry the last `setWithin` evicted, until `forgetEvicted()`. */
  #evictedKey: K | undefined = undefined;
  #evictedValue: V | undefined = undefined;

  /**
   * Number of entries.
   *
   * @example
   * new LruMap().set('a', 1).size; // 1
   */
  get size(): number {
    return this.#slots.size;
  }

  /**
   * The value of `key` without marking it used (`undefined` when absent).
   *
   * @example
   * lru.get('a');
   */
  get(key: K): V | undefined {
    const slot = this.#slots.get(key);
    return slot === undefined ? undefined : this.#values[slot];
  }

  /**
   * Whether `key` has an entry (does not mark it used).
   *
   * @example
   * lru.has('a'); // true
   */
  has(key: K): boolean {
    return this.#slots.has(key);
  }

  /**
   * The value of `key`, marking the entry as the most recently used (`undefined` when absent).
   *
   * @example
   * lru.use('a');
   */
  use(key: K): V | undefined {
    const slot = this.#slots.get(key);
    if (slot === undefined) return undefined;
    this.#moveToNewest(slot);
    return this.#values[slot];
  }

  /**
   * Stores `value` under `key` as the most recently used entry (a new key is appended, an
   * existing one moves).
   *
   * @example
   * lru.set('a', 1).set('b', 2);
   */
  set(key: K, value: V): this {
    const existing = this.#slots.get(key);
    if (existing === undefined) this.#add(key, value);
    else {
      this.#values[existing] = value;
      this.#moveToNewest(existing);
    }
    return this;
  }

  /**
   * `set` for a map held at `max` entries: a new key that would make it hold more takes over
   * the slot of the least recently used entry, which leaves. (lru-cache evicts the same way:
   * no free-list traffic, one relink.) Returns whether an entry left; its key and value are
   * {@link LruMap.evictedKey} and {@link LruMap.evictedValue} until
   * {@link LruMap.forgetEvicted}.
   *
   * @example
   * const lru = new LruMap<string, number>().set('a', 1);
   * lru.setWithin('b', 2, 1); // true
   * lru.evictedKey; // 'a'
   */
  setWithin(key: K, value: V, max: number): boolean {
    const slots = this.#slots;
    const existing = slots.get(key);
    if (existing !== undefined) {
      this.#values[existing] = value;
      this.#moveToNewest(existing);
      return false;
    }
    if (slots.size < max) {
      this.#add(key, value);
      return false;
    }
    const slot = this.#next[SENTINEL] as number;
    const evicted = this.#keys[slot] as K;
    this.#evictedKey = evicted;
    this.#evictedValue = this.#values[slot];
    slots.delete(evicted);
    this.#keys[slot] = normalizeKey(key);
    this.#values[slot] = value;
    slots.set(key, slot);
    this.#moveToNewest(slot);
    return true;
  }

  /**
   * The key of the entry the last eviction by `setWithin` removed.
   *
   * @example
   * if (lru.setWithin(key, value, 100)) console.log('evicted', lru.evictedKey);
   */
  get evictedKey(): K {
    return this.#evictedKey as K;
  }

  /**
   * The value of the entry the last eviction by `setWithin` removed.
   *
   * @example
   * if (lru.setWithin(key, value, 100)) dispose(lru.evictedValue);
   */
  get evictedValue(): V {
    return this.#evictedValue as V;
  }

  /**
   * Lets go of the evicted entry, so this map does not keep its value alive.
   *
   * @example
   * lru.forgetEvicted();
   */
  forgetEvicted(): void {
    this.#evictedKey = undefined;
    this.#evictedValue = undefined;
  }

  /**
   * Removes the entry of `key`; `true` if there was one.
   *
   * @example
   * lru.delete('a'); // true
   */
  delete(key: K): boolean {
    const slot = this.#slots.get(key);
    if (slot === undefined) return false;
    this.#slots.delete(key);
    this.#release(slot);
    return true;
  }

  /**
   * Removes every entry and gives back the memory of the slots.
   *
   * @example
   * lru.clear(); lru.size; // 0
   */
  clear(): void {
    this.#slots.clear();
    this.#keys = [FREE];
    this.#values = [undefined];
    this.#prev = new Uint32Array(INITIAL_SLOTS);
    this.#next = new Uint32Array(INITIAL_SLOTS);
    this.#free = [];
    this.#generation++;
  }

  /**
   * Calls `callback(value, key)` for every entry, least recently used first. The callback
   * must not change the map (this walks the live list; use an iterator for that).
   *
   * @example
   * lru.forEach((value, key) => console.log(key, value));
   */
  forEach(callback: (value: V, key: K) => void): void {
    const next = this.#next;
    for (let slot = next[SENTINEL] as number; slot !== SENTINEL; slot = next[slot] as number) {
      callback(this.#values[slot] as V, this.#keys[slot] as K);
    }
  }

  /**
   * Keys, least recently used first (see the class doc for changes during the walk).
   *
   * @example
   * [...lru.keys()];
   */
  keys(): MapIterator<K> {
    return this.#iterate(KEYS) as MapIterator<K>;
  }

  /**
   * Values, least recently used first.
   *
   * @example
   * [...lru.values()];
   */
  values(): MapIterator<V> {
    return this.#iterate(VALUES) as MapIterator<V>;
  }

  /**
   * `[key, value]` pairs, least recently used first.
   *
   * @example
   * new Map(lru.entries());
   */
  entries(): MapIterator<[K, V]> {
    return this.#iterate(ENTRIES) as MapIterator<[K, V]>;
  }

  /**
   * Same as {@link LruMap.entries}.
   *
   * @example
   * for (const [key, value] of lru) {}
   */
  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  /** Takes the snapshot now (not at the first `next()`, as a generator body would). */
  #iterate(what: Yield): MapIterator<K | V | [K, V]> {
    const slots = new Uint32Array(this.#slots.size);
    const keys: K[] = new Array(slots.length);
    const next = this.#next;
    let i = 0;
    for (let slot = next[SENTINEL] as number; slot !== SENTINEL; slot = next[slot] as number) {
      slots[i] = slot;
      keys[i++] = this.#keys[slot] as K;
    }
    return this.#walk(what, slots, keys, this.#generation);
  }

  *#walk(what: Yield, slots: Uint32Array, keys: K[], generation: number): Generator<K | V | [K, V], undefined> {
    for (let i = 0; i < slots.length; i++) {
      if (this.#generation !== generation) return undefined;
      const slot = slots[i] as number;
      const key = keys[i] as K;
      // Gone since the snapshot (its slot is free or holds another key): skip it.
      if (!sameKey(this.#keys[slot], key)) continue;
      const value = this.#values[slot] as V;
      yield what === KEYS ? key : what === VALUES ? value : [key, value];
    }
    return undefined;
  }

  /** Appends a key that has no entry yet, as the newest. */
  #add(key: K, value: V): void {
    const slot = this.#free.length !== 0 ? (this.#free.pop() as number) : this.#newSlot();
    this.#keys[slot] = normalizeKey(key);
    this.#values[slot] = value;
    this.#slots.set(key, slot);
    const prev = this.#prev;
    const next = this.#next;
    const newest = prev[SENTINEL] as number;
    next[newest] = slot;
    prev[slot] = newest;
    next[slot] = SENTINEL;
    prev[SENTINEL] = slot;
  }

  /** Unlinks `slot` and puts it on the free list (its key is already out of `#slots`). */
  #release(slot: number): void {
    const prev = this.#prev;
    const next = this.#next;
    const before = prev[slot] as number;
    const after = next[slot] as number;
    next[before] = after;
    prev[after] = before;
    this.#keys[slot] = FREE;
    // Drop the reference so the value can be collected while the slot waits for reuse.
    this.#values[slot] = undefined;
    this.#free.push(slot);
  }

  #moveToNewest(slot: number): void {
    const prev = this.#prev;
    if (prev[SENTINEL] === slot) return;
    const next = this.#next;
    const before = prev[slot] as number;
    const after = next[slot] as number;
    next[before] = after;
    prev[after] = before;
    const newest = prev[SENTINEL] as number;
    next[newest] = slot;
    prev[slot] = newest;
    next[slot] = SENTINEL;
    prev[SENTINEL] = slot;
  }

  /** A slot never used: the next index, growing the link arrays when they are full. */
  #newSlot(): number {
    const slot = this.#keys.length;
    if (slot === this.#prev.length) {
      const prev = new Uint32Array(slot * 2);
      const next = new Uint32Array(slot * 2);
      prev.set(this.#prev);
      next.set(this.#next);
      this.#prev = prev;
      this.#next = next;
    }
    // Pushed, not assigned at an index: the arrays stay packed.
    this.#keys.push(FREE);
    this.#values.push(undefined);
    return slot;
  }
}
