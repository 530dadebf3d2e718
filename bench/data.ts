// Benchmark data, generated before any timing: keys, values and access sequences, the same
// for every implementation (seeded, so every run of the suite uses the same sequences).
import { seededRandom } from '../spec/random.js';

/** The two kinds of keys the workloads use. */
export type KeyKind = 'string' | 'integer';

/** A value as an application would cache it: a small object. */
export interface Value {
  readonly id: number;
  readonly name: string;
}

/** `n` keys of one kind, `n` keys of the same kind that are never stored, and a value for each key. */
export interface Dataset {
  readonly n: number;
  readonly kind: KeyKind;
  /** `keys[i]` maps to `values[i]`. */
  readonly keys: readonly (string | number)[];
  /** Keys that no workload stores (for misses). */
  readonly missing: readonly (string | number)[];
  readonly values: readonly Value[];
}

/** The value stored under key number `i`. */
export function valueOf(i: number): Value {
  return { id: i, name: `user ${i}` };
}

/**
 * String keys look like application keys (`'user:123'`); integer keys are small integers,
 * which V8 stores unboxed.
 */
export function dataset(n: number, kind: KeyKind): Dataset {
  const key = kind === 'string' ? (i: number): string | number => `user:${i}` : (i: number): string | number => i;
  return {
    n,
    kind,
    keys: Array.from({ length: n }, (_, i) => key(i)),
    missing: Array.from({ length: n }, (_, i) => key(n + i)),
    values: Array.from({ length: n }, (_, i) => valueOf(i)),
  };
}

/** Fills `array` with `draw(random)`, `random` seeded with `seed`. */
function drawInto<T extends Uint32Array | Uint8Array>(array: T, seed: number, draw: (random: () => number) => number): T {
  const random = seededRandom(seed);
  for (let i = 0; i < array.length; i++) array[i] = draw(random);
  return array;
}

/** `count` indices drawn uniformly from `[0, below)`. */
export function randomIndices(count: number, below: number, seed: number): Uint32Array {
  return drawInto(new Uint32Array(count), seed, (random) => Math.floor(random() * below));
}

/**
 * `count` indices from `[0, below)` where a fifth of the indices receive four fifths of the
 * draws, as in a cache whose popular keys stay popular.
 */
export function skewedIndices(count: number, below: number, seed: number): Uint32Array {
  const hot = Math.max(1, Math.floor(below / 5));
  return drawInto(new Uint32Array(count), seed, (random) =>
    random() < 0.8 ? Math.floor(random() * hot) : hot + Math.floor(random() * (below - hot)),
  );
}

/** `count` numbers from `[0, 100)`: which operation of a mix each step performs. */
export function percentiles(count: number, seed: number): Uint8Array {
  return drawInto(new Uint8Array(count), seed, (random) => Math.floor(random() * 100));
}
