import { expect } from 'chai';
import { mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sinon from 'sinon';
import {
  CacheExistsError,
  CacheManager,
  ClosedError,
  CorruptFileError,
  DependencyCycleError,
  getCacheManager,
  HookError,
  HookTimeoutError,
  InvalidNameError,
  InvalidOptionError,
  ManagerConflictError,
  MemoryStore,
  SaveFailedError,
  UnknownCacheError,
  UnserializableError,
  type CacheInvalidatedEvent,
  type HookContext,
  type CacheRejectedEvent,
  type SyncDoneEvent,
} from '../lib/index.js';
import { record, rejection, useManagers } from './helpers.js';

/** The entries of a store directory other than its writer lock. */
async function dataFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f !== 'LOCK');
}

/**
 * Makes the store hold `name` as one snapshot (a save after deleteSaved writes everything,
 * where other saves append changes to a log), then closes the manager.
 */
async function writeSnapshot(manager: CacheManager, name: string): Promise<void> {
  await manager.deleteSaved(name);
  await manager.save(name);
  await manager.close();
}

/** The snapshot file of a cache saved by a FileStore (one directory per cache). */
async function snapshotOf(manager: CacheManager, name: string): Promise<string> {
  const dir = manager.store.locate(name);
  const snapshots = (await readdir(dir)).filter((f) => f.endsWith('.snapshot'));
  expect(snapshots, `snapshots in ${dir}`).to.have.length(1);
  return path.join(dir, snapshots[0] ?? '');
}

describe('CacheManager', () => {
  const fx = useManagers();

  describe('options', () => {
    it('rejects an unknown option, naming it', () => {
      const err = (() => {
        try {
          new CacheManager({ nmae: 'x' } as never);
        } catch (e) {
          return e as InvalidOptionError;
        }
        throw new Error('no error');
      })();
      expect(err).to.be.instanceOf(InvalidOptionError);
      expect(err.code).to.equal('E_INVALID_OPTION');
      expect(err.option).to.equal('nmae');
      expect(err.message).to.contain("'nmae'");
    });

    it('rejects invalid values, naming the option', () => {
      expect(() => new CacheManager({ onCorrupt: 'ignore' } as never)).to.throw(InvalidOptionError, /'onCorrupt'/);
      expect(() => new CacheManager({ codec: 'yaml' } as never)).to.throw(InvalidOptionError, /'codec'/);
      expect(() => new CacheManager({ dir: '' })).to.throw(InvalidOptionError, /'dir'/);
      expect(() => new CacheManager({ hookTimeout: -1 })).to.throw(InvalidOptionError, /'hookTimeout'/);
      expect(() => new CacheManager({ clock: {} as never })).to.throw(InvalidOptionError, /'clock'/);
      expect(() => new CacheManager('x' as never)).to.throw(InvalidOptionError, /options must be an object/);
    });

    it('rejects invalid cache options, naming the option and the cache', async () => {
      const manager = fx.make();
      const cases: Array<[object, RegExp]> = [
        [{ maxEntries: 0 }, /'maxEntries' of cache "c"/],
        [{ maxEntries: 1.5 }, /'maxEntries'/],
        [{ ttl: '3 weeks' }, /'ttl'/],
        [{ builder: 'nope' }, /'builder'/],
        [{ dependsOn: 'users' }, /'dependsOn'/],
        [{ persistent: false, saver: () => undefined }, /'saver'.*persistent: false/],
        [{ colour: 'red' }, /'colour'/],
      ];
      for (const [options, message] of cases) {
        const err = await rejection(manager.registerCache('c', options as never));
        expect(err, JSON.stringify(options)).to.be.instanceOf(InvalidOptionError);
        expect(err.message).to.match(message);
      }
      expect(manager.hasCache('c')).to.equal(false);
    });

    it('rejects bad operation options, naming them, before doing anything', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache('a', { contents: [['k', 1]] });
      expect(await rejection(manager.invalidate('a', { cascade: 'yes' } as never))).to.be.instanceOf(InvalidOptionError).and.have.property('option', 'cascade');
      expect(await rejection(manager.save('a', { cascde: true } as never))).to.have.property('option', 'cascde');
      expect(await rejection(manager.reload('a', 7 as never))).to.be.instanceOf(InvalidOptionError);
      expect(cache.get('k')).to.equal(1);
    });

    it('puts files under <tmpdir>/cachegraph/<name> by default', () => {
      const manager = new CacheManager({ name: 'spec-default-dir', store: new MemoryStore() });
      expect(new CacheManager({ name: 'spec-default-dir' }).store.locate('a')).to.match(/cachegraph[\\/]spec-default-dir[\\/]/);
      return manager.close();
    });
  });

  describe('getCacheManager()', () => {
    afterEach(async () => {
      for (const name of ['spec-a', 'spec-b']) await getCacheManager(name).close();
    });

    it('returns the same manager for the same name', () => {
      const store = new MemoryStore();
      const a = getCacheManager('spec-a', { store });
      expect(getCacheManager('spec-a')).to.equal(a);
      expect(getCacheManager('spec-a', { store })).to.equal(a);
      expect(getCacheManager('spec-b', { store })).not.to.equal(a);
    });

    it('throws E_MANAGER_CONFLICT when asked again with different options', () => {
      getCacheManager('spec-a', { store: new MemoryStore(), onCorrupt: 'throw' });
      const err = (() => {
        try {
          getCacheManager('spec-a', { store: new MemoryStore(), onCorrupt: 'quarantine' });
        } catch (e) {
          return e as ManagerConflictError;
        }
        throw new Error('no error');
      })();
      expect(err).to.be.instanceOf(ManagerConflictError);
      expect(err.code).to.equal('E_MANAGER_CONFLICT');
      expect(err.options).to.deep.equal(['store', 'onCorrupt']);
    });

    it('creates a new manager once the old one is closed', async () => {
      const store = new MemoryStore();
      const a = getCacheManager('spec-a', { store });
      await a.close();
      expect(getCacheManager('spec-a', { store })).not.to.equal(a);
    });
  });

  describe('#registerCache()', () => {
    it('registers an empty cache and announces it', async () => {
      const manager = fx.make();
      const events = record(manager, 'cache:registered');
      const cache = await manager.registerCache('users');
      expect(cache.size).to.equal(0);
      expect(manager.hasCache('users')).to.equal(true);
      expect(manager.getCache('users')).to.equal(cache);
      expect(manager.cacheNames()).to.deep.equal(['users']);
      expect(events).to.deep.equal([{ name: 'users', source: 'builder', entries: 0 }]);
    });

    it('refuses a second registration of the same name', async () => {
      const manager = fx.make();
      const first = manager.registerCache('users');
      const err = await rejection(manager.registerCache('users'));
      expect(err).to.be.instanceOf(CacheExistsError);
      await first;
      expect(await rejection(manager.registerCache('users'))).to.be.instanceOf(CacheExistsError);
    });

    it('starts from the contents option', async () => {
      const manager = fx.make();
      const fromPairs = await manager.registerCache('pairs', { contents: [['a', 1]] });
      const fromObject = await manager.registerCache('object', { contents: { b: 2, __proto__x: 3 } });
      const fromMap = await manager.registerCache('map', { contents: new Map([[1, 'one']]) });
      expect([...fromPairs]).to.deep.equal([['a', 1]]);
      expect([...fromObject]).to.deep.equal([['b', 2], ['__proto__x', 3]]);
      expect(fromMap.get(1)).to.equal('one');
      expect(fromPairs.pendingChanges).to.be.greaterThan(0);
    });

    it('rejects contents that are not pairs or a plain object', async () => {
      const manager = fx.make();
      for (const contents of [42, 'ab', [1, 2], new (class Foo {})()]) {
        const err = await rejection(manager.registerCache('c', { contents: contents as never }));
        expect(err.message, String(contents)).to.match(/Invalid contents from contents of cache "c"/);
      }
    });
  });

  describe('#getCache()', () => {
    it('throws E_UNKNOWN_CACHE and never creates a cache', () => {
      const manager = fx.make();
      expect(() => manager.getCache('ghost')).to.throw(UnknownCacheError, /"ghost"/);
      expect(manager.hasCache('ghost')).to.equal(false);
    });
  });

  describe('persistence (CacheMan scenarios)', () => {
    it('loads saved values, Dates, Maps, Sets and BigInts included, in a new manager on the same dir', async () => {
      const first = fx.make();
      const cache = await first.registerCache<string, unknown>('things');
      const when = new Date('2024-02-29T12:00:00Z');
      cache.set('date', when).set('map', new Map([['k', new Set([1, 2])]])).set('big', 2n ** 70n).set('nested', { a: [1, { b: 'c' }] });
      await first.close();

      const second = fx.make();
      const events = record(second, 'cache:loaded');
      const again = await second.registerCache<string, unknown>('things');
      expect(again.get('date')).to.deep.equal(when);
      expect(again.get('date')).to.be.instanceOf(Date);
      expect(again.get('map')).to.deep.equal(new Map([['k', new Set([1, 2])]]));
      expect(again.get('big')).to.equal(2n ** 70n);
      expect(again.get('nested')).to.deep.equal({ a: [1, { b: 'c' }] });
      expect(events).to.have.length(1);
      expect(again.pendingChanges).to.equal(0);
    });

    it('leaves one copy and no temp files after repeated saves', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<number, number>('c');
      for (let i = 0; i < 5; i++) {
        cache.set(i, i);
        await manager.save('c');
      }
      expect(await dataFiles(fx.dir)).to.deep.equal([path.basename(manager.store.locate('c'))]);
      expect((await readdir(manager.store.locate('c'))).filter((f) => f.includes('.tmp-'))).to.deep.equal([]);
    });

    it('reloads: unsaved changes are reverted, in the same Cache object', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      cache.set('kept', 1);
      await manager.save('c');
      cache.set('unsaved', 2);
      cache.delete('kept');
      await manager.reload('c');
      expect(manager.getCache('c')).to.equal(cache);
      expect([...cache]).to.deep.equal([['kept', 1]]);
      expect(cache.pendingChanges).to.equal(0);
    });

    it('deleteSaved removes the persisted copy and keeps memory', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      cache.set('a', 1);
      await manager.save('c');
      await manager.deleteSaved('c');
      expect(cache.get('a')).to.equal(1);
      expect(await manager.store.has('c')).to.equal(false);
      await manager.close();
      // Nothing changed after the delete, so close() does not write it back.
      expect(await readdir(fx.dir)).to.deep.equal([]);
    });

    it("prefers a loader's result to the file", async () => {
      const first = fx.make();
      (await first.registerCache('c')).set('from', 'file');
      await first.close();
      const second = fx.make();
      const loader = sinon.spy((_ctx: HookContext) => ({ from: 'loader' }));
      const cache = await second.registerCache('c', { loader });
      expect(cache.get('from')).to.equal('loader');
      expect(loader.calledOnce).to.equal(true);
      expect(loader.firstCall.args[0]).to.include({ name: 'c', manager: second });
    });

    it('runs a custom saver only on save, with the contents', async () => {
      const manager = fx.make();
      const saver = sinon.spy();
      const cache = await manager.registerCache<string, number>('c', { saver });
      cache.set('a', 1).set('b', 2);
      expect(saver.called).to.equal(false);
      await manager.save('c');
      expect(saver.calledOnce).to.equal(true);
      expect(saver.firstCall.args[0]).to.deep.equal(new Map([['a', 1], ['b', 2]]));
      expect(await readdir(fx.dir)).to.deep.equal([]);
    });

    it('runs the deleter on deleteSaved and on invalidate', async () => {
      const manager = fx.make();
      const deleter = sinon.spy();
      await manager.registerCache('c', { deleter });
      await manager.deleteSaved('c');
      await manager.invalidate('c');
      expect(deleter.callCount).to.equal(2);
    });

    it('builds when the validator says no, or throws', async () => {
      const first = fx.make();
      (await first.registerCache('a')).set('stale', true);
      (await first.registerCache('b')).set('stale', true);
      await first.close();

      const second = fx.make();
      const rejected = record<CacheRejectedEvent>(second, 'cache:rejected');
      const a = await second.registerCache('a', { validator: () => false, builder: () => [['fresh', true]] });
      const b = await second.registerCache('b', {
        validator: () => {
          throw new Error('schema changed');
        },
        builder: () => [['fresh', true]],
      });
      expect([...a.keys()]).to.deep.equal(['fresh']);
      expect([...b.keys()]).to.deep.equal(['fresh']);
      expect(rejected.map((e) => e.reason)).to.deep.equal(['invalid', 'validator-error']);
      expect((rejected[1]?.error as Error).message).to.contain('schema changed');
    });

    it('writes nothing for a non-persistent cache', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache('scratch', { persistent: false, builder: () => [['x', 1]] });
      cache.set('y', 2);
      await manager.save('scratch');
      await manager.saveAll();
      await manager.close();
      expect(await readdir(fx.dir)).to.deep.equal([]);
    });

    it('reloads from disk after deregister and register again', async () => {
      const manager = fx.make();
      const cache = await manager.registerCache<string, number>('c');
      cache.set('a', 1);
      await manager.deregister('c');
      expect(manager.hasCache('c')).to.equal(false);
      const again = await manager.registerCache<string, number>('c');
      expect(again).not.to.equal(cache);
      expect(again.get('a')).to.equal(1);
    });
  });

  describe('hook failures', () => {
    it('fails registration with the hook error and its cause, registering nothing', async () => {
      const manager = fx.make();
      const cause = new Error('db down');
      const err = await rejection(
        manager.registerCache('c', {
          dependsOn: ['up'],
          builder: () => {
            throw cause;
          },
        }),
      );
      expect(err).to.be.instanceOf(HookError);
      expect(err).to.include({ code: 'E_HOOK_FAILED', hook: 'builder', cacheName: 'c', cause });
      expect(manager.hasCache('c')).to.equal(false);
      expect(manager.dependentsOf('up')).to.deep.equal([]);
      expect(await manager.registerCache('c')).to.have.property('size', 0);
    });

    it('keeps the cache usable when reload fails', async () => {
      const manager = fx.make();
      let fail = false;
      const cache = await manager.registerCache<string, number>('c', {
        loader: () => {
          if (fail) throw new Error('loader broke');
          return [['a', 1]];
        },
      });
      cache.set('b', 2);
      fail = true;
      const err = await rejection(manager.reload('c'));
      expect(err).to.be.instanceOf(HookError);
      expect((err.cause as Error).message).to.equal('loader broke');
      expect([...cache]).to.deep.equal([['a', 1], ['b', 2]]);
      cache.set('c', 3);
      expect(cache.size).to.equal(3);
    });

    it('keeps the cache usable when a rebuild fails, and leaves it empty rather than stale', async () => {
      const manager = fx.make();
      let fail = false;
      const cache = await manager.registerCache<string, number>('c', {
        builder: () => {
          if (fail) throw new Error('builder broke');
          return [['a', 1]];
        },
      });
      fail = true;
      expect(await rejection(manager.invalidate('c'))).to.be.instanceOf(HookError);
      expect(cache.size).to.equal(0);
      cache.set('x', 1);
      fail = false;
      await manager.invalidate('c');
      expect([...cache]).to.deep.equal([['a', 1]]);
    });

    it('ends a hung hook after hookTimeout, aborting its signal', async () => {
      // Installed after cachegraph was imported: the default timers must still see them.
      const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      const manager = fx.make({ hookTimeout: '5s' });
      let signal: AbortSignal | undefined;
      const registering = rejection(
        manager.registerCache('c', {
          persistent: false,
          builder: (ctx) => {
            signal = ctx.signal;
            return new Promise<[]>(() => undefined);
          },
        }),
      );
      await clock.tickAsync(4_999);
      expect(signal?.aborted).to.equal(false);
      await clock.tickAsync(1);
      const err = await registering;
      expect(err).to.be.instanceOf(HookTimeoutError);
      expect(err).to.include({ code: 'E_HOOK_TIMEOUT', hook: 'builder', cacheName: 'c', timeoutMs: 5_000 });
      expect(signal?.aborted).to.equal(true);
      expect(clock.countTimers()).to.equal(0);
    });
  });

  describe('dependencies', () => {
    it('rejects a cycle when it is declared, with its path', async () => {
      const manager = fx.make();
      manager.registerDependentCache('a', 'b');
      await manager.registerCache('c', { dependsOn: ['b'] });
      const err = (() => {
        try {
          manager.registerDependentCache('c', 'a');
        } catch (e) {
          return e as DependencyCycleError;
        }
        throw new Error('no error');
      })();
      expect(err).to.be.instanceOf(DependencyCycleError);
      expect(err.code).to.equal('E_DEPENDENCY_CYCLE');
      expect(err.cyclePath).to.deep.equal(['c', 'a', 'b', 'c']);
      const viaRegister = await rejection(manager.registerCache('a', { dependsOn: ['x', 'c'] }));
      expect(viaRegister).to.be.instanceOf(DependencyCycleError);
      const self = await rejection(manager.registerCache('s', { dependsOn: ['s'] }));
      expect((self as DependencyCycleError).cyclePath).to.deep.equal(['s', 's']);
      expect(manager.dependentsOf('x')).to.deep.equal([]);
    });

    it('lists dependents transitively in topological order', () => {
      const manager = fx.make();
      manager.registerDependentCache('a', 'b');
      manager.registerDependentCache('b', 'd');
      manager.registerDependentCache('a', 'c');
      manager.registerDependentCache('c', 'd');
      expect(manager.dependentsOf('a')).to.deep.equal(['b', 'c', 'd']);
      expect(manager.dependenciesOf('d')).to.deep.equal(['a', 'b', 'c']);
      expect(manager.removeDependency('c', 'd')).to.equal(true);
      expect(manager.dependenciesOf('d')).to.deep.equal(['a', 'b']);
    });
  });

  describe('#invalidate()', () => {
    it('reaches caches registered, replaced or deregistered since the last cascade from the same root', async () => {
      const manager = fx.make();
      const a = await manager.registerCache<string, number>('a', { persistent: false });
      const b = await manager.registerCache<string, number>('b', { persistent: false, dependsOn: ['a'] });
      a.set('k', 1);
      b.set('k', 1);
      await manager.invalidate('a');
      expect([a.size, b.size]).to.deep.equal([0, 0]);
      await manager.deregister('b');
      const b2 = await manager.registerCache<string, number>('b', { persistent: false, dependsOn: ['a'] });
      b2.set('k', 2);
      await manager.invalidate('a');
      expect(b2.size, 'the new registration is emptied').to.equal(0);
    });

    it('empties and rebuilds dependents transitively, upstream first (A→B→C, C registered after the link)', async () => {
      const manager = fx.make();
      const order: string[] = [];
      const builder = (name: string, read?: string) => (ctx: { manager: CacheManager }) => {
        order.push(name);
        const upstream = read === undefined ? 0 : (ctx.manager.getCache<string, number>(read).get('v') ?? -1);
        return [['v', upstream + 1]] as Array<[string, number]>;
      };
      let base = 10;
      await manager.registerCache('A', { builder: () => (order.push('A'), [['v', base]]) });
      await manager.registerCache('B', { dependsOn: ['A'], builder: builder('B', 'A') });
      manager.registerDependentCache('B', 'C');
      await manager.registerCache('C', { builder: builder('C', 'B') });
      order.length = 0;
      const events = record<CacheInvalidatedEvent>(manager, 'cache:invalidated');
      base = 100;
      await manager.invalidate('A');
      expect(order).to.deep.equal(['A', 'B', 'C']);
      expect(manager.getCache('C').get('v')).to.equal(102);
      expect(events).to.deep.equal([
        { name: 'A', cause: 'direct', source: 'A' },
        { name: 'B', cause: 'dependency', source: 'A' },
        { name: 'C', cause: 'dependency', source: 'A' },
      ]);
    });

    it('rebuilds each cache of a diamond once', async () => {
      const manager = fx.make();
      const builds = new Map<string, number>();
      const builder = (name: string) => () => {
        builds.set(name, (builds.get(name) ?? 0) + 1);
        return [];
      };
      await manager.registerCache('top', { builder: builder('top') });
      await manager.registerCache('left', { dependsOn: ['top'], builder: builder('left') });
      await manager.registerCache('right', { dependsOn: ['top'], builder: builder('right') });
      await manager.registerCache('bottom', { dependsOn: ['left', 'right'], builder: builder('bottom') });
      builds.clear();
      const events = record<CacheInvalidatedEvent>(manager, 'cache:invalidated');
      await manager.invalidate('top');
      expect(Object.fromEntries(builds)).to.deep.equal({ top: 1, left: 1, right: 1, bottom: 1 });
      expect(events.map((e) => e.name)).to.deep.equal(['top', 'left', 'right', 'bottom']);
    });

    it('deletes the persisted copy, and stays within the named cache with cascade: false', async () => {
      const manager = fx.make();
      const a = await manager.registerCache('a');
      const b = await manager.registerCache('b', { dependsOn: ['a'] });
      a.set('x', 1);
      b.set('y', 1);
      await manager.saveAll();
      await manager.invalidate('a', { cascade: false });
      expect(a.size).to.equal(0);
      expect(b.size).to.equal(1);
      expect(await manager.store.has('a')).to.equal(false);
      expect(await manager.store.has('b')).to.equal(true);
    });

    it('deletes the store copy of a dependent that is not registered', async () => {
      const first = fx.make();
      (await first.registerCache('derived')).set('stale', 1);
      await first.close();
      const second = fx.make();
      await second.registerCache('source');
      second.registerDependentCache('source', 'derived');
      await second.invalidate('source');
      const derived = await second.registerCache('derived');
      expect(derived.size).to.equal(0);
    });

    it('empties every affected cache before the first rebuild', async () => {
      const manager = fx.make();
      const seen: number[] = [];
      await manager.registerCache('a', {
        builder: ({ manager: m }) => {
          if (m.hasCache('b')) seen.push(m.getCache('b').size);
          return [];
        },
      });
      (await manager.registerCache('b', { dependsOn: ['a'] })).set('old', 1);
      await manager.invalidate('a');
      expect(seen).to.deep.equal([0]);
    });

    it('handles a chain of 20 000 caches', async function () {
      this.timeout(60_000);
      const manager = fx.make({ store: new MemoryStore() });
      const n = 20_000;
      for (let i = 0; i < n; i++) {
        await manager.registerCache(`c${i}`, {
          persistent: false,
          ...(i > 0 ? { dependsOn: [`c${i - 1}`] } : {}),
          builder: () => [['i', i]],
        });
      }
      for (let i = 0; i < n; i++) manager.getCache(`c${i}`).clear();
      let count = 0;
      manager.on('cache:invalidated', () => count++);
      await manager.invalidate('c0');
      expect(count).to.equal(n);
      expect(manager.getCache(`c${n - 1}`).get('i')).to.equal(n - 1);
      expect(manager.dependentsOf('c0')).to.have.length(n - 1);
    });
  });

  describe('#reloadAll(), #invalidateAll(), #saveAll()', () => {
    it('applies to every registered cache, each once, upstream first', async () => {
      const manager = fx.make();
      const built: string[] = [];
      const builder = (name: string) => (): Array<[string, string]> => {
        built.push(name);
        return [['n', name]];
      };
      await manager.registerCache('leaf', { dependsOn: ['root'], builder: builder('leaf') });
      await manager.registerCache('root', { builder: builder('root') });
      built.length = 0;
      await manager.invalidateAll();
      expect(built).to.deep.equal(['root', 'leaf']);
      const saved = record<SyncDoneEvent>(manager, 'sync:done');
      await manager.saveAll();
      expect(saved.map((e) => e.name).sort()).to.deep.equal(['leaf', 'root']);
      manager.getCache('root').set('extra', 1);
      await manager.reloadAll();
      expect(manager.getCache('root').has('extra')).to.equal(false);
    });

    it('saveAll attempts every cache and names the ones that failed', async () => {
      const manager = fx.make();
      const good = await manager.registerCache<string, unknown>('good');
      const bad = await manager.registerCache<string, unknown>('bad');
      good.set('ok', 1);
      const value: Record<string, unknown> = { fine: true };
      bad.set('mutated', value);
      value['fn'] = () => 1; // mutated after set(): only the save can see it
      const err = await rejection(manager.saveAll());
      expect(err).to.be.instanceOf(SaveFailedError);
      expect((err as SaveFailedError).cacheNames).to.deep.equal(['bad']);
      expect((err as SaveFailedError).errors[0]).to.be.instanceOf(UnserializableError);
      expect((err.cause as UnserializableError).key).to.equal('mutated');
      expect(await manager.store.has('good')).to.equal(true);
      expect(bad.pendingChanges).to.be.greaterThan(0);
    });
  });

  describe('files on disk', () => {
    it('fails loudly on a corrupt file, naming it', async () => {
      const first = fx.make();
      (await first.registerCache('c')).set('a', 'x'.repeat(100));
      await writeSnapshot(first, 'c');
      const file = await snapshotOf(first, 'c');
      const bytes = await readFile(file);
      bytes[bytes.length - 40] = (bytes[bytes.length - 40] ?? 0) ^ 0xff;
      await writeFile(file, bytes);
      const err = await rejection(fx.make().registerCache('c'));
      expect(err).to.be.instanceOf(CorruptFileError);
      expect((err as CorruptFileError).path).to.equal(file);
      expect(await readFile(file)).to.deep.equal(bytes);
    });

    it('fails loudly on a truncated file', async () => {
      const first = fx.make();
      (await first.registerCache('c')).set('a', 'x'.repeat(1000));
      await writeSnapshot(first, 'c');
      const file = await snapshotOf(first, 'c');
      await truncate(file, (await stat(file)).size - 10);
      expect(await rejection(fx.make().registerCache('c'))).to.be.instanceOf(CorruptFileError);
    });

    it('quarantines a corrupt file and rebuilds when configured', async () => {
      const first = fx.make();
      (await first.registerCache('c')).set('a', 1);
      await writeSnapshot(first, 'c');
      const file = await snapshotOf(first, 'c');
      await truncate(file, 20);
      const second = fx.make({ onCorrupt: 'quarantine' });
      const rejected = record<CacheRejectedEvent>(second, 'cache:rejected');
      const cache = await second.registerCache('c', { builder: () => [['rebuilt', true]] });
      expect([...cache.keys()]).to.deep.equal(['rebuilt']);
      expect(rejected).to.have.length(1);
      expect(rejected[0]?.reason).to.equal('corrupt');
      const moved = rejected[0]?.quarantinedTo ?? '';
      expect(path.basename(moved)).to.match(/\.corrupt-/);
      // The damaged copy is kept aside for inspection, byte for byte.
      const kept = path.join(moved, path.basename(file));
      expect((await stat(kept)).size).to.equal(20);
    });

    it('treats a zero-byte file as nothing saved', async () => {
      const manager = fx.make();
      await mkdir(manager.store.locate('c'), { recursive: true });
      await writeFile(path.join(manager.store.locate('c'), 'MANIFEST'), '');
      const cache = await manager.registerCache('c', { builder: () => [['built', 1]] });
      expect(cache.get('built')).to.equal(1);
    });

    it('keeps hostile names inside dir, or rejects them', async () => {
      const manager = fx.make();
      const names = ['../x', '..', '.', 'a/b', 'a\\b', '/etc/passwd', 'CON', 'x'.repeat(300), 'Users', 'users', 'é', '__proto__'];
      for (const name of names) {
        const cache = await manager.registerCache(name);
        cache.set('name', name);
        await manager.save(name);
        expect(path.dirname(manager.store.locate(name)), name).to.equal(fx.dir);
      }
      expect((await dataFiles(fx.dir)).length).to.equal(names.length);
      await manager.close();
      const again = fx.make();
      for (const name of names) expect((await again.registerCache(name)).get('name')).to.equal(name);
      for (const bad of ['', 'a\u0000b', 'line\nbreak', 'x'.repeat(1001), 42]) {
        expect(await rejection(again.registerCache(bad as string)), String(bad)).to.be.instanceOf(InvalidNameError);
      }
    });
  });

  describe('automatic saving (AutoSync)', () => {
    const T0 = Date.UTC(2026, 0, 1);
    const fakeTime = () => sinon.useFakeTimers({ now: T0, toFake: ['setTimeout', 'clearTimeout', 'Date'] });

    it('saves one change after more than 900 s, not a tick earlier (default rules)', async () => {
      const clock = fakeTime();
      const store = new MemoryStore();
      const manager = fx.make({ store });
      const saved = record<SyncDoneEvent>(manager, 'sync:done');
      const cache = await manager.registerCache<string, number>('c');
      await clock.tickAsync(10_000);
      cache.set('a', 1);
      expect(cache.stats().nextSaveAt).to.equal(T0 + 900_001);
      await clock.tickAsync(900_000 - 10_000);
      expect(saved).to.deep.equal([]);
      await clock.tickAsync(1);
      expect(saved.map((e) => [e.name, e.reason, e.entries])).to.deep.equal([['c', 'auto', 1]]);
      expect(cache.pendingChanges).to.equal(0);
      expect(cache.stats()).to.include({ saves: 1, lastSaveAt: T0 + 900_001, lastSaveReason: 'auto', nextSaveAt: undefined });
      expect((await store.load('c', { codec: manager.codec, clock: { now: Date.now } }))?.entries).to.deep.equal([['a', 1, 0]]);
    });

    it('follows per-cache rules and autoSync: false', async () => {
      const clock = fakeTime();
      const manager = fx.make({ store: new MemoryStore(), autoSync: { rules: [{ seconds: 10, changes: 2 }] } });
      const saved = record<SyncDoneEvent>(manager, 'sync:done');
      const inherits = await manager.registerCache('inherits');
      const own = await manager.registerCache('own', { autoSync: { rules: [{ seconds: 1, changes: 1 }] } });
      const never = await manager.registerCache('never', { autoSync: false });
      inherits.set('a', 1);
      own.set('a', 1);
      never.set('a', 1);
      await clock.tickAsync(60_000);
      expect(saved.map((e) => e.name)).to.deep.equal(['own']);
      inherits.set('b', 2);
      await clock.tickAsync(1);
      expect(saved.map((e) => e.name)).to.deep.equal(['own', 'inherits']);
      expect(never.stats()).to.include({ autoSync: false, pendingChanges: 1 });
    });

    it('keeps the changes of a failed automatic save, reports it, and retries after at least 5 s', async () => {
      const clock = fakeTime();
      const store = new MemoryStore();
      const manager = fx.make({ store, autoSync: { rules: [{ seconds: 1, changes: 1 }] } });
      const errors = record(manager, 'sync:error');
      const saved = record<SyncDoneEvent>(manager, 'sync:done');
      const cache = await manager.registerCache('c');
      const save = sinon.stub(store, 'saveChanges').rejects(new Error('disk full'));
      cache.set('a', 1);
      await clock.tickAsync(1_001);
      expect(errors).to.have.length(1);
      expect(cache.pendingChanges).to.equal(1);
      expect(cache.stats().saveErrors).to.equal(1);
      save.restore();
      await clock.tickAsync(4_998);
      expect(saved).to.deep.equal([]);
      await clock.tickAsync(10_000);
      expect(saved).to.have.length(1);
      expect(cache.pendingChanges).to.equal(0);
    });

    it('flushes on close and leaves no timer behind', async () => {
      const clock = fakeTime();
      const store = new MemoryStore();
      const manager = fx.make({ store });
      (await manager.registerCache('c')).set('a', 1);
      expect(clock.countTimers()).to.equal(1);
      await manager.close();
      expect(clock.countTimers()).to.equal(0);
      expect(await store.has('c')).to.equal(true);
    });

    it('validates the rules, naming the option', () => {
      expect(() => new CacheManager({ autoSync: { rules: [{ seconds: -1, changes: 1 }] } })).to.throw(InvalidOptionError, /autoSync\.rules\.0\.seconds/);
      expect(() => new CacheManager({ autoSync: { rules: [] } })).to.throw(InvalidOptionError, /autoSync/);
    });

    it('sums the caches in manager.stats()', async () => {
      const manager = fx.make({ store: new MemoryStore() });
      (await manager.registerCache('a')).set('x', 1).set('y', 2);
      await manager.registerCache('b', { contents: [['z', 3]] });
      const stats = manager.stats();
      expect(stats).to.include({ name: manager.name, store: 'memory', entries: 3, closed: false });
      expect(stats.caches.map((c) => c.name)).to.deep.equal(['a', 'b']);
      expect(stats.pendingChanges).to.equal(3);
    });
  });

  describe('#close()', () => {
    it('saves what changed, once, and is idempotent', async () => {
      const manager = fx.make();
      const saved = record<SyncDoneEvent>(manager, 'sync:done');
      (await manager.registerCache('changed')).set('a', 1);
      await manager.registerCache('untouched');
      const closing = manager.close();
      expect(manager.close()).to.equal(closing);
      await closing;
      expect(saved.map((e) => [e.name, e.reason])).to.deep.equal([['changed', 'close']]);
      expect(await rejection(manager.registerCache('x'))).to.be.instanceOf(ClosedError);
      expect(() => manager.getCache('changed').set('b', 2)).to.throw(ClosedError);
    });

    it('waits for running operations before the final save', async () => {
      const manager = fx.make();
      let release: (() => void) | undefined;
      const registering = manager.registerCache('slow', {
        builder: () => new Promise<Array<[string, number]>>((r) => (release = () => r([['k', 1]]))),
      });
      while (release === undefined) await new Promise((r) => setImmediate(r));
      const closing = manager.close();
      release();
      await registering;
      await closing;
      const again = fx.make();
      expect((await again.registerCache('slow')).get('k')).to.equal(1);
    });

    it('rejects with the cause when the final save fails, after saving the others', async () => {
      const manager = fx.make();
      (await manager.registerCache('ok')).set('a', 1);
      (await manager.registerCache('broken', { saver: () => Promise.reject(new Error('ENOSPC')) })).set('a', 1);
      const err = await rejection(manager.close());
      expect(err).to.be.instanceOf(SaveFailedError);
      expect((err as SaveFailedError).cacheNames).to.deep.equal(['broken']);
      expect((err.cause as HookError).cause).to.have.property('message', 'ENOSPC');
      expect(await manager.store.has('ok')).to.equal(true);
    });

    it('works with await using', async () => {
      const dir = fx.dir;
      {
        await using manager = new CacheManager({ dir });
        (await manager.registerCache('c')).set('a', 1);
      }
      const again = fx.make();
      expect((await again.registerCache('c')).get('a')).to.equal(1);
    });
  });
});
