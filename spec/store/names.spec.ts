import { expect } from 'chai';
import { InvalidNameError } from '../../lib/errors.js';
import { fromFileName, isHashedFileName, MAX_STEM_LENGTH, toFileName } from '../../lib/store/names.js';
import { HOSTILE_NAMES, seededRandom } from './conformance.js';

/** Random names over an alphabet rich in troublemakers. */
function randomNames(count: number, seed: number): string[] {
  const alphabet = ['a', 'z', 'A', 'Z', '0', '9', '_', '-', '.', '/', '\\', ':', '%', '~', ' ', '\u0000', 'é', 'e\u0301', '日', '🙂', 'con', 'CON'];
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => {
    const length = 1 + Math.floor(random() * (random() < 0.05 ? 120 : 8));
    let name = '';
    for (let i = 0; i < length; i++) name += alphabet[Math.floor(random() * alphabet.length)] as string;
    return name;
  });
}

describe('names', function () {
  describe('toFileName()', function () {
    it('keeps lower-case letters, digits, underscore and hyphen as they are', function () {
      expect(toFileName('users_2024-v1')).to.equal('users_2024-v1');
    });

    it('percent-encodes every other UTF-8 byte, upper-case hex', function () {
      expect(toFileName('Users')).to.equal('%55sers');
      expect(toFileName('../x')).to.equal('%2E%2E%2Fx');
      expect(toFileName('a\\b')).to.equal('a%5Cb');
      expect(toFileName('a b\u0000')).to.equal('a%20b%00');
      expect(toFileName('%')).to.equal('%25');
      expect(toFileName('é')).to.equal('%C3%A9');
    });

    it('encodes the first character of names Windows reserves', function () {
      expect(toFileName('con')).to.equal('%63on');
      expect(toFileName('nul')).to.equal('%6Eul');
      expect(toFileName('com1')).to.equal('%63om1');
      expect(toFileName('lpt9')).to.equal('%6Cpt9');
      expect(toFileName('console')).to.equal('console');
    });

    it('never produces a separator, a dot, a reserved name, or a stem over the limit', function () {
      for (const name of [...HOSTILE_NAMES, ...randomNames(2000, 1)]) {
        const stem = toFileName(name);
        expect(stem, JSON.stringify(name)).to.match(/^[a-z0-9_%A-F~-]+$/);
        expect(stem.length).to.be.at.most(MAX_STEM_LENGTH);
        expect(['con', 'prn', 'aux', 'nul', 'com1', 'lpt1']).to.not.include(stem.toLowerCase());
      }
    });

    it('is injective, even when file names are compared ignoring case', function () {
      const names = [...new Set([...HOSTILE_NAMES, ...randomNames(5000, 2)])];
      const stems = new Set(names.map((name) => toFileName(name).toLowerCase()));
      expect(stems.size).to.equal(names.length);
    });

    it('hashes names whose encoding is too long: readable prefix, ~, sha256', function () {
      const stem = toFileName('x'.repeat(300));
      expect(stem).to.match(/^x{120}~[0-9a-f]{64}$/);
      expect(isHashedFileName(stem)).to.equal(true);
      expect(toFileName(`${'x'.repeat(299)}y`)).to.not.equal(stem);
    });

    it('does not cut an escape in half in the readable prefix of a hashed stem', function () {
      const stem = toFileName('é'.repeat(100));
      expect(stem.split('~')[0]).to.match(/^(%[0-9A-F]{2})+$/);
    });

    it('rejects names no file can be made for', function () {
      expect(() => toFileName('')).to.throw(InvalidNameError);
      expect(() => toFileName('\ud800')).to.throw(InvalidNameError, /lone surrogate/);
      expect(() => toFileName(42 as never)).to.throw(InvalidNameError);
    });
  });

  describe('fromFileName()', function () {
    it('inverts toFileName for names that are not hashed', function () {
      for (const name of [...HOSTILE_NAMES, ...randomNames(2000, 3)]) {
        const stem = toFileName(name);
        expect(fromFileName(stem), JSON.stringify(name)).to.equal(isHashedFileName(stem) ? undefined : name);
      }
    });

    it('rejects stems toFileName would not produce', function () {
      for (const stem of ['', 'README', 'a.b', '%61', '%2e', 'con', '%C3', '%ZZ', 'x'.repeat(201), 'a~b']) {
        expect(fromFileName(stem), stem).to.equal(undefined);
      }
    });
  });
});
