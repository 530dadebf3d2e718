// The read-through LRU tier (pyCacheBack): a bounded cache keeps the most recently used
// entries in memory; the rest stay in the store and `fetch` brings them back.
import { expect } from 'chai';
import fc from 'fast-check';
import { MemoryStore, type CacheRemovedEvent, type SyncDoneEvent } from '../lib/index.js';
import { record, useManagers } from './helpers.js';

/** A MemoryStore whose saves wait while it is held: a save can be kept running on purpose. */
class GatedStore extends MemoryStore {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  hold(): void {
    this.#gate ??= new Promise<void>((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }
  override async save(...args: Parameters<MemoryStore['save']>): ReturnType<MemoryStore['save']> {
    await this.#gate;
    return super.save(...args);
  }
  override async saveChanges(...args: Parameters<MemoryStore['saveChanges']>): ReturnType<MemoryStore['saveChanges']> {
    await this.#gate;
    return super.saveChanges(...args);
  }
}

describe('read-through LRU tier (Cache#fetch with maxEntries)', () => {
  const fx = useManagers();

  it('keeps the most recently used entries in memory, evicting the oldest (LRU order, eviction count)', async () => {
    const manager = fx.make({ autoSync: false });
    const evicted = record<CacheRemovedEvent>(manager, 'cache:removed');
    const tiles = await manager.registerCache<string, string>('tiles', { maxEntries: 3 });
    for (const k of ['a', 'b', 'c']) tiles.set(k, k.toUpperCase());
    tiles.get('a'); // a is now the most recently used
    tiles.set('d', 'D');
    tiles.set('e', 'E');
    expect([...tiles.keys()]).to.deep.equal(['a', 'd', 'e']);
    expect(evicted.map((e) => [e.key, e.reason])).to.deep.equal([
      ['b', 'evict'],
      ['c', 'evict'],
    ]);
  });

  it('writes evicted unsaved entries to the store before they leave memory (write-behind)', async () => {
    const store = new MemoryStore();
    const manager = fx.make({ store, autoSync: false });
    const syncs = record<SyncDoneEvent>(manager, 'sync:done');
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 2 });
    for (let i = 0; i < 5; i++) tiles.set(`t${i}`, i);
    await new Promise((resolve) => setImmediate(resolve));
    await manager.save('tiles'); // waits for the write-behind save queued before it
    expect(syncs.some((s) => s.reason === 'evict')).to.equal(true);
    const stored = await store.load('tiles', { codec: manager.codec, clock: { now: Date.now } });
    expect(stored?.entries.map((e) => e[0]).sort()).to.deep.equal(['t0', 't1', 't2', 't3', 't4']);
  });

  it('fetch reads evicted keys back from the store and promotes them; get stays memory-only', async () => {
    const manager = fx.make({ autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 2 });
    for (let i = 0; i < 4; i++) tiles.set(`t${i}`, i);
    await manager.save('tiles');
    expect(tiles.get('t0')).to.equal(undefined); // synchronous, memory only
    expect(tiles.has('t0')).to.equal(false);
    expect(await tiles.fetch('t0')).to.equal(0); // from the store
    expect([...tiles.keys()]).to.deep.equal(['t3', 't0']); // promoted, t2 evicted
    expect(tiles.pendingChanges).to.equal(0); // a read is not a change
    expect(await tiles.fetch('nope')).to.equal(undefined);
  });

  it('fetch finds an evicted entry that is not saved yet (it is still the newest value)', async () => {
    const manager = fx.make({ autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('a', 1);
    await manager.save('tiles');
    tiles.set('a', 2);
    tiles.set('b', 3); // evicts the unsaved a=2
    expect(await tiles.fetch('a')).to.equal(2);
  });

  it('delete removes a key from both levels', async () => {
    const manager = fx.make({ autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('a', 1);
    tiles.set('b', 2);
    await manager.save('tiles');
    tiles.delete('a'); // only in the store now
    expect(await tiles.fetch('a')).to.equal(undefined); // before the save: not read back
    await manager.save('tiles');
    expect(await tiles.fetch('a')).to.equal(undefined);
    await manager.close();
    const again = await fx.make().registerCache<string, number>('tiles', { maxEntries: 10 });
    expect([...again.keys()]).to.deep.equal(['b']);
  });

  it('applies TTL on both levels: an expired evicted entry is not read back', async () => {
    let now = 1_000_000;
    const manager = fx.make({ autoSync: false, clock: { now: () => now } });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('short', 1, { ttl: 1_000 });
    tiles.set('long', 2, { ttl: 60_000 });
    await manager.save('tiles');
    expect(await tiles.fetch('short')).to.equal(1);
    expect(tiles.expiresAt('short')).to.equal(1_001_000); // the absolute expiry came back with it
    tiles.set('other', 3); // evicts short again
    now += 2_000;
    expect(await tiles.fetch('short')).to.equal(undefined);
    expect(await tiles.fetch('long')).to.equal(2);
  });

  it('a restart keeps every entry, not just the resident ones', async () => {
    const first = fx.make({ autoSync: false });
    const tiles = await first.registerCache<number, string>('tiles', { maxEntries: 10 });
    for (let i = 0; i < 100; i++) tiles.set(i, `tile ${i}`);
    await first.close();
    const second = fx.make({ autoSync: false });
    const again = await second.registerCache<number, string>('tiles', { maxEntries: 10 });
    expect(again.size).to.equal(10);
    for (let i = 0; i < 100; i++) expect(await again.fetch(i)).to.equal(`tile ${i}`);
    await second.close();
    const third = await fx.make().registerCache<number, string>('tiles', { maxEntries: 200 });
    expect(third.size).to.equal(100);
  });

  it('concurrent fetches of one key share one store read; getOrBuild builds only what the store lacks', async () => {
    const store = new MemoryStore();
    const manager = fx.make({ store, autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('a', 1);
    tiles.set('b', 2);
    await manager.save('tiles');
    let reads = 0;
    const loadEntry = store.loadEntry.bind(store);
    store.loadEntry = async (...args) => {
      reads++;
      return loadEntry(...args);
    };
    const [x, y] = await Promise.all([tiles.fetch('a'), tiles.fetch('a')]);
    expect([x, y, reads]).to.deep.equal([1, 1, 1]);
    let builds = 0;
    expect(await tiles.getOrBuild('b', () => (builds++, 99))).to.equal(2);
    expect(await tiles.getOrBuild('c', () => (builds++, 3))).to.equal(3);
    expect(builds).to.equal(1);
  });

  it('a set while a fetch is reading wins over the stored value', async () => {
    const store = new MemoryStore();
    const manager = fx.make({ store, autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('a', 1);
    tiles.set('b', 2);
    await manager.save('tiles');
    const pending = tiles.fetch('a');
    tiles.set('a', 10);
    await pending;
    expect(tiles.get('a')).to.equal(10);
  });

  it('does not read the store while an invalidation is deleting it', async () => {
    const manager = fx.make({ autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('a', 1);
    tiles.set('b', 2);
    await manager.save('tiles');
    const invalidating = manager.invalidate('tiles');
    expect(await tiles.fetch('a')).to.equal(undefined);
    await invalidating;
    expect(await tiles.fetch('a')).to.equal(undefined);
  });

  it('an unbounded cache answers fetch from memory (everything saved is loaded)', async () => {
    const store = new MemoryStore();
    const manager = fx.make({ store });
    const users = await manager.registerCache<string, number>('users');
    let reads = 0;
    store.loadEntry = async () => {
      reads++;
      return undefined;
    };
    users.set('a', 1);
    expect(await users.fetch('a')).to.equal(1);
    expect(await users.fetch('b')).to.equal(undefined);
    expect(reads).to.equal(0);
  });

  for (const change of ['delete', 'clear'] as const) {
    it(`fetch does not bring back an evicted entry that a running save carries after a ${change} since it began`, async () => {
      const store = new GatedStore();
      store.hold();
      const manager = fx.make({ store, autoSync: false });
      const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
      tiles.set('a', 1);
      tiles.set('b', 2); // evicts a, unsaved
      const saving = manager.save('tiles'); // carries a until it lands
      try {
        await new Promise((resolve) => setImmediate(resolve));
        if (change === 'delete') tiles.delete('a');
        else tiles.clear();
        expect(await tiles.fetch('a')).to.equal(undefined);
      } finally {
        store.release();
        await saving;
      }
      expect(await tiles.fetch('a')).to.equal(undefined);
    });
  }

  it('fetch does not bring back an entry a running save carries once an invalidation emptied the cache', async () => {
    const store = new GatedStore();
    store.hold();
    const manager = fx.make({ store, autoSync: false });
    const tiles = await manager.registerCache<string, number>('tiles', { maxEntries: 1 });
    tiles.set('a', 1);
    tiles.set('b', 2); // evicts a, unsaved: the save below carries it
    const saving = manager.save('tiles');
    await new Promise((resolve) => setImmediate(resolve));
    const invalidating = manager.invalidate('tiles'); // empties at once, deletes after the save
    try {
      expect(await tiles.fetch('a')).to.equal(undefined);
    } finally {
      store.release();
      await saving;
      await invalidating;
    }
    expect(await tiles.fetch('a')).to.equal(undefined);
    expect(await tiles.fetch('b')).to.equal(undefined);
  });

  describe('against a reference model (property)', function () {
    this.timeout(120_000);

    const key = fc.integer({ min: 0, max: 5 });
    const command = fc.oneof(
      { arbitrary: fc.record({ op: fc.constantFrom('get', 'peek', 'has', 'fetch', 'delete' as const), key }), weight: 5 },
      { arbitrary: fc.record({ op: fc.constant('set' as const), key, value: fc.integer({ min: 0, max: 99 }) }), weight: 4 },
      { arbitrary: fc.record({ op: fc.constant('start save' as const) }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constantFrom('save', 'clear', 'finish saves' as const) }), weight: 1 },
    );

    /** A MemoryStore whose writes wait for `release()`: saves stay in flight while the cache changes. */

    it('loses nothing: memory holds the most recently used entries, fetch and a restart see every live one', async () => {
      // Two managers for every run (one writes, the other restarts from the store), a cache
      // name per run: each manager holds an AsyncLocalStorage, and hundreds of them slow
      // down every later spec.
      const store = new GatedStore();
      const manager = fx.make({ store, autoSync: false });
      const restarted = fx.make({ store, autoSync: false });
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(command, { maxLength: 50 }), async (max, commands) => {
          const name = `c${runs++}`;
          const cache = await manager.registerCache<number, number>(name, { maxEntries: max });
          const saves: Promise<void>[] = [];
          // Every live entry, and the resident ones in order of use (least recent first).
          const live = new Map<number, number>();
          const memory: number[] = [];
          const use = (k: number): void => {
            const at = memory.indexOf(k);
            if (at !== -1) memory.splice(at, 1);
            memory.push(k);
            if (memory.length > max) memory.shift();
          };
          const apply = async (c: (typeof commands)[number]): Promise<void> => {
            const step = JSON.stringify(c);
            switch (c.op) {
              case 'get':
                expect(cache.get(c.key), step).to.equal(memory.includes(c.key) ? live.get(c.key) : undefined);
                if (memory.includes(c.key)) use(c.key);
                break;
              case 'peek':
                expect(cache.peek(c.key), step).to.equal(memory.includes(c.key) ? live.get(c.key) : undefined);
                break;
              case 'has':
                expect(cache.has(c.key), step).to.equal(memory.includes(c.key));
                break;
              case 'fetch':
                // From memory, the evicted-unsaved buffer, or the store: always the live value.
                expect(await cache.fetch(c.key), step).to.equal(live.get(c.key));
                if (live.has(c.key)) use(c.key);
                break;
              case 'set':
                cache.set(c.key, c.value);
                live.set(c.key, c.value);
                use(c.key);
                break;
              case 'delete': {
                const resident = memory.indexOf(c.key);
                const deleted = cache.delete(c.key);
                // A non-resident key may be in the evicted buffer or only in the store: either
                // way the delete reaches the store; only a resident one must report `true`.
                if (resident !== -1) {
                  expect(deleted, step).to.equal(true);
                  memory.splice(resident, 1);
                } else if (!live.has(c.key)) expect(deleted, step).to.equal(false);
                live.delete(c.key);
                break;
              }
              case 'save':
                store.release();
                await manager.save(name);
                break;
              case 'start save':
                // Changes and evictions from now on happen while this save is writing.
                store.hold();
                saves.push(manager.save(name));
                await new Promise((resolve) => setImmediate(resolve));
                break;
              case 'finish saves':
                store.release();
                await Promise.all(saves.splice(0));
                break;
              case 'clear':
                cache.clear();
                live.clear();
                memory.length = 0;
                break;
            }
            expect([...cache.keys()], step).to.deep.equal(memory);
          };
          try {
            for (const c of commands) await apply(c);
          } finally {
            // Also when a check failed: a save left waiting would keep close() waiting.
            store.release();
            await Promise.allSettled(saves);
          }
          await manager.deregister(name); // saves what is left, as close() would
          const again = await restarted.registerCache<number, number>(name);
          expect(new Map(again.entries())).to.deep.equal(live);
          await restarted.deregister(name);
        }),
        { numRuns: 300 },
      );
    });
  });

  it('a non-persistent bounded cache does not keep evicted entries around', async () => {
    const manager = fx.make();
    const scratch = await manager.registerCache<number, number>('scratch', { maxEntries: 10, persistent: false });
    for (let i = 0; i < 10_000; i++) scratch.set(i, i);
    expect(scratch.stats()).to.include({ entries: 10, dirtyKeys: 0 });
    expect(await scratch.fetch(0)).to.equal(undefined);
  });
});
