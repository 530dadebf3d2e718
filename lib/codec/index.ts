/**
 * The built-in codecs and how a `codec` option becomes a {@link Codec}.
 *
 * @module
 */

import { InvalidOptionError } from '../errors.js';
import { jsonCodec } from './json.js';
import type { Codec, CodecName } from './types.js';
import { v8Codec } from './v8.js';

export type { Codec, CodecName, CodecProblem } from './types.js';
export { checkJson, jsonCodec } from './json.js';
export { checkV8, MAX_NESTING, v8Codec } from './v8.js';

// A Map, not an object literal: `builtinCodec('__proto__')` must not find Object.prototype.
const BUILTIN_CODECS: ReadonlyMap<string, Codec> = new Map<string, Codec>([
  ['v8', v8Codec],
  ['json', jsonCodec],
]);

/**
 * The built-in codec of that name, or `undefined`. Used to read a file written with a
 * codec other than the current one.
 *
 * @example
 * builtinCodec('json') === jsonCodec; // true
 * builtinCodec('msgpack'); // undefined
 */
export function builtinCodec(name: string): Codec | undefined {
  return BUILTIN_CODECS.get(name);
}

/**
 * Turns the `codec` option into a codec: a built-in by name, or a custom codec as is
 * (after checking its shape, so a typo fails at construction and not at the first save).
 *
 * @throws {InvalidOptionError} option `codec`, for an unknown name or a malformed codec
 * @example
 * resolveCodec('v8') === v8Codec; // true
 * resolveCodec({ name: 'raw', encode: (v) => v as Uint8Array, decode: (b) => b });
 */
export function resolveCodec(nameOrCodec: CodecName | Codec): Codec {
  if (typeof nameOrCodec === 'string') {
    const codec = BUILTIN_CODECS.get(nameOrCodec);
    if (codec === undefined) {
      throw new InvalidOptionError('codec', `unknown codec ${JSON.stringify(nameOrCodec)} (built in: ${[...BUILTIN_CODECS.keys()].join(', ')})`);
    }
    return codec;
  }
  const candidate = nameOrCodec as Partial<Record<keyof Codec, unknown>> | null;
  if (typeof candidate !== 'object' || candidate === null) {
    throw new InvalidOptionError('codec', `expected 'v8', 'json' or a codec object, got ${candidate === null ? 'null' : typeof candidate}`);
  }
  if (typeof candidate.name !== 'string' || candidate.name === '') {
    throw new InvalidOptionError('codec.name', 'must be a non-empty string (it is written into every file)');
  }
  const builtin = BUILTIN_CODECS.get(candidate.name);
  if (builtin !== undefined && builtin !== nameOrCodec) {
    // Files record only the codec's name: another process would read this one's files
    // with the built-in codec of that name.
    throw new InvalidOptionError('codec.name', `${JSON.stringify(candidate.name)} is the name of a built-in codec; give a custom codec its own name`);
  }
  if (typeof candidate.encode !== 'function') throw new InvalidOptionError('codec.encode', 'must be a function');
  if (typeof candidate.decode !== 'function') throw new InvalidOptionError('codec.decode', 'must be a function');
  if (candidate.check !== undefined && typeof candidate.check !== 'function') {
    throw new InvalidOptionError('codec.check', 'must be a function when given');
  }
  return nameOrCodec;
}
