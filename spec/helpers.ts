// Shared test helpers: managers in throw-away directories, closed and removed after each test.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheManager, type CacheManagerOptions } from '../lib/index.js';

export interface ManagerFixture {
  /** A fresh directory for the current test. */
  readonly dir: string;
  /** A manager on the test's directory (or the options' own store/dir). */
  make(options?: CacheManagerOptions): CacheManager;
}

/**
 * Call inside a `describe`: every test gets its own temp directory; managers made through
 * the fixture are closed (errors ignored: some tests break them on purpose) and the
 * directory removed afterwards.
 */
export function useManagers(): ManagerFixture {
  let dir = '';
  let made: CacheManager[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-spec-'));
    made = [];
  });
  afterEach(async () => {
    await Promise.allSettled(made.map((m) => m.close()));
    await rm(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return dir;
    },
    make(options: CacheManagerOptions = {}) {
      const manager = new CacheManager({ dir, ...options });
      made.push(manager);
      return manager;
    },
  };
}

/** Collects the payloads of one event, in order. */
export function record<T>(manager: CacheManager, event: Parameters<CacheManager['on']>[0]): T[] {
  const seen: T[] = [];
  manager.on(event, (payload: unknown) => seen.push(payload as T));
  return seen;
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(Error);
    return err as Error;
  }
  throw new Error('expected the promise to reject, but it resolved');
}
