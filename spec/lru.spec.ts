import { expect } from 'chai';
import { LruMap } from '../lib/lru.js';

/** A map holding `keys` (value of each: its index), set in that order. */
function filled<K>(keys: readonly K[]): LruMap<K, number> {
  const lru = new LruMap<K, number>();
  keys.forEach((key, i) => lru.set(key, i));
  return lru;
}

describe('LruMap', () => {
  describe('order of use', () => {
    it('keeps entries least recently used first; use() and set() move an entry to the end', () => {
      const lru = filled(['a', 'b', 'c', 'd']);
      expect(lru.use('b')).to.equal(1);
      lru.set('a', 10);
      expect([...lru.keys()]).to.deep.equal(['c', 'd', 'b', 'a']);
      expect([...lru.values()]).to.deep.equal([2, 3, 1, 10]);
      expect([...lru]).to.deep.equal([['c', 2], ['d', 3], ['b', 1], ['a', 10]]);
    });

    it('does not count get() or has() as a use', () => {
      const lru = filled(['a', 'b']);
      expect(lru.get('a')).to.equal(0);
      expect(lru.has('a')).to.equal(true);
      expect([...lru.keys()]).to.deep.equal(['a', 'b']);
      expect(lru.use('zz')).to.equal(undefined);
      expect(lru.get('zz')).to.equal(undefined);
    });

    it('reuses the slots of deleted entries and grows past its first arrays', () => {
      const lru = new LruMap<number, number>();
      for (let i = 0; i < 1_000; i++) lru.set(i, i);
      for (let i = 0; i < 1_000; i += 2) expect(lru.delete(i)).to.equal(true);
      expect(lru.delete(0)).to.equal(false);
      for (let i = 1_000; i < 1_500; i++) lru.set(i, i);
      expect(lru.size).to.equal(1_000);
      const expected = [...Array.from({ length: 500 }, (_, i) => 2 * i + 1), ...Array.from({ length: 500 }, (_, i) => 1_000 + i)];
      expect([...lru.keys()]).to.deep.equal(expected);
      const visited: [number, number][] = [];
      lru.forEach((value, key) => visited.push([key, value]));
      expect(visited.map(([key]) => key)).to.deep.equal(expected);
      expect(visited.every(([key, value]) => key === value)).to.equal(true);
    });

    it('treats keys as a Map does: NaN is one key, -0 is 0, undefined and null are keys', () => {
      const lru = new LruMap<unknown, string>();
      lru.set(NaN, 'nan').set(-0, 'zero').set(undefined, 'u').set(null, 'n');
      expect(lru.get(NaN)).to.equal('nan');
      expect(lru.get(0)).to.equal('zero');
      expect(lru.has(undefined)).to.equal(true);
      expect(Object.is([...lru.keys()][1], 0)).to.equal(true);
      expect([...lru.keys()]).to.deep.equal([...new Map<unknown, string>([[NaN, ''], [-0, ''], [undefined, ''], [null, '']]).keys()]);
      lru.use(NaN);
      expect([...lru.values()]).to.deep.equal(['zero', 'u', 'n', 'nan']);
    });
  });

  describe('#setWithin()', () => {
    it('evicts the least recently used entry for a new key at the bound, and reports it', () => {
      const lru = filled(['a', 'b', 'c']);
      lru.use('a');
      expect(lru.setWithin('d', 3, 3)).to.equal(true);
      expect([lru.evictedKey, lru.evictedValue]).to.deep.equal(['b', 1]);
      lru.forgetEvicted();
      expect(lru.evictedKey).to.equal(undefined);
      expect([...lru]).to.deep.equal([['c', 2], ['a', 0], ['d', 3]]);
    });

    it('does not evict below the bound or for a key it holds', () => {
      const lru = filled(['a', 'b']);
      expect(lru.setWithin('c', 2, 3)).to.equal(false);
      expect(lru.setWithin('a', 10, 3)).to.equal(false);
      expect([...lru]).to.deep.equal([['b', 1], ['c', 2], ['a', 10]]);
    });

    it('holds one entry at a bound of 1', () => {
      const lru = new LruMap<string, number>();
      expect(lru.setWithin('a', 1, 1)).to.equal(false);
      expect(lru.setWithin('b', 2, 1)).to.equal(true);
      expect(lru.evictedKey).to.equal('a');
      expect(lru.setWithin('b', 3, 1)).to.equal(false);
      expect([...lru]).to.deep.equal([['b', 3]]);
      expect(lru.size).to.equal(1);
    });
  });

  describe('iteration while the map changes', () => {
    it('visits each entry once when the loop uses them (a Map re-insert scheme would loop forever)', () => {
      const lru = filled(['a', 'b', 'c']);
      const seen: string[] = [];
      for (const key of lru.keys()) {
        seen.push(key);
        lru.use(key);
        lru.set(key, 0);
      }
      expect(seen).to.deep.equal(['a', 'b', 'c']);
    });

    it('skips entries deleted before they are reached and reads each value when reached', () => {
      const lru = filled(['a', 'b', 'c', 'd']);
      const seen: [string, number][] = [];
      for (const [key, value] of lru) {
        seen.push([key, value]);
        if (key === 'a') {
          lru.delete('c');
          lru.set('d', 40);
          lru.set('e', 4); // added during the walk: not visited
        }
      }
      expect(seen).to.deep.equal([['a', 0], ['b', 1], ['d', 40]]);
    });

    it('does not mistake a slot reused by another key for the entry it held', () => {
      const lru = filled(['a', 'b', 'c']);
      const seen: string[] = [];
      for (const key of lru.keys()) {
        seen.push(key);
        if (key === 'a') {
          lru.delete('b');
          lru.set('x', 9); // takes b's slot
        }
      }
      expect(seen).to.deep.equal(['a', 'c']);
    });

    it('ends after clear(), even when the map is filled again', () => {
      const lru = filled([undefined, 'b', 'c']);
      const iterator = lru.keys();
      expect(iterator.next().value).to.equal(undefined);
      lru.clear();
      lru.set(undefined, 1).set('b', 2).set('c', 3);
      expect(iterator.next()).to.deep.equal({ done: true, value: undefined });
      expect(lru.size).to.equal(3);
    });

    it('takes the snapshot when the iterator is created, not at its first next()', () => {
      const lru = filled(['a']);
      const iterator = lru.keys();
      lru.set('b', 1);
      expect([...iterator]).to.deep.equal(['a']);
    });
  });
});
