/**
 * RedisStore: caches in Redis (or Valkey), for several processes or machines sharing them.
 * The client library, ioredis, is imported the first time a store connects.
 *
 * Each cache is a *generation*: a HASH of checksummed records (one per entry), a ZSET of
 * the expiry times of the entries that expire, and a HASH of metadata, all named after a
 * random generation id; the STRING `…:gen` names the live one. Every key of a cache shares
 * the hash tag `{<name>}` (one cluster slot). See `redis/keys.ts` for the names and
 * `redis/record.ts` for the record format.
 *
 * - `save` writes a new generation (pipelined, with a one-hour expiry so that a writer that
 *   dies half way leaves nothing behind for long), then one script checks that all of it
 *   arrived, points `…:gen` at it, and unlinks the old one: readers see the old copy or the
 *   new one, never a mix.
 * - `saveChanges` is one script: the batch is applied to the live generation all at once,
 *   at a cost that follows the batch.
 * - `delete` and {@link RedisStore.invalidateCascade} remove pointers and UNLINK the data
 *   (Redis frees it in a background thread): O(1) per cache, one script for all of them.
 * - Scripts that act on a generation are given the id the caller expects and answer
 *   `STALE` when another process moved the pointer meanwhile; the store then re-reads it.
 *
 * @module
 */

import { randomBytes, randomUUID } from 'node:crypto';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { ClosedError, CorruptFileError, InvalidOptionError, StoreIOError } from '../errors.js';
import { yieldIfBusy } from './log/fsio.js';
import {
  assertReady,
  connectGivenClient,
  connectOwnClient,
  describeClient,
  redactUrl,
  runScript,
  serverVersion,
  storeError,
  type ConnectSettings,
  type RedisClient,
} from './redis/connection.js';
import { RedisKeys, type GenerationKeys } from './redis/keys.js';
import { decodeRecord, fieldOf, RecordEncoder, stampOrder, type EncodedEntry } from './redis/record.js';
import { RedisKeyLocks } from './redis/locks.js';
import { parseOptions, type ParsedOptions, type RedisStoreOptions } from './redis/options.js';
import { APPLY, COMMIT, DROP, PURGE, QUARANTINE, SCRIPTS, SLICE } from './redis/scripts.js';
import { closeClient, Subscriber, type ChannelListener } from './redis/subscriber.js';
import type {
  BusHandler,
  CacheStore,
  ChangeBatch,
  KeyLockResult,
  LockKeyOptions,
  SaveResult,
  StoreContext,
  StoredEntry,
  StoredInfo,
  StoredSnapshot,
  SubscribeOptions,
} from './types.js';

export type { RedisClient } from './redis/connection.js';
export type { RedisStoreOptions } from './redis/options.js';

/** A generation being written expires after this unless committed (a writer died half way). */
const DEBRIS_TTL_MS = 60 * 60 * 1000;
/** Most bytes of records in one HSET of a save. */
const COMMAND_BYTES = 8 * 1024 * 1024;
/** Attempts of an operation that keeps finding the generation moved by other processes. */
const MAX_ATTEMPTS = 16;

/** What this store last knew of a cache: its live generation and order counter. */
interface Known {
  readonly gen: string;
  readonly seq: number | undefined;
}

function newGenerationId(): string {
  return randomBytes(8).toString('hex');
}

/** The manager's clock, checked: a NaN would be written as a savedAt that never loads. */
function checkedNow(ctx: StoreContext): number {
  const now = ctx.clock.now();
  if (!Number.isFinite(now)) throw new InvalidOptionError('clock', `now() returned ${now}, not a finite number of milliseconds`);
  return now;
}

/** Runs a MULTI or pipeline and returns its replies, throwing the first error among them. */
async function replies(chain: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await chain.exec();
  if (results === null) throw new Error('the transaction was aborted');
  return results.map(([error, value]) => {
    if (error !== null) throw error;
    return value;
  });
}

/**
 * Encodes entries into records, ordered from `firstOrder` on, yielding to the event loop
 * in long runs.
 */
async function encodeAll(name: string, ctx: StoreContext, entries: Iterable<StoredEntry>): Promise<EncodedEntry[]> {
  const encoder = new RecordEncoder(name, ctx.codec);
  const encoded: EncodedEntry[] = [];
  for (const entry of entries) {
    encoded.push(encoder.encode(entry, encoded.length));
    if ((encoded.length & 0x3ff) === 0) await yieldIfBusy();
  }
  return encoded;
}

function stampAll(encoded: readonly EncodedEntry[], firstOrder: number): number {
  let bytes = 0;
  for (let i = 0; i < encoded.length; i++) {
    const entry = encoded[i] as EncodedEntry;
    stampOrder(entry, firstOrder + i);
    bytes += entry.record.byteLength;
  }
  return bytes;
}

/**
 * Persists caches in Redis or Valkey (standalone, replicated, or Redis Cluster through a
 * Cluster client). Several processes may share a namespace: they see each other's saves,
 * and can take locks on keys ({@link RedisStore.lockKey}) and exchange messages
 * ({@link RedisStore.publish}, {@link RedisStore.subscribe}).
 *
 * What is atomic: `save` (a switch of generation), one `saveChanges` batch,
 * `invalidateCascade` of any number of caches (on one server; on a Cluster, each cache on
 * its own), `delete`, `quarantine`. Loads read one generation in one MULTI. See
 * docs/redis.md for durability and deployment.
 *
 * Expiry: every entry keeps its absolute `expiresAt` (the manager's clock) inside its
 * record; the store never drops entries by the server's clock. `loadEntry` treats an
 * expired entry as absent and removes the expired entries of the cache (by the caller's
 * clock, at most 1000 at a time), as `saveChanges` does after each batch.
 *
 * Errors: an unreachable server is {@link StoreUnavailableError} (fast: no offline queue);
 * a failed check of a record {@link CorruptFileError} naming the key; any other failure
 * reported by the server {@link StoreIOError}.
 *
 * `close()` releases the locks this store holds and closes its connections; the store is
 * then closed for good (later calls reject with `ClosedError`), so no call can open a
 * connection behind the close.
 *
 * @example
 * const store = new RedisStore({ url: 'redis://127.0.0.1:6379', namespace: 'app' });
 * const manager = new CacheManager({ name: 'app', store });
 * await manager.registerCache('users');
 */
export class RedisStore implements CacheStore {
  /**
   * Always `'redis'`.
   *
   * @example
   * new RedisStore({ url: 'redis://localhost' }).kind; // 'redis'
   */
  readonly kind = 'redis';
  readonly #keys: RedisKeys;
  readonly #settings: ConnectSettings | undefined;
  readonly #given: RedisClient | undefined;
  readonly #endpoint: string;
  readonly #connectTimeoutMs: number;
  readonly #waitAof: ParsedOptions['waitAof'];
  readonly #instanceId = randomUUID();
  #client: Promise<RedisClient> | undefined;
  #subscriber: Subscriber | undefined;
  #closing: Promise<void> | undefined;
  readonly #known = new Map<string, Known>();
  readonly #locks: RedisKeyLocks;
  /** `onResume` callbacks of the subscriptions: told when a connection is back after a loss. */
  readonly #resumeListeners = new Set<() => void>();

  /**
   * @param options - see {@link RedisStoreOptions}; nothing connects before the first call
   * @throws {InvalidOptionError} naming the option
   * @example
   * const store = new RedisStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
   */
  constructor(options: RedisStoreOptions) {
    const o = parseOptions(options);
    this.#keys = new RedisKeys(o.keyPrefix ?? 'cg:', o.namespace ?? 'default');
    this.#locks = new RedisKeyLocks({
      keys: this.#keys,
      run: (op, location, action) => this.#run(op, location, action),
      listen: (channel, listener) => this.#listen(channel, listener),
    });
    this.#connectTimeoutMs = o.connectTimeoutMs ?? 5000;
    this.#waitAof = o.waitAof;
    this.#given = o.client;
    if (o.client !== undefined) {
      this.#endpoint = describeClient(o.client);
      this.#settings = undefined;
    } else {
      const url = o.url as string;
      this.#endpoint = redactUrl(url);
      this.#settings = {
        url,
        endpoint: this.#endpoint,
        connectTimeoutMs: this.#connectTimeoutMs,
        commandTimeoutMs: o.commandTimeoutMs ?? 10_000,
        attempts: o.retry?.attempts ?? 3,
        delayMs: o.retry?.delayMs ?? 200,
        // CLIENT SETNAME takes no spaces or control characters.
        connectionName: `cachegraph:${(o.namespace ?? 'default').replace(/[^\x21-\x7e]/g, '_')}`,
      };
    }
  }

  /**
   * This store's id in the messages it publishes (a random UUID per store object).
   *
   * @example
   * store.subscribe((message, { from }) => { if (from !== store.instanceId) { ... } });
   */
  get instanceId(): string {
    return this.#instanceId;
  }

  /**
   * The server, without credentials.
   *
   * @example
   * new RedisStore({ url: 'redis://u:p@db:6379/1' }).endpoint; // 'redis://db:6379/1'
   */
  get endpoint(): string {
    return this.#endpoint;
  }

  /**
   * The start of every key of `name`: `<keyPrefix><namespace>:{<name>}`.
   *
   * @throws {InvalidNameError} for an empty name or one with a lone surrogate
   * @example
   * store.locate('users'); // 'cg:default:{users}'
   */
  locate(name: string): string {
    return this.#keys.base(name);
  }

  // ---------------------------------------------------------------- connection

  async #open(): Promise<RedisClient> {
    let client: RedisClient;
    if (this.#given !== undefined) {
      client = this.#given;
      await connectGivenClient(client, this.#connectTimeoutMs, 'connect');
    } else {
      client = await connectOwnClient(this.#settings as ConnectSettings, 'connect');
    }
    // Ready now; a later 'ready' is a reconnection. (Once per client: a given one is reopened.)
    client.off('ready', this.#onClientReady);
    client.on('ready', this.#onClientReady);
    try {
      if (this.#waitAof !== undefined) {
        const version = await serverVersion(client);
        if (version[0] < 7 || (version[0] === 7 && version[1] < 2)) {
          throw new InvalidOptionError('waitAof', `needs WAITAOF (Redis 7.2 or later); ${this.#endpoint} runs ${version.join('.')}`);
        }
      }
      // Known to the server from now on, so big batches are not sent twice. Best effort: EVALSHA
      // falls back to EVAL (after a restart, a flush, or where ACLs forbid SCRIPT).
      await Promise.all(SCRIPTS.map((script) => client.call('SCRIPT', ['LOAD', script.source]).catch(() => undefined)));
    } catch (error) {
      if (this.#given === undefined) await closeClient(client);
      throw storeError(error, 'connect', this.#endpoint, this.#endpoint);
    }
    return client;
  }

  /** The connected client; connects on first use; fails fast while disconnected. */
  async #connection(op: string): Promise<RedisClient> {
    if (this.#closing !== undefined) throw this.#closedError();
    if (this.#client === undefined) {
      const opening = this.#open();
      this.#client = opening;
      opening.catch(() => {
        if (this.#client === opening) this.#client = undefined;
      });
    }
    const client = await this.#client;
    assertReady(client, op, this.#endpoint);
    return client;
  }

  #closedError(): ClosedError {
    return new ClosedError(`RedisStore ${this.#endpoint}`);
  }

  /** Runs `action` on the connected client, turning client failures into cachegraph errors. */
  async #run<T>(op: string, location: string, action: (client: RedisClient) => Promise<T>): Promise<T> {
    const client = await this.#connection(op);
    try {
      return await action(client);
    } catch (error) {
      throw storeError(error, op, location, this.#endpoint);
    }
  }

  readonly #onClientReady = (): void => this.#resumed();

  /** A connection is back: writes that failed meanwhile can be retried, messages were missed. */
  #resumed(): void {
    for (const listener of this.#resumeListeners) {
      try {
        listener();
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  #subscription(): Subscriber {
    this.#subscriber ??= new Subscriber(async () => {
      if (this.#settings !== undefined) return connectOwnClient(this.#settings, 'subscribe');
      const given = this.#given as RedisClient;
      const duplicate = given.isCluster ? (given as Cluster).duplicate() : (given as Redis).duplicate({ lazyConnect: true });
      duplicate.on('error', () => undefined);
      try {
        await connectGivenClient(duplicate, this.#connectTimeoutMs, 'subscribe');
      } catch (error) {
        duplicate.disconnect();
        throw error;
      }
      return duplicate;
    }, () => this.#resumed());
    return this.#subscriber;
  }

  async #listen(channel: string, listener: ChannelListener): Promise<void> {
    if (this.#closing !== undefined) throw this.#closedError();
    try {
      await this.#subscription().add(channel, listener);
    } catch (error) {
      throw storeError(error, 'subscribe', channel, this.#endpoint);
    }
  }

  async #waitAofAfter(client: RedisClient, op: string, location: string): Promise<void> {
    const wait = this.#waitAof;
    if (wait === undefined) return;
    const reply = (await client.call('WAITAOF', [wait.numlocal, wait.numreplicas, wait.timeoutMs])) as [number, number];
    if (reply[0] < wait.numlocal || reply[1] < wait.numreplicas) {
      const detail = `WAITAOF acknowledged ${reply[0]} local and ${reply[1]} replica fsyncs of the ${op}, fewer than the ${wait.numlocal} and ${wait.numreplicas} required within ${wait.timeoutMs} ms; the write was applied but may not be durable`;
      throw new StoreIOError('waitaof', location, new Error(detail));
    }
  }

  // ---------------------------------------------------------------- generations

  /** The live generation and order counter of `name`, read consistently; `undefined` when none. */
  async #state(client: RedisClient, name: string): Promise<Known | undefined> {
    const genKey = this.#keys.gen(name);
    let gen = (await client.get(genKey)) ?? undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS && gen !== undefined; attempt++) {
      const meta = this.#keys.generation(name, gen).meta;
      const [live, seq] = (await replies(client.multi().get(genKey).hget(meta, 'seq'))) as [string | null, string | null];
      if (live === gen) {
        const order = Number(seq ?? Number.NaN);
        if (!Number.isSafeInteger(order) || order < 0) throw new CorruptFileError(meta, `order counter ${JSON.stringify(seq)} is not a count (damaged, or the metadata was evicted)`, { cacheName: name });
        const known = { gen, seq: order };
        this.#known.set(name, known);
        return known;
      }
      gen = live ?? undefined;
    }
    if (gen !== undefined) throw this.#contention('read', name);
    this.#known.delete(name);
    return undefined;
  }

  /** The live generation id this store believes in (checked by the server), or reads it. */
  async #expectedGen(client: RedisClient, name: string): Promise<string | undefined> {
    const known = this.#known.get(name);
    if (known !== undefined) return known.gen;
    return (await client.get(this.#keys.gen(name))) ?? undefined;
  }

  #remember(name: string, gen: string, seq: number | undefined): void {
    const known = this.#known.get(name);
    this.#known.set(name, { gen, seq: seq ?? (known?.gen === gen ? known.seq : undefined) });
  }

  #contention(op: string, name: string): StoreIOError {
    return new StoreIOError(op, this.locate(name), new Error(`the cache changed under this ${op} ${MAX_ATTEMPTS} times in a row (other processes writing it)`));
  }

  /**
   * Reads from the live generation with `read` (a MULTI that also re-reads the pointer, so
   * the data and the pointer agree), retrying when the pointer moved. `undefined` when no
   * copy is saved.
   */
  async #readLive(
    client: RedisClient,
    name: string,
    read: (chain: ChainableCommander, keys: GenerationKeys) => void,
  ): Promise<{ gen: string; keys: GenerationKeys; values: unknown[] } | undefined> {
    const genKey = this.#keys.gen(name);
    let gen = await this.#expectedGen(client, name);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (gen === undefined) {
        this.#known.delete(name);
        return undefined;
      }
      const keys = this.#keys.generation(name, gen);
      const chain = client.multi().get(genKey);
      read(chain, keys);
      const [live, ...values] = (await replies(chain)) as [string | null, ...unknown[]];
      if (live === gen) {
        this.#remember(name, gen, undefined);
        return { gen, keys, values };
      }
      gen = live ?? undefined;
    }
    throw this.#contention('read', name);
  }

  // ---------------------------------------------------------------- CacheStore

  /**
   * The saved copy of `name`, checked record by record, in saved order; `undefined` when
   * nothing is saved. Expired entries are returned with their `expiresAt` (the manager
   * decides). One MULTI reads the whole generation.
   *
   * @throws {CorruptFileError} a record or the metadata failed its checks (path: the key)
   * @throws {StoreUnavailableError} the server cannot be reached
   * @example
   * const snapshot = await store.load('users', { codec: v8Codec, clock: systemClock });
   */
  async load(name: string, ctx: StoreContext): Promise<StoredSnapshot | undefined> {
    const location = this.locate(name);
    return this.#run('load', location, async (client) => {
      const live = await this.#readLive(client, name, (chain, keys) => chain.hmget(keys.meta, 'savedAt', 'codec', 'seq').hvalsBuffer(keys.data));
      if (live === undefined) return undefined;
      const [meta, records] = live.values as [(string | null)[], Buffer[]];
      const [savedAtText, codec, seq] = meta;
      const savedAt = Number(savedAtText ?? Number.NaN);
      if (!Number.isFinite(savedAt) || typeof codec !== 'string') {
        throw new CorruptFileError(live.keys.meta, 'the generation has no valid metadata (damaged, or evicted: see docs/redis.md on maxmemory-policy)', { cacheName: name });
      }
      const ordered: { entry: StoredEntry; order: number }[] = [];
      let bytes = 0;
      for (const record of records) {
        ordered.push(decodeRecord(record, live.keys.data, { codec: ctx.codec, cacheName: name }));
        bytes += record.byteLength;
        if ((ordered.length & 0x3ff) === 0) await yieldIfBusy();
      }
      ordered.sort((a, b) => a.order - b.order);
      this.#remember(name, live.gen, seq === null || seq === undefined ? undefined : Number(seq));
      return { entries: ordered.map(({ entry }) => entry), savedAt, location, bytes, codec };
    });
  }

  /**
   * One entry of the saved copy (one HGET), or `undefined` if absent or expired by
   * `ctx.clock`. Finding an expired entry removes the cache's expired entries.
   *
   * @throws {CorruptFileError} the record failed its checks
   * @example
   * await store.loadEntry('users', 'u1', ctx); // ['u1', { name: 'Ada' }, 0]
   */
  async loadEntry(name: string, key: unknown, ctx: StoreContext): Promise<StoredEntry | undefined> {
    const location = this.locate(name);
    let field: string;
    try {
      field = fieldOf(ctx.codec, key);
    } catch {
      return undefined; // no codec can encode this key: it was never saved
    }
    return this.#run('loadEntry', location, async (client) => {
      const live = await this.#readLive(client, name, (chain, keys) => chain.hgetBuffer(keys.data, field));
      const record = live?.values[0] as Buffer | null | undefined;
      if (live === undefined || record === null || record === undefined) return undefined;
      const { entry } = decodeRecord(record, live.keys.data, { codec: ctx.codec, cacheName: name });
      const now = ctx.clock.now();
      if (entry[2] === 0 || entry[2] > now) return entry;
      await runScript(client, PURGE, [this.#keys.gen(name), live.keys.data, live.keys.exp], [live.gen, String(now), String(SLICE)]);
      return undefined;
    });
  }

  /**
   * Replaces the saved copy of `name`: writes a new generation, then switches to it
   * atomically and unlinks the old one. Nothing changes if encoding fails.
   *
   * @throws {UnserializableError} naming the key the codec cannot encode
   * @throws {StoreIOError} the server refused a write (OOM, ...) or part of the new copy is missing; the previous copy is kept
   * @example
   * await store.save('users', [['u1', { name: 'Ada' }, 0]], ctx); // { entries: 1, bytes: …, location: 'cg:default:{users}' }
   */
  async save(name: string, entries: Iterable<StoredEntry>, ctx: StoreContext): Promise<SaveResult> {
    const location = this.locate(name);
    const savedAt = checkedNow(ctx);
    const encoded = await encodeAll(name, ctx, entries);
    return this.#replace(name, encoded, ctx, savedAt, 'save', location);
  }

  async #replace(name: string, encoded: EncodedEntry[], ctx: StoreContext, savedAt: number, op: string, location: string): Promise<SaveResult> {
    const bytes = stampAll(encoded, 1);
    const id = newGenerationId();
    const keys = this.#keys.generation(name, id);
    const expiries = new Map<string, number>();
    for (const { field, expiresAt } of encoded) expiries.set(field, expiresAt);
    let expiring = 0;
    for (const expiresAt of expiries.values()) if (expiresAt !== 0) expiring += 1;
    const fields = expiries.size;

    return this.#run(op, location, async (client) => {
      let committed = false;
      // A save that carries no links keeps those recorded (the manager's always carry them).
      let links = ctx.dependsOn === undefined ? undefined : JSON.stringify(ctx.dependsOn);
      if (links === undefined) {
        const previous = await this.#expectedGen(client, name);
        if (previous !== undefined) links = (await client.hget(this.#keys.generation(name, previous).meta, 'dependsOn')) ?? undefined;
      }
      try {
        const pipeline = client.pipeline();
        pipeline.hset(keys.meta, {
          seq: String(encoded.length),
          savedAt: String(savedAt),
          codec: ctx.codec.name,
          node: process.version,
          v8: process.versions.v8,
          // The cache's direct upstreams, for tools that draw and cascade the graph offline.
          ...(links === undefined ? {} : { dependsOn: links }),
        });
        pipeline.pexpire(keys.meta, DEBRIS_TTL_MS);
        // Each key gets its debris expiry right after the command that creates it.
        let args: (string | Buffer)[] = [];
        let argBytes = 0;
        let first = true;
        const flushData = (): void => {
          pipeline.call('HSET', [keys.data, ...args]);
          if (first) pipeline.pexpire(keys.data, DEBRIS_TTL_MS);
          first = false;
          args = [];
          argBytes = 0;
        };
        for (const { field, record } of encoded) {
          args.push(field, record);
          argBytes += record.byteLength;
          if (args.length >= SLICE || argBytes >= COMMAND_BYTES) flushData();
        }
        if (args.length > 0) flushData();
        let scores: string[] = [];
        first = true;
        const flushExpiries = (): void => {
          pipeline.call('ZADD', [keys.exp, ...scores]);
          if (first) pipeline.pexpire(keys.exp, DEBRIS_TTL_MS);
          first = false;
          scores = [];
        };
        for (const { field, expiresAt } of encoded) {
          if (expiresAt === 0) continue;
          scores.push(String(expiresAt), field);
          if (scores.length >= SLICE) flushExpiries();
        }
        if (scores.length > 0) flushExpiries();
        await replies(pipeline);

        const genKey = this.#keys.gen(name);
        let expected = await this.#expectedGen(client, name);
        for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
          const old = expected === undefined ? [] : Object.values(this.#keys.generation(name, expected));
          const reply = await runScript(client, COMMIT, [genKey, keys.meta, keys.data, keys.exp, ...old], [expected ?? '', id, String(fields), String(expiring)]);
          if (reply === 'OK') {
            committed = true;
            this.#remember(name, id, encoded.length);
            await this.#waitAofAfter(client, op, location);
            return { entries: encoded.length, bytes, location };
          }
          if (reply === 'INCOMPLETE') {
            throw new StoreIOError(op, location, new Error('part of the new copy did not reach the server (a dropped connection, or evicted keys); the previous copy is kept'));
          }
          expected = (await client.get(genKey)) ?? undefined;
        }
        throw this.#contention(op, name);
      } catch (error) {
        // The new generation expires by itself anyway; remove it now if we can.
        if (!committed && client.status === 'ready') await client.unlink(keys.meta, keys.data, keys.exp).catch(() => undefined);
        throw error;
      }
    });
  }

  /**
   * Applies a batch of changes to the saved copy in one script: all of it or nothing, at a
   * cost that follows the batch. A cleared batch writes a new generation, as `save` does.
   * Afterwards, entries expired by `ctx.clock` are removed (at most 1000).
   *
   * @throws {UnserializableError} naming the key the codec cannot encode
   * @example
   * await store.saveChanges('users', { cleared: false, sets: [['u2', { name: 'Grace' }, 0]], deletes: ['u1'] }, ctx);
   */
  async saveChanges(name: string, batch: ChangeBatch, ctx: StoreContext): Promise<SaveResult> {
    const location = this.locate(name);
    const savedAt = checkedNow(ctx);
    const sets = await encodeAll(name, ctx, batch.sets);
    if (batch.cleared) return this.#replace(name, sets, ctx, savedAt, 'saveChanges', location);
    const deletes: string[] = [];
    for (const key of batch.deletes) {
      try {
        deletes.push(fieldOf(ctx.codec, key));
      } catch {
        // No codec can encode this key, so it was never saved: nothing to delete.
      }
    }
    const expiring = sets.filter(({ expiresAt }) => expiresAt !== 0);

    return this.#run('saveChanges', location, async (client) => {
      const genKey = this.#keys.gen(name);
      const known = this.#known.get(name);
      let state = known?.seq === undefined ? await this.#state(client, name) : known;
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const id = state?.gen ?? newGenerationId();
        const seq = state?.seq ?? 0;
        const bytes = stampAll(sets, seq + 1);
        const keys = this.#keys.generation(name, id);
        const args: (string | Buffer)[] = [
          state?.gen ?? '',
          id,
          String(seq),
          String(savedAt),
          ctx.codec.name,
          process.version,
          process.versions.v8,
          String(savedAt),
          String(sets.length),
          String(deletes.length),
          String(expiring.length),
          ctx.dependsOn === undefined ? '' : JSON.stringify(ctx.dependsOn),
        ];
        for (const { field, record } of sets) args.push(field, record);
        for (const field of deletes) args.push(field);
        for (const { field, expiresAt } of expiring) args.push(String(expiresAt), field);
        const reply = await runScript(client, APPLY, [genKey, keys.meta, keys.data, keys.exp], args);
        if (reply === 'OK') {
          this.#remember(name, id, seq + sets.length);
          await this.#waitAofAfter(client, 'saveChanges', location);
          return { entries: sets.length + deletes.length, bytes, location };
        }
        state = await this.#state(client, name);
      }
      throw this.#contention('saveChanges', name);
    });
  }

  /**
   * Removes the saved copy: the pointer is deleted and the data unlinked (freed by Redis in
   * the background), O(1). Resolves `true` if there was one.
   *
   * @example
   * await store.delete('users'); // true
   */
  async delete(name: string): Promise<boolean> {
    const [dropped] = await this.invalidateCascade([name]);
    return dropped === true;
  }

  /**
   * Removes the saved copies of several caches at once, atomically (one script: another
   * process sees all of them or none of them gone), O(1) per cache: each pointer is deleted
   * and its data unlinked. For an invalidation and its downstream caches. Resolves, per
   * name, whether it had a copy. On a Cluster client, caches in different slots cannot
   * share a script: each cache is dropped atomically on its own.
   *
   * @example
   * await store.invalidateCascade(['users', 'stats', 'report']); // [true, true, false]
   */
  async invalidateCascade(names: readonly string[]): Promise<boolean[]> {
    const unique = [...new Set(names)];
    if (unique.length === 0) return [];
    const location = unique.length === 1 ? this.locate(unique[0] as string) : this.#keys.root;
    const dropped = await this.#run('delete', location, async (client) => {
      if (client.isCluster) return (await Promise.all(unique.map((name) => this.#drop(client, [name])))).flat();
      return this.#drop(client, unique);
    });
    const byName = new Map(unique.map((name, i) => [name, dropped[i] === 1]));
    return names.map((name) => byName.get(name) === true);
  }

  async #drop(client: RedisClient, names: readonly string[]): Promise<number[]> {
    let expected = await Promise.all(names.map((name) => this.#expectedGen(client, name)));
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const keys: string[] = [];
      names.forEach((name, i) => {
        const gen = this.#keys.gen(name);
        const id = expected[i];
        keys.push(gen, ...(id === undefined ? [gen, gen, gen] : Object.values(this.#keys.generation(name, id))));
      });
      const reply = await runScript(client, DROP, keys, expected.map((id) => id ?? ''));
      if (Array.isArray(reply)) {
        for (const name of names) this.#known.delete(name);
        if (reply.includes(1)) await this.#waitAofAfter(client, 'delete', this.locate(names[0] as string));
        return reply as number[];
      }
      expected = await Promise.all(names.map(async (name) => (await client.get(this.#keys.gen(name))) ?? undefined));
    }
    throw this.#contention('delete', names[0] as string);
  }

  /**
   * Whether a copy of `name` is saved (EXISTS of its pointer).
   *
   * @example
   * await store.has('users'); // true
   */
  async has(name: string): Promise<boolean> {
    const location = this.locate(name);
    return this.#run('has', location, async (client) => (await client.exists(this.#keys.gen(name))) === 1);
  }

  /**
   * What is saved under `name`, in one MULTI and without reading a record: entries (HLEN),
   * bytes (the server's MEMORY USAGE estimate of the data), save time, codec and the
   * recorded dependency links; `undefined` when nothing is saved.
   *
   * @throws {CorruptFileError} the generation's metadata is missing or damaged
   * @example
   * await store.describe('stats'); // { name: 'stats', entries: 2, dependsOn: ['users'], … }
   */
  async describe(name: string): Promise<StoredInfo | undefined> {
    const location = this.locate(name);
    return this.#run('describe', location, async (client) => {
      const live = await this.#readLive(client, name, (chain, keys) => chain.hmget(keys.meta, 'savedAt', 'codec', 'dependsOn').hlen(keys.data).call('MEMORY', 'USAGE', keys.data));
      if (live === undefined) return undefined;
      const [[savedAtText, codec, links], entries, usage] = live.values as [(string | null)[], number, number | null];
      const savedAt = Number(savedAtText ?? Number.NaN);
      let dependsOn: unknown = [];
      try {
        if (typeof links === 'string') dependsOn = JSON.parse(links);
      } catch {
        dependsOn = undefined;
      }
      if (!Number.isFinite(savedAt) || typeof codec !== 'string' || !Array.isArray(dependsOn) || !dependsOn.every((link) => typeof link === 'string')) {
        throw new CorruptFileError(live.keys.meta, 'the generation has no valid metadata (damaged, or evicted: see docs/redis.md on maxmemory-policy)', { cacheName: name });
      }
      return { name, entries, bytes: usage ?? 0, savedAt, codec, dependsOn: dependsOn as string[], location, logBytes: 0 };
    });
  }

  /**
   * Names of the caches with a saved copy in this namespace, sorted (SCAN of the pointers,
   * on every master of a Cluster).
   *
   * @example
   * await store.list(); // ['stats', 'users']
   */
  async list(): Promise<string[]> {
    return this.#run('list', this.#keys.root, async (client) => {
      const nodes: Redis[] = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
      const names = new Set<string>();
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', this.#keys.genPattern, 'COUNT', 1000);
          cursor = next;
          for (const key of keys) {
            const name = this.#keys.nameOfGenKey(key);
            if (name !== undefined) names.add(name);
          }
        } while (cursor !== '0');
      }
      return [...names].sort();
    });
  }

  /**
   * Moves the saved copy aside: its keys are renamed to `<location>.corrupt-<time>:…` (not
   * listed, not loaded, kept until removed by hand) and the pointer deleted, in one script.
   * Resolves the new location, or `undefined` when nothing was saved.
   *
   * @example
   * await store.quarantine('users', ctx); // 'cg:default:{users}.corrupt-2024-05-01T120000.000Z'
   */
  async quarantine(name: string, ctx: StoreContext): Promise<string | undefined> {
    const location = this.locate(name);
    const time = new Date(ctx.clock.now());
    const stamp = Number.isNaN(time.getTime()) ? 'unknown-time' : time.toISOString().replaceAll(':', '');
    return this.#run('quarantine', location, async (client) => {
      let expected = await this.#expectedGen(client, name);
      let taken = 0;
      for (let stale = 0; stale < MAX_ATTEMPTS && expected !== undefined; ) {
        const slot = `${location}.corrupt-${stamp}${taken === 0 ? '' : `-${taken}`}`;
        const target = this.#keys.quarantined(slot);
        const keys = [this.#keys.gen(name), ...Object.values(this.#keys.generation(name, expected)), target.meta, target.data, target.exp];
        const reply = await runScript(client, QUARANTINE, keys, [expected]);
        if (reply === 'OK') {
          this.#known.delete(name);
          return slot;
        }
        if (reply === 'NONE') break;
        if (reply === 'TAKEN') {
          taken += 1;
        } else {
          stale += 1;
          expected = (await client.get(this.#keys.gen(name))) ?? undefined;
        }
      }
      if (expected !== undefined) throw this.#contention('quarantine', name);
      this.#known.delete(name);
      return undefined;
    });
  }

  // ---------------------------------------------------------------- locks

  /**
   * A lock on `key` of cache `name`, shared by every process on this namespace: SET NX PX
   * with a token naming this host and pid. A waiter learns of a release by pub/sub (at
   * once) and also polls every 250 ms (or when the holder's lock would expire), and gives
   * up after `waitMs`. Release is compare-and-delete: a lock that expired and was taken by
   * another holder is never removed by the old one. See `redis/locks.ts`.
   *
   * @throws {StoreUnavailableError} the server cannot be reached
   * @throws the signal's reason, when `signal` aborts; `ClosedError` when the store closes meanwhile
   * @example
   * const { lock, waited } = await store.lockKey('memo', key, { waitMs: 10_000, ttlMs: 60_000 });
   * if (lock !== undefined) try { await compute(); } finally { await lock.release(); }
   */
  lockKey(name: string, key: string, options: LockKeyOptions): Promise<KeyLockResult> {
    return this.#locks.lock(name, key, options);
  }

  // ---------------------------------------------------------------- pub/sub

  /**
   * Publishes `message` (any JSON value) to every store of this namespace that
   * {@link RedisStore.subscribe}s, wrapped with this store's {@link RedisStore.instanceId}.
   * Resolves how many connections received it.
   *
   * @throws {InvalidOptionError} option `message`, when it is not JSON-serializable
   * @example
   * await store.publish({ type: 'invalidated', names: ['users', 'stats'] });
   */
  async publish(message: unknown): Promise<number> {
    let text: string;
    try {
      text = JSON.stringify({ from: this.#instanceId, message });
    } catch (error) {
      throw new InvalidOptionError('message', `must be JSON-serializable: ${error instanceof Error ? error.message : String(error)}`);
    }
    const channel = this.#keys.busChannel;
    return this.#run('publish', channel, (client) => client.publish(channel, text));
  }

  /**
   * Calls `handler` with every message another store of this namespace publishes (its own
   * are skipped). Messages published while the connection is down are lost (Redis pub/sub
   * keeps nothing); after a reconnection the subscription is renewed by itself, and
   * `onResume` is called (also when the command connection comes back), so the subscriber
   * can catch up. A handler's errors and rejections are its own: they are caught and
   * dropped. Resolves a function that unsubscribes.
   *
   * @throws {StoreUnavailableError} the subscriber connection cannot be opened
   * @example
   * const stop = await store.subscribe((message, { from }) => console.log(from, message), { onResume: () => reloadAll() });
   * await stop();
   */
  async subscribe(handler: BusHandler, options: SubscribeOptions = {}): Promise<() => Promise<void>> {
    const listener: ChannelListener = (text) => {
      let envelope: { from?: unknown; message?: unknown };
      try {
        envelope = JSON.parse(text) as { from?: unknown; message?: unknown };
      } catch {
        return; // not one of ours
      }
      if (typeof envelope !== 'object' || envelope === null || typeof envelope.from !== 'string' || envelope.from === this.#instanceId) return;
      const from = envelope.from;
      void Promise.resolve()
        .then(() => handler(envelope.message, { from }))
        .catch(() => undefined);
    };
    const channel = this.#keys.busChannel;
    await this.#listen(channel, listener);
    const { onResume } = options;
    // A fresh function per subscription, so subscribing twice with one callback counts twice.
    const resume = onResume === undefined ? undefined : () => onResume();
    if (resume !== undefined) this.#resumeListeners.add(resume);
    let subscribed = true;
    return async () => {
      if (!subscribed) return;
      subscribed = false;
      if (resume !== undefined) this.#resumeListeners.delete(resume);
      await this.#subscriber?.remove(channel, listener);
    };
  }

  // ---------------------------------------------------------------- close

  /**
   * Releases the locks this store holds, cancels lock waits (they reject with
   * `ClosedError`), and closes the connections it opened (a `client` given in the options
   * stays open). Idempotent. Afterwards every call rejects with `ClosedError` (E_CLOSED):
   * unlike FileStore and MemoryStore, a closed RedisStore is not reused (a call racing the
   * close would otherwise open a connection nobody closes).
   *
   * @example
   * await store.close();
   */
  async close(): Promise<void> {
    this.#closing ??= (async () => {
      const closed = this.#closedError();
      const opening = this.#client;
      const subscriber = this.#subscriber;
      this.#client = undefined;
      this.#subscriber = undefined;
      this.#known.clear();
      this.#resumeListeners.clear();
      const client = await opening?.catch(() => undefined);
      client?.off('ready', this.#onClientReady);
      await this.#locks.close(client, closed);
      await subscriber?.close();
      if (client !== undefined && this.#given === undefined) await closeClient(client);
    })();
    return this.#closing;
  }
}
