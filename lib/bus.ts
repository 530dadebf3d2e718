/**
 * The invalidation bus: how managers in several processes that share a store (a
 * {@link RedisStore} namespace) tell each other what they changed. It rides on the store's
 * optional `publish`/`subscribe`; the manager decides what a message means for its caches
 * (see {@link BusHost}).
 *
 * Messages (JSON, version 1):
 * - `{ v: 1, t: 'invalidated', names, source? }`: the store copies of `names` (a cascade, in
 *   topological order) were dropped; receivers empty and rebuild the ones they hold, and
 *   cascade to their own dependents.
 * - `{ v: 1, t: 'saved', name, keys? }`: `name` was saved; `keys` lists the keys written or
 *   deleted when the save was a small batch of string or number keys, else the whole copy
 *   may have changed.
 * - `{ v: 1, t: 'deleted', names }`: the store copies of `names` were removed (`deleteSaved`);
 *   memory contents stay.
 *
 * Delivery is at most once (Redis pub/sub keeps nothing), so a receiver that was
 * disconnected catches up when told its connection is back (`onResume`).
 *
 * @module
 */
import type { ChangeBatch, CacheStore } from './store/types.js';

/** The version of the messages this code sends and understands; others are ignored. */
export const BUS_VERSION = 1;

/** Most keys a `saved` message lists; a bigger batch is announced as a whole-cache change. */
export const MAX_ANNOUNCED_KEYS = 1000;

/** A key a message can carry as it is: JSON keeps its type. */
export type AnnouncedKey = string | number;

/** A message of the bus (see the module comment). */
export type BusMessage =
  | { readonly v: 1; readonly t: 'invalidated'; readonly names: readonly string[]; readonly source?: string }
  | { readonly v: 1; readonly t: 'saved'; readonly name: string; readonly keys?: readonly AnnouncedKey[] }
  | { readonly v: 1; readonly t: 'deleted'; readonly names: readonly string[] };

const isNameList = (value: unknown): value is string[] =>
  Array.isArray(value) && value.length > 0 && value.every((name) => typeof name === 'string' && name.length > 0);

const isAnnouncedKey = (key: unknown): key is AnnouncedKey => typeof key === 'string' || (typeof key === 'number' && Number.isFinite(key));

/**
 * Checks a received message; `undefined` for anything that is not a version-1 message of a
 * known type with well-formed fields (other versions, other publishers on the channel).
 *
 * @example
 * parseBusMessage({ v: 1, t: 'deleted', names: ['users'] }); // the message
 * parseBusMessage({ v: 2, t: 'deleted', names: ['users'] }); // undefined
 */
export function parseBusMessage(raw: unknown): BusMessage | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const m = raw as Record<string, unknown>;
  if (m['v'] !== BUS_VERSION) return undefined;
  switch (m['t']) {
    case 'invalidated': {
      const { names, source } = m;
      if (!isNameList(names) || (source !== undefined && typeof source !== 'string')) return undefined;
      return source === undefined ? { v: 1, t: 'invalidated', names } : { v: 1, t: 'invalidated', names, source };
    }
    case 'saved': {
      const { name, keys } = m;
      if (typeof name !== 'string' || name.length === 0) return undefined;
      if (keys === undefined) return { v: 1, t: 'saved', name };
      if (!Array.isArray(keys) || keys.length > MAX_ANNOUNCED_KEYS || !keys.every(isAnnouncedKey)) return undefined;
      return { v: 1, t: 'saved', name, keys };
    }
    case 'deleted':
      return isNameList(m['names']) ? { v: 1, t: 'deleted', names: m['names'] } : undefined;
    default:
      return undefined;
  }
}

/**
 * The keys a `saved` message can announce for a batch: every key written or deleted, when
 * the batch did not clear the cache, has at most {@link MAX_ANNOUNCED_KEYS} keys, and all of
 * them are strings or finite numbers (which JSON carries with their type). Otherwise
 * `undefined`: receivers treat the whole cache as changed.
 *
 * @example
 * announcedKeys({ cleared: false, sets: [['u1', {}, 0]], deletes: [7] }); // ['u1', 7]
 */
export function announcedKeys(batch: ChangeBatch): AnnouncedKey[] | undefined {
  if (batch.cleared || batch.sets.length + batch.deletes.length > MAX_ANNOUNCED_KEYS) return undefined;
  const keys: AnnouncedKey[] = [];
  for (const [key] of batch.sets) {
    if (!isAnnouncedKey(key)) return undefined;
    keys.push(key);
  }
  for (const key of batch.deletes) {
    if (!isAnnouncedKey(key)) return undefined;
    keys.push(key);
  }
  return keys;
}

/** What the manager does with the bus' messages and failures. */
export interface BusHost {
  /** A well-formed message from another manager arrived. Must not throw. */
  receive(message: BusMessage): void;
  /** The store's connections are back after a loss: messages may have been missed. Must not throw. */
  resumed(): void;
  /** A publication failed (nobody awaits it): reported as an `error` event, rate-limited. */
  report(error: unknown): void;
}

/** Counters of a bus, for stats. */
export interface BusStats {
  /** Whether the manager is subscribed. */
  readonly subscribed: boolean;
  /** Messages sent. */
  readonly published: number;
  /** Well-formed messages received from other managers. */
  readonly received: number;
  /** Messages received that were not well-formed version-1 messages, and so ignored. */
  readonly ignored: number;
  /** Publications that failed (the store was unreachable). */
  readonly publishErrors: number;
  /** Times the store's connections came back after a loss. */
  readonly resumes: number;
}

type BusStore = CacheStore & Required<Pick<CacheStore, 'publish' | 'subscribe'>>;

/**
 * Whether `store` can carry a bus (it has both `publish` and `subscribe`).
 *
 * @example
 * hasBus(new RedisStore({ url })); // true
 * hasBus(new FileStore({ dir }));  // false
 */
export function hasBus(store: CacheStore): store is BusStore {
  return typeof store.publish === 'function' && typeof store.subscribe === 'function';
}

/**
 * One manager's subscription and publications.
 *
 * @example
 * const bus = new Bus(store, host);
 * await bus.start();                 // subscribed: messages reach host.receive
 * bus.publish({ v: 1, t: 'deleted', names: ['users'] });
 * await bus.close();
 */
export class Bus {
  readonly #store: BusStore;
  readonly #host: BusHost;
  #starting: Promise<void> | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #closed = false;
  /** Publications under way: `close()` lets them finish. */
  readonly #publishing = new Set<Promise<void>>();
  #published = 0;
  #received = 0;
  #ignored = 0;
  #publishErrors = 0;
  #resumes = 0;

  /**
   * @param store - a store with `publish` and `subscribe`
   * @param host - the manager's side
   * @example
   * new Bus(store, { receive: (m) => console.log(m), resumed: () => undefined, report: () => undefined });
   */
  constructor(store: BusStore, host: BusHost) {
    this.#store = store;
    this.#host = host;
  }

  /**
   * Subscribes, once; concurrent calls share the attempt. After a failure the next call tries
   * again.
   *
   * @throws what the store's `subscribe` threw (StoreUnavailableError)
   * @example
   * await bus.start();
   */
  start(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#starting === undefined) {
      const starting = this.#store
        .subscribe((raw) => this.#deliver(raw), {
          onResume: () => {
            this.#resumes++;
            this.#host.resumed();
          },
        })
        .then(async (unsubscribe) => {
          // Closed while subscribing: undo it at once.
          if (this.#closed) await unsubscribe();
          else this.#unsubscribe = unsubscribe;
        });
      this.#starting = starting;
      starting.catch(() => {
        if (this.#starting === starting) this.#starting = undefined;
      });
    }
    return this.#starting;
  }

  #deliver(raw: unknown): void {
    if (this.#closed) return;
    const message = parseBusMessage(raw);
    if (message === undefined) {
      this.#ignored++;
      return;
    }
    this.#received++;
    this.#host.receive(message);
  }

  /**
   * Sends `message`. Never rejects: a failure is reported to the host (receivers catch up
   * when their connection comes back; a publisher whose store is down failed the operation
   * that would have been announced anyway).
   *
   * @example
   * await bus.publish({ v: 1, t: 'saved', name: 'users', keys: ['u1'] });
   */
  publish(message: BusMessage): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const publishing = this.#store.publish(message).then(
      () => {
        this.#published++;
      },
      (error: unknown) => {
        this.#publishErrors++;
        this.#host.report(error);
      },
    );
    this.#publishing.add(publishing);
    void publishing.then(() => this.#publishing.delete(publishing));
    return publishing;
  }

  /**
   * The counters.
   *
   * @example
   * bus.stats().received; // 12
   */
  stats(): BusStats {
    return {
      subscribed: this.#unsubscribe !== undefined,
      published: this.#published,
      received: this.#received,
      ignored: this.#ignored,
      publishErrors: this.#publishErrors,
      resumes: this.#resumes,
    };
  }

  /**
   * Lets publications under way finish, then unsubscribes; later messages are neither sent
   * nor delivered. Idempotent.
   *
   * @example
   * await bus.close();
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#publishing);
    await this.#starting?.catch(() => undefined);
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    await unsubscribe?.().catch(() => undefined);
  }
}
