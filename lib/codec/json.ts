/**
 * The `json` codec: JSON text in UTF-8. Files are readable by any tool, at the price of
 * accepting only what survives `JSON.parse(JSON.stringify(x))` unchanged: plain objects,
 * arrays, strings, booleans, `null` and finite numbers.
 *
 * `JSON.stringify` never refuses a value: it silently turns `undefined` properties into
 * nothing, `undefined` array elements, holes, NaN and Infinity into `null`, Dates into
 * strings, Maps and Sets into `{}`, and throws only on cycles and BigInt. A cache that
 * reads back something else than it stored is worse than one that refuses the value, so
 * {@link jsonCodec.check} rejects all of these, and {@link jsonCodec.encode} runs the same
 * check before stringifying (values can be mutated after `set()`).
 *
 * Accepted although not bit-exact: `-0` (read back as `0`), null-prototype objects (read
 * back with `Object.prototype`), shared references (read back as separate copies).
 * Not inspected, to keep `check` cheap: symbol keys and non-enumerable properties (JSON
 * ignores them) and extra non-index properties of arrays (JSON drops them).
 *
 * Paths use the syntax of the v8 codec: `''`, `.name`, `["weird key"]`, `[3]`.
 *
 * @module
 */

import { types } from 'node:util';
import type { Codec, CodecProblem } from './types.js';
import { beginWalk, endWalk, pop, push, UNTRACKED_VISITS, visit } from './walk.js';
import { MAX_NESTING, propertySegment, shortenPath } from './v8.js';

/** Returned by a walk without colours that ran out of its budget. */
const RESTART: CodecProblem = Object.freeze({ path: '', reason: 'restart with cycle tracking' });

/** Names to report for built-ins JSON would mangle; anything else is a class instance. */
const MANGLED_BUILTINS = new Map<object, string>([
  [Date.prototype, 'Date (JSON would turn it into a string)'],
  [Map.prototype, 'Map (JSON would turn it into {})'],
  [Set.prototype, 'Set (JSON would turn it into {})'],
  [RegExp.prototype, 'RegExp (JSON would turn it into {})'],
  [Error.prototype, 'Error (JSON would turn it into {})'],
  [Buffer.prototype, 'Buffer'],
  [ArrayBuffer.prototype, 'ArrayBuffer'],
  [DataView.prototype, 'DataView'],
  [Boolean.prototype, 'boxed boolean'],
  [Number.prototype, 'boxed number'],
  [String.prototype, 'boxed string'],
  [BigInt.prototype, 'bigint'],
  [Symbol.prototype, 'symbol'],
  [Promise.prototype, 'Promise'],
  [WeakMap.prototype, 'WeakMap'],
  [WeakSet.prototype, 'WeakSet'],
  [WeakRef.prototype, 'WeakRef'],
]);

// Colors of the depth-first walk: an object on the current path is gray (meeting it again
// is a cycle); a finished one is black (meeting it again is a shared reference, fine).
const GRAY = 0;
const BLACK = 1;

/** Pushed on the value stack to mark where an object's children end. */
const EXIT: object = Object.freeze({});

/** Reason a primitive cannot be encoded exactly, or `undefined` when it can. */
function primitiveProblem(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      if (Number.isFinite(value)) return undefined;
      return `${value} (JSON would turn it into null)`;
    case 'undefined':
      return 'undefined (JSON would drop it or turn it into null)';
    case 'bigint':
      return 'bigint';
    case 'symbol':
      return 'symbol';
    case 'function':
      return 'function';
    default:
      // typeof 'object': only null reaches here, objects are walked by the caller.
      return undefined;
  }
}

/** `%TypedArray%.prototype`, the parent of every typed array prototype. */
const TYPED_ARRAY_PROTO = Object.getPrototypeOf(Uint8Array.prototype) as object;

/** Why an object of this prototype cannot be encoded. */
function describePrototype(proto: object): string {
  const known = MANGLED_BUILTINS.get(proto);
  if (known !== undefined) return known;
  if (TYPED_ARRAY_PROTO === Object.getPrototypeOf(proto)) return 'typed array';
  if (Error.prototype.isPrototypeOf(proto)) return 'Error (JSON would turn it into {})';
  const ctor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value;
  const name = typeof ctor === 'function' ? ctor.name : '';
  return name === '' ? 'object with a custom prototype' : `class instance ${name}`;
}


/**
 * The iterative walk behind `check`; see `walk` in `v8.ts` for the two passes (a
 * path-free one, a path-building one only when something is wrong) and the budgeted first
 * attempt without cycle tracking. Here cycles are errors, so the tracked attempt colours
 * objects: gray while their children are being walked, black when done.
 */
function walk(root: object, tracked: boolean, maxDepth: number): CodecProblem | undefined {
  const quick = walkWith(root, tracked, maxDepth, undefined);
  return quick === RESTART ? walkWith(root, tracked, maxDepth, new Map<object, number>()) : quick;
}

function walkWith(root: object, tracked: boolean, maxDepth: number, color: Map<object, number> | undefined): CodecProblem | undefined {
  const state = beginWalk(tracked);
  push(state, root, 1, '');
  // The objects being walked, innermost last: each EXIT on the stack closes the last one.
  // Only the pass that colours objects needs them.
  const open: object[] | undefined = color === undefined ? undefined : [];
  let visits = 0;
  let path = '';
  let at = '';

  try {
    while (state.size > 0) {
      const value = pop(state);
      const depth = state.depths[state.size] as number;
      if (tracked) path = state.paths[state.size] as string;
      at = '';
      if (value === EXIT) {
        color?.set(open?.pop() as object, BLACK);
        continue;
      }
      if (color === undefined) {
        if (++visits > UNTRACKED_VISITS) return RESTART;
      } else {
        const state = color.get(value);
        if (state === BLACK) continue;
        if (state === GRAY) return { path, reason: 'circular reference' };
      }
      if (depth > maxDepth) {
        return { path, reason: `nested more than ${maxDepth} levels deep (JSON would overflow the stack)` };
      }
      const proto = Object.getPrototypeOf(value) as object | null;
      const next = depth + 1;
      let reason: string | undefined;
      const isArray = proto === Array.prototype;
      if (!isArray && proto !== Object.prototype && proto !== null) {
        return { path, reason: types.isProxy(value) ? 'Proxy' : describePrototype(proto) };
      }
      if (color !== undefined) {
        color.set(value, GRAY);
        open?.push(value);
        push(state, EXIT, depth, path);
      }
      if (isArray) {
        const array = value as unknown[];
        for (let i = 0; i < array.length; i++) {
          if (tracked) at = `${path}[${i}]`;
          const child = array[i];
          // A hole reads as undefined; tell the two apart only on this slow path.
          if (child === undefined && !(i in array)) return { path: at, reason: 'hole in a sparse array (JSON would turn it into null)' };
          reason = visit(state, child, next, at, primitiveProblem);
          if (reason !== undefined) return { path: at, reason };
        }
      } else {
        const record = value as Record<string, unknown>;
        for (const key in record) {
          if (tracked) at = path + propertySegment(key);
          reason = visit(state, record[key], next, at, primitiveProblem);
          if (reason !== undefined) return { path: at, reason };
        }
      }
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { path: at === '' ? path : at, reason: `reading it threw: ${message}` };
  } finally {
    endWalk(state);
  }
  return undefined;
}

/**
 * Whether `value` survives a JSON round trip unchanged; the first problem found otherwise.
 *
 * @example
 * checkJson({ id: 1, tags: ['a'] }); // undefined
 * checkJson({ at: new Date() }); // { path: '.at', reason: 'Date (JSON would turn it into a string)' }
 */
export function checkJson(value: unknown): CodecProblem | undefined {
  return checkJsonTo(value, MAX_NESTING);
}

/**
 * Nesting `encode` tolerates beyond {@link MAX_NESTING}: a store encodes values inside its
 * own containers (a list of `[key, value, expiresAt]` entries), and a value `check`
 * accepted at `set()` must not be refused at save time for that.
 */
const ENCODE_NESTING_ALLOWANCE = 8;

function checkJsonTo(value: unknown, maxDepth: number): CodecProblem | undefined {
  if (typeof value !== 'object' || value === null) {
    const reason = primitiveProblem(value);
    return reason === undefined ? undefined : { path: '', reason };
  }
  if (walk(value, false, maxDepth) === undefined) return undefined;
  const problem = walk(value, true, maxDepth);
  return problem === undefined ? undefined : { path: shortenPath(problem.path), reason: problem.reason };
}

/**
 * The `json` codec: UTF-8 JSON, limited to values JSON keeps exactly.
 *
 * @example
 * const bytes = jsonCodec.encode({ id: 1 });
 * jsonCodec.decode(bytes); // { id: 1 }
 * jsonCodec.encode({ id: undefined }); // throws TypeError: ... at .id (undefined ...)
 */
export const jsonCodec: Codec = Object.freeze({
  name: 'json',
  encode(value: unknown): Uint8Array {
    // Stringify never refuses a value; it would mangle it. Refuse instead.
    const problem = checkJsonTo(value, MAX_NESTING + ENCODE_NESTING_ALLOWANCE);
    if (problem !== undefined) {
      const where = problem.path === '' ? 'the value' : `the value at ${problem.path}`;
      throw new TypeError(`JSON cannot encode ${where}: ${problem.reason}`);
    }
    return Buffer.from(JSON.stringify(value), 'utf8');
  },
  decode(bytes: Uint8Array): unknown {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  },
  check: checkJson,
});
