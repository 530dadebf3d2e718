// FileStore as a log: appended batches, torn tails, damage, fsync modes, single-key reads.
import { expect } from 'chai';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { jsonCodec, v8Codec } from '../../lib/codec/index.js';
import { CorruptFileError, StoreIOError, UnsupportedFormatError } from '../../lib/errors.js';
import { FileStore, type FileStoreOptions } from '../../lib/store/file.js';
import { readManifest } from '../../lib/store/log/manifest.js';
import type { StoreContext, StoredEntry, StoreWarning } from '../../lib/store/types.js';
import { applyBatch as applyTo, changeBatch as batch, contextWith, fileHandlePrototype, FIXED_NOW, rejectionOf, seededRandom, systemError } from './conformance.js';

describe('FileStore (log)', function () {
  let root: string;
  let dir: string;
  let store: FileStore;
  let warnings: StoreWarning[];
  let ctx: StoreContext;

  function make(options: Omit<FileStoreOptions, 'dir'> = {}): FileStore {
    return new FileStore({ dir, compaction: false, ...options });
  }

  beforeEach(async function () {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachegraph-log-'));
    dir = path.join(root, 'store');
    store = make();
    warnings = [];
    ctx = { ...contextWith(v8Codec), warn: (warning) => warnings.push(warning) };
  });

  afterEach(async function () {
    await store.close().catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true });
  });

  async function segments(name = 'users'): Promise<string[]> {
    const manifest = await readManifest(store.locate(name), name);
    if (typeof manifest !== 'object') throw new Error('no manifest');
    return manifest.segments.map((no) => path.join(store.locate(name), `${no}.log`));
  }

  async function lastSegment(name = 'users'): Promise<string> {
    const all = await segments(name);
    const last = all.at(-1);
    if (last === undefined) throw new Error('no segment');
    return last;
  }

  async function size(file: string): Promise<number> {
    return (await fs.stat(file)).size;
  }

  async function loaded(name = 'users', context: StoreContext = ctx): Promise<StoredEntry[] | undefined> {
    return (await store.load(name, context))?.entries as StoredEntry[] | undefined;
  }

  const base: StoredEntry[] = Array.from({ length: 10 }, (_, i): StoredEntry => [`k${i}`, { i }, 0]);

  describe('layout', function () {
    it('keeps a snapshot and appends each sync to one segment named by the manifest', async function () {
      await store.save('users', base, ctx);
      expect((await fs.readdir(store.locate('users'))).sort()).to.deep.equal(['1.snapshot', 'MANIFEST']);
      await store.saveChanges('users', batch([['k1', 'one', 0]]), ctx);
      await store.saveChanges('users', batch([], ['k2']), ctx);
      expect((await fs.readdir(store.locate('users'))).sort()).to.deep.equal(['1.snapshot', '2.log', 'MANIFEST']);
      const manifest = await readManifest(store.locate('users'), 'users');
      expect(manifest).to.include({ cache: 'users', next: 3 });
      expect(manifest).to.have.property('segments').that.deep.equals([2]);
      expect(manifest).to.have.nested.property('snapshot.file', 1);
    });

    it('writes about as many bytes as the changes, not the cache, and never rewrites the snapshot', async function () {
      const big = Array.from({ length: 20_000 }, (_, i): StoredEntry => [`key-${i}`, { i, text: 'x'.repeat(40) }, 0]);
      await store.save('users', big, ctx);
      const snapshot = path.join(store.locate('users'), '1.snapshot');
      const before = await fs.stat(snapshot);
      const changes = Array.from({ length: 100 }, (_, i): StoredEntry => [`key-${i * 7}`, { i, text: 'y'.repeat(40) }, 0]);
      const result = await store.saveChanges('users', batch(changes), ctx);
      expect(result.entries).to.equal(100);
      expect(result.bytes).to.be.below(before.size / 100);
      const after = await fs.stat(snapshot);
      expect([after.ino, after.mtimeMs, after.size]).to.deep.equal([before.ino, before.mtimeMs, before.size]);
    });

    it('starts a new segment when the codec changes, and replays both', async function () {
      await store.save('users', [['a', 1, 0]], ctx);
      await store.saveChanges('users', batch([['b', 2, 0]]), ctx);
      await store.saveChanges('users', batch([['c', [3], 0]], ['a']), contextWith(jsonCodec));
      expect(await segments()).to.have.length(2);
      expect(await loaded()).to.deep.equal([['b', 2, 0], ['c', [3], 0]]);
      expect((await store.load('users', ctx))?.codec).to.equal('json');
    });
  });

  describe('replay', function () {
    it('matches object keys across codecs (a v8 file read and continued by a json manager)', async function () {
      await store.save('users', [[new Map([[1, 2]]), 'map key', 0], [{ id: 1 }, 'v8', 0], [{ id: 2 }, 'gone', 0]], ctx);
      const json: StoreContext = { ...contextWith(jsonCodec), warn: (warning) => warnings.push(warning) };
      await store.close();
      store = make();
      expect(await store.load('users', json)).to.have.property('entries').with.length(3);
      await store.saveChanges('users', batch([[{ id: 1 }, 'json', 0]], [{ id: 2 }]), json);
      expect(await loaded('users', json)).to.deep.equal([[new Map([[1, 2]]), 'map key', 0], [{ id: 1 }, 'json', 0]]);
      expect(await store.loadEntry('users', { id: 1 }, json)).to.deep.equal([{ id: 1 }, 'json', 0]);
      expect(await store.loadEntry('users', new Map([[1, 2]]), json)).to.deep.equal([new Map([[1, 2]]), 'map key', 0]);
    });

    it('applies batches in order, with sets, deletes, clears and expiry, like a model', async function () {
      const random = seededRandom(20240501);
      const model = new Map<unknown, StoredEntry>();
      const keys = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? i : `key-${i}`));
      const pick = (): unknown => keys[Math.floor(random() * keys.length)];
      for (let step = 0; step < 150; step++) {
        const roll = random();
        if (roll < 0.05) {
          const entries = [...model.values()];
          await store.save('users', entries, ctx);
        } else if (roll < 0.1) {
          // A new store, as after a restart: loads, then continues the same log.
          await store.close();
          store = make();
          expect(await loaded()).to.deep.equal([...model.values()]);
        } else {
          const sets = new Map<unknown, StoredEntry>();
          const deletes = new Set<unknown>();
          for (let i = Math.floor(random() * 6); i > 0; i--) {
            const key = pick();
            const expiresAt = random() < 0.2 ? FIXED_NOW + Math.floor(random() * 1e6) : 0;
            sets.set(key, [key, { step, i, nested: new Map([[i, [step]]]) }, expiresAt]);
          }
          for (let i = Math.floor(random() * 3); i > 0; i--) {
            const key = pick();
            if (!sets.has(key)) deletes.add(key);
          }
          const change = batch([...sets.values()], [...deletes], random() < 0.04);
          await store.saveChanges('users', change, ctx);
          applyTo(model, change);
        }
      }
      await store.close();
      store = make();
      expect(await loaded()).to.deep.equal([...model.values()]);
      expect(warnings).to.deep.equal([]);
    });

    it('continues the log of a cache this store never loaded', async function () {
      await store.save('users', base, ctx);
      await store.saveChanges('users', batch([['k1', 'one', 0]]), ctx);
      await store.close();
      store = make();
      await store.saveChanges('users', batch([['k2', 'two', 0]], ['k3']), ctx);
      expect(await segments()).to.have.length(1);
      const model = new Map(base.map((e) => [e[0], e]));
      applyTo(model, batch([['k1', 'one', 0]]));
      applyTo(model, batch([['k2', 'two', 0]], ['k3']));
      expect(await loaded()).to.deep.equal([...model.values()]);
    });
  });

  describe('a torn tail', function () {
    let segment: string;
    let whole: Buffer;
    let lastBatchAt: number;
    let before: StoredEntry[];

    beforeEach(async function () {
      await store.save('users', base, ctx);
      await store.saveChanges('users', batch([['k1', 'one', 0]], ['k2']), ctx);
      segment = await lastSegment();
      lastBatchAt = await size(segment);
      before = (await loaded()) as StoredEntry[];
      await store.saveChanges('users', batch([['k3', 'three', FIXED_NOW + 60_000], ['new', [1, 2, 3], 0]], ['k4']), ctx);
      whole = await fs.readFile(segment);
    });

    it('cut at every byte inside the last batch: loads the state before it, warns, and cuts the file back', async function () {
      for (let cut = lastBatchAt + 1; cut < whole.length; cut++) {
        await fs.writeFile(segment, whole.subarray(0, cut));
        warnings = [];
        expect(await loaded(), `cut at ${cut}`).to.deep.equal(before);
        expect(warnings, `cut at ${cut}`).to.have.length(1);
        expect(warnings[0]).to.include({ name: 'users', kind: 'torn-tail', path: segment });
        expect(await size(segment), `cut at ${cut}`).to.equal(lastBatchAt);
      }
    });

    it('cut exactly between batches is simply the earlier state, without a warning', async function () {
      await fs.writeFile(segment, whole.subarray(0, lastBatchAt));
      expect(await loaded()).to.deep.equal(before);
      expect(warnings).to.deep.equal([]);
    });

    it('garbage after the last batch (zeros, random bytes) is cut off', async function () {
      const random = seededRandom(7);
      const full = await loaded();
      for (const garbage of [Buffer.alloc(4096), Buffer.from(Array.from({ length: 500 }, () => Math.floor(random() * 256)))]) {
        await fs.writeFile(segment, Buffer.concat([whole, garbage]));
        warnings = [];
        expect(await loaded()).to.deep.equal(full);
        expect(warnings.map((w) => w.kind)).to.deep.equal(['torn-tail']);
        expect(await size(segment)).to.equal(whole.length);
      }
    });

    it('is cut before the next append, which then lands after the last whole batch', async function () {
      await fs.writeFile(segment, whole.subarray(0, whole.length - 3));
      await store.close();
      store = make();
      await store.saveChanges('users', batch([['after', 'cut', 0]]), ctx);
      expect(warnings.map((w) => w.kind)).to.deep.equal(['torn-tail']);
      expect(await loaded()).to.deep.equal([...before, ['after', 'cut', 0]]);
    });

    it('is reported but not cut by a read-only store', async function () {
      await fs.writeFile(segment, whole.subarray(0, whole.length - 3));
      const reader = make({ readOnly: true });
      expect((await reader.load('users', ctx))?.entries).to.deep.equal(before);
      expect(warnings.map((w) => w.kind)).to.deep.equal(['torn-tail']);
      expect(warnings[0]?.message).to.include('not cut off');
      expect(await size(segment)).to.equal(whole.length - 3);
      await reader.close();
    });
  });

  describe('damage', function () {
    let segment: string;
    let firstBatchAt: number;
    let secondBatchAt: number;

    beforeEach(async function () {
      await store.save('users', base, ctx);
      await store.saveChanges('users', batch([['a', 'x'.repeat(50), 0]]), ctx);
      segment = await lastSegment();
      firstBatchAt = (await fs.readFile(segment)).indexOf('CGB1');
      secondBatchAt = await size(segment);
      await store.saveChanges('users', batch([['b', 'y'.repeat(50), 0]]), ctx);
      await store.saveChanges('users', batch([['c', 'z'.repeat(50), 0]]), ctx);
    });

    it('inside a batch that is not the last is a CorruptFileError naming the segment and the batch offset', async function () {
      const bytes = await fs.readFile(segment);
      for (const at of [secondBatchAt + 45, secondBatchAt + 10]) {
        const damaged = Buffer.from(bytes);
        damaged[at] = (damaged[at] as number) ^ 0x20;
        await fs.writeFile(segment, damaged);
        const error = await rejectionOf(store.load('users', ctx));
        expect(error, `flip at ${at}`).to.be.instanceOf(CorruptFileError).and.include({ path: segment, offset: secondBatchAt, cacheName: 'users' });
      }
      expect(warnings).to.deep.equal([]);
      expect(await size(segment)).to.equal(bytes.length);
    });

    it('in an older segment, even at its end, is a CorruptFileError', async function () {
      await store.saveChanges('users', batch([['d', 1, 0]]), contextWith(jsonCodec));
      const [older] = await segments();
      const bytes = await fs.readFile(older as string);
      await fs.writeFile(older as string, bytes.subarray(0, bytes.length - 1));
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', older);
    });

    it('a flip of any byte of a segment is detected: an error naming it, or a torn last batch, never wrong data', async function () {
      const bytes = await fs.readFile(segment);
      const lastAt = bytes.lastIndexOf('CGB1');
      const full = await loaded();
      const beforeLast = full?.filter(([key]) => key !== 'c');
      const random = seededRandom(99);
      for (let position = 0; position < bytes.length; position++) {
        const damaged = Buffer.from(bytes);
        damaged[position] = (damaged[position] as number) ^ (1 << Math.floor(random() * 8));
        await fs.writeFile(segment, damaged);
        warnings = [];
        let entries: StoredEntry[] | undefined;
        try {
          entries = await loaded();
        } catch (error) {
          expect(error, `flip at ${position}`).to.satisfy((e: unknown) => e instanceof CorruptFileError || e instanceof UnsupportedFormatError);
          expect((error as CorruptFileError).path, `flip at ${position}`).to.equal(segment);
          expect(position, 'an error only outside the last batch').to.be.below(lastAt);
          continue;
        }
        expect(position, `flip at ${position} loaded`).to.be.at.least(lastAt);
        expect(warnings.map((w) => w.kind), `flip at ${position}`).to.deep.equal(['torn-tail']);
        expect(entries, `flip at ${position}`).to.deep.equal(beforeLast);
        await fs.writeFile(segment, bytes);
      }
    });

    it('a segment of another cache, with another number, or with a damaged header is a CorruptFileError', async function () {
      const bytes = await fs.readFile(segment);
      const other = new FileStore({ dir: path.join(root, 'other'), compaction: false });
      await other.saveChanges('stats', batch([['s', 1, 0]]), ctx);
      await other.save('users', base, ctx);
      await other.saveChanges('users', batch([['a', 1, 0]]), ctx);
      await other.saveChanges('users', batch([['b', 1, 0]]), contextWith(jsonCodec));
      for (const foreign of [path.join(other.locate('stats'), '1.log'), path.join(other.locate('users'), '3.log')]) {
        await fs.copyFile(foreign, segment);
        const error = await rejectionOf(store.load('users', ctx));
        expect(error, foreign).to.be.instanceOf(CorruptFileError).with.property('path', segment);
      }
      const header = Buffer.from(bytes);
      header[20] = (header[20] as number) ^ 1;
      expect(firstBatchAt).to.be.greaterThan(20);
      await fs.writeFile(segment, header);
      expect(await rejectionOf(store.load('users', ctx))).to.be.instanceOf(CorruptFileError).with.property('path', segment);
      await other.close();
    });

    it('a missing segment is a CorruptFileError naming it', async function () {
      await fs.unlink(segment);
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', segment);
    });
  });

  describe('appendfsync', function () {
    let sync: sinon.SinonSpy;

    async function prime(target: FileStore): Promise<void> {
      await target.save('users', base, ctx);
      await target.saveChanges('users', batch([['first', 1, 0]]), ctx);
      await target.flush();
      sync = sinon.spy(await fileHandlePrototype(), 'sync');
    }

    it("'always' fsyncs every batch before saveChanges resolves", async function () {
      store = make({ appendfsync: 'always' });
      await prime(store);
      for (let i = 0; i < 5; i++) {
        await store.saveChanges('users', batch([[`k${i}`, i, 0]]), ctx);
        expect(sync.callCount).to.equal(i + 1);
      }
    });

    it("'no' never fsyncs an append itself; flush() and close() do", async function () {
      store = make({ appendfsync: 'no' });
      await prime(store);
      for (let i = 0; i < 5; i++) await store.saveChanges('users', batch([[`k${i}`, i, 0]]), ctx);
      expect(sync.callCount).to.equal(0);
      await store.flush();
      expect(sync.callCount).to.equal(1);
      await store.saveChanges('users', batch([['last', 1, 0]]), ctx);
      await store.close();
      expect(sync.callCount).to.equal(2);
    });

    it("'everysec' fsyncs at most once a second, on an unref'd timer that close() clears", async function () {
      const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      store = make();
      await prime(store);
      await clock.tickAsync(1000);
      await store.idle();
      sync.resetHistory();
      for (let i = 0; i < 5; i++) await store.saveChanges('users', batch([[`k${i}`, i, 0]]), ctx);
      expect(sync.callCount).to.equal(0);
      expect(clock.countTimers()).to.equal(1);
      await clock.tickAsync(999);
      await store.idle();
      expect(sync.callCount).to.equal(0);
      await clock.tickAsync(1);
      await store.idle();
      expect(sync.callCount).to.equal(1);
      expect(clock.countTimers()).to.equal(0);
      await clock.tickAsync(5000);
      expect(sync.callCount).to.equal(1);
      await store.saveChanges('users', batch([['again', 1, 0]]), ctx);
      expect(clock.countTimers()).to.equal(1);
      await store.close();
      expect(sync.callCount).to.equal(2);
      expect(clock.countTimers()).to.equal(0);
      expect(await loaded()).to.have.length(base.length + 2);
    });

    it("'everysec' reports a failed fsync as a warning; the next saveChanges first rewrites the cache into a new snapshot", async function () {
      const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      store = make();
      await prime(store);
      sync.restore();
      const failing = sinon.stub(await fileHandlePrototype(), 'sync').rejects(systemError('EIO', 'fsync'));
      await store.saveChanges('users', batch([['k', 1, 0]]), ctx);
      await clock.tickAsync(1000);
      await store.idle();
      expect(warnings.map((w) => w.kind)).to.deep.equal(['fsync-failed']);
      expect(warnings[0]?.path).to.equal(await lastSegment());
      failing.restore();
      await store.saveChanges('users', batch([['j', 2, 0]]), ctx);
      // 1.snapshot + 2.log were rewritten into 4.snapshot; 3.log took the new batch.
      expect((await fs.readdir(store.locate('users'))).sort()).to.deep.equal(['3.log', '4.snapshot', 'MANIFEST']);
      expect(await loaded()).to.deep.equal([...base, ['first', 1, 0], ['k', 1, 0], ['j', 2, 0]]);
      await store.close();
      expect(clock.countTimers()).to.equal(0);
    });

    it("a failed fsync with 'always' rejects that saveChanges; later ones rewrite the cache first, and fail while the disk does", async function () {
      store = make({ appendfsync: 'always' });
      await prime(store);
      sync.restore();
      const failing = sinon.stub(await fileHandlePrototype(), 'sync').rejects(systemError('EIO', 'fsync'));
      const error = await rejectionOf(store.saveChanges('users', batch([['k', 1, 0]]), ctx));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'fsync', path: await lastSegment(), syscallCode: 'EIO' });
      // The disk still fails: so does the rewrite, and the save.
      expect(await rejectionOf(store.saveChanges('users', batch([['k', 1, 0]]), ctx))).to.be.instanceOf(StoreIOError);
      failing.restore();
      // The manager retries with every change since its last good save.
      await store.saveChanges('users', batch([['k', 1, 0], ['j', 2, 0]]), ctx);
      expect(await loaded()).to.deep.equal([...base, ['first', 1, 0], ['k', 1, 0], ['j', 2, 0]]);
      expect((await fs.readdir(store.locate('users'))).filter((file) => file.endsWith('.snapshot'))).to.not.include('1.snapshot');
      await store.close();
      store = make();
      expect(await loaded()).to.deep.equal([...base, ['first', 1, 0], ['k', 1, 0], ['j', 2, 0]]);
    });
  });

  describe('a failed append', function () {
    it('is cut back (disk full mid-batch); the next append, once space returns, succeeds', async function () {
      await store.save('users', base, ctx);
      await store.saveChanges('users', batch([['k1', 'one', 0]]), ctx);
      const segment = await lastSegment();
      const before = await size(segment);
      const proto = await fileHandlePrototype();
      const original = proto.write;
      let calls = 0;
      const write = sinon.stub(proto, 'write').callsFake(function (this: FileHandle, ...args: unknown[]) {
        calls += 1;
        if (calls > 1) return Promise.reject(systemError('ENOSPC', 'write'));
        const [buffer, offset, , position] = args as [Uint8Array, number, number, number];
        return (original as (...a: unknown[]) => unknown).call(this, buffer, offset, 5, position);
      } as never);
      const error = await rejectionOf(store.saveChanges('users', batch([['big', 'x'.repeat(5000), 0]]), ctx));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'write', path: segment, syscallCode: 'ENOSPC' });
      write.restore();
      expect(await size(segment)).to.equal(before);
      await store.saveChanges('users', batch([['big', 'x'.repeat(5000), 0]]), ctx);
      const model = new Map(base.map((e) => [e[0], e]));
      applyTo(model, batch([['k1', 'one', 0]]));
      applyTo(model, batch([['big', 'x'.repeat(5000), 0]]));
      expect(await loaded()).to.deep.equal([...model.values()]);
      expect(warnings).to.deep.equal([]);
    });

    it('of the first batch of a new cache leaves nothing saved', async function () {
      await store.save('other', [], ctx); // takes the lock
      const write = sinon.stub(await fileHandlePrototype(), 'write').rejects(systemError('ENOSPC', 'write'));
      const error = await rejectionOf(store.saveChanges('users', batch([['k1', 'one', 0]]), ctx));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ syscallCode: 'ENOSPC' });
      write.restore();
      expect(await store.has('users')).to.equal(false);
      expect(await loaded()).to.equal(undefined);
      expect(await fs.readdir(store.locate('users'))).to.deep.equal([]);
      await store.saveChanges('users', batch([['k1', 'one', 0]]), ctx);
      expect(await loaded()).to.deep.equal([['k1', 'one', 0]]);
    });

    it('a write that makes no progress is an error, and nothing is left behind', async function () {
      await store.save('users', base, ctx);
      await store.saveChanges('users', batch([['k1', 'one', 0]]), ctx);
      const segment = await lastSegment();
      const before = await size(segment);
      sinon.stub(await fileHandlePrototype(), 'write').resolves({ bytesWritten: 0, buffer: Buffer.alloc(0) } as never);
      const error = await rejectionOf(store.saveChanges('users', batch([['k2', 'two', 0]]), ctx));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'write' });
      expect(error.message).to.include('short write');
      sinon.restore();
      expect(await size(segment)).to.equal(before);
    });
  });

  describe('#loadEntry()', function () {
    const many = Array.from({ length: 20_000 }, (_, i): StoredEntry => [`key-${i}`, { i, text: 'v'.repeat(50) }, 0]);

    it('reads one chunk of the snapshot, not the whole snapshot', async function () {
      await store.save('users', many, ctx);
      const snapshotBytes = await size(path.join(store.locate('users'), '1.snapshot'));
      const read = sinon.spy(await fileHandlePrototype(), 'read');
      expect(await store.loadEntry('users', 'key-12345', ctx)).to.deep.equal(many[12345]);
      const bytesRead = read.getCalls().reduce((sum, call) => sum + ((call.args as unknown[])[2] as number), 0);
      expect(bytesRead).to.be.above(0).and.below(snapshotBytes / 10);
    });

    it('reads one part of the batch holding the latest value', async function () {
      await store.save('users', many, ctx);
      const changes = Array.from({ length: 5000 }, (_, i): StoredEntry => [`key-${i}`, { i, changed: true }, 0]);
      const appended = await store.saveChanges('users', batch(changes), ctx);
      const read = sinon.spy(await fileHandlePrototype(), 'read');
      expect(await store.loadEntry('users', 'key-4000', ctx)).to.deep.equal(['key-4000', { i: 4000, changed: true }, 0]);
      const bytesRead = read.getCalls().reduce((sum, call) => sum + ((call.args as unknown[])[2] as number), 0);
      expect(bytesRead).to.be.above(0).and.below(appended.bytes / 3);
    });

    it('builds its index with one full read when the store has not loaded the cache, then reads little', async function () {
      await store.save('users', many, ctx);
      await store.close();
      store = make();
      const read = sinon.spy(await fileHandlePrototype(), 'read');
      expect(await store.loadEntry('users', 'key-1', ctx)).to.deep.equal(many[1]);
      const first = read.getCalls().reduce((sum, call) => sum + ((call.args as unknown[])[2] as number), 0);
      read.resetHistory();
      expect(await store.loadEntry('users', 'key-19999', ctx)).to.deep.equal(many[19999]);
      const second = read.getCalls().reduce((sum, call) => sum + ((call.args as unknown[])[2] as number), 0);
      expect(second).to.be.below(first / 10);
    });

    it('detects a damaged record', async function () {
      await store.save('users', many.slice(0, 10), ctx);
      const snapshot = path.join(store.locate('users'), '1.snapshot');
      const bytes = await fs.readFile(snapshot);
      bytes[bytes.length - 40] = (bytes[bytes.length - 40] as number) ^ 0xff;
      await fs.writeFile(snapshot, bytes);
      const error = await rejectionOf(store.loadEntry('users', 'key-5', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', snapshot);
    });
  });
});
