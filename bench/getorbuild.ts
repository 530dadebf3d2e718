// getOrBuild hits: the read path of a read-through cache, where the value is usually there.
// cachegraph's cache.getOrBuild against bentocache's getOrSet (memory L1), cache-manager's
// wrap, lru-cache's fetch, p-memoize and an async function over a Map (the floor).
import { isDeepStrictEqual } from 'node:util';
import { createCache } from 'cache-manager';
import { LRUCache } from 'lru-cache';
import pMemoize from 'p-memoize';
import { compare, gated, planFor, type Contender, type Plan, type Prepared, type Workload } from './compare.js';
import { dataset, randomIndices, type Value } from './data.js';
import { count, ratioByName, runsText, workloadSection, type Group, type Row, type Target } from './report.js';
import { memoryBentoCache, openCachegraph } from './subjects.js';

const N = 10_000;
const HIT: Workload = { id: 'hit', title: `hit (${count(N)} string keys)`, expression: 'c(keys[order[i]])' };

/** A read-through cache: `read(key)` returns the cached value, or builds it with `build(key)`. */
interface ReadThrough extends Contender {
  /** The timed expression, with `c`, `keys`, `order` and `build` in scope. */
  readonly expression: string;
  open(build: (key: string) => Promise<Value>): Promise<{ target: unknown; read: (key: string) => Promise<unknown>; close(): Promise<void> }>;
}

const floorName = 'Map + async function';

const CONTENDERS: readonly ReadThrough[] = [
  {
    name: floorName,
    role: 'floor',
    async: true,
    expression: HIT.expression,
    async open(build) {
      const map = new Map<string, Value>();
      const read = async (key: string): Promise<Value> => {
        const value = map.get(key);
        if (value !== undefined) return value;
        const built = await build(key);
        map.set(key, built);
        return built;
      };
      return { target: read, read, close: async () => undefined };
    },
  },
  {
    name: 'cachegraph getOrBuild',
    role: 'ours',
    async: true,
    expression: 'c.getOrBuild(keys[order[i]], build)',
    async open(build) {
      const { manager, cache } = await openCachegraph<string, Value>(false, undefined);
      return { target: cache, read: (key) => cache.getOrBuild(key, build), close: () => manager.close() };
    },
  },
  {
    name: 'cachegraph memoize',
    role: 'ours',
    async: true,
    expression: HIT.expression,
    async open(build) {
      const { manager } = await openCachegraph<string, Value>(false, undefined);
      // A persistent memo cache (the default), in a MemoryStore: results are codec-checked at
      // set(); hits read memory only. `lock: false`: no other process shares this store.
      const memoized = manager.memoize(build, { name: 'build', lock: false });
      return { target: memoized, read: memoized, close: () => manager.close() };
    },
  },
  {
    name: 'bentocache getOrSet (memory)',
    role: 'peer',
    async: true,
    // A factory closes over its key, as in bentocache's documentation.
    expression: 'c.getOrSet({ key: keys[order[i]], factory: () => build(keys[order[i]]) })',
    async open(build) {
      const bento = memoryBentoCache(N);
      return { target: bento, read: (key) => bento.getOrSet({ key, factory: () => build(key) }), close: () => bento.disconnectAll() };
    },
  },
  {
    name: 'cache-manager wrap',
    role: 'peer',
    async: true,
    expression: 'c.wrap(keys[order[i]], () => build(keys[order[i]]))',
    async open(build) {
      const cache = createCache();
      return { target: cache, read: (key) => cache.wrap(key, () => build(key)), close: () => cache.disconnect() };
    },
  },
  {
    name: 'lru-cache fetch',
    role: 'peer',
    async: true,
    expression: 'c.fetch(keys[order[i]])',
    async open(build) {
      const cache = new LRUCache<string, Value>({ max: N, fetchMethod: (key) => build(key) });
      return { target: cache, read: (key) => cache.fetch(key), close: async () => undefined };
    },
  },
  {
    name: 'p-memoize',
    role: 'peer',
    async: true,
    expression: HIT.expression,
    async open(build) {
      const memoized = pMemoize(build);
      return { target: memoized, read: memoized, close: async () => undefined };
    },
  },
];

export interface GetOrBuildData {
  readonly plan: Plan;
  readonly rows: readonly Row[];
}

export const getOrBuild: Group<GetOrBuildData> = {
  id: 'getorbuild',
  title: 'getOrBuild hits',
  async run(ctx) {
    const plan = planFor(ctx, { ops: 0, asyncOps: 10_000 }, { ops: 0, asyncOps: 50_000 });
    const data = dataset(N, 'string');
    const keys = data.keys as readonly string[];
    const byKey = new Map(keys.map((key, i) => [key, data.values[i] as Value]));
    const order = randomIndices(plan.asyncOps, N, 7);
    const rows = await compare(
      ctx,
      `${count(N)} keys`,
      CONTENDERS,
      [HIT],
      async (contender): Promise<Prepared | string> => {
        let builds = 0;
        const build = async (key: string): Promise<Value> => {
          builds++;
          return byKey.get(key) ?? { id: -1, name: key };
        };
        const { target, read, close } = await contender.open(build);
        // The gate: the first read of each key builds it once; later reads are hits, build nothing
        // and return the value; a new key builds once.
        for (const key of keys) await read(key);
        let problem = builds === N ? undefined : `filling ${N} keys built ${builds} times`;
        builds = 0;
        for (let i = 0; i < N && problem === undefined; i += 97) {
          const got = await read(keys[i] as string);
          if (!isDeepStrictEqual(got, data.values[i])) problem = `read(${keys[i]}) returned ${JSON.stringify(got)}`;
        }
        if (problem === undefined && builds !== 0) problem = `hits called the builder ${builds} times`;
        if (problem === undefined && !isDeepStrictEqual(await read('new key'), { id: -1, name: 'new key' })) problem = 'a miss did not return the built value';
        const prepared = await gated({ close }, problem, { c: target, keys, order, build });
        return typeof prepared === 'string' ? prepared : { ...prepared, expressions: { [HIT.id]: contender.expression } };
      },
      plan,
    );
    return { plan, rows: rows.get(HIT.id) ?? [] };
  },
  render(data) {
    const { markdown, chart } = workloadSection({
      heading: 'Hits',
      file: 'bench-getorbuild.svg',
      chartTitle: 'getOrBuild / memoized reads, hits',
      workloads: [HIT],
      rows: { [HIT.id]: data.rows },
      baseline: floorName,
    });
    return {
      markdown: [
        `${count(N)} string keys, each read once through the implementation's own read-through call (which builds and stores it) before the gate: every key must have been built exactly once, reads of stored keys must return their values without calling the builder, and a new key must return its built value. Then ${count(data.plan.asyncOps)} reads of stored keys per timed run, each awaited before the next, ${runsText(data.plan.counts)}, interleaved. Every call is spelled as its documentation spells it (bentocache and cache-manager take a closure that builds the value). The floor is an \`async\` function that reads a \`Map\`. \`cachegraph memoize\` is \`manager.memoize(build)\` called like \`p-memoize\`'s function: its keys are the encoded arguments, with the function's identity in front, so it does more per call than a function keyed by its first argument.`,
        markdown,
      ].join('\n\n'),
      charts: [chart],
      targets: memoTargets(data.rows),
    };
  },
};

/** Issue 4's targets: a memoized hit at least as fast as p-memoize's, and 5× bentocache's getOrSet. */
function memoTargets(rows: readonly Row[]): Target[] {
  const ours = 'cachegraph memoize';
  return [
    { what: 'memoized hit: cachegraph memoize time ÷ p-memoize', short: 'memo hit ÷ p-memoize', value: ratioByName(rows, ours, 'p-memoize'), limit: 1, unit: '×' },
    {
      what: 'memoized hit: cachegraph memoize time ÷ bentocache getOrSet (at least 5× faster)',
      short: 'memo hit ÷ bentocache',
      value: ratioByName(rows, ours, 'bentocache getOrSet (memory)'),
      limit: 0.2,
      unit: '×',
    },
  ];
}
