// Security: symbolic links planted anywhere in a store directory never make the store read
// or write outside it; files are 0600 and directories 0700 by default, whatever the umask;
// loading a file only ever rebuilds data (no code runs, no prototype is polluted); and
// nothing secret (a Redis password, the values in a cache) appears in error messages,
// stacks or events. Redis runs for real (spec/fixtures/redis-server.ts).
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import v8 from 'node:v8';
import { Redis } from 'ioredis';
import {
  CacheGraphError,
  CacheManager,
  CorruptFileError,
  FileStore,
  jsonCodec,
  RedisStore,
  StoreIOError,
  systemClock,
  v8Codec,
  type Codec,
  type StoreContext,
} from '../../lib/index.js';
import { record, rejection } from '../helpers.js';
import { readManifestBody } from '../fixtures/fault-helpers.js';
import { startRedisServer, type RedisServer } from '../fixtures/redis-server.js';

const ctx: StoreContext = { codec: v8Codec, clock: systemClock };

/** A digest of every path, type, mode, link target and content under `dir`. */
async function fingerprint(dir: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const name of (await readdir(at)).sort()) {
      const full = path.join(at, name);
      const info = await lstat(full);
      const rel = path.relative(dir, full);
      if (info.isSymbolicLink()) lines.push(`${rel} -> ${await readlink(full)}`);
      else if (info.isDirectory()) {
        lines.push(`${rel}/ ${(info.mode & 0o777).toString(8)}`);
        await walk(full);
      } else lines.push(`${rel} ${(info.mode & 0o777).toString(8)} ${createHash('sha256').update(await readFile(full)).digest('hex')}`);
    }
  };
  await walk(dir);
  return lines.join('\n');
}

/** Every error in `error`'s cause chain, and its text as a user would see it. */
function errorText(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(String((e as Error).message), String((e as Error).stack), inspect(e, { depth: 4 }));
  }
  return parts.join('\n');
}

describe('Faults: security', function () {
  this.timeout(60_000);
  let root: string;
  let dir: string;
  let outside: string;

  beforeEach(async function () {
    root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-sec-'));
    dir = path.join(root, 'store');
    outside = path.join(root, 'outside');
    await mkdir(outside);
    // Outside: a valid cache of the same name (a copy an attacker controls) and a secret file.
    const elsewhere = new FileStore({ dir: outside, appendfsync: 'always' });
    await elsewhere.save('users', [['u1', 'from outside', 0]], ctx);
    await elsewhere.saveChanges('users', { cleared: false, sets: [['u2', 'appended outside', 0]], deletes: [] }, ctx);
    await elsewhere.close();
    await writeFile(path.join(outside, 'secret.txt'), 'do not touch');
  });

  afterEach(async function () {
    await rm(root, { recursive: true, force: true });
  });

  /** A store in `dir` holding 'users' (a snapshot and a segment), and its files. */
  async function saved(): Promise<{ store: FileStore; cacheDir: string; manifest: string; snapshot: string; segment: string }> {
    const store = new FileStore({ dir, appendfsync: 'always', compaction: false });
    await store.save('users', [['u1', 'inside', 0]], ctx);
    await store.saveChanges('users', { cleared: false, sets: [['u3', 'appended inside', 0]], deletes: [] }, ctx);
    const cacheDir = store.locate('users');
    const body = await readManifestBody(cacheDir);
    return {
      store,
      cacheDir,
      manifest: path.join(cacheDir, 'MANIFEST'),
      snapshot: path.join(cacheDir, `${body.snapshot?.file}.snapshot`),
      segment: path.join(cacheDir, `${body.segments.at(-1)}.log`),
    };
  }

  describe('symbolic links planted in the store directory', function () {
    it('at the cache directory: loads refuse it (E_CORRUPT_FILE), quarantine and delete move or remove the link only, a save replaces it', async function () {
      const before = await fingerprint(outside);
      await mkdir(dir);
      await symlink(path.join(outside, 'users.cgc'), path.join(dir, 'users.cgc'));
      const manager = new CacheManager({ dir, autoSync: false });
      const error = await rejection(manager.registerCache('users'));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('path', path.join(dir, 'users.cgc'));
      await manager.close();

      // Quarantine (onCorrupt) moves the link, not what it points to, and the cache is rebuilt and saved inside.
      const quarantining = new CacheManager({ dir, autoSync: false, onCorrupt: 'quarantine' });
      const users = await quarantining.registerCache('users', { builder: () => [['rebuilt', true]] });
      expect([...users]).to.deep.equal([['rebuilt', true]]);
      await quarantining.save('users');
      await quarantining.close();
      const aside = (await readdir(dir)).filter((name) => name.startsWith('users.cgc.corrupt-'));
      expect(aside).to.have.length(1);
      expect((await lstat(path.join(dir, aside[0] as string))).isSymbolicLink()).to.equal(true);
      expect((await lstat(path.join(dir, 'users.cgc'))).isDirectory()).to.equal(true);

      // deleteSaved of a linked cache removes the link only.
      await symlink(path.join(outside, 'users.cgc'), path.join(dir, 'other.cgc'));
      const store = new FileStore({ dir });
      expect(await store.delete('other')).to.equal(true);
      expect(await readdir(dir)).not.to.include('other.cgc');
      // A save over a link replaces the link by a directory of its own.
      await symlink(path.join(outside, 'users.cgc'), path.join(dir, 'third.cgc'));
      await store.save('third', [['k', 1, 0]], ctx);
      expect((await lstat(path.join(dir, 'third.cgc'))).isDirectory()).to.equal(true);
      await store.close();
      expect(await fingerprint(outside)).to.equal(before);
    });

    for (const target of ['manifest', 'snapshot', 'segment'] as const) {
      it(`at the ${target}: a load refuses it with E_CORRUPT_FILE naming it (even though its target is a valid file), and nothing outside changes`, async function () {
        const files = await saved();
        await files.store.close();
        const before = await fingerprint(outside);
        const foreign = await readManifestBody(path.join(outside, 'users.cgc'));
        const outsideFile = {
          manifest: path.join(outside, 'users.cgc', 'MANIFEST'),
          snapshot: path.join(outside, 'users.cgc', `${foreign.snapshot?.file}.snapshot`),
          segment: path.join(outside, 'users.cgc', `${foreign.segments.at(-1)}.log`),
        }[target];
        // The planted link points to a copy placed where the file was, so only the link is wrong.
        await rm(files[target]);
        await symlink(outsideFile, files[target]);
        for (const readOnly of [true, false]) {
          const store = new FileStore({ dir, readOnly });
          const error = await rejection(store.load('users', ctx));
          expect(error, `readOnly ${readOnly}`).to.be.instanceOf(CorruptFileError);
          expect((error as CorruptFileError).path, `readOnly ${readOnly}`).to.equal(files[target]);
          await store.close();
        }
        // A full save (what a rebuild does) replaces the whole group; the link is gone, its target untouched.
        const writer = new FileStore({ dir, compaction: false });
        await writer.save('users', [['fresh', 1, 0]], ctx);
        expect((await writer.load('users', ctx))?.entries).to.deep.equal([['fresh', 1, 0]]);
        await writer.close();
        expect(await fingerprint(outside)).to.equal(before);
      });
    }

    it('at the last segment of a loaded cache, swapped in between two saves: the append never reaches the link target', async function () {
      const files = await saved();
      const before = await fingerprint(outside);
      const foreign = await readManifestBody(path.join(outside, 'users.cgc'));
      await rm(files.segment);
      await symlink(path.join(outside, 'users.cgc', `${foreign.segments.at(-1)}.log`), files.segment);
      const outcome = await files.store.saveChanges('users', { cleared: false, sets: [['u4', 'appended', 0]], deletes: [] }, ctx).then(
        () => 'saved',
        (error: unknown) => error,
      );
      await files.store.close();
      if (outcome !== 'saved') expect(outcome).to.be.instanceOf(CacheGraphError);
      expect(await fingerprint(outside)).to.equal(before);
    });

    it('at LOCK (pointing to a file outside): the first write is refused, the target is neither read as a lock, rewritten nor removed', async function () {
      await mkdir(dir, { mode: 0o700 });
      await symlink(path.join(outside, 'secret.txt'), path.join(dir, 'LOCK'));
      const before = await fingerprint(outside);
      const store = new FileStore({ dir });
      const error = await rejection(store.save('users', [['k', 1, 0]], ctx));
      expect(error).to.be.instanceOf(CacheGraphError);
      await store.close();
      expect((await lstat(path.join(dir, 'LOCK'))).isSymbolicLink()).to.equal(true);
      expect(await fingerprint(outside)).to.equal(before);
    });

    it('at .flights or at a key lock folder: key locks are refused (E_STORE_IO, ELOOP) instead of written outside', async function () {
      await mkdir(dir, { mode: 0o700 });
      const before = await fingerprint(outside);
      const store = new FileStore({ dir });
      await symlink(outside, path.join(dir, '.flights'));
      const viaFlights = await rejection(store.lockKey('memo', 'k', { waitMs: 0, ttlMs: 60_000 }));
      expect(viaFlights).to.be.instanceOf(StoreIOError).with.property('syscallCode', 'ELOOP');
      expect((viaFlights as StoreIOError).path).to.equal(path.join(dir, '.flights'));
      // A memoized call under that store fails loudly too, computing nothing in secret.
      const manager = new CacheManager({ store, autoSync: false });
      let calls = 0;
      const price = manager.memoize((symbol: string) => ++calls + symbol.length, { name: 'price' });
      const memoError = await price('AAPL').then(() => undefined, (e: unknown) => e);
      if (memoError !== undefined) expect(memoError).to.be.instanceOf(StoreIOError);
      await manager.close();
      expect(await fingerprint(outside)).to.equal(before);

      // A link at one key's folder, inside a real .flights.
      await rm(path.join(dir, '.flights'));
      const held = await store.lockKey('memo', 'other', { waitMs: 0, ttlMs: 60_000 });
      const [folder] = await readdir(path.join(dir, '.flights'));
      await held.lock?.release();
      await symlink(outside, path.join(dir, '.flights', folder as string));
      const viaFolder = await rejection(store.lockKey('memo', 'other', { waitMs: 0, ttlMs: 60_000 }));
      expect(viaFolder).to.be.instanceOf(StoreIOError).with.property('syscallCode', 'ELOOP');
      await store.close();
      expect(await fingerprint(outside)).to.equal(before);
    });
  });

  describe('file modes', function () {
    it('every file is 0600 and every directory 0700 by default, even with umask 000: snapshots, segments, manifests, compactions in a worker, locks, key locks, quarantined copies', async function () {
      const previous = process.umask(0);
      try {
        const store = new FileStore({ dir: path.join(dir, 'deep', 'er'), compaction: { minDeadRatio: 0.01, minDeadBytes: 0 } });
        const manager = new CacheManager({ store, autoSync: false });
        const users = await manager.registerCache<string, string>('users');
        for (let i = 0; i < 20; i++) {
          users.set(`u${i % 3}`, 'x'.repeat(200 + i));
          await manager.save('users');
        }
        await store.compact('users', { codec: manager.codec, clock: systemClock });
        await store.idle();
        await store.quarantine('users', { codec: manager.codec, clock: systemClock });
        users.set('again', 'y');
        await manager.save('users');
        const { lock } = await store.lockKey('memo', 'k', { waitMs: 0, ttlMs: 60_000 });
        const seen = { files: 0, dirs: 0 };
        const walk = async (at: string): Promise<void> => {
          for (const name of await readdir(at)) {
            const full = path.join(at, name);
            const info = await lstat(full);
            if (info.isDirectory()) {
              seen.dirs++;
              expect((info.mode & 0o777).toString(8), full).to.equal('700');
              await walk(full);
            } else {
              seen.files++;
              expect((info.mode & 0o777).toString(8), full).to.equal('600');
            }
          }
        };
        // The directories the store created on the way (deep, er) are 0700 too.
        expect(((await stat(path.join(dir, 'deep'))).mode & 0o777).toString(8)).to.equal('700');
        await walk(dir);
        expect(seen.files).to.be.greaterThan(5);
        expect(seen.dirs).to.be.greaterThan(4);
        await lock?.release();
        await manager.close();
        await store.close();
      } finally {
        process.umask(previous);
      }
    });
  });

  describe('loading never executes code', function () {
    /** Saves one entry whose encoded bytes are `payload`, through a codec that lies about its output. */
    async function plant(store: FileStore, codec: Codec, payload: Uint8Array): Promise<void> {
      const liar: Codec = { name: codec.name, encode: () => payload, decode: codec.decode };
      await store.save('planted', [['k', 0, 0]], { codec: liar, clock: systemClock });
    }

    const prototypeKeys = (): string[] => [Object.prototype, Array.prototype, Function.prototype].flatMap((p) => Object.getOwnPropertyNames(p)).sort();

    it('a JSON file with __proto__, constructor and then keys loads as plain data: no prototype is polluted, nothing is called', async function () {
      const store = new FileStore({ dir });
      const keys = prototypeKeys();
      const payload = '[["k", {"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, "then": "not a function", "toString": "x"}, 0]]';
      await plant(store, jsonCodec, Buffer.from(payload));
      const loaded = await store.load('planted', { codec: jsonCodec, clock: systemClock });
      const value = loaded?.entries[0]?.[1] as Record<string, unknown>;
      expect(Object.getPrototypeOf(value)).to.equal(Object.prototype);
      expect(Object.keys(value)).to.have.members(['__proto__', 'constructor', 'then', 'toString']);
      expect(({} as Record<string, unknown>)['polluted']).to.equal(undefined);
      expect(prototypeKeys()).to.deep.equal(keys);
      await store.close();
    });

    it('a v8 file can only describe data: an own __proto__ key stays a key, source text stays text, and an unknown tag is E_CORRUPT_FILE', async function () {
      const store = new FileStore({ dir });
      const keys = prototypeKeys();
      const marker = path.join(root, 'executed');
      const evil = JSON.parse('{"__proto__": {"polluted": true}}') as object;
      const source = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`;
      await plant(store, v8Codec, v8.serialize([['k', { evil, source, run: `(${source})` }, 0]]));
      const value = (await store.load('planted', ctx))?.entries[0]?.[1] as { evil: object; source: unknown };
      expect(Object.getOwnPropertyNames(value.evil)).to.deep.equal(['__proto__']);
      expect(Object.getPrototypeOf(value.evil)).to.equal(Object.prototype);
      expect(value.source).to.equal(source);
      expect(prototypeKeys()).to.deep.equal(keys);
      // Bytes no serializer writes (a host-object tag, a garbage tag), behind valid checksums.
      for (const bytes of [Uint8Array.of(0xff, 0x0f, 0x5c, 0x00, 0x00), Uint8Array.of(0xff, 0x0f, 0xee, 0x01), Uint8Array.of(0xff, 0x0f, 0x6f, 0x22, 0x03)]) {
        await plant(store, v8Codec, bytes);
        const error = await rejection(store.load('planted', ctx));
        expect(error, Buffer.from(bytes).toString('hex')).to.be.instanceOf(CorruptFileError);
      }
      expect(await readdir(root)).not.to.include('executed');
      await store.close();
    });
  });

  describe('nothing secret in errors and events', function () {
    const SECRET = 'hunter2-value-secret';

    it('errors about values name the key and the path, never the value: E_UNSERIALIZABLE at set() and at save, E_CORRUPT_FILE, E_MEMO_KEY', async function () {
      const manager = new CacheManager({ dir, autoSync: false });
      const users = await manager.registerCache<string, unknown>('users');
      const atSet = (() => {
        try {
          users.set('u1', { password: SECRET, callback: () => SECRET });
        } catch (error) {
          return error;
        }
        return undefined;
      })();
      expect(atSet).to.be.instanceOf(CacheGraphError);
      expect(errorText(atSet)).to.include('u1').and.not.include(SECRET);

      // A value mutated after set(): the save fails naming the key, and sync:error carries the same error.
      const value: Record<string, unknown> = { password: SECRET };
      users.set('u2', value);
      value['callback'] = () => SECRET;
      const errors = record<{ error: unknown }>(manager, 'sync:error');
      const atSave = await rejection(manager.save('users'));
      expect(errorText(atSave)).to.include('u2').and.not.include(SECRET);
      for (const event of errors) expect(errorText(event.error)).not.to.include(SECRET);
      delete value['callback'];
      await manager.save('users');
      // (One more batch after it: damage in the last batch would be cut as a torn tail.)
      users.set('u3', 'later');
      await manager.save('users');
      await manager.close();

      // A damaged file holding the secret: the error names the file and offset, not its bytes.
      const segment = path.join(dir, 'users.cgc', `${(await readManifestBody(path.join(dir, 'users.cgc'))).segments.at(-1)}.log`);
      const bytes = await readFile(segment);
      const at = bytes.indexOf(Buffer.from(SECRET));
      expect(at).to.be.greaterThan(0);
      bytes[at] = (bytes[at] as number) ^ 1;
      await writeFile(segment, bytes);
      const reader = new CacheManager({ dir, autoSync: false });
      const corrupt = await rejection(reader.registerCache('users'));
      expect(corrupt).to.be.instanceOf(CorruptFileError);
      expect(errorText(corrupt)).not.to.include(SECRET);
      await reader.close();

      // Memoized arguments: the key error says where the culprit is, not what the other arguments hold.
      const memo = new CacheManager({ dir: path.join(root, 'memo'), autoSync: false });
      const login = memo.memoize((credentials: unknown) => credentials, { name: 'login' });
      const keyError = await Promise.resolve().then(() => login({ token: SECRET, callback: () => 1 })).then(() => undefined, (e: unknown) => e);
      expect(keyError).to.be.instanceOf(CacheGraphError);
      expect(errorText(keyError)).to.include('callback').and.not.include(SECRET);
      await memo.close();
    });

    describe('a RedisStore with a password in its URL', function () {
      const PASSWORD = 's3cret-redis-pw';
      let server: RedisServer;

      before(async function () {
        this.timeout(20_000);
        server = await startRedisServer();
        const admin = new Redis(server.url, { lazyConnect: true });
        await admin.connect();
        await admin.config('SET', 'requirepass', PASSWORD);
        await admin.quit();
      });

      after(async function () {
        await server?.stop();
      });

      it('a wrong password: the error does not show it; a working store, then a killed server: no message, stack, cause chain, event, location, stats or inspection shows it', async function () {
        this.timeout(30_000);
        const wrong = new RedisStore({ url: `redis://:${PASSWORD}-wrong@127.0.0.1:${server.port}/0`, retry: { attempts: 1, delayMs: 0 }, connectTimeoutMs: 1000 });
        const denied = await rejection(wrong.has('users'));
        expect(denied).to.be.instanceOf(CacheGraphError);
        // The whole cause chain, inspected: ioredis' reply error carries the AUTH command and its
        // arguments, which the store leaves out of the cause it keeps.
        expect(errorText(denied)).to.include('WRONGPASS').and.not.include(PASSWORD);
        await wrong.close();

        const store = new RedisStore({ url: `redis://default:${PASSWORD}@127.0.0.1:${server.port}/0`, retry: { attempts: 1, delayMs: 0 }, connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
        const manager = new CacheManager({ store, autoSync: { rules: [{ seconds: 0.01, changes: 1 }] } });
        const seen: unknown[] = [];
        for (const event of ['sync:error', 'sync:done', 'error', 'store:warning', 'cache:loaded', 'cache:registered'] as const) manager.on(event, (payload: unknown) => seen.push(payload));
        const users = await manager.registerCache<string, string>('users');
        users.set('u1', 'Ada');
        await manager.save('users');
        expect(await store.has('users')).to.equal(true);
        await server.kill();
        users.set('u2', 'Grace');
        const failures = await Promise.all([manager.save('users'), store.load('users', ctx), store.has('users')].map((call) => rejection(call)));
        await new Promise((resolve) => setTimeout(resolve, 100));
        const texts = [
          ...failures.map(errorText),
          ...seen.map((payload) => inspect(payload, { depth: 6 })),
          ...seen.map((payload) => errorText((payload as { error?: unknown }).error)),
          store.locate('users'),
          inspect(store, { depth: 4 }),
          JSON.stringify(manager.stats()),
        ];
        expect(seen.length).to.be.greaterThan(0);
        for (const text of texts) expect(text).not.to.include(PASSWORD);
        await manager.close().catch(() => undefined);
        await store.close();
        await server.restart();
      });
    });
  });

  it('(the outside copy the attacker planted is a valid cache: the refusals above are not explained by damage)', async function () {
    const store = new FileStore({ dir: outside, readOnly: true });
    const loaded = await store.load('users', ctx);
    expect(loaded?.entries.map(([k]) => k).sort()).to.deep.equal(['u1', 'u2']);
    await store.close();
    await cp(path.join(outside, 'users.cgc'), path.join(root, 'copy.cgc'), { recursive: true });
    expect((await stat(path.join(root, 'copy.cgc'))).isDirectory()).to.equal(true);
  });
});
