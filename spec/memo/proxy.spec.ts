import { expect } from 'chai';
import sinon from 'sinon';
import { InvalidOptionError } from '../../lib/index.js';
import { rejection, useManagers } from '../helpers.js';

interface User {
  id: number;
  name: string;
}

/** A repository in the style of pussycache's example: slow reads, writes that change them. */
class UserRepo {
  readonly users = new Map<number, User>([[1, { id: 1, name: 'Ada' }]]);
  readonly label = 'repo';
  reads = 0;

  async getUser(id: number): Promise<User | undefined> {
    this.reads++;
    return this.users.get(id);
  }

  async getUsers(filter: { prefix?: string; limit?: number } = {}): Promise<User[]> {
    this.reads++;
    return [...this.users.values()].filter((u) => u.name.startsWith(filter.prefix ?? '')).slice(0, filter.limit ?? 100);
  }

  findNothing(): null {
    this.reads++;
    return null;
  }

  async addUser(user: User): Promise<void> {
    this.users.set(user.id, user);
  }

  renameSync(id: number, name: string): number {
    const user = this.users.get(id);
    if (user !== undefined) this.users.set(id, { ...user, name });
    return id;
  }

  async failingWrite(): Promise<void> {
    this.users.clear();
    throw new Error('write failed half way');
  }

  describe(): string {
    return `${this.label} with ${this.users.size} users`;
  }
}

describe('CacheManager#proxy()', () => {
  const fx = useManagers();

  function setup() {
    const manager = fx.make();
    const repo = new UserRepo();
    const proxy = manager.proxy(repo, {
      cache: 'repo',
      methods: ['getUser', 'getUsers', 'findNothing'],
      invalidates: { addUser: ['getUsers'], renameSync: ['getUser', 'getUsers'], failingWrite: ['getUsers'] },
    });
    return { manager, repo, proxy };
  }

  it('caches the listed methods by method and arguments', async () => {
    const { repo, proxy } = setup();
    expect(await proxy.getUser(1)).to.deep.equal({ id: 1, name: 'Ada' });
    expect(await proxy.getUser(1)).to.deep.equal({ id: 1, name: 'Ada' });
    expect(repo.reads).to.equal(1);
    await proxy.getUser(2);
    await proxy.getUsers();
    expect(repo.reads).to.equal(3);
  });

  it('treats option objects in any key order as the same call (sorted kwargs)', async () => {
    const { repo, proxy } = setup();
    await proxy.getUsers({ prefix: 'A', limit: 5 });
    await proxy.getUsers({ limit: 5, prefix: 'A' });
    expect(repo.reads).to.equal(1);
  });

  it('caches null and undefined results as values, not misses', async () => {
    const { repo, proxy } = setup();
    expect(await proxy.getUser(99)).to.equal(undefined);
    expect(await proxy.getUser(99)).to.equal(undefined);
    expect(await proxy.findNothing()).to.equal(null);
    expect(await proxy.findNothing()).to.equal(null);
    expect(repo.reads).to.equal(2);
  });

  it('an invalidating method drops exactly the listed methods: getUser never clears getUsers', async () => {
    const { repo, proxy } = setup();
    await proxy.getUser(1);
    await proxy.getUsers();
    await proxy.addUser({ id: 2, name: 'Grace' });
    expect(repo.reads).to.equal(2);
    expect((await proxy.getUsers()).map((u) => u.name)).to.deep.equal(['Ada', 'Grace']); // recomputed
    expect(await proxy.getUser(1)).to.deep.equal({ id: 1, name: 'Ada' }); // still cached
    expect(repo.reads).to.equal(3);
  });

  it('a synchronous invalidating method returns a promise of its result, resolved once its targets are dropped', async () => {
    const { repo, proxy } = setup();
    await proxy.getUser(1);
    await proxy.getUsers();
    expect(await proxy.renameSync(1, 'Ada L.')).to.equal(1);
    expect(await proxy.getUser(1)).to.deep.equal({ id: 1, name: 'Ada L.' });
    expect((await proxy.getUsers()).map((u) => u.name)).to.deep.equal(['Ada L.']);
    expect(repo.reads).to.equal(4);
  });

  it('drops the targets even when the invalidating method throws, and rethrows', async () => {
    const { repo, proxy } = setup();
    await proxy.getUsers();
    expect((await rejection(proxy.failingWrite())).message).to.equal('write failed half way');
    expect(await proxy.getUsers()).to.deep.equal([]);
    expect(repo.reads).to.equal(2);
  });

  it('passes other members through untouched', async () => {
    const { repo, proxy } = setup();
    expect(proxy.label).to.equal('repo');
    expect(proxy.describe()).to.equal('repo with 1 users');
    expect(proxy.users).to.equal(repo.users);
    expect(proxy.getUser).to.equal(proxy.getUser); // stable identities
  });

  it('runs pass-through members on the target itself: private fields, getters and built-ins work', async () => {
    const manager = fx.make();
    class Counter {
      #count = 0;
      get count(): number {
        return this.#count;
      }
      bump(): number {
        return ++this.#count;
      }
      async read(): Promise<number> {
        return this.#count;
      }
    }
    const counter = manager.proxy(new Counter(), { methods: ['read'] });
    expect(counter.bump()).to.equal(1);
    expect(counter.count).to.equal(1);
    expect(await counter.read()).to.equal(1);
    const map = manager.proxy(new Map<string, number>([['a', 1]]), { name: 'map', methods: ['get'] });
    expect(map.size).to.equal(1);
    expect(map.has('a')).to.equal(true);
    expect(await map.get('a')).to.equal(1);
  });

  it('keeps the results of two proxies with different names apart', async () => {
    const manager = fx.make();
    const a = new UserRepo();
    const b = new UserRepo();
    b.users.set(1, { id: 1, name: 'Bea' });
    const pa = manager.proxy(a, { name: 'usersA', methods: ['getUser'] });
    const pb = manager.proxy(b, { name: 'usersB', methods: ['getUser'] });
    expect((await pa.getUser(1))?.name).to.equal('Ada');
    expect((await pb.getUser(1))?.name).to.equal('Bea');
  });

  it('applies ttl to the cached results', async () => {
    let now = 1_000_000;
    const manager = fx.make({ clock: { now: () => now } });
    const repo = new UserRepo();
    const proxy = manager.proxy(repo, { methods: ['getUser'], ttl: '1s' });
    await proxy.getUser(1);
    now += 500;
    await proxy.getUser(1);
    now += 600;
    await proxy.getUser(1);
    expect(repo.reads).to.equal(2);
  });

  it('refuses bad options, naming them', () => {
    const manager = fx.make();
    const repo = new UserRepo();
    const spy = sinon.spy(manager, 'memoize');
    expect(() => manager.proxy(repo, { methods: ['nope' as never] })).to.throw(InvalidOptionError).with.property('option', 'methods.0');
    expect(() => manager.proxy(repo, { methods: ['label' as never] })).to.throw(InvalidOptionError, /no method "label"/);
    expect(() => manager.proxy(repo, { methods: ['getUser'], invalidates: { addUser: ['getUsers' as never] } }))
      .to.throw(InvalidOptionError)
      .with.property('option', 'invalidates.addUser.0');
    expect(() => manager.proxy(repo, { methods: ['getUser'], invalidates: { getUser: ['getUser'] } as never })).to.throw(
      InvalidOptionError,
      /both cached and invalidating/,
    );
    expect(() => manager.proxy(repo, { methods: 'getUser' } as never)).to.throw(InvalidOptionError).with.property('option', 'methods');
    expect(() => manager.proxy(null as never, { methods: [] })).to.throw(InvalidOptionError).with.property('option', 'target');
    spy.restore();
  });
});
