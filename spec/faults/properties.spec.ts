// Property tests (fast-check) of the whole persistence path and of the dependency cascade:
//
// - random sequences of set / delete / clear / ttl / tick / save / reload / deleteSaved /
//   compact / restart against a model of what was acknowledged, on a FileStore and a
//   MemoryStore, in this process;
// - the same sequences in a child process killed with SIGKILL at a random command: a new
//   manager loads exactly the state of the last acknowledged save (or of the save in flight,
//   which may be durable before it is acknowledged);
// - invalidation on random DAGs of caches (some never registered) against a brute-force
//   reachability reference: which caches are rebuilt, each once, upstreams first;
// - codec round-trips: every value either codec accepts comes back faithfully, through the
//   codec and through a store's frame.
//
// Memoization key injectivity is a property of spec/memo/key.spec.ts ('properties').
// Counts: `npm test` runs few, `npm run test:soak` (CG_SOAK=1) many (spec/fixtures/soak.ts).
// A failure prints fast-check's seed and path; `fc.assert(..., { seed, path })` replays it.
import { expect } from 'chai';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import {
  CacheManager,
  FileStore,
  jsonCodec,
  MemoryStore,
  v8Codec,
  type Cache,
  type CacheInvalidatedEvent,
  type CacheStore,
  type Codec,
  type StoredEntry,
} from '../../lib/index.js';
import { checkJson, checkV8 } from '../../lib/codec/index.js';
import { killAllWriters, WriterChild } from '../fixtures/fault-helpers.js';
import { commandsArb, describeEntries, execute, Model, PROP_CACHE, START_TIME, writesStore, type Command, type CommandTarget, type PropKey, type PropValue } from '../fixtures/command-model.js';
import { runs } from '../fixtures/soak.js';

const COMMAND_CHILD = fileURLToPath(new URL('../fixtures/command-child.ts', import.meta.url));

/** What `store` holds for the property cache, without the entries expired at `now`. */
async function persisted(store: CacheStore, codec: Codec, now: number): Promise<string> {
  const snapshot = await store.load(PROP_CACHE, { codec, clock: { now: () => now } });
  const entries = (snapshot?.entries ?? []).filter(([, , expiresAt]) => expiresAt === 0 || expiresAt > now);
  return describeEntries(entries.map(([key, value]) => [key, value]));
}

/** One property run in this process: the commands against a real manager and the model. */
async function runInProcess(kind: 'file' | 'memory', commands: readonly Command[]): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-prop-'));
  const model = new Model();
  const clock = { now: () => model.now };
  const memory = kind === 'memory' ? new MemoryStore() : undefined;
  // In-thread compaction after most saves: compactions interleave with everything else.
  const openStore = (): CacheStore => memory ?? new FileStore({ dir, appendfsync: 'no', compaction: { minDeadRatio: 0.3, minDeadBytes: 0, worker: false } });
  let store = openStore();
  let manager = new CacheManager({ name: 'prop', store, autoSync: false, clock });
  let cache: Cache<PropKey, PropValue> = await manager.registerCache<PropKey, PropValue>(PROP_CACHE);
  const target: CommandTarget = {
    cache: () => cache,
    // The clock is the model's: apply() moves it.
    tick: () => undefined,
    save: () => manager.save(PROP_CACHE),
    reload: () => manager.reload(PROP_CACHE),
    deleteSaved: () => manager.deleteSaved(PROP_CACHE),
    compact: async () => (store instanceof FileStore ? store.compact(PROP_CACHE, { codec: manager.codec, clock }) : undefined),
    restart: async () => {
      await manager.close();
      if (memory === undefined) await store.close();
      store = openStore();
      manager = new CacheManager({ name: 'prop', store, autoSync: false, clock });
      cache = await manager.registerCache<PropKey, PropValue>(PROP_CACHE);
    },
  };
  try {
    for (const [i, command] of [...commands, { op: 'restart' } as const].entries()) {
      await execute(command, target);
      model.apply(command);
      const where = `after command ${i} ${JSON.stringify(command)}`;
      expect(describeEntries(cache.entries()), `memory ${where}`).to.equal(describeEntries(model.visible(model.live)));
      expect(cache.pendingChanges > 0, `pending changes ${where}`).to.equal(model.dirty);
      if (writesStore(command) || command.op === 'compact') {
        // What another process would load now: exactly what was acknowledged.
        const reader = memory ?? new FileStore({ dir, readOnly: true });
        try {
          expect(await persisted(reader, manager.codec, model.now), `store ${where}`).to.equal(describeEntries(model.visible(model.acked)));
        } finally {
          if (reader !== memory) await reader.close();
        }
      }
    }
  } finally {
    await manager.close().catch(() => undefined);
    if (memory === undefined) await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Child processes started ahead of time (a start under tsx takes ~0.5 s), waiting for a job. */
class Spares {
  readonly #ready: WriterChild[] = [];
  readonly #count: number;

  constructor(count: number) {
    this.#count = count;
  }

  take(): WriterChild {
    while (this.#ready.length <= this.#count) this.#ready.push(new WriterChild('-', 0, { mode: 'sync' }, 'pipe', COMMAND_CHILD));
    return this.#ready.shift() as WriterChild;
  }

  async close(): Promise<void> {
    await Promise.all(this.#ready.splice(0).map((child) => child.kill()));
  }
}

/** How the crash runs ended, for the summary line. */
const crashTally = { runs: 0, ack: 0, inFlight: 0, afterEnd: 0, beforeReady: 0, tornTail: 0 };

/**
 * One crash run: a child runs `commands` on a fresh directory, `paceMs` apart, and is killed
 * with SIGKILL `delayMs` after it reports command `target` done (-1: after it is ready); a
 * new manager must load the acknowledged state.
 */
async function crashRun(spares: Spares, commands: readonly Command[], target: number, delayMs: number, paceMs: number): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-prop-kill-'));
  const child = spares.take();
  const context = (): string => `commands ${JSON.stringify(commands)}, kill after ${target} + ${delayMs} ms; child said: ${child.lines.slice(-4).join(' | ')}; stderr: ${child.stderr.slice(-800)}`;
  try {
    // (Generous: on a loaded machine a start under tsx can take many seconds.)
    await child.waitFor((line) => line === 'STARTED' || line.startsWith('ERROR'), 90_000);
    child.process.stdin?.write(`${JSON.stringify({ dir, commands, paceMs })}\n`);
    const marker = target < 0 ? (line: string) => line.startsWith('READY') : (line: string) => line === `DONE ${target}`;
    await child.waitFor((line) => marker(line) || line.startsWith('ERROR'));
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    await child.kill();
    expect(child.lines.filter((line) => line.startsWith('ERROR')), context()).to.deep.equal([]);

    // The model, up to the last command the child finished, and one beyond (in flight).
    let lastDone = -1;
    for (const line of child.lines) if (line.startsWith('DONE ')) lastDone = Math.max(lastDone, Number(line.slice(5)));
    const model = new Model();
    for (const command of commands.slice(0, lastDone + 1)) model.apply(command);
    const acked = model.acked;
    const next = commands[lastDone + 1];
    if (next !== undefined) model.apply(next);
    const inFlight = model.acked;
    // Loaded at the time after every command: TTLs are absolute, whatever the clock of the loader.
    const end = new Model();
    for (const command of commands) end.apply(command);
    const allowed = [describeEntries(end.visible(acked)), describeEntries(end.visible(inFlight))];

    const store = new FileStore({ dir, appendfsync: 'always', compaction: false });
    const manager = new CacheManager({ name: 'prop-check', store, autoSync: false, clock: { now: () => end.now } });
    const warnings: string[] = [];
    manager.on('store:warning', (warning) => warnings.push(warning.kind));
    let after: string;
    try {
      const cache = await manager.registerCache<PropKey, PropValue>(PROP_CACHE);
      const got = describeEntries(cache.entries());
      expect(allowed, `loaded ${got}; ${context()}`).to.include(got);
      crashTally.runs++;
      if (got === allowed[0]) crashTally.ack++;
      else crashTally.inFlight++;
      if (child.lines.includes('END')) crashTally.afterEnd++;
      if (!child.lines.some((line) => line.startsWith('READY'))) crashTally.beforeReady++;
      if (warnings.includes('torn-tail')) crashTally.tornTail++;
      // The next save works and sticks.
      cache.set('after-the-crash', 1);
      await manager.save(PROP_CACHE);
      after = describeEntries(cache.entries());
    } finally {
      await manager.close();
      await store.close();
    }
    const reader = new FileStore({ dir, readOnly: true });
    try {
      expect(await persisted(reader, v8Codec, end.now), context()).to.equal(after);
    } finally {
      await reader.close();
    }
  } finally {
    if (child.process.exitCode === null && child.process.signalCode === null) await child.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ the DAG reference

interface Dag {
  readonly names: readonly string[];
  /** parents[j]: indexes (< j) of the caches j depends on. */
  readonly parents: ReadonlyArray<readonly number[]>;
  readonly registered: readonly boolean[];
  readonly root: number;
  readonly cascade: boolean;
  /** Per edge: declared with dependsOn at registration (else registerDependentCache first). */
  readonly viaDependsOn: readonly boolean[];
  /** Registration order (a permutation of the indexes). */
  readonly order: readonly number[];
}

/** Names no plain-object graph survives, among ordinary ones. */
const NAME_POOL = ['a', 'b', '__proto__', 'constructor', 'x/y', '..', 'ü', 'hasOwnProperty', 'toString', 'c d', 'e'];

const dagArb: fc.Arbitrary<Dag> = fc.integer({ min: 1, max: 9 }).chain((n) =>
  fc
    .record({
      names: fc.shuffledSubarray(NAME_POOL, { minLength: n, maxLength: n }),
      parents: fc.tuple(...Array.from({ length: n }, (_, j) => fc.subarray(Array.from({ length: j }, (_, i) => i)))),
      registered: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      root: fc.nat({ max: n - 1 }),
      cascade: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      viaDependsOn: fc.array(fc.boolean(), { minLength: n * n, maxLength: n * n }),
      order: fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: n, maxLength: n }),
    })
    .map((dag) => ({ ...dag, registered: dag.registered.map((r, i) => r || i === dag.root) })),
);

/** reach[u] holds every node reachable from u by one or more edges (brute force). */
function reachability(dag: Dag): Array<Set<number>> {
  const children = dag.names.map(() => [] as number[]);
  dag.parents.forEach((ps, j) => ps.forEach((p) => children[p]?.push(j)));
  return dag.names.map((_, u) => {
    const seen = new Set<number>();
    const stack = [...(children[u] ?? [])];
    while (stack.length > 0) {
      const v = stack.pop() as number;
      if (seen.has(v)) continue;
      seen.add(v);
      stack.push(...(children[v] ?? []));
    }
    return seen;
  });
}

async function checkInvalidation(dag: Dag): Promise<void> {
  const manager = new CacheManager({ name: 'dag', store: new MemoryStore(), autoSync: false });
  const built: string[] = [];
  try {
    const edgeFlag = (p: number, j: number): boolean => dag.registered[j] === true && dag.viaDependsOn[p * dag.names.length + j] === true;
    // Links not given as dependsOn are declared first, ghosts (never registered) included.
    for (const [j, ps] of dag.parents.entries()) for (const p of ps) if (!edgeFlag(p, j)) manager.registerDependentCache(dag.names[p] as string, dag.names[j] as string);
    let generation = 0;
    for (const j of dag.order) {
      if (dag.registered[j] !== true) continue;
      const name = dag.names[j] as string;
      const dependsOn = (dag.parents[j] ?? []).filter((p) => edgeFlag(p, j)).map((p) => dag.names[p] as string);
      const cache = await manager.registerCache<string, unknown>(name, {
        dependsOn,
        builder: () => {
          built.push(name);
          return [['generation', ++generation]];
        },
      });
      cache.set('mark', 'before');
    }
    built.length = 0;
    const events: CacheInvalidatedEvent[] = [];
    manager.on('cache:invalidated', (event) => events.push(event));
    const rootName = dag.names[dag.root] as string;

    const reach = reachability(dag);
    const affected = new Set([dag.root, ...(dag.cascade ? (reach[dag.root] ?? []) : [])]);
    const expected = [...affected].filter((i) => dag.registered[i] === true).map((i) => dag.names[i] as string);
    const indexOf = new Map(dag.names.map((name, i) => [name, i]));
    /** Whether `order` puts every node after the nodes it is reachable from. */
    const topological = (order: readonly string[]): boolean =>
      order.every((v, at) => order.slice(at + 1).every((later) => !(reach[indexOf.get(later) as number]?.has(indexOf.get(v) as number) ?? false)));

    // dependentsOf: every node reachable from the root, registered or not, upstreams first.
    const dependents = manager.dependentsOf(rootName);
    expect(new Set(dependents)).to.deep.equal(new Set([...(reach[dag.root] ?? [])].map((i) => dag.names[i])));
    expect(dependents).to.have.length(reach[dag.root]?.size ?? 0);
    expect(topological(dependents), `dependentsOf order ${dependents.join(', ')}`).to.equal(true);

    await manager.invalidate(rootName, { cascade: dag.cascade });

    expect(new Set(built)).to.deep.equal(new Set(expected));
    expect(built, 'each cache rebuilt once').to.have.length(expected.length);
    expect(topological(built), `rebuild order ${built.join(', ')}`).to.equal(true);
    expect(events.map((e) => e.name)).to.deep.equal(built);
    for (const event of events) {
      expect(event.cause).to.equal(event.name === rootName ? 'direct' : 'dependency');
      expect(event.source).to.equal(rootName);
    }
    for (const [i, name] of dag.names.entries()) {
      if (dag.registered[i] !== true) continue;
      const cache = manager.getCache<string, unknown>(name);
      expect(cache.get('mark'), name).to.equal(affected.has(i) ? undefined : 'before');
      expect(cache.has('generation'), name).to.equal(true);
    }
  } finally {
    await manager.close();
  }
}

// ------------------------------------------------------------------ codec values

/** Every kind of value the v8 codec keeps, nested, with shared references. */
const v8ValueArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.constantFrom(undefined, null, true, false, 0, -0, NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE),
    fc.double(),
    fc.bigInt(),
    fc.string({ unit: 'binary', maxLength: 20 }),
    // Lone surrogates: not valid UTF-8, still a JS string v8 must keep.
    fc.string({ unit: fc.constantFrom('\uD800', '\uDFFF', 'a', '\u0000'), maxLength: 6 }),
    fc.date({ noInvalidDate: true }),
    fc.tuple(fc.constantFrom('a+', '^x$', '\\d', '', '[/]'), fc.subarray(['g', 'i', 'm', 's', 'u', 'y'])).map(([source, flags]) => new RegExp(source, flags.join(''))),
    fc.oneof(
      fc.int8Array({ maxLength: 4 }),
      fc.uint8Array({ maxLength: 4 }),
      fc.uint8ClampedArray({ maxLength: 4 }),
      fc.int16Array({ maxLength: 4 }),
      fc.uint16Array({ maxLength: 4 }),
      fc.int32Array({ maxLength: 4 }),
      fc.uint32Array({ maxLength: 4 }),
      fc.float32Array({ maxLength: 4 }),
      fc.float64Array({ maxLength: 4 }),
      fc.bigInt64Array({ maxLength: 4 }),
      fc.bigUint64Array({ maxLength: 4 }),
    ),
    fc.uint8Array({ maxLength: 6 }).map((bytes) => Buffer.from(bytes)),
    fc.uint8Array({ maxLength: 6 }).map((bytes) => bytes.slice().buffer),
    fc.uint8Array({ maxLength: 6 }).map((bytes) => new DataView(bytes.slice().buffer)),
    fc.oneof(fc.double(), fc.string(), fc.boolean(), fc.bigInt()).map((value) => Object(value) as object),
    fc.tuple(fc.constantFrom(Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError), fc.string({ maxLength: 10 })).map(([Kind, message]) => new Kind(message)),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 4 }),
    fc.sparseArray(tie('node'), { maxLength: 6 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('node'), { maxKeys: 4, noNullPrototype: true }),
    fc.array(fc.tuple(tie('node'), tie('node')), { maxLength: 3 }).map((pairs) => new Map(pairs)),
    fc.array(tie('node'), { maxLength: 3 }).map((members) => new Set(members)),
    // The same object twice: v8 keeps the sharing.
    tie('node').map((shared) => ({ first: shared, second: shared })),
  ),
})).node;

/**
 * Asserts `decoded` equals `original` with prototypes, types, -0, NaN, holes and sharing.
 * (Null-prototype objects, which may come back with Object.prototype as documented, are
 * left out of the generated values; spec/codec.spec.ts covers them.)
 */
function expectFaithful(original: unknown, decoded: unknown): void {
  // A walk over both values checks what isDeepStrictEqual does not look at: sharing, and an
  // Error's class name and message.
  const pairs: Array<[unknown, unknown]> = [[original, decoded]];
  const seen = new Map<object, unknown>();
  while (pairs.length > 0) {
    const [a, b] = pairs.pop() as [unknown, unknown];
    if (typeof a !== 'object' || a === null) continue;
    if (seen.has(a)) {
      expect(seen.get(a) === b, 'a shared reference came back as a copy').to.equal(true);
      continue;
    }
    seen.set(a, b);
    if (a instanceof Error) {
      expect((b as Error).name).to.equal(a.name);
      expect((b as Error).message).to.equal(a.message);
    } else if (a instanceof Map) {
      const bs = [...(b as Map<unknown, unknown>)];
      [...a].forEach(([k, v], i) => pairs.push([k, bs[i]?.[0]], [v, bs[i]?.[1]]));
    } else if (a instanceof Set) {
      const bs = [...(b as Set<unknown>)];
      [...a].forEach((v, i) => pairs.push([v, bs[i]]));
    } else if (!ArrayBuffer.isView(a) && !(a instanceof ArrayBuffer)) {
      for (const key of Object.keys(a)) pairs.push([(a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]]);
    }
  }
  expect(isDeepStrictEqual(decoded, original), 'decoded differs (deep strict equality, prototypes included)').to.equal(true);
}

/**
 * Whether `value` holds an invalid Date anywhere: isDeepStrictEqual calls two invalid Dates
 * different (NaN !== NaN), so such values are checked by the explicit case instead.
 */
function hasInvalidDate(value: unknown): boolean {
  const stack = [value];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof Date) {
      if (Number.isNaN(v.getTime())) return true;
    } else if (v instanceof Map) for (const [k, x] of v) stack.push(k, x);
    else if (v instanceof Set) stack.push(...v);
    else if (!ArrayBuffer.isView(v)) stack.push(...Object.values(v));
  }
  return false;
}

/** Turns -0 into 0 (JSON has one zero; the json codec documents it). */
function positiveZeros(value: unknown): unknown {
  if (Object.is(value, -0)) return 0;
  if (Array.isArray(value)) return value.map(positiveZeros);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, positiveZeros(v)]));
  return value;
}

/** A store round-trip of one entry through the frame format (chunks, CRCs, codec). */
async function throughStore(codec: Codec, value: unknown): Promise<unknown> {
  const store = new MemoryStore();
  const entry: StoredEntry = ['k', value, 0];
  await store.save('codec', [entry], { codec, clock: { now: () => START_TIME } });
  const loaded = await store.load('codec', { codec, clock: { now: () => START_TIME } });
  return loaded?.entries[0]?.[1];
}

describe('Faults: properties (fast-check)', function () {
  this.timeout(300_000);

  describe('random command sequences against a model of what was acknowledged', function () {
    for (const kind of ['file', 'memory'] as const) {
      const numRuns = runs(kind === 'file' ? 60 : 100, kind === 'file' ? 1_500 : 3_000);
      it(`${kind === 'file' ? 'FileStore' : 'MemoryStore'}: memory follows every command, the store holds exactly the last acknowledged save, and a restart loads it (${numRuns} sequences)`, async function () {
        await fc.assert(
          fc.asyncProperty(commandsArb({ withRestart: true, withCompact: kind === 'file', maxLength: 40 }), (commands) => runInProcess(kind, commands)),
          { numRuns },
        );
      });
    }

    const crashRuns = runs(16, 200);
    it(`kill -9 of a child at a random command: a new manager loads the acknowledged state, and the next save works (${crashRuns} kills)`, async function () {
      const spares = new Spares(2);
      try {
        await fc.assert(
          fc.asyncProperty(
            commandsArb({ withRestart: false, withCompact: true, maxLength: 30 }),
            fc.nat(),
            fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 8 })),
            fc.integer({ min: 1, max: 3 }),
            (commands, pick, delayMs, paceMs) => crashRun(spares, commands, (pick % (commands.length + 1)) - 1, delayMs, paceMs),
          ),
          // Shrinking re-runs a child per step: stop at the first failure, whose seed is printed.
          { numRuns: crashRuns, endOnFailure: true },
        );
      } finally {
        await spares.close();
        killAllWriters();
      }
      console.log(
        `      crash property: ${crashTally.runs} kills; loaded the last acknowledged state ${crashTally.ack} times, the save in flight ${crashTally.inFlight} times, anything else 0; killed before the cache was ready ${crashTally.beforeReady}, after the last command ${crashTally.afterEnd}; torn tails cut ${crashTally.tornTail}`,
      );
      expect(crashTally.runs).to.equal(crashRuns);
    });
  });

  describe('invalidation on random DAGs against a brute-force reference', function () {
    const numRuns = runs(150, 5_000);
    it(`rebuilds exactly the registered caches reachable from the root, each once, after their upstreams, with one event each (${numRuns} graphs)`, async function () {
      await fc.assert(fc.asyncProperty(dagArb, checkInvalidation), { numRuns });
    });
  });

  describe('codec round-trips', function () {
    const numRuns = runs(300, 20_000);

    it(`v8: every supported type, nested and shared, is accepted by check() and comes back faithfully, through the codec and a store (${numRuns} values)`, async function () {
      await fc.assert(
        fc.asyncProperty(v8ValueArb, async (value) => {
          expect(checkV8(value)).to.equal(undefined);
          // (Invalid Dates, which the arbitrary leaves out, are kept too.)
          expect((v8Codec.decode(v8Codec.encode([new Date(Number.NaN)])) as Date[])[0]?.getTime()).to.be.NaN;
          expectFaithful(value, v8Codec.decode(v8Codec.encode(value)));
          expectFaithful(value, await throughStore(v8Codec, value));
        }),
        { numRuns },
      );
    });

    it(`v8: cycles through objects, arrays, Maps and Sets come back as the same cycles (${numRuns} values)`, function () {
      fc.assert(
        fc.property(fc.constantFrom('object', 'array', 'map', 'set'), v8ValueArb, (kind, payload) => {
          let value: object;
          if (kind === 'object') value = { payload } as Record<string, unknown>;
          else if (kind === 'array') value = [payload];
          else if (kind === 'map') value = new Map([['payload', payload]]);
          else value = new Set([payload]);
          if (kind === 'object') (value as Record<string, unknown>)['self'] = value;
          else if (kind === 'array') (value as unknown[]).push(value);
          else if (kind === 'map') (value as Map<string, unknown>).set('self', value);
          else (value as Set<unknown>).add(value);
          expect(checkV8(value)).to.equal(undefined);
          expectFaithful(value, v8Codec.decode(v8Codec.encode(value)));
        }),
        { numRuns },
      );
    });

    it(`v8: whatever check() accepts among arbitrary values comes back faithfully; what it refuses, it names (${numRuns} values)`, function () {
      fc.assert(
        fc.property(
          fc.anything({ withBigInt: true, withBoxedValues: true, withDate: true, withMap: true, withSet: true, withObjectString: true, withSparseArray: true, withTypedArray: true, withUnicodeString: true }).filter((value) => !hasInvalidDate(value)),
          (value) => {
            const problem = checkV8(value);
            if (problem === undefined) expectFaithful(value, v8Codec.decode(v8Codec.encode(value)));
            else expect(problem.reason).to.be.a('string').and.not.equal('');
          },
        ),
        { numRuns },
      );
    });

    it(`json: every JSON value is accepted and comes back equal (-0 as 0), through the codec and a store (${numRuns} values)`, async function () {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue(), async (value) => {
          expect(jsonCodec.check?.(value)).to.equal(undefined);
          expect(jsonCodec.decode(jsonCodec.encode(value))).to.deep.equal(positiveZeros(value));
          expect(await throughStore(jsonCodec, value)).to.deep.equal(positiveZeros(value));
        }),
        { numRuns },
      );
    });

    it(`json: whatever check() accepts among arbitrary values comes back equal; the rest is refused at check() and at encode() (${numRuns} values)`, function () {
      fc.assert(
        fc.property(fc.anything({ withBigInt: true, withDate: true, withMap: true, withSet: true, withSparseArray: true, withTypedArray: true, withBoxedValues: true }), (value) => {
          const problem = checkJson(value);
          if (problem === undefined) {
            expect(jsonCodec.decode(jsonCodec.encode(value))).to.deep.equal(positiveZeros(value));
          } else {
            expect(() => jsonCodec.encode(value)).to.throw();
          }
        }),
        { numRuns },
      );
    });
  });
});

