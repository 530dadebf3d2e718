// A sync of 100 000 changes through RedisStore.saveChanges, against a raw pipelined HSET of
// the same data with the same ioredis client, in the same run. Target of the Redis issue:
// saveChanges at most 1.5 × the raw write. Starts its own redis-server (no persistence) on a
// free loopback port with spec/fixtures/redis-server.ts.
//
// Run: node --expose-gc --import tsx bench/redis-sync.ts   (not part of npm test; about a minute;
// with --expose-gc every timed run starts after a GC)
// BENCH_CHANGES=10000 for a quick try; BENCH_RUNS (default 7) timed rounds.
//
// What the two sides write, per change:
// - saveChanges: the key's identity as the hash field, and a record: the v8 encoding of
//   [key, value, expiresAt] with a codec name, an order number and a crc32 (lib/store/redis/record.ts),
//   all in one EVALSHA that applies the batch atomically;
// - raw: HSET <hash> <key> <v8.serialize(value)>, one command per change, pipelined (what an
//   application writing its own cache would do), and, as a second baseline, the same HSETs
//   grouped 500 fields per command.
// Both include the client-side encoding: it is part of a sync.
import os from 'node:os';
import v8 from 'node:v8';
import { Redis } from 'ioredis';
import { RedisStore, v8Codec, type StoredEntry } from './built.js';
import { startRedisServer } from '../spec/fixtures/redis-server.js';
import { machine } from './harness.js';

const CHANGES = Number(process.env['BENCH_CHANGES'] ?? 100_000);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 7);
const FIELDS_PER_HSET = 500;
const ctx = { codec: v8Codec, clock: { now: () => Date.now() } };

function value(i: number, round: number): { id: number; name: string; score: number; tags: string[] } {
  return { id: i, name: `user-${i}`, score: (i * 7 + round) % 1000, tags: ['a', 'b'] };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

/** One thing to time: `prepare` (untimed) builds its input for a round, `run` is timed. */
interface Subject {
  readonly name: string;
  prepare(round: number): unknown;
  run(input: never): Promise<unknown>;
}

/**
 * Times the subjects in turn, round after round (one untimed round first), so that a change
 * of machine load affects all of them alike; returns each subject's runs in ms.
 */
async function interleaved(subjects: readonly Subject[]): Promise<number[][]> {
  const runs = subjects.map((): number[] => []);
  for (let round = 0; round <= RUNS; round++) {
    for (const [i, subject] of subjects.entries()) {
      const input = subject.prepare(round);
      gc();
      const started = performance.now();
      await subject.run(input as never);
      if (round > 0) runs[i]?.push(performance.now() - started);
    }
  }
  for (const [i, subject] of subjects.entries()) {
    const times = runs[i] ?? [];
    console.error(`  ${subject.name}: median ${median(times).toFixed(1)} ms (runs ${times.map((t) => t.toFixed(0)).join(', ')})`);
  }
  return runs;
}

async function main(): Promise<void> {
  const loadAtStart = (os.loadavg()[0] ?? 0).toFixed(1);
  const server = await startRedisServer();
  const client = new Redis(server.url, { lazyConnect: true });
  await client.connect();
  const store = new RedisStore({ client, namespace: 'bench' });
  try {
    const changes = (round: number, n = CHANGES): StoredEntry[] => Array.from({ length: n }, (_, i): StoredEntry => [`k${i}`, value(i, round), 0]);
    const batch = (round: number, n = CHANGES) => ({ cleared: false, sets: changes(round, n), deletes: [] as unknown[] });
    // The cache holds the keys already: a sync overwrites them, as a sync of changed values does.
    await store.save('bench', changes(-1), ctx);
    const rawKey = 'raw:bench';
    console.error(`${CHANGES.toLocaleString('en')} changes, ${RUNS} timed rounds, one client (${server.url})`);
    await client.config('RESETSTAT');

    const syncs = await interleaved([
      { name: 'RedisStore.saveChanges', prepare: batch, run: (input: ReturnType<typeof batch>) => store.saveChanges('bench', input, ctx) },
      {
        name: 'raw pipelined HSET, one per change',
        prepare: changes,
        run: async (entries: StoredEntry[]) => {
          const pipeline = client.pipeline();
          for (const [key, data] of entries) pipeline.hset(rawKey, key as string, v8.serialize(data));
          await pipeline.exec();
        },
      },
      {
        name: `raw pipelined HSET, ${FIELDS_PER_HSET} fields per command`,
        prepare: changes,
        run: async (entries: StoredEntry[]) => {
          const pipeline = client.pipeline();
          for (let start = 0; start < entries.length; start += FIELDS_PER_HSET) {
            const args: (string | Buffer)[] = [];
            for (const [key, data] of entries.slice(start, start + FIELDS_PER_HSET)) args.push(key as string, v8.serialize(data));
            pipeline.hset(rawKey, ...args);
          }
          await pipeline.exec();
        },
      },
    ]);
    // How long Redis itself ran the script of one batch (it serves nothing else meanwhile).
    const scriptMs = Number(/cmdstat_evalsha:.*usec_per_call=([\d.]+)/.exec(await client.info('commandstats'))?.[1]) / 1000;
    const others = await interleaved([
      { name: 'RedisStore.saveChanges, 100 changes', prepare: (round) => batch(round, 100), run: (input: ReturnType<typeof batch>) => store.saveChanges('bench', input, ctx) },
      { name: 'RedisStore.save, full copy', prepare: changes, run: (entries: StoredEntry[]) => store.save('bench', entries, ctx) },
      { name: 'RedisStore.load', prepare: () => undefined, run: () => store.load('bench', ctx) },
    ]);

    const [store_ = [], perChange = [], grouped = []] = syncs;
    const ratio = (baseline: number[]): number => median(store_.map((ms, round) => ms / (baseline[round] ?? Number.NaN)));
    const version = (await client.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?';
    const row = (name: string, runs: number[] = [], note = ''): string =>
      `| ${name} | ${median(runs).toFixed(1)} | ${Math.min(...runs).toFixed(1)}–${Math.max(...runs).toFixed(1)} | ${note} |`;
    console.log(
      [
        `### RedisStore sync (${CHANGES.toLocaleString('en')} changes)`,
        '',
        `\`bench/redis-sync.ts\`, ${machine()}, redis-server ${version} on loopback (no persistence), load average ${loadAtStart} at the start; ${RUNS} timed rounds after one warm-up, the three syncs interleaved round by round; ratios are medians of the per-round ratios.`,
        '',
        '| operation | median ms | range ms | note |',
        '|---|---:|---:|---|',
        row('RedisStore.saveChanges', store_, `**${ratio(perChange).toFixed(2)} ×** raw per-change HSET, **${ratio(grouped).toFixed(2)} ×** grouped HSET (target ≤ 1.5 ×); the script ran ${scriptMs.toFixed(0)} ms in Redis`),
        row('raw pipelined HSET, one per change', perChange, 'baseline'),
        row(`raw pipelined HSET, ${FIELDS_PER_HSET} fields per command`, grouped, 'second baseline'),
        row('RedisStore.saveChanges, 100 changes', others[0]),
        row('RedisStore.save, full copy', others[1]),
        row('RedisStore.load', others[2]),
      ].join('\n'),
    );
  } finally {
    await store.close();
    await client.quit();
    await server.stop();
  }
}

await main();
