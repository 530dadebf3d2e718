// Bad input everywhere: every public entry point called with wrong types, hostile names and
// keys, huge values and options out of range. Each call fails with a typed error (class and
// stable code) whose message names the culprit (the option, the cache, the key), and leaves
// nothing half-applied: the manager's caches, contents, pending changes, dependency links and
// files are what they were before the call. (The specs of each module check their own
// options too; this sweep holds every surface to the same three assertions.)
import { expect } from 'chai';
import fc from 'fast-check';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CacheExistsError,
  CacheGraphError,
  CacheManager,
  ClosedError,
  DependencyCycleError,
  FileStore,
  HookError,
  InvalidContentsError,
  InvalidNameError,
  InvalidOptionError,
  MAX_CACHE_NAME_LENGTH,
  MemoKeyError,
  MemoryStore,
  parseDuration,
  RedisStore,
  UnknownCacheError,
  UnserializableError,
  validateCacheName,
  v8Codec,
  type ErrorCode,
} from '../../lib/index.js';
import { rejection } from '../helpers.js';
import { describeEntries } from '../fixtures/command-model.js';
import { runs } from '../fixtures/soak.js';

type ErrorClass = abstract new (...args: never[]) => CacheGraphError;

/** Asserts the typed error: class, code, and every culprit named in the message. */
function expectTyped(error: unknown, Class: ErrorClass, code: ErrorCode, culprits: readonly string[], where: string): void {
  expect(error, where).to.be.instanceOf(Class);
  expect((error as CacheGraphError).code, where).to.equal(code);
  for (const culprit of culprits) expect((error as Error).message, where).to.include(culprit);
}

/** The error `fn` throws (fails the test when it returns). */
function thrown(fn: () => unknown, where = ''): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error(`expected a throw, but the call returned ${where}`);
}

/** The error `promise` rejects with (fails the test, saying where, when it resolves). */
async function rejected(promise: Promise<unknown>, where: string): Promise<Error> {
  try {
    return await rejection(promise);
  } catch (error) {
    throw new Error(`${where}: ${(error as Error).message}`);
  }
}

class Point {
  constructor(readonly x: number) {}
}

/** Every file and directory under `dir`, with sizes: what "nothing written" is compared with. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true }).catch(() => [])) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) {
        out.push(`${path.relative(dir, full)}/`);
        await walk(full);
      } else out.push(`${path.relative(dir, full)} ${(await stat(full)).size}`);
    }
  };
  await walk(dir);
  return out.sort();
}

/** What a failed call must not change: caches, their contents and pending changes, links, files. */
async function stateOf(manager: CacheManager, dir: string, names: readonly string[]): Promise<string> {
  const caches = manager.cacheNames().map((name) => {
    const cache = manager.getCache(name);
    return `${name}: ${describeEntries(cache.entries())} pending ${cache.pendingChanges}`;
  });
  const links = names.map((name) => `${name} -> ${manager.dependentsOf(name).join(',')}`);
  return JSON.stringify({ caches, links, files: await filesUnder(dir) });
}

/** Names valid but hostile: stores must encode them and keep them inside their directory. */
const HOSTILE_VALID_NAMES = ['../x', 'a/b', 'a\\b', '/etc/passwd', 'C:\\x', '.', '..', 'CON', 'nul.txt', 'trailing.', 'trailing ', '__proto__', 'constructor', 'x'.repeat(300), 'é', 'e\u0301', 'Users', 'users', '💥'];

/** Names no cache may have, with what the error says about each. */
const INVALID_NAMES: Array<[unknown, string]> = [
  ['', 'empty'],
  ['a\u0000b', 'control characters'],
  ['a\nb', 'control characters'],
  ['\uD800', 'well-formed'],
  ['x'.repeat(MAX_CACHE_NAME_LENGTH + 1), `at most ${MAX_CACHE_NAME_LENGTH}`],
  [42, 'must be a string'],
  [null, 'must be a string'],
  [undefined, 'must be a string'],
  [{ toString: () => 'users' }, 'must be a string'],
  [Symbol('users'), 'must be a string'],
];

describe('Faults: bad input everywhere', function () {
  this.timeout(60_000);
  let root: string;
  let dir: string;
  let managers: CacheManager[] = [];

  beforeEach(async function () {
    root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-bad-'));
    dir = path.join(root, 'store');
    managers = [];
  });

  afterEach(async function () {
    await Promise.allSettled(managers.map((m) => m.close()));
    await rm(root, { recursive: true, force: true });
  });

  function make(options: ConstructorParameters<typeof CacheManager>[0] = {}): CacheManager {
    const manager = new CacheManager({ name: 'bad', dir, autoSync: false, ...options });
    managers.push(manager);
    return manager;
  }

  /** A manager with two linked, saved caches, 'users' (with values) and 'stats' depending on it. */
  async function populated(): Promise<CacheManager> {
    const manager = make();
    const users = await manager.registerCache<unknown, unknown>('users');
    users.set('u1', { name: 'Ada' }).set('u2', { name: 'Grace' }, { ttl: '1h' });
    await manager.registerCache('stats', { dependsOn: ['users'], builder: () => [['count', 2]] });
    await manager.saveAll();
    users.set('u3', 'unsaved');
    return manager;
  }

  describe('new CacheManager(options)', function () {
    const cases: Array<[unknown, string]> = [
      [{ nmae: 'x' }, 'nmae'],
      [{ name: 42 }, 'name'],
      [{ name: '' }, 'name'],
      [{ name: 'a\u0000b' }, 'name'],
      [{ name: '\uD800' }, 'name'],
      [{ name: 'x'.repeat(MAX_CACHE_NAME_LENGTH + 1) }, 'name'],
      [{ dir: '' }, 'dir'],
      [{ dir: 7 }, 'dir'],
      [{ store: {} }, 'store'],
      [{ store: new Map() }, 'store'],
      [{ codec: 'pickle' }, 'codec'],
      [{ codec: { name: 'x', encode: 'no' } }, 'codec'],
      [{ onCorrupt: 'ignore' }, 'onCorrupt'],
      [{ clock: Date }, 'clock'],
      [{ clock: { now: 5 } }, 'clock'],
      [{ timers: {} }, 'timers'],
      [{ hookTimeout: 0 }, 'hookTimeout'],
      [{ hookTimeout: -1 }, 'hookTimeout'],
      [{ hookTimeout: Number.NaN }, 'hookTimeout'],
      [{ hookTimeout: Number.POSITIVE_INFINITY }, 'hookTimeout'],
      [{ hookTimeout: '10 parsecs' }, 'hookTimeout'],
      [{ hookTimeout: '101y' }, 'hookTimeout'],
      [{ hookTimeout: `${101 * 365}d` }, 'hookTimeout'],
      [{ autoSync: true }, 'autoSync'],
      [{ autoSync: { rules: [{ seconds: 0, changes: 1 }] } }, 'autoSync'],
      [{ autoSync: { rules: [{ seconds: 1, changes: 1.5 }] } }, 'autoSync'],
      [{ autoSync: { rules: [{ seconds: 1, changes: 1, extra: 1 }] } }, 'autoSync'],
    ];

    it(`refuses ${cases.length} bad options with E_INVALID_OPTION naming the option, and creates nothing on disk`, async function () {
      for (const [options, option] of cases) {
        const where = `options ${JSON.stringify(options)}`;
        const error = thrown(() => new CacheManager({ dir, ...(options as object) }));
        expectTyped(error, InvalidOptionError, 'E_INVALID_OPTION', [`'${option}`], where);
        expect((error as InvalidOptionError).option.startsWith(option), where).to.equal(true);
      }
      for (const notAnObject of ['x', 42, true, [1]]) {
        expectTyped(thrown(() => new CacheManager(notAnObject as never)), InvalidOptionError, 'E_INVALID_OPTION', ['options must be an object'], String(notAnObject));
      }
      expect(await readdir(root)).to.deep.equal([]);
    });
  });

  describe('#registerCache(name, options)', function () {
    it('refuses invalid names with E_INVALID_NAME, registering nothing and writing nothing', async function () {
      const manager = await populated();
      const before = await stateOf(manager, dir, ['users', 'stats']);
      const registered: unknown[] = [];
      manager.on('cache:registered', (e) => registered.push(e));
      for (const [name, reason] of INVALID_NAMES) {
        const where = `name ${String(typeof name === 'symbol' ? name.toString() : JSON.stringify(name))?.slice(0, 40)}`;
        expectTyped(await rejection(manager.registerCache(name as string)), InvalidNameError, 'E_INVALID_NAME', [reason], where);
        // The manager's other name-taking methods refuse them the same way.
        expectTyped(thrown(() => manager.registerDependentCache('users', name as string), where), InvalidNameError, 'E_INVALID_NAME', [reason], where);
        expectTyped(thrown(() => manager.registerDependentCache(name as string, 'users'), where), InvalidNameError, 'E_INVALID_NAME', [reason], where);
        // (An undefined cache option is the default cache.)
        if (name !== undefined) expectTyped(thrown(() => manager.memoize(() => 1, { name: 'f', cache: name as string }), `memoize ${where}`), InvalidOptionError, 'E_INVALID_OPTION', ["'cache'"], where);
      }
      expect(registered).to.deep.equal([]);
      expect(await stateOf(manager, dir, ['users', 'stats'])).to.equal(before);
    });

    it('keeps hostile but valid names distinct, each with its own files inside the store directory, and nothing outside', async function () {
      const manager = make();
      for (const [i, name] of HOSTILE_VALID_NAMES.entries()) {
        const cache = await manager.registerCache(name);
        cache.set('i', i);
      }
      await manager.saveAll();
      await manager.close();
      // Nothing was created next to the store directory (root holds only it).
      expect(await readdir(root)).to.deep.equal(['store']);
      const stems = (await readdir(dir)).filter((entry) => entry.endsWith('.cgc'));
      expect(stems).to.have.length(HOSTILE_VALID_NAMES.length);
      // Distinct even where the file system ignores case.
      expect(new Set(stems.map((s) => s.toLowerCase())).size).to.equal(HOSTILE_VALID_NAMES.length);
      for (const name of HOSTILE_VALID_NAMES) expect(path.dirname(manager.store.locate(name))).to.equal(dir);
      const again = make();
      for (const [i, name] of HOSTILE_VALID_NAMES.entries()) expect((await again.registerCache(name)).get('i'), JSON.stringify(name)).to.equal(i);
      expect((await again.store.list()).sort()).to.deep.equal([...HOSTILE_VALID_NAMES].sort());
    });

    it('refuses bad cache options naming the option and the cache, and leaves the graph and the files as they were', async function () {
      const manager = await populated();
      const before = await stateOf(manager, dir, ['users', 'stats', 'c', 'a']);
      const fn = (): undefined => undefined;
      const cases: Array<[object, ErrorClass, ErrorCode, readonly string[]]> = [
        [{ persistent: 'yes' }, InvalidOptionError, 'E_INVALID_OPTION', ["'persistent'", '"c"']],
        [{ dependsOn: 'users' }, InvalidOptionError, 'E_INVALID_OPTION', ["'dependsOn'", '"c"']],
        [{ dependsOn: ['users', ''] }, InvalidOptionError, 'E_INVALID_OPTION', ["'dependsOn.1'", '"c"']],
        [{ dependsOn: ['users', 'a\u0000'] }, InvalidOptionError, 'E_INVALID_OPTION', ["'dependsOn.1'"]],
        // A cycle through the new cache: the first link was added, and must be taken back.
        [{ dependsOn: ['a', 'c'] }, DependencyCycleError, 'E_DEPENDENCY_CYCLE', ['"c" -> "c"']],
        [{ loader: 5 }, InvalidOptionError, 'E_INVALID_OPTION', ["'loader'"]],
        [{ saver: 'save' }, InvalidOptionError, 'E_INVALID_OPTION', ["'saver'"]],
        [{ builder: {} }, InvalidOptionError, 'E_INVALID_OPTION', ["'builder'"]],
        [{ validator: true }, InvalidOptionError, 'E_INVALID_OPTION', ["'validator'"]],
        [{ deleter: [] }, InvalidOptionError, 'E_INVALID_OPTION', ["'deleter'"]],
        [{ persistent: false, loader: fn }, InvalidOptionError, 'E_INVALID_OPTION', ["'loader'", 'persistent: false']],
        [{ persistent: false, deleter: fn }, InvalidOptionError, 'E_INVALID_OPTION', ["'deleter'"]],
        ...[0, -1, 1.5, 2 ** 31 + 1, Number.NaN, Number.POSITIVE_INFINITY, '10'].map((maxEntries) => [{ maxEntries }, InvalidOptionError, 'E_INVALID_OPTION', ["'maxEntries'", '"c"']] as [object, ErrorClass, ErrorCode, string[]]),
        ...[0, -5, '5 minutes', '1y', '-1s', Number.POSITIVE_INFINITY, 101 * 365 * 86_400_000, null].map((ttl) => [{ ttl }, InvalidOptionError, 'E_INVALID_OPTION', ["'ttl'", '"c"']] as [object, ErrorClass, ErrorCode, string[]]),
        [{ autoSync: { rules: [{ seconds: -1, changes: 1 }] } }, InvalidOptionError, 'E_INVALID_OPTION', ["'autoSync"]],
        [{ colour: 'red' }, InvalidOptionError, 'E_INVALID_OPTION', ["'colour'", '"c"']],
        [{ contents: 42 }, InvalidContentsError, 'E_INVALID_CONTENTS', ['"c"', 'contents']],
        [{ contents: [['k']] }, InvalidContentsError, 'E_INVALID_CONTENTS', ['"c"']],
        [{ builder: () => 42 }, InvalidContentsError, 'E_INVALID_CONTENTS', ['"c"', 'builder']],
        [{ builder: () => { throw new Error('boom'); } }, HookError, 'E_HOOK_FAILED', ['builder', '"c"', 'boom']],
        [{ validator: () => { throw new Error('no'); }, builder: () => { throw new Error('boom'); } }, HookError, 'E_HOOK_FAILED', ['"c"']],
        [{ loader: () => { throw new Error('gone'); } }, HookError, 'E_HOOK_FAILED', ['loader', '"c"', 'gone']],
      ];
      for (const [options, Class, code, culprits] of cases) {
        const where = `options ${JSON.stringify(options)}`;
        const error = await rejected(manager.registerCache('c', options as never), where);
        expectTyped(error, Class, code, culprits, where);
        if (error instanceof InvalidOptionError) expect(error.cacheName, where).to.equal('c');
        expect(manager.hasCache('c'), where).to.equal(false);
        expect(await stateOf(manager, dir, ['users', 'stats', 'c', 'a']), where).to.equal(before);
      }
      // And the name is free: a good registration works, with its links.
      await manager.registerCache('c', { dependsOn: ['users'] });
      expect(manager.dependentsOf('users')).to.include('c');
    });

    it('refuses a second registration of a name (E_CACHE_EXISTS), keeping the first cache and its contents', async function () {
      const manager = await populated();
      const before = await stateOf(manager, dir, ['users', 'stats']);
      const first = manager.getCache('users');
      expectTyped(await rejection(manager.registerCache('users', { dependsOn: ['stats'] })), CacheExistsError, 'E_CACHE_EXISTS', ['"users"'], 'twice');
      // Concurrent registrations of one name: one wins.
      const results = await Promise.allSettled([manager.registerCache('twin'), manager.registerCache('twin')]);
      expect(results.map((r) => r.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
      expect(manager.getCache('users')).to.equal(first);
      expect((await stateOf(manager, dir, ['users', 'stats'])).replace(/,?"twin: [^"]*"/, '')).to.equal(before);
    });
  });

  describe('Cache methods', function () {
    it('set() refuses unencodable keys and values with E_UNSERIALIZABLE naming the key and the path, changing nothing', async function () {
      const manager = await populated();
      const users = manager.getCache<unknown, unknown>('users');
      const before = await stateOf(manager, dir, ['users']);
      const expiry = users.expiresAt('u2');
      const cases: Array<[unknown, unknown, readonly string[]]> = [
        ['u1', () => 1, ['"u1"', 'function']],
        ['u1', { nested: { fn: () => 1 } }, ['"u1"', '.nested.fn']],
        ['u2', Symbol('s'), ['"u2"', 'symbol']],
        ['u2', new WeakMap(), ['"u2"', 'WeakMap']],
        ['u1', Promise.resolve(1), ['"u1"', 'Promise']],
        ['u1', new Point(1), ['"u1"', 'Point']],
        ['u1', [1, 2, new Point(2)], ['"u1"', '[2]']],
        ['u1', new Map([['k', new WeakSet()]]), ['"u1"', 'WeakSet']],
        [Symbol('key'), 1, ['Symbol(key)']],
        [() => 1, 1, ['function']],
        ['u1', new Proxy({}, {}), ['"u1"', 'Proxy']],
      ];
      for (const [key, value, culprits] of cases) {
        const where = `set(${String(typeof key === 'symbol' ? key.toString() : key)}, …)`;
        const error = thrown(() => users.set(key, value));
        expectTyped(error, UnserializableError, 'E_UNSERIALIZABLE', culprits, where);
        expect((error as UnserializableError).cacheName, where).to.equal('users');
      }
      expect(users.expiresAt('u2')).to.equal(expiry);
      expect(await stateOf(manager, dir, ['users'])).to.equal(before);
    });

    it('set() refuses bad options naming them and the cache, changing nothing (not even the expiry of the entry)', async function () {
      const manager = await populated();
      const users = manager.getCache<unknown, unknown>('users');
      const before = await stateOf(manager, dir, ['users']);
      const expiry = users.expiresAt('u2');
      const cases: Array<[unknown, string]> = [
        [{ ttl: -1 }, "'ttl'"],
        [{ ttl: 0 }, "'ttl'"],
        [{ ttl: 'soon' }, "'ttl'"],
        [{ ttl: Number.NaN }, "'ttl'"],
        [{ ttl: '101y' }, "'ttl'"],
        [{ tll: 5 }, "'tll'"],
      ];
      for (const [options, culprit] of cases) {
        const where = `set('u2', …, ${JSON.stringify(options)})`;
        const error = thrown(() => users.set('u2', 'changed', options as never));
        expectTyped(error, InvalidOptionError, 'E_INVALID_OPTION', [culprit, '"users"'], where);
      }
      expect(users.get('u2')).to.deep.equal({ name: 'Grace' });
      expect(users.expiresAt('u2')).to.equal(expiry);
      expect(await stateOf(manager, dir, ['users'])).to.equal(before);
    });

    it('getOrBuild()/fetch() refuse a build that is not a function, and a failing build stores nothing', async function () {
      const manager = await populated();
      const users = manager.getCache<unknown, unknown>('users');
      const before = await stateOf(manager, dir, ['users']);
      expectTyped(await rejection(users.getOrBuild('u9', 'build' as never)), InvalidOptionError, 'E_INVALID_OPTION', ["'build'", '"users"'], 'getOrBuild');
      const boom = await rejection(users.getOrBuild('u9', () => Promise.reject(new Error('boom'))));
      expect(boom.message).to.equal('boom');
      // A build result the codec refuses is not stored either.
      expectTyped(await rejection(users.getOrBuild('u9', () => () => 1)), UnserializableError, 'E_UNSERIALIZABLE', ['"u9"'], 'build result');
      expect(users.has('u9')).to.equal(false);
      expect(await stateOf(manager, dir, ['users'])).to.equal(before);
    });

    it('huge values: a 64 MiB value and a 4 000 000-character key are saved in chunks and load back; the cache saves incrementally afterwards', async function () {
      this.timeout(120_000);
      const manager = make();
      const cache = await manager.registerCache<string, unknown>('huge');
      const bigKey = 'k'.repeat(4_000_000);
      const blob = Buffer.alloc(64 * 1024 * 1024, 7);
      cache.set('blob', blob).set(bigKey, 'big key').set('small', 1);
      await manager.save('huge');
      cache.set('small', 2);
      await manager.save('huge');
      await manager.close();
      const again = make();
      const loaded = await again.registerCache<string, unknown>('huge');
      expect(Buffer.compare(loaded.get('blob') as Buffer, blob)).to.equal(0);
      expect(loaded.get(bigKey)).to.equal('big key');
      expect(loaded.get('small')).to.equal(2);
    });
  });

  describe('manager operations', function () {
    it('refuse unknown caches with E_UNKNOWN_CACHE naming them, and never create one', async function () {
      const manager = await populated();
      const before = await stateOf(manager, dir, ['users', 'stats', 'nope']);
      for (const name of ['nope', '__proto__', 'constructor', '', 'a\u0000b']) {
        const where = JSON.stringify(name);
        expectTyped(thrown(() => manager.getCache(name)), UnknownCacheError, 'E_UNKNOWN_CACHE', [JSON.stringify(name)], where);
        for (const op of ['invalidate', 'reload', 'save', 'deleteSaved', 'deregister'] as const) {
          expectTyped(await rejection(manager[op](name)), UnknownCacheError, 'E_UNKNOWN_CACHE', [JSON.stringify(name)], `${op}(${where})`);
        }
        expect(manager.hasCache(name), where).to.equal(false);
      }
      expect(await stateOf(manager, dir, ['users', 'stats', 'nope'])).to.equal(before);
    });

    it('refuse bad operation options naming them before doing anything', async function () {
      const manager = await populated();
      const before = await stateOf(manager, dir, ['users', 'stats']);
      const events: unknown[] = [];
      for (const event of ['cache:invalidated', 'cache:loaded', 'sync:start', 'cache:saved-deleted'] as const) manager.on(event, (e: unknown) => events.push(e));
      for (const op of ['invalidate', 'reload', 'save', 'deleteSaved'] as const) {
        for (const [options, culprit] of [[{ cascade: 'yes' }, "'cascade'"], [{ cascad: true }, "'cascad'"], [7, '(root)'], ['x', '(root)']] as const) {
          const where = `${op}('users', ${JSON.stringify(options)})`;
          expectTyped(await rejection(manager[op]('users', options as never)), InvalidOptionError, 'E_INVALID_OPTION', [culprit], where);
        }
      }
      expect(events).to.deep.equal([]);
      expect(await stateOf(manager, dir, ['users', 'stats'])).to.equal(before);
    });

    it('refuse a dependency cycle with E_DEPENDENCY_CYCLE carrying its path, adding no link', async function () {
      const manager = await populated();
      manager.registerDependentCache('stats', 'report');
      const before = await stateOf(manager, dir, ['users', 'stats', 'report']);
      for (const [parent, dependent, cycle] of [
        ['report', 'users', ['users', 'stats', 'report', 'users']],
        ['users', 'users', ['users', 'users']],
        ['stats', 'users', ['users', 'stats', 'users']],
      ] as const) {
        const error = thrown(() => manager.registerDependentCache(parent, dependent));
        expectTyped(error, DependencyCycleError, 'E_DEPENDENCY_CYCLE', cycle.map((n) => JSON.stringify(n)), `${parent} -> ${dependent}`);
        expect(new Set((error as DependencyCycleError).cyclePath)).to.deep.equal(new Set(cycle));
      }
      expect(await stateOf(manager, dir, ['users', 'stats', 'report'])).to.equal(before);
    });

    it('after close(), refuse every write with E_CLOSED naming the manager or the cache; reads still answer', async function () {
      const manager = await populated();
      const users = manager.getCache('users');
      await manager.close();
      const files = await filesUnder(dir);
      expectTyped(await rejection(manager.registerCache('late')), ClosedError, 'E_CLOSED', ['"bad"'], 'registerCache');
      for (const op of ['invalidate', 'reload', 'save', 'deleteSaved', 'deregister'] as const) {
        expectTyped(await rejection(manager[op]('users')), ClosedError, 'E_CLOSED', [], op);
      }
      expectTyped(thrown(() => users.set('x', 1)), ClosedError, 'E_CLOSED', ['"users"'], 'set');
      expectTyped(thrown(() => users.delete('u1')), ClosedError, 'E_CLOSED', ['"users"'], 'delete');
      expectTyped(thrown(() => users.clear()), ClosedError, 'E_CLOSED', ['"users"'], 'clear');
      expect(users.get('u1')).to.deep.equal({ name: 'Ada' });
      expect(await filesUnder(dir)).to.deep.equal(files);
    });
  });

  describe('#memoize() and #proxy()', function () {
    it('memoize() refuses bad options naming them, and registers no cache', async function () {
      const manager = make();
      const price = (symbol: string): number => symbol.length;
      const cases: Array<[unknown, string]> = [
        [{ ttl: -1 }, 'ttl'],
        [{ ttl: 'forever' }, 'ttl'],
        [{ maxEntries: 0 }, 'maxEntries'],
        [{ maxEntries: 2.5 }, 'maxEntries'],
        [{ cache: '' }, 'cache'],
        [{ cache: 'a\u0000' }, 'cache'],
        [{ name: '' }, 'name'],
        [{ name: 5 }, 'name'],
        [{ version: {} }, 'version'],
        [{ key: 'k' }, 'key'],
        [{ cacheErrors: 'yes' }, 'cacheErrors'],
        [{ lock: true }, 'lock'],
        [{ lock: { wait: -1 } }, 'lock'],
        [{ lock: { ttl: '1 week' } }, 'lock'],
        [{ lock: { wiat: '1s' } }, 'lock'],
        [{ bogus: 1 }, 'bogus'],
        ['options', ''],
      ];
      for (const [options, option] of cases) {
        const where = `memoize(price, ${JSON.stringify(options)})`;
        const error = thrown(() => manager.memoize(price, options as never));
        expectTyped(error, InvalidOptionError, 'E_INVALID_OPTION', option === '' ? [] : [`'${option}`], where);
      }
      expectTyped(thrown(() => manager.memoize(() => 1)), InvalidOptionError, 'E_INVALID_OPTION', ["'name'", 'anonymous'], 'anonymous');
      for (const notAFunction of [undefined, null, 42, 'fn', {}]) {
        expectTyped(thrown(() => manager.memoize(notAFunction as never)), InvalidOptionError, 'E_INVALID_OPTION', ["'fn'"], String(notAFunction));
      }
      expect(manager.cacheNames()).to.deep.equal([]);
      // Arguments that cannot be keyed: E_MEMO_KEY naming where, nothing computed or stored.
      let calls = 0;
      const keyed = manager.memoize((value: unknown) => ++calls, { name: 'keyed' });
      for (const [arg, where] of [[new Point(1), 'Point'], [() => 1, 'function'], [Symbol('s'), 'symbol'], [{ a: { b: new WeakMap() } }, '.a.b']] as const) {
        expectTyped(await rejection(Promise.resolve().then(() => keyed(arg))), MemoKeyError, 'E_MEMO_KEY', [where], String(where));
      }
      const cyclic: Record<string, unknown> = {};
      cyclic['self'] = cyclic;
      expectTyped(await rejection(Promise.resolve().then(() => keyed(cyclic))), MemoKeyError, 'E_MEMO_KEY', ['cycle'], 'cycle');
      expect(calls).to.equal(0);
    });

    it('proxy() refuses bad options and targets naming them; a corrected call afterwards works', async function () {
      const manager = make();
      const repo = {
        items: ['a'],
        async list(): Promise<string[]> {
          return [...this.items];
        },
        async add(item: string): Promise<void> {
          this.items.push(item);
        },
        size: 1,
      };
      const cases: Array<[unknown, unknown, string]> = [
        [repo, {}, 'methods'],
        [repo, { methods: 'list' }, 'methods'],
        [repo, { methods: ['list', 'nope'] }, 'methods.1'],
        [repo, { methods: ['size'] }, 'methods.0'],
        [repo, { methods: ['list', 'list'] }, 'methods.1'],
        [repo, { methods: ['list'], invalidates: { add: 'list' } }, 'invalidates'],
        [repo, { methods: ['list'], invalidates: { add: ['nope'] } }, 'invalidates.add.0'],
        [repo, { methods: ['list'], invalidates: { list: ['list'] } }, 'invalidates.list'],
        [repo, { methods: ['list'], invalidates: { nope: ['list'] } }, 'invalidates.nope'],
        [repo, { methods: ['list'], ttl: 0 }, 'ttl'],
        [repo, { methods: ['list'], colour: 'red' }, 'colour'],
        [null, { methods: ['list'] }, 'target'],
        [42, { methods: ['list'] }, 'target'],
      ];
      for (const [target, options, option] of cases) {
        const where = `proxy(${String(target === repo ? 'repo' : target)}, ${JSON.stringify(options)})`;
        const error = thrown(() => manager.proxy(target as never, options as never), where);
        expectTyped(error, InvalidOptionError, 'E_INVALID_OPTION', [`'${option}`], where);
      }
      expect(manager.cacheNames()).to.deep.equal([]);
      const proxy = manager.proxy(repo, { methods: ['list'], invalidates: { add: ['list'] } });
      expect(await proxy.list()).to.deep.equal(['a']);
      await proxy.add('b');
      expect(await proxy.list()).to.deep.equal(['a', 'b']);
    });
  });

  describe('parseDuration() and validateCacheName()', function () {
    it('parseDuration() parses the documented forms exactly and answers undefined for everything else', function () {
      const good: Array<[unknown, number]> = [[1, 1], [0.2, 1], ['500ms', 500], ['10s', 10_000], ['1.5s', 1_500], ['10m', 600_000], ['1h', 3_600_000], ['2d', 172_800_000], [' 3s ', 3_000]];
      for (const [input, ms] of good) expect(parseDuration(input), JSON.stringify(input)).to.equal(ms);
      const bad = [undefined, null, '', '10', '10 s', 's', '-5s', '1e3ms', '0s', 0, -1, -0, Number.NaN, Number.POSITIVE_INFINITY, '101y', `${101 * 365}d`, 101 * 365 * 86_400_000, {}, [], [10], true, 10n, Symbol('1s'), '1h30m', '1H', '١s'];
      for (const input of bad) expect(parseDuration(input), typeof input === 'symbol' || typeof input === 'bigint' ? typeof input : JSON.stringify(input)).to.equal(undefined);
    });

    it(`parseDuration() never throws, and answers undefined or a positive integer of at most 100 years (${runs(2_000, 50_000)} random inputs)`, function () {
      fc.assert(
        fc.property(fc.oneof(fc.anything(), fc.double(), fc.stringMatching(/^-?\d{0,12}(\.\d{0,4})?(ms|s|m|h|d|y)?$/)), (input) => {
          const ms = parseDuration(input);
          if (ms !== undefined) {
            expect(Number.isInteger(ms)).to.equal(true);
            expect(ms).to.be.within(1, 100 * 365 * 86_400_000);
          }
        }),
        { numRuns: runs(2_000, 50_000) },
      );
    });

    it(`validateCacheName() accepts exactly the non-empty, well-formed strings of at most ${MAX_CACHE_NAME_LENGTH} characters without control characters, and throws E_INVALID_NAME for the rest (${runs(2_000, 50_000)} random inputs)`, function () {
      const reference = (name: unknown): boolean =>
        // eslint-disable-next-line no-control-regex
        typeof name === 'string' && name.length > 0 && name.length <= MAX_CACHE_NAME_LENGTH && !/[\u0000-\u001f\u007f]/.test(name) && name.isWellFormed();
      fc.assert(
        fc.property(fc.oneof(fc.anything(), fc.string({ unit: 'binary', maxLength: 8 }), fc.string({ unit: fc.constantFrom('a', '\u0000', '\uD800', '\uDC00', '/', '.'), maxLength: 4 }), fc.constant('x'.repeat(MAX_CACHE_NAME_LENGTH + 1))), (name) => {
          let error: unknown;
          try {
            validateCacheName(name);
          } catch (e) {
            error = e;
          }
          if (reference(name)) expect(error).to.equal(undefined);
          else expectTyped(error, InvalidNameError, 'E_INVALID_NAME', ['Invalid cache name'], 'random name');
        }),
        { numRuns: runs(2_000, 50_000) },
      );
    });
  });

  describe('stores', function () {
    it('new FileStore() refuses bad options naming them and touches no disk', async function () {
      const target = path.join(root, 'fs');
      const cases: Array<[unknown, string]> = [
        [undefined, ''],
        [{}, 'dir'],
        [{ dir: '' }, 'dir'],
        [{ dir: 5 }, 'dir'],
        [{ dir: target, fileMode: 0o1000 }, 'fileMode'],
        [{ dir: target, fileMode: -1 }, 'fileMode'],
        [{ dir: target, fileMode: '600' }, 'fileMode'],
        [{ dir: target, dirMode: 1.5 }, 'dirMode'],
        [{ dir: target, appendfsync: 'sometimes' }, 'appendfsync'],
        [{ dir: target, compaction: true }, 'compaction'],
        [{ dir: target, compaction: { minDeadRatio: 0 } }, 'compaction'],
        [{ dir: target, compaction: { minDeadRatio: 1.5 } }, 'compaction'],
        [{ dir: target, compaction: { minDeadBytes: -1 } }, 'compaction'],
        [{ dir: target, compaction: { worker: 'yes' } }, 'compaction'],
        [{ dir: target, compaction: { everySecond: true } }, 'compaction'],
        [{ dir: target, readOnly: 1 }, 'readOnly'],
        [{ dir: target, lockTimeout: -1 }, 'lockTimeout'],
        [{ dir: target, lockTimeout: 0.5 }, 'lockTimeout'],
        [{ dir: target, timers: { setTimeout } }, 'timers'],
        [{ dir: target, bogus: true }, 'bogus'],
      ];
      for (const [options, option] of cases) {
        const where = `new FileStore(${JSON.stringify(options)})`;
        const error = thrown(() => new FileStore(options as never));
        expectTyped(error, InvalidOptionError, 'E_INVALID_OPTION', ['FileStore'], where);
        expect((error as InvalidOptionError).option.startsWith(option), `${where}: ${(error as InvalidOptionError).option}`).to.equal(true);
      }
      expect(await readdir(root)).to.deep.equal([]);
    });

    it('FileStore and MemoryStore methods refuse invalid names and entries with typed errors, keeping the saved copy', async function () {
      const ctx = { codec: v8Codec, clock: { now: () => Date.now() } };
      for (const store of [new FileStore({ dir }), new MemoryStore()]) {
        try {
          await store.save('users', [['u1', 'Ada', 0]], ctx);
          const before = (await store.load('users', ctx))?.entries;
          // A FileStore encodes any other string (the manager refuses control characters before
          // them); a MemoryStore keys a Map, where every string is a name.
          for (const name of store instanceof FileStore ? ['', '\uD800', 'a\uDC00b'] : []) {
            const where = `${store.kind} ${JSON.stringify(name)}`;
            expectTyped(await rejected(Promise.resolve().then(() => store.load(name as string, ctx)), `load ${where}`), InvalidNameError, 'E_INVALID_NAME', [], `load ${where}`);
            expectTyped(await rejected(Promise.resolve().then(() => store.save(name as string, [], ctx)), `save ${where}`), InvalidNameError, 'E_INVALID_NAME', [], `save ${where}`);
            expectTyped(thrown(() => store.locate(name as string), `locate ${where}`), InvalidNameError, 'E_INVALID_NAME', [], `locate ${where}`);
          }
          for (const entries of [[['k']], [['k', 1, 'never']], [42], [['k', () => 1, 0]]]) {
            const where = `${store.kind} save(${JSON.stringify(entries)})`;
            const error = await rejected(Promise.resolve().then(() => store.save('users', entries as never, ctx)), where);
            expect(error, where).to.be.instanceOf(CacheGraphError);
            expect((await store.load('users', ctx))?.entries, where).to.deep.equal(before);
          }
        } finally {
          await store.close();
        }
      }
    });

    it('new RedisStore() refuses bad options naming them, connects nothing, and never echoes the URL password', function () {
      const url = 'redis://app:s3cret-pw@127.0.0.1:6379/0';
      const cases: Array<[unknown, string]> = [
        [{}, 'url'],
        [{ url: 'http://127.0.0.1' }, 'url'],
        [{ url: 'redis://app:s3cret-pw@[::1' }, 'url'],
        [{ url, client: {} }, 'client'],
        [{ url, keyPrefix: 'a{b' }, 'keyPrefix'],
        [{ url, namespace: '' }, 'namespace'],
        [{ url, namespace: 'x}' }, 'namespace'],
        [{ url, connectTimeoutMs: 0 }, 'connectTimeoutMs'],
        [{ url, commandTimeoutMs: -1 }, 'commandTimeoutMs'],
        [{ url, retry: { attempts: 0 } }, 'retry.attempts'],
        [{ url, retry: { attempts: 1001 } }, 'retry.attempts'],
        [{ url, retry: { delayMs: -1 } }, 'retry.delayMs'],
        [{ url, waitAof: { numlocal: 2, numreplicas: 0, timeoutMs: 0 } }, 'waitAof.numlocal'],
        [{ url, waitAof: { numlocal: 1 } }, 'waitAof'],
        [{ url, bogus: 1 }, 'bogus'],
      ];
      for (const [options, option] of cases) {
        const where = `new RedisStore(${option})`;
        const error = thrown(() => new RedisStore(options as never));
        expectTyped(error, InvalidOptionError, 'E_INVALID_OPTION', [`'${option}`], where);
        expect((error as Error).message, where).not.to.include('s3cret-pw');
        expect(String((error as Error).stack), where).not.to.include('s3cret-pw');
      }
    });
  });
});
