// A small benchmark harness: warm-up, several timed runs, median and spread.
// Benchmarks compare implementations in the same process and report ratios, not absolutes.
import os from 'node:os';

export interface Result {
  readonly name: string;
  /** Median nanoseconds per operation. */
  readonly nsPerOp: number;
  /** (max - min) / median over the runs, as a fraction. */
  readonly spread: number;
}

/**
 * Times `fn(i)` for `ops` iterations, `runs` times after `warmup` untimed runs, and returns the
 * median ns/op. `fn` must return something derived from its work so it cannot be optimized away.
 */
export function measure(name: string, ops: number, fn: (i: number) => unknown, runs = 7, warmup = 2): Result {
  let sink = 0;
  const times: number[] = [];
  for (let r = 0; r < warmup + runs; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) if (fn(i) === sink) sink++;
    const ns = Number(process.hrtime.bigint() - start) / ops;
    if (r >= warmup) times.push(ns);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)] ?? Number.NaN;
  const spread = ((times[times.length - 1] ?? 0) - (times[0] ?? 0)) / median;
  if (sink === -1) console.log(sink); // keeps `sink` observable
  return { name, nsPerOp: median, spread };
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
