import { expect } from 'chai';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { jsonCodec, v8Codec } from '../../lib/codec/index.js';
import type { Codec } from '../../lib/codec/types.js';
import {
  CorruptFileError,
  InvalidNameError,
  InvalidOptionError,
  LockedError,
  StoreIOError,
  UnsupportedFormatError,
} from '../../lib/errors.js';
import { FileStore } from '../../lib/store/file.js';
import { LOCK_FILE_NAME } from '../../lib/store/lock.js';
import { toFileName } from '../../lib/store/names.js';
import type { StoredEntry } from '../../lib/store/types.js';
import { contextWith, describeStoreConformance, fileHandlePrototype, HOSTILE_NAMES, rejectionOf, seededRandom, systemError } from './conformance.js';

async function makeTempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'cachegraph-filestore-'));
}

describeStoreConformance('FileStore', async () => {
  const root = await makeTempDir();
  return {
    store: new FileStore({ dir: path.join(root, 'store') }),
    cleanup: () => fs.rm(root, { recursive: true, force: true }),
  };
});

describe('FileStore', function () {
  const ctx = contextWith(v8Codec);
  let root: string;
  let dir: string;
  let store: FileStore;

  beforeEach(async function () {
    root = await makeTempDir();
    dir = path.join(root, 'store');
    store = new FileStore({ dir });
  });

  afterEach(async function () {
    await store.close().catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true });
  });

  const sample: StoredEntry[] = [
    ['a', { n: 1, tags: ['x', 'y'] }, 0],
    ['b', new Map([[1, new Date(0)]]), 123],
  ];

  /** Saves the sample; returns the cache's directory. */
  async function saveSample(name = 'users'): Promise<string> {
    await store.save(name, sample, ctx);
    return store.locate(name);
  }

  /** Entries of the store directory, without the lock file. */
  async function filesInDir(): Promise<string[]> {
    return (await fs.readdir(dir)).filter((name) => name !== LOCK_FILE_NAME).sort();
  }

  /** Files of a cache directory. */
  async function cacheFiles(name = 'users'): Promise<string[]> {
    return (await fs.readdir(store.locate(name))).sort();
  }

  /** Path of the cache's one snapshot. */
  async function snapshotOf(name = 'users'): Promise<string> {
    const snapshot = (await cacheFiles(name)).find((file) => file.endsWith('.snapshot'));
    if (snapshot === undefined) throw new Error('no snapshot');
    return path.join(store.locate(name), snapshot);
  }

  function manifestOf(name = 'users'): string {
    return path.join(store.locate(name), 'MANIFEST');
  }

  describe('constructor', function () {
    it('resolves dir to an absolute path', function () {
      expect(path.isAbsolute(new FileStore({ dir: 'relative/cache' }).dir)).to.equal(true);
    });

    it('rejects a missing dir, bad values and unknown options, naming the option', function () {
      const attempts: [unknown, string][] = [
        [{}, 'dir'],
        [{ dir: '' }, 'dir'],
        [{ dir: 'x', fileMode: 0o1777 }, 'fileMode'],
        [{ dir: 'x', dirMode: -1 }, 'dirMode'],
        [{ dir: 'x', fileMdoe: 0o600 }, 'fileMdoe'],
        [{ dir: 'x', appendfsync: 'sometimes' }, 'appendfsync'],
        [{ dir: 'x', compaction: true }, 'compaction'],
        [{ dir: 'x', compaction: { minDeadRatio: 2 } }, 'compaction'],
        [{ dir: 'x', readOnly: 'yes' }, 'readOnly'],
        [{ dir: 'x', lockTimeout: -1 }, 'lockTimeout'],
        [{ dir: 'x', timers: {} }, 'timers'],
      ];
      for (const [options, option] of attempts) {
        const create = (): FileStore => new FileStore(options as never);
        expect(create, JSON.stringify(options)).to.throw(InvalidOptionError).with.property('option').that.satisfies((o: string) => o.startsWith(option));
      }
    });

    it('does not touch the disk', async function () {
      new FileStore({ dir: path.join(root, 'lazy') });
      expect(await fs.readdir(root)).to.deep.equal([]);
    });
  });

  describe('#locate()', function () {
    it('is <dir>/<safe name>.cgc', function () {
      expect(store.locate('users')).to.equal(path.join(dir, 'users.cgc'));
      expect(store.locate('Users')).to.equal(path.join(dir, '%55sers.cgc'));
    });

    it('keeps every hostile name directly inside dir, with distinct names even ignoring case', function () {
      const seen = new Set<string>();
      for (const name of HOSTILE_NAMES) {
        const file = store.locate(name);
        expect(path.dirname(file), JSON.stringify(name)).to.equal(dir);
        expect(Buffer.byteLength(path.basename(file)), JSON.stringify(name)).to.be.at.most(255 - 40);
        seen.add(path.basename(file).toLowerCase());
      }
      expect(seen.size).to.equal(HOSTILE_NAMES.length);
    });

    it('throws InvalidNameError for a name no file can be made for', function () {
      expect(() => store.locate('')).to.throw(InvalidNameError);
      expect(() => store.locate('lone \ud800 surrogate')).to.throw(InvalidNameError);
    });
  });

  describe('#save()', function () {
    it('creates dir and the cache directory with mode 0700, and files with mode 0600', async function () {
      const nested = new FileStore({ dir: path.join(root, 'a', 'b') });
      await nested.save('users', sample, ctx);
      expect((await fs.stat(path.join(root, 'a', 'b'))).mode & 0o777).to.equal(0o700);
      expect((await fs.stat(nested.locate('users'))).mode & 0o777).to.equal(0o700);
      for (const file of await fs.readdir(nested.locate('users'))) {
        expect((await fs.stat(path.join(nested.locate('users'), file))).mode & 0o777, file).to.equal(0o600);
      }
      await nested.close();
    });

    it('honours fileMode and dirMode', async function () {
      const custom = new FileStore({ dir: path.join(root, 'custom'), fileMode: 0o640, dirMode: 0o750 });
      await custom.save('users', sample, ctx);
      await custom.saveChanges('users', { cleared: false, sets: [['c', 3, 0]], deletes: [] }, ctx);
      const umask = process.umask();
      expect((await fs.stat(custom.locate('users'))).mode & 0o777).to.equal(0o750 & ~umask);
      for (const file of await fs.readdir(custom.locate('users'))) {
        expect((await fs.stat(path.join(custom.locate('users'), file))).mode & 0o777, file).to.equal(0o640 & ~umask);
      }
      await custom.close();
    });

    it('leaves only the manifest and one snapshot, and no temp file, after repeated saves', async function () {
      for (let i = 0; i < 5; i++) {
        await store.save('users', [['k', i, 0]], ctx);
        await store.saveChanges('users', { cleared: false, sets: [['j', i, 0]], deletes: [] }, ctx);
      }
      await store.save('users', [['k', 'final', 0]], ctx);
      expect(await filesInDir()).to.deep.equal(['users.cgc']);
      expect(await cacheFiles()).to.deep.equal(['11.snapshot', 'MANIFEST']);
      expect((await store.load('users', ctx))?.entries).to.deep.equal([['k', 'final', 0]]);
    });

    it('writes every hostile name inside dir and nowhere else', async function () {
      for (const name of HOSTILE_NAMES) await store.save(name, [], ctx);
      expect(await fs.readdir(root)).to.deep.equal(['store']);
      expect(await filesInDir()).to.have.length(HOSTILE_NAMES.length);
    });

    it('completes a save whose writes are short (the write loop, not one write call)', async function () {
      const proto = await fileHandlePrototype(await snapshotOf(path.basename(await saveSample('seed'), '.cgc')));
      const original = proto.write;
      const write = sinon.stub(proto, 'write').callsFake(function (this: FileHandle, ...args: unknown[]) {
        const [buffer, offset, length, position] = args as [Uint8Array, number, number, number];
        // Write at most 7 bytes per call, as a nearly full disk or a signal might.
        return (original as (...a: unknown[]) => unknown).call(this, buffer, offset, Math.min(length, 7), position);
      } as never);
      const entries = Array.from({ length: 50 }, (_, i): StoredEntry => [`k${i}`, 'v'.repeat(i), 0]);
      await store.save('short', entries, ctx);
      await store.saveChanges('short', { cleared: false, sets: [['k1', 'changed', 0]], deletes: ['k2'] }, ctx);
      write.restore();
      expect(write.callCount).to.be.greaterThan(10);
      const expected = entries.filter(([k]) => k !== 'k1' && k !== 'k2');
      expected.push(['k1', 'changed', 0]);
      expect((await store.load('short', ctx))?.entries).to.deep.equal(expected);
    });

    describe('when the disk fails', function () {
      let cacheDir: string;
      let before: Map<string, Buffer>;
      let proto: FileHandle;

      async function contents(): Promise<Map<string, Buffer>> {
        const files = new Map<string, Buffer>();
        for (const file of await cacheFiles()) files.set(file, await fs.readFile(path.join(cacheDir, file)));
        return files;
      }

      beforeEach(async function () {
        cacheDir = await saveSample();
        before = await contents();
        proto = await fileHandlePrototype(manifestOf());
      });

      async function expectOldStateIntact(): Promise<void> {
        sinon.restore();
        expect(await contents()).to.deep.equal(before);
        expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
      }

      it('a write that throws ENOSPC: StoreIOError op write, old files intact, temp removed', async function () {
        sinon.stub(proto, 'write').rejects(systemError('ENOSPC', 'write'));
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.be.instanceOf(StoreIOError);
        expect(error).to.include({ op: 'write', syscallCode: 'ENOSPC' });
        expect((error as StoreIOError).path).to.match(/\.snapshot$/);
        await expectOldStateIntact();
      });

      it('a write that makes no progress: StoreIOError op write, never renamed', async function () {
        sinon.stub(proto, 'write').resolves({ bytesWritten: 0, buffer: Buffer.alloc(0) } as never);
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'write' });
        expect(error.message).to.include('short write');
        await expectOldStateIntact();
      });

      it('a failing fsync: StoreIOError op fsync, the save is not reported good', async function () {
        sinon.stub(proto, 'sync').rejects(systemError('EIO', 'fsync'));
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.include({ op: 'fsync', syscallCode: 'EIO' });
        await expectOldStateIntact();
      });

      it('a failing rename: StoreIOError op rename, old files intact', async function () {
        sinon.stub(fs, 'rename').rejects(systemError('EXDEV', 'rename'));
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.include({ op: 'rename', syscallCode: 'EXDEV' });
        await expectOldStateIntact();
      });

      it('a failing rename of the manifest: the new snapshot is removed, old files intact', async function () {
        const rename = fs.rename.bind(fs);
        sinon.stub(fs, 'rename').callsFake(async (from, to) => {
          if (String(to).endsWith('MANIFEST')) throw systemError('EIO', 'rename');
          return rename(from, to);
        });
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.include({ op: 'rename', path: manifestOf() });
        await expectOldStateIntact();
      });

      it('an encoding failure: UnserializableError as is, old files intact, temp removed', async function () {
        const error = await rejectionOf(store.save('users', [['bad', new WeakMap(), 0]], ctx));
        expect(error).to.have.property('code', 'E_UNSERIALIZABLE');
        await expectOldStateIntact();
      });
    });

    it('fails loudly when a directory sits at the manifest path, leaving it as it was', async function () {
      const manifest = manifestOf();
      await fs.mkdir(manifest, { recursive: true });
      await fs.writeFile(path.join(manifest, 'inside'), 'kept');
      const error = await rejectionOf(store.save('users', sample, ctx));
      expect(error).to.be.instanceOf(StoreIOError);
      expect(error).to.include({ op: 'rename', path: manifest });
      expect((error as StoreIOError).syscallCode).to.be.oneOf(['EISDIR', 'ENOTEMPTY', 'EEXIST', 'EPERM']);
      expect(await cacheFiles()).to.deep.equal(['MANIFEST']);
      expect(await fs.readFile(path.join(manifest, 'inside'), 'utf8')).to.equal('kept');
      // And a load does not mistake the directory for a manifest.
      const loadError = await rejectionOf(store.load('users', ctx));
      expect(loadError).to.be.instanceOf(CorruptFileError).with.property('path', manifest);
    });

    it('fails loudly when a file sits at the cache path, leaving it until it is quarantined', async function () {
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(store.locate('users'), 'an old single-file cache, or anything else');
      const error = await rejectionOf(store.save('users', sample, ctx));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'mkdir', path: store.locate('users'), syscallCode: 'EEXIST' });
      expect(await rejectionOf(store.load('users', ctx))).to.be.instanceOf(CorruptFileError).with.property('path', store.locate('users'));
      expect(await store.has('users')).to.equal(true);
      const moved = await store.quarantine('users', ctx);
      expect(await fs.readFile(moved as string, 'utf8')).to.equal('an old single-file cache, or anything else');
      await store.save('users', sample, ctx);
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });

    it('replaces a symlink planted at the cache path instead of writing through it', async function () {
      const outside = path.join(root, 'outside');
      await fs.mkdir(outside);
      await fs.mkdir(dir, { recursive: true });
      await fs.symlink(outside, store.locate('users'));
      await store.save('users', sample, ctx);
      expect(await fs.readdir(outside)).to.deep.equal([]);
      expect((await fs.lstat(store.locate('users'))).isDirectory()).to.equal(true);
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });
  });

  describe('#load()', function () {
    it('resolves undefined when dir does not exist', async function () {
      expect(await store.load('users', ctx)).to.equal(undefined);
      expect(await store.has('users')).to.equal(false);
      expect(await store.list()).to.deep.equal([]);
      expect(await store.delete('users')).to.equal(false);
      expect(await store.loadEntry('users', 'a', ctx)).to.equal(undefined);
    });

    it('resolves undefined for a zero-byte file at the cache path, an empty cache directory, a zero-byte manifest', async function () {
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(store.locate('users'), '');
      expect(await store.load('users', ctx)).to.equal(undefined);
      await fs.unlink(store.locate('users'));
      await fs.mkdir(store.locate('users'));
      expect(await store.load('users', ctx)).to.equal(undefined);
      await fs.writeFile(manifestOf(), '');
      expect(await store.load('users', ctx)).to.equal(undefined);
      expect(await store.has('users')).to.equal(false);
      expect(await store.list()).to.deep.equal([]);
    });

    describe('a truncated snapshot', function () {
      let file: string;
      let bytes: Buffer;

      beforeEach(async function () {
        // Enough entries for several chunks.
        const entries = Array.from({ length: 9000 }, (_, i): StoredEntry => [i, `value ${i}`, 0]);
        await store.save('users', entries, ctx);
        file = await snapshotOf();
        bytes = await fs.readFile(file);
      });

      const cuts: [string, (size: number) => number][] = [
        ['to nothing', () => 0],
        ['inside the magic', () => 5],
        ['inside the header JSON', () => 40],
        ['in the middle', (size) => Math.floor(size / 2)],
        ['inside the trailer', (size) => size - 7],
        ['by one byte', (size) => size - 1],
      ];
      for (const [where, cut] of cuts) {
        it(`is a CorruptFileError naming the snapshot and an offset when cut ${where}`, async function () {
          await fs.writeFile(file, bytes.subarray(0, cut(bytes.length)));
          const error = await rejectionOf(store.load('users', ctx));
          expect(error).to.be.instanceOf(CorruptFileError);
          expect(error).to.include({ path: file, cacheName: 'users' });
          expect((error as CorruptFileError).offset).to.be.a('number');
          expect(error.message).to.include(file);
        });
      }
    });

    it('detects a truncated manifest at every length', async function () {
      await saveSample();
      const manifest = manifestOf();
      const bytes = await fs.readFile(manifest);
      for (let length = 1; length < bytes.length; length++) {
        await fs.writeFile(manifest, bytes.subarray(0, length));
        const error = await rejectionOf(store.load('users', ctx));
        expect(error, `cut at ${length}`).to.be.instanceOf(CorruptFileError).with.property('path', manifest);
      }
    });

    it('detects single and double byte flips at 500 seeded random positions of a snapshot, never loading wrong data', async function () {
      await saveSample();
      const file = await snapshotOf();
      const bytes = await fs.readFile(file);
      const random = seededRandom(0xc0ffee);
      for (let round = 0; round < 500; round++) {
        const damaged = Buffer.from(bytes);
        const flips = round % 2 === 0 ? 1 : 2;
        const positions: number[] = [];
        for (let f = 0; f < flips; f++) {
          const position = Math.floor(random() * damaged.length);
          positions.push(position);
          damaged[position] = (damaged[position] as number) ^ (1 + Math.floor(random() * 255));
        }
        if (Buffer.compare(damaged, bytes) === 0) continue; // two flips that cancelled out
        await fs.writeFile(file, damaged);
        const error = await rejectionOf(store.load('users', ctx));
        expect(error, `flip at ${positions.join(', ')}`).to.satisfy(
          (e: unknown) => e instanceof CorruptFileError || e instanceof UnsupportedFormatError,
        );
        expect((error as CorruptFileError).path).to.equal(file);
      }
    });

    it('detects a flip of any bit of the manifest', async function () {
      await saveSample();
      await store.saveChanges('users', { cleared: false, sets: [['c', 1, 0]], deletes: [] }, ctx);
      const manifest = manifestOf();
      const bytes = await fs.readFile(manifest);
      for (let position = 0; position < bytes.length; position++) {
        for (const bit of [0x01, 0x80]) {
          const damaged = Buffer.from(bytes);
          damaged[position] = (damaged[position] as number) ^ bit;
          await fs.writeFile(manifest, damaged);
          const error = await rejectionOf(store.load('users', ctx));
          expect(error, `flip at ${position}`).to.satisfy((e: unknown) => e instanceof CorruptFileError || e instanceof UnsupportedFormatError);
          expect((error as CorruptFileError).path).to.equal(manifest);
        }
      }
    });

    it('rejects files with the wrong magic as not cachegraph files', async function () {
      await saveSample();
      const snapshot = await snapshotOf();
      const good = await fs.readFile(snapshot);
      await fs.writeFile(snapshot, Buffer.concat([Buffer.from('PK\u0003\u0004'), good.subarray(4)]));
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', snapshot);
      expect(error.message).to.include('not a cachegraph file');
      await fs.writeFile(manifestOf(), 'PK\u0003\u0004 this is a zip file, not a manifest');
      const manifestError = await rejectionOf(store.load('users', ctx));
      expect(manifestError).to.be.instanceOf(CorruptFileError).with.property('path', manifestOf());
      expect(manifestError.message).to.include('not a cachegraph manifest');
    });

    it('rejects a newer format version with UnsupportedFormatError naming path and version', async function () {
      await saveSample();
      const snapshot = await snapshotOf();
      const bytes = await fs.readFile(snapshot);
      bytes.writeUInt16BE(2, 8);
      await fs.writeFile(snapshot, bytes);
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(UnsupportedFormatError);
      expect(error).to.include({ path: snapshot, found: 'format version 2' });
      const manifest = await fs.readFile(manifestOf());
      manifest.writeUInt16BE(7, 8);
      await fs.writeFile(manifestOf(), manifest);
      expect(await rejectionOf(store.load('users', ctx))).to.be.instanceOf(UnsupportedFormatError).and.include({ path: manifestOf(), found: 'format version 7' });
    });

    it('rejects a copy written with a codec this process does not have', async function () {
      const custom: Codec = { name: 'custom-json', encode: jsonCodec.encode, decode: jsonCodec.decode };
      await store.save('users', [['k', 1, 0]], contextWith(custom));
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(UnsupportedFormatError).with.property('found', 'codec custom-json');
      expect(error.message).to.include('which this process does not have');
      expect((await store.load('users', contextWith(custom)))?.entries).to.deep.equal([['k', 1, 0]]);
    });

    it("rejects another cache's directory copied over this one", async function () {
      await saveSample('other');
      await fs.cp(store.locate('other'), store.locate('users'), { recursive: true });
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', manifestOf());
      expect(error.message).to.include('belongs to cache "other"');
    });

    it('rejects a snapshot that is not the one the manifest names, or is missing', async function () {
      await store.save('users', [['first', 1, 0]], ctx);
      const first = await fs.readFile(await snapshotOf());
      await store.save('users', [['other', 2, 0]], ctx);
      const file = await snapshotOf();
      await fs.writeFile(file, first);
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', file);
      await fs.unlink(file);
      const missing = await rejectionOf(store.load('users', ctx));
      expect(missing).to.be.instanceOf(CorruptFileError).with.property('path', file);
      expect(missing.message).to.include('does not exist');
    });

    it('does not follow a symlink planted at the cache path or at a file: CorruptFileError naming it', async function () {
      const elsewhere = new FileStore({ dir: path.join(root, 'elsewhere') });
      await elsewhere.save('users', [['secret', 'from elsewhere', 0]], ctx);
      await fs.mkdir(dir, { recursive: true });
      const link = store.locate('users');
      await fs.symlink(elsewhere.locate('users'), link);
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', link);
      expect(error.message).to.include('symbolic link');
      // It can be moved aside like any damaged copy, without touching its target.
      expect(await store.quarantine('users', ctx)).to.be.a('string');
      expect(await store.load('users', ctx)).to.equal(undefined);
      expect((await elsewhere.load('users', ctx))?.entries).to.deep.equal([['secret', 'from elsewhere', 0]]);

      await saveSample();
      await fs.rm(manifestOf());
      await fs.symlink(path.join(elsewhere.locate('users'), 'MANIFEST'), manifestOf());
      const manifestError = await rejectionOf(store.load('users', ctx));
      expect(manifestError).to.be.instanceOf(CorruptFileError).with.property('path', manifestOf());
      expect(manifestError.message).to.include('symbolic link');
      await elsewhere.close();
    });

    it('does not block on a FIFO planted at the cache path or the manifest path', async function () {
      if (process.platform === 'win32') this.skip();
      const { execFileSync } = await import('node:child_process');
      await fs.mkdir(dir, { recursive: true });
      try {
        execFileSync('mkfifo', [store.locate('users')]);
      } catch {
        this.skip(); // no mkfifo on this system
      }
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError);
      expect(error.message).to.include('not a directory');
      await fs.unlink(store.locate('users'));
      await fs.mkdir(store.locate('users'));
      execFileSync('mkfifo', [manifestOf()]);
      const manifestError = await rejectionOf(store.load('users', ctx));
      expect(manifestError).to.be.instanceOf(CorruptFileError);
      expect(manifestError.message).to.include('not a regular file');
    });
  });

  describe('debris of a crash', function () {
    const deadPid = 2_147_483_646; // above any pid_max: no such process
    let deadTemp: string;
    let liveTemp: string;

    beforeEach(async function () {
      await fs.mkdir(store.locate('users'), { recursive: true });
      deadTemp = path.join(store.locate('users'), `.MANIFEST.tmp-${deadPid}-0a1b2c3d4e5f`);
      liveTemp = path.join(store.locate('users'), `.7.snapshot.tmp-${process.ppid}-0a1b2c3d4e5f`);
      await fs.writeFile(deadTemp, 'half a manifest');
      await fs.writeFile(liveTemp, 'a save in progress elsewhere');
    });

    it('temp files are ignored by load and removed when their process is gone', async function () {
      expect(await store.load('users', ctx)).to.equal(undefined);
      const left = await cacheFiles();
      expect(left).to.not.include(path.basename(deadTemp));
      expect(left).to.include(path.basename(liveTemp));
    });

    it('temp files are removed by the first save, which then succeeds', async function () {
      await store.save('users', sample, ctx);
      expect(await cacheFiles()).to.deep.equal([path.basename(liveTemp), '1.snapshot', 'MANIFEST']);
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });

    it('data files no manifest names are removed by the first write, never by a read', async function () {
      await saveSample();
      await store.close();
      await fs.writeFile(path.join(store.locate('users'), '9.log'), 'orphan of a crashed compaction');
      await fs.writeFile(path.join(store.locate('users'), '8.snapshot'), 'orphan of a crashed save');
      const reader = new FileStore({ dir, readOnly: true });
      expect((await reader.load('users', ctx))?.entries).to.deep.equal(sample);
      expect(await cacheFiles()).to.include.members(['9.log', '8.snapshot']);
      store = new FileStore({ dir });
      await store.saveChanges('users', { cleared: false, sets: [['c', 3, 0]], deletes: [] }, ctx);
      expect(await cacheFiles()).to.not.include.members(['9.log', '8.snapshot']);
      expect((await store.load('users', ctx))?.entries).to.deep.equal([...sample, ['c', 3, 0]]);
    });

    it('a cache directory without a manifest (a first save that crashed) is nothing saved', async function () {
      await fs.writeFile(path.join(store.locate('users'), '1.snapshot'), 'half a snapshot');
      expect(await store.load('users', ctx)).to.equal(undefined);
      expect(await store.has('users')).to.equal(false);
      expect(await store.list()).to.deep.equal([]);
      await store.save('users', sample, ctx);
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });

    it('are not listed, nor are quarantined copies', async function () {
      await saveSample();
      await saveSample('stats');
      await store.quarantine('stats', ctx);
      expect(await store.list()).to.deep.equal(['users']);
    });

    it('of other caches are left alone', async function () {
      await fs.mkdir(store.locate('users2'));
      const otherTemp = path.join(store.locate('users2'), `.MANIFEST.tmp-${deadPid}-0a1b2c3d4e5f`);
      await fs.writeFile(otherTemp, 'debris of users2');
      await store.load('users', ctx);
      expect(await cacheFiles('users2')).to.include(path.basename(otherTemp));
    });

    it('a deletion cut short by a crash is finished later', async function () {
      const aside = path.join(dir, `.stats.cgc.del.tmp-${deadPid}-0a1b2c3d4e5f`);
      await fs.mkdir(aside);
      await fs.writeFile(path.join(aside, 'MANIFEST'), 'x');
      await store.load('users', ctx);
      expect(await filesInDir()).to.deep.equal(['users.cgc']);
    });
  });

  describe('#list()', function () {
    it('reads the real name of hashed (long) names from the manifest', async function () {
      const long = `Long name ${'é'.repeat(200)}`;
      await store.save(long, [], ctx);
      expect(path.basename(store.locate(long))).to.include('~');
      expect(await store.list()).to.deep.equal([long]);
    });

    it('ignores entries that are not the canonical path of any name', async function () {
      await saveSample();
      await fs.writeFile(path.join(dir, 'README.md'), 'x');
      await fs.writeFile(path.join(dir, 'UPPER.cgc'), 'x');
      await fs.writeFile(path.join(dir, '%61.cgc'), 'x'); // non-canonical spelling of 'a'
      await fs.mkdir(path.join(dir, `garbage~${'0'.repeat(64)}.cgc`));
      await fs.writeFile(path.join(dir, `garbage~${'0'.repeat(64)}.cgc`, 'MANIFEST'), 'x');
      expect(await store.list()).to.deep.equal(['users']);
    });
  });

  describe('#quarantine()', function () {
    it('renames the directory to <dir>.corrupt-<ISO time without colons>, with all its files, and returns that path', async function () {
      const cacheDir = await saveSample();
      await store.saveChanges('users', { cleared: false, sets: [['c', 1, 0]], deletes: [] }, ctx);
      const files = await cacheFiles();
      const moved = await store.quarantine('users', contextWith(v8Codec, Date.UTC(2024, 0, 2, 3, 4, 5, 6)));
      expect(moved).to.equal(`${cacheDir}.corrupt-2024-01-02T030405.006Z`);
      expect(await filesInDir()).to.deep.equal([`users.cgc.corrupt-2024-01-02T030405.006Z`]);
      expect((await fs.readdir(moved as string)).sort()).to.deep.equal(files);
    });
  });

  describe('#delete()', function () {
    it('removes every file of the cache', async function () {
      await saveSample();
      await store.saveChanges('users', { cleared: false, sets: [['c', 1, 0]], deletes: [] }, ctx);
      expect(await store.delete('users')).to.equal(true);
      expect(await filesInDir()).to.deep.equal([]);
    });

    it('reports a failure other than absence as StoreIOError op delete, removing nothing', async function () {
      const cacheDir = await saveSample();
      sinon.stub(fs, 'rename').rejects(systemError('EACCES', 'rename'));
      const error = await rejectionOf(store.delete('users'));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'delete', path: cacheDir });
      sinon.restore();
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });
  });

  describe('locking', function () {
    it('lets one store per directory write: another gets LockedError until the first closes', async function () {
      await saveSample();
      const second = new FileStore({ dir });
      expect((await second.load('users', ctx))?.entries).to.deep.equal(sample);
      const error = await rejectionOf(second.save('users', [], ctx));
      expect(error).to.be.instanceOf(LockedError).with.property('code', 'E_LOCKED');
      expect(await rejectionOf(second.saveChanges('users', { cleared: true, sets: [], deletes: [] }, ctx))).to.be.instanceOf(LockedError);
      expect(await rejectionOf(second.delete('users'))).to.be.instanceOf(LockedError);
      await store.close();
      await second.saveChanges('users', { cleared: false, sets: [['c', 3, 0]], deletes: [] }, ctx);
      expect((await second.load('users', ctx))?.entries).to.deep.equal([...sample, ['c', 3, 0]]);
      await second.close();
    });

    it('takes the lock lazily, on the first write, and releases it on close()', async function () {
      await store.load('users', ctx);
      await store.list();
      expect(await fs.readdir(root)).to.deep.equal([]);
      await saveSample();
      expect(await fs.readdir(dir)).to.include(LOCK_FILE_NAME);
      await store.close();
      await store.close();
      expect(await fs.readdir(dir)).to.not.include(LOCK_FILE_NAME);
      // Still usable: it locks again.
      await store.save('users', [], ctx);
      expect(await fs.readdir(dir)).to.include(LOCK_FILE_NAME);
    });

    it('waits up to lockTimeout for the holder to close', async function () {
      await saveSample();
      const patient = new FileStore({ dir, lockTimeout: 10_000 });
      const saving = patient.save('users', [['after', 1, 0]], ctx);
      await new Promise((resolve) => setTimeout(resolve, 50));
      await store.close();
      await saving;
      expect((await patient.load('users', ctx))?.entries).to.deep.equal([['after', 1, 0]]);
      await patient.close();
    });

    it('finds an object key built afresh in another process after a restart (keys compare by content)', async function () {
      await store.save('objects', [[[1, 2], 'pair', 0], [{ b: 2, a: 1 }, 'object', 0]], ctx);
      await store.saveChanges('objects', { cleared: false, sets: [[[3, 4], 'later', 0]], deletes: [] }, ctx);
      await store.close();
      const restarted = new FileStore({ dir });
      // Arrays read back from disk serialize differently from fresh literals: identity must not.
      expect(await restarted.loadEntry('objects', [1, 2], ctx)).to.deep.equal([[1, 2], 'pair', 0]);
      expect(await restarted.loadEntry('objects', { a: 1, b: 2 }, ctx)).to.deep.equal([{ b: 2, a: 1 }, 'object', 0]);
      expect(await restarted.loadEntry('objects', [3, 4], ctx)).to.deep.equal([[3, 4], 'later', 0]);
      await restarted.saveChanges('objects', { cleared: false, sets: [], deletes: [[1, 2]] }, ctx);
      expect((await restarted.load('objects', ctx))?.entries.map((e) => e[1])).to.deep.equal(['object', 'later']);
      await restarted.close();
    });

    it('a readOnly store reads while another writes, never locks, and refuses every write', async function () {
      await saveSample();
      const reader = new FileStore({ dir, readOnly: true });
      expect((await reader.load('users', ctx))?.entries).to.deep.equal(sample);
      expect(await reader.loadEntry('users', 'a', ctx)).to.deep.equal(sample[0]);
      const writes: [string, Promise<unknown>][] = [
        ['save', reader.save('users', [], ctx)],
        ['saveChanges', reader.saveChanges('users', { cleared: true, sets: [], deletes: [] }, ctx)],
        ['delete', reader.delete('users')],
        ['quarantine', reader.quarantine('users', ctx)],
        ['compact', reader.compact('users', ctx)],
      ];
      for (const [what, attempt] of writes) {
        const error = await rejectionOf(attempt);
        expect(error, what).to.be.instanceOf(StoreIOError).and.include({ syscallCode: 'EROFS' });
        expect(error.message, what).to.include('readOnly');
      }
      await store.saveChanges('users', { cleared: false, sets: [['c', 3, 0]], deletes: [] }, ctx);
      expect(await reader.loadEntry('users', 'c', ctx)).to.deep.equal(['c', 3, 0]);
      expect((await reader.load('users', ctx))?.entries).to.deep.equal([...sample, ['c', 3, 0]]);
      await reader.close();
      expect(await fs.readdir(dir)).to.include(LOCK_FILE_NAME); // the writer's, untouched
    });
  });

  describe('file names', function () {
    it('use the encoding of names.ts', async function () {
      await store.save('Users/../x', [], ctx);
      expect(await filesInDir()).to.deep.equal([`${toFileName('Users/../x')}.cgc`]);
    });
  });
});
