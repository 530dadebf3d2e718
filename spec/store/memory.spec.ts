import { expect } from 'chai';
import { v8Codec } from '../../lib/codec/index.js';
import { MemoryStore } from '../../lib/store/memory.js';
import { contextWith, describeStoreConformance } from './conformance.js';

describeStoreConformance('MemoryStore', async () => ({ store: new MemoryStore(), cleanup: async () => undefined }));

describe('MemoryStore', function () {
  const ctx = contextWith(v8Codec);

  describe('#locate()', function () {
    it('is memory:<name>', function () {
      expect(new MemoryStore().locate('users')).to.equal('memory:users');
    });
  });

  describe('#close()', function () {
    it('keeps what was saved, so another manager can load it from the same store', async function () {
      const store = new MemoryStore();
      await store.save('users', [['u1', 1, 0]], ctx);
      await store.close();
      expect((await store.load('users', ctx))?.entries).to.deep.equal([['u1', 1, 0]]);
    });
  });

  describe('#save()', function () {
    it('stores a copy: mutating a value after the save does not change the saved copy', async function () {
      const store = new MemoryStore();
      const value = { list: [1] };
      await store.save('users', [['u1', value, 0]], ctx);
      value.list.push(2);
      expect((await store.load('users', ctx))?.entries).to.deep.equal([['u1', { list: [1] }, 0]]);
    });
  });
});
