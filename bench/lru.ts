// Bounded (LRU) caches with eviction: cachegraph's maxEntries against lru-cache and quick-lru.
import { compare, gated, planFor, selects, type Cells, type Workload } from './compare.js';
import { dataset, randomIndices, skewedIndices } from './data.js';
import { count, ratioByName, runsText, workloadSection, type Group, type Row, type Section, type Target } from './report.js';
import { cachegraph, check, fill, lruCache, quickLru, sample, type Subject } from './subjects.js';

const ours = cachegraph('cachegraph (maxEntries)', { persistent: false });
/** Implementations that evict exactly the least recently used entry (quick-lru approximates). */
const EXACT = new Set<Subject>([ours, lruCache]);

const WORKLOADS: readonly Workload[] = [
  { id: 'get', title: 'get (hit, marks the entry used)', expression: 'c.get(keys[present[i]])' },
  // Cycles through twice the capacity, from run to run: every set writes a key that is not
  // held, and evicts. (`cursor` is each implementation's own.)
  { id: 'set', title: 'set (new key, evicts the oldest)', expression: 'c.set(keys[(cursor[0] = (cursor[0] + 1) % span)], values[cursor[0]])' },
  { id: 'mix', title: 'get, and set on a miss (80 % of reads on 20 % of keys)', expression: 'c.get(keys[skew[i]]) ?? c.set(keys[skew[i]], values[skew[i]])' },
];

interface Cell {
  readonly capacity: number;
  readonly rows: Readonly<Record<string, readonly Row[]>>;
}

export type LruData = Cells<Cell>;

export const lru: Group<LruData> = {
  id: 'lru',
  title: 'Bounded LRU caches with eviction',
  async run(ctx) {
    const plan = planFor(ctx, { ops: 100_000, asyncOps: 0 }, { ops: 200_000, asyncOps: 0 });
    const cells: Cell[] = [];
    for (const capacity of ctx.quick ? [10_000] : [10_000, 100_000]) {
      const label = `capacity ${count(capacity)}`;
      if (!selects(ctx, label, [ours, lruCache, quickLru], WORKLOADS)) continue;
      const span = 2 * capacity;
      const data = dataset(span, 'string');
      // After filling all 2 × capacity keys in order, the newer half is held.
      const present = randomIndices(plan.ops, capacity, capacity).map((i) => i + capacity);
      const skew = skewedIndices(plan.ops, span, capacity + 1);
      const newer = sample(capacity).map((i) => i + capacity);
      const older = sample(capacity).map((i) => data.keys[i]);
      const rows = await compare(
        ctx,
        label,
        [ours, lruCache, quickLru],
        WORKLOADS,
        async (subject) => {
          const instance = await subject.open(capacity, true);
          const { cache } = instance;
          await fill(subject, cache, data);
          let problem = await check(cache, data, newer, EXACT.has(subject) ? older : []);
          if (problem === undefined && EXACT.has(subject)) {
            // get() marks an entry used: the oldest, once read, survives the next eviction.
            cache.get(data.keys[capacity]);
            cache.set(data.keys[0], data.values[0]);
            problem = await check(cache, data, [capacity, 0], [data.keys[capacity + 1]]);
          }
          // Back to holding exactly the newer half, as every workload expects.
          await fill(subject, cache, data, capacity, span);
          return gated(instance, problem, { c: cache, keys: data.keys, values: data.values, present, skew, span, cursor: new Uint32Array([span - 1]) });
        },
        plan,
      );
      cells.push({ capacity, rows: Object.fromEntries(rows) });
    }
    return { plan, cells };
  },
  render(data) {
    const parts = [
      `Each cache holds at most \`capacity\` entries and is filled with twice as many keys (string keys, values \`{ id, name }\`) before the gate: the newer half must read back its values and, for the exact LRUs, the older half must be gone and an entry read just before an eviction must survive it. Then ${count(data.plan.ops)} operations per timed run, ${runsText(data.plan.counts)}, interleaved. cachegraph: a \`persistent: false\` cache with \`maxEntries\`; lru-cache with \`max\`; quick-lru with \`maxSize\` (it keeps between \`maxSize\` and twice as many entries, so it evicts less often and is not an exact LRU).`,
    ];
    const charts: Section['charts'][number][] = [];
    const targets: Target[] = [];
    for (const cell of data.cells) {
      const label = `capacity ${count(cell.capacity)}`;
      const { markdown, chart } = workloadSection({
        heading: label,
        file: `bench-lru-${cell.capacity / 1_000}k.svg`,
        chartTitle: `Bounded LRU caches, ${label}`,
        workloads: WORKLOADS,
        rows: cell.rows,
        baseline: lruCache.name,
      });
      parts.push(markdown);
      charts.push(chart);
      for (const id of ['get', 'set']) {
        const rows = cell.rows[id] ?? [];
        targets.push({ what: `bounded LRU ${id}, ${label}: cachegraph time ÷ lru-cache`, short: `LRU ${id}, ${label}`, value: ratioByName(rows, ours.name, lruCache.name), limit: 1, unit: '×' });
      }
    }
    return { markdown: parts.join('\n\n'), charts, targets };
  },
};
