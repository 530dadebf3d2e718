// A writer process for spec/store/log-compaction.spec.ts, killed with SIGKILL. It saves a
// base, then appends deterministic batches while compacting, and prints one line per event
// with a synchronous write, so that the parent knows exactly which batches were
// acknowledged (and which one may have been under way) when it died.
//
//   node --import tsx spec/store/log-crash-child.ts <dir> <seed>            killed by the parent
//   CRASH_POINT=after:rename:MANIFEST:1 node --import tsx ... <dir> <seed>   kills itself
//
// With CRASH_POINT=<before|after>:<rename|unlink>:<suffix>:<n>, the child compacts once, in
// its own thread, and SIGKILLs itself before or after the n-th rename (to a path ending in
// <suffix>) or unlink made after the compaction began: a crash at that exact step.
import { writeSync } from 'node:fs';
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { v8Codec } from '../../lib/codec/index.js';
import { FileStore } from '../../lib/store/file.js';
import type { ChangeBatch, StoredEntry } from '../../lib/store/types.js';
import { systemClock } from '../../lib/sync/clock.js';
import { seededRandom } from './conformance.js';

export const CRASH_CACHE = 'crashy';
export const CRASH_KEYS = 3000;

/** The base the child saves first. */
export function crashBase(): StoredEntry[] {
  return Array.from({ length: CRASH_KEYS }, (_, i): StoredEntry => [`key-${i}`, { i, round: 0, pad: 'p'.repeat(60) }, 0]);
}

/** Batch number `n` (from 1) of a run with this seed; the same in parent and child. */
export function crashBatch(seed: number, n: number): ChangeBatch {
  const random = seededRandom(seed * 1_000_003 + n);
  const sets = new Map<string, StoredEntry>();
  for (let i = 0; i < 40; i++) {
    const key = `key-${Math.floor(random() * CRASH_KEYS)}`;
    sets.set(key, [key, { round: n, i, pad: 'q'.repeat(60) }, 0]);
  }
  const deletes = new Set<string>();
  for (let i = 0; i < 5; i++) {
    const key = `key-${Math.floor(random() * CRASH_KEYS)}`;
    if (!sets.has(key)) deletes.add(key);
  }
  return { cleared: n % 97 === 0, sets: [...sets.values()], deletes: [...deletes] };
}

function say(event: Record<string, unknown>): void {
  // Synchronous, so a line is out before the next step (the parent kills at any moment). The
  // pipe may be non-blocking: when it is full (EAGAIN), wait for the parent to read and retry.
  const bytes = Buffer.from(`${JSON.stringify(event)}\n`);
  for (let done = 0; done < bytes.length; ) {
    try {
      done += writeSync(1, bytes, done, bytes.length - done);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

async function main(dir: string, seed: number): Promise<void> {
  const store = new FileStore({ dir, appendfsync: 'no', compaction: { minDeadRatio: 0.3, minDeadBytes: 0 } });
  const ctx = { codec: v8Codec, clock: systemClock, warn: (warning: unknown) => say({ warning }) };
  await store.save(CRASH_CACHE, crashBase(), ctx);
  say({ ack: 0 });
  for (let n = 1; ; n++) {
    say({ begin: n });
    await store.saveChanges(CRASH_CACHE, crashBatch(seed, n), ctx);
    say({ ack: n });
    if (n % 25 === 0) {
      say({ compacting: n });
      void store.compact(CRASH_CACHE, ctx).then(
        (result) => say({ compacted: n, entries: result?.entries ?? null }),
        (error: unknown) => say({ compactionError: String(error) }),
      );
    }
  }
}

let armed = false;

/** Makes `fs[method]` kill this process at the chosen call (see the file comment). */
function crashAt(point: string): void {
  const [when, method, suffix, nth] = point.split(':') as ['before' | 'after', 'rename' | 'unlink', string, string];
  const target = fs as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = target[method] as (...args: unknown[]) => Promise<unknown>;
  let count = 0;
  target[method] = async (...args: unknown[]) => {
    const file = String(method === 'rename' ? args[1] : args[0]);
    const hit = armed && (suffix === 'any' || file.endsWith(suffix)) && ++count === Number(nth);
    if (hit && when === 'before') process.kill(process.pid, 'SIGKILL');
    const result = await original.apply(fs, args);
    if (hit) process.kill(process.pid, 'SIGKILL');
    return result;
  };
}

async function crashInCompaction(dir: string, seed: number, point: string): Promise<void> {
  crashAt(point);
  const never = { minDeadRatio: 1, minDeadBytes: Number.MAX_SAFE_INTEGER, worker: false };
  const store = new FileStore({ dir, appendfsync: 'no', compaction: never });
  const ctx = { codec: v8Codec, clock: systemClock, warn: (warning: unknown) => say({ warning }) };
  await store.save(CRASH_CACHE, crashBase(), ctx);
  say({ ack: 0 });
  let n = 1;
  for (; n <= 30; n++) {
    say({ begin: n });
    await store.saveChanges(CRASH_CACHE, crashBatch(seed, n), ctx);
    say({ ack: n });
  }
  armed = true;
  let done = false;
  const compaction = store.compact(CRASH_CACHE, ctx).finally(() => {
    done = true;
  });
  // Appends go on while the compaction runs; the crash point is reached inside it.
  for (; !done; n++) {
    say({ begin: n });
    await store.saveChanges(CRASH_CACHE, crashBatch(seed, n), ctx);
    say({ ack: n });
  }
  await compaction;
  say({ survived: point });
  process.exit(3);
}

// No top-level await: the spec imports this file, and mocha loads spec files with require.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const point = process.env['CRASH_POINT'];
  const [dir, seed] = [process.argv[2] as string, Number(process.argv[3])];
  (point === undefined ? main(dir, seed) : crashInCompaction(dir, seed, point)).catch((error: unknown) => {
    say({ compactionError: `child failed: ${String(error)}` });
    process.exit(1);
  });
}
