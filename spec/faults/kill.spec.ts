// kill -9 of a writer process at random moments, during syncs, full snapshots and
// compactions: what a new manager loads is always the last acknowledged state (or the one
// after it: a save can be durable before its ACK line is printed), never an error, never
// anything else; what the crash left behind does not matter; the next save works.
//
// Each lane is one directory that crash after crash keeps its files: every run starts a
// child writer (spec/fixtures/writer-child.ts) on the state the previous run verified, kills
// it, checks the reload against the model (spec/fixtures/fault-model.ts), saves once more,
// and checks that too. Two lanes run at once (children start in ~0.4 s under tsx).
import { expect } from 'chai';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheManager, FileStore, type StoreWarning } from '../../lib/index.js';
import { debrisOf, faultSeed, killAllWriters, randomInt, WriterChild } from '../fixtures/fault-helpers.js';
import { CACHE_NAME, digest, seededRandom, statesOf, Workload, type ChildOptions, type ModelValue, type WorkloadOptions } from '../fixtures/fault-model.js';

/** Kills per mode, over all lanes (the issue asks for at least 50 each). */
const RUNS_PER_MODE = Number(process.env['CACHEGRAPH_KILL_RUNS'] ?? 52);
const LANES = 2;

type Mode = 'sync' | 'compact';

interface RunRecord {
  readonly mode: Mode;
  readonly lane: number;
  readonly run: number;
  readonly seed: number;
  /** Where the kill was aimed. */
  readonly aim: string;
  /** What the child was doing when it died, from its last marker line. */
  readonly phase: 'save' | 'snapshot' | 'compaction';
  readonly lastAck: number;
  /** Which state loaded: the last acknowledged one, or the one after. */
  readonly loaded: 'ack' | 'ack+1';
  readonly warnings: readonly string[];
  readonly tempFiles: number;
  readonly orphanFiles: number;
  /** Segments in the manifest the crash left: more than one means a compaction was under way. */
  readonly segments: number;
  /** Whether the child left its directory lock behind (it had written to the store). */
  readonly lockLeft: boolean;
}

const records: RunRecord[] = [];
const seed = faultSeed();

function storeOn(dir: string): FileStore {
  return new FileStore({ dir, appendfsync: 'always', compaction: false });
}

/** The phase the child was in when it died, from its last BEGIN/END marker. */
function phaseOf(lines: readonly string[]): RunRecord['phase'] {
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] ?? '';
    if (line.startsWith('SNAPSHOT-BEGIN')) return 'snapshot';
    if (line.startsWith('COMPACT-BEGIN')) return 'compaction';
    if (line.startsWith('SNAPSHOT-END') || line.startsWith('COMPACT-END') || line.startsWith('ACK')) return 'save';
  }
  return 'save';
}

function describeMap(map: ReadonlyMap<string, ModelValue>): string {
  return `${map.size} entries, digest ${digest(map)}`;
}

interface Plan {
  readonly runSeed: number;
  readonly random: () => number;
  readonly options: ChildOptions;
  readonly workload: WorkloadOptions;
}

function plan(mode: Mode, lane: number, run: number): Plan {
  const runSeed = (seed + lane * 100_003 + run * 7919 + (mode === 'compact' ? 1_000_000 : 0)) >>> 0;
  const random = seededRandom(runSeed ^ 0x5bd1e995);
  // Lane 1 writes values ten times larger: batches and snapshots of a few hundred KiB, which
  // take longer (and several write calls), so more kills land inside one. (A torn tail by
  // kill -9 stays rare: what write() handed to the kernel survives the process; the
  // truncation specs in damage.spec.ts cover torn tails.)
  const workload: WorkloadOptions = lane === 1 ? { maxPad: 4000 } : {};
  const options: ChildOptions =
    mode === 'sync'
      ? { mode, workload, snapshotEvery: randomInt(random, 4, 9), waitForGo: true }
      : { mode, workload, compactEvery: randomInt(random, 2, 4), waitForGo: true };
  return { runSeed, random, options, workload };
}

/**
 * One crash: let the child (started ahead of time, waiting for GO) write on `dir`, kill it,
 * check the reload, save once more.
 */
async function crashOnce(mode: Mode, lane: number, run: number, dir: string, base: Map<string, ModelValue>, child: WriterChild, { runSeed, random, workload: shape }: Plan): Promise<Map<string, ModelValue>> {
  child.process.stdin?.write('GO\n');
  const context = (): string =>
    `${mode} lane ${lane} run ${run} (CACHEGRAPH_FAULT_SEED=${seed}, child seed ${runSeed}); child said: ${child.lines.slice(-6).join(' | ')}; stderr: ${child.stderr.slice(-1500)}`;
  let aim: string;
  try {
    const ready = await child.waitFor((line) => line.startsWith('READY') || line.startsWith('ERROR'));
    expect(ready, context()).to.equal(`READY ${child.pid} ${digest(base)}`);

    // Where to aim: after some ACKs (the kill then lands in a save, or in the background
    // compaction after it), or after a snapshot / compaction begins.
    const target = randomInt(random, 1, mode === 'sync' ? 40 : 8);
    const delay = random() * (mode === 'sync' ? 4 : 6);
    const roll = random();
    if (mode === 'sync' && roll < 0.3) {
      const k = randomInt(random, 1, 3);
      aim = `snapshot #${k} + ${delay.toFixed(1)} ms`;
      let seen = 0;
      await child.waitFor((line) => (line.startsWith('SNAPSHOT-BEGIN') ? ++seen === k : false) || line.startsWith('ERROR'));
    } else if (mode === 'compact' && roll < 0.5) {
      const k = randomInt(random, 1, 2);
      const late = random() * 250;
      aim = `compaction #${k} + ${late.toFixed(0)} ms`;
      let seen = 0;
      await child.waitFor((line) => (line.startsWith('COMPACT-BEGIN') ? ++seen === k : false) || line.startsWith('ERROR'));
      await new Promise((resolve) => setTimeout(resolve, late));
    } else {
      aim = `ACK ${target} + ${delay.toFixed(1)} ms`;
      await child.waitFor((line) => line.startsWith(`ACK ${target} `) || line.startsWith('ERROR'));
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    await child.kill();
  } finally {
    if (child.process.exitCode === null && child.process.signalCode === null) await child.kill();
  }
  expect(child.lines.filter((line) => line.startsWith('ERROR')), context()).to.deep.equal([]);
  expect(child.process.signalCode, context()).to.equal('SIGKILL');

  const lastAck = child.lastAck();
  const workload = new Workload(runSeed, shape);
  const states = statesOf(workload, lastAck + 1, base);
  const acked = states[lastAck] as Map<string, ModelValue>;
  const next = states[lastAck + 1] as Map<string, ModelValue>;
  // The model and the child agree on every acknowledged state.
  expect(child.ackDigest(lastAck) ?? digest(base), context()).to.equal(digest(acked));

  const cacheDir = storeOn(dir).locate(CACHE_NAME);
  const left = await debrisOf(cacheDir);
  const lockLeft = (await lstat(path.join(dir, 'LOCK')).catch(() => undefined)) !== undefined;

  // A new writer loads the crashed directory.
  const warnings: StoreWarning[] = [];
  const store = storeOn(dir);
  const manager = new CacheManager({ name: `reload-${lane}`, store, autoSync: false });
  manager.on('store:warning', (warning) => warnings.push(warning));
  let loaded: RunRecord['loaded'];
  let after: Map<string, ModelValue>;
  try {
    const cache = await manager.registerCache<string, ModelValue>(CACHE_NAME);
    const got = new Map(cache);
    if (digest(got) === digest(acked)) loaded = 'ack';
    else if (digest(got) === digest(next)) loaded = 'ack+1';
    else {
      expect.fail(`loaded ${describeMap(got)}; expected the state after ACK ${lastAck} (${describeMap(acked)}) or after ${lastAck + 1} (${describeMap(next)}); ${context()}`);
    }
    expect(got, context()).to.deep.equal(loaded === 'ack' ? acked : next);
    expect(cache.pendingChanges, context()).to.equal(0);

    // The next save works, and sticks.
    cache.set(`after-${mode}-${lane}-${run}`, { n: run, step: -1, pad: 'after the crash' });
    await manager.save(CACHE_NAME);
    after = new Map(cache);
  } finally {
    // A manager closes only the store it created: this one releases the lock.
    await manager.close();
    await store.close();
  }
  // The new writer took over the dead child's lock and said so. (A child killed before its
  // first write to the store, e.g. after a save of a batch that changed nothing, left no lock.)
  if (lockLeft) expect(warnings.map((w) => w.kind), context()).to.include('stale-lock');

  const reader = new FileStore({ dir, readOnly: true });
  const check = new CacheManager({ name: `check-${lane}`, store: reader, autoSync: false });
  try {
    const again = await check.registerCache<string, ModelValue>(CACHE_NAME);
    expect(new Map(again), context()).to.deep.equal(after);
  } finally {
    await check.close();
    await reader.close();
  }
  // Temp files of the dead writer, and data files no manifest names (written just before the
  // crash), were removed by the new writer.
  const clean = await debrisOf(cacheDir);
  expect({ temp: clean.temp, orphans: clean.orphans }, context()).to.deep.equal({ temp: [], orphans: [] });

  records.push({
    mode,
    lane,
    run,
    seed: runSeed,
    aim,
    phase: phaseOf(child.lines),
    lastAck,
    loaded,
    warnings: warnings.map((w) => w.kind),
    tempFiles: left.temp.length,
    orphanFiles: left.orphans.length,
    segments: left.manifest?.segments.length ?? 0,
    lockLeft,
  });
  return after;
}

async function lane(mode: Mode, index: number, runs: number): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `cachegraph-kill-${mode}-`));
  try {
    let state = new Map<string, ModelValue>();
    // Each child starts (~0.4 s under tsx) while the run before it is under way.
    let nextPlan = plan(mode, index, 0);
    let nextChild: WriterChild | undefined = new WriterChild(dir, nextPlan.runSeed, nextPlan.options, 'pipe');
    try {
      for (let run = 0; run < runs; run++) {
        const current = { plan: nextPlan, child: nextChild as WriterChild };
        nextPlan = plan(mode, index, run + 1);
        nextChild = run + 1 < runs ? new WriterChild(dir, nextPlan.runSeed, nextPlan.options, 'pipe') : undefined;
        state = await crashOnce(mode, index, run, dir, state, current.child, current.plan);
      }
    } finally {
      await nextChild?.kill();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function summary(mode: Mode): string {
  const rows = records.filter((r) => r.mode === mode);
  const count = (test: (r: RunRecord) => boolean): number => rows.filter(test).length;
  return [
    `kill -9 during ${mode}: ${rows.length} runs (CACHEGRAPH_FAULT_SEED=${seed})`,
    `  loaded the last ACKed state: ${count((r) => r.loaded === 'ack')}, the state after it (durable before its ACK): ${count((r) => r.loaded === 'ack+1')}, anything else: 0`,
    `  killed during a save: ${count((r) => r.phase === 'save')}, during a full snapshot: ${count((r) => r.phase === 'snapshot')}, during an explicit compaction: ${count((r) => r.phase === 'compaction')}`,
    `  torn tail cut: ${count((r) => r.warnings.includes('torn-tail'))}, temp files left: ${count((r) => r.tempFiles > 0)} runs, orphan data files left: ${count((r) => r.orphanFiles > 0)} runs, compaction in flight (2+ segments): ${count((r) => r.segments > 1)}`,
    `  stale lock taken over: ${count((r) => r.warnings.includes('stale-lock'))} (no lock left: ${count((r) => !r.lockLeft)}); ACKs before the kill: ${Math.min(...rows.map((r) => r.lastAck))}..${Math.max(...rows.map((r) => r.lastAck))}`,
  ].join('\n');
}

describe('Faults: kill -9 of a writer', function () {
  // About 1.5 s per kill and lane at most; the soak raises the count (CACHEGRAPH_KILL_RUNS).
  this.timeout(Math.max(180_000, RUNS_PER_MODE * 3_000));
  after(killAllWriters);

  for (const mode of ['sync', 'compact'] as const) {
    it(`reloads exactly the last acknowledged state after ${RUNS_PER_MODE} kills during ${mode === 'sync' ? 'syncs and full snapshots' : 'compactions'}, and the next save works`, async function () {
      const perLane = Math.ceil(RUNS_PER_MODE / LANES);
      await Promise.all(Array.from({ length: LANES }, (_, i) => lane(mode, i, perLane)));
      const rows = records.filter((r) => r.mode === mode);
      expect(rows).to.have.length(perLane * LANES);
      console.log(summary(mode));
      if (mode === 'compact') {
        // The kills did land in compactions, not only between them.
        expect(rows.filter((r) => r.phase === 'compaction' || r.segments > 1).length).to.be.greaterThan(rows.length / 4);
      } else {
        expect(rows.filter((r) => r.phase === 'snapshot').length).to.be.greaterThan(0);
      }
    });
  }
});
