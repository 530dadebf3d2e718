// The manager's invalidation bus on a real redis-server: managers that share a RedisStore
// namespace (each with its own store object, as separate processes have) learn of each
// other's saves, invalidations and deletions. Multi-process versions are in
// spec/bus-processes.spec.ts.
import { expect } from 'chai';
import type { CacheManager, CacheManagerEvents } from '../lib/index.js';
import { useRedisManagers } from './fixtures/redis-managers.js';

type EventName = keyof CacheManagerEvents;
type Payload<E extends EventName> = Parameters<CacheManagerEvents[E]>[0];

/** The next `event` of `manager` that `match` accepts. */
function next<E extends EventName>(manager: CacheManager, event: E, match: (p: Payload<E>) => boolean = () => true, timeoutMs = 5_000): Promise<Payload<E>> {
  return new Promise((resolve, reject) => {
    const listener = ((payload: Payload<E>) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      manager.off(event, listener as never);
      resolve(payload);
    }) as CacheManagerEvents[E];
    const timer = setTimeout(() => {
      manager.off(event, listener as never);
      reject(new Error(`no ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    manager.on(event, listener as never);
  });
}

describe('the invalidation bus (two managers on one Redis namespace)', function () {
  this.timeout(30_000);
  const redis = useRedisManagers();
  const make = redis.make;

  it('a save in A updates the keys B holds, deletes included, without a reload', async () => {
    const a = make();
    const b = make();
    const usersA = await a.registerCache<string, { name: string }>('users');
    usersA.set('u1', { name: 'Ada' });
    usersA.set('u2', { name: 'Grace' });
    await a.save('users');
    const usersB = await b.registerCache<string, { name: string }>('users');
    expect(usersB.get('u1')).to.deep.equal({ name: 'Ada' });

    const loads: string[] = [];
    b.on('cache:loaded', (e) => loads.push(e.name));
    usersA.set('u1', { name: 'Ada Lovelace' });
    usersA.set('u3', { name: 'Barbara' });
    usersA.delete('u2');
    const refreshed = next(b, 'cache:refreshed');
    await a.save('users');
    expect(await refreshed).to.deep.equal({ name: 'users', mode: 'keys', entries: 3, skipped: 0 });
    expect(new Map(usersB)).to.deep.equal(
      new Map([
        ['u1', { name: 'Ada Lovelace' }],
        ['u3', { name: 'Barbara' }],
      ]),
    );
    expect(loads).to.deep.equal([]);
    // Applied as the store's state, not as B's changes: B has nothing to save.
    expect(usersB.pendingChanges).to.equal(0);
    expect(a.stats().bus).to.include({ subscribed: true, received: 0 });
    expect(b.stats().bus).to.include({ subscribed: true, received: 1, ignored: 0 });
  });

  it("keeps B's own unsaved change to a key A saved: B's value is saved next and wins", async () => {
    const a = make();
    const b = make();
    const usersA = await a.registerCache<string, number>('users');
    const usersB = await b.registerCache<string, number>('users');
    usersB.set('shared', 2);
    usersA.set('shared', 1);
    usersA.set('other', 1);
    const refreshed = next(b, 'cache:refreshed');
    await a.save('users');
    expect(await refreshed).to.include({ mode: 'keys', entries: 1, skipped: 1 });
    expect(usersB.get('shared')).to.equal(2);
    expect(usersB.get('other')).to.equal(1);
    const back = next(a, 'cache:refreshed');
    await b.save('users');
    await back;
    expect(usersA.get('shared')).to.equal(2);
  });

  it('a clear, or a batch of keys JSON cannot carry, makes B reload the whole cache', async () => {
    const a = make();
    const b = make();
    const tilesA = await a.registerCache<unknown, string>('tiles');
    tilesA.set('x', 'old');
    await a.save('tiles');
    const tilesB = await b.registerCache<unknown, string>('tiles');

    tilesA.set({ z: 1, x: 2 }, 'object key');
    let refreshed = next(b, 'cache:refreshed');
    await a.save('tiles');
    expect(await refreshed).to.include({ mode: 'reload', entries: 2 });
    expect(tilesB.get('x')).to.equal('old');
    expect([...tilesB.values()]).to.include('object key');

    tilesA.clear();
    tilesA.set('y', 'new');
    refreshed = next(b, 'cache:refreshed');
    await a.save('tiles');
    expect(await refreshed).to.include({ mode: 'reload', entries: 3 }); // two removed, one added
    expect([...tilesB.entries()]).to.deep.equal([['y', 'new']]);
  });

  it("a whole-cache change merges into B at once, keeping B's unsaved changes, which B saves next", async () => {
    const a = make();
    const b = make();
    const logA = await a.registerCache<string, number>('log');
    logA.set('gone', 0);
    await a.save('log');
    const logB = await b.registerCache<string, number>('log');
    logB.set('b', 2);
    logA.clear();
    logA.set('a', 1);
    const merged = next(b, 'cache:refreshed');
    await a.save('log'); // a cleared batch: announced as a whole-cache change
    expect(await merged).to.deep.equal({ name: 'log', mode: 'reload', entries: 2, skipped: 0 });
    expect(new Map(logB)).to.deep.equal(
      new Map([
        ['b', 2],
        ['a', 1],
      ]),
    );
    expect(logB.pendingChanges).to.equal(1);
    const back = next(a, 'cache:refreshed');
    await b.save('log');
    await back;
    expect(logA.get('b')).to.equal(2);
  });

  it("an invalidation in A cascades in B: B's copies are emptied and rebuilt, B's own dependents too, and A hears no echo", async () => {
    const a = make();
    const b = make();
    await a.registerCache<string, number>('users');
    a.getCache('users').set('u1', 1);
    await a.save('users');
    await a.registerCache('stats', { dependsOn: ['users'], builder: ({ manager }) => [['count', manager.getCache('users').size]] });
    await a.save('stats');
    const usersB = await b.registerCache<string, number>('users');
    const statsB = await b.registerCache<string, number>('stats', { dependsOn: ['users'], builder: ({ manager }) => [['count', manager.getCache('users').size]] });
    // Only B knows 'report' (a dependent of stats) and has saved it.
    const reportB = await b.registerCache<string, string>('report', { dependsOn: ['stats'] });
    reportB.set('text', '1 user');
    await b.save('report');
    expect(statsB.get('count')).to.equal(1);
    expect(usersB.get('u1')).to.equal(1);

    const seenB: Array<[string, string, string]> = [];
    b.on('cache:invalidated', (e) => seenB.push([e.name, e.cause, e.source]));
    const seenA: string[] = [];
    a.on('cache:invalidated', (e) => seenA.push(`${e.name}:${e.cause}`));
    const done = next(b, 'cache:invalidated', (e) => e.name === 'report');
    await new Promise((resolve) => setTimeout(resolve, 50)); // B's announcement of its save reaches A
    const receivedByA = a.stats().bus?.received;
    await a.invalidate('users');
    await done;
    expect(seenB).to.deep.equal([
      ['users', 'remote', 'users'],
      ['stats', 'remote', 'users'],
      ['report', 'dependency', 'users'],
    ]);
    expect(usersB.size).to.equal(0);
    expect(statsB.get('count')).to.equal(0);
    expect(reportB.size).to.equal(0);
    // The copy of B's own dependent is gone from the store too, so no one loads it again.
    expect(await redis.stores[1]!.has('report')).to.equal(false);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seenA).to.deep.equal(['users:direct', 'stats:dependency']);
    expect(a.stats().bus?.received).to.equal(receivedByA);
  });

  it('the cascade drops every store copy in one step before any rebuild', async () => {
    const a = make();
    const b = make();
    for (const name of ['users', 'stats', 'report']) {
      const cache = await a.registerCache(name, { dependsOn: name === 'users' ? [] : [name === 'stats' ? 'users' : 'stats'] });
      cache.set('k', name);
      await a.save(name);
    }
    await b.registerCache('users');
    const seen: Array<{ name: string; stored: boolean[] }> = [];
    // B rebuilds 'users' when told: by then every copy of the cascade is gone.
    b.on('cache:invalidated', (e) => {
      void Promise.all(['users', 'stats', 'report'].map((n) => redis.stores[1]!.has(n))).then((stored) => seen.push({ name: e.name, stored }));
    });
    const heard = next(b, 'cache:invalidated');
    await a.invalidate('users');
    await heard;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen[0]).to.deep.equal({ name: 'users', stored: [false, false, false] });
  });

  it("deleteSaved in A makes B's next save write everything, and keeps B's memory", async () => {
    const a = make();
    const b = make();
    const usersA = await a.registerCache<string, number>('users');
    usersA.set('u1', 1);
    usersA.set('u2', 2);
    await a.save('users');
    const usersB = await b.registerCache<string, number>('users');
    const deleted = next(b, 'cache:saved-deleted');
    await a.deleteSaved('users');
    expect(await deleted).to.deep.equal({ name: 'users', cause: 'remote', source: 'users' });
    expect(usersB.size).to.equal(2);
    usersB.set('u3', 3);
    const refreshed = next(a, 'cache:refreshed');
    await b.save('users');
    expect(await refreshed).to.include({ mode: 'reload', entries: 3 });
    const snapshot = await redis.stores[0]!.load('users', { codec: a.codec, clock: { now: () => Date.now() } });
    expect(snapshot?.entries.map(([key]) => key).sort()).to.deep.equal(['u1', 'u2', 'u3']);
  });

  it('a bounded cache refreshes the keys it holds and reads the others through', async () => {
    const a = make();
    const b = make();
    const hotA = await a.registerCache<number, string>('hot', { maxEntries: 2 });
    for (let i = 0; i < 4; i++) hotA.set(i, `v${i}`);
    await a.save('hot');
    const hotB = await b.registerCache<number, string>('hot', { maxEntries: 2 });
    expect([...hotB.keys()]).to.deep.equal([2, 3]);
    hotA.set(0, 'w0');
    hotA.set(3, 'w3');
    const refreshed = next(b, 'cache:refreshed');
    await a.save('hot');
    expect(await refreshed).to.include({ mode: 'keys', entries: 1 });
    expect(hotB.get(3)).to.equal('w3');
    expect(hotB.has(0)).to.equal(false);
    expect(await hotB.fetch(0)).to.equal('w0');
  });

  it('memoized results computed in A are seen by B, and a memo invalidation in A reaches B', async () => {
    const a = make();
    const b = make();
    let calls = 0;
    const square = async (x: number): Promise<number> => (calls++, x * x);
    const memoA = a.memoize(square, { name: 'square', version: 1 });
    const memoB = b.memoize(square, { name: 'square', version: 1 });
    expect(await memoB(3)).to.equal(9); // B registers the memo cache and listens
    expect(await memoA(4)).to.equal(16);
    await a.save('memo');
    expect(await memoB(4)).to.equal(16);
    expect(calls).to.equal(2);
    const refreshed = next(b, 'cache:refreshed');
    await memoA.invalidate(4);
    await a.save('memo');
    await refreshed;
    expect(await memoB(4)).to.equal(16);
    expect(calls).to.equal(3);
  });

  it('getOrBuild builds once for two managers: one holds the store lock and saves, the other waits and reads it', async () => {
    const a = make();
    const b = make();
    const usersA = await a.registerCache<string, { n: number }>('users');
    const usersB = await b.registerCache<string, { n: number }>('users');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let builds = 0;
    const build = async (): Promise<{ n: number }> => (await gate, { n: ++builds });
    const first = usersA.getOrBuild('k', build);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = usersB.getOrBuild('k', build);
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    expect(await Promise.all([first, second])).to.deep.equal([{ n: 1 }, { n: 1 }]);
    expect(builds).to.equal(1);
    // A saved it before unlocking (reason 'flight'); B holds it as the store's value.
    expect(usersA.pendingChanges).to.equal(0);
    expect(usersB.pendingChanges).to.equal(0);
    expect(usersB.get('k')).to.deep.equal({ n: 1 });
  });

  it('getOrBuild with lock: false builds in each manager', async () => {
    const a = make();
    const b = make();
    const usersA = await a.registerCache<string, number>('users', { lock: false });
    const usersB = await b.registerCache<string, number>('users', { lock: false });
    let builds = 0;
    const build = async (): Promise<number> => (await new Promise((resolve) => setTimeout(resolve, 50)), ++builds);
    await Promise.all([usersA.getOrBuild('k', build), usersB.getOrBuild('k', build)]);
    expect(builds).to.equal(2);
  });

  it('bus: false neither announces nor listens', async () => {
    const a = make({ bus: false });
    const b = make();
    const usersA = await a.registerCache<string, number>('users');
    const usersB = await b.registerCache<string, number>('users');
    usersA.set('u1', 1);
    await a.save('users');
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(usersB.has('u1')).to.equal(false);
    expect(a.stats().bus).to.equal(undefined);
    expect(b.stats().bus).to.include({ received: 0 });
  });

  it('ignores messages that are not version-1 bus messages', async () => {
    const b = make();
    await b.registerCache('users');
    const outsider = redis.store();
    await outsider.publish({ v: 2, t: 'invalidated', names: ['users'] });
    await outsider.publish({ v: 1, t: 'saved', name: 'users', keys: [{ not: 'a key' }] });
    await outsider.publish('hello');
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(b.stats().bus).to.include({ received: 0, ignored: 3 });
  });

  it('rate-limits error events while Redis is unreachable, and counts what it held back', async () => {
    let now = 1_000_000;
    const a = make({ clock: { now: () => now } });
    await a.registerCache('scratch', { persistent: false });
    const errors: Array<{ during: string; suppressed: number }> = [];
    a.on('error', (e) => errors.push({ during: e.during, suppressed: e.suppressed }));
    await redis.server.stop();
    try {
      // Each invalidation is announced; each announcement fails.
      for (let i = 0; i < 20; i++) await a.invalidate('scratch');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(errors).to.deep.equal([{ during: 'publish', suppressed: 0 }]);
      now += 5_001;
      await a.invalidate('scratch');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(errors).to.deep.equal([
        { during: 'publish', suppressed: 0 },
        { during: 'publish', suppressed: 19 },
      ]);
      expect(a.stats().bus?.publishErrors).to.equal(21);
    } finally {
      await redis.server.restart();
    }
  });

  it('changes made while Redis is down are saved when it is back, and the other manager catches up', async () => {
    const a = make();
    const b = make();
    const usersA = await a.registerCache<string, number>('users');
    const usersB = await b.registerCache<string, number>('users');
    await redis.server.kill();
    usersA.set('during', 1);
    const failure = await a.save('users').then(
      () => undefined,
      (error: unknown) => error as Error & { code?: string },
    );
    expect(failure?.code).to.equal('E_STORE_UNAVAILABLE');
    expect(usersA.pendingChanges).to.equal(1);
    const flushed = next(a, 'sync:done', (e) => e.reason === 'reconnect');
    const caughtUp = next(b, 'cache:refreshed', (e) => e.name === 'users');
    await redis.server.restart();
    await flushed;
    expect(usersA.pendingChanges).to.equal(0);
    await caughtUp;
    // The first reload may have come before A's flush; the flush's announcement follows it.
    for (let i = 0; i < 50 && !usersB.has('during'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(usersB.get('during')).to.equal(1);
  });
});
