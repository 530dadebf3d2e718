import { expect } from 'chai';
import v8 from 'node:v8';
import { builtinCodec, checkJson, checkV8, jsonCodec, MAX_NESTING, resolveCodec, v8Codec } from '../lib/codec/index.js';
import type { Codec } from '../lib/codec/types.js';
import { InvalidOptionError } from '../lib/errors.js';
import { seededRandom } from './store/conformance.js';

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}
class MyMap extends Map<unknown, unknown> {}
class NotFoundError extends Error {}

function nest(depth: number): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let node = root;
  for (let i = 1; i < depth; i++) {
    const child: Record<string, unknown> = {};
    node['next'] = child;
    node = child;
  }
  return root;
}

function cyclic(): Record<string, unknown> {
  const node: Record<string, unknown> = { name: 'loop' };
  node['self'] = node;
  return node;
}

/**
 * Asserts `decoded` is `original` rebuilt faithfully: deep-equal AND every object has the
 * same prototype (chai's deep equality ignores prototypes: a Point and {x, y} are "equal").
 */
function expectFaithful(original: unknown, decoded: unknown, label: string): void {
  expect(decoded, label).to.deep.equal(original);
  const pairs: [unknown, unknown][] = [[original, decoded]];
  const seen = new Set<unknown>();
  while (pairs.length > 0) {
    const [a, b] = pairs.pop() as [unknown, unknown];
    if (typeof a !== 'object' || a === null || seen.has(a)) continue;
    seen.add(a);
    const protoA = Object.getPrototypeOf(a) as object | null;
    const protoB = Object.getPrototypeOf(b) as object | null;
    // A null-prototype object may come back with Object.prototype; nothing else may change.
    if (!(protoA === null && protoB === Object.prototype)) expect(protoB, `prototype in ${label}`).to.equal(protoA);
    if (a instanceof Map) {
      const bEntries = [...(b as Map<unknown, unknown>)];
      [...a].forEach(([k, v], i) => pairs.push([k, bEntries[i]?.[0]], [v, bEntries[i]?.[1]]));
    } else if (a instanceof Set) {
      const bMembers = [...(b as Set<unknown>)];
      [...a].forEach((m, i) => pairs.push([m, bMembers[i]]));
    } else {
      for (const key of Object.keys(a)) pairs.push([(a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]]);
    }
  }
}

/** Follows a problem path (`.a["b c"][3]<value #1><member #0>`) to the value it names. */
function resolvePath(root: unknown, path: string): unknown {
  const segment = /^(?:\.([A-Za-z_$][\w$]*)|\[("(?:[^"\\]|\\.)*")\]|\[(\d+)\]|<(key|value|member) #(\d+)>)/;
  let value = root;
  let rest = path;
  while (rest !== '') {
    const match = segment.exec(rest);
    if (match === null) throw new Error(`cannot parse path ${path} at ${rest}`);
    const [whole, identifier, quoted, index, marker, position] = match;
    if (identifier !== undefined) value = (value as Record<string, unknown>)[identifier];
    else if (quoted !== undefined) value = (value as Record<string, unknown>)[JSON.parse(quoted) as string];
    else if (index !== undefined) value = (value as unknown[])[Number(index)];
    else if (marker === 'member') value = [...(value as Set<unknown>)][Number(position)];
    else {
      const entry = [...(value as Map<unknown, unknown>)][Number(position)];
      value = marker === 'key' ? entry?.[0] : entry?.[1];
    }
    rest = rest.slice(whole.length);
  }
  return value;
}

/** Values the v8 codec must accept and read back faithfully. */
const V8_ACCEPTED: [string, () => unknown][] = [
  ['number', () => 42],
  ['NaN', () => NaN],
  ['-0', () => -0],
  ['Infinity', () => Infinity],
  ['string', () => 'text 🙂 \ud800'],
  ['boolean', () => true],
  ['undefined', () => undefined],
  ['null', () => null],
  ['bigint', () => -(2n ** 100n)],
  ['plain object', () => ({ id: 1, name: 'Ada', tags: ['a', 'b'] })],
  ['null-prototype object', () => Object.assign(Object.create(null) as object, { a: 1 })],
  ['object with undefined', () => ({ a: undefined })],
  ['"__proto__" own key', () => JSON.parse('{"__proto__": {"polluted": true}}') as unknown],
  ['array', () => [1, 'two', [3]]],
  ['sparse array', () => [1, , 3]], // eslint-disable-line no-sparse-arrays
  ['Map', () => new Map<unknown, unknown>([['a', 1], [{ k: 1 }, [2]]])],
  ['Set', () => new Set([1, 'a', { b: 2 }])],
  ['Date', () => new Date(Date.UTC(2020, 1, 29))],
  ['invalid Date', () => new Date(NaN)],
  ['RegExp', () => /x+y/gimsuy],
  ['Error', () => new Error('failed')],
  ['TypeError', () => new TypeError('bad type')],
  ['RangeError with a cause', () => new RangeError('out', { cause: { detail: [1] } })],
  ['ArrayBuffer', () => Uint8Array.of(1, 2, 3).buffer],
  ['Uint8Array', () => Uint8Array.of(1, 2, 3)],
  ['Float64Array', () => Float64Array.of(1.5, -0, NaN)],
  ['BigUint64Array', () => BigUint64Array.of(2n ** 64n - 1n)],
  ['DataView', () => new DataView(Uint8Array.of(9, 8).buffer)],
  ['Buffer', () => Buffer.from('buffer stays a Buffer')],
  ['boxed primitives', () => [new Number(1), new String('s'), new Boolean(false), Object(5n) as object]],
  ['shared references', () => {
    const shared = { s: 1 };
    return { a: shared, b: [shared], c: new Map([[shared, shared]]) };
  }],
  ['a cycle', cyclic],
  ['Map keyed by itself', () => {
    const map = new Map<unknown, unknown>();
    map.set(map, map);
    return map;
  }],
  [`nesting of ${MAX_NESTING}`, () => nest(MAX_NESTING)],
  ['getters (their value is stored)', () => ({ get computed() { return 7; } })],
];

/** Values the v8 codec must refuse, the expected path, and a fragment of the reason. */
const V8_REJECTED: [string, () => unknown, string, string][] = [
  ['function', () => () => 1, '', 'function'],
  ['symbol', () => Symbol('s'), '', 'symbol'],
  ['nested function', () => ({ a: { b: [1, 2, function named() {}] } }), '.a.b[2]', 'function'],
  ['symbol under a weird key', () => ({ 'weird key': Symbol('s') }), '["weird key"]', 'symbol'],
  ['WeakMap', () => ({ w: new WeakMap() }), '.w', 'WeakMap'],
  ['WeakSet', () => [new WeakSet()], '[0]', 'WeakSet'],
  ['WeakRef', () => new WeakRef({}), '', 'WeakRef'],
  ['Promise', () => ({ p: Promise.resolve(1) }), '.p', 'Promise'],
  ['class instance', () => ({ at: new Point(1, 2) }), '.at', 'class instance Point'],
  ['Map subclass', () => new MyMap(), '', 'class instance MyMap'],
  ['Error subclass', () => new NotFoundError('nope'), '', 'class instance NotFoundError'],
  ['AggregateError', () => new AggregateError([1], 'many'), '', 'AggregateError'],
  ['Error with a code', () => Object.assign(new Error('x'), { code: 'E_X' }), '.code', 'Error property'],
  ['function as a cause', () => new Error('x', { cause: () => 1 }), '.cause', 'function'],
  ['object with a custom prototype', () => Object.create({ inherited: 1 }) as object, '', 'custom prototype'],
  ['Proxy', () => ({ p: new Proxy({}, {}) }), '.p', 'Proxy'],
  ['SharedArrayBuffer', () => new SharedArrayBuffer(8), '', 'SharedArrayBuffer'],
  ['Map key', () => new Map([[() => 1, 'v']]), '<key #0>', 'function'],
  ['Map value', () => new Map<string, unknown>([['a', 1], ['b', Symbol('s')]]), '<value #1>', 'symbol'],
  ['Set member', () => new Set([1, new WeakMap()]), '<member #1>', 'WeakMap'],
  ['inside a cycle', () => {
    const node = cyclic();
    node['bad'] = () => 1;
    return node;
  }, '.bad', 'function'],
  [`nesting of ${MAX_NESTING + 1}`, () => nest(MAX_NESTING + 1), `.next`, 'nested more than'],
  ['a throwing getter', () => ({ get boom(): never { throw new Error('kaboom'); } }), '.boom', 'kaboom'],
  ['a function in a huge sparse array', () => {
    const array: unknown[] = [];
    array[10_000_000] = () => 1;
    return array;
  }, '[10000000]', 'function'],
];

/** Values the json codec must accept and read back exactly. */
const JSON_ACCEPTED: [string, () => unknown][] = [
  ['number', () => 0.1],
  ['-0 (read back as 0, accepted)', () => 0],
  ['string', () => 'line\nbreak "quote" \\ 🙂 \ud800'],
  ['boolean', () => false],
  ['null', () => null],
  ['plain object', () => ({ id: 1, name: 'Ada', tags: ['a', 'b'], nested: { deep: [{}] } })],
  ['null-prototype object', () => Object.assign(Object.create(null) as object, { a: 1 })],
  ['"__proto__" own key', () => JSON.parse('{"__proto__": 1}') as unknown],
  ['array', () => [1, [2, [3]], { a: null }]],
  ['shared references', () => {
    const shared = { s: 1 };
    return [shared, shared];
  }],
  [`nesting of ${MAX_NESTING}`, () => nest(MAX_NESTING)],
];

/** Values the json codec must refuse (JSON would throw or mangle them). */
const JSON_REJECTED: [string, () => unknown, string, string][] = [
  ['undefined', () => undefined, '', 'undefined'],
  ['undefined property', () => ({ a: 1, b: undefined }), '.b', 'undefined'],
  ['undefined element', () => [1, undefined], '[1]', 'undefined'],
  ['hole', () => [1, , 3], '[1]', 'hole'], // eslint-disable-line no-sparse-arrays
  ['NaN', () => ({ n: NaN }), '.n', 'NaN'],
  ['Infinity', () => [Infinity], '[0]', 'Infinity'],
  ['-Infinity', () => -Infinity, '', '-Infinity'],
  ['bigint', () => ({ big: 1n }), '.big', 'bigint'],
  ['Map', () => ({ m: new Map() }), '.m', 'Map'],
  ['Set', () => ({ s: new Set() }), '.s', 'Set'],
  ['Date', () => ({ d: new Date(0) }), '.d', 'Date'],
  ['RegExp', () => /x/, '', 'RegExp'],
  ['Error', () => new TypeError('x'), '', 'Error'],
  ['Buffer', () => Buffer.from('x'), '', 'Buffer'],
  ['typed array', () => Uint8Array.of(1), '', 'typed array'],
  ['boxed string', () => new String('s'), '', 'boxed string'],
  ['class instance', () => ({ p: new Point(1, 2) }), '.p', 'class instance Point'],
  ['function', () => ({ f() {} }), '.f', 'function'],
  ['toJSON', () => ({ toJSON: () => 'lies' }), '.toJSON', 'function'],
  ['symbol', () => [Symbol('s')], '[0]', 'symbol'],
  ['cycle', cyclic, '.self', 'circular'],
  [`nesting of ${MAX_NESTING + 1}`, () => nest(MAX_NESTING + 1), '.next', 'nested more than'],
];

function jsonRoundTrip(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value) ?? 'null') as unknown;
}

describe('codecs', function () {
  describe('v8Codec', function () {
    it('is named v8', function () {
      expect(v8Codec.name).to.equal('v8');
      expect(v8Codec.check).to.equal(checkV8);
    });

    describe('#check()', function () {
      for (const [label, make] of V8_ACCEPTED) {
        it(`accepts ${label}, and encode + decode gives it back faithfully`, function () {
          const value = make();
          expect(checkV8(value)).to.equal(undefined);
          expectFaithful([value], v8Codec.decode(v8Codec.encode([value])), label);
        });
      }

      for (const [label, make, path, reason] of V8_REJECTED) {
        it(`rejects ${label} at path ${JSON.stringify(path)}`, function () {
          const value = make();
          const problem = checkV8(value);
          expect(problem?.reason).to.include(reason);
          expect(problem?.path.endsWith(path), `${problem?.path} ends with ${path}`).to.equal(true);
        });
      }

      it('rejects only what v8 refuses or would bring back changed', function () {
        for (const [label, make] of V8_REJECTED) {
          const value = make();
          let changed: boolean;
          try {
            const back = v8.deserialize(v8.serialize(value));
            try {
              expectFaithful(value, back, label);
              changed = false;
            } catch {
              changed = true;
            }
          } catch {
            changed = true; // v8 refused it (or, for deep nesting, cannot read it back)
          }
          if (label.startsWith('nesting')) continue; // v8 happens to cope at this depth; the limit is a margin
          expect(changed, label).to.equal(true);
        }
      });

      it('reports paths that lead to the culprit', function () {
        const culprit = (): void => undefined;
        const value = {
          list: [1, { 'odd key': new Map<unknown, unknown>([['k', new Set([0, { deep: [culprit] }])]]) }],
        };
        const problem = checkV8(value);
        expect(problem?.path).to.equal('.list[1]["odd key"]<value #0><member #1>.deep[0]');
        expect(resolvePath(value, problem?.path ?? '')).to.equal(culprit);
      });

      it('reports a path that leads to the culprit for every rejected value', function () {
        for (const [label, make] of V8_REJECTED) {
          const value = make();
          const problem = checkV8(value);
          if (problem === undefined || problem.path.startsWith('…') || /^(Error property|reading it threw)/.test(problem.reason)) continue;
          expect(() => resolvePath(value, problem.path), label).to.not.throw();
        }
      });

      it('finds the culprit in values of more than a few dozen objects', function () {
        const rows = Array.from({ length: 200 }, (_, i) => ({ i, tags: [String(i)] }));
        expect(checkV8(rows)).to.equal(undefined);
        (rows[150] as Record<string, unknown>)['bad'] = new WeakSet();
        expect(checkV8(rows)).to.deep.equal({ path: '[150].bad', reason: 'WeakSet' });
        expect(checkJson(rows)).to.deep.include({ path: '[150].bad' });
      });

      it('shortens very long paths, keeping their end', function () {
        const deep = nest(MAX_NESTING + 1);
        const path = checkV8(deep)?.path ?? '';
        expect(path.length).to.be.at.most(200);
        expect(path.startsWith('…')).to.equal(true);
      });

      it('visits a shared subtree once and terminates on cycles', function () {
        // 40 levels of two references to the same child: 2^40 paths, 40 objects.
        let node: Record<string, unknown> = { leaf: true };
        for (let i = 0; i < 40; i++) node = { left: node, right: node };
        expect(checkV8(node)).to.equal(undefined);
        expect(checkV8(cyclic())).to.equal(undefined);
      });

      it('takes the fast path for primitives', function () {
        for (const value of [0, 'a', true, undefined, null, 1n]) expect(checkV8(value)).to.equal(undefined);
      });

      it('refuses a Proxy wherever it is, before running any of its traps', function () {
        let traps = 0;
        const counting = new Proxy(
          {},
          {
            getPrototypeOf: () => (traps++, Object.prototype),
            ownKeys: () => (traps++, []),
            get: () => (traps++, 1),
          },
        );
        expect(checkV8(counting)).to.deep.equal({ path: '', reason: 'Proxy' });
        expect(checkV8([1, 'a', counting])).to.deep.equal({ path: '[2]', reason: 'Proxy' });
        expect(checkV8({ flat: 1, p: counting })).to.deep.equal({ path: '.p', reason: 'Proxy' });
        expect(checkV8(new Map([['k', counting]]))).to.deep.equal({ path: '<value #0>', reason: 'Proxy' });
        expect(checkV8(new Proxy([1, 2], {}))).to.deep.equal({ path: '', reason: 'Proxy' });
        expect(traps).to.equal(0);
      });

      it('gives the same answer when a getter checks another value during the walk', function () {
        const inner = { bad: [1, Symbol('s')] };
        let innerProblem: unknown;
        const outer = {
          before: { a: 1 },
          get during() {
            innerProblem = checkV8(inner);
            return { fine: [1, 2] };
          },
          after: [{ b: 2 }, () => 1],
        };
        expect(checkV8(outer)).to.deep.equal({ path: '.after[1]', reason: 'function' });
        expect(innerProblem).to.deep.equal({ path: '.bad[1]', reason: 'symbol' });
      });

      it('starts every check afresh after one that stopped early in a wide value', function () {
        const wide = Array.from({ length: 100_000 }, (_, i) => ({ i, nested: { list: [i] } }));
        (wide[10] as Record<string, unknown>)['oops'] = new WeakMap();
        expect(checkV8(wide)).to.deep.equal({ path: '[10].oops', reason: 'WeakMap' });
        expect(checkV8({ id: 1, name: 'a' })).to.equal(undefined);
        expect(checkV8([{ a: [1] }, { b: new Set([2]) }])).to.equal(undefined);
        expect(checkV8({ a: { b: { c: () => 1 } } })).to.deep.equal({ path: '.a.b.c', reason: 'function' });
        delete (wide[10] as Record<string, unknown>)['oops'];
        expect(checkV8(wide)).to.equal(undefined);
      });

      it('finds a culprit hidden at a random place in a random value, with a path to it', function () {
        const random = seededRandom(11);
        const culprits: [unknown, string][] = [
          [() => 1, 'function'],
          [Symbol('s'), 'symbol'],
          [new WeakMap(), 'WeakMap'],
          [new Proxy({}, {}), 'Proxy'],
          [new Point(1, 2), 'class instance Point'],
        ];
        const leaf = (): unknown => [1.5, 'text', null, undefined, 3n, new Date(1000), Uint8Array.of(1), true][Math.floor(random() * 8)];
        const build = (depth: number): unknown => {
          if (depth === 0 || random() < 0.3) return leaf();
          const kind = Math.floor(random() * 4);
          const children = Array.from({ length: 1 + Math.floor(random() * 4) }, () => build(depth - 1));
          if (kind === 0) return children;
          if (kind === 1) return Object.fromEntries(children.map((child, i) => [`k${i}`, child]));
          if (kind === 2) return new Map(children.map((child, i) => [i, child]));
          return new Set(children);
        };
        for (let i = 0; i < 300; i++) {
          const [culprit, reason] = culprits[i % culprits.length] as [unknown, string];
          // Replace one random slot of an array or object in the value with the culprit.
          const value = [build(4), build(4)];
          const containers: (unknown[] | Record<string, unknown>)[] = [];
          const pending: unknown[] = [value];
          while (pending.length > 0) {
            const node = pending.pop();
            if (Array.isArray(node) || (typeof node === 'object' && node !== null && Object.getPrototypeOf(node) === Object.prototype)) {
              containers.push(node as unknown[] | Record<string, unknown>);
              pending.push(...Object.values(node as object));
            } else if (node instanceof Map) pending.push(...node.values());
            else if (node instanceof Set) pending.push(...node);
          }
          const target = containers[Math.floor(random() * containers.length)] as Record<string, unknown>;
          const keys = Object.keys(target);
          target[keys.length === 0 ? 'x' : (keys[Math.floor(random() * keys.length)] as string)] = culprit;
          const problem = checkV8(value);
          expect(problem?.reason, `value ${i}`).to.include(reason);
          expect(resolvePath(value, problem?.path ?? ''), `value ${i}: ${problem?.path}`).to.equal(culprit);
        }
      });
    });

    it('brings Buffers back as Buffers and typed arrays as their own type', function () {
      const back = v8Codec.decode(v8Codec.encode({ b: Buffer.from('x'), u: new Uint16Array(2) })) as { b: unknown; u: unknown };
      expect(Buffer.isBuffer(back.b)).to.equal(true);
      expect(back.u).to.be.instanceOf(Uint16Array);
    });

    it('gives every decoded typed array, DataView and Buffer its own memory (Node aliases the input)', function () {
      const input = Buffer.from(v8Codec.encode([Buffer.from('abc'), Float64Array.of(1.5), new DataView(Uint8Array.of(7).buffer)]));
      const decoded = v8Codec.decode(input) as ArrayBufferView[];
      for (const view of decoded) {
        expect(view.buffer).to.not.equal(input.buffer);
        expect(view.byteOffset).to.equal(0);
        expect(view.buffer.byteLength).to.equal(view.byteLength);
      }
      input.fill(0);
      expect((decoded[0] as Buffer).toString()).to.equal('abc');
      expect(Buffer.isBuffer(decoded[0])).to.equal(true);
      expect((decoded[2] as DataView).getUint8(0)).to.equal(7);
      // What plain v8.deserialize does, and why the codec does not use it:
      const aliased = v8.deserialize(v8.serialize(Buffer.from('abc'))) as Buffer;
      expect(aliased.buffer.byteLength).to.be.greaterThan(aliased.byteLength);
    });

    it('accepts random values built from accepted types, and reads them back faithfully', function () {
      const random = seededRandom(7);
      const leaf = (): unknown => {
        const pick = Math.floor(random() * 8);
        return [1.5, 'text', null, undefined, 3n, new Date(1000), Uint8Array.of(1), true][pick];
      };
      const build = (depth: number): unknown => {
        if (depth === 0 || random() < 0.3) return leaf();
        const kind = Math.floor(random() * 4);
        const children = Array.from({ length: Math.floor(random() * 4) }, () => build(depth - 1));
        if (kind === 0) return children;
        if (kind === 1) return Object.fromEntries(children.map((child, i) => [`k${i}`, child]));
        if (kind === 2) return new Map(children.map((child, i) => [i, child]));
        return new Set(children);
      };
      for (let i = 0; i < 200; i++) {
        const value = build(5);
        expect(checkV8(value)).to.equal(undefined);
        expectFaithful(value, v8Codec.decode(v8Codec.encode(value)), `random value ${i}`);
      }
    });
  });

  describe('jsonCodec', function () {
    it('is named json', function () {
      expect(jsonCodec.name).to.equal('json');
      expect(jsonCodec.check).to.equal(checkJson);
    });

    describe('#check()', function () {
      for (const [label, make] of JSON_ACCEPTED) {
        it(`accepts ${label}, and encode + decode gives it back exactly`, function () {
          const value = make();
          expect(checkJson(value)).to.equal(undefined);
          expect(jsonCodec.decode(jsonCodec.encode([value]))).to.deep.equal([value]);
        });
      }

      for (const [label, make, path, reason] of JSON_REJECTED) {
        it(`rejects ${label} at path ${JSON.stringify(path)}`, function () {
          const value = make();
          const problem = checkJson(value);
          expect(problem?.reason).to.include(reason);
          expect(problem?.path.endsWith(path), `${problem?.path} ends with ${path}`).to.equal(true);
        });
      }

      it('rejects only what JSON refuses or would bring back changed', function () {
        for (const [label, make] of JSON_REJECTED) {
          if (label.startsWith('nesting')) continue; // a safety margin, not a JSON failure
          const value = make();
          let changed: boolean;
          try {
            expectFaithful(value, jsonRoundTrip(value), label);
            changed = false;
          } catch {
            changed = true;
          }
          expect(changed, label).to.equal(true);
        }
      });
    });

    describe('#encode()', function () {
      it('refuses a value JSON would mangle instead of mangling it', function () {
        expect(() => jsonCodec.encode([{ when: new Date(0) }])).to.throw(TypeError, /\[0\]\.when.*Date/);
        expect(() => jsonCodec.encode({ a: undefined })).to.throw(TypeError, /undefined/);
      });

      it('writes UTF-8 JSON text', function () {
        expect(Buffer.from(jsonCodec.encode({ café: '🙂' })).toString('utf8')).to.equal('{"café":"🙂"}');
      });
    });
  });

  describe('builtinCodec()', function () {
    it('finds the built-in codecs by name, and nothing else', function () {
      expect(builtinCodec('v8')).to.equal(v8Codec);
      expect(builtinCodec('json')).to.equal(jsonCodec);
      expect(builtinCodec('msgpack')).to.equal(undefined);
      expect(builtinCodec('__proto__')).to.equal(undefined);
      expect(builtinCodec('toString')).to.equal(undefined);
    });
  });

  describe('resolveCodec()', function () {
    it('resolves names to built-in codecs', function () {
      expect(resolveCodec('v8')).to.equal(v8Codec);
      expect(resolveCodec('json')).to.equal(jsonCodec);
    });

    it('returns a well-formed custom codec as is', function () {
      const custom: Codec = { name: 'raw', encode: (v) => v as Uint8Array, decode: (b) => b };
      expect(resolveCodec(custom)).to.equal(custom);
      expect(resolveCodec(v8Codec)).to.equal(v8Codec);
    });

    it('throws InvalidOptionError naming the option for anything else', function () {
      const attempts: [unknown, string][] = [
        ['yaml', 'codec'],
        [null, 'codec'],
        [42, 'codec'],
        [{ encode: () => new Uint8Array(), decode: () => 1 }, 'codec.name'],
        [{ name: 'x', decode: () => 1 }, 'codec.encode'],
        [{ name: 'x', encode: () => new Uint8Array() }, 'codec.decode'],
        [{ name: 'x', encode: () => new Uint8Array(), decode: () => 1, check: 'yes' }, 'codec.check'],
        [{ name: 'json', encode: () => new Uint8Array(), decode: () => 1 }, 'codec.name'],
      ];
      for (const [input, option] of attempts) {
        expect(() => resolveCodec(input as never), JSON.stringify(input)).to.throw(InvalidOptionError).with.property('option', option);
      }
    });
  });
});
