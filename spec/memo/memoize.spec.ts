import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import sinon from 'sinon';
import {
  CacheManager,
  InvalidOptionError,
  MemoKeyError,
  MemoRecursionError,
  type MemoHitEvent,
  type MemoMissEvent,
} from '../../lib/index.js';
import { record, rejection, useManagers } from '../helpers.js';

/** A manager clock the test moves by hand. */
function manualClock(start = 1_700_000_000_000): { now(): number; advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

describe('CacheManager#memoize()', () => {
  const fx = useManagers();

  describe('hits and misses (percache)', () => {
    it('computes once for repeated calls, again for different arguments', async () => {
      const manager = fx.make();
      const add = sinon.spy((a: number, b: number) => a + b);
      const memo = manager.memoize(add, { name: 'add' });
      expect(await memo(1, 2)).to.equal(3);
      expect(await memo(1, 2)).to.equal(3);
      expect(add.callCount).to.equal(1);
      expect(await memo(2, 1)).to.equal(3);
      expect(add.callCount).to.equal(2);
      const stats = memo.stats();
      expect(stats).to.include({ hits: 1, misses: 2, entries: 2, cache: 'memo', name: 'add' });
      expect(stats.computeMs).to.be.at.least(0);
    });

    it('answers the same arguments from the store in a new manager (a restart)', async () => {
      const longTask = sinon.spy(async (a: number, b: number) => ({ sum: a + b }));
      const first = fx.make();
      expect(await first.memoize(longTask, { name: 'longTask' })(1, 2)).to.deep.equal({ sum: 3 });
      await first.close();
      const second = fx.make();
      const again = second.memoize(longTask, { name: 'longTask' });
      expect(await again(1, 2)).to.deep.equal({ sum: 3 });
      expect(longTask.callCount).to.equal(1);
      expect(again.stats()).to.include({ hits: 1, misses: 0 });
    });

    it('treats option objects with the same entries in any order as one call (kwargs order)', async () => {
      const manager = fx.make();
      const search = sinon.spy((query: { text: string; limit: number; tags?: string[] }) => `${query.text}:${query.limit}`);
      const memo = manager.memoize(search, { name: 'search' });
      await memo({ text: 'a', limit: 10 });
      await memo({ limit: 10, text: 'a' });
      expect(search.callCount).to.equal(1);
      await memo({ limit: 10, text: 'a', tags: [] });
      expect(search.callCount).to.equal(2);
    });

    it('keys arguments by type and position: 1 ≠ "1", null ≠ undefined, f(1, 23) ≠ f(12, 3)', async () => {
      const manager = fx.make();
      const echo = sinon.spy((...args: unknown[]) => args.length);
      const memo = manager.memoize(echo, { name: 'echo' });
      const calls: unknown[][] = [[1], ['1'], [null], [undefined], [], [1, 23], [12, 3], ['1,23'], [[1, 23]], [1n], [true]];
      for (const args of calls) await memo(...args);
      expect(echo.callCount).to.equal(calls.length);
      for (const args of calls) await memo(...args);
      expect(echo.callCount).to.equal(calls.length);
    });

    it('keys Maps, Sets, Dates, BigInts and typed arrays by content', async () => {
      const manager = fx.make();
      const fn = sinon.spy((..._args: unknown[]) => 'ok');
      const memo = manager.memoize(fn, { name: 'structured' });
      await memo(new Map([['a', 1], ['b', 2]]), new Set([1, 2]), new Date(5), 10n, new Uint8Array([1, 2]));
      await memo(new Map([['b', 2], ['a', 1]]), new Set([2, 1]), new Date(5), 10n, new Uint8Array([1, 2]));
      expect(fn.callCount).to.equal(1);
      await memo(new Map([['a', 1]]), new Set([1, 2]), new Date(5), 10n, new Uint8Array([1, 2]));
      await memo(new Map([['a', 1], ['b', 2]]), new Set([1, 2]), new Date(6), 10n, new Uint8Array([1, 2]));
      await memo(new Map([['a', 1], ['b', 2]]), new Set([1, 2]), new Date(5), 10n, new Int8Array([1, 2]));
      expect(fn.callCount).to.equal(4);
    });

    it('refuses class instances with a MemoKeyError naming the argument, and takes a key function for them', async () => {
      class Point {
        constructor(
          readonly x: number,
          readonly y: number,
        ) {}
      }
      const manager = fx.make();
      const norm = sinon.spy((p: Point) => Math.hypot(p.x, p.y));
      const plain = manager.memoize(norm, { name: 'norm' });
      const error = await rejection(plain(new Point(3, 4)));
      expect(error).to.be.instanceOf(MemoKeyError);
      expect((error as MemoKeyError).path).to.equal('args[0]');
      expect(norm.called).to.equal(false);
      const keyed = manager.memoize(norm, { name: 'norm2', key: (p: Point) => [p.x, p.y] });
      expect(await keyed(new Point(3, 4))).to.equal(5);
      expect(await keyed(new Point(3, 4))).to.equal(5);
      expect(norm.callCount).to.equal(1);
    });

    it('caches undefined and null results as values', async () => {
      const manager = fx.make();
      const nothing = sinon.spy((x: number) => (x === 0 ? null : undefined));
      const memo = manager.memoize(nothing, { name: 'nothing' });
      expect(await memo(0)).to.equal(null);
      expect(await memo(1)).to.equal(undefined);
      expect(await memo(0)).to.equal(null);
      expect(await memo(1)).to.equal(undefined);
      expect(nothing.callCount).to.equal(2);
    });

    it('passes `this` through to the function and to the key function', async () => {
      const manager = fx.make();
      const greet = manager.memoize(
        function (this: { prefix: string }, name: string) {
          return `${this.prefix} ${name}`;
        },
        {
          name: 'greet',
          key(this: { prefix: string }, name: string) {
            return [this.prefix, name];
          },
        },
      );
      const hello = { prefix: 'hello', greet };
      const hi = { prefix: 'hi', greet };
      expect(await hello.greet('ada')).to.equal('hello ada');
      expect(await hi.greet('ada')).to.equal('hi ada');
    });
  });

  describe('identity and versions', () => {
    it('retires results when the source of the function changes (default version)', async () => {
      const calls: string[] = [];
      const v1 = async (x: number) => {
        calls.push('v1');
        return x + 1;
      };
      const v2 = async (x: number) => {
        calls.push('v2');
        return x + 2;
      };
      const first = fx.make();
      expect(await first.memoize(v1, { name: 'inc' })(1)).to.equal(2);
      await first.close();
      const second = fx.make();
      const edited = second.memoize(v2, { name: 'inc' });
      expect(edited.version).to.not.equal(second.memoize(v1, { name: 'inc-old' }).version);
      expect(await edited(1)).to.equal(3);
      expect(calls).to.deep.equal(['v1', 'v2']);
    });

    it('keeps results across source edits when an explicit version is unchanged, and retires them when it changes', async () => {
      const calls: string[] = [];
      const first = fx.make();
      await first.memoize(async (x: number) => (calls.push('a'), x), { name: 'f', version: 1 })(7);
      await first.close();
      const second = fx.make();
      expect(await second.memoize(async (x: number) => (calls.push('b'), -x), { name: 'f', version: 1 })(7)).to.equal(7);
      expect(await second.memoize(async (x: number) => (calls.push('c'), -x), { name: 'f', version: 2 })(7)).to.equal(-7);
      expect(calls).to.deep.equal(['a', 'c']);
    });

    it('keeps functions with the same name apart in different caches', async () => {
      const manager = fx.make();
      const a = manager.memoize(async () => 'a', { name: 'same', cache: 'one' });
      const b = manager.memoize(async () => 'b', { name: 'same', cache: 'two' });
      expect(await a()).to.equal('a');
      expect(await b()).to.equal('b');
      expect(manager.hasCache('one') && manager.hasCache('two')).to.equal(true);
    });

    it('validates options, naming the culprit', () => {
      const manager = fx.make();
      const f = (x: number) => x;
      expect(() => manager.memoize(f, { ttl: 'soon' as never })).to.throw(InvalidOptionError).with.property('option', 'ttl');
      expect(() => manager.memoize(f, { maxEntries: 0 })).to.throw(InvalidOptionError).with.property('option', 'maxEntries');
      expect(() => manager.memoize(f, { cache: '' })).to.throw(InvalidOptionError).with.property('option', 'cache');
      expect(() => manager.memoize(f, { colour: 'red' } as never)).to.throw(InvalidOptionError).with.property('option', 'colour');
      expect(() => manager.memoize(f, { lock: { wait: -1 } } as never)).to.throw(InvalidOptionError).with.property('option', 'lock');
      expect(() => manager.memoize((() => (x: number) => x)(), {})).to.throw(InvalidOptionError).with.property('option', 'name');
      expect(() => manager.memoize(42 as never)).to.throw(InvalidOptionError).with.property('option', 'fn');
    });
  });

  describe('dependency tracking (the Expr chain of myutil.cache)', () => {
    /** stepA → stepB → proc, plus an unrelated function, memoized on `manager` with the given versions. */
    function pipeline(manager: CacheManager, versions: { stepA: number; stepB: number }) {
      const counts = { stepA: 0, stepB: 0, proc: 0, other: 0 };
      const stepA = manager.memoize(
        async (n: number) => {
          counts.stepA++;
          return { a: n, b: n + 1, c: n + 2 + versions.stepA * 100 };
        },
        { name: 'stepA', version: versions.stepA },
      );
      const stepB = manager.memoize(
        async (n: number, pair: 'ab' | 'bc') => {
          counts.stepB++;
          const base = await stepA(n);
          return pair === 'ab' ? base.a + base.b : base.b + base.c;
        },
        { name: 'stepB', version: versions.stepB },
      );
      const proc = manager.memoize(
        async (n: number) => {
          counts.proc++;
          const [ab, bc] = await Promise.all([stepB(n, 'ab'), stepB(n, 'bc')]);
          return ab + bc;
        },
        { name: 'proc', version: 1 },
      );
      const other = manager.memoize(
        async (n: number) => {
          counts.other++;
          return n * 2;
        },
        { name: 'other', version: 1 },
      );
      return { stepA, stepB, proc, other, counts };
    }

    it('recomputes after a restart exactly what used a function whose version changed', async () => {
      const first = fx.make();
      const before = pipeline(first, { stepA: 1, stepB: 1 });
      expect(await before.proc(1)).to.equal(1 + 2 + (2 + 103));
      await before.other(1);
      expect(before.counts).to.deep.equal({ stepA: 1, stepB: 2, proc: 1, other: 1 });
      await first.close();

      const second = fx.make();
      const same = pipeline(second, { stepA: 1, stepB: 1 });
      expect(await same.proc(1)).to.equal(108);
      await same.other(1);
      expect(same.counts).to.deep.equal({ stepA: 0, stepB: 0, proc: 0, other: 0 });
      await second.close();

      const third = fx.make();
      const changed = pipeline(third, { stepA: 2, stepB: 1 });
      expect(await changed.proc(1)).to.equal(1 + 2 + (2 + 203));
      await changed.other(1);
      expect(changed.counts).to.deep.equal({ stepA: 1, stepB: 2, proc: 1, other: 0 });
    });

    it('keeps upstream results when only a downstream function changes version', async () => {
      const first = fx.make();
      await pipeline(first, { stepA: 1, stepB: 1 }).proc(1);
      await first.close();
      const second = fx.make();
      const changed = pipeline(second, { stepA: 1, stepB: 2 });
      await changed.proc(1);
      expect(changed.counts).to.deep.equal({ stepA: 0, stepB: 2, proc: 1, other: 0 });
    });

    it('invalidates transitively in the same process when an upstream result is invalidated', async () => {
      const manager = fx.make();
      const p = pipeline(manager, { stepA: 1, stepB: 1 });
      await p.proc(1);
      await p.proc(2);
      await p.stepA.invalidate(1);
      await p.proc(1);
      await p.proc(2);
      expect(p.counts).to.deep.equal({ stepA: 3, stepB: 6, proc: 3, other: 0 });
      // The recomputed results are valid again: hits now.
      await p.proc(1);
      expect(p.counts.proc).to.equal(3);
    });

    it('tracks cache entries read with fetch/getOrBuild: a change or delete recomputes the result', async () => {
      const manager = fx.make();
      const users = await manager.registerCache<string, { name: string }>('users');
      users.set('u1', { name: 'Ada' });
      const greet = sinon.spy(async (id: string) => `hello ${(await users.fetch(id))?.name}`);
      const memo = manager.memoize(greet, { name: 'greet' });
      expect(await memo('u1')).to.equal('hello Ada');
      expect(await memo('u1')).to.equal('hello Ada');
      expect(greet.callCount).to.equal(1);
      users.set('u1', { name: 'Grace' });
      expect(await memo('u1')).to.equal('hello Grace');
      expect(greet.callCount).to.equal(2);
      users.set('u2', { name: 'Other' }); // another key: still valid
      expect(await memo('u1')).to.equal('hello Grace');
      expect(greet.callCount).to.equal(2);
      users.delete('u1');
      expect(await memo('u1')).to.equal('hello undefined');
      expect(greet.callCount).to.equal(3);
      await manager.invalidate('users');
      const built = await users.getOrBuild('u1', () => ({ name: 'Built' }));
      expect(built.name).to.equal('Built');
      expect(await memo('u1')).to.equal('hello Built');
      expect(greet.callCount).to.equal(4);
    });

    it('notices after a restart that a cache entry a result read has changed', async () => {
      const first = fx.make();
      const users = await first.registerCache<string, string>('users');
      users.set('u1', 'Ada');
      const greet = sinon.spy(async (id: string) => `hello ${await first.getCache<string, string>('users').fetch(id)}`);
      expect(await first.memoize(greet, { name: 'greet', version: 1 })('u1')).to.equal('hello Ada');
      await first.close();
      const second = fx.make();
      const again = await second.registerCache<string, string>('users');
      const memo = second.memoize(async (id: string) => `hello ${await again.fetch(id)}`, { name: 'greet', version: 1 });
      expect(await memo('u1')).to.equal('hello Ada');
      again.set('u1', 'Grace');
      expect(await memo('u1')).to.equal('hello Grace');
    });

    it('carries the expiry of a dependency down the chain: A → B → an entry with a TTL', async () => {
      const clock = manualClock();
      const manager = fx.make({ clock });
      const rates = await manager.registerCache<string, number>('rates');
      rates.set('usd', 2, { ttl: '10s' });
      const counts = { a: 0, b: 0 };
      const b = manager.memoize(async () => (counts.b++, (await rates.fetch('usd')) ?? 1), { name: 'b' });
      const a = manager.memoize(async () => (counts.a++, (await b()) * 100), { name: 'a' });
      expect(await a()).to.equal(200);
      expect(await a()).to.equal(200);
      clock.advance(11_000); // the rate expired; nothing else changed in the manager
      expect(await a()).to.equal(100);
      expect(counts).to.deep.equal({ a: 2, b: 2 });
    });

    it('refuses a call of itself with the same arguments (E_MEMO_RECURSION) instead of waiting forever', async () => {
      const manager = fx.make();
      const loop: (n: number) => Promise<number> = manager.memoize(async (n: number): Promise<number> => (n > 5 ? loop(n) : n), {
        name: 'loop',
      });
      expect(await rejection(loop(6))).to.be.instanceOf(MemoRecursionError);
      // Recursion on other arguments is fine.
      const fib: (n: number) => Promise<number> = manager.memoize(async (n: number): Promise<number> => (n < 2 ? n : (await fib(n - 1)) + (await fib(n - 2))), {
        name: 'fib',
      });
      expect(await fib(30)).to.equal(832_040);
      expect((fib as unknown as { stats(): { misses: number } }).stats().misses).to.equal(31);
    });
  });

  describe('single flight', () => {
    it('does not store a result whose key was invalidated while it was computed (callers still get it)', async () => {
      const manager = fx.make();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let n = 0;
      const memo = manager.memoize(async () => (await gate, ++n), { name: 'racy' });
      const running = memo();
      await new Promise((resolve) => setTimeout(resolve, 20));
      await memo.invalidate();
      release();
      expect(await running).to.equal(1);
      expect(memo.peek()).to.equal(undefined);
      expect(await memo()).to.equal(2);
    });

    it('shares one computation between two wrappers of one identity', async () => {
      const manager = fx.make({ autoSync: false });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const work = sinon.spy(async (x: number) => (await gate, x));
      const one = manager.memoize(work, { name: 'shared', version: 1, lock: false });
      const two = manager.memoize(work, { name: 'shared', version: 1, lock: false });
      const both = Promise.all([one(1), two(1)]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      release();
      expect(await both).to.deep.equal([1, 1]);
      expect(work.callCount).to.equal(1);
    });

    it('runs one computation for concurrent calls with the same key', async () => {
      const manager = fx.make();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const slow = sinon.spy(async (x: number) => {
        await gate;
        return x * 10;
      });
      const memo = manager.memoize(slow, { name: 'slow' });
      const calls = [memo(1), memo(1), memo(1), memo(2)];
      await new Promise((resolve) => setTimeout(resolve, 20));
      release();
      expect(await Promise.all(calls)).to.deep.equal([10, 10, 10, 20]);
      expect(slow.callCount).to.equal(2);
    });

    it('shares one computation between two managers on one directory (key locks)', async () => {
      const a = fx.make();
      const b = fx.make({ autoSync: false });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const work = sinon.spy(async () => {
        await gate;
        return 'done';
      });
      const first = a.memoize(work, { name: 'work' })();
      await new Promise((resolve) => setTimeout(resolve, 20));
      const memoB = b.memoize(work, { name: 'work' });
      const second = memoB();
      await new Promise((resolve) => setTimeout(resolve, 20));
      release();
      expect(await Promise.all([first, second])).to.deep.equal(['done', 'done']);
      expect(work.callCount).to.equal(1);
      expect(memoB.stats()).to.include({ waits: 1, shared: 1, hits: 1, misses: 0 });
    });

    it('computes alone when the other holder keeps the lock past the wait', async () => {
      const a = fx.make();
      const b = fx.make({ autoSync: false });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const hung = a.memoize(async () => (await gate, 'late'), { name: 'job', version: 1 })();
      await new Promise((resolve) => setTimeout(resolve, 20));
      const impatient = b.memoize(async () => 'alone', { name: 'job', version: 1, lock: { wait: 50 } });
      expect(await impatient()).to.equal('alone');
      expect(impatient.stats()).to.include({ waits: 1, misses: 1 });
      await b.close().catch(() => undefined); // b is not the directory's writer: its save fails
      release();
      expect(await hung).to.equal('late');
    });
  });

  describe('errors', () => {
    it('does not store errors by default: the next call computes again', async () => {
      const manager = fx.make();
      let n = 0;
      const flaky = manager.memoize(
        async () => {
          if (++n === 1) throw new Error('first fails');
          return n;
        },
        { name: 'flaky' },
      );
      expect((await rejection(flaky())).message).to.equal('first fails');
      expect(await flaky()).to.equal(2);
      expect(flaky.stats()).to.include({ errors: 1, misses: 2 });
    });

    it('stores errors with the json codec too (absent fields are left out)', async () => {
      const manager = fx.make({ codec: 'json' });
      const fail = sinon.spy(async () => {
        throw new Error('no code here');
      });
      const memo = manager.memoize(fail, { name: 'json-error', cacheErrors: true });
      await memo().catch(() => undefined);
      const again = (await rejection(memo())) as Error & { cached?: boolean };
      expect(again).to.include({ message: 'no code here', cached: true });
      expect(fail.callCount).to.equal(1);
    });

    it('stores ordinary errors with cacheErrors and throws them again, also after a restart', async () => {
      const fail = sinon.spy(async (ticker: string) => {
        throw Object.assign(new TypeError(`no such ticker ${ticker}`), { code: 'E_TICKER' });
      });
      const first = fx.make();
      const memo = first.memoize(fail, { name: 'quote', cacheErrors: true });
      const e1 = await rejection(memo('XYZ'));
      expect(e1).to.be.instanceOf(TypeError); // the original, to the caller that computed it
      const e2 = (await rejection(memo('XYZ'))) as Error & { code?: string; cached?: boolean };
      expect(e2).to.include({ name: 'TypeError', message: 'no such ticker XYZ', code: 'E_TICKER', cached: true });
      expect(fail.callCount).to.equal(1);
      expect(memo.stats()).to.include({ errorHits: 1 });
      await first.close();
      const second = fx.make();
      const e3 = (await rejection(second.memoize(fail, { name: 'quote', cacheErrors: true })('XYZ'))) as Error & { code?: string };
      expect(e3).to.include({ name: 'TypeError', message: 'no such ticker XYZ', code: 'E_TICKER' });
      expect(fail.callCount).to.equal(1);
    });

    it('never stores aborts, timeouts, system errors or non-Error throws, even with cacheErrors', async () => {
      const manager = fx.make();
      const thrown: unknown[] = [
        new DOMException('stopped', 'AbortError'),
        new DOMException('too slow', 'TimeoutError'),
        Object.assign(new Error('connect ECONNREFUSED'), { errno: -111, syscall: 'connect', code: 'ECONNREFUSED' }),
        'a string',
      ];
      for (const [i, error] of thrown.entries()) {
        const fn = sinon.spy(async () => {
          throw error;
        });
        const memo = manager.memoize(fn, { name: `f${i}`, cacheErrors: true });
        await memo().catch(() => undefined);
        await memo().catch(() => undefined);
        expect(fn.callCount, String(error)).to.equal(2);
      }
    });

    it('lets a predicate choose which errors to store', async () => {
      const manager = fx.make();
      const fn = sinon.spy(async (kind: string) => {
        throw Object.assign(new Error(kind), { permanent: kind === 'gone' });
      });
      const memo = manager.memoize(fn, { name: 'pick', cacheErrors: (e) => (e as { permanent?: boolean }).permanent === true });
      for (const kind of ['gone', 'gone', 'busy', 'busy']) await memo(kind).catch(() => undefined);
      expect(fn.args.map((a) => a[0])).to.deep.equal(['gone', 'busy', 'busy']);
    });
  });

  describe('housekeeping', () => {
    it('expires results after ttl', async () => {
      const clock = manualClock();
      const manager = fx.make({ clock });
      const fn = sinon.spy((x: number) => x);
      const memo = manager.memoize(fn, { name: 'ttl', ttl: '10s' });
      await memo(1);
      clock.advance(9_000);
      await memo(1);
      expect(fn.callCount).to.equal(1);
      clock.advance(2_000);
      await memo(1);
      expect(fn.callCount).to.equal(2);
    });

    it('keeps at most maxEntries results per function, dropping the least recently used', async () => {
      const manager = fx.make();
      const fn = sinon.spy((x: number) => x);
      const memo = manager.memoize(fn, { name: 'bounded', maxEntries: 2 });
      const other = manager.memoize((x: number) => -x, { name: 'neighbour' });
      await other(1);
      await memo(1);
      await memo(2);
      await memo(1); // 1 is now the most recently used
      await memo(3); // drops 2
      expect(memo.stats().entries).to.equal(2);
      expect(memo.peek(2)).to.equal(undefined);
      expect(memo.peek(1)).to.equal(1);
      expect(other.peek(1)).to.equal(-1); // another function's results are not counted
      await memo(2);
      expect(fn.args.map((a) => a[0])).to.deep.equal([1, 2, 3, 2]);
    });

    it('clear({ maxAge }) drops results unused for that long, clear() drops them all (percache)', async () => {
      const clock = manualClock();
      const manager = fx.make({ clock });
      const fn = sinon.spy((x: number) => x);
      const memo = manager.memoize(fn, { name: 'aged' });
      await memo(1);
      await memo(2);
      clock.advance(120_000);
      await memo(2); // used again: its last use moves
      await memo(3);
      expect(await memo.clear({ maxAge: '1m' })).to.equal(1);
      expect(memo.peek(1)).to.equal(undefined);
      expect([memo.peek(2), memo.peek(3)]).to.deep.equal([2, 3]);
      expect(await memo.clear()).to.equal(2);
      expect(memo.stats().entries).to.equal(0);
      expect(await rejection(memo.clear({ maxAge: 'old' as never }))).to.be.instanceOf(InvalidOptionError).with.property('option', 'maxAge');
    });

    it('clear() on a bounded cache also drops results that are evicted and not yet saved', async () => {
      const manager = fx.make({ autoSync: false });
      await manager.registerCache('small', { maxEntries: 2 });
      const memo = manager.memoize((x: number) => x, { name: 'many', cache: 'small', lock: false });
      for (let i = 0; i < 5; i++) await memo(i);
      expect(await memo.clear()).to.equal(5);
      await manager.save('small');
      const fn = sinon.spy((x: number) => x);
      const again = manager.memoize(fn, { name: 'many', cache: 'small', lock: false, version: memo.version });
      for (let i = 0; i < 5; i++) await again(i);
      expect(fn.callCount).to.equal(5);
    });

    it('peek() and stats() see stored results before the first call', async () => {
      const first = fx.make();
      await first.memoize((x: number) => x + 1, { name: 'early' })(1);
      await first.close();
      const second = fx.make();
      await second.registerCache('memo');
      const memo = second.memoize((x: number) => x + 1, { name: 'early' });
      expect(memo.peek(1)).to.equal(2);
      expect(memo.stats().entries).to.equal(1);
    });

    it('clear() drops every version of the function and nothing of a function whose name extends it', async () => {
      const manager = fx.make();
      const v1 = manager.memoize((x: number) => x, { name: 'getUser', version: 1 });
      const v2 = manager.memoize((x: number) => x, { name: 'getUser', version: 2 });
      const users = manager.memoize((x: number) => [x], { name: 'getUsers' });
      await v1(1);
      await v2(1);
      await users(1);
      expect(await v2.clear()).to.equal(2);
      expect(users.peek(1)).to.deep.equal([1]);
    });

    it('invalidate(...args) drops one result; peek reads without computing', async () => {
      const manager = fx.make();
      const fn = sinon.spy((x: number) => x * 2);
      const memo = manager.memoize(fn, { name: 'double' });
      expect(memo.peek(1)).to.equal(undefined);
      await memo(1);
      await memo(2);
      expect(memo.peek(1)).to.equal(2);
      expect(await memo.invalidate(1)).to.equal(true);
      expect(await memo.invalidate(1)).to.equal(false);
      expect(memo.peek(1)).to.equal(undefined);
      expect(memo.peek(2)).to.equal(4);
      await memo(1);
      expect(fn.callCount).to.equal(3);
    });

    it('records the last use at most once a minute, and persists it', async () => {
      const clock = manualClock();
      const first = fx.make({ clock });
      const memo = first.memoize((x: number) => x, { name: 'used' });
      await memo(1);
      const cache = first.getCache('memo');
      const changesAfterCompute = cache.pendingChanges;
      clock.advance(30_000);
      await memo(1);
      expect(cache.pendingChanges).to.equal(changesAfterCompute); // a plain hit writes nothing
      clock.advance(31_000);
      await memo(1);
      expect(cache.pendingChanges).to.equal(changesAfterCompute + 1);
      await first.close();
      const second = fx.make({ clock });
      const again = second.memoize((x: number) => x, { name: 'used' });
      clock.advance(30_000);
      expect(await again.clear({ maxAge: '45s' })).to.equal(0); // used 30 s ago, not 91 s
    });

    it('emits memo:hit and memo:miss', async () => {
      const manager = fx.make();
      const hits = record<MemoHitEvent>(manager, 'memo:hit');
      const misses = record<MemoMissEvent>(manager, 'memo:miss');
      const memo = manager.memoize((x: number) => x, { name: 'ev' });
      await memo(1);
      await memo(1);
      expect(misses).to.have.length(1);
      expect(misses[0]).to.include({ cache: 'memo', name: 'ev', threw: false, cachedError: false, reason: 'absent' });
      expect(hits).to.have.length(1);
      expect(hits[0]).to.include({ cache: 'memo', name: 'ev', source: 'memory' });
      expect(hits[0]?.key).to.equal(misses[0]?.key);
    });

    it('uses a cache the application registered, with its options', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache('prices', { persistent: false });
      const memo = manager.memoize((s: string) => s.length, { name: 'len', cache: 'prices' });
      await memo('abc');
      expect(cache.size).to.equal(1);
    });
  });

  describe('decorator', () => {
    it('memoizes a method, named <Class>.<method>, with `this` available to the key', async () => {
      const manager = fx.make();
      const calls: string[] = [];
      class Quotes {
        constructor(readonly market: string) {}

        @manager.memoized({
          key(this: Quotes, symbol: string) {
            return [this.market, symbol];
          },
        })
        async price(symbol: string): Promise<string> {
          calls.push(`${this.market}:${symbol}`);
          return `${this.market}:${symbol}:42`;
        }
      }
      const nyse = new Quotes('NYSE');
      const lse = new Quotes('LSE');
      expect(await nyse.price('AAPL')).to.equal('NYSE:AAPL:42');
      expect(await nyse.price('AAPL')).to.equal('NYSE:AAPL:42');
      expect(await lse.price('AAPL')).to.equal('LSE:AAPL:42');
      expect(calls).to.deep.equal(['NYSE:AAPL', 'LSE:AAPL']);
      const keys = [...manager.getCache<string, unknown>('memo').keys()];
      expect(keys.every((k) => k.startsWith('memo/Quotes.price@'))).to.equal(true);
    });

    it('names the method after the class declaring it, even when a subclass calls first', async () => {
      const manager = fx.make();
      class Base {
        @manager.memoized()
        async answer(): Promise<number> {
          return 42;
        }
      }
      class Derived extends Base {}
      expect(await new Derived().answer()).to.equal(42);
      expect([...manager.getCache<string, unknown>('memo').keys()][0]?.startsWith('memo/Base.answer@')).to.equal(true);
    });
  });

  describe('across processes (FileStore)', function () {
    this.timeout(60_000);
    const child = path.join(import.meta.dirname, '..', 'fixtures', 'memo-child.ts');

    function start(dir: string, mode: 'value' | 'error', marker: string) {
      const proc = spawn(process.execPath, ['--import', 'tsx', child, dir, mode, marker], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<{ out: string; err: string; code: number | null }>((resolve) =>
        proc.on('exit', (code) => resolve({ out, err, code })),
      );
      const computing = new Promise<void>((resolve, reject) => {
        const check = () => (out.includes('COMPUTING') ? resolve() : undefined);
        proc.stdout.on('data', check);
        proc.on('exit', () => reject(new Error(`child exited before computing: ${out} ${err}`)));
      });
      return { exited, computing };
    }

    function line(out: string, tag: string): unknown {
      const found = out.split('\n').find((l) => l.startsWith(`${tag} `));
      if (found === undefined) throw new Error(`no ${tag} line in: ${out}`);
      return JSON.parse(found.slice(tag.length + 1));
    }

    it('two processes started 1 s apart compute once; the second waits and reuses the result', async () => {
      const marker = path.join(fx.dir, 'marker.txt');
      const a = start(fx.dir, 'value', marker);
      await a.computing;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const b = start(fx.dir, 'value', marker);
      const [ra, rb] = await Promise.all([a.exited, b.exited]);
      expect(ra.code, ra.err).to.equal(0);
      expect(rb.code, rb.err).to.equal(0);
      const computed = (await readFile(marker, 'utf8')).trim().split('\n');
      expect(computed).to.have.length(1);
      expect(line(ra.out, 'RESULT')).to.deep.equal(line(rb.out, 'RESULT'));
      expect(line(rb.out, 'STATS')).to.include({ waits: 1, shared: 1, misses: 0 });
    });

    it('a stored error is thrown in both processes, computed once', async () => {
      const marker = path.join(fx.dir, 'marker.txt');
      const a = start(fx.dir, 'error', marker);
      await a.computing;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const b = start(fx.dir, 'error', marker);
      const [ra, rb] = await Promise.all([a.exited, b.exited]);
      expect(ra.code, ra.err).to.equal(0);
      expect(rb.code, rb.err).to.equal(0);
      expect((await readFile(marker, 'utf8')).trim().split('\n')).to.have.length(1);
      const thrownA = line(ra.out, 'THROWN') as { message: string; code: string };
      const thrownB = line(rb.out, 'THROWN') as { message: string; code: string; cached: boolean };
      expect(thrownB).to.include({ message: thrownA.message, code: 'E_TASK', cached: true });
      // And a third process, later, gets it from the store without waiting.
      const c = start(fx.dir, 'error', marker);
      const rc = await c.exited;
      expect(line(rc.out, 'THROWN')).to.include({ code: 'E_TASK', cached: true });
      expect((await readFile(marker, 'utf8')).trim().split('\n')).to.have.length(1);
    });
  });
});
