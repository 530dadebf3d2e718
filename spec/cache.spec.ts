import { expect } from 'chai';
import fc from 'fast-check';
import sinon from 'sinon';
import {
  Cache,
  ClosedError,
  InvalidOptionError,
  UnserializableError,
  type CacheRemovedEvent,
} from '../lib/index.js';
import { cacheInternals } from '../lib/cache.js';
import { record, rejection, useManagers } from './helpers.js';

/** A persistent cache on its own, as the manager would create it; `sharedStore`: other processes write to its store. */
function bareCache(sharedStore: boolean): Cache<unknown, number> {
  return new Cache<unknown, number>({
    name: 'bare',
    clock: { now: () => Date.now() },
    emit: () => undefined,
    listening: { removed: false },
    codec: undefined,
    maxEntries: Number.POSITIVE_INFINITY,
    ttlMs: undefined,
    onChange: () => undefined,
    describe: () => ({ persistent: true, autoSync: false, saves: 0, saveErrors: 0, lastSaveAt: undefined, lastSaveMs: undefined, lastSaveBytes: undefined, nextSaveAt: undefined }) as never,
    persistent: true,
    sharedStore,
    readEntry: undefined,
    onEvictDirty: () => undefined,
    onRead: () => undefined,
  });
}

describe('Cache', () => {
  const fx = useManagers();

  describe('Map surface', () => {
    it('gets, sets, tests and deletes like a Map', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      expect(cache.set('a', 1)).to.equal(cache);
      cache.set('b', 2).set('c', 3);
      expect(cache.get('a')).to.equal(1);
      expect(cache.get('zz')).to.equal(undefined);
      expect(cache.has('b')).to.equal(true);
      expect(cache.has('zz')).to.equal(false);
      expect(cache.size).to.equal(3);
      expect(cache.delete('b')).to.equal(true);
      expect(cache.delete('b')).to.equal(false);
      expect(cache.size).to.equal(2);
    });

    it('iterates keys, values, entries, forEach and for-of in insertion order', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      cache.set('x', 1).set('y', 2).set('z', 3);
      expect([...cache.keys()]).to.deep.equal(['x', 'y', 'z']);
      expect([...cache.values()]).to.deep.equal([1, 2, 3]);
      expect([...cache.entries()]).to.deep.equal([['x', 1], ['y', 2], ['z', 3]]);
      expect([...cache]).to.deep.equal([['x', 1], ['y', 2], ['z', 3]]);
      const seen: Array<[string, number, unknown]> = [];
      cache.forEach(function (this: unknown, value, key, self) {
        seen.push([key, value, this]);
        expect(self).to.equal(cache);
      }, 'ctx');
      expect(seen).to.deep.equal([['x', 1, 'ctx'], ['y', 2, 'ctx'], ['z', 3, 'ctx']]);
      expect(new Map(cache)).to.deep.equal(new Map([['x', 1], ['y', 2], ['z', 3]]));
    });

    it('clears everything', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      cache.set('a', 1).set('b', 2);
      cache.clear();
      expect(cache.size).to.equal(0);
      expect([...cache]).to.deep.equal([]);
    });

    it('stores undefined and null as values, distinct from absence', async () => {
      const cache = await fx.make().registerCache<string, unknown>('c');
      cache.set('u', undefined).set('n', null);
      expect(cache.has('u')).to.equal(true);
      expect(cache.get('n')).to.equal(null);
      expect(cache.size).to.equal(2);
    });

    it('accepts object keys in memory', async () => {
      const cache = await fx.make().registerCache<object, number>('c', { persistent: false });
      const key = { id: 1 };
      cache.set(key, 5);
      expect(cache.get(key)).to.equal(5);
      expect(cache.get({ id: 1 })).to.equal(undefined);
    });

    it('names itself Cache', async () => {
      const cache = await fx.make().registerCache('c');
      expect(Object.prototype.toString.call(cache)).to.equal('[object Cache]');
      expect(cache).to.be.instanceOf(Cache);
      expect(cache.name).to.equal('c');
    });
  });

  describe('usage counters in stats()', () => {
    it('counts hits, misses, sets, evictions and expirations since registration, saves and reloads aside', async () => {
      let now = 1_000_000;
      const manager = fx.make({ clock: { now: () => now } });
      const cache = await manager.registerCache<string, number>('c', { maxEntries: 2 });
      cache.set('a', 1);
      cache.set('b', 2, { ttl: 10 });
      expect(cache.get('a')).to.equal(1);
      expect(cache.get('zz')).to.equal(undefined);
      cache.set('c', 3); // evicts b (a was used)
      now += 20;
      cache.set('d', 4, { ttl: 5 });
      now += 10;
      expect(cache.get('d')).to.equal(undefined); // expired
      expect(await cache.fetch('nope')).to.equal(undefined);
      await manager.save('c');
      expect(cache.stats()).to.include({ hits: 1, misses: 3, sets: 4, evictions: 2, expirations: 1 });
    });
  });

  describe('time-to-live', () => {
    it('hides an entry once its ttl has passed', async () => {
      let now = 1_000_000;
      const cache = await fx.make({ clock: { now: () => now } }).registerCache<string, number>('c');
      cache.set('a', 1, { ttl: 1_000 });
      cache.set('b', 2);
      now += 999;
      expect(cache.get('a')).to.equal(1);
      now += 1;
      expect(cache.get('a')).to.equal(undefined);
      expect(cache.has('a')).to.equal(false);
      expect(cache.size).to.equal(1);
      expect([...cache.keys()]).to.deep.equal(['b']);
    });

    it('applies the cache default ttl and lets set() override it', async () => {
      let now = 5_000;
      const cache = await fx.make({ clock: { now: () => now } }).registerCache<string, number>('c', { ttl: '10s' });
      cache.set('default', 1);
      cache.set('short', 2, { ttl: '500ms' });
      expect(cache.expiresAt('default')).to.equal(15_000);
      expect(cache.expiresAt('short')).to.equal(5_500);
      now = 6_000;
      expect([...cache.keys()]).to.deep.equal(['default']);
      now = 15_000;
      expect(cache.size).to.equal(0);
    });

    it('drops the expiry when an entry is set again without ttl', async () => {
      let now = 0;
      const cache = await fx.make({ clock: { now: () => now } }).registerCache<string, number>('c');
      cache.set('a', 1, { ttl: 10 });
      cache.set('a', 2);
      now = 100;
      expect(cache.get('a')).to.equal(2);
      expect(cache.expiresAt('a')).to.equal(undefined);
    });

    it('purges expired entries on demand and reports them as expired', async () => {
      let now = 0;
      const manager = fx.make({ clock: { now: () => now } });
      const removed = record<CacheRemovedEvent>(manager, 'cache:removed');
      const cache = await manager.registerCache<string, number>('c');
      cache.set('a', 1, { ttl: 10 }).set('b', 2, { ttl: 20 }).set('c', 3);
      now = 15;
      expect(cache.purgeExpired()).to.equal(1);
      expect(removed).to.deep.equal([{ name: 'c', key: 'a', reason: 'expire' }]);
      expect(cache.size).to.equal(2);
    });

    it('rejects an invalid ttl naming the option, and changes nothing', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      for (const ttl of [0, -5, Number.NaN, '10 parsecs', '']) {
        expect(() => cache.set('a', 1, { ttl: ttl as never })).to.throw(InvalidOptionError, /'ttl' of cache "c"/);
      }
      expect(cache.has('a')).to.equal(false);
      expect(cache.pendingChanges).to.equal(0);
    });

    it('rejects unknown set() options, naming them', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      expect(() => cache.set('a', 1, { ttll: 5 } as never)).to.throw(InvalidOptionError, /'ttll'/);
      expect(() => cache.set('a', 1, 5 as never)).to.throw(InvalidOptionError, /must be an object/);
      expect(cache.has('a')).to.equal(false);
    });

    it('keeps absolute expiry times across a restart', async () => {
      let now = 1_000;
      const clock = { now: () => now };
      const first = fx.make({ clock });
      const cache = await first.registerCache<string, number>('c');
      cache.set('soon', 1, { ttl: 1_000 }).set('later', 2, { ttl: 10_000 }).set('never', 3);
      await first.close();

      now = 1_500;
      const second = fx.make({ clock });
      const again = await second.registerCache<string, number>('c');
      expect(again.expiresAt('soon')).to.equal(2_000);
      expect(again.expiresAt('later')).to.equal(11_000);
      await second.close();

      now = 5_000;
      const third = fx.make({ clock });
      const last = await third.registerCache<string, number>('c');
      expect([...last.keys()].sort()).to.deep.equal(['later', 'never']);
    });
  });

  describe('maxEntries (LRU)', () => {
    it('evicts the least recently used entry beyond the bound', async () => {
      const manager = fx.make();
      const removed = record<CacheRemovedEvent>(manager, 'cache:removed');
      const cache = await manager.registerCache<string, number>('c', { maxEntries: 3 });
      cache.set('a', 1).set('b', 2).set('c', 3);
      cache.get('a'); // a is now the most recently used
      cache.set('d', 4);
      expect([...cache.keys()]).to.deep.equal(['c', 'a', 'd']);
      expect(removed).to.deep.equal([{ name: 'c', key: 'b', reason: 'evict' }]);
      expect(cache.maxEntries).to.equal(3);
    });

    it('builds cache:removed only while someone listens, whichever way listeners come and go', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<number, number>('c', { maxEntries: 1 });
      const emit = sinon.spy(manager, 'emit');
      const removals = (): number => emit.getCalls().filter((call) => call.args[0] === 'cache:removed').length;
      cache.set(1, 1).set(2, 2);
      expect(removals(), 'no listener: no event built').to.equal(0);
      const seen: unknown[] = [];
      const listener = (event: CacheRemovedEvent): void => void seen.push(event.key);
      manager.on('cache:removed', listener);
      cache.set(3, 3);
      manager.off('cache:removed', listener);
      cache.set(4, 4);
      manager.once('cache:removed', listener);
      cache.set(5, 5).set(6, 6); // the once listener hears 4 and is gone
      manager.addListener('cache:removed', listener);
      manager.removeAllListeners();
      cache.set(7, 7);
      expect(seen).to.deep.equal([2, 4]);
      expect(removals()).to.equal(2);
    });

    it('does not count peek() or has() as a use', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { maxEntries: 2 });
      cache.set('a', 1).set('b', 2);
      expect(cache.peek('a')).to.equal(1);
      expect(cache.has('a')).to.equal(true);
      cache.set('c', 3);
      expect(cache.has('a')).to.equal(false);
      expect([...cache.keys()]).to.deep.equal(['b', 'c']);
    });

    it('counts re-setting a key as a use', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { maxEntries: 2 });
      cache.set('a', 1).set('b', 2).set('a', 10).set('c', 3);
      expect([...cache.entries()]).to.deep.equal([['a', 10], ['c', 3]]);
    });

    it('keeps only the most recent entries of loaded contents', async () => {
      const cache = await fx.make().registerCache<number, number>('c', {
        maxEntries: 2,
        contents: [[1, 1], [2, 2], [3, 3]],
      });
      expect([...cache.keys()]).to.deep.equal([2, 3]);
    });

    it('reports evicted loaded contents as evicted, oldest first, and keeps them for the save', async () => {
      const manager = fx.make({ autoSync: false });
      const removed = record<CacheRemovedEvent>(manager, 'cache:removed');
      const cache = await manager.registerCache<number, number>('c', { maxEntries: 2, contents: [[1, 1], [2, 2], [3, 3], [4, 4]] });
      expect(removed.map((e) => [e.key, e.reason])).to.deep.equal([[1, 'evict'], [2, 'evict']]);
      expect([...cache.entries()]).to.deep.equal([[3, 3], [4, 4]]);
      await manager.close(); // evicted unsaved entries are written too
      const again = await fx.make().registerCache<number, number>('c', { maxEntries: 10 });
      expect([...again.entries()]).to.deep.equal([[1, 1], [2, 2], [3, 3], [4, 4]]);
    });

    it('visits each entry once when a loop over a bounded cache uses them', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { maxEntries: 3 });
      cache.set('a', 1).set('b', 2).set('c', 3);
      const seen: string[] = [];
      cache.forEach((value, key) => {
        seen.push(key);
        cache.get(key); // with a Map re-inserted on every use, this loop never ended
      });
      expect(seen).to.deep.equal(['a', 'b', 'c']);
      for (const key of cache.keys()) if (key !== 'b') cache.delete(key);
      expect([...cache.entries()]).to.deep.equal([['b', 2]]);
    });

    it('evicts at a capacity of 100 000 in order, once per new key, and keeps what get() used', async () => {
      const manager = fx.make();
      let evictions = 0;
      let firstEvicted: unknown;
      manager.on('cache:removed', (event) => {
        if (evictions++ === 0) firstEvicted = event.key;
      });
      const capacity = 100_000;
      const cache = await manager.registerCache<number, number>('c', { maxEntries: capacity, persistent: false });
      // Three times the capacity: each of the last 200 000 sets evicts (an eviction used to
      // cost a walk over every entry deleted since the last rehash).
      for (let i = 0; i < 3 * capacity; i++) cache.set(i, i);
      expect(cache.size).to.equal(capacity);
      expect(evictions).to.equal(2 * capacity);
      expect(firstEvicted).to.equal(0);
      const keys = [...cache.keys()];
      expect(keys[0]).to.equal(2 * capacity);
      expect(keys[capacity - 1]).to.equal(3 * capacity - 1);
      expect(keys.every((key, i) => key === 2 * capacity + i)).to.equal(true);
      // The oldest entry, once read, survives the next eviction; the one after it does not.
      expect(cache.get(2 * capacity)).to.equal(2 * capacity);
      cache.set(-1, -1);
      expect(cache.has(2 * capacity)).to.equal(true);
      expect(cache.has(2 * capacity + 1)).to.equal(false);
      expect(evictions).to.equal(2 * capacity + 1);
      expect([...cache.keys()].slice(-2)).to.deep.equal([2 * capacity, -1]);
    });

    describe('against a reference LRU (property)', function () {
      this.timeout(60_000);

      /** The specification: a Map re-inserted on every use, so its first key is the oldest. */
      class ReferenceLru {
        readonly entries = new Map<unknown, number>();
        readonly evicted: unknown[] = [];
        constructor(readonly max: number) {}
        get(key: unknown): number | undefined {
          if (!this.entries.has(key)) return undefined;
          const value = this.entries.get(key) as number;
          this.entries.delete(key);
          this.entries.set(key, value);
          return value;
        }
        set(key: unknown, value: number): void {
          this.entries.delete(key);
          this.entries.set(key, value);
          while (this.entries.size > this.max) {
            const oldest = this.entries.keys().next().value;
            this.entries.delete(oldest);
            this.evicted.push(oldest);
          }
        }
      }

      const KEYS = [0, 1, 2, 3, 4, 5, 6, 7, 'a', '', NaN, undefined] as const;
      const key = fc.constantFrom(...KEYS);
      const command = fc.oneof(
        fc.record({ op: fc.constantFrom('get', 'peek', 'has', 'delete', 'fetch' as const), key }),
        fc.record({ op: fc.constant('set' as const), key, value: fc.integer() }),
        fc.record({ op: fc.constant('getOrBuild' as const), key, value: fc.integer() }),
      );

      it('matches it over random get/set/delete/peek/has/fetch/getOrBuild sequences: values, order, evictions', async () => {
        // One manager for every run, a cache of its own per run (each manager holds an
        // AsyncLocalStorage, and hundreds of them slow down every later spec).
        const manager = fx.make();
        const removed = record<CacheRemovedEvent>(manager, 'cache:removed');
        let runs = 0;
        await fc.assert(
          fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.array(command, { maxLength: 60 }), async (max, commands) => {
            const name = `c${runs++}`;
            removed.length = 0;
            const cache = await manager.registerCache<unknown, number>(name, { maxEntries: max, persistent: false });
            const model = new ReferenceLru(max);
            for (const c of commands) {
              const step = JSON.stringify(c);
              switch (c.op) {
                case 'get':
                  expect(cache.get(c.key), step).to.equal(model.get(c.key));
                  break;
                case 'fetch':
                  expect(await cache.fetch(c.key), step).to.equal(model.get(c.key));
                  break;
                case 'getOrBuild': {
                  const held = model.get(c.key);
                  if (held === undefined) model.set(c.key, c.value);
                  expect(await cache.getOrBuild(c.key, () => c.value), step).to.equal(held ?? c.value);
                  break;
                }
                case 'peek':
                  expect(cache.peek(c.key), step).to.equal(model.entries.get(c.key));
                  break;
                case 'has':
                  expect(cache.has(c.key), step).to.equal(model.entries.has(c.key));
                  break;
                case 'delete':
                  expect(cache.delete(c.key), step).to.equal(model.entries.delete(c.key));
                  break;
                case 'set':
                  cache.set(c.key, c.value);
                  model.set(c.key, c.value);
                  break;
              }
              expect([...cache.entries()], step).to.deep.equal([...model.entries]);
              expect(cache.size, step).to.equal(model.entries.size);
            }
            expect(removed.map((e) => e.key)).to.deep.equal(model.evicted);
            expect(removed.every((e) => e.reason === 'evict' && e.name === name)).to.equal(true);
            await manager.deregister(name);
          }),
          { numRuns: 300 },
        );
      });
    });
  });

  describe('#getOrBuild()', () => {
    it('returns the cached value without building', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      cache.set('a', 1);
      const build = sinon.spy(() => 2);
      expect(await cache.getOrBuild('a', build)).to.equal(1);
      expect(build.called).to.equal(false);
    });

    it('builds once for concurrent callers and stores the result', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      let resolve!: (v: number) => void;
      const build = sinon.spy(() => new Promise<number>((r) => (resolve = r)));
      const waiters = [cache.getOrBuild('k', build), cache.getOrBuild('k', build), cache.getOrBuild('k', build)];
      await new Promise((r) => setImmediate(r));
      resolve(42);
      expect(await Promise.all(waiters)).to.deep.equal([42, 42, 42]);
      expect(build.callCount).to.equal(1);
      expect(cache.get('k')).to.equal(42);
    });

    it('stores nothing when the build fails, rejects every waiter, and builds again next time', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      const boom = new Error('boom');
      const failing = sinon.spy(async () => {
        throw boom;
      });
      const results = await Promise.allSettled([cache.getOrBuild('k', failing), cache.getOrBuild('k', failing)]);
      expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
      expect(failing.callCount).to.equal(1);
      expect(cache.has('k')).to.equal(false);
      expect(await cache.getOrBuild('k', () => 7)).to.equal(7);
    });

    it('does not store a result whose key was deleted while it was being built', async () => {
      const cache = await fx.make().registerCache<string, number>('c');
      let resolve!: (v: number) => void;
      const pending = cache.getOrBuild('k', () => new Promise<number>((r) => (resolve = r)));
      await new Promise((r) => setImmediate(r));
      cache.delete('k');
      resolve(1);
      expect(await pending).to.equal(1);
      expect(cache.has('k')).to.equal(false);
    });

    it('passes the ttl option to the stored entry', async () => {
      const now = 100;
      const cache = await fx.make({ clock: { now: () => now } }).registerCache<string, number>('c');
      await cache.getOrBuild('k', () => 1, { ttl: 50 });
      expect(cache.expiresAt('k')).to.equal(150);
    });
  });

  describe('change tracking', () => {
    it('counts every write until a save', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      expect(cache.pendingChanges).to.equal(0);
      cache.set('a', 1).set('a', 2).set('b', 3);
      cache.delete('b');
      cache.delete('missing'); // not a change
      expect(cache.pendingChanges).to.equal(4);
      await manager.save('c');
      expect(cache.pendingChanges).to.equal(0);
      cache.clear();
      expect(cache.pendingChanges).to.equal(1);
    });

    it('counts a write made during a save toward the next save', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      cache.set('a', 1);
      const saving = manager.save('c');
      cache.set('b', 2);
      await saving;
      expect(cache.pendingChanges).to.equal(1);
    });

    it('keeps the changes of a failed save', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      cache.set('a', 1).set('b', 2);
      const fire = new Error('disk on fire');
      sinon.stub(manager.store, 'save').rejects(fire);
      if (manager.store.saveChanges !== undefined) sinon.stub(manager.store, 'saveChanges').rejects(fire);
      expect(await rejection(manager.save('c'))).to.equal(fire);
      expect(cache.pendingChanges).to.equal(2);
    });
  });

  describe('change batches (what an incremental save writes)', () => {
    it('holds only the changed keys, with their current values and expiry', async () => {
      const now = 1_000;
      const cache = await fx.make({ clock: { now: () => now } }).registerCache<string, number>('c', {
        contents: [['a', 1], ['b', 2], ['c', 3]],
      });
      cacheInternals(cache).beginSave('full');
      cache.set('a', 10).set('a', 11).set('d', 4, { ttl: 500 });
      cache.delete('b');
      const ticket = cacheInternals(cache).beginSave('changes');
      expect(ticket.entries).to.equal(undefined);
      expect(ticket.batch).to.deep.equal({ cleared: false, sets: [['a', 11, 0], ['d', 4, 1_500]], deletes: ['b'] });
      expect(ticket.changes).to.equal(4);
      expect(cache.pendingChanges).to.equal(0);
    });

    it('starts from a clear after clear()', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { contents: [['a', 1]] });
      cacheInternals(cache).beginSave('changes');
      cache.clear();
      cache.set('z', 26);
      expect(cacheInternals(cache).beginSave('changes').batch).to.deep.equal({ cleared: true, sets: [['z', 26, 0]], deletes: [] });
    });

    it('still writes an unsaved entry that LRU eviction pushed out of memory', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { maxEntries: 2 });
      cache.set('a', 1).set('b', 2).set('c', 3);
      expect(cache.has('a')).to.equal(false);
      const ticket = cacheInternals(cache).beginSave('changes');
      expect(ticket.batch?.sets).to.deep.equal([['a', 1, 0], ['b', 2, 0], ['c', 3, 0]]);
    });

    it('gives evicted entries back when the save fails, unless they were deleted since', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { maxEntries: 1 });
      cache.set('a', 1).set('b', 2).set('x', 3); // a and b evicted, unsaved
      const internals = cacheInternals(cache);
      const failed = internals.beginSave('changes');
      cache.delete('b'); // a delete made during the save wins over the failed save's copy
      internals.abortSave(failed);
      const retry = internals.beginSave('changes');
      expect(retry.batch?.sets).to.deep.equal([['a', 1, 0], ['x', 3, 0]]);
      expect(retry.batch?.deletes).to.deep.equal(['b']);
      expect(retry.changes).to.equal(4);
    });

    describe('a cache written since it was empty (no key listed until a saved entry joins)', () => {
      it('counts and writes every entry in memory and the keys deleted since', async () => {
        const cache = await fx.make().registerCache<string, number>('c');
        cache.set('a', 1).set('b', 2).set('a', 3);
        cache.delete('b');
        cache.set('c', 4);
        expect(cache.stats().dirtyKeys).to.equal(3);
        cache.set('b', 5); // back in memory: counted once
        expect(cache.stats().dirtyKeys).to.equal(3);
        cache.delete('b');
        const ticket = cacheInternals(cache).beginSave('changes');
        expect(ticket.batch).to.deep.equal({ cleared: false, sets: [['a', 3, 0], ['c', 4, 0]], deletes: ['b'] });
        expect([...ticket.dirtyKeys]).to.have.members(['a', 'c', 'b']);
        expect(cache.stats().dirtyKeys).to.equal(0);
      });

      it('writes a key deleted and then set again as set, not deleted', async () => {
        const cache = await fx.make().registerCache<string, number>('c');
        cache.set('x', 1).set('y', 2);
        cache.delete('x');
        cache.set('x', 3);
        expect(cache.stats().dirtyKeys).to.equal(2);
        expect(cacheInternals(cache).beginSave('changes').batch).to.deep.equal({ cleared: false, sets: [['y', 2, 0], ['x', 3, 0]], deletes: [] });
      });

      it('on a shared store, lists the changed keys one by one once a saved entry is read into memory', () => {
        const cache = bareCache(true);
        const internals = cacheInternals(cache);
        internals.replace({ values: new Map(), expiry: new Map() }, false, true);
        cache.set('a', 1);
        expect(internals.refresh('b', ['b', 2, 0]), 'b was not changed here').to.equal(true);
        expect(internals.refresh('a', ['a', 9, 0]), 'a was').to.equal(false);
        cache.set('c', 3);
        expect(cache.stats().dirtyKeys).to.equal(2);
        // b is another process's: writing it back could undo a newer write of theirs.
        expect(internals.beginSave('changes').batch).to.deep.equal({ cleared: false, sets: [['a', 1, 0], ['c', 3, 0]], deletes: [] });
      });

      it('on an unshared store, lets a saved entry read into memory join (written again, unchanged)', async () => {
        const cache = await fx.make().registerCache<string, number>('c');
        const internals = cacheInternals(cache);
        cache.set('a', 1);
        expect(internals.refresh('b', ['b', 2, 0])).to.equal(true);
        expect(cache.stats().dirtyKeys).to.equal(2);
        expect(internals.beginSave('changes').batch).to.deep.equal({ cleared: false, sets: [['a', 1, 0], ['b', 2, 0]], deletes: [] });
      });

      it('starts on an unshared store once more than half the entries (and at least 1 024) are listed', async () => {
        const manager = fx.make();
        const cache = await manager.registerCache<number, number>('c');
        for (let i = 0; i < 4_000; i++) cache.set(i, i);
        await manager.save('c');
        for (let i = 0; i < 1_500; i++) cache.set(i, -i); // 1 500 of 4 000 listed
        cache.delete(3_999);
        expect(cache.stats().dirtyKeys).to.equal(1_501);
        for (let i = 1_500; i < 2_100; i++) cache.set(i, -i); // 2 100 of 3 999: every entry counts
        expect(cache.stats().dirtyKeys).to.equal(4_000);
        const batch = cacheInternals(cache).beginSave('changes').batch;
        expect(batch?.sets).to.have.length(3_999);
        expect(batch?.sets[1_000]).to.deep.equal([1_000, -1_000, 0]);
        expect(batch?.sets[3_000]).to.deep.equal([3_000, 3_000, 0]);
        expect(batch?.deletes).to.deep.equal([3_999]);
      });

      it('never starts that way on a shared store: only changed entries are written', () => {
        const cache = bareCache(true);
        const internals = cacheInternals(cache);
        internals.replace({ values: new Map(Array.from({ length: 3_000 }, (_, i) => [i, i])), expiry: new Map() }, false, true);
        for (let i = 0; i < 2_000; i++) cache.set(i, -i);
        expect(cache.stats().dirtyKeys).to.equal(2_000);
        expect(internals.beginSave('changes').batch?.sets).to.have.length(2_000);
      });

      it('treats every key of a running save as being written, and gives them all back if it fails', async () => {
        const cache = await fx.make().registerCache<string, number>('c');
        const internals = cacheInternals(cache);
        cache.set('a', 1).set('b', 2).set('gone', 0);
        cache.delete('gone');
        const failed = internals.beginSave('full');
        expect(failed.entries).to.deep.equal([['a', 1, 0], ['b', 2, 0]]);
        expect(internals.storeMayHold('b')).to.equal(false);
        expect(internals.storeMayHold('gone')).to.equal(false);
        expect(failed.dirtyKeys.has('zz')).to.equal(false);
        cache.set('c', 3);
        internals.abortSave(failed);
        expect(cache.stats().dirtyKeys).to.equal(4);
        const retry = internals.beginSave('changes');
        expect(retry.batch?.sets).to.have.deep.members([['a', 1, 0], ['b', 2, 0], ['c', 3, 0]]);
        expect(retry.batch?.deletes).to.deep.equal(['gone']);
        internals.endSave(retry);
        expect(internals.storeMayHold('b')).to.equal(true);
      });

      it('holds for dirty contents swapped in (a build) and after clear()', async () => {
        const manager = fx.make();
        const cache = await manager.registerCache<string, number>('c', { contents: [['a', 1], ['b', 2]] });
        cache.delete('a');
        expect(cache.stats().dirtyKeys).to.equal(2);
        await manager.save('c');
        cache.set('b', 3);
        cache.clear();
        cache.set('z', 26);
        expect(cache.stats().dirtyKeys).to.equal(1);
        expect(cacheInternals(cache).beginSave('changes').batch).to.deep.equal({ cleared: true, sets: [['z', 26, 0]], deletes: [] });
      });
    });

    it('includes evicted unsaved entries in a full save too', async () => {
      const cache = await fx.make().registerCache<string, number>('c', { maxEntries: 1 });
      cache.set('a', 1).set('b', 2);
      expect(cacheInternals(cache).beginSave('full').entries).to.deep.equal([['a', 1, 0], ['b', 2, 0]]);
    });
  });

  describe('codec check at set()', () => {
    it('refuses a value the codec cannot encode, naming the key, and changes nothing', async () => {
      const cache = await fx.make().registerCache<string, unknown>('c');
      expect(() => cache.set('fn', () => 1)).to.throw(UnserializableError, /key "fn"/);
      expect(() => cache.set('deep', { a: [1, { b: Symbol('s') }] })).to.throw(UnserializableError);
      expect(() => cache.set('weak', new WeakMap())).to.throw(UnserializableError);
      expect(cache.size).to.equal(0);
      expect(cache.pendingChanges).to.equal(0);
    });

    it('refuses a key the codec cannot encode', async () => {
      const cache = await fx.make().registerCache<unknown, number>('c');
      try {
        cache.set(Symbol('k'), 1);
        expect.fail('set accepted a symbol key');
      } catch (err) {
        expect(err).to.be.instanceOf(UnserializableError);
        expect((err as UnserializableError).path).to.equal('(key)');
        expect((err as UnserializableError).code).to.equal('E_UNSERIALIZABLE');
      }
    });

    it('follows the json codec, which refuses what JSON would change', async () => {
      const cache = await fx.make({ codec: 'json' }).registerCache<string, unknown>('c');
      cache.set('ok', { a: [1, 'two', null, true] });
      expect(() => cache.set('date', new Date())).to.throw(UnserializableError);
      expect(() => cache.set('big', 1n)).to.throw(UnserializableError);
      expect(() => cache.set('map', new Map())).to.throw(UnserializableError);
    });

    it('does not check a non-persistent cache, which never encodes', async () => {
      const cache = await fx.make().registerCache<string, unknown>('c', { persistent: false });
      const fn = (): number => 1;
      cache.set('fn', fn);
      expect(cache.get('fn')).to.equal(fn);
    });
  });

  describe('after deregister', () => {
    it('refuses writes with E_CLOSED and still answers reads', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      cache.set('a', 1);
      await manager.deregister('c');
      expect(() => cache.set('b', 2)).to.throw(ClosedError);
      expect(() => cache.delete('a')).to.throw(ClosedError);
      expect(() => cache.clear()).to.throw(ClosedError);
      expect(cache.get('a')).to.equal(1);
    });
  });
});
