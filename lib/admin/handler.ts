/**
 * The admin service as a request handler for `node:http`: JSON endpoints, Prometheus
 * `/metrics`, and the dashboard page. Mount it on a server of your own with
 * {@link createAdminHandler}, or let {@link serve} start one.
 *
 * | method | path | answer |
 * |---|---|---|
 * | GET | `/` | the dashboard |
 * | GET | `/api/info` | name, source kind, whether mutations need a token |
 * | GET | `/api/caches` | the caches table |
 * | GET | `/api/caches/<name>` | one cache, with its cascade |
 * | GET | `/api/caches/<name>/keys/<key>` | one entry (`?json=1`: the key is JSON) |
 * | GET | `/api/graph` | nodes and direct edges |
 * | GET | `/api/timeline?since=<ms>` | AutoSync timeline |
 * | GET | `/api/stats` | totals, process CPU and memory |
 * | POST | `/api/caches/<name>/invalidate` | `{ "dryRun": true }` lists the cascade |
 * | POST | `/api/caches/<name>/save` | saves now (manager only) |
 * | GET | `/metrics` | Prometheus text |
 *
 * @module
 */

import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { CacheGraphError, UnknownCacheError } from '../errors.js';
import type { CacheManager } from '../manager.js';
import { valueFields } from '../cli/transfer.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { clearProcessUsage, histogramSamples, processUsage, PrometheusText } from './metrics.js';
import { managerSource, type AdminSource, type CacheRow } from './source.js';

/**
 * Options of {@link createAdminHandler} and {@link serve}.
 *
 * @example
 * const options: AdminOptions = { token: process.env.CACHEGRAPH_TOKEN, basePath: '/admin/cache' };
 */
export interface AdminOptions {
  /**
   * Bearer token that mutating endpoints (invalidate, save) require
   * (`Authorization: Bearer <token>`). Without one, mutations are allowed only on
   * connections to a loopback address.
   * @default none
   */
  readonly token?: string;
  /**
   * Where the service is mounted on the server (`/admin/cache`); requests elsewhere go to
   * `next` or get a 404.
   * @default '/'
   */
  readonly basePath?: string;
  /**
   * Require the token for mutations whatever the connection's address (set by
   * {@link serve} when it binds a non-loopback address).
   * @default false
   */
  readonly requireToken?: boolean;
}

/**
 * A request listener for `node:http` servers, with a `close()` that stops its event
 * listeners. A request outside `basePath` is passed to `next` when given, else answered 404.
 *
 * @example
 * const handler = createAdminHandler(manager);
 * http.createServer((req, res) => handler(req, res)).listen(9470, '127.0.0.1');
 */
export interface AdminHandler {
  (req: IncomingMessage, res: ServerResponse, next?: () => void): void;
  /** Stops listening to the manager's events. Idempotent. */
  close(): void;
  /** What it serves. */
  readonly source: AdminSource;
}

/** An HTTP error with its status. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const MAX_BODY_BYTES = 64 * 1024;

/**
 * Whether `address` is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127.x).
 *
 * @example
 * isLoopback('127.0.0.1'); // true
 * isLoopback('0.0.0.0');   // false
 */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(plain) === 4) return plain.startsWith('127.');
  return plain === '::1' || plain === 'localhost';
}

function sameSecret(given: string, expected: string): boolean {
  // Hashes have one length, so the comparison time says nothing about the token.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, body: string, type: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...headers,
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, `${JSON.stringify(value)}\n`, 'application/json; charset=utf-8', headers);
}

function hitRate(row: CacheRow): number | null {
  const total = (row.hits ?? 0) + (row.misses ?? 0);
  return total === 0 ? null : (row.hits ?? 0) / total;
}

async function metricsText(source: AdminSource): Promise<string> {
  const rows = await source.caches();
  const text = new PrometheusText();
  const per = (pick: (row: CacheRow) => number | undefined): [Record<string, string>, number][] =>
    rows.flatMap((row) => {
      const value = pick(row);
      return value === undefined ? [] : [[{ cache: row.name }, value] as [Record<string, string>, number]];
    });
  const metrics = source.metrics;
  text
    .family('cachegraph_cache_entries', 'gauge', 'Entries in memory (or in the saved copy when serving a store).', per((r) => r.entries))
    .family('cachegraph_cache_dirty_entries', 'gauge', 'Distinct keys changed since the last save.', per((r) => r.dirtyKeys))
    .family('cachegraph_cache_pending_changes', 'gauge', 'Changes not saved yet (the AutoSync dirty count).', per((r) => r.pendingChanges))
    .family('cachegraph_cache_hits_total', 'counter', 'Reads answered by the cache (for a cache of memoized results: calls answered by a stored result).', per((r) => r.hits))
    .family('cachegraph_cache_misses_total', 'counter', 'Reads the cache could not answer (for a cache of memoized results: calls computed).', per((r) => r.misses))
    .family('cachegraph_cache_sets_total', 'counter', 'set() calls on the cache.', per((r) => r.sets))
    .family('cachegraph_cache_evictions_total', 'counter', 'Entries evicted by the LRU bound.', per((r) => r.evictions))
    .family('cachegraph_sync_total', 'counter', 'Saves that finished, by result.', [
      ...per((r) => r.saves).map(([labels, value]): [Record<string, string>, number] => [{ ...labels, result: 'ok' }, value]),
      ...per((r) => r.saveErrors).map(([labels, value]): [Record<string, string>, number] => [{ ...labels, result: 'error' }, value]),
    ])
    .family(
      'cachegraph_sync_duration_seconds',
      'histogram',
      'Duration of the saves seen by this service.',
      metrics === undefined ? [] : rows.flatMap((row) => histogramSamples({ cache: row.name }, metrics.counters(row.name).buckets, metrics.counters(row.name).syncSeconds)),
    )
    .family(
      'cachegraph_store_errors_total',
      'counter',
      'Failed store operations seen by this service (saves and background work).',
      metrics === undefined ? [] : rows.map((row): [Record<string, string>, number] => [{ cache: row.name }, metrics.counters(row.name).storeErrors]),
    );
  const usage = await processUsage();
  const process = usage === undefined ? [] : [[{ pid: String(usage.pid) }, usage.cpu] as [Record<string, string>, number]];
  text
    .family('cachegraph_process_cpu_percent', 'gauge', 'CPU of this process, which runs background compaction in worker threads (pidusage; 100 = one core).', process)
    .family(
      'cachegraph_process_memory_bytes',
      'gauge',
      'Resident memory of this process, background compaction workers included (pidusage).',
      usage === undefined ? [] : [[{ pid: String(usage.pid) }, usage.memory]],
    );
  return text.toString();
}

/** A source rather than a manager (duck-typed: importing the manager class here would make a cycle). */
function isSource(target: CacheManager | AdminSource): target is AdminSource {
  return typeof (target as Partial<AdminSource>).cascade === 'function' && typeof (target as Partial<AdminSource>).timeline === 'function';
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `malformed percent-encoding in ${JSON.stringify(segment)}`);
  }
}

/**
 * Creates the admin handler for a manager (or any {@link AdminSource}). It listens to the
 * manager's events from now on (for the timeline and sync histogram) until `close()`.
 *
 * @param target - the manager, or a source (`storeSource(store)` for a store alone)
 * @param options - token and mount path
 * @example
 * const handler = createAdminHandler(manager, { basePath: '/admin/cache' });
 * server.on('request', (req, res) => handler(req, res, () => app(req, res)));
 */
export function createAdminHandler(target: CacheManager | AdminSource, options: AdminOptions = {}): AdminHandler {
  const source = isSource(target) ? target : managerSource(target);
  const base = `/${(options.basePath ?? '/').replace(/^\/+|\/+$/g, '')}`.replace(/^\/$/, '');
  const token = options.token === '' ? undefined : options.token;

  const authorize = (req: IncomingMessage): void => {
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    // A page elsewhere can post a form without asking; it cannot send JSON without a CORS preflight.
    if (contentType !== 'application/json') throw new HttpError(415, 'mutating requests must be sent as application/json');
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host: string | undefined;
      try {
        host = new URL(origin).host;
      } catch {
        host = undefined;
      }
      if (host !== req.headers.host) throw new HttpError(403, 'cross-origin requests may not change caches');
    }
    if (token === undefined) {
      if (options.requireToken === true || !isLoopback(req.socket.localAddress)) throw new HttpError(403, 'changes are refused: this service is reachable beyond loopback and has no token configured');
      return;
    }
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (match === null || !sameSecret((match[1] as string).trim(), token)) {
      throw new HttpError(401, 'a valid bearer token is required (Authorization: Bearer <token>)', { 'www-authenticate': 'Bearer realm="cachegraph"' });
    }
  };

  const knownCache = async (name: string): Promise<void> => {
    if (!(await source.has(name))) throw new HttpError(404, `no cache named ${JSON.stringify(name)}`);
  };

  const route = async (req: IncomingMessage, res: ServerResponse, pathname: string, query: URLSearchParams): Promise<void> => {
    const method = req.method ?? 'GET';
    const allow = (...methods: string[]): void => {
      if (!methods.includes(method)) throw new HttpError(405, `${method} is not allowed here`, { allow: methods.join(', ') });
    };
    if (pathname === '/' || pathname === '/index.html') {
      allow('GET', 'HEAD');
      return send(res, 200, DASHBOARD_HTML, 'text/html; charset=utf-8', {
        'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
      });
    }
    if (pathname === '/favicon.ico') {
      res.writeHead(204, { 'cache-control': 'max-age=86400' });
      res.end();
      return;
    }
    if (pathname === '/dashboard.js') return send(res, 200, DASHBOARD_JS, 'text/javascript; charset=utf-8');
    if (pathname === '/dashboard.css') return send(res, 200, DASHBOARD_CSS, 'text/css; charset=utf-8');
    if (pathname === '/metrics') {
      allow('GET', 'HEAD');
      return send(res, 200, await metricsText(source), 'text/plain; version=0.0.4; charset=utf-8');
    }
    if (pathname === '/api/info') {
      allow('GET');
      return sendJson(res, 200, { name: source.label, source: source.kind, mutationsNeedToken: token !== undefined || options.requireToken === true || !isLoopback(req.socket.localAddress), canSave: source.save !== undefined });
    }
    if (pathname === '/api/caches') {
      allow('GET');
      const rows = await source.caches();
      return sendJson(res, 200, { caches: rows.map((row) => ({ ...row, hitRate: hitRate(row) })) });
    }
    if (pathname === '/api/graph') {
      allow('GET');
      return sendJson(res, 200, await source.graph());
    }
    if (pathname === '/api/timeline') {
      allow('GET');
      const since = Number(query.get('since') ?? 0);
      if (!Number.isFinite(since)) throw new HttpError(400, 'since must be a time in ms');
      return sendJson(res, 200, { now: Date.now(), events: source.timeline(since) });
    }
    if (pathname === '/api/stats') {
      allow('GET');
      const rows = await source.caches();
      return sendJson(res, 200, {
        name: source.label,
        source: source.kind,
        caches: rows.length,
        entries: rows.reduce((sum, row) => sum + (row.entries ?? 0), 0),
        pendingChanges: rows.reduce((sum, row) => sum + row.pendingChanges, 0),
        saves: rows.reduce((sum, row) => sum + row.saves, 0),
        saveErrors: rows.reduce((sum, row) => sum + row.saveErrors, 0),
        process: (await processUsage()) ?? null,
      });
    }
    const match = /^\/api\/caches\/([^/]+)(?:\/(invalidate|save|keys\/(.+)))?$/.exec(pathname);
    if (match === null) throw new HttpError(404, `nothing at ${pathname}`);
    const name = decodeSegment(match[1] as string);
    const action = match[2];
    if (action === undefined) {
      allow('GET');
      await knownCache(name);
      const row = (await source.caches()).find((r) => r.name === name);
      return sendJson(res, 200, { ...(row ?? { name }), hitRate: row === undefined ? null : hitRate(row), cascade: await source.cascade(name) });
    }
    if (action === 'invalidate' || action === 'save') {
      allow('POST');
      authorize(req);
      const body = await readJsonBody(req);
      await knownCache(name);
      if (action === 'save') {
        if (source.save === undefined) throw new HttpError(409, 'nothing to save: this service shows a store, not a running application');
        await source.save(name);
        return sendJson(res, 200, { saved: name });
      }
      if (body['dryRun'] !== undefined && typeof body['dryRun'] !== 'boolean') throw new HttpError(400, 'dryRun must be true or false');
      const dryRun = body['dryRun'] === true;
      const names = dryRun ? await source.cascade(name) : await source.invalidate(name);
      return sendJson(res, 200, { source: name, dryRun, invalidated: names.map((n) => ({ cache: n, cause: n === name ? 'direct' : 'dependency' })) });
    }
    allow('GET');
    await knownCache(name);
    const keyText = decodeSegment(match[3] as string);
    let key: unknown = keyText;
    if (query.get('json') === '1') {
      try {
        key = JSON.parse(keyText);
      } catch {
        throw new HttpError(400, `the key ${JSON.stringify(keyText)} is not JSON (json=1)`);
      }
    }
    const entry = await source.lookup(name, key);
    if (entry === undefined) throw new HttpError(404, `cache ${JSON.stringify(name)} has no key ${JSON.stringify(keyText)}`);
    return sendJson(res, 200, { cache: name, ...valueFields('key', entry[0]), ...valueFields('value', entry[1]), expiresAt: entry[2] === 0 ? null : entry[2] });
  };

  const handler = ((req: IncomingMessage, res: ServerResponse, next?: () => void): void => {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    let pathname = url.pathname;
    if (base !== '') {
      if (pathname === base) {
        res.writeHead(308, { location: `${base}/${url.search}` });
        res.end();
        return;
      }
      if (!pathname.startsWith(`${base}/`)) {
        if (next !== undefined) next();
        else sendJson(res, 404, { error: `nothing at ${pathname}` });
        return;
      }
      pathname = pathname.slice(base.length);
    }
    route(req, res, pathname, url.searchParams).catch((error: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof HttpError) return sendJson(res, error.status, { error: error.message }, error.headers);
      if (error instanceof UnknownCacheError) return sendJson(res, 404, { error: error.message, code: error.code });
      // A cachegraph error says what failed in its message; anything else stays on the server.
      if (error instanceof CacheGraphError) return sendJson(res, 500, { error: error.message, code: error.code });
      return sendJson(res, 500, { error: 'internal error' });
    });
  }) as AdminHandler;
  let closed = false;
  Object.defineProperty(handler, 'source', { value: source });
  handler.close = () => {
    if (closed) return;
    closed = true;
    source.close();
    clearProcessUsage();
  };
  return handler;
}
