/**
 * What a memoized call stores: the result (or the error it threw), a stamp naming this
 * computation, the dependencies it read, and housekeeping times. Records are plain data so
 * every codec (v8, json) stores them, and they are read back by other processes and later
 * runs.
 *
 * @module
 */
import { hash, randomUUID } from 'node:crypto';
import { serialize } from 'node:v8';
import { CacheGraphError } from '../errors.js';

/**
 * One dependency of a result: a memoized call or a cache entry it read while computing.
 * `token` is the stamp of the memoized call's record, or a fingerprint of the entry's value;
 * `fn` is `<name>@<version>` of the memoized function (`null` for a cache entry);
 * `expiresAt` the dependency's absolute expiry then (0: none).
 */
export type MemoDependency = readonly [cache: string, key: unknown, token: string, fn: string | null, expiresAt: number];

/** A stored error: enough to throw an equivalent one in any process. */
export interface StoredError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly code?: string | number;
}

/** The value stored under a memoized call's key. */
export interface MemoRecord {
  /** The result, or a {@link StoredError} when `e` is 1. */
  readonly v: unknown;
  /** 1 when the call threw and the error is stored. */
  readonly e: 0 | 1;
  /** A unique stamp of this computation: dependents record it. */
  readonly s: string;
  /** What the computation read. */
  readonly d: readonly MemoDependency[];
  /** When it was computed (clock ms). */
  readonly c: number;
  /** How long it took, ms. */
  readonly t: number;
  /** When it was last used (clock ms), refreshed at most once per {@link ACCESS_RESOLUTION_MS}. */
  readonly a: number;
  /** The earliest expiry among its dependencies (0: none): it is stale from then on. */
  readonly x: number;
}

/**
 * Last-use times are written back at most this often per result (like the `relatime` mount
 * option), so hits do not turn every read into a write.
 */
export const ACCESS_RESOLUTION_MS = 60_000;

/**
 * Whether `value` is a memo record (the cache may hold other values under other keys).
 *
 * @example
 * isMemoRecord(cache.get(key));
 */
export function isMemoRecord(value: unknown): value is MemoRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Partial<MemoRecord>;
  return typeof r.s === 'string' && Array.isArray(r.d) && (r.e === 0 || r.e === 1) && typeof r.a === 'number';
}

/**
 * A new record for a computation that just finished.
 *
 * @example
 * newRecord(42, false, [], clock.now(), 12.5);
 */
export function newRecord(value: unknown, threw: boolean, deps: readonly MemoDependency[], now: number, ms: number): MemoRecord {
  let earliest = 0;
  for (const dep of deps) if (dep[4] !== 0 && (earliest === 0 || dep[4] < earliest)) earliest = dep[4];
  return { v: threw ? storeError(value) : value, e: threw ? 1 : 0, s: randomUUID(), d: deps, c: now, t: ms, a: now, x: earliest };
}

/** Names of errors that mean "stopped", not "this is the answer". */
const ABORT_NAMES = new Set(['AbortError', 'TimeoutError']);

/**
 * Whether a thrown value is an ordinary result of the function, fit to be stored: an Error
 * that is not an abort or timeout, not a system error (`errno`/`syscall`: the environment
 * failed, not the function), not a stack overflow, and not one of cachegraph's own errors
 * (infrastructure). Anything else thrown (a string, `undefined`) is not stored either.
 *
 * @example
 * isStorableError(new Error('no such ticker')); // true
 * isStorableError(new DOMException('stop', 'AbortError')); // false
 */
export function isStorableError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (ABORT_NAMES.has(error.name) || error instanceof CacheGraphError) return false;
  const sys = error as NodeJS.ErrnoException;
  if (sys.errno !== undefined || sys.syscall !== undefined) return false;
  return !(error instanceof RangeError && /call stack/i.test(error.message));
}

function storeError(error: unknown): StoredError {
  const e = error as Error & { code?: unknown };
  // Absent fields are left out, not `undefined`: the json codec refuses what JSON would drop.
  const stored: { name: string; message: string; stack?: string; code?: string | number } = { name: String(e.name), message: String(e.message) };
  if (typeof e.stack === 'string') stored.stack = e.stack;
  if (typeof e.code === 'string' || typeof e.code === 'number') stored.code = e.code;
  return stored as StoredError;
}

/**
 * The error to throw for a stored one: an `Error` with the same name, message, stack and
 * `code`, and `cached: true`. Its class is `Error` (classes do not survive storage).
 *
 * @example
 * throw restoreError(record.v as StoredError);
 */
export function restoreError(stored: unknown): Error {
  const s = (typeof stored === 'object' && stored !== null ? stored : {}) as Partial<StoredError>;
  const error = new Error(typeof s.message === 'string' ? s.message : 'cached error') as Error & { code?: unknown; cached?: boolean };
  if (typeof s.name === 'string') error.name = s.name;
  if (typeof s.stack === 'string') error.stack = s.stack;
  if (s.code !== undefined) error.code = s.code;
  error.cached = true;
  return error;
}

const objectFingerprints = new WeakMap<object, string>();
/** Distinguishes values that cannot be serialized: valid in this process only. */
const PROCESS_NONCE = randomUUID();
let identities = 0;

/**
 * A short fingerprint of a cache entry's value, to tell later whether the entry changed: the
 * sha256 of its v8 serialization. A value v8 cannot serialize gets an identity fingerprint,
 * valid in this process only (so a result depending on it is recomputed after a restart).
 * Objects are fingerprinted once (cached values are not mutated in place).
 *
 * @example
 * fingerprint({ a: 1 }) === fingerprint({ a: 1 }); // true
 */
export function fingerprint(value: unknown): string {
  if (typeof value !== 'object' && typeof value !== 'function') return digest(value);
  if (value === null) return digest(null);
  let known = objectFingerprints.get(value);
  if (known === undefined) {
    known = typeof value === 'function' ? identity() : digest(value);
    objectFingerprints.set(value, known);
  }
  return known;
}

function digest(value: unknown): string {
  try {
    return hash('sha256', serialize(value), 'base64url').slice(0, 22);
  } catch {
    return identity();
  }
}

function identity(): string {
  return `~${PROCESS_NONCE}:${++identities}`;
}
