import { expect } from 'chai';
import sinon from 'sinon';
import {
  AutoSync,
  DEFAULT_AUTOSYNC_RULES,
  autoSyncSchema,
  resolveAutoSync,
  sameAutoSync,
  type AutoSyncRule,
  type ResolvedAutoSync,
  type SyncTarget,
} from '../../lib/sync/autosync.js';
import { systemClock, systemTimers, type TimerHandle } from '../../lib/sync/clock.js';
import { InvalidOptionError } from '../../lib/errors.js';

/** 2030-01-01T00:00:00Z: any fixed epoch will do. */
const T0 = Date.UTC(2030, 0, 1);
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/**
 * A stand-in for a cache: a counter of pending changes that `save()` takes (so writes made
 * during a save count toward the next one, as in the real cache) and gives back on failure.
 */
interface FakeCache extends SyncTarget {
  pending: number;
  readonly save: sinon.SinonSpy<[], Promise<void>>;
  /** Epoch ms at which each save started. */
  readonly saveTimes: number[];
  /** Makes `n` writes, each followed by `changed()`, as the cache does. */
  write(n?: number): void;
  /** The next `n` saves reject (`Infinity`: all of them). */
  failNext(n: number): void;
  /** Saves started from now on wait until `release()`. */
  hold(): void;
  release(): void;
}

describe('AutoSync', () => {
  let clock: sinon.SinonFakeTimers;
  let timers: { setTimeout: sinon.SinonSpy<[() => void, number], TimerHandle>; clearTimeout: sinon.SinonSpy<[TimerHandle], void> };
  let onError: sinon.SinonSpy<[string, unknown], void>;
  let sync: AutoSync;
  let caches: FakeCache[];

  function fakeCache(name: string, rules: ResolvedAutoSync = DEFAULT_AUTOSYNC_RULES, add = true): FakeCache {
    let failures = 0;
    let gate: Promise<void> | undefined;
    let open: (() => void) | undefined;
    const cache: FakeCache = {
      name,
      rules,
      pending: 0,
      saveTimes: [],
      pendingChanges: () => cache.pending,
      save: sinon.spy(async () => {
        cache.saveTimes.push(Date.now());
        const covered = cache.pending;
        cache.pending = 0;
        if (gate !== undefined) await gate;
        if (failures > 0) {
          failures--;
          cache.pending += covered;
          throw new Error(`disk full while saving ${name}`);
        }
      }),
      write(n = 1) {
        for (let i = 0; i < n; i++) {
          cache.pending++;
          sync.changed(name);
        }
      },
      failNext(n) {
        failures = n;
      },
      hold() {
        gate = new Promise((resolve) => {
          open = resolve;
        });
      },
      release() {
        open?.();
        gate = undefined;
      },
    };
    caches.push(cache);
    if (add) sync.add(cache);
    return cache;
  }

  function rules(...pairs: Array<[seconds: number, changes: number]>): AutoSyncRule[] {
    return pairs.map(([seconds, changes]) => ({ seconds, changes }));
  }

  /** Advances fake time to exactly `T0 + ms`. */
  async function tickTo(ms: number): Promise<void> {
    await clock.tickAsync(T0 + ms - Date.now());
  }

  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: T0, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    timers = {
      setTimeout: sinon.spy((fn: () => void, ms: number) => systemTimers.setTimeout(fn, ms)),
      clearTimeout: sinon.spy((handle: TimerHandle) => systemTimers.clearTimeout(handle)),
    };
    onError = sinon.spy((_name: string, _error: unknown): void => undefined);
    sync = new AutoSync({ clock: systemClock, timers, onError });
    caches = [];
  });

  afterEach(async () => {
    for (const cache of caches) cache.release();
    await sync.close();
    // The global afterEach (spec/setup.ts) restores the real timers.
  });

  describe('a rule { seconds: S, changes: C }', () => {
    it('saves nothing while fewer than C changes were made, however long it waits', async () => {
      const cache = fakeCache('c', rules([300, 10]));
      cache.write(9);
      await clock.tickAsync(10 * HOUR);
      expect(cache.save.called).to.equal(false);
      expect(clock.countTimers(), 'no rule can fire with 9 changes: no timer').to.equal(0);
    });

    it('saves nothing until more than S seconds have passed, however many changes were made', async () => {
      const cache = fakeCache('c', rules([300, 10]));
      cache.write(100_000);
      await clock.tickAsync(300 * SECOND);
      expect(cache.save.called).to.equal(false);
    });

    it('saves once both are met, and not one millisecond earlier', async () => {
      const cache = fakeCache('c', rules([300, 10]));
      cache.write(10);
      await clock.tickAsync(300 * SECOND);
      expect(cache.save.called, 'at exactly S seconds').to.equal(false);
      await clock.tickAsync(1);
      expect(cache.save.calledOnce, 'at S seconds + 1 ms').to.equal(true);
      expect(cache.saveTimes).to.deep.equal([T0 + 300 * SECOND + 1]);
      await clock.tickAsync(10 * HOUR);
      expect(cache.save.callCount, 'nothing changed since').to.equal(1);
    });

    it('saves on the write that reaches C when S seconds have already passed', async () => {
      const cache = fakeCache('c', rules([300, 10]));
      await clock.tickAsync(400 * SECOND);
      cache.write(9);
      expect(cache.save.called).to.equal(false);
      cache.write(1);
      expect(cache.save.calledOnce, 'synchronously, within changed()').to.equal(true);
    });

    it('counts time from the registration of the cache', async () => {
      await clock.tickAsync(HOUR);
      const cache = fakeCache('c', rules([900, 1]), false);
      cache.pending = 3; // registered with unsaved (built) contents
      sync.add(cache);
      await tickTo(HOUR + 900 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([T0 + HOUR + 900 * SECOND + 1]);
    });
  });

  describe('default rules', () => {
    it("are Redis' save 60 10000 / save 300 10 / save 900 1", () => {
      expect(DEFAULT_AUTOSYNC_RULES).to.deep.equal(rules([60, 10_000], [300, 10], [900, 1]));
      expect(Object.isFrozen(DEFAULT_AUTOSYNC_RULES)).to.equal(true);
    });

    it('save 10 000 changes just after 60 s', async () => {
      const cache = fakeCache('c');
      cache.write(10_000);
      await clock.tickAsync(60 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([T0 + 60 * SECOND + 1]);
    });

    it('save 10 (to 9 999) changes just after 300 s', async () => {
      const cache = fakeCache('c');
      cache.write(9_999);
      await clock.tickAsync(300 * SECOND);
      expect(cache.save.called, '9 999 changes are not enough for the 60 s rule').to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([T0 + 300 * SECOND + 1]);
    });

    it('save 1 (to 9) changes just after 900 s', async () => {
      const cache = fakeCache('c');
      cache.write(9);
      await clock.tickAsync(900 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([T0 + 900 * SECOND + 1]);
    });
  });

  describe('several rules', () => {
    it('fire at the earliest rule met, which moves earlier as changes arrive', async () => {
      const cache = fakeCache('c', rules([30, 1], [10, 5], [20, 2])); // any order
      cache.write(1);
      expect(sync.stats('c')?.nextDueAt).to.equal(T0 + 30 * SECOND + 1);
      await tickTo(5 * SECOND);
      cache.write(1);
      expect(sync.stats('c')?.nextDueAt).to.equal(T0 + 20 * SECOND + 1);
      await tickTo(7 * SECOND);
      cache.write(3);
      expect(sync.stats('c')).to.include({ nextDueAt: T0 + 10 * SECOND + 1 });
      expect(sync.stats('c')?.dueRule).to.deep.equal({ seconds: 10, changes: 5 });
      await tickTo(10 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([T0 + 10 * SECOND + 1]);
      await clock.tickAsync(HOUR);
      expect(cache.save.callCount).to.equal(1);
    });

    it('are per cache: each cache is saved on its own schedule', async () => {
      const fast = fakeCache('fast', rules([1, 1]));
      const slow = fakeCache('slow');
      const never = fakeCache('never', false);
      fast.write();
      slow.write();
      never.write(100_000);
      await clock.tickAsync(HOUR);
      expect(fast.saveTimes).to.deep.equal([T0 + SECOND + 1]);
      expect(slow.saveTimes).to.deep.equal([T0 + 900 * SECOND + 1]);
      expect(never.save.called).to.equal(false);
    });
  });

  describe('the window', () => {
    it('restarts at each save, and counts only the changes made since', async () => {
      const cache = fakeCache('c', rules([60, 2]));
      cache.write(2);
      await tickTo(60 * SECOND + 1);
      expect(cache.save.callCount).to.equal(1);
      cache.write(1);
      await clock.tickAsync(HOUR);
      expect(cache.save.callCount, 'one change since the save is not enough').to.equal(1);
      cache.write(1);
      expect(cache.save.callCount, 'the second change, more than 60 s after the save').to.equal(2);
      cache.write(2);
      await clock.tickAsync(60 * SECOND);
      expect(cache.save.callCount, 'exactly 60 s after the second save').to.equal(2);
      await clock.tickAsync(1);
      expect(cache.save.callCount).to.equal(3);
    });

    it('counts writes made during a save toward the next one, and saves one at a time', async () => {
      const cache = fakeCache('c', rules([60, 10]));
      cache.write(10);
      cache.hold();
      await tickTo(60 * SECOND + 1);
      expect(cache.save.callCount).to.equal(1);
      cache.write(10); // while the save runs
      expect(cache.pending).to.equal(10);
      await tickTo(130 * SECOND);
      expect(cache.save.callCount, 'no second save while the first is in flight').to.equal(1);
      expect(sync.stats('c')?.saving).to.equal(true);
      cache.release();
      await clock.tickAsync(0); // the save completes at T0 + 130 s: the window restarts there
      expect(sync.stats('c')).to.include({ saving: false, lastSaveAt: T0 + 130 * SECOND, pendingChanges: 10 });
      await tickTo(190 * SECOND);
      expect(cache.save.callCount).to.equal(1);
      await clock.tickAsync(1);
      expect(cache.save.callCount, 'the 10 writes made during the save, 60 s after it completed').to.equal(2);
    });

    it('never runs two automatic saves of a cache at once, even when the next is due', async () => {
      const cache = fakeCache('c', rules([60, 10]));
      cache.write(10);
      cache.hold();
      await tickTo(60 * SECOND + 1);
      sync.saved('c'); // a manual save completed meanwhile: the window restarts at T0 + 60 s
      cache.write(10);
      await tickTo(10 * MINUTE);
      expect(cache.save.callCount, 'the automatic save is still in flight').to.equal(1);
      cache.release();
      await clock.tickAsync(0);
      await tickTo(11 * MINUTE);
      expect(cache.save.callCount).to.equal(1);
      await clock.tickAsync(1);
      expect(cache.save.callCount, '60 s after the in-flight save completed').to.equal(2);
    });

    it('restarts when a manual save is reported through saved()', async () => {
      const cache = fakeCache('c', rules([900, 1]));
      cache.write();
      await tickTo(500 * SECOND);
      cache.pending = 0; // the manager saved it
      sync.saved('c');
      expect(sync.stats('c')).to.include({ lastSaveAt: T0 + 500 * SECOND, nextDueAt: undefined });
      await tickTo(900 * SECOND + 1);
      expect(cache.save.called).to.equal(false);
      cache.write();
      await tickTo(1400 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([T0 + 1400 * SECOND + 1]);
    });
  });

  describe('failures', () => {
    it('are reported, keep the changes, and are retried no sooner than 5 s later', async () => {
      const cache = fakeCache('c', rules([60, 1]));
      cache.failNext(1);
      cache.write(3);
      await tickTo(60 * SECOND + 1);
      expect(cache.save.callCount).to.equal(1);
      expect(onError.calledOnce).to.equal(true);
      expect(onError.firstCall.args[0]).to.equal('c');
      expect(onError.firstCall.args[1]).to.be.instanceOf(Error);
      expect(cache.pending, 'the changes are kept').to.equal(3);
      expect(sync.stats('c')).to.include({ retryAt: T0 + 65 * SECOND + 1, failures: 1, nextDueAt: T0 + 65 * SECOND + 1 });
      cache.write(100); // more writes do not hurry the retry
      await clock.tickAsync(5 * SECOND - 1);
      expect(cache.save.callCount).to.equal(1);
      await clock.tickAsync(1);
      expect(cache.save.callCount).to.equal(2);
      expect(cache.pending).to.equal(0);
      expect(sync.stats('c')).to.include({ retryAt: undefined, failures: 0, lastSaveAt: T0 + 65 * SECOND + 1 });
    });

    it('back off, doubling the delay up to 60 s', async () => {
      const cache = fakeCache('c', rules([60, 1]));
      cache.failNext(Number.POSITIVE_INFINITY);
      cache.write();
      await clock.tickAsync(6 * MINUTE);
      const gaps = cache.saveTimes.slice(1).map((t, i) => t - (cache.saveTimes[i] ?? 0));
      expect(gaps).to.deep.equal([5, 10, 20, 40, 60, 60, 60].map((s) => s * SECOND));
      expect(onError.callCount).to.equal(cache.save.callCount);
    });

    it('honour minRetryMs and maxRetryMs', async () => {
      await sync.close();
      sync = new AutoSync({ clock: systemClock, timers, onError, minRetryMs: 1_000, maxRetryMs: 3_000 });
      const cache = fakeCache('c', rules([1, 1]));
      cache.failNext(Number.POSITIVE_INFINITY);
      cache.write();
      await clock.tickAsync(20 * SECOND);
      const gaps = cache.saveTimes.slice(1).map((t, i) => t - (cache.saveTimes[i] ?? 0));
      expect(gaps.slice(0, 5)).to.deep.equal([1_000, 2_000, 3_000, 3_000, 3_000]);
    });

    it('reset the back-off after a success', async () => {
      const cache = fakeCache('c', rules([60, 1]));
      cache.failNext(3);
      cache.write();
      await clock.tickAsync(10 * MINUTE);
      const first = cache.saveTimes[0] ?? 0;
      expect(cache.saveTimes.map((t) => t - first)).to.deep.equal([0, 5, 15, 35].map((s) => s * SECOND));
      cache.failNext(1);
      cache.write();
      await clock.tickAsync(10 * MINUTE);
      const last = cache.saveTimes[4] ?? 0;
      expect(cache.saveTimes[5]! - last, 'the first retry after a new failure is 5 s again').to.equal(5 * SECOND);
    });

    it('stop being retried once a manual save succeeds', async () => {
      const cache = fakeCache('c', rules([60, 1]));
      cache.failNext(1);
      cache.write();
      await tickTo(60 * SECOND + 1);
      expect(sync.stats('c')?.retryAt).to.be.a('number');
      cache.pending = 0;
      sync.saved('c');
      expect(sync.stats('c')).to.include({ retryAt: undefined, failures: 0 });
      expect(clock.countTimers()).to.equal(0);
      await clock.tickAsync(HOUR);
      expect(cache.save.callCount).to.equal(1);
    });

    it('survive an onError that throws', async () => {
      onError = sinon.spy((_name: string, _error: unknown): void => {
        throw new Error('bad listener');
      });
      await sync.close();
      sync = new AutoSync({ clock: systemClock, timers, onError });
      const cache = fakeCache('c', rules([1, 1]));
      cache.failNext(1);
      cache.write();
      await clock.tickAsync(10 * SECOND);
      expect(cache.save.callCount).to.equal(2);
      expect(onError.calledOnce).to.equal(true);
    });
  });

  describe('clock jumps', () => {
    it('forward by 3 hours fire the due rules once, not in a loop', async () => {
      const cache = fakeCache('c');
      cache.write();
      clock.setSystemTime(T0 + 3 * HOUR);
      cache.write(9);
      expect(cache.save.callCount, 'the 300 s rule is met by the jumped clock').to.equal(1);
      // One write a second for ten minutes: saves are at least 300 s apart.
      for (let i = 0; i < 600; i++) {
        await clock.tickAsync(SECOND);
        cache.write();
      }
      await clock.tickAsync(HOUR);
      const gaps = cache.saveTimes.slice(1).map((t, i) => t - (cache.saveTimes[i] ?? 0));
      expect(cache.save.callCount).to.equal(3);
      for (const gap of gaps) expect(gap).to.be.greaterThan(300 * SECOND);
    });

    it('forward while the timer waits make it fire once', async () => {
      const cache = fakeCache('c');
      cache.write();
      clock.jump(3 * HOUR); // like a suspended process: overdue timers fire once
      await clock.tickAsync(0);
      expect(cache.save.callCount).to.equal(1);
      await clock.tickAsync(3 * HOUR);
      expect(cache.save.callCount).to.equal(1);
      expect(clock.countTimers()).to.equal(0);
    });

    it('back by 3 hours do not stall a save that the timer is waiting for', async () => {
      const cache = fakeCache('c');
      cache.write();
      await tickTo(100 * SECOND);
      clock.setSystemTime(Date.now() - 3 * HOUR);
      await clock.tickAsync(800 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.save.callCount, '900 s + 1 ms of elapsed time after the change, as without the jump').to.equal(1);
      expect(sync.stats('c')?.lastSaveAt).to.equal(T0 - 3 * HOUR + 900 * SECOND + 1);
    });

    it('back by 3 hours noticed by a write restart the window there: the save waits at most S seconds', async () => {
      const cache = fakeCache('c', rules([60, 100]));
      cache.write(50); // not enough for any rule: no timer
      await tickTo(30 * SECOND);
      clock.setSystemTime(Date.now() - 3 * HOUR);
      cache.write(50);
      const jumpedAt = Date.now();
      expect(sync.stats('c')?.nextDueAt).to.equal(jumpedAt + 60 * SECOND + 1);
      await clock.tickAsync(60 * SECOND);
      expect(cache.save.called).to.equal(false);
      await clock.tickAsync(1);
      expect(cache.saveTimes).to.deep.equal([jumpedAt + 60 * SECOND + 1]);
    });
  });

  describe('rules: false', () => {
    it('never saves the cache and arms no timer for it', async () => {
      const cache = fakeCache('c', false);
      cache.write(100_000);
      expect(clock.countTimers()).to.equal(0);
      await clock.tickAsync(10 * HOUR);
      expect(cache.save.called).to.equal(false);
      expect(sync.stats('c')).to.include({ rules: false, pendingChanges: 100_000, nextDueAt: undefined });
    });
  });

  describe('#remove()', () => {
    it('stops saving the cache and disarms the timer', async () => {
      const cache = fakeCache('c');
      cache.write();
      expect(clock.countTimers()).to.equal(1);
      expect(sync.remove('c')).to.equal(true);
      expect(clock.countTimers()).to.equal(0);
      cache.write(100_000);
      await clock.tickAsync(10 * HOUR);
      expect(cache.save.called).to.equal(false);
      expect(sync.remove('c')).to.equal(false);
      expect(sync.stats('c')).to.equal(undefined);
    });

    it('does not retry a save that fails after the removal', async () => {
      const cache = fakeCache('c', rules([1, 1]));
      cache.hold();
      cache.failNext(1);
      cache.write();
      await clock.tickAsync(2 * SECOND);
      sync.remove('c');
      cache.release();
      await clock.tickAsync(HOUR);
      expect(cache.save.callCount).to.equal(1);
      expect(onError.calledOnce, 'the failure is still reported').to.equal(true);
    });

    it('lets a cache be added again under the same name', async () => {
      const old = fakeCache('c', rules([1, 1]));
      const replacement = fakeCache('c', rules([2, 1]), false);
      sync.add(replacement);
      old.write();
      replacement.write();
      await clock.tickAsync(HOUR);
      expect(old.save.called).to.equal(false);
      expect(replacement.saveTimes).to.deep.equal([T0 + 2 * SECOND + 1]);
    });
  });

  describe('#close()', () => {
    it('leaves no timer behind and saves nothing afterwards', async () => {
      const a = fakeCache('a');
      const b = fakeCache('b', rules([1, 1]));
      a.write();
      b.write();
      expect(clock.countTimers()).to.equal(1);
      await sync.close();
      expect(clock.countTimers()).to.equal(0);
      a.write(100_000);
      b.write();
      sync.saved('a');
      sync.add(fakeCache('late', rules([1, 1]), false));
      await clock.tickAsync(10 * HOUR);
      expect(a.save.called || b.save.called).to.equal(false);
      expect(clock.countTimers()).to.equal(0);
      expect(sync.stats('a')?.nextDueAt).to.equal(undefined);
    });

    it('resolves once the automatic saves in flight have settled, and is idempotent', async () => {
      const cache = fakeCache('c', rules([1, 1]));
      cache.hold();
      cache.failNext(1);
      cache.write();
      await clock.tickAsync(2 * SECOND);
      let closed = false;
      const closing = sync.close().then(() => {
        closed = true;
      });
      await clock.tickAsync(HOUR);
      expect(closed).to.equal(false);
      cache.release();
      await closing;
      expect(closed).to.equal(true);
      expect(onError.calledOnce, 'a failure after close() is still reported').to.equal(true);
      expect(clock.countTimers(), 'but not retried').to.equal(0);
      await sync.close();
    });
  });

  describe('timers', () => {
    it('are not armed while no cache has changes', async () => {
      fakeCache('a');
      fakeCache('b', rules([1, 1]));
      await clock.tickAsync(HOUR);
      expect(timers.setTimeout.called).to.equal(false);
      expect(clock.countTimers()).to.equal(0);
    });

    it('are disarmed once every change is saved', async () => {
      const cache = fakeCache('c', rules([1, 1]));
      cache.write();
      expect(clock.countTimers()).to.equal(1);
      await clock.tickAsync(2 * SECOND);
      expect(cache.save.calledOnce).to.equal(true);
      expect(clock.countTimers()).to.equal(0);
    });

    it('are one for all the caches', async () => {
      const all = ['a', 'b', 'c', 'd', 'e'].map((name) => fakeCache(name));
      for (const cache of all) {
        cache.write();
        expect(clock.countTimers()).to.be.at.most(1);
        await clock.tickAsync(7 * SECOND);
      }
      await clock.tickAsync(HOUR);
      for (const cache of all) expect(cache.save.callCount).to.equal(1);
      expect(clock.countTimers()).to.equal(0);
    });

    it('are not re-armed by every write on the hot path', async () => {
      const cache = fakeCache('c');
      for (let i = 0; i < 20_000; i++) cache.write();
      // Once at 1 change (900 s rule), at 10 (300 s rule) and at 10 000 (60 s rule).
      expect(timers.setTimeout.callCount).to.equal(3);
      await clock.tickAsync(60 * SECOND + 1);
      expect(cache.save.calledOnce).to.equal(true);
    });

    it('cost one comparison per write below the next threshold (no clock read, no evaluation)', async () => {
      const now = sinon.spy(() => Date.now());
      await sync.close();
      sync = new AutoSync({ clock: { now }, timers, onError });
      const cache = fakeCache('c');
      const before = now.callCount;
      for (let i = 0; i < 100_000; i++) cache.write();
      // Only the writes that reach 1, 10 and 10 000 changes (a rule's C) read the clock.
      expect(now.callCount - before).to.equal(3);
    });

    it('are never armed in the past', async () => {
      const cache = fakeCache('c', rules([1, 1], [5, 1]));
      cache.failNext(5);
      for (let i = 0; i < 50; i++) {
        cache.write();
        await clock.tickAsync(700);
      }
      clock.jump(3 * HOUR);
      await clock.tickAsync(HOUR);
      for (const call of timers.setTimeout.getCalls()) expect(call.args[1]).to.be.greaterThan(0);
    });
  });

  describe('#stats()', () => {
    it('reports pending changes, the window, the next due time and its rule', async () => {
      const cache = fakeCache('c');
      expect(sync.stats('c')).to.deep.equal({
        rules: DEFAULT_AUTOSYNC_RULES,
        pendingChanges: 0,
        lastSaveAt: undefined,
        windowStart: T0,
        nextDueAt: undefined,
        dueRule: undefined,
        retryAt: undefined,
        failures: 0,
        saving: false,
      });
      cache.write(10);
      expect(sync.stats('c')).to.include({ pendingChanges: 10, nextDueAt: T0 + 300 * SECOND + 1 });
      expect(sync.stats('c')?.dueRule).to.deep.equal({ seconds: 300, changes: 10 });
    });

    it('is undefined for a cache it does not watch', () => {
      expect(sync.stats('nope')).to.equal(undefined);
      sync.changed('nope');
      sync.saved('nope');
    });
  });

  describe('options', () => {
    it('accept false, {} and non-empty rule lists', () => {
      expect(autoSyncSchema.parse(false)).to.equal(false);
      expect(autoSyncSchema.parse({})).to.deep.equal({});
      expect(autoSyncSchema.parse({ rules: [{ seconds: 0.5, changes: 1 }] })).to.deep.equal({ rules: [{ seconds: 0.5, changes: 1 }] });
    });

    it('reject bad rules with the path and the reason', () => {
      const issue = (value: unknown) => {
        const result = autoSyncSchema.safeParse(value);
        expect(result.success, JSON.stringify(value)).to.equal(false);
        const first = result.error?.issues[0];
        return { path: first?.path.join('.'), message: first?.message ?? '' };
      };
      expect(issue(true).message).to.match(/must be false .* or \{ rules/);
      expect(issue({ rules: [] })).to.deep.include({ path: 'rules' });
      expect(issue({ rules: [] }).message).to.match(/at least one rule/);
      expect(issue({ rules: [{ seconds: 0, changes: 1 }] })).to.deep.include({ path: 'rules.0.seconds' });
      expect(issue({ rules: [{ seconds: Number.POSITIVE_INFINITY, changes: 1 }] }).path).to.equal('rules.0.seconds');
      expect(issue({ rules: [{ seconds: '60', changes: 1 }] }).message).to.match(/positive, finite number of seconds/);
      expect(issue({ rules: [{ seconds: 60, changes: 1.5 }] })).to.deep.include({ path: 'rules.0.changes' });
      expect(issue({ rules: [{ seconds: 60, changes: 0 }] }).message).to.match(/positive integer/);
      expect(issue({ rules: [{ seconds: 60, changes: 1, every: 2 }] })).to.deep.include({ path: 'rules.0' });
      expect(issue({ rulez: [] })).to.deep.include({ path: '' });
      expect(issue({ rules: [null] }).message).to.match(/must be a rule \{ seconds, changes \}/);
    });

    it('resolve to rules or false, inheriting when not given', () => {
      const own = rules([10, 1]);
      expect(resolveAutoSync(undefined)).to.equal(DEFAULT_AUTOSYNC_RULES);
      expect(resolveAutoSync(false)).to.equal(false);
      expect(resolveAutoSync({})).to.equal(DEFAULT_AUTOSYNC_RULES);
      expect(resolveAutoSync(undefined, own)).to.equal(own);
      expect(resolveAutoSync({}, own), '{} on a cache: the manager rules').to.equal(own);
      expect(resolveAutoSync({}, false), '{} on a cache of a manager without: the defaults').to.equal(DEFAULT_AUTOSYNC_RULES);
      const resolved = resolveAutoSync({ rules: own });
      expect(resolved).to.deep.equal(own);
      expect(resolved, 'a copy').not.to.equal(own);
      expect(Object.isFrozen(resolved)).to.equal(true);
      expect(sameAutoSync(resolved, resolveAutoSync({ rules: rules([10, 1]) }))).to.equal(true);
      expect(sameAutoSync(resolved, false)).to.equal(false);
      expect(sameAutoSync(false, false)).to.equal(true);
      expect(sameAutoSync(resolved, DEFAULT_AUTOSYNC_RULES)).to.equal(false);
    });

    it('reject retry bounds that make no sense', () => {
      const make = (minRetryMs: number, maxRetryMs?: number) => () =>
        new AutoSync({ clock: systemClock, timers, onError, minRetryMs, ...(maxRetryMs === undefined ? {} : { maxRetryMs }) });
      expect(make(0)).to.throw(InvalidOptionError, /minRetryMs/);
      expect(make(1_000, 500)).to.throw(InvalidOptionError, /maxRetryMs/);
      expect(make(120_000)).not.to.throw();
    });
  });
});
