/**
 * Where RedisStore keeps things: every key of one cache shares the hash tag `{<name>}`, so a
 * cache lives in one Redis Cluster slot and a Lua script or MULTI may touch all of its keys.
 *
 * ```text
 * <prefix><namespace>:{<name>}:gen                 STRING  id of the live generation (absent: nothing saved)
 * <prefix><namespace>:{<name>}:g:<id>:meta         HASH    savedAt, codec, seq (last order number), node, v8
 * <prefix><namespace>:{<name>}:g:<id>:data         HASH    key identity -> checksummed record (value.ts)
 * <prefix><namespace>:{<name>}:g:<id>:exp          ZSET    key identity -> expiresAt, for entries that expire
 * <prefix><namespace>:{<name>}:lock:<key>          STRING  a single-flight lock (token, PX ttl)
 * <prefix><namespace>:{<name>}.corrupt-<time>:...  a quarantined generation (meta, data, exp)
 * <prefix><namespace>:locks                        channel: a lock key was released
 * <prefix><namespace>:bus                          channel: the invalidation bus
 * ```
 *
 * `<name>` is the cache name with `%`, `{` and `}` percent-encoded (injective, and the tag
 * always ends at the name's closing brace). Everything else, NUL and newlines included, is
 * kept: Redis keys are binary-safe.
 *
 * @module
 */

import { InvalidNameError } from '../../errors.js';

/**
 * The three keys of one generation of one cache.
 *
 * @example
 * const { meta, data, exp }: GenerationKeys = keys.generation('users', '9f3c0a1b2c3d4e5f');
 */
export interface GenerationKeys {
  readonly meta: string;
  readonly data: string;
  readonly exp: string;
}

/** Characters that are special in a SCAN MATCH pattern. */
const GLOB_SPECIAL = /[*?[\]\\]/g;
const NAME_SPECIAL = /[%{}]/g;
const ESCAPED = /%(?:25|7B|7D)/g;

function escapeName(name: string): string {
  if (typeof name !== 'string' || name === '') throw new InvalidNameError(name, 'must be a non-empty string');
  if (!name.isWellFormed()) throw new InvalidNameError(name, 'must be well-formed Unicode (no lone surrogates)');
  return name.replace(NAME_SPECIAL, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/**
 * The key names of one store (a key prefix and a namespace).
 *
 * @example
 * const keys = new RedisKeys('cg:', 'default');
 * keys.gen('users'); // 'cg:default:{users}:gen'
 */
export class RedisKeys {
  /** `<prefix><namespace>:`, the start of every key and channel of the store. */
  readonly root: string;
  /** Channel announcing released locks (the message is the lock's key). */
  readonly locksChannel: string;
  /** Channel of the invalidation bus. */
  readonly busChannel: string;
  /** SCAN MATCH pattern of every cache's generation pointer. */
  readonly genPattern: string;

  /**
   * @param keyPrefix - the store's key prefix (no braces)
   * @param namespace - the store's namespace (no braces)
   */
  constructor(keyPrefix: string, namespace: string) {
    this.root = `${keyPrefix}${namespace}:`;
    this.locksChannel = `${this.root}locks`;
    this.busChannel = `${this.root}bus`;
    this.genPattern = `${this.root.replace(GLOB_SPECIAL, '\\$&')}{*}:gen`;
  }

  /**
   * `<prefix><namespace>:{<name>}`: the start of every key of the cache, and its location.
   *
   * @throws {InvalidNameError} for an empty name or one with a lone surrogate
   * @example
   * keys.base('a{b}'); // 'cg:default:{a%7Bb%7D}'
   */
  base(name: string): string {
    return `${this.root}{${escapeName(name)}}`;
  }

  /**
   * The generation pointer of `name`.
   *
   * @example
   * keys.gen('users'); // 'cg:default:{users}:gen'
   */
  gen(name: string): string {
    return `${this.base(name)}:gen`;
  }

  /**
   * The keys of generation `id` of `name`.
   *
   * @example
   * keys.generation('users', '9f3c').data; // 'cg:default:{users}:g:9f3c:data'
   */
  generation(name: string, id: string): GenerationKeys {
    const at = `${this.base(name)}:g:${id}`;
    return { meta: `${at}:meta`, data: `${at}:data`, exp: `${at}:exp` };
  }

  /**
   * The keys a quarantined generation is renamed to; `slot` is `<base>.corrupt-<time>[-n]`.
   *
   * @example
   * keys.quarantined('cg:default:{users}.corrupt-2024-05-01T120000.000Z').meta; // '….corrupt-2024-05-01T120000.000Z:meta'
   */
  quarantined(slot: string): GenerationKeys {
    return { meta: `${slot}:meta`, data: `${slot}:data`, exp: `${slot}:exp` };
  }

  /**
   * The lock on `key` of cache `name`.
   *
   * @example
   * keys.lock('memo', 'k'); // 'cg:default:{memo}:lock:k'
   */
  lock(name: string, key: string): string {
    return `${this.base(name)}:lock:${key}`;
  }

  /**
   * The cache name of a generation pointer found by SCAN, or `undefined` if it is not one.
   *
   * @example
   * keys.nameOfGenKey('cg:default:{a%7Bb%7D}:gen'); // 'a{b}'
   */
  nameOfGenKey(key: string): string | undefined {
    if (!key.startsWith(`${this.root}{`) || !key.endsWith('}:gen')) return undefined;
    const escaped = key.slice(this.root.length + 1, -'}:gen'.length);
    // A lock key whose own key ends in "}:gen" matches the pattern too; an escaped name has no braces.
    if (escaped === '' || escaped.includes('{') || escaped.includes('}')) return undefined;
    return escaped.replace(ESCAPED, (code) => String.fromCharCode(Number.parseInt(code.slice(1), 16)));
  }
}
