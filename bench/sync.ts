// Syncs, snapshots, loads and compaction of a 1 000 000-entry cache with FileStore, against
// raw v8.serialize / v8.deserialize of the same data, and the largest event-loop delay each
// one causes, with the targets of the sync issue.
// Run: npm run bench:sync   (not part of npm test; about 1.5–2.5 minutes, about 3 GB of memory)
// --quick (50 000 entries) or BENCH_ENTRIES=<n> for a quick try. With node --expose-gc, each timed run
// starts after a GC.
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import { CacheManager, FileStore, systemClock, v8Codec, type StoredEntry } from './built.js';
import { count, markdownTable, type BenchContext, type Group } from './report.js';

const BIG_RUNS = 3;
// Small syncs are dominated by one fsync, whose latency varies a lot: more runs.
const SMALL_RUNS = 15;
const storeCtx = { codec: v8Codec, clock: systemClock };
// Automatic compaction off (it would run in the middle of the measurements); compact() still
// runs in a worker thread, as it does by default.
const STORE_OPTIONS = { appendfsync: 'always', compaction: { worker: true, minDeadRatio: 1, minDeadBytes: Number.MAX_SAFE_INTEGER } } as const;

interface SyncTiming {
  readonly name: string;
  /** Milliseconds of each timed run. */
  readonly runs: number[];
  /** Largest event-loop delay seen during any timed run, ms (max of the histogram and the probe). */
  readonly maxDelayMs: number;
}

const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};
const spread = (xs: readonly number[]): number => (Math.max(...xs) - Math.min(...xs)) / median(xs);

/**
 * Watches the event loop while `fn` runs: `monitorEventLoopDelay` at 10 ms resolution, and a
 * 10 ms interval that measures how late it fires. Returns the larger maximum, in ms.
 */
async function watchLoop<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; maxDelayMs: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let last = performance.now();
  let worst = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 10);
    last = now;
  }, 10);
  const started = performance.now();
  try {
    const value = await fn();
    const ms = performance.now() - started;
    // One more probe tick, so a block at the very end is seen too.
    await new Promise((resolve) => setTimeout(resolve, 12));
    return { value, ms, maxDelayMs: Math.max(worst, histogram.max / 1e6) };
  } finally {
    clearInterval(probe);
    histogram.disable();
  }
}

/** `warmup` untimed runs, then `runs` timed ones; `prepare` runs before each, untimed. */
async function time(log: (message: string) => void, name: string, runs: number, warmup: number, fn: (i: number) => Promise<unknown>, prepare?: (i: number) => Promise<void> | void): Promise<SyncTiming> {
  const times: number[] = [];
  let maxDelayMs = 0;
  for (let i = 0; i < warmup + runs; i++) {
    await prepare?.(i);
    globalThis.gc?.();
    const { ms, maxDelayMs: delay } = await watchLoop(() => fn(i));
    if (i >= warmup) {
      times.push(ms);
      maxDelayMs = Math.max(maxDelayMs, delay);
    }
  }
  const timing = { name, runs: times, maxDelayMs };
  log(`  ${name}: ${median(times).toFixed(1)} ms (runs ${times.map((t) => t.toFixed(0)).join(', ')}), max event-loop delay ${maxDelayMs.toFixed(0)} ms`);
  return timing;
}

function value(i: number, round: number): { id: number; name: string; score: number; tags: string[] } {
  return { id: i, name: `user-${i}`, score: (i * 7 + round) % 1000, tags: ['a', 'b'] };
}

async function writeAndSync(file: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(file, 'w', 0o600);
  try {
    let done = 0;
    while (done < bytes.byteLength) done += (await handle.write(bytes, done, bytes.byteLength - done, done)).bytesWritten;
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Everything `measure` timed. */
export interface SyncData {
  readonly entries: number;
  readonly smallRuns: number;
  readonly bigRuns: number;
  readonly timings: Readonly<Record<TimingName, SyncTiming>>;
}

type TimingName =
  | 'rawWrite'
  | 'rawRead'
  | 'fsyncFloor'
  | 'snapshot'
  | 'storeSync100'
  | 'storeSync10k'
  | 'storeLoad'
  | 'coldLoad'
  | 'managerSync100'
  | 'managerSync10k'
  | 'compaction';

/** Runs every measurement on a cache of `size` entries, in a temporary directory. */
async function measure(size: number, log: (message: string) => void): Promise<SyncData> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-bench-sync-'));
  try {
    log(`generating ${size.toLocaleString('en')} entries`);
    const entries: StoredEntry[] = Array.from({ length: size }, (_, i): StoredEntry => [`k${i}`, value(i, 0), 0]);
    const dir = path.join(root, 'store');

    // --- Raw v8: serialize + write + fsync, and read + deserialize, of the same entries.
    const rawFile = path.join(root, 'raw.v8');
    const rawWrite = await time(log, 'raw v8.serialize + write + fsync', BIG_RUNS, 1, () => writeAndSync(rawFile, v8.serialize(entries)));
    const rawRead = await time(log, 'raw read + v8.deserialize', BIG_RUNS, 1, async () => (v8.deserialize(await readFile(rawFile)) as unknown[]).length);

    // --- The floor of any acknowledged sync: one small append and its fsync.
    const floorFile = path.join(root, 'fsync-floor');
    await writeAndSync(floorFile, new Uint8Array(0));
    const floorHandle = await open(floorFile, 'r+');
    let floorAt = 0;
    const fsyncFloor = await time(log, 'raw append of 4 KiB + fsync', SMALL_RUNS, 2, async () => {
      const bytes = new Uint8Array(4096).fill(7);
      await floorHandle.write(bytes, 0, bytes.byteLength, floorAt);
      floorAt += bytes.byteLength;
      await floorHandle.sync();
    });
    await floorHandle.close();

    // --- Full snapshot (store.save), into a cache of its own.
    const direct = new FileStore({ dir, ...STORE_OPTIONS });
    const snapshot = await time(log, 'full snapshot (store.save)', BIG_RUNS, 1, () => direct.save('direct', entries, storeCtx));

    // --- Syncs straight through the store (its copy is the snapshot above).
    let round = 1;
    const batchOf = (n: number): { cleared: false; sets: StoredEntry[]; deletes: unknown[] } => {
      const r = round++;
      const start = (r * 104_729) % (size - n);
      return { cleared: false, sets: Array.from({ length: n }, (_, j): StoredEntry => [`k${start + j}`, value(start + j, r), 0]), deletes: [] };
    };
    const pendingBatches: Array<ReturnType<typeof batchOf>> = [];
    const storeSync = async (n: number): Promise<SyncTiming> =>
      time(log, `sync of ${n.toLocaleString('en')} changes (store.saveChanges)`, SMALL_RUNS, 2, () => direct.saveChanges('direct', pendingBatches.shift() as ReturnType<typeof batchOf>, storeCtx), () => {
        pendingBatches.push(batchOf(n));
      });
    const storeSync100 = await storeSync(100);
    const storeSync10k = await storeSync(10_000);
    await direct.close();

    // --- Through the manager: a cold load, then syncs of changes made with cache.set.
    const seedStore = new FileStore({ dir, ...STORE_OPTIONS });
    await seedStore.save('bench', entries, storeCtx);
    await seedStore.close();
    // The store's part of a cold load, to tell it from the manager's.
    const storeLoad = await time(log, 'load by the store alone (store.load)', BIG_RUNS, 1, async () => {
      const reader = new FileStore({ dir, readOnly: true });
      try {
        return (await reader.load('bench', storeCtx))?.entries.length;
      } finally {
        await reader.close();
      }
    });
    let manager: CacheManager | undefined;
    let store: FileStore | undefined;
    const closeManager = async (): Promise<void> => {
      await manager?.close();
      await store?.close();
      manager = undefined;
      store = undefined;
    };
    const coldLoad = await time(
      log,
      'cold load (new manager, registerCache)',
      BIG_RUNS,
      1,
      async () => {
        store = new FileStore({ dir, ...STORE_OPTIONS });
        manager = new CacheManager({ name: 'bench', store, autoSync: false });
        return (await manager.registerCache('bench')).size;
      },
      closeManager,
    );
    const live = manager as unknown as CacheManager;
    const cache = live.getCache<string, ReturnType<typeof value>>('bench');
    if (cache.size !== size) throw new Error(`loaded ${cache.size} entries, expected ${size}`);
    const managerSync = async (n: number): Promise<SyncTiming> =>
      time(log, `sync of ${n.toLocaleString('en')} changes (cache.set + manager.save)`, SMALL_RUNS, 2, () => live.save('bench'), () => {
        const r = round++;
        const start = (r * 104_729) % (size - n);
        for (let j = 0; j < n; j++) cache.set(`k${start + j}`, value(start + j, r));
      });
    const managerSync100 = await managerSync(100);
    const managerSync10k = await managerSync(10_000);

    // --- Compaction of the 1 000 000 entries and their batches, in a worker thread.
    const liveStore = store as unknown as FileStore;
    const compaction = await time(log, 'compaction (store.compact, worker thread)', BIG_RUNS, 0, () => liveStore.compact('bench', storeCtx), async () => {
      // Something to compact each time.
      for (let j = 0; j < 10_000; j++) cache.set(`k${j}`, value(j, round));
      round++;
      await live.save('bench');
    });
    // The manager's view and the store's agree after all this.
    await closeManager();
    const checkStore = new FileStore({ dir, readOnly: true });
    const check = await checkStore.load('bench', storeCtx);
    if (check?.entries.length !== size) throw new Error(`reloaded ${check?.entries.length} entries, expected ${size}`);
    await checkStore.close();

    return {
      entries: size,
      smallRuns: SMALL_RUNS,
      bigRuns: BIG_RUNS,
      timings: { rawWrite, rawRead, fsyncFloor, snapshot, storeSync100, storeSync10k, storeLoad, coldLoad, managerSync100, managerSync10k, compaction },
    };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const ms = (t: SyncTiming): number => median(t.runs);
const cell = (t: SyncTiming): string => `${ms(t).toFixed(1)} ms ±${((spread(t.runs) * 100) / 2).toFixed(0)}%`;
const verdict = (ok: boolean, miss: string): string => (ok ? 'met' : `**missed** (${miss})`);
const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;

export const sync: Group<SyncData> = {
  id: 'sync',
  title: 'Sync and load',
  nodeFlags: ['--max-old-space-size=6144'],
  async run(ctx: BenchContext) {
    const fromEnv = process.env['BENCH_ENTRIES'];
    return measure(fromEnv !== undefined ? Number(fromEnv) : ctx.quick ? 50_000 : 1_000_000, ctx.log);
  },
  render(data) {
    const t = data.timings;
    const ratioRow = (what: string, timing: SyncTiming, target: number, label: string): string[] => {
      const ratio = ms(timing) / ms(t.snapshot);
      return [what, cell(timing), `${cell(t.snapshot)} (full snapshot)`, pct(ratio), `≤ ${label}`, verdict(ratio <= target, `${(ratio / target).toFixed(2)}× the target`)];
    };
    const speed = ms(t.rawWrite) / ms(t.snapshot);
    const load = ms(t.coldLoad) / ms(t.rawRead);
    const targets = [
      ratioRow('sync of 100 changes, through the manager', t.managerSync100, 0.02, '2 %'),
      ratioRow('sync of 100 changes, store.saveChanges', t.storeSync100, 0.02, '2 %'),
      ratioRow('sync of 10 000 changes, through the manager', t.managerSync10k, 0.1, '10 %'),
      ratioRow('sync of 10 000 changes, store.saveChanges', t.storeSync10k, 0.1, '10 %'),
      ['full snapshot vs raw v8.serialize + write + fsync (raw time / snapshot time)', cell(t.snapshot), `${cell(t.rawWrite)} (raw)`, speed.toFixed(2), '≥ 0.70', verdict(speed >= 0.7, `${((0.7 - speed) * 100).toFixed(0)} points short`)],
      ['cold load (new manager + registerCache) vs raw read + v8.deserialize', cell(t.coldLoad), `${cell(t.rawRead)} (raw)`, `${load.toFixed(2)}×`, '≤ 1.20×', verdict(load <= 1.2, `${(load / 1.2).toFixed(2)}× the target`)],
      ['(for comparison: store.load alone vs raw read + v8.deserialize)', cell(t.storeLoad), `${cell(t.rawRead)} (raw)`, `${(ms(t.storeLoad) / ms(t.rawRead)).toFixed(2)}×`, '', ''],
      ['(for comparison: sync of 100 changes vs one raw 4 KiB append + fsync)', cell(t.managerSync100), `${cell(t.fsyncFloor)} (raw)`, `${(ms(t.managerSync100) / ms(t.fsyncFloor)).toFixed(2)}×`, '', ''],
    ];
    const operations = [t.snapshot, t.managerSync100, t.storeSync100, t.managerSync10k, t.storeSync10k, t.compaction, t.coldLoad, t.storeLoad, t.rawWrite, t.rawRead, t.fsyncFloor];
    return {
      markdown: [
        `\`bench/sync.ts\`: a ${count(data.entries)}-entry cache (\`k<i>\` → \`{ id, name, score, tags }\`) in a FileStore with \`appendfsync: 'always'\` (every acknowledged sync includes its fsync), against a full snapshot of the same cache and against raw \`v8.serialize\` / \`v8.deserialize\` of the same entries (written with one checked write and an fsync, read with one \`readFile\`). Syncs are measured through the manager (\`cache.set\` of N keys, untimed, then \`manager.save()\`, which uses \`store.saveChanges\` because the store's copy is the loaded baseline) and straight through \`store.saveChanges\`. The largest event-loop delay is the larger of \`monitorEventLoopDelay\` (10 ms resolution) and a 10 ms interval's lateness, during the timed runs only. Automatic compaction is off during the run; \`store.compact()\` runs in a worker thread. Every timed run starts after a GC. Median of ${data.smallRuns} runs (syncs) or ${data.bigRuns} (the rest), ± half the spread. The targets in this table are those of the sync issue; see "Sync and load: earlier runs" below for their history.`,
        markdownTable(['measurement', 'time', 'baseline', 'ratio', 'target', 'verdict'], 'lrrrrl', targets),
        markdownTable(['operation', 'time', 'largest event-loop delay'], 'lrr', operations.map((o) => [o.name, cell(o), `${o.maxDelayMs.toFixed(0)} ms`])),
      ].join('\n\n'),
      charts: [],
      targets: [],
    };
  },
};
