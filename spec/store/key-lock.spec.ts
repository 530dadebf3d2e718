import { expect } from 'chai';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileStore } from '../../lib/index.js';
import { FLIGHTS_DIR } from '../../lib/store/key-lock.js';

describe('FileStore#lockKey() (key locks for single flight across processes)', () => {
  let dir = '';
  let stores: FileStore[] = [];
  const open = (options: { readOnly?: boolean } = {}): FileStore => {
    const store = new FileStore({ dir, ...options });
    stores.push(store);
    return store;
  };
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-keylock-'));
    stores = [];
  });
  afterEach(async () => {
    await Promise.allSettled(stores.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  const options = { waitMs: 2_000, ttlMs: 60_000 };

  it('is exclusive: a second taker waits until the first releases, and knows it waited', async () => {
    const a = open();
    const b = open();
    const first = await a.lockKey('memo', 'k', options);
    expect(first).to.include({ waited: false });
    let secondDone = false;
    const second = b.lockKey('memo', 'k', options).then((r) => ((secondDone = true), r));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(secondDone).to.equal(false);
    await first.lock?.release();
    const got = await second;
    expect(got.waited).to.equal(true);
    expect(got.lock).to.not.equal(undefined);
    await got.lock?.release();
  });

  it('locks keys independently, and removes its folders when released', async () => {
    const store = open();
    const x = await store.lockKey('memo', 'x', options);
    const y = await store.lockKey('memo', 'y', options);
    const other = await store.lockKey('other', 'x', options);
    expect([x.waited, y.waited, other.waited]).to.deep.equal([false, false, false]);
    await Promise.all([x.lock?.release(), y.lock?.release(), other.lock?.release()]);
    await x.lock?.release(); // idempotent
    expect(await readdir(path.join(dir, FLIGHTS_DIR))).to.deep.equal([]);
  });

  it('gives up after waitMs while a live holder keeps it', async () => {
    const store = open();
    const held = await store.lockKey('memo', 'k', options);
    const started = Date.now();
    const late = await open().lockKey('memo', 'k', { waitMs: 150, ttlMs: 60_000 });
    expect(late).to.deep.equal({ lock: undefined, waited: true });
    expect(Date.now() - started).to.be.at.least(140);
    await held.lock?.release();
  });

  it('removes a lock held for longer than ttlMs (a hung holder, or one on another host)', async () => {
    const store = open();
    await store.lockKey('memo', 'k', options); // never released
    const [folder] = await readdir(path.join(dir, FLIGHTS_DIR));
    const lockFile = path.join(dir, FLIGHTS_DIR, folder as string, 'LOCK');
    const past = new Date(Date.now() - 120_000);
    await utimes(lockFile, past, past);
    const started = Date.now();
    const taken = await open().lockKey('memo', 'k', { waitMs: 5_000, ttlMs: 60_000 });
    expect(taken.lock).to.not.equal(undefined);
    expect(Date.now() - started).to.be.below(2_000);
    await taken.lock?.release();
  });

  it('a read-only store takes no locks', async () => {
    const store = open({ readOnly: true });
    expect(await store.lockKey('memo', 'k', options)).to.deep.equal({ lock: undefined, waited: false });
  });

  it('is not listed as a cache', async () => {
    const store = open();
    const held = await store.lockKey('memo', 'k', options);
    expect(await store.list()).to.deep.equal([]);
    await held.lock?.release();
  });
});
