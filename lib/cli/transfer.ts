/**
 * The JSON-lines format of `cachegraph export` and `import`, also used to show keys and
 * values in `--json` output and the admin service. One JSON object per line:
 *
 * ```text
 * {"type":"cache","name":"stats","codec":"v8","savedAt":1714564800000,"dependsOn":["users"]}
 * {"type":"entry","cache":"stats","key":"count","value":2,"expiresAt":0}
 * {"type":"entry","cache":"stats","key64":"/w9vIgF4…","value64":"/w8+AA==","expiresAt":0}
 * ```
 *
 * A `cache` line comes before the entries of its cache. A key or value that JSON keeps
 * exactly (what the `json` codec accepts: plain objects, arrays, strings, booleans, `null`,
 * finite numbers other than `-0`) is written as JSON under `key` / `value`; anything else
 * (Map, Set, Date, BigInt, typed arrays, `undefined`, NaN, cycles, ...) as the base64 of its
 * v8 serialization (the v8 codec's bytes) under `key64` / `value64`. `expiresAt` is
 * absolute, in ms since the epoch (`0`: never).
 *
 * @module
 */

import { checkJson } from '../codec/json.js';
import { v8Codec } from '../codec/v8.js';
import type { StoredEntry, StoredInfo } from '../store/types.js';

/**
 * A value as JSON: either itself (`json`) or the base64 of its v8 serialization (`v8`).
 *
 * @example
 * encodeValue(new Map()); // { v8: '/w87AA==' }
 */
export type EncodedValue = { readonly json: unknown } | { readonly v8: string };

/** A `cache` line. */
export interface CacheLine {
  readonly type: 'cache';
  readonly name: string;
  readonly codec: string;
  readonly savedAt: number;
  readonly dependsOn: readonly string[];
}

/** What an `entry` line decodes to. */
export interface EntryLine {
  readonly type: 'entry';
  readonly cache: string;
  readonly entry: StoredEntry;
}

/**
 * Encodes a key or value: as itself when JSON keeps it exactly, else as v8 bytes in base64.
 *
 * @throws the v8 codec's error for a value it cannot encode (a function, a symbol)
 * @example
 * encodeValue({ a: 1 }); // { json: { a: 1 } }
 * encodeValue(10n);      // { v8: '/w9aFAo=' }
 */
export function encodeValue(value: unknown): EncodedValue {
  if (checkJson(value) === undefined && !Object.is(value, -0)) return { json: value };
  return { v8: Buffer.from(v8Codec.encode(value)).toString('base64') };
}

/**
 * The fields of a line for one key or value: `{ key: … }` or `{ key64: … }`.
 *
 * @example
 * valueFields('value', new Date(0)); // { value64: '…' }
 */
export function valueFields(field: string, value: unknown): Record<string, unknown> {
  const encoded = encodeValue(value);
  return 'json' in encoded ? { [field]: encoded.json } : { [`${field}64`]: encoded.v8 };
}

/**
 * The `cache` line of a stored cache.
 *
 * @example
 * cacheLine(info); // '{"type":"cache","name":"users",…}'
 */
export function cacheLine(info: StoredInfo): string {
  const line: CacheLine = { type: 'cache', name: info.name, codec: info.codec, savedAt: info.savedAt, dependsOn: info.dependsOn };
  return JSON.stringify(line);
}

/**
 * The `entry` line of one entry.
 *
 * @throws for a key or value the v8 codec cannot encode
 * @example
 * entryLine('users', ['u1', { name: 'Ada' }, 0]); // '{"type":"entry","cache":"users","key":"u1",…}'
 */
export function entryLine(cache: string, entry: StoredEntry): string {
  return JSON.stringify({ type: 'entry', cache, ...valueFields('key', entry[0]), ...valueFields('value', entry[1]), expiresAt: entry[2] });
}

function decodeField(line: Record<string, unknown>, field: string, at: string): unknown {
  if (field in line) return line[field];
  const base64 = line[`${field}64`];
  if (typeof base64 !== 'string') throw new SyntaxError(`${at}: no "${field}" or "${field}64"`);
  try {
    return v8Codec.decode(Buffer.from(base64, 'base64'));
  } catch (error) {
    throw new SyntaxError(`${at}: "${field}64" is not a v8 serialization in base64 (${error instanceof Error ? error.message : String(error)})`);
  }
}

/**
 * Parses one line of an export; `undefined` for a blank line.
 *
 * @param text - the line
 * @param lineNo - its number, for messages
 * @throws {SyntaxError} naming the line, for anything that is not a `cache` or `entry` line
 * @example
 * parseLine('{"type":"entry","cache":"a","key":"k","value":1,"expiresAt":0}', 1);
 */
export function parseLine(text: string, lineNo: number): CacheLine | EntryLine | undefined {
  if (text.trim() === '') return undefined;
  const at = `line ${lineNo}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SyntaxError(`${at}: not JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SyntaxError(`${at}: not a JSON object`);
  const line = parsed as Record<string, unknown>;
  if (line['type'] === 'cache') {
    const { name, codec, savedAt, dependsOn } = line;
    if (typeof name !== 'string' || name === '') throw new SyntaxError(`${at}: a cache line needs a "name"`);
    const links = dependsOn ?? [];
    if (!Array.isArray(links) || !links.every((link) => typeof link === 'string')) throw new SyntaxError(`${at}: "dependsOn" must be a list of cache names`);
    return { type: 'cache', name, codec: typeof codec === 'string' ? codec : 'v8', savedAt: typeof savedAt === 'number' ? savedAt : 0, dependsOn: links as string[] };
  }
  if (line['type'] === 'entry') {
    const { cache, expiresAt } = line;
    if (typeof cache !== 'string' || cache === '') throw new SyntaxError(`${at}: an entry line needs a "cache"`);
    const expiry = expiresAt ?? 0;
    if (typeof expiry !== 'number' || !Number.isFinite(expiry) || expiry < 0) throw new SyntaxError(`${at}: "expiresAt" must be a time in ms (0: never)`);
    return { type: 'entry', cache, entry: [decodeField(line, 'key', at), decodeField(line, 'value', at), expiry] };
  }
  throw new SyntaxError(`${at}: "type" must be "cache" or "entry"`);
}
