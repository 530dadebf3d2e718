// RedisStore against a real redis-server (spec/fixtures/redis-server.ts): the shared
// conformance suite, then what only Redis has: key layout, generations, expiry, connection
// failures and recovery, locks and pub/sub. No mocks of Redis.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';
import sinon from 'sinon';
import { jsonCodec, v8Codec } from '../../lib/codec/index.js';
import { ClosedError, CorruptFileError, InvalidOptionError, StoreUnavailableError } from '../../lib/errors.js';
import { RedisStore, type RedisStoreOptions } from '../../lib/store/redis.js';
import { LOCK } from '../../lib/store/redis/scripts.js';
import type { StoredEntry } from '../../lib/store/types.js';
import { freePort, startRedisServer, type RedisServer } from '../fixtures/redis-server.js';
import { changeBatch, contextWith, describeStoreConformance, FIXED_NOW, HOSTILE_NAMES, rejectionOf } from './conformance.js';

const ctx = contextWith(v8Codec);

/** The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  const open = bytes.indexOf('{');
  const close = open === -1 ? -1 : bytes.indexOf('}', open + 1);
  const tagged = close > open + 1 ? bytes.subarray(open + 1, close) : bytes;
  let crc = 0;
  for (const byte of tagged) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** Every key of the database matching `pattern`. */
async function keysMatching(admin: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.sort();
}

/** How many connections named `name` (CLIENT SETNAME) the server has. */
async function connectionsNamed(admin: Redis, name: string): Promise<number> {
  const list = String(await admin.call('CLIENT', ['LIST']));
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length;
}

/** Resolves after `ms` of real time (for lock timing; the store runs on real Redis time). */
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it resolves true, or fails after `timeoutMs`. */
async function eventually(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe().catch(() => false)) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(25);
  }
}

describe('RedisStore', function () {
  let server: RedisServer;
  let admin: Redis;
  let stores: RedisStore[] = [];
  let namespaces = 0;

  /** A store on the suite's server, closed after the test. */
  function makeStore(options: Partial<RedisStoreOptions> = {}): RedisStore {
    const store = new RedisStore({ url: server.url, namespace: `ns${namespaces}`, ...options } as RedisStoreOptions);
    stores.push(store);
    return store;
  }

  before(async function () {
    this.timeout(20_000);
    server = await startRedisServer();
    admin = new Redis(server.url, { lazyConnect: true });
    await admin.connect();
  });

  after(async function () {
    await admin?.quit();
    await server?.stop();
  });

  beforeEach(function () {
    namespaces += 1;
    stores = [];
  });

  afterEach(async function () {
    await Promise.allSettled(stores.map((store) => store.close()));
    await admin.flushdb();
  });

  describeStoreConformance('RedisStore', async () => {
    namespaces += 1;
    return { store: new RedisStore({ url: server.url, namespace: `conformance${namespaces}` }), cleanup: async () => void (await admin.flushdb()) };
  });

  describe('options', function () {
    const invalid = (options: unknown): InvalidOptionError => {
      try {
        new RedisStore(options as RedisStoreOptions);
      } catch (error) {
        expect(error).to.be.instanceOf(InvalidOptionError);
        return error as InvalidOptionError;
      }
      throw new Error('expected InvalidOptionError');
    };

    it('names the option that is wrong', function () {
      expect(invalid({}).option).to.equal('url');
      expect(invalid({ url: 'http://localhost' }).option).to.equal('url');
      expect(invalid({ url: 'redis://localhost', keyPrefix: 'a{b' }).option).to.equal('keyPrefix');
      expect(invalid({ url: 'redis://localhost', namespace: '' }).option).to.equal('namespace');
      expect(invalid({ url: 'redis://localhost', retry: { attempts: 0 } }).option).to.equal('retry.attempts');
      expect(invalid({ url: 'redis://localhost', connectTimeoutMs: -1 }).option).to.equal('connectTimeoutMs');
      expect(invalid({ url: 'redis://localhost', waitAof: { numlocal: 2, numreplicas: 0, timeoutMs: 0 } }).option).to.equal('waitAof.numlocal');
      expect(invalid({ url: 'redis://localhost', urll: 'x' }).option).to.equal('urll');
      expect(invalid({ url: 'redis://localhost', client: admin }).option).to.equal('url');
    });

    it("refuses a client with ioredis' own keyPrefix (keys would not be where the scripts look)", function () {
      const prefixed = new Redis({ lazyConnect: true, keyPrefix: 'x:' });
      expect(invalid({ client: prefixed }).option).to.equal('client');
    });

    it('connects nothing before the first call', async function () {
      const store = makeStore();
      await sleep(50);
      expect(await connectionsNamed(admin, `cachegraph:ns${namespaces}`)).to.equal(0);
      await store.has('users');
      expect(await connectionsNamed(admin, `cachegraph:ns${namespaces}`)).to.equal(1);
    });

    it('loads ioredis only when a store first connects', async function () {
      this.timeout(30_000);
      const script = `
        import { createRequire } from 'node:module';
        const require = createRequire(import.meta.url);
        const loaded = () => Object.keys(require.cache).some((file) => file.includes('/node_modules/ioredis/'));
        const { RedisStore } = await import(${JSON.stringify(new URL('../../lib/store/redis.ts', import.meta.url).href)});
        const store = new RedisStore({ url: ${JSON.stringify(server.url)} });
        const atConstruction = loaded();
        await store.has('x');
        console.log(JSON.stringify({ atConstruction, afterFirstCall: loaded() }));
        await store.close();`;
      const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 25_000 });
      expect(child.stderr).to.equal('');
      expect(JSON.parse(child.stdout)).to.deep.equal({ atConstruction: false, afterFirstCall: true });
    });

    it('waitAof needs Redis 7.2: on an older server the first call says so', async function () {
      const [major, minor] = ((await admin.info('server')).match(/redis_version:(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
      if ((major ?? 0) > 7 || (major === 7 && (minor ?? 0) >= 2)) this.skip(); // this server has WAITAOF
      const store = makeStore({ waitAof: { numlocal: 1, numreplicas: 0, timeoutMs: 100 } });
      const error = await rejectionOf(store.save('users', [['a', 1, 0]], ctx));
      expect(error).to.be.instanceOf(InvalidOptionError).with.property('option', 'waitAof');
      expect(error.message).to.match(/7\.2/);
    });
  });

  describe('key layout', function () {
    it('keeps every key of a cache in one cluster slot, hostile names included', async function () {
      const store = makeStore();
      const names = ['users', 'a{b}c', '{', '}', '%7B', 'x}:gen', ...HOSTILE_NAMES.slice(0, 12)];
      for (const name of names) {
        await store.save(name, [['a', 1, FIXED_NOW + 60_000], ['b', 2, 0]], ctx);
        await store.saveChanges(name, changeBatch([['c', 3, FIXED_NOW + 1]]), ctx);
        const { lock } = await store.lockKey(name, 'k}{', { waitMs: 0, ttlMs: 10_000 });
        const keys = await keysMatching(admin, `${store.locate(name).replace(/[*?[\]\\]/g, '\\$&')}*`);
        expect(keys.length, JSON.stringify(name)).to.equal(5); // gen, meta, data, exp, lock
        expect(new Set(keys.map(keySlot)).size, JSON.stringify(name)).to.equal(1);
        await lock?.release();
      }
      expect(await store.list()).to.have.members(names);
    });

    it('names keys <keyPrefix><namespace>:{<name>}:…, and namespaces do not see each other', async function () {
      const a = makeStore({ keyPrefix: 'app:', namespace: 'one' });
      const b = makeStore({ keyPrefix: 'app:', namespace: 'one:two' });
      await a.save('users', [['k', 1, 0]], ctx);
      await b.save('users', [['k', 2, 0]], ctx);
      expect(a.locate('users')).to.equal('app:one:{users}');
      expect(await admin.exists('app:one:{users}:gen')).to.equal(1);
      expect(await a.list()).to.deep.equal(['users']);
      expect((await a.load('users', ctx))?.entries).to.deep.equal([['k', 1, 0]]);
      expect((await b.load('users', ctx))?.entries).to.deep.equal([['k', 2, 0]]);
    });
  });

  describe('key identity', function () {
    it('keeps keys of different types, lone surrogates and object keys apart, as a Map would', async function () {
      const store = makeStore();
      const keys: unknown[] = [7, '7', 7n, true, 'true', 'b:true', null, 'null', undefined, 'undefined', NaN, 0, '0', '\ud800', '\ud801', '\ufffd', { a: 1 }, [1], 's:x', 'k1;a1:s1:x'];
      await store.save('keys', keys.map((key, i): StoredEntry => [key, i, 0]), ctx);
      expect((await store.load('keys', ctx))?.entries.map(([, value]) => value)).to.deep.equal(keys.map((_, i) => i));
      for (const [i, key] of keys.entries()) expect(await store.loadEntry('keys', key, ctx), String(key)).to.deep.equal([key, i, 0]);
      expect(await store.loadEntry('keys', -0, ctx)).to.deep.equal([0, 11, 0]);
      expect(await store.loadEntry('keys', { a: 1 }, ctx)).to.deep.equal([{ a: 1 }, 16, 0]);
      expect(await store.loadEntry('keys', Symbol('s'), ctx)).to.equal(undefined);
    });
  });

  describe('generations', function () {
    it('a save switches to a new generation and unlinks the old one', async function () {
      const store = makeStore();
      await store.save('users', Array.from({ length: 1000 }, (_, i): StoredEntry => [`k${i}`, i, i % 2 ? FIXED_NOW + 1000 : 0]), ctx);
      const first = await admin.get(`${store.locate('users')}:gen`);
      await store.save('users', [['only', 1, 0]], ctx);
      const second = await admin.get(`cg:ns${namespaces}:{users}:gen`);
      expect(second).to.be.a('string').and.not.equal(first);
      const keys = await keysMatching(admin, `cg:ns${namespaces}:\\{users\\}:g:*`);
      expect(keys).to.deep.equal([`cg:ns${namespaces}:{users}:g:${second}:data`, `cg:ns${namespaces}:{users}:g:${second}:meta`]);
      // The committed generation has no debris expiry.
      for (const key of keys) expect(await admin.pttl(key)).to.equal(-1);
    });

    it('delete() removes the pointer and unlinks the data: nothing of the cache is left', async function () {
      const store = makeStore();
      await store.save('users', Array.from({ length: 5000 }, (_, i): StoredEntry => [`k${i}`, 'x'.repeat(100), FIXED_NOW + i]), ctx);
      expect(await store.delete('users')).to.equal(true);
      expect(await keysMatching(admin, `cg:ns${namespaces}:*`)).to.deep.equal([]);
    });

    it('invalidateCascade() drops every listed cache in one step: no reader sees some gone and others not', async function () {
      const store = makeStore();
      const names = Array.from({ length: 20 }, (_, i) => `cache-${i}`);
      for (const name of names) await store.save(name, Array.from({ length: 200 }, (_, i): StoredEntry => [i, i, 0]), ctx);
      const genKeys = names.map((name) => `${store.locate(name)}:gen`);
      const observer = new Redis(server.url);
      const seen = new Set<number>();
      let watching = true;
      const watch = (async () => {
        while (watching) seen.add(await observer.exists(...genKeys));
      })();
      await sleep(20);
      const dropped = await store.invalidateCascade([...names, 'never-saved', 'cache-0']);
      await sleep(20);
      watching = false;
      await watch;
      await observer.quit();
      expect(dropped).to.deep.equal([...names.map(() => true), false, true]);
      expect([...seen].sort((a, b) => a - b)).to.deep.equal([0, 20]);
      expect(await keysMatching(admin, `cg:ns${namespaces}:*`)).to.deep.equal([]);
      expect(await store.list()).to.deep.equal([]);
    });

    it('a load running during a save sees the old copy or the new one, never a mix', async function () {
      const writer = makeStore();
      const reader = makeStore();
      const old = Array.from({ length: 3000 }, (_, i): StoredEntry => [`k${i}`, 'old', 0]);
      const fresh = Array.from({ length: 3000 }, (_, i): StoredEntry => [`k${i}`, 'new', 0]);
      await writer.save('users', old, ctx);
      const seen = new Set<string>();
      let reading = true;
      const reads = (async () => {
        while (reading) {
          const values = new Set((await reader.load('users', ctx))?.entries.map(([, value]) => value));
          seen.add([...values].sort().join('+'));
        }
      })();
      for (let i = 0; i < 5; i++) await writer.save('users', i % 2 ? old : fresh, ctx);
      reading = false;
      await reads;
      expect([...seen].every((values) => values === 'old' || values === 'new'), [...seen].join(', ')).to.equal(true);
    });

    it('two stores writing one cache in turn keep each other’s changes and their order', async function () {
      const a = makeStore();
      const b = makeStore();
      await a.save('shared', [['base', 0, 0]], ctx);
      await b.saveChanges('shared', changeBatch([['from-b', 1, 0]]), ctx);
      await a.saveChanges('shared', changeBatch([['from-a', 2, 0]]), ctx); // a's order counter is stale
      await b.saveChanges('shared', changeBatch([['base', 3, 0]]), ctx);
      expect((await a.load('shared', ctx))?.entries).to.deep.equal([['from-b', 1, 0], ['from-a', 2, 0], ['base', 3, 0]]);
      await b.delete('shared');
      await a.saveChanges('shared', changeBatch([['after-delete', 4, 0]]), ctx); // a still believes in the dropped generation
      expect((await b.load('shared', ctx))?.entries).to.deep.equal([['after-delete', 4, 0]]);
    });
  });

  describe('expiry', function () {
    it('is absolute: a new store (a restarted process) sees an entry until expiresAt, then not', async function () {
      const first = makeStore();
      await first.save('ttl', [['soon', 1, FIXED_NOW + 1000], ['never', 2, 0]], ctx);
      await first.close();
      const second = makeStore();
      expect(await second.loadEntry('ttl', 'soon', contextWith(v8Codec, FIXED_NOW + 999))).to.deep.equal(['soon', 1, FIXED_NOW + 1000]);
      expect(await second.loadEntry('ttl', 'soon', contextWith(v8Codec, FIXED_NOW + 1000))).to.equal(undefined);
      expect(await second.loadEntry('ttl', 'never', contextWith(v8Codec, FIXED_NOW + 1e12))).to.deep.equal(['never', 2, 0]);
    });

    it('reclaims expired entries: found by loadEntry, and after each batch', async function () {
      const store = makeStore();
      const entries = Array.from({ length: 50 }, (_, i): StoredEntry => [`k${i}`, i, i < 30 ? FIXED_NOW + i : 0]);
      await store.save('ttl', entries, ctx);
      const data = async (): Promise<number> => {
        const gen = await admin.get(`${store.locate('ttl')}:gen`);
        return admin.hlen(`${store.locate('ttl')}:g:${gen}:data`);
      };
      expect(await data()).to.equal(50);
      expect(await store.loadEntry('ttl', 'k5', contextWith(v8Codec, FIXED_NOW + 10))).to.equal(undefined);
      expect(await data()).to.equal(39); // k0..k10 removed, by the caller's clock
      await store.saveChanges('ttl', changeBatch([['k40', 'again', FIXED_NOW + 1e6]]), contextWith(v8Codec, FIXED_NOW + 20));
      expect(await data()).to.equal(29); // k11..k20 too
      const loaded = await store.load('ttl', ctx);
      expect(loaded?.entries.map(([key]) => key)).to.include('k40').and.not.include('k20');
      // Written again without expiry: it loses the one it had.
      await store.saveChanges('ttl', changeBatch([['k25', 'kept', 0]]), contextWith(v8Codec, FIXED_NOW));
      await store.saveChanges('ttl', changeBatch(), contextWith(v8Codec, FIXED_NOW + 1e5));
      expect(await store.loadEntry('ttl', 'k25', contextWith(v8Codec, FIXED_NOW + 1e5))).to.deep.equal(['k25', 'kept', 0]);
    });
  });

  describe('damage', function () {
    async function damage(store: RedisStore, name: string, field: string, flip: (record: Buffer) => void): Promise<string> {
      const gen = await admin.get(`${store.locate(name)}:gen`);
      const data = `${store.locate(name)}:g:${gen}:data`;
      const record = (await admin.hgetBuffer(data, field)) as Buffer;
      flip(record);
      await admin.hset(data, field, record);
      return data;
    }

    it('a flipped bit in a value is CorruptFileError naming the key, and the copy can be quarantined', async function () {
      const store = makeStore();
      await store.save('users', [['a', { name: 'Ada' }, 0], ['b', { name: 'Grace' }, 0]], ctx);
      const data = await damage(store, 'users', 's:b', (record) => {
        record[10] = (record[10] as number) ^ 0x04;
      });
      const loadError = await rejectionOf(store.load('users', ctx));
      expect(loadError).to.be.instanceOf(CorruptFileError).with.property('path', data);
      expect((loadError as CorruptFileError).cacheName).to.equal('users');
      expect(await rejectionOf(store.loadEntry('users', 'b', ctx))).to.be.instanceOf(CorruptFileError);
      expect(await store.loadEntry('users', 'a', ctx)).to.deep.equal(['a', { name: 'Ada' }, 0]);
      const moved = await store.quarantine('users', ctx);
      expect(await store.has('users')).to.equal(false);
      expect(await admin.hlen(`${moved}:data`)).to.equal(2);
    });

    it('a truncated value, a foreign value and missing metadata are CorruptFileError too', async function () {
      const store = makeStore();
      await store.save('users', [['a', 1, 0]], ctx);
      const gen = await admin.get(`${store.locate('users')}:gen`);
      const data = `${store.locate('users')}:g:${gen}:data`;
      const field = 's:a';
      const good = (await admin.hgetBuffer(data, field)) as Buffer;
      for (const bad of [good.subarray(0, good.length - 1), Buffer.from('hello world, not ours'), Buffer.alloc(0)]) {
        await admin.hset(data, field, bad);
        expect(await rejectionOf(store.load('users', ctx))).to.be.instanceOf(CorruptFileError);
      }
      await admin.hset(data, field, good);
      await admin.del(`${store.locate('users')}:g:${gen}:meta`);
      expect(await rejectionOf(store.load('users', ctx))).to.be.instanceOf(CorruptFileError).with.property('path', `${store.locate('users')}:g:${gen}:meta`);
    });

    it('a value written with the json codec is read back by a store using v8', async function () {
      const store = makeStore();
      await store.save('mixed', [['a', { n: 1 }, 0]], contextWith(jsonCodec));
      await store.saveChanges('mixed', changeBatch([['b', new Map([[1, 2]]), 0]]), ctx);
      expect((await store.load('mixed', ctx))?.entries).to.deep.equal([['a', { n: 1 }, 0], ['b', new Map([[1, 2]]), 0]]);
    });
  });

  describe('connection failures', function () {
    it('an unreachable server is StoreUnavailableError within the attempts, naming it without the password', async function () {
      const port = await freePort();
      const store = makeStore({ url: `redis://app:s3cret@127.0.0.1:${port}/0`, retry: { attempts: 2, delayMs: 50 }, connectTimeoutMs: 500 });
      const started = performance.now();
      const error = await rejectionOf(store.has('users'));
      expect(performance.now() - started).to.be.below(2000);
      expect(error).to.be.instanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).code).to.equal('E_STORE_UNAVAILABLE');
      expect((error as StoreUnavailableError).endpoint).to.equal(`redis://127.0.0.1:${port}/0`);
      expect(error.message).to.include('ECONNREFUSED').and.include('2 attempts').and.not.include('s3cret');
    });

    it('a server that accepts connections but never answers times out instead of hanging', async function () {
      const silent = net.createServer(() => undefined);
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const { port } = silent.address() as net.AddressInfo;
      try {
        const store = makeStore({ url: `redis://127.0.0.1:${port}`, retry: { attempts: 2, delayMs: 0 }, connectTimeoutMs: 300 });
        const started = performance.now();
        const error = await rejectionOf(store.load('users', ctx));
        const elapsed = performance.now() - started;
        expect(error).to.be.instanceOf(StoreUnavailableError);
        expect(error.message).to.include('no answer within 300 ms');
        expect(elapsed).to.be.within(550, 2000);
      } finally {
        silent.close();
      }
    });

    it('tries again on the next call, and connects once the server is up', async function () {
      this.timeout(20_000);
      const port = await freePort();
      const store = makeStore({ url: `redis://127.0.0.1:${port}`, retry: { attempts: 1, delayMs: 0 } });
      expect(await rejectionOf(store.has('users'))).to.be.instanceOf(StoreUnavailableError);
      const late = await startRedisServer({ port });
      try {
        expect(await store.has('users')).to.equal(false);
      } finally {
        await store.close();
        await late.stop();
      }
    });

    it('close() closes the connections it opened, and the store stays closed', async function () {
      const clients = (): Promise<number> => connectionsNamed(admin, `cachegraph:ns${namespaces}`);
      const store = makeStore();
      await store.save('users', [['a', 1, 0]], ctx);
      await store.subscribe(() => undefined);
      expect(await clients()).to.equal(2);
      await Promise.all([store.close(), store.close()]);
      await eventually(async () => (await clients()) === 0, 2000, 'disconnection');
      expect(await rejectionOf(store.has('users'))).to.be.instanceOf(ClosedError);
      expect(await rejectionOf(store.publish('x'))).to.be.instanceOf(ClosedError);
      expect(await clients()).to.equal(0);
    });

    it('uses a client given in the options and never closes it', async function () {
      const client = new Redis(server.url, { lazyConnect: true });
      try {
        const store = makeStore({ url: undefined, client } as unknown as Partial<RedisStoreOptions>);
        await store.save('users', [['a', 1, 0]], ctx);
        const received: unknown[] = [];
        await store.subscribe((message) => void received.push(message));
        await store.close();
        expect(client.status).to.equal('ready');
        expect(await client.exists(`cg:ns${namespaces}:{users}:gen`)).to.equal(1);
      } finally {
        client.disconnect();
      }
    });
  });

  describe('a killed and restarted redis-server', function () {
    let crashing: RedisServer;

    before(async function () {
      this.timeout(20_000);
      crashing = await startRedisServer();
    });

    after(async function () {
      await crashing?.stop();
    });

    it('calls fail fast while it is down, and the store recovers by itself afterwards', async function () {
      this.timeout(30_000);
      const store = makeStore({ url: crashing.url });
      await store.save('users', [['a', 1, 0]], ctx);
      await crashing.kill();
      const started = performance.now();
      const errors = await Promise.all([store.has('users'), store.load('users', ctx), store.save('users', [['b', 2, 0]], ctx)].map((call) => rejectionOf(call)));
      expect(performance.now() - started).to.be.below(1000);
      for (const error of errors) expect(error).to.be.instanceOf(StoreUnavailableError);
      await crashing.restart(); // no persistence: an empty server
      await eventually(async () => (await store.has('users')) === false, 10_000, 'reconnection');
      await store.save('users', [['c', 3, 0]], ctx);
      expect((await store.load('users', ctx))?.entries).to.deep.equal([['c', 3, 0]]);
    });

    it('a call waiting on a hung server times out, and one in flight when it dies is rejected', async function () {
      this.timeout(30_000);
      const store = makeStore({ url: crashing.url, commandTimeoutMs: 300 });
      await store.save('users', [['a', 1, 0]], ctx);
      process.kill(crashing.pid, 'SIGSTOP');
      try {
        const started = performance.now();
        const hung = await rejectionOf(store.has('users'));
        expect(performance.now() - started).to.be.within(250, 2000);
        expect(hung).to.be.instanceOf(StoreUnavailableError);
        expect(hung.message).to.match(/timed out/i);
        const inFlight = rejectionOf(store.load('users', ctx));
        await sleep(50);
        await crashing.kill(); // the connection closes with the load unanswered
        expect(await inFlight).to.be.instanceOf(StoreUnavailableError);
      } finally {
        await crashing.restart();
      }
    });

    it('subscriptions are renewed after the restart', async function () {
      this.timeout(30_000);
      const publisher = makeStore({ url: crashing.url });
      const subscriber = makeStore({ url: crashing.url });
      const received: unknown[] = [];
      await subscriber.subscribe((message) => void received.push(message));
      await publisher.publish('before');
      await eventually(async () => received.length === 1, 2000, 'delivery');
      await crashing.kill();
      await crashing.restart();
      await eventually(async () => (await publisher.publish('after')) > 0, 10_000, 'delivery after the restart');
      await eventually(async () => received.includes('after'), 2000, 'receipt after the restart');
      expect(received[0]).to.equal('before');
    });
  });

  describe('#lockKey()', function () {
    const options = { waitMs: 5000, ttlMs: 10_000 };

    it('is exclusive: a second holder waits, with waitMs 0 gives up at once', async function () {
      const [a, b] = [makeStore(), makeStore()];
      const first = await a.lockKey('memo', 'k', options);
      expect(first.lock).to.not.equal(undefined);
      expect(first.waited).to.equal(false);
      expect(await b.lockKey('memo', 'k', { waitMs: 0, ttlMs: 1000 })).to.deep.equal({ lock: undefined, waited: true });
      expect((await b.lockKey('memo', 'other-key', { waitMs: 0, ttlMs: 1000 })).lock).to.not.equal(undefined);
      expect((await b.lockKey('other-cache', 'k', { waitMs: 0, ttlMs: 1000 })).lock).to.not.equal(undefined);
    });

    it('lets one of many contenders in at a time', async function () {
      const contenders = Array.from({ length: 6 }, () => makeStore());
      let inside = 0;
      let most = 0;
      await Promise.all(
        contenders.map(async (store) => {
          for (let round = 0; round < 3; round++) {
            const { lock } = await store.lockKey('memo', 'k', options);
            expect(lock).to.not.equal(undefined);
            inside += 1;
            most = Math.max(most, inside);
            await sleep(5);
            inside -= 1;
            await lock?.release();
          }
        }),
      );
      expect(most).to.equal(1);
    });

    it('is exclusive across processes: three Node processes, one holder at a time', async function () {
      this.timeout(30_000);
      const script = `
        const { RedisStore } = await import(${JSON.stringify(new URL('../../lib/store/redis.ts', import.meta.url).href)});
        const { Redis } = await import('ioredis');
        const [url, namespace] = process.argv.slice(-2);
        const store = new RedisStore({ url, namespace });
        const raw = new Redis(url);
        let overlaps = 0;
        for (let round = 0; round < 15; round++) {
          const { lock } = await store.lockKey('memo', 'k', { waitMs: 20000, ttlMs: 20000 });
          if (lock === undefined) throw new Error('gave up waiting');
          if ((await raw.incr('inside')) !== 1) overlaps += 1;
          await new Promise((resolve) => setTimeout(resolve, 3));
          await raw.decr('inside');
          await lock.release();
        }
        console.log(JSON.stringify({ overlaps }));
        await store.close();
        raw.disconnect();`;
      const run = (): Promise<string> =>
        new Promise((resolve, reject) => {
          const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, server.url, `ns${namespaces}`], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
          child.once('error', reject);
          child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited with ${code}`))));
        });
      const outputs = await Promise.all([run(), run(), run()]);
      expect(outputs.map((out) => JSON.parse(out))).to.deep.equal([{ overlaps: 0 }, { overlaps: 0 }, { overlaps: 0 }]);
    });

    it('a release wakes a waiter at once (pub/sub, not the 250 ms poll)', async function () {
      const [a, b] = [makeStore(), makeStore()];
      const { lock } = await a.lockKey('memo', 'k', options);
      // Counts b's attempts, to release just after one: the next poll is then 250 ms away.
      const calls = sinon.spy(Redis.prototype, 'call');
      const attempts = (): number => calls.getCalls().filter((call) => call.args[0] === 'EVALSHA' && (call.args[1] as unknown as unknown[])[0] === LOCK.sha).length;
      const waiting = b.lockKey('memo', 'k', options).then((result) => ({ result, at: performance.now() }));
      await eventually(async () => attempts() >= 2, 2000, 'the attempt after subscribing');
      await sleep(20);
      const releasedAt = performance.now();
      await lock?.release();
      const { result, at } = await waiting;
      expect(result).to.include({ waited: true });
      expect(result.lock).to.not.equal(undefined);
      expect(at - releasedAt).to.be.below(150);
    });

    it('a holder that never releases makes the waiter give up after waitMs', async function () {
      const [a, b] = [makeStore(), makeStore()];
      await a.lockKey('memo', 'k', options);
      const started = performance.now();
      expect(await b.lockKey('memo', 'k', { waitMs: 300, ttlMs: 1000 })).to.deep.equal({ lock: undefined, waited: true });
      expect(performance.now() - started).to.be.within(290, 1500);
    });

    it('expires after ttlMs: a holder that hangs loses it', async function () {
      const [a, b] = [makeStore(), makeStore()];
      await a.lockKey('memo', 'k', { waitMs: 0, ttlMs: 300 });
      const started = performance.now();
      const { lock, waited } = await b.lockKey('memo', 'k', options);
      expect(waited).to.equal(true);
      expect(lock).to.not.equal(undefined);
      expect(performance.now() - started).to.be.within(200, 1500);
    });

    it('a release removes only its own lock, not the next holder’s', async function () {
      const [a, b, c] = [makeStore(), makeStore(), makeStore()];
      const stale = await a.lockKey('memo', 'k', { waitMs: 0, ttlMs: 150 });
      const next = await b.lockKey('memo', 'k', options);
      expect(next.waited).to.equal(true);
      await stale.lock?.release();
      expect((await c.lockKey('memo', 'k', { waitMs: 0, ttlMs: 1000 })).lock).to.equal(undefined);
      await next.lock?.release();
      await next.lock?.release(); // idempotent
      expect((await c.lockKey('memo', 'k', { waitMs: 0, ttlMs: 1000 })).lock).to.not.equal(undefined);
    });

    it('stops waiting when the signal aborts, and when the store closes', async function () {
      const [a, b, c] = [makeStore(), makeStore(), makeStore()];
      await a.lockKey('memo', 'k', options);
      const controller = new AbortController();
      const aborted = rejectionOf(b.lockKey('memo', 'k', { ...options, signal: controller.signal }));
      const closing = rejectionOf(c.lockKey('memo', 'k', options));
      await sleep(50);
      controller.abort(new Error('no longer needed'));
      expect((await aborted).message).to.equal('no longer needed');
      await c.close();
      expect(await closing).to.be.instanceOf(ClosedError);
    });

    it('close() releases the locks the store holds', async function () {
      const [a, b] = [makeStore(), makeStore()];
      await a.lockKey('memo', 'k', options);
      const waiting = b.lockKey('memo', 'k', options);
      await sleep(50);
      await a.close();
      expect((await waiting).lock).to.not.equal(undefined);
    });
  });

  describe('#publish() / #subscribe()', function () {
    it('delivers to the other stores of the namespace, not to the sender, with the sender’s id', async function () {
      const [a, b, elsewhere] = [makeStore(), makeStore(), makeStore({ namespace: 'another' })];
      const atA: unknown[] = [];
      const atB: [unknown, string][] = [];
      const atElsewhere: unknown[] = [];
      await a.subscribe((message) => void atA.push(message));
      const stop = await b.subscribe((message, { from }) => void atB.push([message, from]));
      await elsewhere.subscribe((message) => void atElsewhere.push(message));
      expect(a.instanceId).to.not.equal(b.instanceId);
      await a.publish({ type: 'invalidated', names: ['users'] });
      await eventually(async () => atB.length === 1, 2000, 'delivery');
      expect(atB[0]).to.deep.equal([{ type: 'invalidated', names: ['users'] }, a.instanceId]);
      await stop();
      await b.publish('from b');
      await eventually(async () => atA.length === 1, 2000, 'delivery to a');
      await a.publish('after unsubscribe');
      await sleep(50);
      expect(atA).to.deep.equal(['from b']);
      expect(atB).to.have.length(1);
      expect(atElsewhere).to.deep.equal([]);
    });

    it('survives a handler that throws and a message that is not JSON', async function () {
      const [a, b] = [makeStore(), makeStore()];
      const received: unknown[] = [];
      await b.subscribe(() => {
        throw new Error('handler bug');
      });
      await b.subscribe(async (message) => {
        received.push(message);
        throw new Error('async handler bug');
      });
      await admin.publish(`cg:ns${namespaces}:bus`, 'not json');
      await a.publish(1);
      await a.publish(2);
      await eventually(async () => received.length === 2, 2000, 'delivery');
      expect(received).to.deep.equal([1, 2]);
    });

    it('refuses a message that is not JSON-serializable', async function () {
      const error = await rejectionOf(makeStore().publish({ n: 1n }));
      expect(error).to.be.instanceOf(InvalidOptionError).with.property('option', 'message');
    });
  });
});
