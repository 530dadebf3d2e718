// Syncs, snapshots, loads and compaction of a 1 000 000-entry cache with FileStore, against
// raw v8.serialize / v8.deserialize of the same data, and the largest event-loop delay each
// one causes. Prints Markdown tables (with the targets of the issue) to paste into
// docs/benchmarks.md.
// Run: npm run bench:sync   (not part of npm test; about 1.5–2.5 minutes, about 3 GB of memory)
// BENCH_ENTRIES=100000 for a quick try. With node --expose-gc, each timed run starts after a GC.
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import { CacheManager, FileStore, systemClock, v8Codec, type StoredEntry } from '../lib/index.js';
import { machine } from './harness.js';

const ENTRIES = Number(process.env['BENCH_ENTRIES'] ?? 1_000_000);
const BIG_RUNS = 3;
// Small syncs are dominated by one fsync, whose latency varies a lot: more runs.
const SMALL_RUNS = 15;
const ctx = { codec: v8Codec, clock: systemClock };
// Automatic compaction off (it would run in the middle of the measurements); compact() still
// runs in a worker thread, as it does by default.
const STORE_OPTIONS = { appendfsync: 'always', compaction: { worker: true, minDeadRatio: 1, minDeadBytes: Number.MAX_SAFE_INTEGER } } as const;

interface Timing {
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
async function time(name: string, runs: number, warmup: number, fn: (i: number) => Promise<unknown>, prepare?: (i: number) => Promise<void> | void): Promise<Timing> {
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
  process.stderr.write(`  ${name}: ${median(times).toFixed(1)} ms (runs ${times.map((t) => t.toFixed(0)).join(', ')}), max event-loop delay ${maxDelayMs.toFixed(0)} ms\n`);
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

const root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-bench-sync-'));
try {
  process.stderr.write(`${machine()}\nGenerating ${ENTRIES.toLocaleString('en')} entries...\n`);
  const entries: StoredEntry[] = Array.from({ length: ENTRIES }, (_, i): StoredEntry => [`k${i}`, value(i, 0), 0]);
  const dir = path.join(root, 'store');

  // --- Raw v8: serialize + write + fsync, and read + deserialize, of the same entries.
  const rawFile = path.join(root, 'raw.v8');
  const rawWrite = await time('raw v8.serialize + write + fsync', BIG_RUNS, 1, () => writeAndSync(rawFile, v8.serialize(entries)));
  const rawRead = await time('raw read + v8.deserialize', BIG_RUNS, 1, async () => (v8.deserialize(await readFile(rawFile)) as unknown[]).length);

  // --- The floor of any acknowledged sync: one small append and its fsync.
  const floorFile = path.join(root, 'fsync-floor');
  await writeAndSync(floorFile, new Uint8Array(0));
  const floorHandle = await open(floorFile, 'r+');
  let floorAt = 0;
  const fsyncFloor = await time('raw append of 4 KiB + fsync', SMALL_RUNS, 2, async () => {
    const bytes = new Uint8Array(4096).fill(7);
    await floorHandle.write(bytes, 0, bytes.byteLength, floorAt);
    floorAt += bytes.byteLength;
    await floorHandle.sync();
  });
  await floorHandle.close();

  // --- Full snapshot (store.save), into a cache of its own.
  const direct = new FileStore({ dir, ...STORE_OPTIONS });
  const snapshot = await time('full snapshot (store.save)', BIG_RUNS, 1, () => direct.save('direct', entries, ctx));

  // --- Syncs straight through the store (its copy is the snapshot above).
  let round = 1;
  const batchOf = (n: number): { cleared: false; sets: StoredEntry[]; deletes: unknown[] } => {
    const r = round++;
    const start = (r * 104_729) % (ENTRIES - n);
    return { cleared: false, sets: Array.from({ length: n }, (_, j): StoredEntry => [`k${start + j}`, value(start + j, r), 0]), deletes: [] };
  };
  const pendingBatches: Array<ReturnType<typeof batchOf>> = [];
  const storeSync = async (n: number): Promise<Timing> =>
    time(`sync of ${n.toLocaleString('en')} changes (store.saveChanges)`, SMALL_RUNS, 2, () => direct.saveChanges('direct', pendingBatches.shift() as ReturnType<typeof batchOf>, ctx), () => {
      pendingBatches.push(batchOf(n));
    });
  const storeSync100 = await storeSync(100);
  const storeSync10k = await storeSync(10_000);
  await direct.close();

  // --- Through the manager: a cold load, then syncs of changes made with cache.set.
  const seedStore = new FileStore({ dir, ...STORE_OPTIONS });
  await seedStore.save('bench', entries, ctx);
  await seedStore.close();
  // The store's part of a cold load, to tell it from the manager's.
  const storeLoad = await time('load by the store alone (store.load)', BIG_RUNS, 1, async () => {
    const reader = new FileStore({ dir, readOnly: true });
    try {
      return (await reader.load('bench', ctx))?.entries.length;
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
  if (cache.size !== ENTRIES) throw new Error(`loaded ${cache.size} entries, expected ${ENTRIES}`);
  const managerSync = async (n: number): Promise<Timing> =>
    time(`sync of ${n.toLocaleString('en')} changes (cache.set + manager.save)`, SMALL_RUNS, 2, () => live.save('bench'), () => {
      const r = round++;
      const start = (r * 104_729) % (ENTRIES - n);
      for (let j = 0; j < n; j++) cache.set(`k${start + j}`, value(start + j, r));
    });
  const managerSync100 = await managerSync(100);
  const managerSync10k = await managerSync(10_000);

  // --- Compaction of the 1 000 000 entries and their batches, in a worker thread.
  const liveStore = store as unknown as FileStore;
  const compaction = await time('compaction (store.compact, worker thread)', BIG_RUNS, 0, () => liveStore.compact('bench', ctx), async () => {
    // Something to compact each time.
    for (let j = 0; j < 10_000; j++) cache.set(`k${j}`, value(j, round));
    round++;
    await live.save('bench');
  });
  // The manager's view and the store's agree after all this.
  await closeManager();
  const checkStore = new FileStore({ dir, readOnly: true });
  const check = await checkStore.load('bench', ctx);
  if (check?.entries.length !== ENTRIES) throw new Error(`reloaded ${check?.entries.length} entries, expected ${ENTRIES}`);
  await checkStore.close();

  // --- Report.
  const ms = (t: Timing): number => median(t.runs);
  const cell = (t: Timing): string => `${ms(t).toFixed(1)} ms ±${((spread(t.runs) * 100) / 2).toFixed(0)}%`;
  const verdict = (ok: boolean, miss: string): string => (ok ? 'met' : `**missed** (${miss})`);
  const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;
  const rows: string[] = [];
  const ratioRow = (what: string, t: Timing, base: Timing, target: number, label: string): void => {
    const ratio = ms(t) / ms(base);
    rows.push(`| ${what} | ${cell(t)} | ${cell(base)} (full snapshot) | ${pct(ratio)} | ≤ ${label} | ${verdict(ratio <= target, `${(ratio / target).toFixed(2)}× the target`)} |`);
  };
  ratioRow('sync of 100 changes, through the manager', managerSync100, snapshot, 0.02, '2 %');
  ratioRow('sync of 100 changes, store.saveChanges', storeSync100, snapshot, 0.02, '2 %');
  ratioRow('sync of 10 000 changes, through the manager', managerSync10k, snapshot, 0.1, '10 %');
  ratioRow('sync of 10 000 changes, store.saveChanges', storeSync10k, snapshot, 0.1, '10 %');
  const speed = ms(rawWrite) / ms(snapshot);
  const load = ms(coldLoad) / ms(rawRead);
  const table = [
    `${machine()}; ${ENTRIES.toLocaleString('en')} entries (\`k<i>\` → \`{ id, name, score, tags }\`), appendfsync 'always'; median of ${SMALL_RUNS} runs (syncs) or ${BIG_RUNS} (the rest), ± half the spread.`,
    '',
    '| measurement | time | baseline | ratio | target | verdict |',
    '|---|---:|---:|---:|---:|---|',
    ...rows,
    `| full snapshot vs raw v8.serialize + write + fsync (raw time / snapshot time) | ${cell(snapshot)} | ${cell(rawWrite)} (raw) | ${speed.toFixed(2)} | ≥ 0.70 | ${verdict(speed >= 0.7, `${((0.7 - speed) * 100).toFixed(0)} points short`)} |`,
    `| cold load (new manager + registerCache) vs raw read + v8.deserialize | ${cell(coldLoad)} | ${cell(rawRead)} (raw) | ${load.toFixed(2)}× | ≤ 1.20× | ${verdict(load <= 1.2, `${(load / 1.2).toFixed(2)}× the target`)} |`,
    `| (for comparison: store.load alone vs raw read + v8.deserialize) | ${cell(storeLoad)} | ${cell(rawRead)} (raw) | ${(ms(storeLoad) / ms(rawRead)).toFixed(2)}× | | |`,
    `| (for comparison: sync of 100 changes vs one raw 4 KiB append + fsync) | ${cell(managerSync100)} | ${cell(fsyncFloor)} (raw) | ${(ms(managerSync100) / ms(fsyncFloor)).toFixed(2)}× | | |`,
    '',
    '| operation | time | largest event-loop delay |',
    '|---|---:|---:|',
    ...[snapshot, managerSync100, storeSync100, managerSync10k, storeSync10k, compaction, coldLoad, storeLoad, rawWrite, rawRead, fsyncFloor].map((t) => `| ${t.name} | ${cell(t)} | ${t.maxDelayMs.toFixed(0)} ms |`),
  ].join('\n');
  console.log(table);
} finally {
  await rm(root, { recursive: true, force: true });
}
