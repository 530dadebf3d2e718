/**
 * `manager.proxy(target, options)`: an object that behaves like `target`, except that the
 * listed methods are memoized (by method and arguments) and the `invalidates` methods, after
 * running, drop every stored result of exactly the methods they name.
 *
 * Each cached method is memoized under the name `<prefix>.<method>` (prefix: the `name`
 * option, else the target's class name). Memo keys end the name with `@`, so dropping
 * `getUser`'s results never touches `getUsers`'s.
 *
 * @module
 */
import type { CacheManager } from '../manager.js';
import { InvalidOptionError } from '../errors.js';
import { resolveProxyOptions, type ProxyOptions } from '../options.js';
import type { Memoized } from './memoize.js';

/** The names of `T`'s function-valued members. */
export type MethodKeys<T> = { [P in keyof T]-?: T[P] extends (...args: never[]) => unknown ? P : never }[keyof T] & string;

/**
 * The type of a proxy: `T`, with the cached methods `M` and the invalidating methods `I`
 * returning promises of their results (an invalidating method resolves once the results it
 * drops are dropped).
 *
 * @example
 * const repo: CachedProxy<UserRepo, 'list' | 'byId', 'add'> = manager.proxy(userRepo, { methods: ['list', 'byId'], invalidates: { add: ['list'] } });
 */
export type CachedProxy<T, M extends keyof T, I extends keyof T = never> = {
  [P in keyof T]: P extends M | I ? (T[P] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : T[P]) : T[P];
};

/**
 * Builds the proxy (see `CacheManager.proxy`).
 *
 * @throws InvalidOptionError naming a bad option or a method the target lacks
 * @example
 * createProxy(manager, repo, { methods: ['list'], invalidates: { add: ['list'] } });
 */
export function createProxy<T extends object, M extends MethodKeys<T>, I extends MethodKeys<T>>(
  manager: CacheManager,
  target: T,
  options: ProxyOptions<T, M, I>,
): CachedProxy<T, M, I> {
  if ((typeof target !== 'object' && typeof target !== 'function') || target === null)
    throw new InvalidOptionError('target', `proxy() needs an object, got ${target === null ? 'null' : typeof target}`);
  const o = resolveProxyOptions(options);
  const methodOf = (name: string, option: string): ((...args: unknown[]) => unknown) => {
    const member: unknown = (target as Record<string, unknown>)[name];
    if (typeof member !== 'function')
      throw new InvalidOptionError(option, `the target has no method ${JSON.stringify(name)} (found ${member === null ? 'null' : typeof member})`);
    return member as (...args: unknown[]) => unknown;
  };
  const prefix = o.name ?? (target.constructor as { name?: string } | undefined)?.name ?? 'object';
  // What every cached method is memoized with (besides its name).
  const { methods: _methods, invalidates: _invalidates, name: _name, ...shared } = options;
  const cached = new Map<PropertyKey, Memoized<(...args: unknown[]) => unknown>>();
  // What the proxy hands out: one function per method, so `proxy.list === proxy.list`.
  const members = new Map<PropertyKey, (...args: unknown[]) => unknown>();
  for (const [i, method] of o.methods.entries()) {
    const fn = methodOf(method, `methods.${i}`);
    if (cached.has(method)) throw new InvalidOptionError(`methods.${i}`, `${JSON.stringify(method)} is listed twice`);
    cached.set(
      method,
      manager.memoize(fn, { ...shared, name: `${prefix}.${method}` }),
    );
  }
  for (const [method, memo] of cached) members.set(method, (...args: unknown[]) => memo.apply(target, args));
  for (const [method, drops] of Object.entries(o.invalidates ?? {})) {
    if (cached.has(method)) throw new InvalidOptionError(`invalidates.${method}`, 'a method cannot be both cached and invalidating');
    const fn = methodOf(method, `invalidates.${method}`);
    const victims = drops.map((name, i) => {
      const memo = cached.get(name);
      if (memo === undefined) throw new InvalidOptionError(`invalidates.${method}.${i}`, `${JSON.stringify(name)} is not one of the cached methods`);
      return memo;
    });
    members.set(method, (...args: unknown[]): Promise<unknown> => {
      const dropAll = () => Promise.all(victims.map((memo) => memo.clear()));
      let result: unknown;
      try {
        result = fn.apply(target, args);
      } catch (error) {
        // It may have changed something before it threw.
        return dropAll().then(() => Promise.reject(error));
      }
      return Promise.resolve(result).then(
          async (value: unknown) => {
            await dropAll();
            return value;
          },
          async (error: unknown) => {
            await dropAll();
            throw error;
          },
      );
    });
  }
  // Other members are the target's own, read and called on the target itself (so getters,
  // private fields and built-ins such as Map work), one bound function per method.
  const bound = new Map<(...args: unknown[]) => unknown, (...args: unknown[]) => unknown>();
  const proxy = new Proxy(target, {
    get(t, property) {
      const member = members.get(property);
      if (member !== undefined) return member;
      const value: unknown = Reflect.get(t, property, t);
      if (typeof value !== 'function' || property === 'constructor') return value;
      const fn = value as (...args: unknown[]) => unknown;
      let b = bound.get(fn);
      if (b === undefined) bound.set(fn, (b = fn.bind(t)));
      return b;
    },
  });
  return proxy as unknown as CachedProxy<T, M, I>;
}
