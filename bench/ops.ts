// Unbounded cache operations against Map and the peers: get (hit and miss), set, and a
// 90 % get / 9 % set / 1 % delete mix, with 10 000 and 1 000 000 keys, string and integer keys.
import { compare, gated, planFor, selects, type Cells, type Workload } from './compare.js';
import { count, ratioByName, runsText, workloadSection, type Group, type Row, type Section, type Target } from './report.js';
import { dataset, percentiles, randomIndices, type KeyKind } from './data.js';
import { accepts, cachegraphMemory, cachegraphPersistent, check, checkDelete, fill, map, sample, UNBOUNDED } from './subjects.js';

const WORKLOADS: readonly Workload[] = [
  { id: 'get-hit', title: 'get (hit)', expression: 'c.get(keys[order[i]])' },
  { id: 'get-miss', title: 'get (miss)', expression: 'c.get(missing[order[i]])' },
  { id: 'set', title: 'set (existing key)', expression: 'c.set(keys[order[i]], values[order[i]])' },
  {
    id: 'mix',
    title: '90 % get / 9 % set / 1 % delete',
    expression: 'mix[i] < 90 ? c.get(keys[order[i]]) : mix[i] < 99 ? c.set(keys[order[i]], values[order[i]]) : c.delete(keys[order[i]])',
  },
];

interface Cell {
  readonly n: number;
  readonly kind: KeyKind;
  /** Rows of each workload, by workload id. */
  readonly rows: Readonly<Record<string, readonly Row[]>>;
}

export type OpsData = Cells<Cell>;

const describe = (n: number, kind: KeyKind): string => `${count(n)} ${kind} keys`;

export const ops: Group<OpsData> = {
  id: 'ops',
  title: 'Cache operations',
  async run(ctx) {
    const plan = planFor(ctx, { ops: 50_000, asyncOps: 2_000 }, { ops: 200_000, asyncOps: 10_000 });
    const cells: Cell[] = [];
    for (const n of ctx.quick ? [10_000, 100_000] : [10_000, 1_000_000]) {
      for (const kind of ['string', 'integer'] as const) {
        const label = describe(n, kind);
        if (!selects(ctx, label, UNBOUNDED, WORKLOADS)) continue;
        ctx.log(`${label}: generating data`);
        const data = dataset(n, kind);
        const order = randomIndices(plan.ops, n, n + 1);
        const mix = percentiles(plan.ops, n + 2);
        const gateSample = sample(n);
        const rows = await compare(
          ctx,
          label,
          UNBOUNDED,
          WORKLOADS,
          async (subject) => {
            if (!accepts(subject, data)) return 'n/a: string keys only';
            const instance = await subject.open(n, false);
            await fill(subject, instance.cache, data);
            // cachegraph's persistent cache saves once: from then on each write is tracked by key.
            await instance.settle();
            const problem =
              (await check(instance.cache, data, gateSample, gateSample.map((i) => data.missing[i]))) ?? (await checkDelete(subject, instance.cache, data));
            return gated(instance, problem, { c: instance.cache, keys: data.keys, missing: data.missing, values: data.values, order, mix });
          },
          plan,
        );
        cells.push({ n, kind, rows: Object.fromEntries(rows) });
      }
    }
    return { plan, cells };
  },
  render(data) {
    const { plan } = data;
    const parts: string[] = [
      `Each implementation is filled with every key (values \`{ id, name }\`), passes the correctness gate (a sample of about 1 000 keys reads back its values, as many never-stored keys read back nothing, and a deleted key is gone), then each workload runs ${count(plan.ops)} operations per timed run (${count(plan.asyncOps)} for the async peers, each operation awaited) on keys drawn at random, ${runsText(plan.counts)}, interleaved (each round runs every implementation once); the table gives the median and the range of the runs. A set writes an existing key. Map is the floor. lru-cache and quick-lru are sized to hold every key (no eviction here); node-cache with \`useClones: false\`; bentocache with its memory driver only (\`serialize: false\`); cache-manager with its default in-memory Keyv store. bentocache and cache-manager take string keys only and are async. cachegraph runs twice: a \`persistent: false\` cache, and a persistent cache (MemoryStore, no AutoSync), saved once after it is filled, whose \`set\` checks the key and value against the v8 codec and records the change for the next save ("change tracking"). Its writes reach every key, so once more than half its entries changed since the save, the cache (its store is not shared) counts every entry as changed instead of listing keys one by one (see "Heap per entry"); "Codec check at \`set()\`", below, measures a set that lists its key.`,
    ];
    const charts: Section['charts'][number][] = [];
    const targets: Target[] = [];
    for (const cell of data.cells) {
      const label = describe(cell.n, cell.kind);
      const size = cell.n >= 1_000_000 ? `${cell.n / 1_000_000}M` : `${cell.n / 1_000}k`;
      const short = `${size} ${cell.kind} keys`;
      const { markdown, chart } = workloadSection({
        heading: label,
        file: `bench-ops-${size.toLowerCase()}-${cell.kind}.svg`,
        chartTitle: `Cache operations, ${label}`,
        workloads: WORKLOADS,
        rows: cell.rows,
        baseline: map.name,
      });
      parts.push(markdown);
      charts.push(chart);
      const hits = cell.rows['get-hit'] ?? [];
      const sets = cell.rows['set'] ?? [];
      targets.push(
        { what: `unbounded get (hit), ${label}: cachegraph time ÷ Map.get`, short: `get, ${short}`, value: ratioByName(hits, cachegraphMemory.name, map.name), limit: 1.3, unit: '×' },
        { what: `set with change tracking, ${label}: cachegraph time ÷ Map.set`, short: `set (tracked), ${short}`, value: ratioByName(sets, cachegraphPersistent.name, map.name), limit: 2, unit: '×' },
      );
    }
    return { markdown: parts.join('\n\n'), charts, targets };
  },
};
