/**
 * The default codec: Node's structured serialization (`node:v8`), which keeps Map, Set,
 * Date, RegExp, BigInt, typed arrays, Buffers, errors, `undefined`, `-0`, NaN, sparse arrays,
 * shared references and cycles.
 *
 * `v8.serialize` has two failure modes, and {@link v8Codec.check} guards `cache.set()`
 * against both:
 * - it throws on functions, symbols, WeakMap, Promise, Proxy, host objects...: `check`
 *   rejects them up front so the error names the key at `set()` instead of failing a save
 *   later;
 * - it *silently* degrades class instances to plain objects (prototype and methods gone),
 *   user subclasses of Map/Set/Array/Error to the built-in class, and drops every Error
 *   property except `message`, `stack` and `cause`. A cache that hands back a different
 *   kind of object after a restart is a bug that shows up far from its cause, so `check`
 *   rejects those too (`'class instance Foo'`).
 *
 * What `check` does not inspect, by design (it must stay cheap on every `set()`): symbol
 * keys and non-enumerable properties (v8 drops them, as `structuredClone` does), extra
 * non-index properties of arrays shorter than 65 536 elements, and own properties added to
 * Map, Set, Date, typed arrays and boxed primitives (v8 drops them). `arguments` objects
 * pass `check` but fail at save time, where the save names the key.
 *
 * Decoding differs from `v8.deserialize` in one way: every typed array, DataView and Buffer
 * gets its own memory. Node's deserializer returns views into the buffer being decoded
 * (see `CopyingDeserializer` below).
 *
 * Path syntax of a {@link CodecProblem}: `''` for the value itself, `.name` for a property
 * (`["weird key"]` when the key is not an identifier), `[3]` for an array index,
 * `<key #2>` / `<value #2>` for the key / value of the Map entry at insertion index 2,
 * `<member #2>` for a Set member, `.cause` for an Error's cause. A path longer than 200
 * characters is cut at its start, marked `…`.
 *
 * @module
 */

import v8 from 'node:v8';
import { types } from 'node:util';
import type { Codec, CodecProblem } from './types.js';
import { beginWalk, endWalk, pop, push, UNTRACKED_VISITS, visit, type WalkState } from './walk.js';

/**
 * Deepest nesting `check` accepts. v8's serializer and deserializer are recursive: a chain
 * of about 2 000 nested objects already overflows the stack in `deserialize` (measured on
 * Node 20), so the limit leaves room for the frames of whoever calls the codec. Failing
 * at `set()` beats writing a file that can never be read back.
 *
 * @example
 * checkV8(chainOf(1001))?.reason; // 'nested more than 1000 levels deep (...)'
 */
export const MAX_NESTING = 1000;

/** Arrays longer than this are walked with `for...in`, which skips holes (see below). */
const DENSE_WALK_LIMIT = 65_536;

// How `check` treats an object, looked up by its prototype: one Map lookup classifies
// every built-in v8 restores faithfully. Anything not in this table is rejected.
const PLAIN = 0;
const ARRAY = 1;
const MAP = 2;
const SET = 3;
const ERROR = 4;
const LEAF = 5; // restored as is and holds nothing `check` must look into
const BINARY = 6; // ArrayBuffer or a view of one: a leaf, unless its buffer was detached

type Kind = typeof PLAIN | typeof ARRAY | typeof MAP | typeof SET | typeof ERROR | typeof LEAF | typeof BINARY;

const TYPED_ARRAY_PROTOTYPES: readonly object[] = [
  Int8Array.prototype,
  Uint8Array.prototype,
  Uint8ClampedArray.prototype,
  Int16Array.prototype,
  Uint16Array.prototype,
  Int32Array.prototype,
  Uint32Array.prototype,
  Float32Array.prototype,
  Float64Array.prototype,
  BigInt64Array.prototype,
  BigUint64Array.prototype,
];

const KIND_BY_PROTOTYPE = new Map<object | null, Kind>([
  [Object.prototype, PLAIN],
  [null, PLAIN],
  [Array.prototype, ARRAY],
  [Map.prototype, MAP],
  [Set.prototype, SET],
  // Only the error classes v8 recreates by name; a user subclass comes back as its
  // built-in base class, and AggregateError as a plain Error without `errors`.
  [Error.prototype, ERROR],
  [EvalError.prototype, ERROR],
  [RangeError.prototype, ERROR],
  [ReferenceError.prototype, ERROR],
  [SyntaxError.prototype, ERROR],
  [TypeError.prototype, ERROR],
  [URIError.prototype, ERROR],
  [Date.prototype, LEAF],
  [RegExp.prototype, LEAF],
  [ArrayBuffer.prototype, BINARY],
  [DataView.prototype, BINARY],
  // Node's serializer tags Buffers, so they come back as Buffers (verified in spec/codec.spec.ts).
  [Buffer.prototype, BINARY],
  [Boolean.prototype, LEAF],
  [Number.prototype, LEAF],
  [String.prototype, LEAF],
  [BigInt.prototype, LEAF],
  ...TYPED_ARRAY_PROTOTYPES.map((proto): [object, Kind] => [proto, BINARY]),
]);

/** Built-ins v8 refuses or mangles, with the reason to report. */
const REJECTED_BUILTINS = new Map<object, string>([
  [WeakMap.prototype, 'WeakMap'],
  [WeakSet.prototype, 'WeakSet'],
  [WeakRef.prototype, 'WeakRef'],
  [FinalizationRegistry.prototype, 'FinalizationRegistry'],
  [Promise.prototype, 'Promise'],
  [SharedArrayBuffer.prototype, 'SharedArrayBuffer'],
  [Symbol.prototype, 'symbol'],
  [AggregateError.prototype, 'AggregateError (v8 restores it as a plain Error without its errors)'],
]);

/** Error properties v8 keeps; any other own enumerable property would be lost. */
const KEPT_ERROR_PROPERTIES = new Set(['message', 'stack', 'cause']);

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

const { isProxy } = types;

/**
 * Path segment for property `key`: `.name`, or `["key"]` when `key` is not an identifier.
 *
 * @example
 * propertySegment('a'); // '.a'
 * propertySegment('weird key'); // '["weird key"]'
 */
export function propertySegment(key: string): string {
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** Longest path reported in full; a path through 1 000 nested objects is not a message. */
const MAX_PATH_LENGTH = 200;

/**
 * Shortens a problem path for reporting, keeping its end (where the culprit is).
 *
 * @example
 * shortenPath('.a'.repeat(500)).length; // 200
 */
export function shortenPath(path: string): string {
  return path.length <= MAX_PATH_LENGTH ? path : `…${path.slice(path.length - MAX_PATH_LENGTH + 1)}`;
}

/**
 * Why an object with this prototype is not restored as itself: the class name when there
 * is one, because that is what the user will recognise.
 */
function describePrototype(proto: object): string {
  const known = REJECTED_BUILTINS.get(proto);
  if (known !== undefined) return known;
  const ctor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value;
  const name = typeof ctor === 'function' ? ctor.name : '';
  return name === ''
    ? 'object with a custom prototype (v8 would restore it as a plain object)'
    : `class instance ${name} (v8 would restore it as a plain object without its class)`;
}

/** Reason a primitive cannot be encoded, or `undefined` when it can. */
function primitiveProblem(value: unknown): string | undefined {
  const type = typeof value;
  if (type === 'function') return 'function';
  if (type === 'symbol') return 'symbol';
  return undefined;
}

/**
 * Whether an ArrayBuffer (or the buffer under a view) was detached by a transfer: v8
 * refuses to serialize it. Node 20 has no `ArrayBuffer.prototype.detached`, and a detached
 * buffer has length 0, so only empty buffers pay for the probe.
 */
function isDetached(value: object): boolean {
  const buffer: ArrayBufferLike = ArrayBuffer.isView(value) ? value.buffer : (value as ArrayBuffer);
  if (buffer.byteLength !== 0 || !types.isArrayBuffer(buffer)) return false;
  try {
    buffer.slice(0);
    return false;
  } catch {
    return true;
  }
}

/** Returned by a walk without `seen` that ran out of its budget. */
const RESTART: CodecProblem = Object.freeze({ path: '', reason: 'restart with a seen set' });

/**
 * The structural walk behind `check`: iterative (a deep value must not overflow the stack
 * of the caller); cycles and shared references are visited once (see
 * {@link UNTRACKED_VISITS} for small values).
 *
 * It runs twice only when something is wrong: the first pass (`tracked = false`) builds no
 * path strings, so a good value costs one visit per object; the second pass visits in the
 * same order, builds paths, and stops at the same culprit.
 */
function walk(root: object, tracked: boolean): CodecProblem | undefined {
  const quick = walkWith(root, tracked, undefined);
  return quick === RESTART ? walkWith(root, tracked, new Set<object>()) : quick;
}

function walkWith(root: object, tracked: boolean, seen: Set<object> | undefined): CodecProblem | undefined {
  // Objects still to visit, taken at the first object met inside the value: the root is
  // visited without them, so checking a flat value (the common case) does not touch them.
  let state: WalkState | undefined;
  let value = root;
  let depth = 1;
  let visits = 0;
  let path = '';
  // Where the child being looked at lives; only computed by the tracked pass.
  let at = '';
  try {
    for (let first = true; ; first = false) {
      if (!first) {
        if (state === undefined || state.size === 0) break;
        value = pop(state);
        depth = state.depths[state.size] as number;
        if (tracked) path = state.paths[state.size] as string;
      }
      at = '';
      if (seen === undefined) {
        if (++visits > UNTRACKED_VISITS) return RESTART;
      } else {
        if (seen.has(value)) continue;
        seen.add(value);
      }
      if (depth > MAX_NESTING) {
        return { path, reason: `nested more than ${MAX_NESTING} levels deep (v8 would overflow the stack decoding it)` };
      }
      // Before anything reads it: a Proxy runs traps on every read, and v8 refuses it.
      if (isProxy(value)) return { path, reason: 'Proxy' };
      const proto = Object.getPrototypeOf(value) as object | null;
      const next = depth + 1;
      let reason: string | undefined;
      // Plain objects and arrays first, without the Map lookup: they are most of what caches hold.
      switch (proto === Object.prototype ? PLAIN : proto === Array.prototype ? ARRAY : KIND_BY_PROTOTYPE.get(proto)) {
        case PLAIN: {
          const record = value as Record<string, unknown>;
          // for...in rather than Object.keys: no key array per object. Plain and
          // null-prototype objects have no inherited enumerable keys (barring pollution
          // of Object.prototype, which v8 would skip and this walk would over-check).
          for (const key in record) {
            if (tracked) at = path + propertySegment(key);
            const child = record[key];
            if (typeof child === 'object' && child !== null) push((state ??= beginWalk(tracked)), child, next, at);
            else if ((reason = primitiveProblem(child)) !== undefined) return { path: at, reason };
          }
          break;
        }
        case ARRAY: {
          const array = value as unknown[];
          if (array.length <= DENSE_WALK_LIMIT) {
            for (let i = 0; i < array.length; i++) {
              if (tracked) at = `${path}[${i}]`;
              const child = array[i];
              if (typeof child === 'object' && child !== null) push((state ??= beginWalk(tracked)), child, next, at);
              else if ((reason = primitiveProblem(child)) !== undefined) return { path: at, reason };
            }
          } else {
            state ??= beginWalk(tracked);
            // A huge, possibly sparse (`a[1e9] = 1`) array: visit the elements that exist,
            // as v8 does, rather than loop over a billion holes.
            const record = array as unknown as Record<string, unknown>;
            for (const key in record) {
              if (tracked) at = path + (/^(0|[1-9]\d*)$/.test(key) ? `[${key}]` : propertySegment(key));
              reason = visit(state, record[key], next, at, primitiveProblem);
              if (reason !== undefined) return { path: at, reason };
            }
          }
          break;
        }
        case MAP: {
          state ??= beginWalk(tracked);
          let i = 0;
          for (const [key, entry] of value as Map<unknown, unknown>) {
            if (tracked) at = `${path}<key #${i}>`;
            reason = visit(state, key, next, at, primitiveProblem);
            if (reason !== undefined) return { path: at, reason };
            if (tracked) at = `${path}<value #${i}>`;
            reason = visit(state, entry, next, at, primitiveProblem);
            if (reason !== undefined) return { path: at, reason };
            i++;
          }
          break;
        }
        case SET: {
          state ??= beginWalk(tracked);
          let i = 0;
          for (const member of value as Set<unknown>) {
            if (tracked) at = `${path}<member #${i}>`;
            reason = visit(state, member, next, at, primitiveProblem);
            if (reason !== undefined) return { path: at, reason };
            i++;
          }
          break;
        }
        case ERROR: {
          const error = value as Error & Record<string, unknown>;
          for (const key in error) {
            if (!KEPT_ERROR_PROPERTIES.has(key)) {
              return {
                path: tracked ? path + propertySegment(key) : '',
                reason: 'Error property (v8 keeps only message, stack and cause)',
              };
            }
          }
          if (Object.hasOwn(error, 'cause')) {
            if (tracked) at = `${path}.cause`;
            reason = visit((state ??= beginWalk(tracked)), error.cause, next, at, primitiveProblem);
            if (reason !== undefined) return { path: at, reason };
          }
          break;
        }
        case LEAF:
          break;
        case BINARY:
          if (isDetached(value)) return { path, reason: 'detached ArrayBuffer' };
          break;
        default:
          return { path, reason: describePrototype(proto as object) };
      }
    }
  } catch (error) {
    // A getter threw while being read; v8 would throw the same way at save time.
    const message = error instanceof Error ? error.message : String(error);
    return { path: at === '' ? path : at, reason: `reading it threw: ${message}` };
  } finally {
    if (state !== undefined) endWalk(state);
  }
  return undefined;
}

/**
 * `check` without the walk, for a value that holds no other object: a flat plain object or
 * array of primitives, a Date, a typed array... (what most caches hold). `true` when v8
 * keeps it as it is; `false` means "walk it": it holds objects, or something in it is
 * wrong, and the walk finds what and where.
 *
 * Small enough for V8 to inline into `cache.set()`, it skips the call into the walk's large
 * loop and its bookkeeping of depth and visits: a flat `{ id, name }` costs about 60 % of
 * a walk. A value it sends on to the walk has cost it one `isProxy` call and the properties
 * read before the first object (reading them again is harmless: v8 reads them again too
 * when it saves).
 */
function isFlatAndFine(value: object): boolean {
  // Before anything reads it, as in the walk.
  if (isProxy(value)) return false;
  const proto = Object.getPrototypeOf(value) as object | null;
  try {
    if (proto === Object.prototype || proto === null) {
      const record = value as Record<string, unknown>;
      for (const key in record) if (!isKeptPrimitive(record[key])) return false;
      return true;
    }
    if (proto === Array.prototype) {
      const array = value as unknown[];
      if (array.length > DENSE_WALK_LIMIT) return false;
      for (let i = 0; i < array.length; i++) if (!isKeptPrimitive(array[i])) return false;
      return true;
    }
  } catch {
    // A getter threw: the walk reports it, with its path.
    return false;
  }
  const kind = KIND_BY_PROTOTYPE.get(proto);
  return kind === LEAF || (kind === BINARY && !isDetached(value));
}

/** A primitive v8 keeps: not an object (those are walked), a function or a symbol. */
function isKeptPrimitive(value: unknown): boolean {
  const type = typeof value;
  return type === 'object' ? value === null : type !== 'function' && type !== 'symbol';
}

/**
 * Whether `value` can be encoded by {@link v8Codec} and read back as the same kind of
 * value; the first problem found otherwise.
 *
 * @example
 * checkV8(new Map([[1, new Date()]])); // undefined
 * checkV8({ a: [1, () => 1] }); // { path: '.a[1]', reason: 'function' }
 */
export function checkV8(value: unknown): CodecProblem | undefined {
  // The fast paths for what most caches hold: a primitive, or an object holding none.
  if (typeof value !== 'object' || value === null) {
    const reason = primitiveProblem(value);
    return reason === undefined ? undefined : { path: '', reason };
  }
  if (isFlatAndFine(value)) return undefined;
  // Called directly rather than through `walk`: most values that get here are fine.
  let quick = walkWith(value, false, undefined);
  if (quick === RESTART) quick = walkWith(value, false, new Set<object>());
  if (quick === undefined) return undefined;
  const problem = walk(value, true);
  return problem === undefined ? undefined : { path: shortenPath(problem.path), reason: problem.reason };
}

/**
 * The view types of Node's serialization format, by the index `DefaultSerializer` writes
 * (lib/v8.js `arrayBufferViewTypeToIndex`; part of the on-disk format, so stable).
 */
const VIEW_TYPES: readonly (((buffer: ArrayBuffer, length: number) => ArrayBufferView) | undefined)[] = [
  (buffer, length) => new Int8Array(buffer, 0, length),
  (buffer, length) => new Uint8Array(buffer, 0, length),
  (buffer, length) => new Uint8ClampedArray(buffer, 0, length),
  (buffer, length) => new Int16Array(buffer, 0, length / 2),
  (buffer, length) => new Uint16Array(buffer, 0, length / 2),
  (buffer, length) => new Int32Array(buffer, 0, length / 4),
  (buffer, length) => new Uint32Array(buffer, 0, length / 4),
  (buffer, length) => new Float32Array(buffer, 0, length / 4),
  (buffer, length) => new Float64Array(buffer, 0, length / 8),
  (buffer, length) => new DataView(buffer, 0, length),
  (buffer, length) => Buffer.from(buffer, 0, length),
  (buffer, length) => new BigInt64Array(buffer, 0, length / 8),
  (buffer, length) => new BigUint64Array(buffer, 0, length / 8),
];

/**
 * Node's `DefaultDeserializer`, except that every typed array, DataView and Buffer gets
 * its own ArrayBuffer. Node's version returns views INTO the buffer being decoded, so a
 * decoded 10-byte Buffer would keep a whole 16 MiB chunk alive, expose the other entries'
 * bytes through `.buffer`, and, for a store that decodes from its own copy (MemoryStore),
 * let a caller mutate the saved copy through a loaded value.
 */
class CopyingDeserializer extends v8.DefaultDeserializer {
  /** Called by v8 for each host object (Node writes every ArrayBufferView as one). */
  _readHostObject(): ArrayBufferView {
    const typeIndex = this.readUint32();
    const byteLength = this.readUint32();
    const make = VIEW_TYPES[typeIndex];
    if (make === undefined) throw new TypeError(`unknown host object type ${typeIndex} in v8 data`);
    const copy = new ArrayBuffer(byteLength);
    new Uint8Array(copy).set(this.readRawBytes(byteLength));
    return make(copy, byteLength);
  }
}

/**
 * The `v8` codec: `node:v8` structured serialization. The default.
 *
 * @example
 * const bytes = v8Codec.encode(new Map([['a', 1n]]));
 * v8Codec.decode(bytes); // Map(1) { 'a' => 1n }
 */
export const v8Codec: Codec = Object.freeze({
  name: 'v8',
  encode(value: unknown): Uint8Array {
    return v8.serialize(value);
  },
  decode(bytes: Uint8Array): unknown {
    const deserializer = new CopyingDeserializer(bytes);
    deserializer.readHeader();
    return deserializer.readValue();
  },
  check: checkV8,
});
