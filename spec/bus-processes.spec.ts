// The invalidation bus across real Node processes (spec/fixtures/bus-child.ts) on a real
// redis-server: sets, invalidation cascades, a Redis crash and restart mid-run, and single
// flight of a memoized function.
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RedisStore, v8Codec } from '../lib/index.js';
import { startBusChild, type BusChild } from './fixtures/bus-control.js';
import { startRedisServer, type RedisServer } from './fixtures/redis-server.js';

const ctx = { codec: v8Codec, clock: { now: () => Date.now() } };

describe('the invalidation bus across processes', function () {
  this.timeout(60_000);
  let server: RedisServer;
  let dir = '';
  let children: BusChild[] = [];
  let namespace = '';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cg-bus-'));
    // Persistence on, fsync on every write: a restart must keep what was acknowledged.
    server = await startRedisServer({ args: ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'] });
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    children = [];
    namespace = randomUUID();
  });
  afterEach(async () => {
    await Promise.allSettled(children.map((c) => c.stop()));
    // No process saw an unhandled rejection or an uncaught exception.
    for (const child of children) expect(child.events.filter((e) => e.event === 'unhandled')).to.deep.equal([]);
  });

  const start = async (caches: unknown[], autoSync: unknown = false): Promise<BusChild> => {
    const child = await startBusChild();
    children.push(child);
    await child.request('open', { url: server.url, namespace, caches, autoSync });
    return child;
  };

  it('a set in A is visible in B once A has synced', async () => {
    const a = await start([{ name: 'users' }]);
    const b = await start([{ name: 'users' }]);
    await a.request('set', { cache: 'users', entries: [['u1', { name: 'Ada' }]] });
    expect(await b.request('get', { cache: 'users', key: 'u1' })).to.equal(undefined);
    await a.request('save', { cache: 'users' });
    await b.waitFor('cache:refreshed', (p) => p['name'] === 'users');
    expect(await b.request('get', { cache: 'users', key: 'u1' })).to.deep.equal({ name: 'Ada' });
    await a.request('delete', { cache: 'users', key: 'u1' });
    await a.request('save', { cache: 'users' });
    await b.waitFor('cache:refreshed', (p) => p['name'] === 'users' && p['entries'] === 1 && b.events.filter((e) => e.event === 'cache:refreshed').length === 2);
    expect(await b.request('get', { cache: 'users', key: 'u1' })).to.equal(undefined);
  });

  it("an invalidation in A cascades in B, through B's own dependents", async () => {
    const a = await start([{ name: 'users' }, { name: 'stats', dependsOn: ['users'], builder: 'summary' }]);
    await a.request('set', { cache: 'users', entries: [['u1', 1], ['u2', 2]] });
    await a.request('save', { cache: 'users' });
    const b = await start([
      { name: 'users' },
      { name: 'stats', dependsOn: ['users'], builder: 'summary' },
      { name: 'report', dependsOn: ['stats'], builder: 'summary' },
    ]);
    const before = (await b.request<[string, { count: number; pid: number }][]>('entries', { cache: 'report' }))[0]?.[1];
    expect(before).to.include({ count: 1, pid: b.pid });
    const statsBefore = (await b.request<[string, { count: number }][]>('entries', { cache: 'stats' }))[0]?.[1];
    expect(statsBefore).to.include({ count: 2 });

    await a.request('invalidate', { cache: 'users' });
    const report = await b.waitFor('cache:invalidated', (p) => p['name'] === 'report');
    expect(report).to.include({ cause: 'dependency', source: 'users' });
    const causes = b.events.filter((e) => e.event === 'cache:invalidated').map((e) => `${String(e.payload['name'])}:${String(e.payload['cause'])}`);
    expect(causes).to.deep.equal(['users:remote', 'stats:remote', 'report:dependency']);
    await b.waitFor('cache:built', (p) => p['name'] === 'report' && b.events.filter((e) => e.event === 'cache:built' && e.payload['name'] === 'report').length === 2);
    expect(await b.request('entries', { cache: 'users' })).to.deep.equal([]);
    expect((await b.request<[string, { count: number }][]>('entries', { cache: 'stats' }))[0]?.[1]).to.include({ count: 0 });
    // A hears no echo of its own cascade.
    expect(a.events.filter((e) => e.event === 'cache:invalidated').map((e) => e.payload['cause'])).to.deep.equal(['direct', 'dependency']);
  });

  it('Redis killed and restarted mid-run: nothing acknowledged is lost, and both processes recover by themselves', async function () {
    const sync = { rules: [{ seconds: 0.05, changes: 1 }] };
    const a = await start([{ name: 'log', autoSync: sync }], sync);
    const b = await start([{ name: 'log' }]);
    const writing = a.request<number>('write', { cache: 'log', from: 1, to: 300, everyMs: 5 });
    // Let some saves be acknowledged, then crash Redis in the middle of the writes.
    await a.waitFor('acked', (p) => (p['key'] as number) >= 40);
    const ackedBeforeCrash = Math.max(...a.events.filter((e) => e.event === 'acked').map((e) => e.payload['key'] as number));
    await server.kill();
    await new Promise((resolve) => setTimeout(resolve, 400));
    await server.restart();
    const last = await writing;
    expect(last).to.equal(300);

    // A flushes what it could not save during the outage (AutoSync and the reconnection save).
    for (let i = 0; i < 200 && (await a.request<number>('pending', { cache: 'log' })) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await a.request('pending', { cache: 'log' })).to.equal(0);

    // Everything acknowledged before the crash survived it (AOF, fsync always), and now all is saved.
    const reader = new RedisStore({ url: server.url, namespace });
    try {
      const snapshot = await reader.load('log', ctx);
      const keys = new Set(snapshot?.entries.map(([key]) => key as number));
      for (let i = 1; i <= ackedBeforeCrash; i++) expect(keys.has(i), `acknowledged key ${i}`).to.equal(true);
      expect(keys.size).to.equal(300);
    } finally {
      await reader.close();
    }

    // B caught up with everything, though it missed messages while Redis was down.
    let entries: unknown[] = [];
    for (let i = 0; i < 200; i++) {
      entries = await b.request<unknown[]>('entries', { cache: 'log' });
      if (entries.length === 300) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(entries.length).to.equal(300);

    // The outage was reported, but not once per failed save.
    const errors = a.events.filter((e) => e.event === 'error');
    expect(errors.length).to.be.greaterThan(0).and.at.most(3);
    expect(a.events.some((e) => e.event === 'sync:done' && e.payload['reason'] === 'reconnect') || errors.length > 0).to.equal(true);
  });

  it('single flight across processes: a memoized call computes once for two processes', async () => {
    const marker = path.join(dir, `marker-${namespace}`);
    const a = await start([]);
    const b = await start([]);
    type Outcome = { result: { by: number }; stats: { misses: number; waits: number; shared: number } };
    const first = a.request<Outcome>('memo', { arg: 'cell', marker, ms: 800 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const second = b.request<Outcome>('memo', { arg: 'cell', marker, ms: 800 });
    const [ra, rb] = await Promise.all([first, second]);
    expect(rb.result).to.deep.equal(ra.result);
    // Whichever took the lock first (usually A) computed; the other waited and read its result.
    const computed = (await readFile(marker, 'utf8')).trim().split('\n');
    expect(computed).to.deep.equal([`COMPUTE ${ra.result.by}`]);
    expect([a.pid, b.pid]).to.include(ra.result.by);
    const waiter = ra.result.by === a.pid ? rb : ra;
    expect(waiter.stats).to.include({ waits: 1, shared: 1, misses: 0 });
  });
});
