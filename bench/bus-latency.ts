// Propagation latency of the invalidation bus between two Node processes on one machine:
// how long after process A starts an operation process B has applied it.
//
// - invalidate: A calls `manager.invalidate('users')` (a cascade users → stats); measured
//   until B emits `cache:invalidated` for 'users' (its copy is empty; the rebuild follows).
// - set + save: A sets one key and saves the cache; measured until B emits
//   `cache:refreshed` (the new value is in B's memory).
// - the floor: a raw PUBLISH from A, measured until a plain ioredis subscriber in B receives
//   it (no manager).
//
// Starts its own redis-server (no persistence) on a free loopback port. Times are taken in
// each process with `process.hrtime` (CLOCK_MONOTONIC on Linux, one clock for every process of
// the machine).
//
// Run: node --import tsx bench/bus-latency.ts   (not part of npm test; about 30 s)
// BENCH_ROUNDS (default 500) operations per kind.
import os from 'node:os';
import { Redis } from 'ioredis';
import { CacheManager, RedisStore } from './built.js';
import { startBusChild, type BusChild } from '../spec/fixtures/bus-control.js';
import { startRedisServer } from '../spec/fixtures/redis-server.js';
import { machine } from './harness.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 500);
const WARMUP = 50;
// CLOCK_MONOTONIC: one clock for every process of the machine, unlike performance.timeOrigin.
const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const quantile = (sorted: readonly number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/** Runs `start` ROUNDS (+ warm-up) times, each time waiting for B's matching event; returns the latencies in ms. */
async function measure(b: BusChild, event: string, match: (p: Record<string, unknown>) => boolean, start: () => Promise<unknown>): Promise<number[]> {
  const latencies: number[] = [];
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const heard = b.waitFor(event, match, 10_000, b.events.length);
    const startedAt = now();
    await start();
    const payload = await heard;
    if (round >= WARMUP) latencies.push((payload.at as number) - startedAt);
  }
  return latencies.sort((x, y) => x - y);
}

async function main(): Promise<void> {
  const loadAtStart = (os.loadavg()[0] ?? 0).toFixed(1);
  const server = await startRedisServer();
  const namespace = 'bench-bus';
  const store = new RedisStore({ url: server.url, namespace });
  const a = new CacheManager({ name: 'bench-a', store, autoSync: false });
  const b = await startBusChild();
  const probe = new Redis(server.url);
  try {
    const users = await a.registerCache<string, number>('users');
    await a.registerCache('stats', { dependsOn: ['users'], builder: ({ manager }) => [['count', manager.getCache('users').size]] });
    await b.request('open', { url: server.url, namespace, caches: [{ name: 'users' }, { name: 'stats', dependsOn: ['users'], builder: 'summary' }] });
    console.error(`${ROUNDS} rounds per kind after ${WARMUP} warm-up rounds (${server.url})`);

    const invalidate = await measure(b, 'cache:invalidated', (p) => p['name'] === 'users', () => a.invalidate('users'));
    let i = 0;
    const save = await measure(
      b,
      'cache:refreshed',
      (p) => p['name'] === 'users',
      async () => {
        users.set(`k${i++ % 100}`, i);
        await a.save('users');
      },
    );
    // The floor: Redis pub/sub alone, A's connection to a subscriber in B.
    await b.request('probe', { url: server.url, channel: `${namespace}:probe` });
    const floor = await measure(b, 'probe', () => true, () => probe.publish(`${namespace}:probe`, 'x'));

    const version = (await probe.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?';
    const row = (name: string, xs: number[], note: string): string =>
      `| ${name} | ${quantile(xs, 0.5).toFixed(2)} | ${quantile(xs, 0.99).toFixed(2)} | ${(xs.at(-1) ?? Number.NaN).toFixed(2)} | ${note} |`;
    const p50 = quantile(floor, 0.5);
    console.log(
      [
        '### Bus propagation between two processes',
        '',
        `\`bench/bus-latency.ts\`, ${machine()}, redis-server ${version} on loopback (no persistence), load average ${loadAtStart} at the start; ${ROUNDS} operations per kind after ${WARMUP} warm-up ones, each waiting for the previous to arrive.`,
        '',
        '| from A … until B has it | p50 ms | p99 ms | max ms | note |',
        '|---|---:|---:|---:|---|',
        row('`invalidate(users)` … B emptied users', invalidate, `${(quantile(invalidate, 0.5) / p50).toFixed(1)} × the floor's p50; includes A's atomic drop of both copies`),
        row('`set` + `save(users)` … the value in B', save, `${(quantile(save, 0.5) / p50).toFixed(1)} × the floor's p50; includes A's save and B's read of the key`),
        row('raw `PUBLISH` … a plain subscriber in B', floor, 'the floor: Redis pub/sub alone'),
      ].join('\n'),
    );
  } finally {
    probe.disconnect();
    await b.stop();
    await a.close();
    await store.close();
    await server.stop();
  }
}

await main();
