/**
 * A codec turns keys and values into bytes and back. The v8 and json codecs are built in;
 * any object with this shape can be passed as the `codec` option.
 *
 * @example
 * const upper: Codec = {
 *   name: 'my-json',
 *   encode: (v) => Buffer.from(JSON.stringify(v)),
 *   decode: (b) => JSON.parse(Buffer.from(b).toString()),
 * };
 */
export interface Codec {
  /** Stable name, written into every file header; a file is decoded by the codec of that name. */
  readonly name: string;
  /** Encodes one value (in practice: an array of entries). Throws when it cannot. */
  encode(value: unknown): Uint8Array;
  /** Decodes what `encode` produced. Only ever called on checksum-verified bytes. */
  decode(bytes: Uint8Array): unknown;
  /**
   * Fast check used by `cache.set()`: returns `undefined` when `value` can be encoded, or a
   * description of the first part that cannot (`{ path: '.a[2]', reason: 'function' }`).
   * Optional: without it, unencodable values are found at save time.
   */
  check?(value: unknown): CodecProblem | undefined;
}

/** Where a value cannot be encoded, and why. */
export interface CodecProblem {
  /** Path inside the value (`.user.tags[2]`), `''` for the value itself. */
  readonly path: string;
  /** Short reason: `'function'`, `'symbol'`, `'WeakMap'`, `'class instance Foo'`, … */
  readonly reason: string;
}

/** Built-in codec names. */
export type CodecName = 'v8' | 'json';
