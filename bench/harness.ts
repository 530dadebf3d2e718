// A small benchmark harness: warm-up, several timed runs, median and spread.
// Benchmarks compare implementations in the same process and report ratios, not absolutes.
import { execFileSync } from 'node:child_process';
import os from 'node:os';

export interface Result {
  readonly name: string;
  /** Median nanoseconds per operation. */
  readonly nsPerOp: number;
  /** (max - min) / median over the runs, as a fraction. */
  readonly spread: number;
}

/** A {@link Result} with every timed run kept, for ranges and charts. */
export interface Timing extends Result {
  /** ns/op of each timed run, in run order. */
  readonly samples: readonly number[];
}

/** How many untimed and timed runs a measurement makes. */
export interface RunCounts {
  readonly runs: number;
  readonly warmup: number;
}

/** Runs `ops` operations and returns how many of them produced a value (the sink's input). */
export type Loop = (ops: number) => number;
/** {@link Loop} for operations that return promises, awaited one after the other. */
export type AsyncLoop = (ops: number) => Promise<number>;

/**
 * Everything the timed loops produced. Printed at the end of a run (see {@link sinkLine}) so
 * no operation's result is dead code that V8 could drop.
 */
let sink = 0;

/** A line to print once the measurements are over: it keeps every loop's result observable. */
export function sinkLine(): string {
  return `(sink ${sink})`;
}

let compiled = 0;

/**
 * Compiles a loop that evaluates `expression` for `i` from 0 to `ops - 1`, with the names of
 * `scope` in scope, and counts the results that are not `undefined`.
 *
 * Each call compiles new source (`new Function`, with a unique comment so V8's eval cache does
 * not hand back an earlier copy). The loop therefore has type feedback of its own: its call
 * into the implementation under test stays monomorphic and can be inlined, as it would be at a
 * call site in an application that uses one cache type. One loop shared by every
 * implementation (`fn(i)` in a common function) turns megamorphic after the fourth, and then
 * adds the same few nanoseconds of indirect call to every operation, which flattens the very
 * ratios this harness exists to report.
 */
function compile(expression: string, scope: Readonly<Record<string, unknown>>, awaited: boolean): unknown {
  const names = Object.keys(scope);
  const value = awaited ? `await (${expression})` : `(${expression})`;
  const source = [
    `// benchmark loop ${++compiled}`,
    `return ${awaited ? 'async ' : ''}function loop(ops) {`,
    '  let produced = 0;',
    `  for (let i = 0; i < ops; i++) if (${value} !== undefined) produced++;`,
    '  return produced;',
    '};',
  ].join('\n');
  const factory = new Function(...names, source) as (...values: unknown[]) => unknown;
  return factory(...names.map((name) => scope[name]));
}

/**
 * A {@link Loop} evaluating `expression` (e.g. `'cache.get(keys[order[i]])'`) with `scope`'s
 * names bound, compiled afresh (see {@link compile}).
 *
 * @example
 * const loop = opLoop('map.get(keys[i % n])', { map, keys, n: keys.length });
 */
export function opLoop(expression: string, scope: Readonly<Record<string, unknown>>): Loop {
  return compile(expression, scope, false) as Loop;
}

/** {@link opLoop} for an expression that returns a promise; each one is awaited before the next. */
export function asyncOpLoop(expression: string, scope: Readonly<Record<string, unknown>>): AsyncLoop {
  return compile(expression, scope, true) as AsyncLoop;
}

/** A {@link Timing} from the ns/op of each timed run. */
export function timing(name: string, samples: number[]): Timing {
  const { median, min, max } = summarize(samples);
  return { name, nsPerOp: median, spread: (max - min) / median, samples };
}

/** One run of `loop` over `ops` operations: ns per operation. */
export function timeOnce(loop: Loop, ops: number): number {
  const start = process.hrtime.bigint();
  sink += loop(ops);
  return Number(process.hrtime.bigint() - start) / ops;
}

/** {@link timeOnce} for an {@link AsyncLoop}. */
export async function timeOnceAsync(loop: AsyncLoop, ops: number): Promise<number> {
  const start = process.hrtime.bigint();
  sink += await loop(ops);
  return Number(process.hrtime.bigint() - start) / ops;
}

/** `warmup` untimed runs of `loop`, then `runs` timed ones of `ops` operations each. */
export function time(name: string, ops: number, loop: Loop, counts: RunCounts): Timing {
  const samples: number[] = [];
  for (let r = 0; r < counts.warmup + counts.runs; r++) {
    const ns = timeOnce(loop, ops);
    if (r >= counts.warmup) samples.push(ns);
  }
  return timing(name, samples);
}

/**
 * Times `fn(i)` for `ops` iterations, `runs` times after `warmup` untimed runs, and returns the
 * median ns/op. `fn` must return something derived from its work so it cannot be optimized away.
 * The loop around `fn` is compiled for this measurement alone (see {@link opLoop}).
 */
export function measure(name: string, ops: number, fn: (i: number) => unknown, runs = 7, warmup = 2): Timing {
  return time(name, ops, opLoop('fn(i)', { fn }), { runs, warmup });
}

/** Median, minimum and maximum of some samples. */
export function summarize(samples: readonly number[]): { median: number; min: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? Number.NaN) + (sorted[mid] ?? Number.NaN)) / 2;
  return { median, min: sorted[0] ?? Number.NaN, max: sorted[sorted.length - 1] ?? Number.NaN };
}

/** A Markdown table of results with each one's ratio to `baseline`. */
export function table(results: readonly Result[], baseline: string): string {
  const base = results.find((r) => r.name === baseline)?.nsPerOp ?? Number.NaN;
  const rows = results.map(
    (r) => `| ${r.name} | ${r.nsPerOp.toFixed(1)} | ±${(r.spread * 50).toFixed(0)}% | ${(r.nsPerOp / base).toFixed(2)}× |`,
  );
  return ['| implementation | ns/op (median) | spread | time vs ' + baseline + ' |', '|---|---:|---:|---:|', ...rows].join('\n');
}

/** Node version and CPU, to print with every result. */
export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `Node ${process.version}, V8 ${process.versions.v8}, ${cpu}, ${os.cpus().length} cores, ${os.platform()} ${os.arch()}`;
}

/** The commit measured, and whether the library had uncommitted changes. */
export function revision(): string {
  try {
    const run = (...args: string[]): string => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = run('status', '--porcelain', '--', 'lib') !== '';
    return `${run('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in lib/' : ''}`;
  } catch {
    return 'unknown revision';
  }
}
