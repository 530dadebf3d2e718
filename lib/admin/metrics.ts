/**
 * What the admin service counts from a manager's events (syncs and their durations, store
 * errors, memo hits and misses, evictions, invalidations), the AutoSync timeline kept in a
 * ring buffer, and the Prometheus text exposition of it all.
 *
 * @module
 */

import pidusage from 'pidusage';
import { EVENTS, type CacheManagerEventName, type CacheManagerEvents } from '../events.js';
import type { CacheManager } from '../manager.js';

/**
 * Upper bounds (seconds) of the sync duration histogram's buckets.
 *
 * @example
 * SYNC_BUCKETS[0]; // 0.001
 */
export const SYNC_BUCKETS: readonly number[] = Object.freeze([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/** How many timeline events are kept (the oldest are dropped). */
const TIMELINE_CAPACITY = 500;

/**
 * One event of the AutoSync timeline: a save that finished or failed, or an invalidation.
 *
 * @example
 * const event: TimelineEvent = { at: Date.now(), cache: 'users', kind: 'sync', reason: 'auto', ms: 3.2, entries: 10, bytes: 420 };
 */
export interface TimelineEvent {
  /** When it happened (wall clock, ms since the epoch). */
  readonly at: number;
  /** The cache. */
  readonly cache: string;
  /** `'sync'` (a save finished), `'sync-error'` (a save failed), `'invalidated'`. */
  readonly kind: 'sync' | 'sync-error' | 'invalidated';
  /** Why the save ran (`'auto'`, `'manual'`, ...), or for an invalidation its cause. */
  readonly reason: string;
  /** Duration of the save, ms. */
  readonly ms?: number;
  /** Entries written. */
  readonly entries?: number;
  /** Bytes written. */
  readonly bytes?: number;
  /** What failed (a message; never a credential: store errors name endpoints without them). */
  readonly error?: string;
  /** For an invalidation: the cache named in the call. */
  readonly source?: string;
}

/** Counters of one cache, from events. */
export interface EventCounters {
  syncs: number;
  syncErrors: number;
  storeErrors: number;
  memoHits: number;
  memoMisses: number;
  evictions: number;
  expirations: number;
  invalidations: number;
  /** Cumulative counts per bucket of {@link SYNC_BUCKETS} (and +Inf last). */
  readonly buckets: number[];
  syncSeconds: number;
}

function emptyCounters(): EventCounters {
  return {
    syncs: 0,
    syncErrors: 0,
    storeErrors: 0,
    memoHits: 0,
    memoMisses: 0,
    evictions: 0,
    expirations: 0,
    invalidations: 0,
    buckets: new Array<number>(SYNC_BUCKETS.length + 1).fill(0),
    syncSeconds: 0,
  };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Listens to a manager's events and keeps counters per cache and the timeline. Detach it
 * with {@link ManagerMetrics.close}.
 *
 * @example
 * const metrics = new ManagerMetrics(manager);
 * metrics.counters('users').syncs;
 * metrics.close();
 */
export class ManagerMetrics {
  readonly #manager: CacheManager;
  readonly #counters = new Map<string, EventCounters>();
  readonly #timeline: TimelineEvent[] = [];
  readonly #detach: (() => void)[] = [];

  /**
   * @param manager - the manager to listen to (from now on)
   */
  constructor(manager: CacheManager) {
    this.#manager = manager;
    const on = <E extends CacheManagerEventName>(event: E, listener: CacheManagerEvents[E]): void => {
      manager.on(event, listener as never);
      this.#detach.push(() => manager.off(event, listener as never));
    };
    on(EVENTS.syncDone, (e) => {
      const c = this.counters(e.name);
      c.syncs++;
      const seconds = e.ms / 1000;
      c.syncSeconds += seconds;
      SYNC_BUCKETS.forEach((bound, i) => {
        if (seconds <= bound) c.buckets[i] = (c.buckets[i] ?? 0) + 1;
      });
      c.buckets[SYNC_BUCKETS.length] = (c.buckets[SYNC_BUCKETS.length] ?? 0) + 1;
      this.#push({ at: Date.now(), cache: e.name, kind: 'sync', reason: e.reason, ms: e.ms, entries: e.entries, bytes: e.bytes });
    });
    on(EVENTS.syncError, (e) => {
      const c = this.counters(e.name);
      c.syncErrors++;
      c.storeErrors++;
      this.#push({ at: Date.now(), cache: e.name, kind: 'sync-error', reason: e.reason, error: message(e.error) });
    });
    on(EVENTS.error, (e) => {
      // Background saves are counted by sync:error already.
      if (e.during !== 'save') this.counters(e.name ?? '').storeErrors++;
    });
    on(EVENTS.memoHit, (e) => void this.counters(e.cache).memoHits++);
    on(EVENTS.memoMiss, (e) => void this.counters(e.cache).memoMisses++);
    on(EVENTS.removed, (e) => {
      const c = this.counters(e.name);
      if (e.reason === 'evict') c.evictions++;
      else c.expirations++;
    });
    on(EVENTS.invalidated, (e) => {
      this.counters(e.name).invalidations++;
      this.#push({ at: Date.now(), cache: e.name, kind: 'invalidated', reason: e.cause, source: e.source });
    });
  }

  /**
   * The counters of `cache` (created at zero).
   *
   * @example
   * metrics.counters('users').syncErrors; // 0
   */
  counters(cache: string): EventCounters {
    let c = this.#counters.get(cache);
    if (c === undefined) this.#counters.set(cache, (c = emptyCounters()));
    return c;
  }

  /**
   * Caches that have counters.
   *
   * @example
   * metrics.cacheNames(); // ['users', 'stats']
   */
  cacheNames(): string[] {
    return [...this.#counters.keys()];
  }

  /**
   * The timeline, oldest first; with `since`, only later events.
   *
   * @example
   * metrics.timeline(Date.now() - 60_000);
   */
  timeline(since = 0): TimelineEvent[] {
    return this.#timeline.filter((event) => event.at > since);
  }

  /**
   * Stops listening to the manager.
   *
   * @example
   * metrics.close();
   */
  close(): void {
    for (const detach of this.#detach.splice(0)) detach();
  }

  /** The manager listened to. */
  get manager(): CacheManager {
    return this.#manager;
  }

  #push(event: TimelineEvent): void {
    this.#timeline.push(event);
    if (this.#timeline.length > TIMELINE_CAPACITY) this.#timeline.splice(0, this.#timeline.length - TIMELINE_CAPACITY);
  }
}

/**
 * CPU (percent of one core) and resident memory (bytes) of this process, by pidusage.
 * Compaction runs in worker threads of this process, so its cost is included. `undefined`
 * when the platform does not tell.
 *
 * @example
 * const usage = await processUsage(); // { pid: 4242, cpu: 3.5, memory: 81234944 }
 */
export async function processUsage(): Promise<{ pid: number; cpu: number; memory: number } | undefined> {
  try {
    const stat = await pidusage(process.pid);
    return { pid: process.pid, cpu: stat.cpu, memory: stat.memory };
  } catch {
    return undefined;
  }
}

/**
 * Releases pidusage's history (its timers), for a clean shutdown.
 *
 * @example
 * clearProcessUsage();
 */
export function clearProcessUsage(): void {
  pidusage.clear();
}

/**
 * Builds Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once per family,
 * then its samples.
 *
 * @example
 * const text = new PrometheusText().family('cachegraph_up', 'gauge', 'Whether the service runs', [[{}, 1]]).toString();
 */
export class PrometheusText {
  readonly #lines: string[] = [];

  /**
   * Adds a family and its samples (label sets and values). A family with no samples is
   * still declared.
   *
   * @example
   * text.family('cachegraph_cache_entries', 'gauge', 'Entries in memory', [[{ cache: 'users' }, 12]]);
   */
  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: readonly (readonly [Record<string, string>, number, string?])[]): this {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
    for (const [labels, value, suffix] of samples) this.#lines.push(`${name}${suffix ?? ''}${formatLabels(labels)} ${formatValue(value)}`);
    return this;
  }

  /**
   * The exposition text (ends with a newline).
   *
   * @example
   * res.end(text.toString());
   */
  toString(): string {
    return `${this.#lines.join('\n')}\n`;
  }
}

function formatLabels(labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([key, value]) => `${key}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/**
 * The samples of one histogram series: cumulative buckets with `le`, then `_sum` and `_count`.
 *
 * @example
 * histogramSamples({ cache: 'users' }, counters.buckets, counters.syncSeconds);
 */
export function histogramSamples(labels: Record<string, string>, buckets: readonly number[], sum: number): [Record<string, string>, number, string][] {
  const samples: [Record<string, string>, number, string][] = SYNC_BUCKETS.map((bound, i) => [{ ...labels, le: String(bound) }, buckets[i] ?? 0, '_bucket']);
  const count = buckets[SYNC_BUCKETS.length] ?? 0;
  samples.push([{ ...labels, le: '+Inf' }, count, '_bucket'], [labels, sum, '_sum'], [labels, count, '_count']);
  return samples;
}
