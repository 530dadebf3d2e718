/**
 * Connections of RedisStore: ioredis is imported here, dynamically, the first time a store
 * connects (never when the package is loaded), and every client failure is turned into a
 * cachegraph error.
 *
 * A client the store creates:
 * - connects lazily, within `connectTimeoutMs` per attempt (a server that accepts the TCP
 *   connection but never answers counts as a timeout), `attempts` times, `delayMs` apart;
 *   then the store rejects with `StoreUnavailableError`: never a hang;
 * - once it was ready, reconnects by itself for ever (50 ms, doubling up to 1 s), and
 *   re-subscribes its channels (ioredis `autoResubscribe`);
 * - fails fast while disconnected: no offline queue, and commands in flight when the
 *   connection drops are rejected rather than re-sent (`maxRetriesPerRequest: 0`,
 *   `autoResendUnfulfilledCommands: false`): their outcome is unknown, and the caller, not
 *   the client, decides whether to repeat them.
 *
 * @module
 */

import type { Cluster, Redis } from 'ioredis';
import { CacheGraphError, StoreIOError, StoreUnavailableError } from '../../errors.js';
import type { Script } from './scripts.js';

/**
 * A client RedisStore can use: a standalone connection or a Cluster.
 *
 * @example
 * const client: RedisClient = new Redis('redis://127.0.0.1:6379');
 */
export type RedisClient = Redis | Cluster;

/** First reconnection delay after a connection that was ready drops; doubles up to {@link RECONNECT_MAX_MS}. */
const RECONNECT_BASE_MS = 50;
const RECONNECT_MAX_MS = 1000;

/** Replies that mean "not now" rather than "this failed": the server is starting, failing over, or busy. */
const UNAVAILABLE_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|NOREPLICAS|MISCONF)\b/;

/**
 * How to connect a client the store creates.
 *
 * @example
 * const settings: ConnectSettings = { url, endpoint: redactUrl(url), connectTimeoutMs: 5000, commandTimeoutMs: 10_000, attempts: 3, delayMs: 200, connectionName: 'cachegraph:app' };
 */
export interface ConnectSettings {
  /** `redis://` or `rediss://` URL, credentials included. */
  readonly url: string;
  /** The URL without credentials, for messages. */
  readonly endpoint: string;
  /** Longest wait for one connection attempt, until the server answers. */
  readonly connectTimeoutMs: number;
  /** Longest wait for the reply to a command; 0: no limit. */
  readonly commandTimeoutMs: number;
  /** Attempts of the first connection. */
  readonly attempts: number;
  /** Pause between two attempts. */
  readonly delayMs: number;
  /** CLIENT SETNAME of the connections (visible in CLIENT LIST); no spaces. */
  readonly connectionName: string;
}

/**
 * `url` without user name and password, for messages and errors.
 *
 * @example
 * redactUrl('redis://app:s3cret@db.internal:6380/2'); // 'redis://db.internal:6380/2'
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return 'redis://(unparsable url)';
  }
}

/**
 * The server a client talks to, without credentials.
 *
 * @example
 * describeClient(new Redis(6380)); // 'redis://localhost:6380/0'
 */
export function describeClient(client: RedisClient): string {
  if (client.isCluster) {
    // startupNodes is private in the typings, but it is what the user gave.
    const startup = (client as unknown as { startupNodes?: unknown[] }).startupNodes ?? [];
    const nodes = startup.map((node) => {
      const { host, port } = (typeof node === 'object' && node !== null ? node : {}) as { host?: unknown; port?: unknown };
      return typeof node === 'object' && node !== null ? `${String(host ?? 'localhost')}:${String(port ?? 6379)}` : String(node);
    });
    return `redis-cluster://${nodes.join(',')}`;
  }
  const { host, port, db, tls } = (client as Redis).options;
  return `${tls === undefined ? 'redis' : 'rediss'}://${host ?? 'localhost'}:${port ?? 6379}/${db ?? 0}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * `error` fit to be kept as a `cause`: ioredis reply errors carry the command that failed
 * with its arguments (`AUTH <password>`, a script's values), which `util.inspect` would
 * print. Those become a plain Error with the same name and message, and nothing else.
 */
function safeCause(error: unknown): unknown {
  if (!(error instanceof Error) || !('command' in error)) return error;
  return Object.assign(new Error(error.message), { name: error.name });
}

/**
 * Resolves when `client` is ready; rejects (with the client's last error, if any) when it
 * ends first or `timeoutMs` passes. `start` begins the connection, if it must be begun.
 */
function waitReady(client: RedisClient, timeoutMs: number, start?: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let lastError: unknown;
    const onError = (error: unknown): void => {
      lastError = error;
    };
    const finish = (error?: unknown): void => {
      clearTimeout(timer);
      client.off('error', onError);
      client.off('ready', onReady);
      client.off('end', onEnd);
      if (error === undefined) resolve();
      else reject(error instanceof Error ? error : new Error(String(error)));
    };
    const onReady = (): void => finish();
    const onEnd = (): void => finish(lastError ?? new Error('the connection was closed'));
    const timer = setTimeout(() => {
      const detail = lastError === undefined ? '' : ` (last error: ${messageOf(lastError)})`;
      finish(new Error(`no answer within ${timeoutMs} ms${detail}`));
    }, timeoutMs);
    timer.unref();
    client.on('error', onError);
    client.once('ready', onReady);
    client.once('end', onEnd);
    if (client.status === 'ready') finish();
    // The outcome is observed through the events above; the promise only repeats it.
    else start?.().catch(() => undefined);
  });
}

/**
 * Creates a client of the store's own and connects it (see the module comment). `role`
 * names it in errors (`'connect'`, `'subscribe'`).
 *
 * @throws {StoreUnavailableError} when every attempt failed or timed out
 * @example
 * const client = await connectOwnClient(settings, 'connect');
 */
export async function connectOwnClient(settings: ConnectSettings, role: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  let lastError: unknown;
  for (let attempt = 1; attempt <= settings.attempts; attempt++) {
    if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, settings.delayMs).unref());
    let wasReady = false;
    const client = new Redis(settings.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: settings.connectTimeoutMs,
      connectionName: settings.connectionName,
      ...(settings.commandTimeoutMs > 0 ? { commandTimeout: settings.commandTimeoutMs } : {}),
      // Until the first ready: no reconnection (the attempts above decide); afterwards, for ever.
      retryStrategy: (times: number) => (wasReady ? Math.min(RECONNECT_BASE_MS * 2 ** Math.min(times - 1, 5), RECONNECT_MAX_MS) : null),
    });
    // Without a listener ioredis prints every connection error; the store reports them itself.
    client.on('error', () => undefined);
    try {
      await waitReady(client, settings.connectTimeoutMs, () => client.connect());
      wasReady = true;
      return client;
    } catch (error) {
      lastError = error;
      client.disconnect();
    }
  }
  const tries = settings.attempts === 1 ? '1 attempt' : `${settings.attempts} attempts`;
  throw new StoreUnavailableError(settings.endpoint, role, `not reachable after ${tries}: ${messageOf(lastError)}`, { cause: safeCause(lastError) });
}

/**
 * Waits until a client given by the user is ready, starting it if it was created with
 * `lazyConnect` (or has ended). Its own retry policy is left alone.
 *
 * @throws {StoreUnavailableError} when it is not ready within `timeoutMs`
 * @example
 * await connectGivenClient(client, 5000, 'connect');
 */
export async function connectGivenClient(client: RedisClient, timeoutMs: number, role: string): Promise<void> {
  const start = client.status === 'wait' || client.status === 'end' ? () => client.connect() : undefined;
  try {
    await waitReady(client, timeoutMs, start);
  } catch (error) {
    throw new StoreUnavailableError(describeClient(client), role, messageOf(error), { cause: safeCause(error) });
  }
}

/**
 * Turns what a client threw into a cachegraph error: cachegraph errors pass through; a reply
 * that means the server is unavailable for now (LOADING, READONLY, …) and every connection
 * failure become {@link StoreUnavailableError}; other replies from the server (OOM, …)
 * {@link StoreIOError}.
 *
 * @example
 * try { await client.get(key); } catch (error) { throw storeError(error, 'load', location, endpoint); }
 */
export function storeError(error: unknown, op: string, location: string, endpoint: string): Error {
  if (error instanceof CacheGraphError) return error;
  if (error instanceof Error && error.name === 'ReplyError' && !UNAVAILABLE_REPLY.test(error.message)) {
    return new StoreIOError(op, location, safeCause(error));
  }
  return new StoreUnavailableError(endpoint, op, messageOf(error), { cause: safeCause(error) });
}

/**
 * Fails fast when the client is not connected, instead of queueing or hanging.
 *
 * @throws {StoreUnavailableError} when the client's status is not `'ready'`
 * @example
 * assertReady(client, 'save', endpoint);
 */
export function assertReady(client: RedisClient, op: string, endpoint: string): void {
  if (client.status !== 'ready') throw new StoreUnavailableError(endpoint, op, `the connection is ${client.status}`);
}

/**
 * Runs a script by its SHA1, loading it (EVAL) when the server does not know it yet.
 * Arguments travel as one array: a batch of 100 000 changes is one command.
 *
 * @example
 * await runScript(client, LOCK, [lockKey], [token, '5000']);
 */
export async function runScript(client: RedisClient, script: Script, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<unknown> {
  const argv: (string | Buffer | number)[] = [script.sha, keys.length, ...keys];
  for (const arg of args) argv.push(arg);
  try {
    return await client.call('EVALSHA', argv);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    argv[0] = script.source;
    return client.call('EVAL', argv);
  }
}

/**
 * Reads the server's version (`INFO server`), e.g. `[7, 0, 15]`; `[0, 0, 0]` when unknown.
 *
 * @example
 * const [major, minor] = await serverVersion(client);
 */
export async function serverVersion(client: RedisClient): Promise<[number, number, number]> {
  const info = String(await client.call('INFO', ['server']));
  const match = /^redis_version:(\d+)\.(\d+)\.(\d+)/m.exec(info);
  return match === null ? [0, 0, 0] : [Number(match[1]), Number(match[2]), Number(match[3])];
}
