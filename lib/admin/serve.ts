/**
 * Starting the admin service on its own `node:http` server: for a manager inside an
 * application ({@link serve}, which backs `manager.serve()`), or for a store alone
 * (`cachegraph serve`, {@link serveStore}).
 *
 * @module
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from '../errors.js';
import type { CacheManager } from '../manager.js';
import type { CacheStore } from '../store/types.js';
import { createAdminHandler, isLoopback, type AdminHandler, type AdminOptions } from './handler.js';
import { storeSource, type AdminSource } from './source.js';

/**
 * Options of {@link serve}: where to listen, plus the handler's options.
 *
 * @example
 * const options: ServeOptions = { port: 9470, token: process.env.CACHEGRAPH_TOKEN };
 */
export interface ServeOptions extends AdminOptions {
  /**
   * The port; `0` picks a free one (read it from {@link AdminServer.url}).
   * @default 0
   */
  readonly port?: number;
  /**
   * The address to bind. Anything but loopback exposes the service: mutations then always
   * need `token`.
   * @default '127.0.0.1'
   */
  readonly host?: string;
}

/**
 * A running admin service.
 *
 * @example
 * const server = await manager.serve({ port: 9470 });
 * console.log(server.url); // 'http://127.0.0.1:9470/'
 * await server.close();
 */
export interface AdminServer {
  /** Where it listens, e.g. `http://127.0.0.1:9470/`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** The underlying server. */
  readonly server: http.Server;
  /** Stops listening, closes open connections and detaches from the manager. Idempotent. */
  close(): Promise<void>;
}

/** `/`, or `/admin/cache/` for basePath `admin/cache`. */
function mountPath(basePath: string | undefined): string {
  const trimmed = (basePath ?? '').replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '/' : `/${trimmed}/`;
}

async function listen(target: CacheManager | AdminSource, options: ServeOptions): Promise<AdminServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidOptionError('port', `must be an integer from 0 to 65535, not ${String(port)}`);
  if (options.token !== undefined && options.token.length < 16) throw new InvalidOptionError('token', 'must be at least 16 characters (it guards invalidation)');
  // Bound beyond loopback, every connection counts as remote, whatever address it came in on.
  const handler: AdminHandler = createAdminHandler(target, { ...options, requireToken: options.requireToken === true || !isLoopback(host) });
  const server = http.createServer((req, res) => handler(req, res));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    handler.close();
    throw error;
  }
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shown}:${address.port}${mountPath(options.basePath)}`,
    port: address.port,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        handler.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * Serves the admin API and dashboard of `manager` on a new HTTP server. Binds 127.0.0.1
 * unless told otherwise; on any other address, invalidate and save need `token`.
 *
 * @throws {InvalidOptionError} option `port` or `token` (a token must have 16+ characters)
 * @example
 * const admin = await serve(manager, { port: 9470 });
 * // … later
 * await admin.close();
 */
export function serve(manager: CacheManager, options: ServeOptions = {}): Promise<AdminServer> {
  return listen(manager, options);
}

/**
 * Serves the admin API and dashboard of a store alone (what `cachegraph serve` runs): the
 * saved caches and their recorded links; invalidation deletes copies along them.
 *
 * @param store - the store (the caller closes it)
 * @param options - where to listen; `label` titles the page (never a URL with credentials)
 * @example
 * const admin = await serveStore(new FileStore({ dir: '.cache' }), { port: 9470, label: '.cache' });
 */
export function serveStore(store: CacheStore, options: ServeOptions & { readonly label?: string } = {}): Promise<AdminServer> {
  return listen(storeSource(store, options.label ?? store.kind), options);
}

