/**
 * Options of RedisStore: the public type, its zod schema, and the parse that turns a failure
 * into an `InvalidOptionError` naming the option.
 *
 * @module
 */

import type { Cluster, Redis } from 'ioredis';
import { z } from 'zod';
import { InvalidOptionError } from '../../errors.js';
import type { RedisClient } from './connection.js';

/**
 * Options of {@link RedisStore}: `url` or `client`, exactly one.
 *
 * @example
 * const options: RedisStoreOptions = { url: 'rediss://app:secret@redis.internal:6380/0', namespace: 'prod', retry: { attempts: 5, delayMs: 500 } };
 */
export interface RedisStoreOptions {
  /**
   * The server: `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS. The
   * store creates, owns and closes its connections.
   */
  readonly url?: string;
  /**
   * An ioredis `Redis` or `Cluster` instance to use instead (for TLS options, Sentinel,
   * Cluster, ...). The store never closes it; it opens one more connection of the same
   * kind (`duplicate()`) for pub/sub, and closes that one. Its `keyPrefix` option must be
   * unset (use the store's `keyPrefix`).
   */
  readonly client?: Redis | Cluster;
  /**
   * Start of every key and channel name.
   * @default 'cg:'
   */
  readonly keyPrefix?: string;
  /**
   * Caches of different namespaces are separate, on one server and one prefix; pub/sub
   * messages reach the stores of one namespace.
   * @default 'default'
   */
  readonly namespace?: string;
  /**
   * Longest wait for one connection attempt, until the server answers, in ms.
   * @default 5000
   */
  readonly connectTimeoutMs?: number;
  /**
   * Longest wait for a reply to any command, in ms (connections the store creates);
   * 0: none (a server that stops answering without closing the connection then hangs calls).
   * @default 10000
   */
  readonly commandTimeoutMs?: number;
  /**
   * Attempts of the first connection and the pause between them. After the first success
   * the client reconnects by itself for ever.
   * @default { attempts: 3, delayMs: 200 }
   */
  readonly retry?: { readonly attempts?: number; readonly delayMs?: number };
  /**
   * After every write, wait until it is fsynced to the append-only file of `numlocal` (0
   * or 1) servers and `numreplicas` replicas, for at most `timeoutMs` (0: forever), with
   * WAITAOF (Redis 7.2+; not with a Cluster client). Fewer acknowledgements fail the write
   * with `StoreIOError` (op `'waitaof'`): it was applied but may not be durable.
   * @default undefined (no waiting: durability as configured on the server)
   */
  readonly waitAof?: { readonly numlocal: number; readonly numreplicas: number; readonly timeoutMs: number };
}

const NO_BRACES = /^[^{}]*$/;
const BRACES_MESSAGE = 'must not contain { or } (they delimit the hash tag that keeps a cache in one cluster slot)';
const int = (min: number) => z.number().int().min(min);

function isClient(value: unknown): value is RedisClient {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return typeof candidate['status'] === 'string' && typeof candidate['call'] === 'function' && typeof candidate['duplicate'] === 'function';
}

/**
 * Schema of {@link RedisStoreOptions}.
 *
 * @example
 * optionsSchema.safeParse({ url: 'redis://localhost' }).success; // true
 */
export const optionsSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
      .refine((url) => URL.canParse(url), 'is not a valid URL')
      .optional(),
    client: z.custom<RedisClient>(isClient, { message: 'must be an ioredis Redis or Cluster instance' }).optional(),
    keyPrefix: z.string().regex(NO_BRACES, BRACES_MESSAGE).optional(),
    namespace: z.string().min(1).regex(NO_BRACES, BRACES_MESSAGE).optional(),
    connectTimeoutMs: int(1).optional(),
    commandTimeoutMs: int(0).optional(),
    retry: z.strictObject({ attempts: int(1).max(1000).optional(), delayMs: int(0).optional() }).optional(),
    waitAof: z.strictObject({ numlocal: int(0).max(1), numreplicas: int(0), timeoutMs: int(0) }).optional(),
  })
  .superRefine((o, ctx) => {
    if ((o.url === undefined) === (o.client === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'give exactly one of url and client' });
    }
    const clientOptions = (o.client as { options?: { keyPrefix?: unknown } } | undefined)?.options;
    if (typeof clientOptions?.keyPrefix === 'string' && clientOptions.keyPrefix !== '') {
      ctx.addIssue({ code: 'custom', path: ['client'], message: "has ioredis' keyPrefix set; leave it unset and use the store's keyPrefix" });
    }
    if (o.waitAof !== undefined && o.client?.isCluster === true) {
      ctx.addIssue({ code: 'custom', path: ['waitAof'], message: 'is not supported with a Cluster client' });
    }
  });

/**
 * Options after validation.
 *
 * @example
 * const parsed: ParsedOptions = parseOptions({ url: 'redis://localhost' });
 */
export type ParsedOptions = z.infer<typeof optionsSchema>;

/**
 * Validates RedisStore options.
 *
 * @throws {InvalidOptionError} naming the first option that is wrong (`retry.attempts`)
 * @example
 * parseOptions({ url: 'redis://localhost', namespace: 'app' }).namespace; // 'app'
 */
export function parseOptions(options: unknown): ParsedOptions {
  const parsed = optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = (issue?.path ?? []).map(String);
  if (issue?.code === 'unrecognized_keys') path.push(...issue.keys.slice(0, 1));
  throw new InvalidOptionError(path.join('.'), `${issue?.message ?? 'invalid'} (RedisStore)`);
}
