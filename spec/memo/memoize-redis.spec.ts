// Memoization on a RedisStore: every process can write, so two managers (two processes, as far
// as the store can tell: two connections with their own instance ids) share single flight
// through Redis key locks and each other's saved results.
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import sinon from 'sinon';
import { CacheManager, RedisStore } from '../../lib/index.js';
import { startRedisServer, type RedisServer } from '../fixtures/redis-server.js';

describe('memoize on a RedisStore', function () {
  this.timeout(30_000);
  let server: RedisServer;
  let managers: CacheManager[] = [];
  let stores: RedisStore[] = [];
  let namespace = '';

  before(async () => {
    server = await startRedisServer();
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(() => {
    managers = [];
    stores = [];
    namespace = randomUUID();
  });
  afterEach(async () => {
    await Promise.allSettled(managers.map((m) => m.close()));
    // A store given to a manager is the caller's to close.
    await Promise.allSettled(stores.map((s) => s.close()));
  });

  const make = (): CacheManager => {
    const store = new RedisStore({ url: server.url, namespace });
    stores.push(store);
    const manager = new CacheManager({ store, autoSync: false });
    managers.push(manager);
    return manager;
  };

  it('computes once for two managers calling at once: one waits on the key lock and reads the saved result', async () => {
    const a = make();
    const b = make();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const work = sinon.spy(async (x: number) => (await gate, { x, at: Date.now() }));
    const memoA = a.memoize(work, { name: 'work', version: 1 });
    const memoB = b.memoize(work, { name: 'work', version: 1 });
    const first = memoA(7);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = memoB(7);
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    const [ra, rb] = await Promise.all([first, second]);
    expect(rb).to.deep.equal(ra);
    expect(work.callCount).to.equal(1);
    expect(memoB.stats()).to.include({ waits: 1, shared: 1, misses: 0 });
  });

  it('a result saved by one manager is a hit for a manager started later, and a stored error too', async () => {
    const a = make();
    const fn = sinon.spy(async (x: number) => {
      if (x < 0) throw Object.assign(new Error('negative'), { code: 'E_NEG' });
      return x * 2;
    });
    const memoA = a.memoize(fn, { name: 'double', version: 1, cacheErrors: true });
    expect(await memoA(21)).to.equal(42);
    await memoA(-1).catch(() => undefined);
    await a.close();
    const b = make();
    const memoB = b.memoize(fn, { name: 'double', version: 1, cacheErrors: true });
    expect(await memoB(21)).to.equal(42);
    const error = (await memoB(-1).catch((e: unknown) => e)) as Error & { code?: string; cached?: boolean };
    expect(error).to.include({ message: 'negative', code: 'E_NEG', cached: true });
    expect(fn.callCount).to.equal(2);
  });
});
