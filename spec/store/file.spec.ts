import { expect } from 'chai';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sinon from 'sinon';
import { jsonCodec, v8Codec } from '../../lib/codec/index.js';
import type { Codec } from '../../lib/codec/types.js';
import { CorruptFileError, InvalidNameError, InvalidOptionError, StoreIOError, UnsupportedFormatError } from '../../lib/errors.js';
import { FileStore } from '../../lib/store/file.js';
import { toFileName } from '../../lib/store/names.js';
import type { StoredEntry } from '../../lib/store/types.js';
import { contextWith, describeStoreConformance, HOSTILE_NAMES, rejectionOf, seededRandom } from './conformance.js';

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

/** The prototype of the FileHandle objects fs/promises returns, for stubbing writes. */
async function fileHandlePrototype(file: string): Promise<FileHandle> {
  const handle = await fs.open(file, 'r');
  await handle.close();
  return Object.getPrototypeOf(handle) as FileHandle;
}

function systemError(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected failure, ${syscall}`), { code, syscall });
}

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
    await fs.rm(root, { recursive: true, force: true });
  });

  const sample: StoredEntry[] = [
    ['a', { n: 1, tags: ['x', 'y'] }, 0],
    ['b', new Map([[1, new Date(0)]]), 123],
  ];

  async function saveSample(name = 'users'): Promise<string> {
    await store.save(name, sample, ctx);
    return store.locate(name);
  }

  async function filesInDir(): Promise<string[]> {
    return (await fs.readdir(dir)).sort();
  }

  describe('constructor', function () {
    it('resolves dir to an absolute path', function () {
      expect(path.isAbsolute(new FileStore({ dir: 'relative/cache' }).dir)).to.equal(true);
    });

    it('rejects a missing dir, a bad mode and unknown options, naming the option', function () {
      const attempts: [unknown, string][] = [
        [{}, 'dir'],
        [{ dir: '' }, 'dir'],
        [{ dir: 'x', fileMode: 0o1777 }, 'fileMode'],
        [{ dir: 'x', dirMode: -1 }, 'dirMode'],
        [{ dir: 'x', fileMdoe: 0o600 }, 'fileMdoe'],
      ];
      for (const [options, option] of attempts) {
        const create = (): FileStore => new FileStore(options as never);
        expect(create).to.throw(InvalidOptionError).with.property('option', option);
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
    it('creates dir on the first save, mode 0700, and files with mode 0600', async function () {
      const nested = new FileStore({ dir: path.join(root, 'a', 'b') });
      await nested.save('users', sample, ctx);
      expect((await fs.stat(path.join(root, 'a', 'b'))).mode & 0o777).to.equal(0o700);
      expect((await fs.stat(nested.locate('users'))).mode & 0o777).to.equal(0o600);
    });

    it('honours fileMode and dirMode', async function () {
      const custom = new FileStore({ dir: path.join(root, 'custom'), fileMode: 0o640, dirMode: 0o750 });
      await custom.save('users', sample, ctx);
      const umask = process.umask();
      expect((await fs.stat(custom.dir)).mode & 0o777).to.equal(0o750 & ~umask);
      expect((await fs.stat(custom.locate('users'))).mode & 0o777).to.equal(0o640 & ~umask);
    });

    it('leaves exactly one file and no temp file after repeated saves', async function () {
      for (let i = 0; i < 5; i++) await store.save('users', [['k', i, 0]], ctx);
      expect(await filesInDir()).to.deep.equal(['users.cgc']);
      expect((await store.load('users', ctx))?.entries).to.deep.equal([['k', 4, 0]]);
    });

    it('writes every hostile name inside dir and nowhere else', async function () {
      for (const name of HOSTILE_NAMES) await store.save(name, [], ctx);
      expect(await fs.readdir(root)).to.deep.equal(['store']);
      expect(await filesInDir()).to.have.length(HOSTILE_NAMES.length);
    });

    it('completes a save whose writes are short (the write loop, not one write call)', async function () {
      const proto = await fileHandlePrototype(await saveSample('seed'));
      const original = proto.write;
      const write = sinon.stub(proto, 'write').callsFake(function (this: FileHandle, ...args: unknown[]) {
        const [buffer, offset, length, position] = args as [Uint8Array, number, number, number];
        // Write at most 7 bytes per call, as a nearly full disk or a signal might.
        return (original as (...a: unknown[]) => unknown).call(this, buffer, offset, Math.min(length, 7), position);
      } as never);
      const entries = Array.from({ length: 50 }, (_, i): StoredEntry => [`k${i}`, 'v'.repeat(i), 0]);
      await store.save('short', entries, ctx);
      write.restore();
      expect(write.callCount).to.be.greaterThan(10);
      expect((await store.load('short', ctx))?.entries).to.deep.equal(entries);
    });

    describe('when the disk fails', function () {
      let file: string;
      let before: Buffer;
      let proto: FileHandle;

      beforeEach(async function () {
        file = await saveSample();
        before = await fs.readFile(file);
        proto = await fileHandlePrototype(file);
      });

      async function expectOldStateIntact(): Promise<void> {
        expect(await filesInDir()).to.deep.equal(['users.cgc']);
        expect(Buffer.compare(await fs.readFile(file), before)).to.equal(0);
        expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
      }

      it('a write that throws ENOSPC: StoreIOError op write, old file intact, temp removed', async function () {
        sinon.stub(proto, 'write').rejects(systemError('ENOSPC', 'write'));
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.be.instanceOf(StoreIOError);
        expect(error).to.include({ op: 'write', path: file, syscallCode: 'ENOSPC' });
        sinon.restore();
        await expectOldStateIntact();
      });

      it('a write that makes no progress: StoreIOError op write, never renamed', async function () {
        sinon.stub(proto, 'write').resolves({ bytesWritten: 0, buffer: Buffer.alloc(0) } as never);
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.be.instanceOf(StoreIOError);
        expect(error).to.include({ op: 'write', path: file });
        expect(error.message).to.include('short write');
        sinon.restore();
        await expectOldStateIntact();
      });

      it('a failing fsync: StoreIOError op fsync, the save is not reported good', async function () {
        sinon.stub(proto, 'sync').rejects(systemError('EIO', 'fsync'));
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.include({ op: 'fsync', path: file, syscallCode: 'EIO' });
        sinon.restore();
        await expectOldStateIntact();
      });

      it('a failing rename: StoreIOError op rename, old file intact', async function () {
        sinon.stub(fs, 'rename').rejects(systemError('EXDEV', 'rename'));
        const error = await rejectionOf(store.save('users', [['new', 1, 0]], ctx));
        expect(error).to.include({ op: 'rename', path: file, syscallCode: 'EXDEV' });
        sinon.restore();
        await expectOldStateIntact();
      });

      it('an encoding failure: UnserializableError as is, old file intact, temp removed', async function () {
        const error = await rejectionOf(store.save('users', [['bad', new WeakMap(), 0]], ctx));
        expect(error).to.have.property('code', 'E_UNSERIALIZABLE');
        await expectOldStateIntact();
      });
    });

    it('fails loudly when a directory sits at the target path, leaving it as it was', async function () {
      const file = store.locate('users');
      await fs.mkdir(file, { recursive: true });
      await fs.writeFile(path.join(file, 'inside'), 'kept');
      const error = await rejectionOf(store.save('users', sample, ctx));
      expect(error).to.be.instanceOf(StoreIOError);
      expect(error).to.include({ op: 'rename', path: file });
      expect((error as StoreIOError).syscallCode).to.be.oneOf(['EISDIR', 'ENOTEMPTY', 'EEXIST', 'EPERM']);
      expect(await filesInDir()).to.deep.equal(['users.cgc']);
      expect(await fs.readFile(path.join(file, 'inside'), 'utf8')).to.equal('kept');
      // And a load does not mistake the directory for a cache.
      const loadError = await rejectionOf(store.load('users', ctx));
      expect(loadError).to.be.instanceOf(CorruptFileError).with.property('path', file);
    });

    it('replaces a symlink planted at the cache path instead of writing through it', async function () {
      const outside = path.join(root, 'outside.txt');
      await fs.writeFile(outside, 'not yours');
      await fs.mkdir(dir, { recursive: true });
      await fs.symlink(outside, store.locate('users'));
      await store.save('users', sample, ctx);
      expect(await fs.readFile(outside, 'utf8')).to.equal('not yours');
      expect((await fs.lstat(store.locate('users'))).isSymbolicLink()).to.equal(false);
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });
  });

  describe('#load()', function () {
    it('resolves undefined when dir does not exist', async function () {
      expect(await store.load('users', ctx)).to.equal(undefined);
      expect(await store.has('users')).to.equal(false);
      expect(await store.list()).to.deep.equal([]);
      expect(await store.delete('users')).to.equal(false);
    });

    it('resolves undefined for a zero-byte file', async function () {
      const file = await saveSample();
      await fs.writeFile(file, '');
      expect(await store.load('users', ctx)).to.equal(undefined);
    });

    describe('a truncated file', function () {
      let file: string;
      let bytes: Buffer;

      beforeEach(async function () {
        // Enough entries for several chunks.
        const entries = Array.from({ length: 9000 }, (_, i): StoredEntry => [i, `value ${i}`, 0]);
        file = store.locate('users');
        await store.save('users', entries, ctx);
        bytes = await fs.readFile(file);
      });

      const cuts: [string, (size: number) => number][] = [
        ['inside the magic', () => 5],
        ['inside the fixed header', () => 12],
        ['inside the header JSON', () => 40],
        ['in the middle', (size) => Math.floor(size / 2)],
        ['right before the trailer', (size) => size - 20],
        ['inside the trailer', (size) => size - 7],
        ['by one byte', (size) => size - 1],
      ];
      for (const [where, cut] of cuts) {
        it(`is a CorruptFileError naming the path and an offset when cut ${where}`, async function () {
          await fs.writeFile(file, bytes.subarray(0, cut(bytes.length)));
          const error = await rejectionOf(store.load('users', ctx));
          expect(error).to.be.instanceOf(CorruptFileError);
          expect(error).to.include({ path: file, cacheName: 'users' });
          expect((error as CorruptFileError).offset).to.be.a('number');
          expect(error.message).to.include(file);
        });
      }
    });

    it('detects single and double byte flips at 500 seeded random positions, never loading wrong data', async function () {
      const file = await saveSample();
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

    it('rejects a file with the wrong magic as not a cachegraph file', async function () {
      const file = await saveSample();
      await fs.writeFile(file, 'PK\u0003\u0004 this is a zip file, not a cache, and long enough');
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', file);
      expect(error.message).to.include('not a cachegraph file');
    });

    it('rejects a newer format version with UnsupportedFormatError naming path and version', async function () {
      const file = await saveSample();
      const bytes = await fs.readFile(file);
      bytes.writeUInt16BE(2, 8);
      await fs.writeFile(file, bytes);
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(UnsupportedFormatError);
      expect(error).to.include({ path: file, found: 'format version 2' });
    });

    it('rejects a file written with a codec this process does not have', async function () {
      const custom: Codec = { name: 'custom-json', encode: jsonCodec.encode, decode: jsonCodec.decode };
      await store.save('users', [['k', 1, 0]], contextWith(custom));
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(UnsupportedFormatError).with.property('found', 'codec custom-json');
      expect(error.message).to.include('which this process does not have');
      expect((await store.load('users', contextWith(custom)))?.entries).to.deep.equal([['k', 1, 0]]);
    });

    it('rejects another cache\'s file copied over this one', async function () {
      await saveSample('other');
      await fs.copyFile(store.locate('other'), store.locate('users'));
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError);
      expect(error.message).to.include('holds cache "other"');
    });

    it('does not follow a symlink planted at the cache path: CorruptFileError naming the path', async function () {
      const elsewhere = new FileStore({ dir: path.join(root, 'elsewhere') });
      await elsewhere.save('users', [['secret', 'from elsewhere', 0]], ctx);
      await fs.mkdir(dir, { recursive: true });
      const file = store.locate('users');
      await fs.symlink(elsewhere.locate('users'), file);
      const error = await rejectionOf(store.load('users', ctx));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', file);
      expect(error.message).to.include('symbolic link');
      // It can be moved aside like any damaged file, without touching its target.
      expect(await store.quarantine('users', ctx)).to.be.a('string');
      expect(await store.load('users', ctx)).to.equal(undefined);
      expect((await elsewhere.load('users', ctx))?.entries).to.deep.equal([['secret', 'from elsewhere', 0]]);
    });

    it('does not block on a FIFO planted at the cache path', async function () {
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
      expect(error.message).to.include('not a regular file');
    });
  });

  describe('temp files left by a crash', function () {
    const deadPid = 2_147_483_646; // above any pid_max: no such process
    let deadTemp: string;
    let liveTemp: string;

    beforeEach(async function () {
      await fs.mkdir(dir, { recursive: true });
      deadTemp = path.join(dir, `.users.cgc.tmp-${deadPid}-0a1b2c3d4e5f`);
      liveTemp = path.join(dir, `.users.cgc.tmp-${process.ppid}-0a1b2c3d4e5f`);
      await fs.writeFile(deadTemp, 'half a frame');
      await fs.writeFile(liveTemp, 'a save in progress elsewhere');
    });

    it('are ignored by load and removed when their process is gone', async function () {
      expect(await store.load('users', ctx)).to.equal(undefined);
      const left = await filesInDir();
      expect(left).to.not.include(path.basename(deadTemp));
      expect(left).to.include(path.basename(liveTemp));
    });

    it('are removed by the first save, which then succeeds', async function () {
      await store.save('users', sample, ctx);
      expect(await filesInDir()).to.deep.equal([path.basename(liveTemp), 'users.cgc'].sort());
      expect((await store.load('users', ctx))?.entries).to.deep.equal(sample);
    });

    it('are not listed, nor are quarantined files', async function () {
      await saveSample();
      await saveSample('stats');
      await store.quarantine('stats', ctx);
      expect(await store.list()).to.deep.equal(['users']);
    });

    it('of other caches are left alone', async function () {
      const otherTemp = path.join(dir, `.users2.cgc.tmp-${deadPid}-0a1b2c3d4e5f`);
      await fs.writeFile(otherTemp, 'debris of users2');
      await store.load('users', ctx);
      expect(await filesInDir()).to.include(path.basename(otherTemp));
    });
  });

  describe('#list()', function () {
    it('reads the real name of hashed (long) names from the header', async function () {
      const long = `Long name ${'é'.repeat(200)}`;
      await store.save(long, [], ctx);
      expect(path.basename(store.locate(long))).to.include('~');
      expect(await store.list()).to.deep.equal([long]);
    });

    it('ignores files that are not the canonical file of any name', async function () {
      await saveSample();
      await fs.writeFile(path.join(dir, 'README.md'), 'x');
      await fs.writeFile(path.join(dir, 'UPPER.cgc'), 'x');
      await fs.writeFile(path.join(dir, '%61.cgc'), 'x'); // non-canonical spelling of 'a'
      await fs.writeFile(path.join(dir, `garbage~${'0'.repeat(64)}.cgc`), 'x');
      expect(await store.list()).to.deep.equal(['users']);
    });
  });

  describe('#quarantine()', function () {
    it('renames the file to <file>.corrupt-<ISO time without colons> and returns that path', async function () {
      const file = await saveSample();
      const moved = await store.quarantine('users', contextWith(v8Codec, Date.UTC(2024, 0, 2, 3, 4, 5, 6)));
      expect(moved).to.equal(`${file}.corrupt-2024-01-02T030405.006Z`);
      expect(await filesInDir()).to.deep.equal([`users.cgc.corrupt-2024-01-02T030405.006Z`]);
    });
  });

  describe('#delete()', function () {
    it('reports a failure other than absence as StoreIOError op delete', async function () {
      const file = store.locate('users');
      await fs.mkdir(file, { recursive: true });
      const error = await rejectionOf(store.delete('users'));
      expect(error).to.be.instanceOf(StoreIOError).and.include({ op: 'delete', path: file });
    });
  });

  describe('file names', function () {
    it('use the encoding of names.ts', async function () {
      await store.save('Users/../x', [], ctx);
      expect(await filesInDir()).to.deep.equal([`${toFileName('Users/../x')}.cgc`]);
    });
  });
});
