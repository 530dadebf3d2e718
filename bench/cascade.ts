// Invalidation cascades: manager.invalidate() on the root of a DAG of 10, 1 000 and 10 000
// caches shaped as a chain, a wide fan-out and a stack of diamonds. cachegraph only: none of
// the peers has dependent caches.
import { CacheManager, EVENTS, MemoryStore, type Cache } from './built.js';
import { summarize } from './harness.js';
import { count, fixed, markdownTable, range, runsText, type BenchContext, type Group, type Target } from './report.js';
import { barChart, type Bar } from './svg.js';

type Shape = 'chain' | 'fan-out' | 'diamonds';
const SHAPES: readonly Shape[] = ['chain', 'fan-out', 'diamonds'];

/** The parents of cache number `j` (caches are numbered in a topological order, root 0). */
function parentsOf(shape: Shape, j: number): number[] {
  if (j === 0) return [];
  if (shape === 'chain') return [j - 1];
  if (shape === 'fan-out') return [0];
  // Diamonds: 0 → (1, 2) → 3 → (4, 5) → 6 …; a diamond's two sides hang off the bottom of
  // the one above, its bottom off both sides.
  const top = 3 * Math.floor((j - 1) / 3);
  return (j - top) % 3 === 0 ? [j - 1, j - 2] : [top];
}

/** The caches of a DAG of about `n`: diamonds take 1 + 3k (exactly 10, 1 000 and 10 000). */
const sizeFor = (shape: Shape, n: number): number => (shape === 'diamonds' ? 1 + 3 * Math.floor((n - 1) / 3) : n);

interface Measured {
  readonly shape: Shape;
  /** 10, 1 000 or 10 000: the size asked for (`caches` may be a little less, see sizeFor). */
  readonly size: number;
  readonly caches: number;
  readonly persistent: boolean;
  /** Registering every cache, once, ms. */
  readonly registerMs: number;
  /** ms per cascade of each timed run. */
  readonly samples: readonly number[];
  /** ms of the very first cascade (cold code: nothing compiled by the optimizing tiers yet). */
  readonly first: number | undefined;
  /** Why there are no samples. */
  readonly note?: string;
}

export interface CascadeData {
  readonly runs: number;
  readonly warmup: number;
  readonly results: readonly Measured[];
}

const name = (j: number): string => `c${j}`;

/** Checks one cascade: every cache emptied, one event each, each after its parents'. */
function gate(shape: Shape, caches: readonly Cache[], events: readonly string[]): string | undefined {
  const position = new Map(events.map((n, i) => [n, i]));
  if (events.length !== caches.length) return `${events.length} cache:invalidated events for ${caches.length} caches`;
  for (let j = 0; j < caches.length; j++) {
    if (caches[j]?.size !== 0) return `${name(j)} still holds ${caches[j]?.size} entries`;
    const at = position.get(name(j)) ?? -1;
    if (parentsOf(shape, j).some((p) => (position.get(name(p)) ?? Number.POSITIVE_INFINITY) > at)) return `${name(j)} was invalidated before one of its upstreams`;
  }
  return undefined;
}

async function measureShape(ctx: BenchContext, shape: Shape, size: number, persistent: boolean, runs: number, warmup: number): Promise<Measured> {
  const caches = sizeFor(shape, size);
  const label = `${shape}, ${count(caches)} caches, ${persistent ? 'persistent' : 'persistent: false'}`;
  const manager = new CacheManager({ name: `cascade-${shape}-${caches}-${persistent}`, store: new MemoryStore(), autoSync: false });
  try {
    const started = performance.now();
    const registered: Cache[] = [];
    for (let j = 0; j < caches; j++) registered.push(await manager.registerCache(name(j), { persistent, dependsOn: parentsOf(shape, j).map(name) }));
    const registerMs = performance.now() - started;
    const events: string[] = [];
    manager.on(EVENTS.invalidated, (event) => void events.push(event.name));
    const samples: number[] = [];
    let first: number | undefined;
    for (let run = 0; run < warmup + runs; run++) {
      // Something to empty in every cache. Runs follow each other with no forced GC and no
      // pause: right after a forced full GC a cascade took up to twice as long (background
      // sweeping), and right after 50 ms of idleness a 10-cache cascade took ten times as
      // long as the next one (cold CPU caches): states a busy process is rarely in. The
      // garbage of earlier runs is collected when V8 decides, as in an application; the
      // median absorbs the runs a collection falls into.
      for (const cache of registered) cache.set('k', run);
      events.length = 0;
      const start = process.hrtime.bigint();
      await manager.invalidate(name(0));
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      const problem = gate(shape, registered, events);
      if (problem !== undefined) return { shape, size, caches, persistent, registerMs, samples: [], first, note: `not scored: failed the correctness gate (${problem})` };
      first ??= ms;
      if (run >= warmup) samples.push(ms);
    }
    ctx.log(`  ${label}: ${fixed(summarize(samples).median)} ms per cascade (first ${fixed(first ?? Number.NaN)} ms, registration ${fixed(registerMs)} ms)`);
    return { shape, size, caches, persistent, registerMs, samples, first };
  } finally {
    for (const cache of manager.cacheNames()) manager.getCache(cache).clear();
    await manager.close();
  }
}

const LIMIT_MS = 5;

export const cascade: Group<CascadeData> = {
  id: 'cascade',
  title: 'Invalidation cascades',
  async run(ctx) {
    const [runs, warmup] = ctx.quick ? [3, 1] : [15, 10];
    const results: Measured[] = [];
    for (const n of ctx.quick ? [10, 1_000] : [10, 1_000, 10_000]) {
      for (const shape of SHAPES) {
        for (const persistent of [false, true]) {
          if (ctx.filter !== undefined && !ctx.filter.test(`${shape} ${n} ${persistent ? 'persistent' : 'memory'}`)) continue;
          results.push(await measureShape(ctx, shape, n, persistent, runs, warmup));
        }
      }
    }
    return { runs, warmup, results };
  },
  render(data) {
    const label = (m: Measured): string => `${m.shape}, ${m.persistent ? 'persistent (MemoryStore)' : 'persistent: false'}`;
    const rows = data.results.map((m) => {
      if (m.samples.length === 0) return [m.shape, count(m.caches), m.persistent ? 'persistent' : 'persistent: false', m.note ?? 'not measured', '', '', '', ''];
      const median = summarize(m.samples).median;
      return [m.shape, count(m.caches), m.persistent ? 'persistent' : 'persistent: false', fixed(median), range(m.samples), fixed((median * 1000) / m.caches), m.first === undefined ? '' : fixed(m.first), fixed(m.registerMs)];
    });
    const groups = [...new Set(data.results.map((m) => m.size))].map((size) => ({
      title: `${count(size)} caches`,
      bars: data.results
        .filter((m) => m.samples.length > 0 && m.size === size)
        .map((m): Bar => {
          const median = summarize(m.samples).median;
          return { label: label(m), value: median, text: `${fixed(median)} ms`, note: `${fixed((median * 1000) / m.caches)} µs per cache`, tone: m.persistent ? 'ours2' : 'ours' };
        }),
    }));
    const targets: Target[] = data.results
      .filter((m) => m.size === 10_000 && !m.persistent)
      .map((m) => ({ what: `cascade over ${count(m.caches)} caches (${m.shape}): ms per cascade`, short: `cascade, ${count(m.caches)} caches, ${m.shape}`, value: m.samples.length > 0 ? summarize(m.samples).median : Number.NaN, limit: LIMIT_MS, unit: 'ms' }));
    return {
      markdown: [
        `One manager per DAG (MemoryStore, no AutoSync), its caches registered in topological order; \`manager.invalidate('c0')\` on the root empties every cache, deletes its persisted copy (persistent caches), and rebuilds it (default builder: empty), upstreams first. Shapes: a chain \`c0 → c1 → … \`, a fan-out (every cache depends on \`c0\` alone), and a stack of diamonds \`c0 → (c1, c2) → c3 → (c4, c5) → c6 …\`. Runs follow each other, with no forced GC or pause (see \`bench/cascade.ts\`); before each run every cache gets one entry; after each run the gate checks that every cache is empty and that there was one \`cache:invalidated\` event per cache, each after its upstreams'. ${runsText(data)}; the warm-up lets V8 optimize the cascade's code, as it has in a long-running process, and "first cascade" is the very first one, on cold code (it includes compiling it). Registration: the time to register every cache of the DAG, once.`,
        '![Invalidation cascades](bench-cascade.svg)',
        markdownTable(['shape', 'caches', 'caches are', 'ms per cascade (median)', 'range of runs (ms)', 'µs per cache', 'first cascade (ms)', 'registration (ms)'], 'lrlrrrrr', rows),
      ].join('\n\n'),
      charts: [
        {
          file: 'bench-cascade.svg',
          svg: barChart({
            title: 'Invalidation cascades: ms per manager.invalidate() of the root',
            subtitle: `Median of the runs; shorter is faster. Target for 10 000 caches: under ${LIMIT_MS} ms. Each size has its own scale.`,
            scale: 'group',
            groups,
          }),
        },
      ],
      targets,
    };
  },
};
