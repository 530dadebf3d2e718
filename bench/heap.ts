// Heap bytes per entry: each implementation filled with the same pre-allocated keys and values
// in a fresh process, heapUsed after a full GC minus heapUsed before it was created.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { count, fixed, markdownTable, times, tones, type Group, type Target } from './report.js';
import type { KeyKind } from './data.js';
import { cachegraph, cachegraphMemory, map, UNBOUNDED, type Role, type Subject } from './subjects.js';
import { barChart, type Bar } from './svg.js';

export const cachegraphUnsaved = cachegraph('cachegraph (persistent, unsaved: written since empty)', { persistent: true });
export const cachegraphSaved = cachegraph('cachegraph (persistent, after a save)', { persistent: true, settle: 'save' });
export const cachegraphRewritten = cachegraph('cachegraph (persistent, half the entries rewritten since a save)', { persistent: true, settle: 'save-and-rewrite-half' });
/** The implementations measured, in the order they are reported. */
export const HEAP_SUBJECTS: readonly Subject[] = [map, cachegraphMemory, cachegraphUnsaved, cachegraphSaved, cachegraphRewritten, ...UNBOUNDED.filter((s) => s.role === 'peer')];

/** What one child process reports. */
export interface HeapSample {
  /** heapUsed after minus before, bytes. */
  readonly heapBytes: number;
  /** external memory (ArrayBuffers, ...) after minus before, bytes. */
  readonly externalBytes: number;
  /** Why it is not scored. */
  readonly problem?: string;
}

interface Measured {
  readonly name: string;
  readonly role: Role;
  readonly kind: KeyKind;
  /** One per process. */
  readonly samples: readonly HeapSample[];
  readonly note?: string;
}

export interface HeapData {
  readonly entries: number;
  readonly results: readonly Measured[];
}

const child = fileURLToPath(new URL('./heap-child.ts', import.meta.url));

const perEntry = (m: Measured, entries: number): number => {
  const sorted = m.samples.map((s) => s.heapBytes).sort((a, b) => a - b);
  return (sorted[sorted.length >> 1] ?? Number.NaN) / entries;
};

export const heap: Group<HeapData> = {
  id: 'heap',
  title: 'Heap per entry',
  async run(ctx) {
    const entries = ctx.quick ? 50_000 : 1_000_000;
    // One process per row: repeated processes agreed within 1 % and doubled the time.
    const processes = 1;
    const flags = process.execArgv.includes('--expose-gc') ? process.execArgv : ['--expose-gc', ...process.execArgv];
    const results: Measured[] = [];
    for (const kind of ['string', 'integer'] as const) {
      for (const subject of HEAP_SUBJECTS) {
        const { name, role } = subject;
        if (kind === 'integer' && subject.stringKeysOnly) {
          results.push({ name, role, kind, samples: [], note: 'n/a: string keys only' });
          continue;
        }
        if (ctx.filter !== undefined && !ctx.filter.test(`${kind} / ${name}`)) continue;
        const samples: HeapSample[] = [];
        for (let p = 0; p < processes; p++) {
          const out = execFileSync(process.execPath, [...flags, child, name, String(entries), kind], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
          samples.push(JSON.parse(out) as HeapSample);
        }
        const problem = samples.find((s) => s.problem !== undefined)?.problem;
        const measured: Measured = problem === undefined ? { name, role, kind, samples } : { name, role, kind, samples: [], note: `not scored: failed the correctness gate (${problem})` };
        ctx.log(`  ${kind} keys / ${name}: ${fixed(perEntry(measured, entries))} bytes per entry`);
        results.push(measured);
      }
    }
    return { entries, results };
  },
  render(data) {
    const { entries } = data;
    const kinds = [...new Set(data.results.map((m) => m.kind))];
    const mapBytes = (kind: KeyKind): number => perEntry(data.results.find((m) => m.kind === kind && m.name === map.name) ?? { name: '', role: 'floor', kind, samples: [] }, entries);
    const rows = data.results.map((m) => {
      if (m.samples.length === 0) return [m.kind, m.role === 'ours' ? `**${m.name}**` : m.name, m.note ?? 'not measured', '', '', ''];
      const bytes = perEntry(m, entries);
      const external = (m.samples[0]?.externalBytes ?? 0) / entries;
      const all = m.samples.map((s) => fixed(s.heapBytes / entries)).join(', ');
      return [m.kind, m.role === 'ours' ? `**${m.name}**` : m.name, fixed(bytes), all, times(bytes / mapBytes(m.kind)), fixed(external)];
    });
    const groups = kinds.map((kind) => {
      const measured = data.results.filter((m) => m.kind === kind && m.samples.length > 0);
      const colours = tones(measured.map((m) => m.role));
      return {
        title: `${kind} keys`,
        bars: measured.map((m, i): Bar => {
          const bytes = perEntry(m, entries);
          return { label: m.name, value: bytes, text: `${fixed(bytes)} B`, note: `${times(bytes / mapBytes(kind))} Map`, tone: colours[i] ?? 'peer' };
        }),
      };
    });
    const short = new Map([
      [cachegraphMemory, 'persistent: false'],
      [cachegraphUnsaved, 'persistent, unsaved (written since empty)'],
      [cachegraphSaved, 'persistent, saved'],
      [cachegraphRewritten, 'persistent, half the entries rewritten since a save'],
    ]);
    const targets: Target[] = kinds.flatMap((kind) =>
      [...short].map(([subject, variant]) => {
        const measured = data.results.find((m) => m.kind === kind && m.name === subject.name);
        const value = measured === undefined || measured.samples.length === 0 ? Number.NaN : perEntry(measured, entries) / mapBytes(kind);
        return { what: `heap per entry, ${count(entries)} ${kind} keys, ${subject.name}: ÷ Map`, short: `heap, ${kind} keys, ${variant}`, value, limit: 1.5, unit: '×' };
      }),
    );
    return {
      markdown: [
        `Each implementation runs in a process of its own (\`node --expose-gc\`): the ${count(entries)} keys and their values (\`{ id, name }\`) are allocated first, then a full GC and \`process.memoryUsage()\`; then the implementation is created and filled (cachegraph "after a save": and saved once; "rewritten": saved, then half the entries written again), a full GC, \`memoryUsage()\` again. Bytes per entry = heapUsed difference ÷ ${count(entries)}: what the structure itself costs, keys and values excluded (they exist before and are shared). The gate then reads back a sample of keys. A persistent cachegraph cache remembers which keys changed until its next save. Written since it was empty (a cold start, a rebuild, a \`clear()\`), every entry in memory is unsaved and no key is listed; once it holds saved entries it lists the changed keys in a set, until more than half the entries have changed (then, on a store no other process writes to, it counts every entry as changed and the next save writes them all): "half the entries rewritten since a save" is the most that set holds. "external" is memory outside the V8 heap (MemoryStore keeps its saved copy there); it is not counted in the ratio. ${data.results[0]?.samples.length ?? 0} process(es) per row; the median is reported, each one listed.`,
        '![Heap bytes per entry](bench-heap.svg)',
        markdownTable(['keys', 'implementation', 'heap bytes per entry', 'each process', `÷ ${map.name}`, 'external bytes per entry'], 'llrrrr', rows),
      ].join('\n\n'),
      charts: [
        {
          file: 'bench-heap.svg',
          svg: barChart({
            title: `Heap bytes per entry, ${count(entries)} entries`,
            subtitle: 'heapUsed after a full GC, keys and values excluded; shorter is leaner.',
            scale: 'shared',
            groups,
          }),
        },
      ],
      targets,
    };
  },
};
