// Two processes writing one store directory: the directory lock lets exactly one write and
// refuses the other with E_LOCKED; a lock left by a writer killed with SIGKILL is taken
// over (by exactly one of several contenders) and reported as a 'stale-lock' warning.
import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheManager, FileStore, LockedError, systemClock, v8Codec, type StoreWarning } from '../../lib/index.js';
import { rejection } from '../helpers.js';
import { faultSeed, killAllWriters, WriterChild } from '../fixtures/fault-helpers.js';
import { CACHE_NAME, digest, statesOf, Workload, type ModelValue } from '../fixtures/fault-model.js';

const seed = faultSeed();
const RACES = Number(process.env['CACHEGRAPH_LOCK_RACES'] ?? 6);

/** What a read-only store loads from `dir`. */
async function persisted(dir: string): Promise<Map<unknown, unknown> | undefined> {
  const reader = new FileStore({ dir, readOnly: true });
  const manager = new CacheManager({ name: 'lock-check', store: reader, autoSync: false });
  try {
    const cache = await manager.registerCache(CACHE_NAME);
    return new Map(cache);
  } finally {
    await manager.close();
    await reader.close();
  }
}

/** Rounds a busy machine may spoil (a racer woken late) before the spec gives up. */
const LATE_RETRIES = 5;

/**
 * Starts two racers on `dir` that save at the same instant; resolves with their outcomes and
 * the directory they raced in. A round where a racer woke up late was no race (a busy
 * machine scheduled it late): its racers are killed and the round is run again, up to
 * {@link LATE_RETRIES} times: in a fresh directory (`fresh`), or in the same one, where the
 * killed winner has left a stale lock (for the stale-lock races).
 */
async function race(dir: string, round: number, fresh: boolean): Promise<{ racers: WriterChild[]; outcomes: string[]; dir: string }> {
  for (let attempt = 0; ; attempt++) {
    const where = attempt === 0 || !fresh ? dir : `${dir}-again-${attempt}`;
    const racers = ['left', 'right'].map((tag) => new WriterChild(where, seed, { mode: 'race', tag: `${tag}-${round}` }, 'pipe'));
    // Once both are ready, both save at the same instant.
    await Promise.all(racers.map((r) => r.waitFor((line) => line.startsWith('READY') || line.startsWith('ERROR'))));
    const at = Date.now() + 25;
    for (const racer of racers) racer.process.stdin?.write(`GO ${at}\n`);
    const outcomes = await Promise.all(racers.map((r) => r.waitFor((line) => /^(SAVED|LOCKED|ERROR)/.test(line))));
    const late = racers.flatMap((r) => r.lines.filter((line) => line.startsWith('LATE')));
    if (late.length === 0) return { racers, outcomes, dir: where };
    if (attempt >= LATE_RETRIES) expect(late, `round ${round}: a racer started late ${attempt + 1} times, so this was no race`).to.deep.equal([]);
    for (const racer of racers) racer.process.kill('SIGKILL');
  }
}

describe('Faults: two processes and one directory', function () {
  // The soak raises the count of races (CACHEGRAPH_LOCK_RACES).
  this.timeout(Math.max(60_000, RACES * 8_000));
  let root: string;

  beforeEach(async function () {
    root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-lock-'));
  });

  afterEach(async function () {
    killAllWriters();
    await rm(root, { recursive: true, force: true });
  });

  it(`two writers racing for the lock (${RACES} races): exactly one writes, the other gets E_LOCKED, and the winner's data is what loads`, async function () {
    const tally = { left: 0, right: 0 };
    for (let round = 0; round < RACES; round++) {
      const { racers, outcomes, dir } = await race(path.join(root, `race-${round}`), round, true);
      const where = `round ${round}: ${outcomes.join(' / ')}; stderr: ${racers.map((r) => r.stderr.slice(-500)).join(' | ')}`;
      expect(outcomes.filter((o) => o === 'SAVED'), where).to.have.length(1);
      expect(outcomes.filter((o) => o === 'LOCKED E_LOCKED'), where).to.have.length(1);
      const winner = outcomes.indexOf('SAVED');
      tally[winner === 0 ? 'left' : 'right']++;
      // While the winner holds the lock, a third writer is refused too, naming the holder...
      const store = new FileStore({ dir, compaction: false });
      const manager = new CacheManager({ name: 'third', store, autoSync: false });
      const cache = await manager.registerCache<string, string>(CACHE_NAME);
      // ...though it can read (reads take no lock).
      expect(cache.get('winner'), where).to.equal(`${winner === 0 ? 'left' : 'right'}-${round}`);
      cache.set('third', 'writer');
      const refused = await rejection(manager.save(CACHE_NAME));
      expect(refused, where).to.be.instanceOf(LockedError);
      expect((refused as LockedError).ownerPid, where).to.equal(racers[winner]?.pid);
      await manager.reload(CACHE_NAME);
      await manager.close();
      await store.close();
      // The winner releases the lock when it exits.
      for (const racer of racers) racer.process.stdin?.end();
      const exits = await Promise.all(racers.map((r) => r.exited));
      expect(exits.map((e) => e.code), where).to.deep.equal([0, 0]);
      expect(await persisted(dir), where).to.deep.equal(new Map([['winner', `${winner === 0 ? 'left' : 'right'}-${round}`]]));
      // No lock left behind, and the next writer gets it at once.
      await expectNoLockFile(dir, where);
    }
    console.log(`      lock races: ${RACES} rounds, exactly one writer each time (left won ${tally.left}, right ${tally.right})`);
  });

  for (const readOnly of [true, false]) {
    it(`a ${readOnly ? 'read-only' : 'writable'} store loading while another process ${readOnly ? 'appends and writes snapshots' : 'appends and compacts'}: every load is an acknowledged state${readOnly ? '' : ', and it never cuts the writer\'s batches'}`, async function () {
      const dir = path.join(root, `reader-${readOnly}`);
      // The read-only reader faces appends and full snapshots; the writable one, compactions.
      const writer = new WriterChild(dir, seed, readOnly ? { mode: 'sync', snapshotEvery: 5 } : { mode: 'compact', compactEvery: 4 });
      await writer.waitFor((line) => line.startsWith('ACK 1 '));
      const workload = new Workload(seed);
      const warnings: StoreWarning[] = [];
      const outcomes = { loads: 0, errors: 0, duringCompaction: 0 };
      const deadline = Date.now() + 2000;
      while (Date.now() < deadline) {
        const from = writer.lastAck();
        const begun = (prefix: string): boolean => writer.lines.filter((l) => l.startsWith(`${prefix}-BEGIN`)).length > writer.lines.filter((l) => l.startsWith(`${prefix}-END`)).length;
        const compacting = begun('COMPACT') || begun('SNAPSHOT');
        const loaded = await loadOnce(dir, readOnly, warnings);
        const to = writer.lastAck();
        const states = statesOf(workload, to + 1);
        const digests = states.slice(from, to + 2).map((state) => digest(state));
        expect(digests, `load between ACK ${from} and ${to}: ${loaded?.size} entries (seed ${seed})`).to.include(digest(loaded ?? []));
        outcomes.loads++;
        if (compacting) outcomes.duringCompaction++;
      }
      await writer.kill();
      expect(writer.lines.filter((l) => l.startsWith('ERROR')), writer.stderr).to.deep.equal([]);
      // The writer never saw its own segment change under it.
      expect(writer.lines.filter((l) => l.startsWith('WARN torn-tail'))).to.deep.equal([]);
      console.log(`      ${readOnly ? 'read-only' : 'writable'} reader: ${outcomes.loads} loads during ${writer.lastAck()} saves (${outcomes.duringCompaction} begun during an explicit ${readOnly ? 'snapshot' : 'compaction'}), torn-tail warnings: ${warnings.filter((w) => w.kind === 'torn-tail').length}`);
      expect(outcomes.loads).to.be.greaterThan(10);
    });
  }

  it('a lock left by a writer killed with SIGKILL is taken over by the next writer, with a stale-lock warning', async function () {
    const dir = path.join(root, 'stale');
    const victim = new WriterChild(dir, seed, { mode: 'sync' });
    await victim.waitFor((line) => line.startsWith('ACK 5 '));
    await victim.kill();
    const lastAck = victim.lastAck();
    const lockBefore = JSON.parse(await readFile(path.join(dir, 'LOCK'), 'utf8')) as { pid: number };
    expect(lockBefore.pid, 'the dead writer left its lock').to.equal(victim.pid);

    const store = new FileStore({ dir, appendfsync: 'always', compaction: false });
    const manager = new CacheManager({ name: 'successor', store, autoSync: false });
    const warnings: StoreWarning[] = [];
    manager.on('store:warning', (w) => warnings.push(w));
    try {
      const cache = await manager.registerCache<string, ModelValue>(CACHE_NAME);
      const states = statesOf(new Workload(seed), lastAck + 1);
      expect([digest(states[lastAck] ?? []), digest(states[lastAck + 1] ?? [])]).to.include(digest(cache));
      cache.set('successor', { n: 1, step: 0, pad: '' });
      await manager.save(CACHE_NAME);
      const stale = warnings.filter((w) => w.kind === 'stale-lock');
      expect(stale).to.have.length(1);
      expect(stale[0]?.path).to.equal(path.join(dir, 'LOCK'));
      expect(stale[0]?.message).to.contain(String(victim.pid));
      const lockAfter = JSON.parse(await readFile(path.join(dir, 'LOCK'), 'utf8')) as { pid: number };
      expect(lockAfter.pid).to.equal(process.pid);
    } finally {
      await manager.close();
      await store.close();
    }
    await expectNoLockFile(dir, 'after close()');
  });

  it('a stale lock taken over by a deleteSaved() (the first write being a delete) is reported too', async function () {
    const dir = path.join(root, 'stale-delete');
    const victim = new WriterChild(dir, seed, { mode: 'sync' });
    await victim.waitFor((line) => line.startsWith('ACK 2 '));
    await victim.kill();
    const store = new FileStore({ dir, appendfsync: 'always', compaction: false });
    const manager = new CacheManager({ name: 'deleter', store, autoSync: false });
    const warnings: StoreWarning[] = [];
    manager.on('store:warning', (w) => warnings.push(w));
    try {
      await manager.registerCache(CACHE_NAME);
      await manager.deleteSaved(CACHE_NAME);
      expect(await store.has(CACHE_NAME)).to.equal(false);
      const stale = warnings.filter((w) => w.kind === 'stale-lock');
      expect(stale).to.have.length(1);
      expect(stale[0]?.message).to.contain(String(victim.pid));
    } finally {
      await manager.close();
      await store.close();
    }
  });

  it('a stale lock with two contenders: exactly one takes it over (and warns), the other gets E_LOCKED', async function () {
    for (let round = 0; round < 3; round++) {
      const dir = path.join(root, `stale-race-${round}`);
      const victim = new WriterChild(dir, seed + round, { mode: 'sync' });
      await victim.waitFor((line) => line.startsWith('ACK 3 '));
      await victim.kill();
      const { racers, outcomes } = await race(dir, round, false);
      const where = `round ${round}: ${outcomes.join(' / ')}`;
      expect(outcomes.filter((o) => o === 'SAVED'), where).to.have.length(1);
      expect(outcomes.filter((o) => o === 'LOCKED E_LOCKED'), where).to.have.length(1);
      const winner = racers[outcomes.indexOf('SAVED')] as WriterChild;
      for (const racer of racers) racer.process.stdin?.end();
      await Promise.all(racers.map((r) => r.exited));
      expect(winner.lines, where).to.include('WARN stale-lock');
      const loaded = await persisted(dir);
      expect(loaded?.get('winner'), where).to.match(new RegExp(`^(left|right)-${round}$`));
      await expectNoLockFile(dir, where);
    }
  });
});

/** Loads through a new store each time (as another process would), returning the contents. */
async function loadOnce(dir: string, readOnly: boolean, warnings: StoreWarning[]): Promise<Map<string, ModelValue> | undefined> {
  const store = new FileStore({ dir, readOnly, compaction: false });
  try {
    const loaded = await store.load(CACHE_NAME, { codec: v8Codec, clock: systemClock, warn: (w) => warnings.push(w) });
    return loaded === undefined ? undefined : new Map(loaded.entries.map(([k, v]) => [k as string, v as ModelValue]));
  } finally {
    await store.close();
  }
}

async function expectNoLockFile(dir: string, where: string): Promise<void> {
  const lock = await readFile(path.join(dir, 'LOCK'), 'utf8').catch(() => undefined);
  expect(lock, `${where}: LOCK still there`).to.equal(undefined);
}
