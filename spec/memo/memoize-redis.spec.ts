// Memoization on a RedisStore: every process can write, so two managers (two processes, as far
// as the store can tell: two connections with their own instance ids) share single flight
// through Redis key locks and each other's saved results.
import { expect } from 'chai';
import sinon from 'sinon';
import { useRedisManagers } from '../fixtures/redis-managers.js';

describe('memoize on a RedisStore', function () {
  this.timeout(30_000);
  const make = useRedisManagers().make;

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
