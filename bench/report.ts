// What every benchmark group shares: its contract with bench/run.ts, the formatting of numbers
// and comparison tables, and the generated region of docs/benchmarks.md.
import type { Timing } from './harness.js';
import { summarize } from './harness.js';
import type { Role } from './subjects.js';
import { barChart, type Bar, type BarGroup, type Tone } from './svg.js';

/** What a group is told when it runs. */
export interface BenchContext {
  /** Smoke mode: smaller data, fewer runs; the numbers are only indicative. */
  readonly quick: boolean;
  /** Only measurements whose name matches run (`--filter=`); the rest are reported as skipped. */
  readonly filter: RegExp | undefined;
  /** Progress, on stderr. */
  log(message: string): void;
}

/** A target of issue 6, met when `value <= limit`. */
export interface Target {
  /** What is compared, e.g. `'unbounded get, 10 000 string keys: time ÷ Map.get'`. */
  readonly what: string;
  /** The same, short enough for a chart label, e.g. `'get, 10k string keys'`. */
  readonly short: string;
  readonly value: number;
  readonly limit: number;
  /** How `value` and `limit` print: `'×'` (a ratio) or a unit such as `'ms'`. */
  readonly unit: string;
}

/** A group's part of docs/benchmarks.md. */
export interface Section {
  readonly markdown: string;
  /** Written next to the document; `file` is a bare file name (`bench-ops.svg`). */
  readonly charts: readonly { readonly file: string; readonly svg: string }[];
  readonly targets: readonly Target[];
}

/** One benchmark group: measures, then renders what it measured. */
export interface Group<D> {
  /** Also the name of its results file and of its npm script (`bench:<id>`). */
  readonly id: string;
  readonly title: string;
  /** Extra node flags its process needs. */
  readonly nodeFlags?: readonly string[];
  run(ctx: BenchContext): Promise<D>;
  render(data: D): Section;
}

/** A results file: a group's data and where and when it was measured. */
export interface Envelope<D = unknown> {
  readonly group: string;
  readonly machine: string;
  readonly revision: string;
  readonly date: string;
  readonly quick: boolean;
  /** One-minute load average before and after the group ran. */
  readonly load: readonly [number, number];
  readonly seconds: number;
  readonly data: D;
}

/** One row of a comparison: a timing, or why there is none. */
export interface Row {
  readonly name: string;
  readonly role: Role;
  readonly timing?: Timing;
  /** Why it was not measured or not scored, or (with a timing) how its measurement differed. */
  readonly note?: string;
}

// ------------------------------------------------------------------ numbers

/** `1234567` → `'1.23 M'`. */
export function si(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (x >= 1e9) return `${(x / 1e9).toPrecision(3)} G`;
  if (x >= 1e6) return `${(x / 1e6).toPrecision(3)} M`;
  if (x >= 1e3) return `${(x / 1e3).toPrecision(3)} k`;
  return x.toPrecision(3);
}

/** ns/op → ops/s, as `'12.3 M'`. */
export const opsPerSecond = (nsPerOp: number): string => si(1e9 / nsPerOp);

/** A figure with three significant digits, no exponent. */
export function fixed(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
  return x.toFixed(digits);
}

/** `'1 warm-up run and 15 timed runs'`. */
export function runsText(counts: { readonly warmup: number; readonly runs: number }): string {
  const runs = (n: number, kind: string): string => `${n} ${kind} run${n === 1 ? '' : 's'}`;
  return `${runs(counts.warmup, 'warm-up')} and ${runs(counts.runs, 'timed')}`;
}

export const times = (ratio: number): string => (Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : 'n/a');

/** The min–max range of some samples. */
export function range(samples: readonly number[]): string {
  const { min, max } = summarize(samples);
  return `${fixed(min)}–${fixed(max)}`;
}

/** `12 345` with a thin space as the thousands separator, as the docs write them. */
export const count = (n: number): string => n.toLocaleString('en').replace(/,/g, ' ');

/** A Markdown table; `align` has one `'l'` or `'r'` per column. */
export function markdownTable(header: readonly string[], align: string, rows: readonly (readonly string[])[]): string {
  const rule = [...align].map((a) => (a === 'r' ? '---:' : '---'));
  return [header, rule, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

// -------------------------------------------------------------- comparisons

/** Bar colours for rows in order: the first of ours in full colour, later variants of ours lighter. */
export function tones(roles: readonly Role[]): Tone[] {
  let ours = 0;
  return roles.map((role) => (role === 'ours' ? (ours++ === 0 ? 'ours' : 'ours2') : role));
}

/** The fastest peer of `rows` that was measured. */
export function bestPeer(rows: readonly Row[]): Row | undefined {
  let best: Row | undefined;
  for (const row of rows) {
    if (row.role === 'peer' && row.timing !== undefined && (best?.timing === undefined || row.timing.nsPerOp < best.timing.nsPerOp)) best = row;
  }
  return best;
}

/**
 * `row`'s time ÷ `base`'s: the median of the ratios of their runs round by round (the runs
 * of one round are back to back, so load from other processes falls on both alike), or the
 * ratio of their medians when the runs do not pair up. NaN when either was not measured.
 */
export function ratioOf(row: Row | undefined, base: Row | undefined): number {
  const a = row?.timing;
  const b = base?.timing;
  if (a === undefined || b === undefined) return Number.NaN;
  if (a.samples.length !== b.samples.length || a.samples.length === 0) return a.nsPerOp / b.nsPerOp;
  return summarize(a.samples.map((ns, i) => ns / (b.samples[i] ?? Number.NaN))).median;
}

/** {@link ratioOf} the rows called `name` and `baseline`. */
export function ratioByName(rows: readonly Row[], name: string, baseline: string): number {
  return ratioOf(
    rows.find((row) => row.name === name),
    rows.find((row) => row.name === baseline),
  );
}

/**
 * Table rows comparing implementations on one workload: ops/s, ns/op (median and min–max of
 * the runs), time ÷ the baseline and time ÷ the fastest peer. `lead`: cells put in front of
 * each row (e.g. the workload's name).
 */
export function comparisonRows(rows: readonly Row[], baseline: string, lead: readonly string[] = []): string[][] {
  const base = rows.find((row) => row.name === baseline);
  const best = bestPeer(rows);
  return rows.map((row, i) => {
    const first = lead.map((cell) => (i === 0 ? cell : ''));
    const bold = row.role === 'ours' ? `**${row.name}**` : row.name;
    if (row.timing === undefined) return [...first, bold, row.note ?? 'not measured', '', '', '', ''];
    const name = row.note === undefined ? bold : `${bold} (${row.note})`;
    const t = row.timing;
    return [...first, name, opsPerSecond(t.nsPerOp), fixed(t.nsPerOp), range(t.samples), times(ratioOf(row, base)), times(ratioOf(row, best))];
  });
}

/** The header matching {@link comparisonRows}. */
export function comparisonHeader(baseline: string, lead: readonly string[] = []): string[] {
  return [...lead, 'implementation', 'ops/s', 'ns/op (median)', 'range of runs (ns/op)', `time ÷ ${baseline}`, 'time ÷ best peer'];
}

/** A chart group of ops/s bars for one workload, annotated with time ÷ the baseline. */
export function comparisonBars(title: string, rows: readonly Row[], baseline: string): BarGroup {
  const base = rows.find((row) => row.name === baseline);
  const measured = rows.filter((row) => row.timing !== undefined);
  const colours = tones(measured.map((row) => row.role));
  const bars: Bar[] = measured.map((row, i) => {
    const ns = row.timing?.nsPerOp ?? Number.NaN;
    return { label: row.name, value: 1e9 / ns, text: `${opsPerSecond(ns)} ops/s`, note: `${times(ratioOf(row, base))} ${baseline} time`, tone: colours[i] ?? 'peer' };
  });
  return { title, bars };
}

/**
 * One dataset's part of a comparison group: a heading, a chart with one bar group per workload,
 * and a table with a block of rows per workload.
 */
export function workloadSection(options: {
  readonly heading: string;
  /** Chart file name (`bench-*.svg`). */
  readonly file: string;
  readonly chartTitle: string;
  readonly workloads: readonly { readonly id: string; readonly title: string }[];
  readonly rows: Readonly<Record<string, readonly Row[]>>;
  readonly baseline: string;
}): { markdown: string; chart: { file: string; svg: string } } {
  const { heading, file, workloads, rows, baseline } = options;
  const tableRows = workloads.flatMap((w) => comparisonRows(rows[w.id] ?? [], baseline, [w.title]));
  const svg = barChart({
    title: options.chartTitle,
    subtitle: 'Operations per second (median of the runs; longer is faster). Each workload has its own scale.',
    scale: 'group',
    groups: workloads.map((w) => comparisonBars(w.title, rows[w.id] ?? [], baseline)),
  });
  return {
    markdown: [`### ${heading}`, `![${heading}](${file})`, markdownTable(comparisonHeader(baseline, ['workload']), 'llrrrrr', tableRows)].join('\n\n'),
    chart: { file, svg },
  };
}

// ------------------------------------------------------------------- targets

/** `'pass'`, or `'**miss**'` and by how much. */
export function verdict(target: Target): string {
  if (!Number.isFinite(target.value)) return 'not measured';
  if (target.value <= target.limit) return 'pass';
  return `**miss**, ${times(target.value / target.limit)} the limit`;
}

const show = (value: number, unit: string): string => (unit === '×' ? times(value) : `${fixed(value)} ${unit}`);

/** The table of every target, and a chart of each one's value ÷ its limit. */
export function targetsSection(targets: readonly Target[]): Section {
  const rows = targets.map((t) => [t.what, show(t.value, t.unit), `≤ ${show(t.limit, t.unit)}`, verdict(t)]);
  const met = targets.filter((t) => t.value <= t.limit).length;
  const chart = barChart({
    title: 'Targets of issue 6: measured ÷ limit',
    subtitle: 'Left of the dashed line: met. Bars beyond 4× the limit are cut; the text gives the value.',
    scale: 'shared',
    clip: 4,
    reference: { value: 1, label: 'limit' },
    groups: [
      {
        title: `${met} of ${targets.length} met`,
        bars: targets.map((t) => ({
          label: t.short,
          value: t.value / t.limit,
          text: show(t.value, t.unit),
          note: `limit ${show(t.limit, t.unit)}`,
          tone: t.value <= t.limit ? 'pass' : 'miss',
        })),
      },
    ],
  });
  return {
    markdown: [
      `${met} of ${targets.length} targets met.`,
      '',
      markdownTable(['target', 'measured', 'limit', 'verdict'], 'lrrl', rows),
      '',
      '![Targets: measured ÷ limit](bench-targets.svg)',
    ].join('\n'),
    charts: [{ file: 'bench-targets.svg', svg: chart }],
    targets: [],
  };
}

// ------------------------------------------------------------------ document

export const BEGIN = '<!-- bench:begin -->';
export const END = '<!-- bench:end -->';

/** The line under a group's heading: where, when and how it was measured. */
export function provenance(envelope: Envelope): string {
  const quick = envelope.quick ? ' **Quick mode: indicative only.**' : '';
  return `_Measured ${envelope.date.slice(0, 16).replace('T', ' ')} UTC in ${Math.round(envelope.seconds)} s on ${envelope.machine}; revision ${envelope.revision}; load average ${envelope.load[0].toFixed(2)} before, ${envelope.load[1].toFixed(2)} after._${quick}`;
}

/** `document` with the text between {@link BEGIN} and {@link END} replaced by `region`. */
export function replaceRegion(document: string, region: string): string {
  const start = document.indexOf(BEGIN);
  const end = document.indexOf(END);
  if (start === -1 || end < start) throw new Error(`docs/benchmarks.md has no ${BEGIN} … ${END} region`);
  return `${document.slice(0, start + BEGIN.length)}\n${region.trim()}\n${document.slice(end)}`;
}
