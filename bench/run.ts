// The benchmark suite: runs each group in a process of its own, saves what it measured in
// bench/results/<group>.json, then regenerates the marked region of docs/benchmarks.md and the
// charts docs/bench-*.svg from every saved result (so one group can be re-run alone).
//
//   npm run bench                      every group (7–10 minutes on 2 cores)
//   npm run bench -- --quick           every group on small data, few runs (1–2 minutes);
//                                      writes to a scratch directory, not to docs/
//   npm run bench:ops                  one group (also: lru, getorbuild, cascade, heap, sync)
//   npm run bench -- ops --filter=get  only the measurements whose name matches (scratch output)
//   npm run bench -- --render          regenerate the document from the saved results only
//
// BENCH_QUICK=1 is the same as --quick.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cascade } from './cascade.js';
import { getOrBuild } from './getorbuild.js';
import { machine, revision, sinkLine } from './harness.js';
import { heap } from './heap.js';
import { lru } from './lru.js';
import { ops } from './ops.js';
import { provenance, replaceRegion, targetsSection, type BenchContext, type Envelope, type Group, type Section } from './report.js';
import { sync } from './sync.js';

const GROUPS: readonly Group<never>[] = [ops, lru, getOrBuild, cascade, heap, sync] as unknown as Group<never>[];

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);

interface Arguments {
  readonly groups: readonly Group<never>[];
  readonly quick: boolean;
  readonly filter: string | undefined;
  readonly renderOnly: boolean;
  /** Set in a group's own process. */
  readonly child: boolean;
}

function parse(argv: readonly string[]): Arguments {
  const names: string[] = [];
  let quick = process.env['BENCH_QUICK'] === '1';
  let filter: string | undefined;
  let renderOnly = false;
  let child = false;
  for (const arg of argv) {
    if (arg === '--quick') quick = true;
    else if (arg === '--render') renderOnly = true;
    else if (arg === '--child') child = true;
    else if (arg.startsWith('--filter=')) filter = arg.slice('--filter='.length);
    else if (arg.startsWith('-')) throw new Error(`unknown option ${arg} (options: --quick, --filter=<regexp>, --render)`);
    else names.push(arg);
  }
  const groups = names.length === 0 ? GROUPS : names.map((name) => GROUPS.find((g) => g.id === name) ?? fail(`unknown group ${name} (groups: ${GROUPS.map((g) => g.id).join(', ')})`));
  return { groups, quick, filter, renderOnly, child };
}

function fail(message: string): never {
  throw new Error(message);
}

/** Where results and the document go: the repository, or a scratch directory for partial runs. */
function destination(args: Arguments): { results: string; docs: string; scratch: boolean } {
  if (!args.quick && args.filter === undefined) return { results: path.join(here, 'results'), docs: path.join(root, 'docs'), scratch: false };
  const scratch = path.join(os.tmpdir(), 'cachegraph-bench-scratch');
  return { results: path.join(scratch, 'results'), docs: scratch, scratch: true };
}

async function runChild(group: Group<never>, args: Arguments, results: string): Promise<void> {
  const ctx: BenchContext = {
    quick: args.quick,
    filter: args.filter === undefined ? undefined : new RegExp(args.filter, 'i'),
    log: (message) => void process.stderr.write(`[${group.id}] ${message}\n`),
  };
  const loadBefore = os.loadavg()[0] ?? 0;
  // Read before measuring: what was loaded is what was measured, whatever is committed meanwhile.
  const measuredRevision = revision();
  const started = performance.now();
  const data = await group.run(ctx);
  const envelope: Envelope = {
    group: group.id,
    machine: machine(),
    revision: measuredRevision,
    date: new Date().toISOString(),
    quick: args.quick,
    load: [loadBefore, os.loadavg()[0] ?? 0],
    seconds: (performance.now() - started) / 1000,
    data,
  };
  await mkdir(results, { recursive: true });
  await writeFile(path.join(results, `${group.id}.json`), `${JSON.stringify(envelope, null, 1)}\n`);
  process.stderr.write(`[${group.id}] done in ${envelope.seconds.toFixed(0)} s ${sinkLine()}\n`);
}

async function readEnvelope(results: string, id: string): Promise<Envelope | undefined> {
  try {
    return JSON.parse(await readFile(path.join(results, `${id}.json`), 'utf8')) as Envelope;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Regenerates the marked region of benchmarks.md and the charts from every saved result. */
async function render(results: string, docs: string, scratch: boolean): Promise<string> {
  const documentPath = path.join(docs, 'benchmarks.md');
  if (scratch) await copyFile(path.join(root, 'docs', 'benchmarks.md'), documentPath);
  const sections: string[] = [];
  const targets: Section['targets'][number][] = [];
  const charts: Section['charts'][number][] = [];
  for (const group of GROUPS) {
    const envelope = await readEnvelope(results, group.id);
    sections.push(`## ${group.title} (\`npm run bench:${group.id}\`)`, '');
    if (envelope === undefined) {
      sections.push(`Not measured yet: run \`npm run bench:${group.id}\`.`, '');
      continue;
    }
    const section = group.render(envelope.data as never);
    sections.push(provenance(envelope), '', section.markdown, '');
    targets.push(...section.targets);
    charts.push(...section.charts);
  }
  const summary = targetsSection(targets);
  charts.push(...summary.charts);
  const region = [
    '<!-- Generated by bench/run.ts from bench/results/*.json: edit the code, not this text. -->',
    '',
    '## Targets',
    '',
    summary.markdown,
    '',
    ...sections,
  ].join('\n');
  await writeFile(documentPath, replaceRegion(await readFile(documentPath, 'utf8'), region));
  for (const chart of charts) await writeFile(path.join(docs, chart.file), chart.svg);
  return documentPath;
}

const args = parse(process.argv.slice(2));
const { results, docs, scratch } = destination(args);
if (args.child) {
  const [group] = args.groups;
  if (group === undefined || args.groups.length !== 1) throw new Error('--child takes exactly one group');
  await runChild(group, args, results);
} else {
  const failed: string[] = [];
  if (!args.renderOnly) {
    process.stderr.write(`${machine()}\n`);
    for (const group of args.groups) {
      // A process per group: no group inherits another's heap, JIT state or garbage.
      const passthrough = process.argv.slice(2).filter((arg) => arg.startsWith('--'));
      const child = spawnSync(process.execPath, [...process.execArgv, ...(group.nodeFlags ?? []), fileURLToPath(import.meta.url), group.id, '--child', ...passthrough], {
        stdio: 'inherit',
      });
      // The other groups still run, and the page is still rendered (with this group's last results).
      if (child.status !== 0) failed.push(`${group.id} (exit ${child.status ?? child.signal})`);
    }
  }
  const written = await render(results, docs, scratch);
  process.stderr.write(`wrote ${path.relative(process.cwd(), written) || written} and its charts${scratch ? ' (scratch: docs/ untouched)' : ''}\n`);
  if (failed.length > 0) {
    process.stderr.write(`failed: ${failed.join(', ')}\n`);
    process.exitCode = 1;
  }
}
