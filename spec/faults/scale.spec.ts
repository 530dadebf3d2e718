// Scale and a restarted Redis, end to end through the manager:
// - 1 000 000 entries are saved by chunks (no RangeError, no single huge buffer), a later save
//   of 100 changes writes about 100 records, and everything loads back;
// - a redis-server killed under a manager: saves fail with a typed error and keep their
//   changes (AutoSync retries with back-off), no unhandled rejection, and once Redis is back
//   the buffered changes are written and load in a new manager.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheManager, FileStore, RedisStore, StoreUnavailableError, type SyncDoneEvent, type SyncErrorEvent } from '../../lib/index.js';
import { record, rejection } from '../helpers.js';
import { startRedisServer, type RedisServer } from '../fixtures/redis-server.js';
import { runs, SOAK } from '../fixtures/soak.js';

describe('Faults: scale and a restarted Redis', function () {
  this.timeout(SOAK ? 600_000 : 120_000);

  describe('1 000 000 entries and more', function () {
    let root: string;

    before(async function () {
      root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-scale-'));
    });

    after(async function () {
      await rm(root, { recursive: true, force: true });
    });

    const ENTRIES = runs(1_000_000, 3_000_000);
    it(`saves ${ENTRIES.toLocaleString('en')} entries by chunks, then 100 changes as about 100 records, and loads them all back`, async function () {
      const dir = path.join(root, 'million');
      const manager = new CacheManager({ name: 'scale', dir, autoSync: false });
      const cache = await manager.registerCache<number, { id: number; name: string }>('big');
      for (let i = 0; i < ENTRIES; i++) cache.set(i, { id: i, name: `entry ${i}` });
      const done = record<SyncDoneEvent>(manager, 'sync:done');
      await manager.save('big');
      const full = done.at(-1) as SyncDoneEvent;
      expect(full.entries).to.equal(ENTRIES);
      for (let i = 0; i < 100; i++) cache.set(i * 7919, { id: -i, name: 'changed' });
      await manager.save('big');
      const incremental = done.at(-1) as SyncDoneEvent;
      expect(incremental.entries).to.equal(100);
      // Sync cost follows the changes: about 100 records, a tiny share of the full save.
      expect(incremental.bytes).to.be.below(full.bytes / 1000);
      await manager.close();

      const store = new FileStore({ dir, readOnly: true });
      const again = new CacheManager({ name: 'scale-check', store, autoSync: false });
      const loaded = await again.registerCache<number, { id: number; name: string }>('big');
      expect(loaded.size).to.equal(ENTRIES);
      expect(loaded.get(7919)).to.deep.equal({ id: -1, name: 'changed' });
      expect(loaded.get(ENTRIES - 1)).to.deep.equal({ id: ENTRIES - 1, name: `entry ${ENTRIES - 1}` });
      await again.close();
      await store.close();
    });
  });

  describe('a redis-server killed under a manager, then restarted', function () {
    let server: RedisServer;
    let dataDir: string;

    before(async function () {
      this.timeout(20_000);
      // Append-only persistence, so a restarted server still has what was saved before.
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-redis-aof-'));
      server = await startRedisServer({ args: ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dataDir] });
    });

    after(async function () {
      await server?.stop();
      await rm(dataDir, { recursive: true, force: true });
    });

    it('keeps the changes while Redis is down, reports typed errors without an unhandled rejection, and writes them once it is back', async function () {
      this.timeout(60_000);
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      const store = new RedisStore({ url: server.url, namespace: 'restart', retry: { attempts: 1, delayMs: 0 }, connectTimeoutMs: 500, commandTimeoutMs: 1000 });
      const manager = new CacheManager({ store, autoSync: { rules: [{ seconds: 0.05, changes: 1 }] } });
      const errors = record<SyncErrorEvent>(manager, 'sync:error');
      const done = record<SyncDoneEvent>(manager, 'sync:done');
      try {
        const users = await manager.registerCache<string, string>('users');
        users.set('u1', 'Ada');
        await manager.save('users');

        await server.kill();
        users.set('u2', 'Grace');
        users.delete('u1');
        const pending = users.pendingChanges;
        const manual = await rejection(manager.save('users'));
        expect(manual).to.be.instanceOf(StoreUnavailableError);
        expect(users.pendingChanges).to.equal(pending);
        // AutoSync tries too, fails, and schedules a retry rather than a loop.
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(errors.length).to.be.within(1, 3);
        expect(users.stats().retryAt).to.be.a('number');

        await server.restart();
        const deadline = Date.now() + 20_000;
        while (users.pendingChanges > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        // Saved by AutoSync's retry, or at once when the store reported the reconnection
        // (what was saved is checked below, by a new manager).
        expect(users.pendingChanges, `the buffered changes were saved; saves: ${JSON.stringify(done)}`).to.equal(0);
        // A few failed attempts while it was down (retries back off), not a storm.
        expect(errors.length).to.be.below(6);
      } finally {
        await manager.close();
        await store.close();
        process.off('unhandledRejection', onUnhandled);
      }
      expect(unhandled).to.deep.equal([]);

      const reader = new RedisStore({ url: server.url, namespace: 'restart' });
      const check = new CacheManager({ store: reader, autoSync: false });
      try {
        expect([...(await check.registerCache('users'))]).to.deep.equal([['u2', 'Grace']]);
      } finally {
        await check.close();
        await reader.close();
      }
    });
  });
});
