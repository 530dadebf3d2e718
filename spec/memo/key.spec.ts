import { seededRandom } from '../random.js';
import { expect } from 'chai';
import fc from 'fast-check';
import { argsKey, encodeArgs, hashArgs, MAX_PLAIN_ARGS_KEY, memoKey, memoKeyPrefix, MemoKeyError } from '../../lib/memo/key.js';
import { runs, SOAK } from '../fixtures/soak.js';

/** The encoding of a call with these arguments. */
function key(...args: unknown[]): string {
  return encodeArgs(args);
}

/** Asserts that every list of arguments gets its own encoding (and hash). */
function expectDistinct(...calls: unknown[][]): void {
  const seen = new Map<string, number>();
  calls.forEach((args, i) => {
    const text = encodeArgs(args);
    const earlier = seen.get(text);
    expect(earlier, `call #${i} encodes like call #${earlier}: ${text}`).to.equal(undefined);
    seen.set(text, i);
  });
  expect(new Set(calls.map((args) => hashArgs(args))).size).to.equal(calls.length);
}

/** The error `encodeArgs(args)` throws; fails the test if it throws none. */
function refusal(args: unknown[]): MemoKeyError {
  try {
    encodeArgs(args);
  } catch (error) {
    expect(error).to.be.instanceOf(MemoKeyError);
    return error as MemoKeyError;
  }
  return expect.fail(`accepted ${String(args)}`);
}

/** A chain `depth` levels deep: `wrap` applied `depth` times to `leaf`. */
function nest(depth: number, leaf: unknown, wrap: (inner: unknown) => unknown): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = wrap(value);
  return value;
}

class User {
  constructor(readonly id: number) {}
}

describe('memo keys (lib/memo/key.ts)', () => {
  describe('encodeArgs()', () => {
    describe('type tags', () => {
      it('gives every type its own encoding, even where the values print alike', () => {
        expectDistinct(
          [1],
          ['1'],
          [1n],
          [new Number(1)],
          [new String('1')],
          [Object(1n)],
          [true],
          ['true'],
          [new Boolean(true)],
          [null],
          ['null'],
          [undefined],
          ['undefined'],
          [],
          [[]],
          [{}],
          [new Map()],
          [new Set()],
          [[1]],
          [new Date(1)],
          [/1/],
          [Symbol.for('1')],
          [Object(Symbol.for('1'))],
        );
      });

      it('keeps null and undefined apart, and undefined apart from no argument', () => {
        expectDistinct([null], [undefined], [], [undefined, undefined], [null, undefined], [undefined, null]);
      });

      it('keeps -0 apart from 0 (Object.is semantics: a function may tell them apart)', () => {
        expectDistinct([0], [-0]);
        expect(key(-0)).to.equal(key(-1 * 0));
      });

      it('gives every NaN the same encoding, apart from the infinities', () => {
        expect(key(NaN)).to.equal(key(0 / 0));
        expect(key(NaN)).to.equal(key(Number('not a number')));
        expect(key(new Set([NaN]))).to.equal(key(new Set([0 / 0])));
        expectDistinct([NaN], [Infinity], [-Infinity], ['NaN']);
      });

      it('spells numbers canonically, whatever the literal', () => {
        expect(key(1e21)).to.equal(key(1000000000000000000000));
        expect(key(0.1 + 0.2)).to.not.equal(key(0.3));
        expect(key(5e-324)).to.equal(key(Number.MIN_VALUE));
        expectDistinct([1], [1.0000000000000002], [10], [0.1]);
      });

      it('encodes BigInts by value, apart from numbers', () => {
        expect(key(2n ** 100n)).to.equal(key(BigInt('1267650600228229401496703205376')));
        expectDistinct([0n], [-1n], [1n], [10n], [2n ** 64n], [2 ** 64]);
      });
    });

    describe('separation', () => {
      it('does not let one argument run into the next', () => {
        expectDistinct([1, 23], [12, 3], [123]);
        expectDistinct(['a,b'], ['a', 'b'], ['ab'], ['a', 'b', '']);
        expectDistinct(['ab', 'c'], ['a', 'bc']);
        expectDistinct([['a'], 'b'], [['a', 'b']], ['a', ['b']]);
        expectDistinct([{ a: 'b' }], [{ ab: '' }], ['a', 'b']);
      });

      it('is not fooled by strings that look like encodings', () => {
        const inner = encodeArgs(['a', 'b']);
        expectDistinct(['a', 'b'], [inner], [inner.slice(3)], ['s1:as1:b'], ['a', 's1:b']);
        expectDistinct([{ a: 1 }], ['o1:s1:ad1;'], [new Map([['a', 1]])]);
      });
    });

    describe('plain objects', () => {
      it('ignores key order, at every depth', () => {
        expect(key({ a: 1, b: 2 })).to.equal(key({ b: 2, a: 1 }));
        expect(key({ x: { a: 1, b: [{ c: 1, d: 2 }] } })).to.equal(key({ x: { b: [{ d: 2, c: 1 }], a: 1 } }));
      });

      it('keeps values, missing keys and undefined-valued keys apart', () => {
        expectDistinct([{ a: 1 }], [{ a: '1' }], [{ a: undefined }], [{}], [{ b: 1 }], [{ a: 1, b: undefined }]);
      });

      it('treats an object with a null prototype as the plain object with the same properties', () => {
        const bare = Object.assign(Object.create(null) as object, { b: 2, a: 1 });
        expect(key(bare)).to.equal(key({ a: 1, b: 2 }));
      });

      it('encodes an own "__proto__" key like any other', () => {
        const withProto = JSON.parse('{"__proto__": 1}') as object;
        expectDistinct([withProto], [{}], [{ ['__proto__ ']: 1 }]);
      });

      it('ignores non-enumerable properties (as structuredClone does)', () => {
        const hidden = Object.defineProperty({ a: 1 }, 'secret', { value: 2, enumerable: false });
        expect(key(hidden)).to.equal(key({ a: 1 }));
      });
    });

    describe('arrays', () => {
      it('keeps holes apart from undefined', () => {
        // eslint-disable-next-line no-sparse-arrays
        expectDistinct([[, 1]], [[undefined, 1]], [[1]], [[1, ,]], [[1, undefined]], [[, ,]], [[,]], [[]]);
      });

      it('encodes an array however it was built', () => {
        const built: unknown[] = [];
        built[3] = 'x';
        built[0] = 1;
        // eslint-disable-next-line no-sparse-arrays
        expect(key(built)).to.equal(key([1, , , 'x']));
        expect(key(new Array(3))).to.equal(key([, , ,])); // eslint-disable-line no-sparse-arrays
      });

      it('encodes a huge sparse array by the elements it has, quickly', () => {
        const a: unknown[] = [];
        a[1e9] = 1;
        a[5] = 'x';
        const b: unknown[] = [];
        b[5] = 'x';
        b[1e9] = 1;
        expect(key(a)).to.equal('k1;a1:a1000000001:_5;s1:x_999999994;d1;');
        expect(key(b)).to.equal(key(a));
        expect(key(a)).to.not.equal(key(Object.assign([], { 5: 'x', 1000000001: 1 })));
      });

      it('accepts holes in the argument list itself', () => {
        // eslint-disable-next-line no-sparse-arrays
        expect(encodeArgs([1, , 3])).to.not.equal(encodeArgs([1, undefined, 3]));
      });
    });

    describe('Maps and Sets', () => {
      it('ignores the insertion order of Map entries (they are sorted by their encoding)', () => {
        const a = new Map<unknown, unknown>([
          ['b', 1],
          [{ x: 1 }, [2]],
          [1, new Set([3, 1])],
        ]);
        const b = new Map<unknown, unknown>([
          [1, new Set([1, 3])],
          ['b', 1],
          [{ x: 1 }, [2]],
        ]);
        expect(key(a)).to.equal(key(b));
      });

      it('ignores the insertion order of Set members', () => {
        expect(key(new Set([1, 'a', { b: 2 }, [3]]))).to.equal(key(new Set([[3], { b: 2 }, 'a', 1])));
      });

      it('encodes Map keys by type and entries whole', () => {
        expectDistinct(
          [new Map([[1, 'a']])],
          [new Map([['1', 'a']])],
          [new Map([[1, 'b']])],
          [new Map([[[1], 'a']])],
          [new Map([['a', 1]])],
          [{ 1: 'a' }],
          [[[1, 'a']]],
          [new Set([1, 'a'])],
          [new Set([[1, 'a']])],
          [new Map<unknown, unknown>([[1, 'a'], ['b', 2]])],
          [new Map<unknown, unknown>([[1, 2], ['b', 'a']])],
        );
      });

      it('keeps members that encode alike (distinct objects in a Set)', () => {
        expectDistinct([new Set([{}])], [new Set([{}, {}])], [new Set([{}, {}, {}])]);
        expect(key(new Map([[{}, 1], [{}, 2]]))).to.equal(key(new Map([[{}, 2], [{}, 1]])));
      });
    });

    describe('Dates, RegExps and boxed primitives', () => {
      it('encodes Dates by time, and every invalid Date alike', () => {
        expect(key(new Date(86_400_000))).to.equal(key(new Date('1970-01-02T00:00:00Z')));
        expect(key(new Date('nope'))).to.equal(key(new Date(NaN)));
        expectDistinct([new Date(0)], [new Date(1)], [new Date(NaN)], [0], [new Date(-1)]);
      });

      it('encodes RegExps by source and flags, not lastIndex', () => {
        const used = /a/g;
        used.lastIndex = 3;
        expect(key(used)).to.equal(key(/a/g));
        expect(key(new RegExp('a', 'gi'))).to.equal(key(new RegExp('a', 'ig')));
        expectDistinct([/a/], [/a/g], [/a/i], [/b/], ['a'], ['/a/'], [new RegExp('a/')], [/\//]);
      });

      it('keeps boxed primitives apart from the primitives and each other', () => {
        expect(key(new String('ab'))).to.equal(key(Object('ab')));
        expectDistinct(
          [new Number(1)],
          [1],
          [new String('1')],
          [new Boolean(false)],
          [false],
          [Object(0n)],
          [0n],
          [new Number(-0)],
          [new Number(0)],
        );
      });
    });

    describe('binary values', () => {
      it('tags typed arrays, Buffers, DataViews and ArrayBuffers by their type', () => {
        expectDistinct(
          [new Uint8Array([1])],
          [new Int8Array([1])],
          [new Uint8ClampedArray([1])],
          [Buffer.from([1])],
          [new Uint8Array([1]).buffer],
          [new DataView(new Uint8Array([1]).buffer)],
          [[1]],
          [new Int16Array([1])],
          [new Uint8Array([1, 0])],
          [new Float64Array([1])],
          [new BigInt64Array([1n])],
          [new BigUint64Array([1n])],
        );
      });

      it('encodes the bytes of the view only, wherever its buffer starts', () => {
        const big = new Uint8Array([9, 1, 2, 3, 9]);
        expect(key(big.subarray(1, 4))).to.equal(key(new Uint8Array([1, 2, 3])));
        expect(key(Buffer.from(big.buffer, 1, 3))).to.equal(key(Buffer.from([1, 2, 3])));
        expect(key(new DataView(big.buffer, 1, 3))).to.equal(key(new DataView(new Uint8Array([1, 2, 3]).buffer)));
        expect(key(new Uint16Array(new Uint8Array([0, 0, 1, 0]).buffer, 2, 1))).to.equal(key(new Uint16Array([1])));
      });

      it('compares floats by their bytes: -0 and 0 differ, NaN is stable', () => {
        expectDistinct([new Float64Array([0])], [new Float64Array([-0])]);
        expect(key(new Float32Array([NaN]))).to.equal(key(new Float32Array([0 / 0])));
      });

      it('writes multi-byte elements little-endian', () => {
        expect(key(new Uint16Array([0x0102]))).to.equal('k1;a1:VUint16Array;2:0201');
      });
    });

    describe('strings', () => {
      it('keeps every code unit, including lone surrogates (which UTF-8 would turn into U+FFFD)', () => {
        expectDistinct(['\uD800'], ['\uFFFD'], ['\uDC00'], ['\uD800\uDC00'], ['?'], ['']);
        for (const text of [key('\uD800'), key({ '\uDC00': ['\uD83D'] }), key('a\uD83D\uDE00')]) {
          expect(text.isWellFormed(), text).to.equal(true);
        }
        expect(key('😀')).to.equal('k1;a1:s2:😀');
        expect(key('\uD800x')).to.equal('k1;a1:w2:d8000078');
      });
    });

    describe('symbols', () => {
      it('encodes registered symbols by their registry key', () => {
        expect(key(Symbol.for('app.role'))).to.equal(key(Symbol.for('app.role')));
        expectDistinct([Symbol.for('a')], [Symbol.for('b')], ['a']);
      });

      it('refuses other symbols: they are a different value in every process', () => {
        const error = refusal([1, { role: Symbol('admin') }]);
        expect(error.path).to.equal('args[1].role');
        expect(error.reason).to.match(/unregistered Symbol\(admin\)/);
        expect(refusal([Symbol.iterator]).path).to.equal('args[0]');
        expect(refusal([Object(Symbol('boxed'))]).reason).to.match(/^boxed unregistered/);
      });
    });

    describe('refused values', () => {
      it('refuses functions, naming where they are', () => {
        expect(refusal([() => 1]).path).to.equal('args[0]');
        const error = refusal(['x', { opts: { onDone: [1, () => 2] } }]);
        expect(error.path).to.equal('args[1].opts.onDone[1]');
        expect(error.reason).to.equal('function');
        expect(error.message).to.equal('Cannot build a memoization key from args[1].opts.onDone[1]: function');
      });

      it('refuses class instances with a typed error naming the class and the path', () => {
        const error = refusal([1, { user: new User(7) }]);
        expect(error).to.be.instanceOf(Error);
        expect(error.name).to.equal('MemoKeyError');
        expect(error.path).to.equal('args[1].user');
        expect(error.reason).to.match(/^class instance User /);
        expect(error.message).to.contain('args[1].user').and.contain('User').and.contain('key function');
      });

      it('refuses subclasses of built-ins and objects with a custom prototype', () => {
        class Registry extends Map<string, number> {}
        expect(refusal([new Registry()]).reason).to.match(/^class instance Registry/);
        expect(refusal([Object.create({ inherited: 1 }) as object]).reason).to.match(/^object with a custom prototype/);
        expect(refusal([new (class extends Array {})()]).path).to.equal('args[0]');
      });

      it('refuses values that are not data', () => {
        expect(refusal([Promise.resolve(1)]).reason).to.match(/^Promise/);
        expect(refusal([new WeakMap()]).reason).to.match(/^WeakMap/);
        expect(refusal([new WeakSet()]).reason).to.match(/^WeakSet/);
        expect(refusal([new SharedArrayBuffer(1)]).reason).to.match(/^SharedArrayBuffer/);
        expect(refusal([new Error('x')]).reason).to.match(/^class instance Error/);
        expect(refusal([new Proxy({}, {})]).reason).to.equal('Proxy');
        (function (this: unknown, ..._rest: unknown[]) {
          // eslint-disable-next-line prefer-rest-params
          expect(refusal([arguments]).reason).to.match(/^arguments object/);
        })(1, 2);
      });

      it('refuses an object with an enumerable symbol-keyed property (it would pass for one without)', () => {
        expect(refusal([{ a: 1, [Symbol.for('tag')]: 2 }]).reason).to.match(/symbol-keyed property Symbol\(tag\)/);
        const hidden = Object.defineProperty({ a: 1 }, Symbol.for('tag'), { value: 2, enumerable: false });
        expect(key(hidden)).to.equal(key({ a: 1 }));
      });

      it('refuses detached buffers', () => {
        const buffer = new ArrayBuffer(8);
        const view = new Uint8Array(buffer);
        structuredClone(buffer, { transfer: [buffer] });
        expect(refusal([buffer]).reason).to.equal('detached ArrayBuffer');
        expect(refusal([{ view }]).path).to.equal('args[0].view');
      });

      it('names Map keys, Map values and Set members by insertion index', () => {
        expect(refusal([new Map<unknown, unknown>([['a', 1], [() => 1, 2]])]).path).to.equal('args[0]<key #1>');
        expect(refusal([new Map<unknown, unknown>([['a', 1], ['b', { f: () => 1 }]])]).path).to.equal('args[0]<value #1>.f');
        expect(refusal([new Set<unknown>([1, [new User(1)]])]).path).to.equal('args[0]<member #1>[0]');
      });

      it('reports a getter that throws, with the error as cause', () => {
        const boom = new Error('boom');
        const error = refusal([
          {
            get price(): number {
              throw boom;
            },
          },
        ]);
        expect(error.path).to.equal('args[0].price');
        expect(error.reason).to.equal('reading it threw: boom');
        expect(error.cause).to.equal(boom);
      });

      it('quotes property names that are not identifiers', () => {
        expect(refusal([{ 'two words': () => 1 }]).path).to.equal('args[0]["two words"]');
      });

      it('refuses an argument list that is not an array', () => {
        expect(() => encodeArgs('AAPL' as never)).to.throw(MemoKeyError, /args/);
      });
    });

    describe('cycles and shared references', () => {
      it('refuses a cycle, naming both ends', () => {
        const node: Record<string, unknown> = { name: 'loop' };
        node['self'] = node;
        const error = refusal([1, node]);
        expect(error.path).to.equal('args[1].self');
        expect(error.reason).to.equal('cycle (it is args[1] again)');
      });

      it('finds cycles through arrays, Maps, Sets and the argument list itself', () => {
        const list: unknown[] = [1];
        list.push({ back: list });
        expect(refusal([list]).path).to.equal('args[0][1].back');
        const map = new Map<string, unknown>();
        map.set('me', [map]);
        expect(refusal([map]).path).to.equal('args[0]<value #0>[0]');
        const set = new Set<unknown>();
        set.add(set);
        expect(refusal([set]).reason).to.equal('cycle (it is args[0] again)');
        const args: unknown[] = ['a'];
        args.push(args);
        expect(refusal(args).reason).to.equal('cycle (it is args again)');
      });

      it('finds a cycle deeper than the linear check', () => {
        const root: Record<string, unknown> = {};
        let node = root;
        for (let i = 0; i < 100; i++) {
          const child: Record<string, unknown> = {};
          node['n'] = child;
          node = child;
        }
        node['n'] = root;
        const error = refusal([root]);
        expect(error.reason).to.equal('cycle (it is args[0] again)');
        expect(error.path.endsWith('.n.n')).to.equal(true);
        expect(error.path.length).to.be.at.most(200);
      });

      it('encodes a shared (acyclic) reference as many times as it occurs', () => {
        const shared = { a: 1 };
        expect(key(shared, shared)).to.equal(key({ a: 1 }, { a: 1 }));
        expect(key([shared, [shared]])).to.equal(key([{ a: 1 }, [{ a: 1 }]]));
      });
    });

    describe('deep values', function () {
      // Seconds, not milliseconds, on a loaded machine: allow for it.
      this.timeout(20_000);
      const DEPTH = 100_000;

      it(`encodes arguments nested ${DEPTH} levels deep without overflowing the stack`, () => {
        const shapes: [string, (inner: unknown) => unknown][] = [
          ['objects', (inner) => ({ next: inner })],
          ['arrays', (inner) => [inner]],
          ['Maps', (inner) => new Map([['k', inner]])],
          ['Map keys', (inner) => new Map([[inner, 1]])],
          ['Sets', (inner) => new Set([inner])],
        ];
        for (const [label, wrap] of shapes) {
          const value = nest(DEPTH, 'leaf', wrap);
          const text = encodeArgs([value]);
          expect(text.length, label).to.be.greaterThan(DEPTH * 3);
          expect(text, label).to.contain('s4:leaf');
          expect(hashArgs([nest(DEPTH, 'leaf', wrap)]), label).to.equal(hashArgs([value]));
        }
      });

      it('names a culprit at the bottom of a deep value, keeping the end of the path', () => {
        const error = refusal([nest(DEPTH, () => 1, (inner) => ({ next: inner }))]);
        expect(error.path.startsWith('…')).to.equal(true);
        expect(error.path.endsWith('.next.next')).to.equal(true);
        expect(error.reason).to.equal('function');
      });
    });
  });

  describe('hashArgs()', () => {
    it('is the hex sha256 of the encoding', async () => {
      const { createHash } = await import('node:crypto');
      for (const args of [['AAPL'], [1, 'x', true], [{ a: new Map([[1, 2]]) }], ['\uD800']]) {
        expect(hashArgs(args)).to.equal(createHash('sha256').update(encodeArgs(args), 'utf8').digest('hex'));
      }
    });

    it('tells lone surrogates from U+FFFD (the encoding escapes them before UTF-8 could merge them)', () => {
      expect(hashArgs(['\uD800'])).to.not.equal(hashArgs(['\uFFFD']));
      expect(hashArgs(['\uD800'])).to.not.equal(hashArgs(['\uDBFF']));
    });
  });

  describe('memoKey()', () => {
    const identity = { cache: 'prices', name: 'fetchPrice', version: '3' };

    it('is the function identity, then the arguments: encoded when short, hashed when long', () => {
      expect(memoKey(identity, ['AAPL'])).to.equal('prices/fetchPrice@3#k1;a1:s4:AAPL');
      expect(memoKey(identity, ['AAPL']).startsWith(memoKeyPrefix(identity))).to.equal(true);
      const long = ['x'.repeat(100)];
      expect(memoKey(identity, long)).to.equal(`prices/fetchPrice@3#${hashArgs(long)}`);
    });

    it('switches from encoding to hash exactly past MAX_PLAIN_ARGS_KEY characters', () => {
      // 'k1;a1:s' + count + ':' + text: find the longest text that still fits.
      const fits = (n: number): string[] => ['y'.repeat(n)];
      let n = 0;
      while (encodeArgs(fits(n + 1)).length <= MAX_PLAIN_ARGS_KEY) n++;
      expect(argsKey(fits(n))).to.equal(encodeArgs(fits(n)));
      expect(argsKey(fits(n + 1))).to.equal(hashArgs(fits(n + 1)));
      // A hash never starts like an encoding, so the two kinds of key never collide.
      expect(argsKey(fits(n + 1)).startsWith('k1;')).to.equal(false);
    });

    it('keeps identities apart, whatever characters their parts hold', () => {
      const keys = [
        { cache: 'a/b', name: 'c', version: '1' },
        { cache: 'a', name: 'b/c', version: '1' },
        { cache: 'a', name: 'b@c', version: '1' },
        { cache: 'a', name: 'b', version: 'c@1' },
        { cache: 'a', name: 'b', version: 'c#1' },
        { cache: 'a', name: 'b#', version: '1' },
        { cache: 'a%2Fb', name: 'c', version: '1' },
        { cache: '', name: 'a/b', version: 'c@1' },
        { cache: 'a', name: 'b', version: '' },
      ].map((id) => memoKey(id, [1]));
      expect(new Set(keys).size).to.equal(keys.length);
    });

    it('changes with the version, the name, the cache and the arguments', () => {
      const base = memoKey(identity, ['AAPL']);
      expect(memoKey({ ...identity, version: '4' }, ['AAPL'])).to.not.equal(base);
      expect(memoKey({ ...identity, name: 'fetchQuote' }, ['AAPL'])).to.not.equal(base);
      expect(memoKey({ ...identity, cache: 'quotes' }, ['AAPL'])).to.not.equal(base);
      expect(memoKey(identity, ['MSFT'])).to.not.equal(base);
    });

    it('refuses an identity that is not well-formed strings', () => {
      expect(() => memoKey({ ...identity, version: 3 as never }, [])).to.throw(MemoKeyError, /identity\.version/);
      expect(() => memoKey({ ...identity, name: '\uD800' }, [])).to.throw(MemoKeyError, /identity\.name/);
    });
  });

  // Run counts are twenty times larger under `npm run test:soak`.
  describe('properties', function () {
    this.timeout(SOAK ? 600_000 : 20_000);
    it('injectivity: structurally different argument lists get different encodings (2 500 random pairs)', () => {
      fc.assert(
        fc.property(argsArb, argsArb, (a, b) => {
          expect(encodeArgs(a) === encodeArgs(b)).to.equal(structurallyEqual(a, b));
        }),
        { numRuns: runs(2_500, 20 * 2_500) },
      );
    });

    it('injectivity near the edges: lists from a small domain, often equal, often one detail apart (3 000 pairs)', () => {
      let equal = 0;
      let different = 0;
      fc.assert(
        fc.property(smallArgsArb, smallArgsArb, (a, b) => {
          const same = structurallyEqual(a, b);
          if (same) equal++;
          else different++;
          expect(encodeArgs(a) === encodeArgs(b), `${encodeArgs(a)} vs ${encodeArgs(b)}`).to.equal(same);
        }),
        { numRuns: runs(3_000, 20 * 3_000) },
      );
      // Both directions must actually have been exercised.
      expect(equal, 'equal pairs').to.be.greaterThan(100);
      expect(different, 'different pairs').to.be.greaterThan(100);
    });

    it('injectivity one detail apart: a copy with one leaf replaced (3 000 runs)', () => {
      let equal = 0;
      fc.assert(
        fc.property(smallArgsArb, fc.nat(), smallLeafArb, fc.integer(), (a, pick, make, seed) => {
          const b = shuffledCopy(replaceLeaf(a, { left: pick % Math.max(1, countLeaves(a)), leaf: make() }), seededRandom(seed));
          const same = structurallyEqual(a, b);
          if (same) equal++;
          const [x, y] = [encodeArgs(a), encodeArgs(b as unknown[])];
          expect(x === y, `${x} vs ${y}`).to.equal(same);
        }),
        { numRuns: runs(3_000, 20 * 3_000) },
      );
      expect(equal, 'equal pairs').to.be.greaterThan(30);
    });

    it('equal structure, equal encoding: copies with shuffled keys, entries, members and buffers (2 500 runs)', () => {
      fc.assert(
        fc.property(argsArb, fc.integer(), (args, seed) => {
          const copy = shuffledCopy(args, seededRandom(seed)) as unknown[];
          expect(structurallyEqual(args, copy), 'the copy is structurally equal').to.equal(true);
          expect(encodeArgs(copy)).to.equal(encodeArgs(args));
          expect(hashArgs(copy)).to.equal(hashArgs(args));
        }),
        { numRuns: runs(2_500, 20 * 2_500) },
      );
    });

    it('every encoding follows the documented grammar and is well-formed Unicode (2 500 runs)', () => {
      fc.assert(
        fc.property(argsArb, (args) => {
          const text = encodeArgs(args);
          expect(text.isWellFormed()).to.equal(true);
          expect(readEncoding(text)).to.equal(text.length);
        }),
        { numRuns: runs(2_500, 20 * 2_500) },
      );
    });

    it('accepts fast-check JSON values, in any key order', () => {
      fc.assert(
        fc.property(fc.array(fc.jsonValue(), { maxLength: 3 }), fc.integer(), (args, seed) => {
          expect(encodeArgs(shuffledCopy(args, seededRandom(seed)) as unknown[])).to.equal(encodeArgs(args));
        }),
        { numRuns: runs(2_000, 20 * 2_000) },
      );
    });
  });

  // THE KEY FORMAT PERSISTS ACROSS RESTARTS. Memoized results are stored under memoKey(),
  // so changing how any value encodes retires every result stored under the old keys: they
  // are never hit again (and linger until cleared). Do not update these literals to make a
  // change pass: bump the format marker ('k1;') and say so in the changelog.
  describe('format stability (pinned encodings)', () => {
    const PINNED: [string, unknown[], string][] = [
      ['a ticker', ['AAPL'], 'k1;a1:s4:AAPL'],
      [
        'primitives',
        [1, 'x', true, false, null, undefined, -0, NaN, -Infinity, 12n],
        'k1;a10:d1;s1:xtfnud-0;dNaN;d-Infinity;i12;',
      ],
      ['numbers', [0.1, 1e21, -5e-7, 2 ** 53], 'k1;a4:d0.1;d1e+21;d-5e-7;d9007199254740992;'],
      // eslint-disable-next-line no-sparse-arrays
      ['an object and holes', [{ b: [1, , 3], a: { '': 'é' } }], 'k1;a1:o2:s1:ao1:s0:s1:és1:ba3:d1;_1;d3;'],
      [
        'Map and Set',
        [new Map<unknown, unknown>([['z', 1], [2, new Set(['b', 'a'])]])],
        'k1;a1:m2:d2;e2:s1:as1:bs1:zd1;',
      ],
      [
        'Date, RegExp, boxed',
        [new Date(Date.UTC(2024, 0, 1)), new Date(NaN), /a+b/giu, new Number(2), new String('s')],
        'k1;a5:D1704067200000;DNaN;Rs3:a+bs3:giuXd2;Xs1:s',
      ],
      [
        'binary',
        [
          new Uint8Array([0, 255]),
          Buffer.from('hi'),
          new Int32Array([-2]),
          new Uint8Array([7]).buffer,
          new DataView(new ArrayBuffer(1)),
        ],
        'k1;a5:VUint8Array;2:00ffVBuffer;2:6869VInt32Array;4:feffffffB1:07VDataView;1:00',
      ],
      ['symbol, lone surrogate, no arguments', [Symbol.for('k'), '\uDC00x'], 'k1;a2:ys1:kw2:dc000078'],
      ['no arguments', [], 'k1;a0:'],
    ];

    for (const [label, args, expected] of PINNED) {
      it(`encodes ${label} as pinned`, () => {
        expect(encodeArgs(args)).to.equal(expected);
      });
    }

    // Checked with an independent tool: printf 'k1;a1:s4:AAPL' | sha256sum
    const HASH_AAPL = 'a0083d39f594af3104d660819d4b7de386204a7a28d10f2132fc9e184291fd85';
    const HASH_OBJECT = '251c4ca381e96f0639d82c47c5d7e7f34656a8014267333b501a1d6ae913179b';

    it('hashes as pinned', () => {
      expect(hashArgs(['AAPL'])).to.equal(HASH_AAPL);
      const identity = { cache: 'prices', name: 'fetchPrice', version: '3' };
      // Short arguments are keyed by their encoding, long ones by its hash.
      expect(memoKey(identity, ['AAPL'])).to.equal('prices/fetchPrice@3#k1;a1:s4:AAPL');
      expect(memoKey(identity, [{ user: { id: 1, tags: new Set(['a']) } }])).to.equal(
        'prices/fetchPrice@3#k1;a1:o1:s4:usero2:s2:idd1;s4:tagse1:s1:a',
      );
      expect(memoKey(identity, ['A'.repeat(80)])).to.equal(`prices/fetchPrice@3#${hashArgs(['A'.repeat(80)])}`);
      expect(hashArgs([{ user: { id: 1, tags: new Set(['a']) } }])).to.equal(HASH_OBJECT);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Arbitraries: argument lists made only of supported values.

/** Strings rich in what could confuse an encoding: separators, tags, digits, surrogates. */
const stringArb = fc.string({
  unit: fc.oneof(
    fc.constantFrom('a', 'b', ':', ';', '_', 's', 'd', '1', '0', '\uD800', '\uDC00', '\uFFFD', 'é'),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 6,
});

const registeredSymbolArb = stringArb.map((description) => Symbol.for(description));

const primitiveArb = fc.oneof(
  fc.constantFrom(undefined, null, true, false, 0, -0, NaN, Infinity, -Infinity),
  fc.double(),
  fc.integer({ min: -3, max: 3 }),
  fc.bigInt(),
  stringArb,
  registeredSymbolArb,
);

const bytesArb = fc.uint8Array({ maxLength: 4 });

const leafObjectArb = fc.oneof(
  fc.date({ noInvalidDate: false }),
  fc.tuple(fc.constantFrom('a', 'a|b', '\\d+', '', '/', 's1:'), fc.subarray(['g', 'i', 'm', 's', 'u', 'y'])).map(
    ([source, flags]) => new RegExp(source, flags.join('')),
  ),
  fc.oneof(fc.double(), stringArb, fc.boolean(), fc.bigInt(), registeredSymbolArb).map((value) => Object(value) as object),
  bytesArb,
  fc.int8Array({ maxLength: 3 }),
  fc.uint8ClampedArray({ maxLength: 3 }),
  fc.int16Array({ maxLength: 3 }),
  fc.uint16Array({ maxLength: 3 }),
  fc.int32Array({ maxLength: 3 }),
  fc.uint32Array({ maxLength: 3 }),
  fc.float32Array({ maxLength: 3 }),
  fc.float64Array({ maxLength: 3 }),
  fc.bigInt64Array({ maxLength: 2 }),
  fc.bigUint64Array({ maxLength: 2 }),
  bytesArb.map((bytes) => Buffer.from(bytes)),
  bytesArb.map((bytes) => bytes.slice().buffer),
  bytesArb.map((bytes) => new DataView(bytes.slice().buffer)),
);

const { value: valueArb } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    primitiveArb,
    leafObjectArb,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.sparseArray(tie('value'), { maxLength: 5 }),
    fc.dictionary(stringArb, tie('value'), { maxKeys: 4 }),
    fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 3 }).map((entries) => new Map(entries)),
    fc.array(tie('value'), { maxLength: 3 }).map((members) => new Set(members)),
    fc.jsonValue({ maxDepth: 2 }),
  ),
}));

const argsArb = fc.array(valueArb, { maxLength: 4 });

/** A small domain, so that two independent draws are often equal or one detail apart. */
const smallLeafArb = fc.constantFrom<() => unknown>(
  () => 0,
  () => -0,
  () => 1,
  () => '1',
  () => '',
  () => null,
  () => undefined,
  () => NaN,
  () => 1n,
  () => true,
  () => new Date(0),
  () => new Date(NaN),
  () => new Uint8Array([1]),
  () => new Int8Array([1]),
  () => Buffer.from([1]),
  () => new Uint8ClampedArray([1]),
  () => new Uint8Array([1]).buffer,
  () => new DataView(new Uint8Array([1]).buffer),
  () => new Number(1),
  () => new String('1'),
  () => /1/,
  () => Symbol.for('1'),
);

const { small: smallValueArb } = fc.letrec((tie) => ({
  small: fc.oneof(
    { depthSize: 'small' },
    smallLeafArb.map((make) => make()),
    fc.array(tie('small'), { maxLength: 2 }),
    fc.sparseArray(tie('small'), { maxLength: 2 }),
    fc.dictionary(fc.constantFrom('a', 'b'), tie('small'), { maxKeys: 2 }),
    fc.array(fc.tuple(tie('small'), tie('small')), { maxLength: 2 }).map((entries) => new Map(entries)),
    fc.array(tie('small'), { maxLength: 2 }).map((members) => new Set(members)),
  ),
}));

const smallArgsArb = fc.array(smallValueArb, { maxLength: 2 });

// ---------------------------------------------------------------------------------------
// The reference: structural equality as documented in lib/memo/key.ts, written
// independently of the encoding. (Recursive: generated values are shallow.)

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  const proto = Object.getPrototypeOf(value) as { constructor: { name: string } } | null;
  return proto === null || proto === Object.prototype ? 'object' : proto.constructor.name;
}

function sameBytes(a: ArrayBufferView | ArrayBuffer, b: ArrayBufferView | ArrayBuffer): boolean {
  const x = ArrayBuffer.isView(a) ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : Buffer.from(a);
  const y = ArrayBuffer.isView(b) ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : Buffer.from(b);
  return x.equals(y);
}

/** Whether every item of `a` can be paired with its own structurally equal item of `b`. */
function sameMultiset<T>(a: readonly T[], b: readonly T[], equal: (x: T, y: T) => boolean): boolean {
  if (a.length !== b.length) return false;
  const unused = [...b];
  // Greedy pairing is exact: structural equality is an equivalence relation.
  return a.every((x) => {
    const i = unused.findIndex((y) => equal(x, y));
    if (i < 0) return false;
    unused.splice(i, 1);
    return true;
  });
}

function structurallyEqual(a: unknown, b: unknown): boolean {
  const kind = kindOf(a);
  if (kind !== kindOf(b)) return false;
  if (typeof a !== 'object' || a === null) return Object.is(a, b);
  switch (kind) {
    case 'object': {
      const x = a as Record<string, unknown>;
      const y = b as Record<string, unknown>;
      const keys = Object.keys(x);
      return (
        keys.length === Object.keys(y).length &&
        keys.every((k) => Object.prototype.hasOwnProperty.call(y, k) && structurallyEqual(x[k], y[k]))
      );
    }
    case 'Array': {
      const x = a as unknown[];
      const y = b as unknown[];
      if (x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) {
        if (i in x !== i in y || !structurallyEqual(x[i], y[i])) return false;
      }
      return true;
    }
    case 'Map':
      return sameMultiset([...(a as Map<unknown, unknown>)], [...(b as Map<unknown, unknown>)], (x, y) =>
        structurallyEqual(x[0], y[0]) && structurallyEqual(x[1], y[1]),
      );
    case 'Set':
      return sameMultiset([...(a as Set<unknown>)], [...(b as Set<unknown>)], structurallyEqual);
    case 'Date':
      return Object.is((a as Date).getTime(), (b as Date).getTime());
    case 'RegExp':
      return (a as RegExp).source === (b as RegExp).source && (a as RegExp).flags === (b as RegExp).flags;
    case 'Number':
    case 'String':
    case 'Boolean':
    case 'BigInt':
    case 'Symbol':
      return Object.is((a as { valueOf(): unknown }).valueOf(), (b as { valueOf(): unknown }).valueOf());
    default:
      // ArrayBuffer, DataView, Buffer and typed arrays: same type (checked above), same bytes.
      return sameBytes(a as ArrayBuffer, b as ArrayBuffer);
  }
}

function isContainer(value: unknown): value is object {
  const kind = kindOf(value);
  return kind === 'object' || kind === 'Array' || kind === 'Map' || kind === 'Set';
}

/** The leaves (values that are not plain objects, arrays, Maps or Sets) of a value. */
function countLeaves(value: unknown): number {
  if (!isContainer(value)) return 1;
  const children =
    value instanceof Map ? [...value].flat() : value instanceof Set ? [...value] : Object.values(value);
  return children.reduce((sum: number, child) => sum + countLeaves(child), 0);
}

/** A copy of `value` with its leaf number `state.left` (in visiting order) replaced by `state.leaf`. */
function replaceLeaf(value: unknown, state: { left: number; leaf: unknown }): unknown {
  if (!isContainer(value)) return state.left-- === 0 ? state.leaf : value;
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [replaceLeaf(k, state), replaceLeaf(v, state)]));
  if (value instanceof Set) return new Set([...value].map((m) => replaceLeaf(m, state)));
  const copy = (Array.isArray(value) ? new Array<unknown>(value.length) : {}) as Record<string, unknown>;
  for (const k of Object.keys(value)) copy[k] = replaceLeaf((value as Record<string, unknown>)[k], state);
  return copy;
}


function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

/**
 * A structurally equal copy made as differently as possible: new objects, keys inserted in
 * another order (some with a null prototype), Map entries and Set members in another order,
 * holes kept, RegExps with another lastIndex, views placed at an offset in a larger buffer.
 */
function shuffledCopy(value: unknown, random: () => number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  switch (kindOf(value)) {
    case 'object': {
      const copy = (random() < 0.5 ? Object.create(null) : {}) as Record<string, unknown>;
      for (const k of shuffled(Object.keys(value), random)) {
        // defineProperty: an own '__proto__' key must stay an own property.
        Object.defineProperty(copy, k, {
          value: shuffledCopy((value as Record<string, unknown>)[k], random),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return copy;
    }
    case 'Array': {
      const array = value as unknown[];
      const copy = new Array<unknown>(array.length);
      const present = Object.keys(array).map(Number);
      for (const i of shuffled(present, random)) copy[i] = shuffledCopy(array[i], random);
      return copy;
    }
    case 'Map':
      return new Map(
        shuffled([...(value as Map<unknown, unknown>)], random).map(([k, v]) => [shuffledCopy(k, random), shuffledCopy(v, random)]),
      );
    case 'Set':
      return new Set(shuffled([...(value as Set<unknown>)], random).map((m) => shuffledCopy(m, random)));
    case 'Date':
      return new Date((value as Date).getTime());
    case 'RegExp': {
      const copy = new RegExp((value as RegExp).source, (value as RegExp).flags);
      copy.lastIndex = Math.floor(random() * 5);
      return copy;
    }
    case 'Number':
    case 'String':
    case 'Boolean':
    case 'BigInt':
    case 'Symbol':
      return Object((value as { valueOf(): unknown }).valueOf()) as object;
    case 'ArrayBuffer':
      return (value as ArrayBuffer).slice(0);
    default: {
      type ViewClass = new (buffer: ArrayBuffer, offset: number, length: number) => unknown;
      const view = value as ArrayBufferView & { constructor: ViewClass };
      const size = 'BYTES_PER_ELEMENT' in view ? (view.BYTES_PER_ELEMENT as number) : 1;
      const offset = size * Math.floor(random() * 3);
      const larger = new Uint8Array(offset + view.byteLength + size);
      larger.fill(0xa5);
      larger.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength), offset);
      if (Buffer.isBuffer(view)) return Buffer.from(larger.buffer, offset, view.byteLength);
      return new view.constructor(larger.buffer, offset, view.byteLength / size);
    }
  }
}

// ---------------------------------------------------------------------------------------
// A recognizer of the grammar in lib/memo/key.ts: checks an encoding token by token,
// including the canonical-form rules (sorted keys and entries, maximal hole runs).

const NUMBER = /^(NaN|-?Infinity|-0|-?\d+(\.\d+)?(e[+-]\d+)?|-?0?\.\d+(e[+-]\d+)?)$/;
const VIEW_NAMES = new Set([
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
  'DataView',
  'Buffer',
]);

class Reader {
  pos = 0;
  constructor(readonly text: string) {}

  fail(what: string): never {
    throw new Error(`${what} at ${this.pos} in ${JSON.stringify(this.text)}`);
  }

  take(length: number): string {
    if (this.pos + length > this.text.length) this.fail('truncated');
    const part = this.text.slice(this.pos, this.pos + length);
    this.pos += length;
    return part;
  }

  until(end: string): string {
    const at = this.text.indexOf(end, this.pos);
    if (at < 0) this.fail(`no ${end}`);
    const part = this.text.slice(this.pos, at);
    this.pos = at + 1;
    return part;
  }

  count(end: string): number {
    const digits = this.until(end);
    if (!/^(0|[1-9]\d*)$/.test(digits)) this.fail(`bad count ${digits}`);
    return Number(digits);
  }

  hex(length: number): void {
    if (!/^[0-9a-f]*$/.test(this.take(length))) this.fail('bad hex');
  }

  /** Reads a `string` production; returns the string it stands for. */
  string(): string {
    const tag = this.take(1);
    const length = this.count(':');
    if (tag === 's') return this.take(length);
    if (tag !== 'w') this.fail(`bad string tag ${tag}`);
    const hex = this.take(length * 4);
    if (!/^[0-9a-f]*$/.test(hex)) this.fail('bad hex');
    return String.fromCharCode(...Array.from({ length }, (_, i) => parseInt(hex.slice(i * 4, i * 4 + 4), 16)));
  }

  value(): void {
    const tag = this.text[this.pos] ?? this.fail('truncated');
    if (tag === 's' || tag === 'w') {
      this.string();
      return;
    }
    this.pos++;
    switch (tag) {
      case 'u':
      case 'n':
      case 't':
      case 'f':
        return;
      case 'd':
      case 'D': {
        const text = this.until(';');
        if (!NUMBER.test(text) || (text !== '-0' && `${Number(text)}` !== text)) this.fail(`bad number ${text}`);
        return;
      }
      case 'i':
        if (!/^(0|-?[1-9]\d*)$/.test(this.until(';'))) this.fail('bad bigint');
        return;
      case 'y':
        this.string();
        return;
      case 'R':
        this.string();
        this.string();
        return;
      case 'X': {
        const inner = this.text[this.pos] ?? '';
        if (!'dstfiyw'.includes(inner)) this.fail(`bad boxed tag ${inner}`);
        this.value();
        return;
      }
      case 'B':
        this.hex(this.count(':') * 2);
        return;
      case 'V': {
        const name = this.until(';');
        if (!VIEW_NAMES.has(name)) this.fail(`bad view type ${name}`);
        this.hex(this.count(':') * 2);
        return;
      }
      case 'a': {
        const length = this.count(':');
        let covered = 0;
        let afterHoles = false;
        while (covered < length) {
          if (this.text[this.pos] === '_') {
            if (afterHoles) this.fail('two hole runs in a row');
            this.pos++;
            const holes = this.count(';');
            if (holes === 0) this.fail('empty hole run');
            covered += holes;
            afterHoles = true;
          } else {
            this.value();
            covered++;
            afterHoles = false;
          }
        }
        if (covered !== length) this.fail('holes past the end');
        return;
      }
      case 'o': {
        let previous: string | undefined;
        for (let n = this.count(':'); n > 0; n--) {
          const k = this.string();
          if (previous !== undefined && !(previous < k)) this.fail('keys not strictly ascending');
          previous = k;
          this.value();
        }
        return;
      }
      case 'm':
      case 'e': {
        let previous: string | undefined;
        for (let n = this.count(':'); n > 0; n--) {
          const start = this.pos;
          this.value();
          if (tag === 'm') this.value();
          const piece = this.text.slice(start, this.pos);
          if (previous !== undefined && previous > piece) this.fail('entries not ascending');
          previous = piece;
        }
        return;
      }
      default:
        this.fail(`bad tag ${tag}`);
    }
  }
}

/** Reads a whole encoding; returns where it ended (its length, when it is valid). */
function readEncoding(text: string): number {
  const reader = new Reader(text);
  if (reader.take(3) !== 'k1;') reader.fail('no format marker');
  if (text[reader.pos] !== 'a') reader.fail('the arguments are not an array');
  reader.value();
  return reader.pos;
}
