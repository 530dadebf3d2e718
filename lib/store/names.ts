/**
 * Cache names → file names that are safe on Linux, macOS and Windows, and distinct for
 * distinct names, even on case-insensitive and normalising file systems.
 *
 * The encoding of a name (its "stem"; stores append `.cgc`):
 * - its UTF-8 bytes `a`-`z`, `0`-`9`, `_` and `-` are kept;
 * - every other byte becomes `%XX` (upper-case hex): upper-case letters, `.`, `/`, `\`,
 *   `:`, NUL, spaces, `%`, `~` and every byte of a non-ASCII character. So a stem is
 *   plain ASCII with no separator and no dot: `..`, trailing dots and spaces, `a/b`,
 *   absolute paths cannot happen, `Users` (`%55sers`) and `users` stay apart on a
 *   case-insensitive disk, and Unicode normalisation (macOS) has nothing to normalise;
 * - a stem equal to a name Windows reserves (`con`, `prn`, `aux`, `nul`, `com0`-`com9`,
 *   `lpt0`-`lpt9`) gets its first character encoded too: `con` → `%63on`;
 * - a stem longer than {@link MAX_STEM_LENGTH} becomes a readable prefix, `~`, and the
 *   SHA-256 of the name (`~` cannot occur otherwise, so hashed and plain stems never
 *   meet). The file header records the real name for those.
 *
 * Distinct names give distinct stems: the encoding is a prefix code over bytes, the
 * reserved-name rule only produces escapes the plain rule never emits (`%63` for `c`),
 * and the only case-sensitive characters in a stem are hex digits at fixed positions.
 *
 * @module
 */

import { createHash } from 'node:crypto';
import { InvalidNameError } from '../errors.js';

/**
 * Longest stem kept readable; leaves room for `.cgc`, `.corrupt-<time>` and temp
 * suffixes within the 255-byte file name limit of common file systems.
 *
 * @example
 * toFileName('x'.repeat(500)).length <= MAX_STEM_LENGTH; // true
 */
export const MAX_STEM_LENGTH = 200;
/** Length of the readable part of a hashed stem. */
const HASHED_PREFIX_LENGTH = 120;

const KEPT_BYTE = new Uint8Array(256);
for (const range of ['az', '09', '__', '--']) {
  for (let code = range.charCodeAt(0); code <= range.charCodeAt(1); code++) KEPT_BYTE[code] = 1;
}
const HEX = '0123456789ABCDEF';

/** Device names Windows reserves regardless of extension. */
const WINDOWS_RESERVED = new Set([
  'con',
  'prn',
  'aux',
  'nul',
  ...Array.from({ length: 10 }, (_, i) => `com${i}`),
  ...Array.from({ length: 10 }, (_, i) => `lpt${i}`),
]);

/** Matches a lone surrogate: it has no UTF-8 encoding, so two names could meet as U+FFFD. */
const LONE_SURROGATE = /\p{Cs}/u;
const STEM_SYNTAX = /^(?:[a-z0-9_-]|%[0-9A-F]{2})+$/;
const decoder = new TextDecoder('utf-8', { fatal: true });

function escapeByte(byte: number): string {
  return `%${HEX[byte >> 4] as string}${HEX[byte & 15] as string}`;
}

/**
 * The file-name stem of a cache name (without extension). Injective; never contains a
 * path separator, a dot, or a reserved device name.
 *
 * @throws {InvalidNameError} for an empty name, a non-string, or a lone surrogate
 * @example
 * toFileName('users'); // 'users'
 * toFileName('../etc/Passwd'); // '%2E%2E%2Fetc%2F%50asswd'
 * toFileName('con'); // '%63on'
 */
export function toFileName(cacheName: string): string {
  if (typeof cacheName !== 'string') throw new InvalidNameError(cacheName, 'not a string');
  if (cacheName === '') throw new InvalidNameError(cacheName, 'empty');
  if (LONE_SURROGATE.test(cacheName)) throw new InvalidNameError(cacheName, 'contains a lone surrogate (not valid Unicode)');
  let stem = '';
  for (const byte of Buffer.from(cacheName, 'utf8')) {
    stem += KEPT_BYTE[byte] === 1 ? String.fromCharCode(byte) : escapeByte(byte);
  }
  if (WINDOWS_RESERVED.has(stem)) stem = escapeByte(stem.charCodeAt(0)) + stem.slice(1);
  if (stem.length <= MAX_STEM_LENGTH) return stem;
  let prefix = stem.slice(0, HASHED_PREFIX_LENGTH);
  // Do not cut an escape in half: the prefix stays decodable by eye.
  const lastEscape = prefix.lastIndexOf('%');
  if (lastEscape > prefix.length - 3) prefix = prefix.slice(0, lastEscape);
  return `${prefix}~${createHash('sha256').update(cacheName, 'utf8').digest('hex')}`;
}

/**
 * Whether a stem is the hashed form of a long name (not reversible; read the file header).
 *
 * @example
 * isHashedFileName(toFileName('x'.repeat(300))); // true
 */
export function isHashedFileName(stem: string): boolean {
  return stem.includes('~');
}

/**
 * The cache name a stem encodes, or `undefined` when the stem is hashed or is not exactly
 * what {@link toFileName} produces for any name (a stranger's file, `%61` for `a`, ...).
 *
 * @example
 * fromFileName('%55sers'); // 'Users'
 * fromFileName('README'); // undefined
 */
export function fromFileName(stem: string): string | undefined {
  if (!STEM_SYNTAX.test(stem)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < stem.length; ) {
    if (stem[i] === '%') {
      bytes.push(Number.parseInt(stem.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      bytes.push(stem.charCodeAt(i));
      i += 1;
    }
  }
  let name: string;
  try {
    name = decoder.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
  // Only the canonical spelling counts: every name then has exactly one file.
  return name !== '' && toFileName(name) === stem ? name : undefined;
}
