// A failing disk: full (injected ENOSPC after a byte budget, and a real tiny tmpfs when this
// process may mount one), a failing rename (stubbed, or a directory planted at the target),
// a failing fsync. Each save that fails rejects with the error, leaves the previous state
// loadable and no temp file behind, keeps the changes pending, and a later save succeeds once
// the fault is gone, also when AutoSync is the one retrying.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import fs, { mkdir, mkdtemp, readdir, rm, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sinon from 'sinon';
import {
  CacheManager,
  FileStore,
  SaveFailedError,
  StoreIOError,
  systemClock,
  v8Codec,
  type Cache,
  type StoreWarning,
  type SyncDoneEvent,
  type SyncErrorEvent,
} from '../../lib/index.js';
import { record, rejection } from '../helpers.js';
import { debrisOf, faultSeed, IN_THREAD_COMPACTION_ONLY, readManifestBody, systemError } from '../fixtures/fault-helpers.js';
import { applyOps, CACHE_NAME, digest, Workload, type ModelValue } from '../fixtures/fault-model.js';
import { fileHandlePrototype } from '../store/conformance.js';

const seed = faultSeed();
const ctx = { codec: v8Codec, clock: systemClock };

/**
 * A disk that fills up: every FileHandle write is cut short once `budget` more bytes have
 * been written (a short write), and fails with ENOSPC after that, until `budget` is Infinity.
 */
class FullDisk {
  budget = Number.POSITIVE_INFINITY;
  failures = 0;

  static async install(dir: string): Promise<FullDisk> {
    const disk = new FullDisk();
    const proto = await fileHandlePrototype(dir);
    const original = proto.write as (...args: unknown[]) => Promise<{ bytesWritten: number; buffer: unknown }>;
    sinon.stub(proto, 'write').callsFake(function (this: FileHandle, ...args: unknown[]) {
      const [buffer, offset, length, position] = args as [Uint8Array, number, number, number];
      if (typeof length !== 'number' || disk.budget === Number.POSITIVE_INFINITY) return original.apply(this, args);
      if (disk.budget <= 0) {
        disk.failures++;
        return Promise.reject(systemError('ENOSPC', 'write', -28));
      }
      const allowed = Math.min(length, disk.budget);
      disk.budget -= allowed;
      return original.call(this, buffer, offset, allowed, position);
    } as never);
    return disk;
  }
}

/** Where the model cache lives and what a reader sees there. */
interface Bench {
  readonly dir: string;
  readonly store: FileStore;
  readonly manager: CacheManager;
  readonly cache: Cache<string, ModelValue>;
  readonly model: Map<string, ModelValue>;
  readonly warnings: StoreWarning[];
  /** Applies batch n of the workload to the cache and the model. */
  apply(n: number): void;
  /** Sets one more key, in the cache and the model. */
  mark(key: string): void;
  /** What a read-only store loads now. */
  persisted(): Promise<Map<string, ModelValue> | undefined>;
  close(): Promise<void>;
}

async function bench(dir: string, options: { saves?: number; manager?: ConstructorParameters<typeof CacheManager>[0] } = {}): Promise<Bench> {
  const workload = new Workload(seed, { keys: 60, maxBatch: 10, maxPad: 200 });
  const store = new FileStore({ dir, appendfsync: 'always', compaction: IN_THREAD_COMPACTION_ONLY });
  const manager = new CacheManager({ name: 'disk', store, autoSync: false, ...options.manager });
  const warnings: StoreWarning[] = [];
  manager.on('store:warning', (w) => warnings.push(w));
  // Another cache takes the directory lock first, so that faults hit the cache's own files.
  const warmup = await manager.registerCache('warmup');
  warmup.set('lock', 'held');
  await manager.save('warmup');
  const cache = await manager.registerCache<string, ModelValue>(CACHE_NAME);
  const model = new Map<string, ModelValue>();
  const b: Bench = {
    dir,
    store,
    manager,
    cache,
    model,
    warnings,
    apply(n) {
      const ops = workload.batch(n);
      applyOps(cache, ops);
      applyOps(model, ops);
    },
    mark(key) {
      const value = { n: key.length, step: 0, pad: key };
      cache.set(key, value);
      model.set(key, value);
    },
    async persisted() {
      const reader = new FileStore({ dir, readOnly: true });
      try {
        const loaded = await reader.load(CACHE_NAME, ctx);
        return loaded === undefined ? undefined : new Map(loaded.entries.map(([k, v]) => [k as string, v as ModelValue]));
      } finally {
        await reader.close();
      }
    },
    async close() {
      await manager.close().catch(() => undefined);
      await store.close().catch(() => undefined);
    },
  };
  for (let n = 1; n <= (options.saves ?? 0); n++) {
    b.apply(n);
    await manager.save(CACHE_NAME);
  }
  return b;
}

/** Temp files anywhere under `dir`. */
async function tempFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { recursive: true })) if (entry.includes('.tmp-')) found.push(entry);
  return found;
}

describe('Faults: a failing disk', function () {
  this.timeout(60_000);
  let root: string;
  const open: Bench[] = [];

  beforeEach(async function () {
    root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-disk-'));
  });

  afterEach(async function () {
    sinon.restore();
    for (const b of open.splice(0)) await b.close();
    await rm(root, { recursive: true, force: true });
  });

  async function make(options: Parameters<typeof bench>[1] = {}): Promise<Bench> {
    const b = await bench(path.join(root, `store-${open.length}`), options);
    open.push(b);
    return b;
  }

  describe('ENOSPC (injected: writes stop after a byte budget)', function () {
    // Budgets land the failure in different places: the first write, a batch header, the
    // middle of a batch, the segment or snapshot header, the manifest.
    const BUDGETS = [0, 1, 20, 36, 37, 90, 150, 400, 1200, 5000];

    for (const what of ['append (saveChanges)', 'first save of a cache', 'full snapshot (store.save)', 'compaction (store.compact)'] as const) {
      it(`during ${what}: rejects with ENOSPC, the previous state loads, no temp file remains, the changes stay pending, and a later save succeeds`, async function () {
        let hits = 0;
        for (const budget of BUDGETS) {
          const first = what === 'first save of a cache';
          const b = await make({ saves: first ? 0 : 3 });
          const disk = await FullDisk.install(b.dir);
          const saved = new Map(b.model);
          const where = `${what}, budget ${budget} bytes (seed ${seed})`;
          b.apply(10);
          // Batch 10 may cancel itself out (set k, delete k): make sure this save changes something.
          b.mark(`budget-${budget}`);
          const storeLevel = what === 'full snapshot (store.save)' || what === 'compaction (store.compact)';
          // A compaction rewrites what is saved: save the batch first.
          if (what === 'compaction (store.compact)') await b.manager.save(CACHE_NAME);
          const before = first ? undefined : await b.persisted();
          const pending = b.cache.pendingChanges;
          disk.budget = budget;
          let failure: unknown;
          try {
            if (what === 'full snapshot (store.save)') {
              await b.store.save(CACHE_NAME, [...b.cache].map(([k, v]) => [k, v, 0] as const), ctx);
            } else if (what === 'compaction (store.compact)') {
              await b.store.compact(CACHE_NAME, ctx);
            } else {
              await b.manager.save(CACHE_NAME);
            }
          } catch (error) {
            failure = error;
          }
          disk.budget = Number.POSITIVE_INFINITY;
          sinon.restore();
          if (failure === undefined) {
            // The budget was enough for the whole operation: nothing to check but the result.
            expect(await b.persisted(), where).to.deep.equal(b.model);
            await b.close();
            continue;
          }
          hits++;
          expect(failure, where).to.be.instanceOf(StoreIOError);
          expect((failure as StoreIOError).syscallCode, where).to.equal('ENOSPC');
          expect(await tempFiles(b.dir), where).to.deep.equal([]);
          expect(await b.persisted(), where).to.deep.equal(before);
          // A failed manager save gives its changes back (store-level calls do not touch them).
          expect(b.cache.pendingChanges, where).to.equal(pending);
          // Space is back: the next save (or compaction) succeeds and loads.
          if (what === 'compaction (store.compact)') await b.store.compact(CACHE_NAME, ctx);
          else if (what === 'full snapshot (store.save)') await b.store.save(CACHE_NAME, [...b.cache].map(([k, v]) => [k, v, 0] as const), ctx);
          else await b.manager.save(CACHE_NAME);
          if (!storeLevel) expect(b.cache.pendingChanges, where).to.equal(0);
          expect(await b.persisted(), where).to.deep.equal(b.model);
          if (what !== 'compaction (store.compact)') expect(digest(b.model), where).not.to.equal(digest(saved));
          // And the one after it, and a reload by a new manager.
          b.apply(11);
          await b.manager.save(CACHE_NAME);
          expect(await b.persisted(), where).to.deep.equal(b.model);
          expect((await debrisOf(b.store.locate(CACHE_NAME))).temp, where).to.deep.equal([]);
          await b.close();
        }
        expect(hits, 'budgets that made the operation fail').to.be.greaterThan(BUDGETS.length / 2);
      });
    }

    it('under AutoSync with fake timers: sync:error, then a retry at least 5 s later succeeds once space is back', async function () {
      const clock = sinon.useFakeTimers({ now: Date.UTC(2024, 4, 1), toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
      const b = await make({ manager: { autoSync: { rules: [{ seconds: 1, changes: 1 }] } } });
      const disk = await FullDisk.install(b.dir);
      const errors = record<SyncErrorEvent>(b.manager, 'sync:error');
      const done = record<SyncDoneEvent>(b.manager, 'sync:done');
      const starts = record<{ name: string }>(b.manager, 'sync:start');
      const nextEvent = (event: 'sync:error' | 'sync:done'): Promise<unknown> => new Promise((resolve) => b.manager.once(event, resolve));

      disk.budget = 0;
      b.apply(1);
      b.mark('auto');
      const pending = b.cache.pendingChanges;
      const failed = nextEvent('sync:error');
      await clock.tickAsync(1001);
      await failed; // the save's real I/O, while fake time stands still
      const failedAt = Date.now();
      expect(errors.filter((e) => e.name === CACHE_NAME)).to.have.length(1);
      const error = errors[0]?.error as StoreIOError;
      expect(error).to.be.instanceOf(StoreIOError);
      expect(error.syscallCode).to.equal('ENOSPC');
      expect(b.cache.pendingChanges).to.equal(pending);
      expect(await b.persisted()).to.equal(undefined);
      expect(await tempFiles(b.dir)).to.deep.equal([]);
      const retryAt = b.cache.stats().retryAt;
      expect(retryAt).to.be.at.least(failedAt + 5000);

      // Space comes back; nothing happens before the retry is due.
      disk.budget = Number.POSITIVE_INFINITY;
      const startsBefore = starts.filter((s) => s.name === CACHE_NAME).length;
      await clock.tickAsync((retryAt as number) - Date.now() - 1);
      expect(starts.filter((s) => s.name === CACHE_NAME).length, 'no save before the retry is due').to.equal(startsBefore);
      const succeeded = nextEvent('sync:done');
      await clock.tickAsync(1);
      await succeeded;
      expect(Date.now() - failedAt).to.be.at.least(5000);
      expect(done.filter((d) => d.name === CACHE_NAME && d.reason === 'auto')).to.have.length(1);
      expect(b.cache.pendingChanges).to.equal(0);
      expect(await b.persisted()).to.deep.equal(b.model);
      expect(b.cache.stats().retryAt).to.equal(undefined);

      await b.close();
      open.splice(open.indexOf(b), 1);
      expect(clock.countTimers(), 'no timer left after close()').to.equal(0);
    });
  });

  describe('ENOSPC during close()', function () {
    it('close() rejects with SaveFailedError naming the cache, caused by the ENOSPC StoreIOError; no temp file remains and the last good state loads', async function () {
      const b = await make({ saves: 2 });
      const before = await b.persisted();
      const disk = await FullDisk.install(b.dir);
      b.apply(3);
      b.mark('unsaved at close');
      disk.budget = 40;
      const failure = await rejection(b.manager.close());
      disk.budget = Number.POSITIVE_INFINITY;
      expect(failure).to.be.instanceOf(SaveFailedError);
      expect((failure as SaveFailedError).cacheNames).to.deep.equal([CACHE_NAME]);
      expect(failure.cause).to.be.instanceOf(StoreIOError).with.property('syscallCode', 'ENOSPC');
      expect(b.manager.closed).to.equal(true);
      expect(await tempFiles(b.dir)).to.deep.equal([]);
      expect(await b.persisted()).to.deep.equal(before);
    });
  });

  describe('ENOSPC on a real, tiny tmpfs', function () {
    let mountPoint: string | undefined;

    // Mounts a 256 KiB tmpfs when running as root on Linux (unmounted in `after`); skipped
    // where mount is not allowed, or with CACHEGRAPH_NO_MOUNT=1.
    before(async function () {
      if (process.platform !== 'linux' || process.getuid?.() !== 0 || process.env['CACHEGRAPH_NO_MOUNT'] === '1') this.skip();
      const target = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-tmpfs-'));
      try {
        await promisify(execFile)('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', target]);
        mountPoint = target;
      } catch {
        // Not allowed here (a container without CAP_SYS_ADMIN, CI): the injected faults above cover it.
        await rm(target, { recursive: true, force: true });
        this.skip();
      }
    });

    after(async function () {
      if (mountPoint === undefined) return;
      await promisify(execFile)('umount', [mountPoint]).catch(() => undefined);
      await rm(mountPoint, { recursive: true, force: true });
    });

    it('fills the disk: the save fails with ENOSPC, the previous state loads, no temp file remains, and the save succeeds once space is freed', async function () {
      const dir = path.join(mountPoint as string, 'store');
      await mkdir(dir);
      const b = await bench(dir, { saves: 3 });
      open.push(b);
      const before = await b.persisted();
      // Leave about 8 KiB free, then try to save a batch of about 40 KiB.
      const { bavail, bsize } = await statfs(mountPoint as string);
      const filler = path.join(mountPoint as string, 'filler');
      await writeFile(filler, Buffer.alloc(Math.max(0, bavail * bsize - 8192)));
      for (let i = 0; i < 20; i++) b.cache.set(`big-${i}`, { n: i, step: 0, pad: 'y'.repeat(2000) });
      const pending = b.cache.pendingChanges;
      const segmentSizes = await segmentSizesOf(b.store.locate(CACHE_NAME));
      const failure = await rejection(b.manager.save(CACHE_NAME));
      expect(failure).to.be.instanceOf(StoreIOError);
      expect((failure as StoreIOError).syscallCode).to.equal('ENOSPC');
      expect(await b.persisted()).to.deep.equal(before);
      expect(await tempFiles(dir)).to.deep.equal([]);
      // The partial batch was cut back: the files are as they were.
      expect(await segmentSizesOf(b.store.locate(CACHE_NAME))).to.deep.equal(segmentSizes);
      expect(b.cache.pendingChanges).to.equal(pending);
      await rm(filler);
      await b.manager.save(CACHE_NAME);
      const expected = new Map(b.model);
      for (let i = 0; i < 20; i++) expected.set(`big-${i}`, { n: i, step: 0, pad: 'y'.repeat(2000) });
      expect(await b.persisted()).to.deep.equal(expected);
    });
  });

  describe('a failing rename', function () {
    for (const target of ['the new segment', 'the manifest'] as const) {
      it(`of ${target} on the first save of a cache: a loud StoreIOError (op rename), nothing half-saved, and a later save succeeds`, async function () {
        const b = await make();
        const rename = fs.rename;
        const stub = sinon.stub(fs, 'rename').callsFake(async (from, to) => {
          const name = path.basename(String(to));
          if (target === 'the manifest' ? name === 'MANIFEST' : /^\d+\.log$/.test(name)) throw systemError('EACCES', 'rename', -13);
          return rename(from, to);
        });
        b.apply(1);
        b.mark('rename');
        const pending = b.cache.pendingChanges;
        const failure = await rejection(b.manager.save(CACHE_NAME));
        expect(stub.called).to.equal(true);
        expect(failure).to.be.instanceOf(StoreIOError).with.property('op', 'rename');
        expect((failure as StoreIOError).syscallCode).to.equal('EACCES');
        expect(failure.message).to.contain(target === 'the manifest' ? 'MANIFEST' : '.log');
        expect(b.cache.pendingChanges).to.equal(pending);
        expect(await b.persisted()).to.equal(undefined);
        expect(await tempFiles(b.dir)).to.deep.equal([]);
        expect((await debrisOf(b.store.locate(CACHE_NAME))).orphans, 'the segment of a manifest never written is removed').to.deep.equal([]);
        stub.restore();
        await b.manager.save(CACHE_NAME);
        expect(await b.persisted()).to.deep.equal(b.model);
      });
    }

    it('of the manifest on a full snapshot: a loud StoreIOError, the last good state intact, no temp file', async function () {
      const b = await make({ saves: 3 });
      const before = await b.persisted();
      const rename = fs.rename;
      sinon.stub(fs, 'rename').callsFake(async (from, to) => {
        if (path.basename(String(to)) === 'MANIFEST') throw systemError('EIO', 'rename', -5);
        return rename(from, to);
      });
      b.apply(4);
      b.mark('snapshot');
      const failure = await rejection(b.store.save(CACHE_NAME, [...b.cache].map(([k, v]) => [k, v, 0] as const), ctx));
      expect(failure).to.be.instanceOf(StoreIOError).with.property('op', 'rename');
      expect(await b.persisted()).to.deep.equal(before);
      expect(await tempFiles(b.dir)).to.deep.equal([]);
      expect((await debrisOf(b.store.locate(CACHE_NAME))).orphans, 'the snapshot no manifest names is removed').to.deep.equal([]);
      sinon.restore();
      await b.manager.save(CACHE_NAME);
      expect(await b.persisted()).to.deep.equal(b.model);
    });

    it('because a directory sits at the target path: compaction and a full snapshot fail loudly, saves go on, and it works once the directory is gone', async function () {
      const b = await make({ saves: 4 });
      const cacheDir = b.store.locate(CACHE_NAME);
      const { next } = await readManifestBody(cacheDir);
      const planted = [path.join(cacheDir, `${next}.log`), path.join(cacheDir, `${next}.snapshot`)];
      for (const dir of planted) await mkdir(dir);
      const before = await b.persisted();

      const compaction = await rejection(b.store.compact(CACHE_NAME, ctx));
      expect(compaction).to.be.instanceOf(StoreIOError).with.property('op', 'rename');
      expect(planted).to.include((compaction as StoreIOError).path);
      expect(await b.persisted()).to.deep.equal(before);
      const snapshot = await rejection(b.store.save(CACHE_NAME, [...b.cache].map(([k, v]) => [k, v, 0] as const), ctx));
      expect(snapshot).to.be.instanceOf(StoreIOError).with.property('op', 'rename');
      expect(await b.persisted()).to.deep.equal(before);
      expect(await tempFiles(b.dir)).to.deep.equal([]);
      // The planted directories are left alone.
      for (const dir of planted) expect((await stat(dir)).isDirectory()).to.equal(true);

      // Appends do not need the target: saves go on.
      b.apply(5);
      await b.manager.save(CACHE_NAME);
      expect(await b.persisted()).to.deep.equal(b.model);

      for (const dir of planted) await rm(dir, { recursive: true });
      const result = await b.store.compact(CACHE_NAME, ctx);
      expect(result?.entries).to.equal(b.model.size);
      b.apply(6);
      await b.manager.save(CACHE_NAME);
      expect(await b.persisted()).to.deep.equal(b.model);
    });
  });

  describe('a failing fsync', function () {
    it('of an append: the save is reported failed, its changes stay pending, and a later save succeeds once the disk recovers', async function () {
      const b = await make({ saves: 3 });
      const proto = await fileHandlePrototype(b.dir);
      const sync = sinon.stub(proto, 'sync').rejects(systemError('EIO', 'fsync', -5));
      b.apply(4);
      b.mark('fsync');
      const pending = b.cache.pendingChanges;
      const failure = await rejection(b.manager.save(CACHE_NAME));
      expect(sync.called).to.equal(true);
      expect(failure).to.be.instanceOf(StoreIOError).with.property('op', 'fsync');
      expect(b.cache.pendingChanges).to.equal(pending);
      sync.restore();
      // The disk works again: the manager's next save must get the changes to disk.
      b.apply(5);
      await b.manager.save(CACHE_NAME);
      expect(b.cache.pendingChanges).to.equal(0);
      expect(await b.persisted()).to.deep.equal(b.model);
    });
  });
});

async function segmentSizesOf(cacheDir: string): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const name of await readdir(cacheDir)) if (/^\d+\.(?:log|snapshot)$/.test(name) || name === 'MANIFEST') sizes[name] = (await stat(path.join(cacheDir, name))).size;
  return sizes;
}
