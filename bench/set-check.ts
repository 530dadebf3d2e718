/**
 * What `codec.check()` adds to `cache.set()`.
 *
 * `cache.set()` calls the codec's `check` on every key and value so an unencodable value
 * fails at `set()`, naming the key, instead of failing a save later. This measures that
 * cost for typical values against the two things it should be compared with: the
 * `Map.set` a cache does anyway, and encoding the same value (what a save pays per entry).
 *
 * Run: npx tsx bench/set-check.ts
 *
 * Method: every case is warmed up, then timed in batches sized to take about 20 ms;
 * the reported figure is the median of 9 batches, in nanoseconds per operation.
 */

import v8 from 'node:v8';
import { checkJson, checkV8 } from './built.js';

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
console.log(`\n(sink ${sink % 2})`);
