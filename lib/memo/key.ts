/**
 * Memoization keys: a canonical, unambiguous text for a list of arguments
 * ({@link encodeArgs}), its sha256 ({@link hashArgs}), and the store key of one call of one
 * memoized function ({@link memoKey}).
 *
 * **The format persists.** Memoized results are stored under these keys and read back after
 * restarts, by other processes and on other machines. Changing how any value is encoded
 * changes its key, which retires every result stored under the old one (they are never hit
 * again). So the format carries a version (`k1;`), the spec pins the encoding of a corpus,
 * and a change to the format must bump the version.
 *
 * ## What is the same key
 *
 * Two argument lists get the same encoding exactly when they are structurally equal:
 * - primitives by type and value, with `Object.is` semantics: `1 ≠ '1'`, `null ≠ undefined`,
 *   **`0 ≠ -0`** (a function may tell them apart: `1 / x`, `Math.atan2`, `Object.is`; keeping
 *   them apart costs at most a duplicate entry, merging them could return a wrong result),
 *   and every NaN is the same NaN;
 * - plain objects by their own enumerable string keys, **in any order**, and values; an object
 *   with a `null` prototype equals the plain object with the same properties;
 * - arrays by length, elements and **holes** (`[ , 1]` ≠ `[undefined, 1]`);
 * - Maps by their entries and Sets by their members, **in any insertion order** (entries are
 *   sorted by their encoding);
 * - Dates by time (every invalid Date is the same), RegExps by `source` and `flags`,
 *   boxed primitives (`new Number(1)`) by type and value (and never equal to the primitive);
 * - ArrayBuffers, typed arrays, DataViews and Buffers by their type and bytes (the bytes of
 *   the view only, little-endian whatever the machine): `Uint8Array [1]`, `Int8Array [1]`,
 *   `Buffer [1]` and `[1]` are four keys;
 * - symbols only when registered (`Symbol.for('x')`, by their registry key): any other symbol
 *   is a different value in every process, so it cannot name a stored result.
 *
 * Shared references are encoded as many times as they occur (`f(a, a)` and `f(a, copyOfA)`
 * are one key), so a value with heavy sharing encodes at the size of its unshared tree.
 *
 * Not looked at, by design (as `structuredClone` and the v8 codec): non-enumerable
 * properties, non-index properties of arrays, own properties of Maps, Sets, Dates, RegExps
 * (including `lastIndex`), boxed primitives and binary values.
 *
 * Refused with a {@link MemoKeyError} naming the path (`args[1].user`): functions,
 * unregistered symbols, class instances (and subclasses of built-ins: they may carry state
 * the encoding would miss), objects with another custom prototype, cycles, Proxies,
 * `arguments` objects, plain objects with enumerable symbol-keyed properties, WeakMap,
 * WeakSet, WeakRef, Promise, SharedArrayBuffer, detached buffers. Memoize such functions
 * with a `key` function that maps their arguments to plain data. A cycle is an error rather
 * than a back-reference: cycles in arguments are rare, and back-references would make two
 * graphs that unfold to the same tree two different keys.
 *
 * ## The encoding (format `k1`)
 *
 * ```text
 * args      = "k1;" array                          the argument list, encoded as an array
 * value     = primitive | array | object | map | set
 *           | "D" number ";"                       Date, by getTime() ("NaN" when invalid)
 *           | "R" string string                    RegExp: source, flags
 *           | "X" primitive                        boxed primitive (never "u" or "n")
 *           | "B" count ":" bytes                  ArrayBuffer: byte length, bytes
 *           | "V" type ";" count ":" bytes         view: type name, byte length, bytes
 * primitive = "u" | "n" | "t" | "f"                undefined, null, true, false
 *           | "d" number ";"                       number
 *           | "i" ["-"] digits ";"                 bigint, in decimal
 *           | string
 *           | "y" string                           registered symbol, by its Symbol.keyFor() key
 * array     = "a" count ":" item*                  the items cover exactly count indices
 * item      = value | "_" count ";"                a maximal run of count (>= 1) holes
 * object    = "o" count ":" (string value){count}  key, value; keys ascending, each once
 * map       = "m" count ":" (value value){count}   key, value; entries ascending
 * set       = "e" count ":" value{count}           members ascending
 * string    = "s" count ":" text                   count UTF-16 code units, verbatim
 *           | "w" count ":" (hexdigit{4}){count}   a string holding a lone surrogate: each
 *                                                  code unit as 4 hex digits
 * number    = "NaN" | "Infinity" | "-Infinity" | "-0" | ECMAScript Number::toString(x)
 * type      = "Int8Array" | "Uint8Array" | "Uint8ClampedArray" | "Int16Array" | "Uint16Array"
 *           | "Int32Array" | "Uint32Array" | "Float32Array" | "Float64Array" | "BigInt64Array"
 *           | "BigUint64Array" | "DataView" | "Buffer"
 * bytes     = (hexdigit hexdigit){count}           the bytes; multi-byte elements little-endian
 * count     = digits
 * digits    = "0" | [1-9][0-9]*
 * hexdigit  = [0-9a-f]
 * ```
 *
 * "Ascending" is `Array.prototype.sort()` order: by UTF-16 code units. Object keys compare
 * as the raw keys (`"10" < "9" < "a"`); each key occurs once. Map entries and Set members
 * compare as their encoded texts: an entry as the text of its key followed by that of its
 * value, which (no encoding being a prefix of another) orders entries by key, then value.
 * Two entries or members may encode the same (`new Set([{}, {}])`): both are written.
 *
 * Why this is unambiguous: every production starts with its own tag character and is
 * self-delimiting (a count comes before any variable-length part, and the numbers that end
 * with ";" never contain one), so a text decodes in exactly one way; and the only freedoms
 * a value has (key order, insertion order, the spelling of a number) are fixed by sorting
 * and by the canonical ECMAScript number spelling. Every encoding is well-formed Unicode
 * (lone surrogates are escaped by "w"), so its UTF-8 bytes, which {@link hashArgs} hashes,
 * are unambiguous too.
 *
 * The walk is iterative (an explicit stack): an argument nested 100 000 levels deep is
 * encoded, not a stack overflow.
 *
 * @module
 */

import { hash } from 'node:crypto';
import os from 'node:os';
import { types } from 'node:util';
import { propertySegment, shortenPath } from '../codec/v8.js';
import { MemoKeyError } from '../errors.js';

export { MemoKeyError };

/** What identifies a memoized function; see {@link memoKey}. */
export interface MemoIdentity {
  /** The cache its results live in. */
  readonly cache: string;
  /** The function's name within that cache. */
  readonly name: string;
  /** Its version: by default a hash of its source, so editing it retires its results. */
  readonly version: string;
}

/** Format marker at the start of every encoding. Bump it whenever the format changes. */
const FORMAT = 'k1;';

// What an object is, by its prototype: one Map lookup classifies every supported object.
const PLAIN = 0;
const ARRAY = 1;
const MAP = 2;
const SET = 3;
const DATE = 4;
const REGEXP = 5;
const BOXED = 6;
const ARRAY_BUFFER = 7;
const VIEW = 8;

type Kind =
  | typeof PLAIN
  | typeof ARRAY
  | typeof MAP
  | typeof SET
  | typeof DATE
  | typeof REGEXP
  | typeof BOXED
  | typeof ARRAY_BUFFER
  | typeof VIEW;

/** Views, by prototype, with the type name written into their encoding. */
const VIEW_TYPES = new Map<object, string>([
  [Int8Array.prototype, 'Int8Array'],
  [Uint8Array.prototype, 'Uint8Array'],
  [Uint8ClampedArray.prototype, 'Uint8ClampedArray'],
  [Int16Array.prototype, 'Int16Array'],
  [Uint16Array.prototype, 'Uint16Array'],
  [Int32Array.prototype, 'Int32Array'],
  [Uint32Array.prototype, 'Uint32Array'],
  [Float32Array.prototype, 'Float32Array'],
  [Float64Array.prototype, 'Float64Array'],
  [BigInt64Array.prototype, 'BigInt64Array'],
  [BigUint64Array.prototype, 'BigUint64Array'],
  [DataView.prototype, 'DataView'],
  [Buffer.prototype, 'Buffer'],
]);

/** `valueOf` of each boxed type, taken from its prototype: an own `valueOf` is not trusted. */
const UNBOX = new Map<object, (this: unknown) => unknown>([
  [Number.prototype, Number.prototype.valueOf],
  [String.prototype, String.prototype.valueOf],
  [Boolean.prototype, Boolean.prototype.valueOf],
  [BigInt.prototype, BigInt.prototype.valueOf],
  [Symbol.prototype, Symbol.prototype.valueOf],
]);

const KIND_BY_PROTOTYPE = new Map<object | null, Kind>([
  [Object.prototype, PLAIN],
  [null, PLAIN],
  [Array.prototype, ARRAY],
  [Map.prototype, MAP],
  [Set.prototype, SET],
  [Date.prototype, DATE],
  [RegExp.prototype, REGEXP],
  [ArrayBuffer.prototype, ARRAY_BUFFER],
  ...[...UNBOX.keys()].map((proto): [object, Kind] => [proto, BOXED]),
  ...[...VIEW_TYPES.keys()].map((proto): [object, Kind] => [proto, VIEW]),
]);

/** Built-ins refused with a reason of their own. */
const REJECTED_BUILTINS = new Map<object, string>([
  [WeakMap.prototype, 'WeakMap (its entries cannot be listed)'],
  [WeakSet.prototype, 'WeakSet (its members cannot be listed)'],
  [WeakRef.prototype, 'WeakRef'],
  [Promise.prototype, 'Promise (await it before the call)'],
  [SharedArrayBuffer.prototype, 'SharedArrayBuffer (its contents can change at any time)'],
]);

/** The getters behind `source` and `flags`: an own property of the same name is not trusted. */
const regexpSource = Object.getOwnPropertyDescriptor(RegExp.prototype, 'source')?.get as (this: RegExp) => string;
const regexpFlags = Object.getOwnPropertyDescriptor(RegExp.prototype, 'flags')?.get as (this: RegExp) => string;
const dateTime = Date.prototype.getTime;

const LITTLE_ENDIAN = os.endianness() === 'LE';

/**
 * Arrays longer than this are walked over the indices that exist (`Object.keys`) rather than
 * every index, so `a[1e9] = 1` does not cost a billion steps. Same limit as the v8 codec.
 */
const DENSE_WALK_LIMIT = 65_536;

/**
 * Containers on the path are found by a linear scan up to this depth (no allocation for the
 * shallow values most calls take), and through a Set beyond it (a 100 000-level chain must
 * not cost 100 000² comparisons).
 */
const LINEAR_CYCLE_CHECK_DEPTH = 16;

// Operations of the walk's explicit stack. The first five visit a value and double as the
// kind of path segment that leads to it.
const AT_INDEX = 0; // [3]
const AT_PROPERTY = 1; // .name
const AT_MAP_KEY = 2; // <key #2>
const AT_MAP_VALUE = 3; // <value #2>
const AT_MEMBER = 4; // <member #2>
const EMIT = 5; // append text
const LEAVE = 6; // the container on top of the path is done
const BEGIN_PIECE = 7; // set the output aside: what follows is one Map entry or Set member
const END_PIECE = 8; // that piece is done: give it to the Map or Set, restore the output
const SORT = 9; // every piece of the Map or Set is done: sort them, append, leave
/** Segment kind of the argument list itself (`args`) and of "no further segment". */
const HERE = -1;

/** State of one encoding. Parallel data lives in flat arrays with a fixed stride. */
interface Walk {
  out: string;
  /** Whether strings with lone surrogates are escaped (the second pass, when there are any). */
  readonly escape: boolean;
  /** Stride 4: operation, value, text (a prefix to emit first), segment (key or index). */
  readonly tasks: unknown[];
  /** Stride 3: the containers from `args` down to the one being visited, kind, segment. */
  readonly path: unknown[];
  /** The containers on `path`, once it is deeper than {@link LINEAR_CYCLE_CHECK_DEPTH}. */
  onPath: Set<object> | undefined;
  /** Output set aside while a Map entry or Set member is encoded alone. */
  saved: string[] | undefined;
  /** The encoded entries or members of each Map or Set being encoded. */
  pieces: string[][] | undefined;
}

/**
 * The canonical encoding of an argument list: equal exactly when the arguments are
 * structurally equal (see the module documentation for the rules and the grammar).
 * Throws {@link MemoKeyError} for what cannot be keyed.
 *
 * @example
 * encodeArgs(['AAPL']); // 'k1;a1:s4:AAPL'
 * encodeArgs([1, 23]) !== encodeArgs([12, 3]); // true
 * encodeArgs([{ a: 1, b: 2 }]) === encodeArgs([{ b: 2, a: 1 }]); // true
 */
export function encodeArgs(args: readonly unknown[]): string {
  if (!Array.isArray(args)) throw new MemoKeyError('args', 'not an array of arguments');
  // The common case, a few primitives: one string built left to right, no walk state.
  let out = `${FORMAT}a${args.length}:`;
  for (let i = 0; i < args.length; i++) {
    const arg: unknown = args[i];
    const text = typeof arg === 'object' && arg !== null ? undefined : encodePrimitive(arg, false);
    // An object, a hole, or something refused: the walk encodes it or names it.
    if (text === undefined || (arg === undefined && !(i in args))) return encodeWalk(args);
    out += text;
  }
  return out.isWellFormed() ? out : encodeWalk(args);
}

/**
 * The hex sha256 of {@link encodeArgs}`(args)` (of its UTF-8 bytes): 64 characters.
 *
 * @example
 * hashArgs(['AAPL']); // 'a0083d39f594af3104d660819d4b7de386204a7a28d10f2132fc9e184291fd85'
 */
export function hashArgs(args: readonly unknown[]): string {
  return hash('sha256', encodeArgs(args), 'hex');
}

/**
 * The start shared by every key of one version of one memoized function:
 * `<cache>/<name>@<version>#`, each part `encodeURIComponent`-escaped (so none holds `/`,
 * `@` or `#`). A store can list or delete a function's results by this prefix, and every
 * version's by the prefix up to `@`.
 *
 * @example
 * memoKeyPrefix({ cache: 'prices', name: 'fetchPrice', version: '3' }); // 'prices/fetchPrice@3#'
 */
export function memoKeyPrefix(identity: MemoIdentity): string {
  return `${identityPart(identity, 'cache')}/${identityPart(identity, 'name')}@${identityPart(identity, 'version')}#`;
}

/** Encodings up to this many characters are used as they are; longer ones are hashed. */
export const MAX_PLAIN_ARGS_KEY = 64;

/**
 * The part of a store key that names the arguments: their encoding when it is short (at most
 * {@link MAX_PLAIN_ARGS_KEY} characters), else its sha256 ({@link hashArgs}). Both are
 * collision-free and they never meet: an encoding starts with `k1;`, a hash is 64 hex
 * digits. Short arguments, the common case, skip the hash (it costs several times the
 * encoding) and stay readable in the store.
 *
 * @example
 * argsKey(['AAPL']);              // 'k1;a1:s4:AAPL'
 * argsKey(['x'.repeat(100)]).length; // 64 (hashed)
 */
export function argsKey(args: readonly unknown[]): string {
  const encoded = encodeArgs(args);
  return encoded.length <= MAX_PLAIN_ARGS_KEY ? encoded : hash('sha256', encoded, 'hex');
}

/**
 * The store key of one call: {@link memoKeyPrefix} then {@link argsKey}. Different
 * identities or structurally different arguments give different keys.
 *
 * @example
 * memoKey({ cache: 'prices', name: 'fetchPrice', version: '3' }, ['AAPL']);
 * // 'prices/fetchPrice@3#k1;a1:s4:AAPL'
 */
export function memoKey(identity: MemoIdentity, args: readonly unknown[]): string {
  return memoKeyPrefix(identity) + argsKey(args);
}

function identityPart(identity: MemoIdentity, field: keyof MemoIdentity): string {
  const value: unknown = identity[field];
  if (typeof value !== 'string') throw new MemoKeyError(`identity.${field}`, `not a string (${typeof value})`);
  // encodeURIComponent throws a bare URIError on a lone surrogate.
  if (!value.isWellFormed()) throw new MemoKeyError(`identity.${field}`, 'not well-formed Unicode (a lone surrogate)');
  return encodeURIComponent(value);
}

/**
 * Encodes with the walk; again with escaping in the rare case a string is ill-formed.
 *
 * One check of the whole text finds exactly the ill-formed strings: a string's text is
 * preceded by ":" and followed by a tag or the end, all ASCII, so a lone surrogate in a
 * string cannot pair up with anything outside it.
 */
function encodeWalk(args: readonly unknown[]): string {
  const out = walk(args, false);
  return out.isWellFormed() ? out : walk(args, true);
}

/** The text of a number: `Object.is` semantics, so `-0` keeps its sign. */
function numberText(value: number): string {
  return value === 0 && 1 / value < 0 ? '-0' : `${value}`;
}

function encodeString(value: string, escape: boolean): string {
  if (!escape || value.isWellFormed()) return `s${value.length}:${value}`;
  let hex = '';
  for (let i = 0; i < value.length; i++) hex += value.charCodeAt(i).toString(16).padStart(4, '0');
  return `w${value.length}:${hex}`;
}

/** The encoding of a primitive, or `undefined` when it is refused (see {@link primitiveProblem}). */
function encodePrimitive(value: unknown, escape: boolean): string | undefined {
  switch (typeof value) {
    case 'string':
      return encodeString(value, escape);
    case 'number':
      return `d${numberText(value)};`;
    case 'boolean':
      return value ? 't' : 'f';
    case 'undefined':
      return 'u';
    case 'bigint':
      return `i${value};`;
    case 'symbol': {
      const key = Symbol.keyFor(value);
      return key === undefined ? undefined : `y${encodeString(key, escape)}`;
    }
    case 'object':
      return value === null ? 'n' : undefined;
    default:
      return undefined;
  }
}

/** Why {@link encodePrimitive} refused a value. */
function primitiveProblem(value: unknown): string {
  if (typeof value === 'symbol') {
    return `unregistered ${value.toString()} (only Symbol.for() symbols are the same in every process)`;
  }
  return typeof value === 'function' ? 'function' : typeof value;
}

function walk(args: readonly unknown[], escape: boolean): string {
  const w: Walk = { out: '', escape, tasks: [], path: [], onPath: undefined, saved: undefined, pieces: undefined };
  visitArray(w, args, HERE, 0, FORMAT);
  const { tasks } = w;
  while (tasks.length > 0) {
    const segment = tasks.pop() as string | number;
    const text = tasks.pop() as string;
    const value = tasks.pop();
    const op = tasks.pop() as number;
    switch (op) {
      case EMIT:
        w.out += text;
        break;
      case LEAVE:
        leave(w);
        break;
      case BEGIN_PIECE:
        (w.saved ??= []).push(w.out);
        w.out = '';
        break;
      case END_PIECE:
        (w.pieces?.at(-1) as string[]).push(w.out);
        w.out = w.saved?.pop() as string;
        break;
      case SORT:
        w.out += sortStrings(w.pieces?.pop() as string[]).join('');
        leave(w);
        break;
      default:
        // Only objects are pushed: primitives are encoded in place by `addChild`.
        visitObject(w, value as object, op, segment, text);
    }
  }
  return w.out;
}

function visitObject(w: Walk, value: object, kind: number, segment: string | number, prefix: string): void {
  // Before anything reads it: every read of a Proxy runs a trap, and a revoked one throws.
  if (types.isProxy(value)) fail(w, kind, segment, 'Proxy');
  const proto = Object.getPrototypeOf(value) as object | null;
  switch (KIND_BY_PROTOTYPE.get(proto)) {
    case PLAIN:
      visitPlain(w, value as Record<string, unknown>, kind, segment, prefix);
      return;
    case ARRAY:
      visitArray(w, value as readonly unknown[], kind, segment, prefix);
      return;
    case MAP:
    case SET:
      visitCollection(w, value as Map<unknown, unknown> | Set<unknown>, kind, segment, prefix);
      return;
    case DATE:
      w.out += `${prefix}D${numberText(dateTime.call(value as Date))};`;
      return;
    case REGEXP:
      w.out += `${prefix}R${encodeString(regexpSource.call(value as RegExp), w.escape)}${encodeString(
        regexpFlags.call(value as RegExp),
        w.escape,
      )}`;
      return;
    case BOXED: {
      const primitive = (UNBOX.get(proto as object) as (this: unknown) => unknown).call(value);
      const text = encodePrimitive(primitive, w.escape) ?? fail(w, kind, segment, `boxed ${primitiveProblem(primitive)}`);
      w.out += `${prefix}X${text}`;
      return;
    }
    case ARRAY_BUFFER: {
      const buffer = value as ArrayBuffer;
      if (isDetached(buffer)) fail(w, kind, segment, 'detached ArrayBuffer');
      w.out += `${prefix}B${buffer.byteLength}:${Buffer.from(buffer).toString('hex')}`;
      return;
    }
    case VIEW: {
      const view = value as ArrayBufferView;
      if (isDetached(view.buffer)) fail(w, kind, segment, 'view of a detached ArrayBuffer');
      w.out += `${prefix}V${VIEW_TYPES.get(proto as object) as string};${view.byteLength}:${viewHex(view)}`;
      return;
    }
    default:
      fail(w, kind, segment, describePrototype(proto as object));
  }
}

function visitPlain(w: Walk, value: Record<string, unknown>, kind: number, segment: string | number, prefix: string): void {
  // `arguments` has Object.prototype but is not data: it would pass for { 0: a, 1: b }.
  if (types.isArgumentsObject(value)) fail(w, kind, segment, 'arguments object (spread it into an array)');
  // Symbol keys are not in Object.keys: ignoring them would give { [s]: 1 } the key of {}.
  const symbols = Object.getOwnPropertySymbols(value);
  for (const symbol of symbols) {
    if (Object.prototype.propertyIsEnumerable.call(value, symbol)) {
      fail(w, kind, segment, `object with a symbol-keyed property ${symbol.toString()}`);
    }
  }
  enter(w, value, kind, segment);
  const keys = sortStrings(Object.keys(value));
  const { tasks } = w;
  const base = tasks.length;
  tasks.push(LEAVE, undefined, '', 0);
  // Backwards, so that children pushed on the stack come off it in key order; the encodings
  // of primitive children accumulate in `pending` instead of costing a task each.
  let pending = '';
  for (let i = keys.length - 1; i >= 0; i--) {
    const key = keys[i] as string;
    let child: unknown;
    try {
      child = value[key];
    } catch (error) {
      failRead(w, AT_PROPERTY, key, error);
    }
    pending = addChild(w, child, AT_PROPERTY, key, encodeString(key, w.escape), pending);
  }
  w.out += `${prefix}o${keys.length}:${pending}`;
  finishContainer(w, base);
}

function visitArray(w: Walk, value: readonly unknown[], kind: number, segment: string | number, prefix: string): void {
  enter(w, value, kind, segment);
  const { tasks } = w;
  const base = tasks.length;
  tasks.push(LEAVE, undefined, '', 0);
  const length = value.length;
  let pending = '';
  if (length <= DENSE_WALK_LIMIT) {
    let holes = 0;
    for (let i = length - 1; i >= 0; i--) {
      let child: unknown;
      try {
        child = value[i];
      } catch (error) {
        failRead(w, AT_INDEX, i, error);
      }
      if (child === undefined && !(i in value)) {
        holes++;
        continue;
      }
      if (holes > 0) {
        pending = `_${holes};${pending}`;
        holes = 0;
      }
      pending = addChild(w, child, AT_INDEX, i, '', pending);
    }
    if (holes > 0) pending = `_${holes};${pending}`;
  } else {
    const indices = presentIndices(value);
    let end = length; // the index after the current run of holes
    for (let k = indices.length - 1; k >= 0; k--) {
      const i = indices[k] as number;
      if (end - i > 1) pending = `_${end - i - 1};${pending}`;
      let child: unknown;
      try {
        child = value[i];
      } catch (error) {
        failRead(w, AT_INDEX, i, error);
      }
      pending = addChild(w, child, AT_INDEX, i, '', pending);
      end = i;
    }
    if (end > 0) pending = `_${end};${pending}`;
  }
  w.out += `${prefix}a${length}:${pending}`;
  finishContainer(w, base);
}

/** The indices of a long array that hold an element, ascending (the order of own keys). */
function presentIndices(value: readonly unknown[]): number[] {
  const indices: number[] = [];
  for (const key of Object.keys(value)) {
    const index = Number(key);
    // Non-index keys ('-1', '1.5', 'name') are not elements.
    if (Number.isInteger(index) && index >= 0 && index < value.length && `${index}` === key) indices.push(index);
  }
  return indices;
}

function visitCollection(
  w: Walk,
  value: Map<unknown, unknown> | Set<unknown>,
  kind: number,
  segment: string | number,
  prefix: string,
): void {
  enter(w, value, kind, segment);
  const isMap = value instanceof Map;
  w.out += `${prefix}${isMap ? 'm' : 'e'}${value.size}:`;
  // Each entry (member) is encoded alone into a piece; the pieces are sorted once all are
  // done, so that insertion order does not matter.
  const pieces: string[] = [];
  const { tasks, escape } = w;
  const base = tasks.length;
  tasks.push(SORT, undefined, '', 0);
  let i = 0;
  if (isMap) {
    for (const [key, entry] of value) {
      const keyIsObject = typeof key === 'object' && key !== null;
      const entryIsObject = typeof entry === 'object' && entry !== null;
      const keyText = keyIsObject ? '' : (encodePrimitive(key, escape) ?? fail(w, AT_MAP_KEY, i, primitiveProblem(key)));
      const entryText = entryIsObject
        ? ''
        : (encodePrimitive(entry, escape) ?? fail(w, AT_MAP_VALUE, i, primitiveProblem(entry)));
      if (!keyIsObject && !entryIsObject) {
        pieces.push(keyText + entryText);
      } else {
        tasks.push(END_PIECE, undefined, '', 0);
        if (entryIsObject) tasks.push(AT_MAP_VALUE, entry, keyText, i);
        else tasks.push(EMIT, undefined, entryText, 0);
        if (keyIsObject) tasks.push(AT_MAP_KEY, key, '', i);
        tasks.push(BEGIN_PIECE, undefined, '', 0);
      }
      i++;
    }
  } else {
    for (const member of value) {
      if (typeof member === 'object' && member !== null) {
        tasks.push(END_PIECE, undefined, '', 0, AT_MEMBER, member, '', i, BEGIN_PIECE, undefined, '', 0);
      } else {
        pieces.push(encodePrimitive(member, escape) ?? fail(w, AT_MEMBER, i, primitiveProblem(member)));
      }
      i++;
    }
  }
  if (tasks.length === base + 4) {
    dropTask(tasks);
    w.out += sortStrings(pieces).join('');
    leave(w);
  } else {
    (w.pieces ??= []).push(pieces);
  }
}

/** Below this length, an insertion sort: `Array.prototype.sort()` costs ~150 ns even for 3 keys. */
const INSERTION_SORT_LIMIT = 16;

/** Sorts strings in place by UTF-16 code units, as `Array.prototype.sort()` does. */
function sortStrings(list: string[]): string[] {
  if (list.length > INSERTION_SORT_LIMIT) return list.sort();
  for (let i = 1; i < list.length; i++) {
    const item = list[i] as string;
    let j = i - 1;
    for (; j >= 0 && (list[j] as string) > item; j--) list[j + 1] = list[j] as string;
    list[j + 1] = item;
  }
  return list;
}

/**
 * A child of the container being visited: a primitive is encoded into `pending` (the text
 * that follows it, built backwards); an object is pushed, after the pending text it precedes.
 * Returns the new pending text.
 */
function addChild(w: Walk, child: unknown, kind: number, segment: string | number, keyText: string, pending: string): string {
  if (typeof child === 'object' && child !== null) {
    if (pending !== '') w.tasks.push(EMIT, undefined, pending, 0);
    w.tasks.push(kind, child, keyText, segment);
    return '';
  }
  const text = encodePrimitive(child, w.escape) ?? fail(w, kind, segment, primitiveProblem(child));
  return keyText + text + pending;
}

/** A container whose children were all primitives is done already: no LEAVE task for it. */
function finishContainer(w: Walk, base: number): void {
  if (w.tasks.length === base + 4) {
    dropTask(w.tasks);
    leave(w);
  }
}

/** Removes the top task. (Pops: setting `length` is a runtime call, several times slower.) */
function dropTask(tasks: unknown[]): void {
  tasks.pop();
  tasks.pop();
  tasks.pop();
  tasks.pop();
}

/** Puts a container on the path, refusing it if it is already there (a cycle). */
function enter(w: Walk, container: object, kind: number, segment: string | number): void {
  const { path } = w;
  if (w.onPath === undefined) {
    for (let i = 0; i < path.length; i += 3) if (path[i] === container) failCycle(w, kind, segment, container);
    if (path.length >= LINEAR_CYCLE_CHECK_DEPTH * 3) {
      w.onPath = new Set<object>();
      for (let i = 0; i < path.length; i += 3) w.onPath.add(path[i] as object);
    }
  } else if (w.onPath.has(container)) {
    failCycle(w, kind, segment, container);
  }
  w.onPath?.add(container);
  path.push(container, kind, segment);
}

function leave(w: Walk): void {
  const { path } = w;
  path.pop();
  path.pop();
  const container = path.pop() as object;
  w.onPath?.delete(container);
}

function segmentText(kind: number, segment: string | number): string {
  switch (kind) {
    case AT_INDEX:
      return `[${segment}]`;
    case AT_PROPERTY:
      return propertySegment(segment as string);
    case AT_MAP_KEY:
      return `<key #${segment}>`;
    case AT_MAP_VALUE:
      return `<value #${segment}>`;
    case AT_MEMBER:
      return `<member #${segment}>`;
    default:
      return '';
  }
}

/** `args` and the segments of the first `depth` containers on the path after it. */
function pathText(w: Walk, depth: number): string {
  let text = 'args';
  for (let i = 3; i < depth * 3; i += 3) text += segmentText(w.path[i + 1] as number, w.path[i + 2] as string | number);
  return text;
}

/** Throws for the child at `segment` of the container on top of the path. */
function fail(w: Walk, kind: number, segment: string | number, reason: string, cause?: unknown): never {
  const path = shortenPath(pathText(w, w.path.length / 3) + segmentText(kind, segment));
  throw new MemoKeyError(path, reason, cause === undefined ? {} : { cause });
}

function failRead(w: Walk, kind: number, segment: string | number, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  return fail(w, kind, segment, `reading it threw: ${message}`, error);
}

function failCycle(w: Walk, kind: number, segment: string | number, container: object): never {
  let depth = 0;
  while (w.path[depth * 3] !== container) depth++;
  return fail(w, kind, segment, `cycle (it is ${shortenPath(pathText(w, depth + 1))} again)`);
}

/** Why an object with this prototype is refused: the class name, when there is one. */
function describePrototype(proto: object): string {
  const known = REJECTED_BUILTINS.get(proto);
  if (known !== undefined) return known;
  const ctor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value;
  const name = typeof ctor === 'function' ? ctor.name : '';
  const what = name === '' ? 'object with a custom prototype' : `class instance ${name}`;
  return `${what} (only plain data can be keyed: give memoize() a key function that maps it to plain data)`;
}

/**
 * Whether a buffer was detached by a transfer. Node 20 has no `ArrayBuffer.prototype.detached`;
 * a detached buffer has length 0, so only empty buffers pay for the probe.
 */
function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0 || !types.isArrayBuffer(buffer)) return false;
  try {
    buffer.slice(0);
    return false;
  } catch {
    return true;
  }
}

/** The bytes of a view, multi-byte elements little-endian (the order of every common CPU). */
function viewHex(view: ArrayBufferView): string {
  const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  const size = 'BYTES_PER_ELEMENT' in view ? (view.BYTES_PER_ELEMENT as number) : 1;
  if (LITTLE_ENDIAN || size === 1) return bytes.toString('hex');
  const copy = Buffer.from(bytes);
  if (size === 2) copy.swap16();
  else if (size === 4) copy.swap32();
  else copy.swap64();
  return copy.toString('hex');
}
