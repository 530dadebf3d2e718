/**
 * What `codec.check()` adds to `cache.set()`.
 *
 * `cache.set()` calls the codec's `check` on every key and value so an unencodable value
 * fails at `set()`, naming the key, instead of failing a save later. This measures that
 * cost for typical values against the two things it should be compared with: the
 * `Map.set` a cache does anyway, and encoding the same value (what a save pays per entry).
 *
 * Then where the time of a tracked `cache.set()` goes: the same writes (10 000 of 30 000
 * string keys at random, values `{ id, name }`, each cache saved once before) through `Map.set`, a `persistent: false` cache, a
 * persistent cache whose codec has no `check` (change tracking alone), the default v8 codec
 * (check and tracking), and the same with AutoSync on (the default configuration).
 *
 * Run: npm run bench:check
 *
 * Method: every case is warmed up, then timed in batches sized to take about 20 ms;
 * the reported figure is the median of 9 batches, in nanoseconds per operation. The
 * `cache.set()` cases run interleaved, round by round, and report the median of 9 rounds.
 */

import v8 from 'node:v8';
import { CacheManager, checkJson, checkV8, MemoryStore, v8Codec } from './built.js';

const RUNS = 9;
const BATCH_TARGET_NS = 20_000_000;

/** Defeats dead-code elimination: every measured call feeds it. */
let sink = 0;

function nsPerOp(operation: (i: number) => unknown): number {
  // Warm-up, which also sizes the batch: long enough to dwarf the timer's resolution.
  let iterations = 1_000;
  for (;;) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (operation(i) !== undefined) sink++;
    const elapsed = Number(process.hrtime.bigint() - start);
    if (elapsed >= BATCH_TARGET_NS / 4) {
      iterations = Math.max(1, Math.round((iterations * BATCH_TARGET_NS) / elapsed));
      break;
    }
    iterations *= 4;
  }
  const samples: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (operation(i) !== undefined) sink++;
    samples.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(RUNS / 2)] as number;
}

/** A ~1 KB record: nested objects and arrays, strings and numbers, JSON-compatible. */
function kilobyteRecord(): Record<string, unknown> {
  return {
    id: 'order-000123',
    createdAt: '2024-05-01T12:00:00.000Z',
    customer: { id: 42, name: 'Ada Lovelace', email: 'ada@example.com', tier: 'gold', tags: ['vip', 'eu', 'newsletter'] },
    shipping: { street: '12 Analytical Engine Road', city: 'London', zip: 'N1 9GU', country: 'GB', express: true },
    items: Array.from({ length: 6 }, (_, i) => ({
      sku: `SKU-${1000 + i}`,
      title: `Item number ${i} with a name`,
      qty: i + 1,
      price: 9.99 * (i + 1),
      attributes: { color: 'blue', size: 'M' },
    })),
    totals: { net: 209.79, tax: 41.96, gross: 251.75, currency: 'EUR' },
    notes: null,
  };
}

const values: [string, unknown][] = [
  ['number', 12_345.678],
  ['short string', 'user:4711'],
  ['small object', { id: 17, name: 'Ada', tags: ['a', 'b', 'c'] }],
  ['1 KB object', kilobyteRecord()],
];

const map = new Map<number, unknown>();
const rows: string[][] = [];
for (const [label, value] of values) {
  const setNs = nsPerOp((i) => map.set(i & 1023, value));
  const v8CheckNs = nsPerOp(() => checkV8(value));
  const jsonCheckNs = nsPerOp(() => checkJson(value));
  const serializeNs = nsPerOp(() => v8.serialize(value));
  const stringifyNs = nsPerOp(() => JSON.stringify(value));
  const bytes = v8.serialize(value).length;
  rows.push([
    `${label} (${bytes} B)`,
    setNs.toFixed(1),
    v8CheckNs.toFixed(1),
    jsonCheckNs.toFixed(1),
    serializeNs.toFixed(1),
    stringifyNs.toFixed(1),
    (v8CheckNs / setNs).toFixed(2),
    (v8CheckNs / serializeNs).toFixed(3),
    (jsonCheckNs / stringifyNs).toFixed(3),
  ]);
}

const header = [
  'value (v8 size)',
  'Map.set',
  'checkV8',
  'checkJson',
  'v8.serialize',
  'JSON.stringify',
  'checkV8/set',
  'checkV8/serialize',
  'checkJson/stringify',
];
const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');

console.log(`cachegraph bench/set-check: ns/op, median of ${RUNS} runs (${process.version}, ${process.arch})\n`);
console.log(line(header));
console.log(widths.map((width) => '-'.repeat(width)).join('  '));
for (const row of rows) console.log(line(row));

// Where a tracked set's time goes.
const KEYS = 10_000;
/**
 * Entries each cache holds: three times the keys written, so that at most a third of them
 * changes between two saves and the cache keeps listing changed keys one by one (past half,
 * a cache on an unshared store counts every entry as changed and lists none).
 */
const ENTRIES = 3 * KEYS;
const OPS = 1_000_000;
const keys = Array.from({ length: ENTRIES }, (_, i) => `user:${i}`);
const records = keys.map((name, id) => ({ id, name }));
const order = new Uint32Array(OPS);
for (let i = 0, x = 12_345; i < OPS; i++) {
  x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
  order[i] = x % KEYS;
}
/** The v8 codec without its `check`: what a tracked set costs without the codec's walk. */
const uncheckedV8 = { name: 'v8 (no check)', encode: v8Codec.encode, decode: v8Codec.decode };
const setters: [string, { set(key: string, value: unknown): unknown }][] = [['Map.set', new Map<string, unknown>()]];
const managers: CacheManager[] = [];
for (const [label, persistent, codec, autoSync] of [
  ['cache.set, persistent: false', false, v8Codec, false],
  ['cache.set, tracked, codec without check', true, uncheckedV8, false],
  ['cache.set, tracked, v8 codec (check)', true, v8Codec, false],
  ['cache.set, tracked, v8 codec, AutoSync on', true, v8Codec, true],
] as const) {
  const manager = new CacheManager({ name: `set-check-${managers.length}`, store: new MemoryStore(), codec, ...(autoSync ? {} : { autoSync: false }) });
  managers.push(manager);
  setters.push([label, await manager.registerCache<string, unknown>('bench', { persistent })]);
}
for (const [, target] of setters) for (let i = 0; i < ENTRIES; i++) target.set(keys[i] as string, records[i]);
// Saved once: from then on each write is recorded key by key (before its first save, a cache
// written since it was empty records none).
for (const manager of managers) await manager.save('bench');
const rounds = new Map<string, number[]>(setters.map(([label]) => [label, []]));
for (let round = 0; round < RUNS + 2; round++) {
  for (const [label, target] of setters) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < OPS; i++) {
      const at = order[i] as number;
      target.set(keys[at] as string, records[at]);
    }
    // The first two rounds warm up.
    if (round >= 2) rounds.get(label)?.push(Number(process.hrtime.bigint() - start) / OPS);
  }
}
const median = (samples: number[]): number => samples.sort((a, b) => a - b)[samples.length >> 1] as number;
const mapNs = median(rounds.get('Map.set') ?? []);
console.log(`\nA set of an existing key, ${KEYS.toLocaleString('en')} of ${ENTRIES.toLocaleString('en')} string keys at random, values { id, name }: ns/op, median of ${RUNS} rounds\n`);
for (const [label, samples] of rounds) {
  const ns = median(samples);
  console.log(`${label.padEnd(44)} ${ns.toFixed(1).padStart(7)}  ${(ns / mapNs).toFixed(2)} × Map.set`);
}
for (const manager of managers) await manager.close();
console.log(`\n(sink ${sink % 2})`);
