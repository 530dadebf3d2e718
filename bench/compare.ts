// Runs workloads on several implementations: each is opened, filled and passed through the
// correctness gate, then the timed runs of all of them are interleaved.
import { asyncOpLoop, opLoop, timeOnce, timeOnceAsync, timing, type AsyncLoop, type Loop, type RunCounts } from './harness.js';
import { count, type BenchContext, type Row } from './report.js';
import type { Role } from './subjects.js';

/** A timed operation, as an expression over `i` (see `opLoop`). */
export interface Workload {
  readonly id: string;
  readonly title: string;
  /** Evaluated once per operation; may name anything in the contender's scope. */
  readonly expression: string;
}

/** Anything that can be compared: a name, a role, sync or async. */
export interface Contender {
  readonly name: string;
  readonly role: Role;
  readonly async: boolean;
}

/** A contender made ready for timing: what its expressions see, and how to let it go. */
export interface Prepared {
  readonly scope: Readonly<Record<string, unknown>>;
  /** This contender's own spelling of some workloads, by workload id. */
  readonly expressions?: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

/** How many operations per timed run (async operations are slower: fewer), and how many runs. */
export interface Plan {
  readonly ops: number;
  readonly asyncOps: number;
  readonly counts: RunCounts;
}

/**
 * A group's {@link Plan}: its operations per run, quick or full, and the same run counts for
 * every group (many short runs, so that the median leaves bursts of load out).
 */
export function planFor(ctx: BenchContext, quick: Omit<Plan, 'counts'>, full: Omit<Plan, 'counts'>): Plan {
  return ctx.quick ? { ...quick, counts: { runs: 5, warmup: 1 } } : { ...full, counts: { runs: 15, warmup: 3 } };
}

/** What a group that compares implementations on several datasets keeps: its plan and a cell per dataset. */
export interface Cells<C> {
  readonly plan: Plan;
  readonly cells: readonly C[];
}

/** Longest a timed run should take (see `compare`), ns. */
const MAX_RUN_NS = 300e6;
/** Fewest operations per run, however slow. */
const MIN_OPS = 1_000;

/** A measurement's name: what `--filter` matches and logs print. */
const measurement = (label: string, workload: Workload, contender: Contender): string => `${label} / ${workload.title} / ${contender.name}`;

/** Whether `--filter` leaves any measurement of these contenders and workloads on `label`'s data. */
export function selects(ctx: BenchContext, label: string, contenders: readonly Contender[], workloads: readonly Workload[]): boolean {
  return ctx.filter === undefined || contenders.some((c) => workloads.some((w) => ctx.filter?.test(measurement(label, w, c))));
}

/**
 * Times every workload on every contender and returns the rows of each workload, in
 * contender order. `prepare` fills a contender and checks it; it returns a reason instead
 * when the contender cannot run here or fails the gate, and the contender is then reported,
 * not timed. `label` names the dataset in logs and in `--filter` matches.
 *
 * Every contender is prepared first; then, workload by workload, the runs are interleaved:
 * each round runs every contender once, starting with a different one each round. A burst of
 * load from another process then lands on all of them alike instead of on whichever happened
 * to be running, and the median of many short runs leaves such bursts out.
 */
export async function compare<C extends Contender>(
  ctx: BenchContext,
  label: string,
  contenders: readonly C[],
  workloads: readonly Workload[],
  prepare: (contender: C) => Promise<Prepared | string>,
  plan: Plan,
): Promise<Map<string, Row[]>> {
  const wanted = (workload: Workload, contender: Contender): boolean => selects(ctx, label, [contender], [workload]);
  const ready = new Map<C, Prepared>();
  const notes = new Map<C, string>();
  const rows = new Map<string, Row[]>();
  try {
    for (const contender of contenders) {
      if (!workloads.some((workload) => wanted(workload, contender))) continue;
      const prepared = await prepare(contender);
      if (typeof prepared === 'string') {
        ctx.log(`  ${label} / ${contender.name}: ${prepared}`);
        notes.set(contender, prepared);
      } else ready.set(contender, prepared);
    }
    for (const workload of workloads) {
      const active = [...ready].filter(([contender]) => wanted(workload, contender));
      const loops = active.map(([contender, prepared]) => {
        const expression = prepared.expressions?.[workload.id] ?? workload.expression;
        return contender.async ? asyncOpLoop(expression, prepared.scope) : opLoop(expression, prepared.scope);
      });
      const samples = active.map((): number[] => []);
      const ops = active.map(([contender]) => (contender.async ? plan.asyncOps : plan.ops));
      for (let round = 0; round < plan.counts.warmup + plan.counts.runs; round++) {
        for (let k = 0; k < active.length; k++) {
          const j = (k + round) % active.length;
          const contender = active[j]?.[0];
          const loop = loops[j];
          const n = ops[j] ?? 0;
          if (contender === undefined || loop === undefined) continue;
          const ns = contender.async ? await timeOnceAsync(loop as AsyncLoop, n) : timeOnce(loop as Loop, n);
          if (round >= plan.counts.warmup) samples[j]?.push(ns);
          // A contender far slower than the rest would hold the suite up for minutes: after its
          // first (warm-up) run it makes fewer operations per run, enough for MAX_RUN_NS.
          else if (round === 0 && ns * n > MAX_RUN_NS) ops[j] = Math.max(MIN_OPS, Math.floor(MAX_RUN_NS / ns));
        }
      }
      const timings = new Map(active.map(([contender], j) => [contender, timing(measurement(label, workload, contender), samples[j] ?? [])]));
      const reduced = new Map(active.map(([contender], j) => [contender, ops[j] ?? 0]));
      rows.set(
        workload.id,
        contenders.map((contender): Row => {
          const { name, role } = contender;
          const measured = timings.get(contender);
          if (measured !== undefined) {
            ctx.log(`  ${measured.name}: ${measured.nsPerOp.toFixed(1)} ns/op`);
            const made = reduced.get(contender) ?? 0;
            const planned = contender.async ? plan.asyncOps : plan.ops;
            return made < planned ? { name, role, timing: measured, note: `${count(made)} operations per run, not ${count(planned)}: too slow` } : { name, role, timing: measured };
          }
          return { name, role, note: notes.get(contender) ?? 'filtered out' };
        }),
      );
    }
  } finally {
    for (const prepared of ready.values()) await prepared.close();
    globalThis.gc?.();
  }
  return rows;
}

/**
 * What `prepare` returns once the gate has run: the contender ready for timing, or, when the
 * gate found `problem`, the reason it is not scored (and the instance closed).
 */
export async function gated(instance: { close(): Promise<void> }, problem: string | undefined, scope: Readonly<Record<string, unknown>>): Promise<Prepared | string> {
  if (problem === undefined) return { scope, close: () => instance.close() };
  await instance.close();
  return `not scored: failed the correctness gate (${problem})`;
}
