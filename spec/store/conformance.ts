/**
 * The contract of `CacheStore`, as a suite every store must pass (FileStore, MemoryStore,
 * later RedisStore). A store's spec calls {@link describeStoreConformance} with a factory
 * that creates a fresh, empty store and a cleanup for it.
 */

import { expect } from 'chai';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import { CacheGraphError, UnserializableError } from '../../lib/errors.js';
import { jsonCodec, v8Codec } from '../../lib/codec/index.js';
import type { Codec } from '../../lib/codec/types.js';
import type { CacheStore, ChangeBatch, SaveResult, StoreContext, StoredEntry } from '../../lib/store/types.js';

/** A fixed clock: tests never read the real time. */
export const FIXED_NOW = Date.UTC(2024, 4, 1, 12, 0, 0);

import { rejection as rejectionOf } from '../helpers.js';
import { seededRandom } from '../random.js';

export { rejectionOf, seededRandom };

/** A system error like the ones `fs` throws, for fault injection with sinon stubs. */
export function systemError(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected failure, ${syscall}`), { code, syscall });
}

/** The prototype of fs/promises FileHandles, for spying on and stubbing reads, writes and fsyncs. */
export async function fileHandlePrototype(path: string = os.tmpdir()): Promise<FileHandle> {
  const handle = await fs.open(path, 'r');
  await handle.close();
  return Object.getPrototypeOf(handle) as FileHandle;
}

/** A batch of changes, for `saveChanges`. */
export const changeBatch = (sets: StoredEntry[] = [], deletes: unknown[] = [], cleared = false): ChangeBatch => ({ cleared, sets, deletes });

/** A model of what a cache holds: a Map applying batches like a store should. */
export function applyBatch(model: Map<unknown, StoredEntry>, change: ChangeBatch): void {
  if (change.cleared) model.clear();
  for (const entry of change.sets) {
    model.delete(entry[0]);
    model.set(entry[0], entry);
  }
  for (const key of change.deletes) model.delete(key);
}

/** A store context with a fixed clock. */
export function contextWith(codec: Codec, now = FIXED_NOW): StoreContext {
  return { codec, clock: { now: () => now } };
}



/** Cache names a store must keep distinct and inside its root. */
export const HOSTILE_NAMES: readonly string[] = [
  '../x',
  '../../etc/passwd',
  '/abs/path',
  'C:\\Windows\\x',
  'a/b',
  'a\\b',
  '.',
  '..',
  '...',
  'trailing.',
  'trailing ',
  ' leading',
  'Users',
  'users',
  'USERS',
  'con',
  'CON',
  'con.txt',
  'nul',
  'com1',
  'lpt9',
  'a:b',
  'a*b?c"d<e>f|g',
  'x'.repeat(300),
  `${'x'.repeat(299)}y`,
  'é'.repeat(150),
  'café',
  'cafe\u0301', // the same word, decomposed: a different name
  '日本語',
  '🙂',
  '__proto__',
  'constructor',
  'hasOwnProperty',
  '%41',
  'A',
  '~',
  'a~b',
  'name.cgc',
  'name.cgc.tmp-1-abc',
  'name.cgc.corrupt-x',
  'tab\tname',
  'nul\u0000byte',
];

/** What a store returns for a name: the store, and how to remove what it created. */
export interface StoreFixture {
  readonly store: CacheStore;
  cleanup(): Promise<void>;
}

/**
 * Declares the conformance suite for a store.
 *
 * @param label - the store's name in the report
 * @param factory - creates a fresh, empty store (called before each test)
 * @example
 * describeStoreConformance('MemoryStore', async () => ({ store: new MemoryStore(), cleanup: async () => {} }));
 */
export function describeStoreConformance(label: string, factory: () => Promise<StoreFixture>): void {
  describe(`${label} (CacheStore conformance)`, function () {
    let fixture: StoreFixture;
    let store: CacheStore;
    const v8 = contextWith(v8Codec);
    const json = contextWith(jsonCodec);

    beforeEach(async function () {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async function () {
      await fixture.store.close();
      await fixture.cleanup();
    });

    async function roundTrip(name: string, entries: StoredEntry[], ctx: StoreContext = v8): Promise<StoredEntry[]> {
      await store.save(name, entries, ctx);
      const snapshot = await store.load(name, ctx);
      expect(snapshot, `snapshot of ${name}`).to.not.equal(undefined);
      return [...(snapshot?.entries ?? [])];
    }

    describe('#load()', function () {
      it('resolves undefined for a name that was never saved', async function () {
        expect(await store.load('never-saved', v8)).to.equal(undefined);
      });

      it('reports when the copy was saved, its location, size and codec', async function () {
        const result = await store.save('meta', [['k', 1, 0]], contextWith(v8Codec, 1234));
        const snapshot = await store.load('meta', contextWith(v8Codec, 99_999));
        expect(snapshot?.savedAt).to.equal(1234);
        expect(snapshot?.location).to.equal(store.locate('meta'));
        expect(snapshot?.bytes).to.equal(result.bytes);
        expect(snapshot?.codec).to.equal('v8');
      });

      it('decodes a copy with the codec it was written with, whatever the current codec', async function () {
        await store.save('written-as-json', [['k', { a: [1, 'two'] }, 0]], json);
        const snapshot = await store.load('written-as-json', v8);
        expect(snapshot?.codec).to.equal('json');
        expect(snapshot?.entries).to.deep.equal([['k', { a: [1, 'two'] }, 0]]);
      });

      it('returns copies: mutating a loaded value does not change the saved one', async function () {
        await store.save('copies', [['k', { list: [1] }, 0]], v8);
        const first = await store.load('copies', v8);
        ((first?.entries[0]?.[1] as { list: number[] }).list).push(2);
        const second = await store.load('copies', v8);
        expect(second?.entries[0]?.[1]).to.deep.equal({ list: [1] });
      });

      it('returns binary values that own their memory, so mutating one changes nothing saved', async function () {
        await store.save('bytes', [['a', Buffer.from('first'), 0], ['b', Uint16Array.of(1, 2), 0], ['c', new DataView(new ArrayBuffer(3)), 0]], v8);
        const first = await store.load('bytes', v8);
        const [a, b, c] = (first?.entries ?? []).map(([, value]) => value as ArrayBufferView);
        // Each view has exactly its own bytes: no window onto the rest of the snapshot.
        for (const view of [a, b, c]) expect(view?.buffer.byteLength).to.equal(view?.byteLength);
        (a as Buffer).write('XXXXX');
        (b as Uint16Array)[0] = 99;
        const second = await store.load('bytes', v8);
        expect((second?.entries[0]?.[1] as Buffer).toString()).to.equal('first');
        expect((second?.entries[1]?.[1] as Uint16Array)[0]).to.equal(1);
      });
    });

    describe('#save()', function () {
      it('round-trips every kind of value the v8 codec keeps', async function () {
        const shared = { shared: true };
        const cyclic: Record<string, unknown> = { name: 'loop' };
        cyclic['self'] = cyclic;
        const values: [string, unknown][] = [
          ['date', new Date(Date.UTC(2020, 0, 2))],
          ['map', new Map<unknown, unknown>([['a', 1], [2, { b: [3n] }]])],
          ['set', new Set(['x', 1, null])],
          ['bigint', 2n ** 70n],
          ['uint8', Uint8Array.of(1, 2, 255)],
          ['float64', Float64Array.of(0.5, -0, NaN)],
          ['bigint64', BigInt64Array.of(-1n, 2n ** 62n)],
          ['buffer', Buffer.from('bytes')],
          ['regexp', /a+b/giu],
          ['nested', { a: { b: { c: [1, [2, [3, { d: 'deep' }]]] } } }],
          ['shared', { left: shared, right: shared }],
          ['undefined', undefined],
          ['null', null],
          ['minus zero', -0],
          ['nan', NaN],
          ['string', 'text with \u0000 and 🙂'],
          ['sparse', [1, , 3]], // eslint-disable-line no-sparse-arrays
          ['error', new TypeError('typed failure')],
        ];
        const entries = values.map(([key, value]): StoredEntry => [key, value, 0]);
        entries.push(['cyclic', cyclic, 0]);
        entries.push([new Map([[1, 2]]), 'a Map as a key', 0]);
        const loaded = await roundTrip('v8-types', entries);

        expect(loaded.slice(0, values.length)).to.deep.equal(entries.slice(0, values.length));
        const byKey = new Map(loaded.map(([key, value]) => [key, value]));
        expect(byKey.get('buffer')).to.satisfy(Buffer.isBuffer);
        expect(Object.is((byKey.get('float64') as Float64Array)[1], -0)).to.equal(true);
        expect(Object.is(byKey.get('minus zero'), -0)).to.equal(true);
        const sharedBack = byKey.get('shared') as { left: object; right: object };
        expect(sharedBack.left).to.equal(sharedBack.right);
        const error = byKey.get('error') as Error;
        expect(error).to.be.instanceOf(TypeError);
        expect(error.message).to.equal('typed failure');
        const loop = loaded.find(([key]) => key === 'cyclic')?.[1] as Record<string, unknown>;
        expect(loop['self']).to.equal(loop);
        const mapKeyed = loaded.at(-1);
        expect(mapKeyed?.[0]).to.deep.equal(new Map([[1, 2]]));
      });

      it('round-trips the values the json codec keeps', async function () {
        const entries: StoredEntry[] = [
          ['object', { a: 1, b: 'two', c: [true, false, null], d: { e: -1.5e300 } }, 0],
          ['array', [1, [2, [3]], {}], 0],
          ['string', 'line\nbreak "quoted" \\ 🙂 \ud800', 0],
          ['number', 0.1 + 0.2, 0],
          ['null', null, 0],
          ['empty', {}, 0],
          [42, 'numeric key', 0],
        ];
        expect(await roundTrip('json-types', entries, json)).to.deep.equal(entries);
      });

      it('preserves expiresAt of every entry', async function () {
        const entries: StoredEntry[] = [
          ['never', 1, 0],
          ['soon', 2, FIXED_NOW + 1],
          ['later', 3, FIXED_NOW + 86_400_000],
          ['past', 4, 1],
        ];
        expect(await roundTrip('ttl', entries)).to.deep.equal(entries);
      });

      it('round-trips an empty cache', async function () {
        const result = await store.save('empty', [], v8);
        expect(result.entries).to.equal(0);
        const snapshot = await store.load('empty', v8);
        expect(snapshot?.entries).to.deep.equal([]);
      });

      it('keeps the order of the entries', async function () {
        const entries: StoredEntry[] = ['z', 'a', 'm', '10', '2', '1'].map((key, i): StoredEntry => [key, i, 0]);
        expect((await roundTrip('order', entries)).map(([key]) => key)).to.deep.equal(['z', 'a', 'm', '10', '2', '1']);
      });

      it('replaces the previous copy (the second save wins, nothing is merged)', async function () {
        await store.save('replace', [['a', 1, 0], ['b', 2, 0]], v8);
        await store.save('replace', [['c', 3, 0]], v8);
        expect((await store.load('replace', v8))?.entries).to.deep.equal([['c', 3, 0]]);
      });

      it('reports the entries and bytes written and the location', async function () {
        const result = await store.save('report', [['a', 1, 0], ['b', 2, 0]], v8);
        expect(result.entries).to.equal(2);
        expect(result.bytes).to.be.greaterThan(0);
        expect(result.location).to.equal(store.locate('report'));
      });

      it('accepts any iterable, such as a generator', async function () {
        function* entries(): Generator<StoredEntry> {
          for (let i = 0; i < 5; i++) yield [`k${i}`, i, 0];
        }
        expect(await roundTrip('generator', [...entries()])).to.have.length(5);
        await store.save('generator', entries(), v8);
        expect((await store.load('generator', v8))?.entries).to.have.length(5);
      });

      it('round-trips 10 000 entries', async function () {
        const entries = Array.from({ length: 10_000 }, (_, i): StoredEntry => [`key-${i}`, { i, tags: ['a', 'b'] }, i % 7 === 0 ? FIXED_NOW + i : 0]);
        expect(await roundTrip('many', entries)).to.deep.equal(entries);
      });

      it('round-trips a 20 MB value', async function () {
        const big = Buffer.alloc(20 * 1024 * 1024);
        for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
        const loaded = await roundTrip('huge', [['before', 1, 0], ['big', big, 0], ['after', 2, 0]]);
        expect(loaded.map(([key]) => key)).to.deep.equal(['before', 'big', 'after']);
        expect(Buffer.compare(loaded[1]?.[1] as Buffer, big)).to.equal(0);
      });

      it('rejects an unencodable value with UnserializableError naming the key, keeping the previous copy', async function () {
        await store.save('guarded', [['ok', 1, 0]], v8);
        const error = await rejectionOf(store.save('guarded', [['fine', 1, 0], ['bad', { fn: () => 1 }, 0]], v8));
        expect(error).to.be.instanceOf(UnserializableError);
        expect((error as UnserializableError).key).to.equal('bad');
        expect((error as UnserializableError).cacheName).to.equal('guarded');
        expect((error as UnserializableError).path).to.equal('.fn');
        expect((await store.load('guarded', v8))?.entries).to.deep.equal([['ok', 1, 0]]);
      });

      it('rejects a value the json codec would mangle, keeping the previous copy', async function () {
        await store.save('guarded-json', [['ok', 1, 0]], json);
        const error = await rejectionOf(store.save('guarded-json', [['when', new Date(0), 0]], json));
        expect(error).to.be.instanceOf(UnserializableError);
        expect((error as UnserializableError).key).to.equal('when');
        expect((await store.load('guarded-json', json))?.entries).to.deep.equal([['ok', 1, 0]]);
      });

      it('does not create a copy when the first save fails', async function () {
        await rejectionOf(store.save('never-created', [['bad', Symbol('s'), 0]], v8));
        expect(await store.has('never-created')).to.equal(false);
        expect(await store.load('never-created', v8)).to.equal(undefined);
      });
    });

    describe('names', function () {
      it('keeps hostile names distinct and round-trips each under its own name', async function () {
        for (const [i, name] of HOSTILE_NAMES.entries()) await store.save(name, [['index', i, 0]], v8);
        for (const [i, name] of HOSTILE_NAMES.entries()) {
          const snapshot = await store.load(name, v8);
          expect(snapshot?.entries, JSON.stringify(name)).to.deep.equal([['index', i, 0]]);
        }
        expect(await store.list()).to.have.members([...HOSTILE_NAMES]);
      });

      it('gives every name its own location', async function () {
        const locations = new Set(HOSTILE_NAMES.map((name) => store.locate(name)));
        expect(locations.size).to.equal(HOSTILE_NAMES.length);
      });
    });

    describe('#delete() / #has() / #list()', function () {
      it('has() is false before a save, true after, false after delete()', async function () {
        expect(await store.has('lifecycle')).to.equal(false);
        await store.save('lifecycle', [['k', 1, 0]], v8);
        expect(await store.has('lifecycle')).to.equal(true);
        expect(await store.delete('lifecycle')).to.equal(true);
        expect(await store.has('lifecycle')).to.equal(false);
        expect(await store.load('lifecycle', v8)).to.equal(undefined);
      });

      it('delete() resolves false when nothing was saved', async function () {
        expect(await store.delete('nothing')).to.equal(false);
      });

      it('list() names exactly the saved caches', async function () {
        expect(await store.list()).to.deep.equal([]);
        await store.save('b', [], v8);
        await store.save('a', [], v8);
        await store.save('c', [], v8);
        await store.delete('c');
        expect([...(await store.list())].sort()).to.deep.equal(['a', 'b']);
      });

      it('saves of one name do not touch another', async function () {
        await store.save('one', [['k', 1, 0]], v8);
        await store.save('two', [['k', 2, 0]], v8);
        await store.delete('two');
        expect((await store.load('one', v8))?.entries).to.deep.equal([['k', 1, 0]]);
      });
    });

    describe('#quarantine()', function () {
      it('moves the copy aside: no longer loaded, listed or present, location returned', async function () {
        await store.save('damaged', [['k', 1, 0]], v8);
        const moved = await store.quarantine('damaged', v8);
        expect(moved).to.be.a('string');
        expect(moved).to.not.equal(store.locate('damaged'));
        expect(moved).to.include('.corrupt-2024-05-01T120000.000Z');
        expect(await store.has('damaged')).to.equal(false);
        expect(await store.load('damaged', v8)).to.equal(undefined);
        expect(await store.list()).to.deep.equal([]);
      });

      it('never overwrites an earlier quarantined copy', async function () {
        await store.save('twice', [['k', 1, 0]], v8);
        const first = await store.quarantine('twice', v8);
        await store.save('twice', [['k', 2, 0]], v8);
        const second = await store.quarantine('twice', v8);
        expect(second).to.be.a('string').and.not.equal(first);
      });

      it('resolves undefined when there is nothing to move', async function () {
        expect(await store.quarantine('absent', v8)).to.equal(undefined);
      });

      it('lets the cache be saved again afterwards', async function () {
        await store.save('again', [['k', 1, 0]], v8);
        await store.quarantine('again', v8);
        await store.save('again', [['k', 2, 0]], v8);
        expect((await store.load('again', v8))?.entries).to.deep.equal([['k', 2, 0]]);
      });
    });

    /** The store's saveChanges, or skips the test when it has none. */
    function saveChangesOf(test: Mocha.Context): (name: string, batch: ChangeBatch, ctx: StoreContext) => Promise<SaveResult> {
      const method = store.saveChanges;
      if (method === undefined) test.skip();
      return (name, batch, ctx) => (method as NonNullable<CacheStore['saveChanges']>).call(store, name, batch, ctx);
    }

    /** The store's loadEntry, or skips the test when it has none. */
    function loadEntryOf(test: Mocha.Context): (name: string, key: unknown, ctx: StoreContext) => Promise<StoredEntry | undefined> {
      const method = store.loadEntry;
      if (method === undefined) test.skip();
      return (name, key, ctx) => (method as NonNullable<CacheStore['loadEntry']>).call(store, name, key, ctx);
    }

    const batch = changeBatch;

    describe('#saveChanges() (stores that have it)', function () {
      it('applies sets and deletes to the saved copy; a new key comes last, expiry kept', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('changes', [['a', 1, 0], ['b', 2, 0], ['c', 3, 0]], v8);
        const result = await saveChanges('changes', batch([['b', 20, FIXED_NOW + 5000], ['d', 4, 0]], ['a']), v8);
        expect(result.entries).to.equal(3);
        expect(result.location).to.equal(store.locate('changes'));
        const entries = (await store.load('changes', v8))?.entries;
        expect(new Map(entries?.map(([k, v, e]) => [k, [v, e]]))).to.deep.equal(
          new Map<unknown, unknown>([['c', [3, 0]], ['b', [20, FIXED_NOW + 5000]], ['d', [4, 0]]]),
        );
        expect(entries?.at(-1)?.[0]).to.equal('d');
      });

      it('applies successive batches in order', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('ordered', [['k', 0, 0]], v8);
        for (let i = 1; i <= 5; i++) await saveChanges('ordered', batch([['k', i, 0]]), v8);
        await saveChanges('ordered', batch([], ['k']), v8);
        await saveChanges('ordered', batch([['k', 'last', 0]]), v8);
        expect((await store.load('ordered', v8))?.entries).to.deep.equal([['k', 'last', 0]]);
      });

      it('creates the copy of a cache that was never saved (the batch applies to an empty cache)', async function () {
        const saveChanges = saveChangesOf(this);
        expect(await store.has('fresh')).to.equal(false);
        await saveChanges('fresh', batch([['x', 1, 0]], ['never-there']), v8);
        expect(await store.has('fresh')).to.equal(true);
        expect(await store.list()).to.deep.equal(['fresh']);
        expect((await store.load('fresh', v8))?.entries).to.deep.equal([['x', 1, 0]]);
      });

      it('a cleared batch forgets everything saved before it, then applies its sets', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('cleared', [['a', 1, 0], ['b', 2, 0]], v8);
        await saveChanges('cleared', batch([['c', 3, 0]], [], true), v8);
        expect((await store.load('cleared', v8))?.entries).to.deep.equal([['c', 3, 0]]);
        await saveChanges('cleared', batch([], [], true), v8);
        expect((await store.load('cleared', v8))?.entries).to.deep.equal([]);
      });

      it('accepts an empty batch without changing anything', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('empty-batch', [['a', 1, 0]], v8);
        await saveChanges('empty-batch', batch(), v8);
        expect((await store.load('empty-batch', v8))?.entries).to.deep.equal([['a', 1, 0]]);
      });

      it('rejects an unencodable value naming the key, and the copy is unchanged', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('guarded-batch', [['ok', 1, 0]], v8);
        const error = await rejectionOf(saveChanges('guarded-batch', batch([['fine', 2, 0], ['bad', { fn: () => 1 }, 0]]), v8));
        expect(error).to.be.instanceOf(UnserializableError).with.property('key', 'bad');
        expect((await store.load('guarded-batch', v8))?.entries).to.deep.equal([['ok', 1, 0]]);
        await saveChanges('guarded-batch', batch([['fine', 2, 0]]), v8);
        expect((await store.load('guarded-batch', v8))?.entries).to.deep.equal([['ok', 1, 0], ['fine', 2, 0]]);
      });

      it('keeps object keys identified by their contents', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('object-keys', [[{ id: 1 }, 'one', 0], [[1, 2], 'pair', 0]], v8);
        await saveChanges('object-keys', batch([[{ id: 1 }, 'uno', 0]], [[1, 2]]), v8);
        expect((await store.load('object-keys', v8))?.entries).to.deep.equal([[{ id: 1 }, 'uno', 0]]);
      });

      it('is replaced by a later full save; delete removes it; quarantine moves it', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('lifecycle-log', [['a', 1, 0]], v8);
        await saveChanges('lifecycle-log', batch([['b', 2, 0]]), v8);
        await store.save('lifecycle-log', [['z', 26, 0]], v8);
        expect((await store.load('lifecycle-log', v8))?.entries).to.deep.equal([['z', 26, 0]]);
        await saveChanges('lifecycle-log', batch([['y', 25, 0]]), v8);
        expect(await store.delete('lifecycle-log')).to.equal(true);
        expect(await store.load('lifecycle-log', v8)).to.equal(undefined);
        await saveChanges('lifecycle-log', batch([['new', 1, 0]]), v8);
        expect(await store.quarantine('lifecycle-log', v8)).to.be.a('string');
        expect(await store.has('lifecycle-log')).to.equal(false);
      });

      it('reports when the last batch was written', async function () {
        const saveChanges = saveChangesOf(this);
        await store.save('when', [['a', 1, 0]], contextWith(v8Codec, 1000));
        await saveChanges('when', batch([['b', 2, 0]]), contextWith(v8Codec, 2000));
        expect((await store.load('when', v8))?.savedAt).to.equal(2000);
      });
    });

    describe('#loadEntry() (stores that have it)', function () {
      it('reads one saved entry, or undefined for an absent key or cache', async function () {
        const loadEntry = loadEntryOf(this);
        await store.save('entries', [['a', { n: 1 }, 0], [7, 'seven', 0]], v8);
        expect(await loadEntry('entries', 'a', v8)).to.deep.equal(['a', { n: 1 }, 0]);
        expect(await loadEntry('entries', 7, v8)).to.deep.equal([7, 'seven', 0]);
        expect(await loadEntry('entries', '7', v8)).to.equal(undefined);
        expect(await loadEntry('entries', 'missing', v8)).to.equal(undefined);
        expect(await loadEntry('never-saved', 'a', v8)).to.equal(undefined);
      });

      it('sees the latest batch: updated, deleted and cleared keys', async function () {
        const loadEntry = loadEntryOf(this);
        const saveChanges = saveChangesOf(this);
        await store.save('latest', [['a', 1, 0], ['b', 2, 0], ['c', 3, 0]], v8);
        await saveChanges('latest', batch([['a', 10, 0]], ['b']), v8);
        expect(await loadEntry('latest', 'a', v8)).to.deep.equal(['a', 10, 0]);
        expect(await loadEntry('latest', 'b', v8)).to.equal(undefined);
        expect(await loadEntry('latest', 'c', v8)).to.deep.equal(['c', 3, 0]);
        await saveChanges('latest', batch([['d', 4, 0]], [], true), v8);
        expect(await loadEntry('latest', 'c', v8)).to.equal(undefined);
        expect(await loadEntry('latest', 'd', v8)).to.deep.equal(['d', 4, 0]);
      });

      it('treats an entry expired by the clock as absent', async function () {
        const loadEntry = loadEntryOf(this);
        await store.save('expiring', [['soon', 1, FIXED_NOW + 10], ['never', 2, 0]], v8);
        expect(await loadEntry('expiring', 'soon', contextWith(v8Codec, FIXED_NOW + 9))).to.deep.equal(['soon', 1, FIXED_NOW + 10]);
        expect(await loadEntry('expiring', 'soon', contextWith(v8Codec, FIXED_NOW + 10))).to.equal(undefined);
        expect(await loadEntry('expiring', 'never', contextWith(v8Codec, FIXED_NOW + 1e9))).to.deep.equal(['never', 2, 0]);
      });

      it('finds object keys by their contents and returns copies', async function () {
        const loadEntry = loadEntryOf(this);
        await store.save('object-entry', [[{ id: 1 }, { list: [1] }, 0]], v8);
        const first = await loadEntry('object-entry', { id: 1 }, v8);
        expect(first).to.deep.equal([{ id: 1 }, { list: [1] }, 0]);
        ((first?.[1] as { list: number[] }).list).push(2);
        expect(await loadEntry('object-entry', { id: 1 }, v8)).to.deep.equal([{ id: 1 }, { list: [1] }, 0]);
        expect(await loadEntry('object-entry', { id: 2 }, v8)).to.equal(undefined);
      });

      it('reads entries among many (several chunks)', async function () {
        const loadEntry = loadEntryOf(this);
        const entries = Array.from({ length: 5000 }, (_, i): StoredEntry => [`key-${i}`, i, 0]);
        await store.save('many-entries', entries, v8);
        for (const i of [0, 1023, 1024, 2500, 4999]) expect(await loadEntry('many-entries', `key-${i}`, v8)).to.deep.equal([`key-${i}`, i, 0]);
      });
    });

    describe('#describe() (stores that have it)', function () {
      function describeOf(test: Mocha.Context): NonNullable<CacheStore['describe']> {
        if (store.describe === undefined) test.skip();
        return (name) => (store.describe as NonNullable<CacheStore['describe']>).call(store, name);
      }
      const linked = (ctx: StoreContext, dependsOn: readonly string[]): StoreContext => ({ ...ctx, dependsOn });

      it('resolves undefined for a name that was never saved, or was deleted', async function () {
        const describe = describeOf(this);
        expect(await describe('never')).to.equal(undefined);
        await store.save('gone', [['k', 1, 0]], v8);
        await store.delete('gone');
        expect(await describe('gone')).to.equal(undefined);
      });

      it('reports entries, size, save time, codec and location of a saved copy', async function () {
        const describe = describeOf(this);
        await store.save('described', [['a', 1, 0], ['b', 2, 0]], json);
        const info = await describe('described');
        expect(info).to.include({ name: 'described', entries: 2, savedAt: FIXED_NOW, codec: 'json', location: store.locate('described') });
        expect(info?.bytes).to.be.greaterThan(0);
        expect(info?.dependsOn).to.deep.equal([]);
      });

      it('records the dependency links a save carries, and keeps them when a later write carries none', async function () {
        const describe = describeOf(this);
        await store.save('derived', [['k', 1, 0]], linked(v8, ['users', 'prices']));
        expect((await describe('derived'))?.dependsOn).to.deep.equal(['users', 'prices']);
        await store.save('derived', [['k', 2, 0]], v8);
        expect((await describe('derived'))?.dependsOn).to.deep.equal(['users', 'prices']);
        await store.save('derived', [['k', 3, 0]], linked(v8, []));
        expect((await describe('derived'))?.dependsOn).to.deep.equal([]);
      });

      it('records links carried by a batch of changes (stores that have saveChanges)', async function () {
        const describe = describeOf(this);
        const saveChanges = saveChangesOf(this);
        await saveChanges('batched', batch([['k', 1, 0]]), linked(v8, ['users']));
        expect((await describe('batched'))?.dependsOn).to.deep.equal(['users']);
        await saveChanges('batched', batch([['k', 2, 0]]), linked(v8, ['users', 'orders']));
        await saveChanges('batched', batch([['j', 3, 0]]), v8);
        const info = await describe('batched');
        expect(info?.dependsOn).to.deep.equal(['users', 'orders']);
        expect(info?.entries === undefined || info.entries === 2).to.equal(true);
        expect((await store.load('batched', v8))?.entries).to.have.length(2);
      });
    });

    describe('#close()', function () {
      it('is idempotent', async function () {
        await store.close();
        await store.close();
      });
    });

    describe('errors', function () {
      it('are cachegraph errors with codes', async function () {
        const error = await rejectionOf(store.save('coded', [['k', () => 1, 0]], v8));
        expect(error).to.be.instanceOf(CacheGraphError);
        expect((error as CacheGraphError).code).to.equal('E_UNSERIALIZABLE');
      });
    });
  });
}
