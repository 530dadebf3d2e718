import { expect } from 'chai';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sinon from 'sinon';
import { InvalidOptionError, LockedError, StoreIOError } from '../../lib/errors.js';
import { DirectoryLock, LOCK_FILE_NAME, readLockOwner } from '../../lib/store/lock.js';
import type { AcquireRequest, ChildReply, ReleaseRequest } from '../fixtures/lock-child.js';

const CHILD_SCRIPT = fileURLToPath(new URL('../fixtures/lock-child.ts', import.meta.url));
const ON_LINUX = process.platform === 'linux';
/** Above Linux's largest pid_max (2^22): no process ever has it. */
const NO_SUCH_PID = 2 ** 22 + 1;
const RACERS = 6;
const RACE_ROUNDS = 10;

type RequestBody = Omit<AcquireRequest, 'id'> | Omit<ReleaseRequest, 'id'>;

/** A forked lock-child.ts, serving acquire/release requests over IPC. */
class Child {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly #pending = new Map<number, { resolve: (reply: ChildReply) => void; reject: (error: Error) => void }>();
  #nextId = 0;

  private constructor(child: ChildProcess, pid: number) {
    this.process = child;
    this.pid = pid;
    child.on('message', (reply: ChildReply) => {
      this.#pending.get(reply.id)?.resolve(reply);
      this.#pending.delete(reply.id);
    });
    child.on('exit', (code, signal) => {
      for (const { reject } of this.#pending.values()) reject(new Error(`lock-child ${pid} exited (${code ?? signal})`));
      this.#pending.clear();
    });
  }

  static start(): Promise<Child> {
    const child = fork(CHILD_SCRIPT, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(`lock-child exited early (${code ?? signal})`)));
      child.once('message', (message: { ready: boolean; pid: number }) => {
        child.removeAllListeners('exit');
        resolve(new Child(child, message.pid));
      });
    });
  }

  request(body: RequestBody): Promise<ChildReply> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.process.send({ ...body, id });
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.kill('SIGKILL');
    await exited;
  }
}

/** Victims still running (a failed test may leave some): killed after each test. */
const runningVictims = new Set<ChildProcess>();

/** Runs lock-child.ts as a victim: it takes the lock of `dir` and dies by SIGKILL. Resolves to its pid. */
function killedHolder(dir: string): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD_SCRIPT, 'victim', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  runningVictims.add(child);
  child.once('close', () => runningVictims.delete(child));
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    // 'close': reaped (its pid is free from here on) and its output read to the end.
    child.once('close', (code, signal) => {
      if (signal === 'SIGKILL' && out === 'locked\n' && child.pid !== undefined) resolve(child.pid);
      else reject(new Error(`victim ended with ${code ?? signal}, printed ${JSON.stringify(out)}`));
    });
  });
}

/** A lock record as DirectoryLock writes it, with overrides. */
function lockRecord(fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    pid: NO_SUCH_PID,
    host: os.hostname(),
    startedAt: Date.now() - 60_000,
    token: randomBytes(16).toString('hex'),
    createdAt: Date.now() - 30_000,
    ...fields,
  });
}

/**
 * The takeover claim slot `n` for the current `<dir>/LOCK`, named as lock.ts names it
 * (white box: the "claim" tests below fail if this drifts, since they need a claim to be seen).
 */
async function claimPath(dir: string, n: number): Promise<string> {
  const file = path.join(dir, LOCK_FILE_NAME);
  const stat = await fs.stat(file, { bigint: true });
  const content = await fs.readFile(file);
  const id = createHash('sha256')
    .update(`${stat.dev}:${stat.ino}:${stat.ctimeNs}:${stat.mtimeNs}:${stat.size}\n`)
    .update(content)
    .digest('hex')
    .slice(0, 32);
  return path.join(dir, `${LOCK_FILE_NAME}.takeover-${id}-${n}`);
}

async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/** Waits, in real time, until `condition` holds (for I/O that fake timers do not drive). */
async function until(condition: () => boolean, what: string): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > 5_000) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('DirectoryLock', function () {
  let root: string;
  let dir: string;
  let lockFile: string;
  let children: Child[] = [];
  /** Locks taken by this process or by children, released after each test. */
  let taken: DirectoryLock[] = [];
  let childHeld: { child: Child; dir: string }[] = [];

  before(async function () {
    // tsx children take ~300 ms each to start: start them all at once, reuse them everywhere.
    children = await Promise.all(Array.from({ length: RACERS }, () => Child.start()));
  });

  after(async function () {
    await Promise.all(children.map((child) => child.stop()));
  });

  beforeEach(async function () {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachegraph-lock-'));
    dir = path.join(root, 'store');
    lockFile = path.join(dir, LOCK_FILE_NAME);
    taken = [];
    childHeld = [];
  });

  afterEach(async function () {
    await Promise.allSettled(taken.map((lock) => lock.release()));
    await Promise.allSettled(childHeld.map(({ child, dir: held }) => child.request({ op: 'release', dir: held })));
    await Promise.all(
      [...runningVictims].map((victim) => new Promise((resolve) => victim.once('close', resolve).kill('SIGKILL'))),
    );
    await fs.rm(root, { recursive: true, force: true, maxRetries: 3 });
  });

  async function acquire(target: string, options: Parameters<typeof DirectoryLock.acquire>[1] = {}): Promise<DirectoryLock> {
    const lock = await DirectoryLock.acquire(target, options);
    taken.push(lock);
    return lock;
  }

  async function childAcquire(child: Child, target: string, extra: { timeoutMs?: number; pollMs?: number; at?: number } = {}): Promise<ChildReply> {
    const reply = await child.request({ op: 'acquire', dir: target, ...extra });
    if (reply.ok) childHeld.push({ child, dir: target });
    return reply;
  }

  async function writeLock(content: string): Promise<void> {
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(lockFile, content);
  }

  describe('.acquire()', function () {
    it('creates <dir> (0700) and <dir>/LOCK (0600) recording pid, host, process start, token and creation time', async function () {
      const before = Date.now();
      const lock = await acquire(dir);
      expect(lock.path).to.equal(lockFile);
      expect(lock.tookOverStaleLock).to.equal(false);
      expect(lock.staleLock).to.equal(undefined);
      expect((await fs.stat(dir)).mode & 0o777).to.equal(0o700);
      expect((await fs.lstat(lockFile)).mode & 0o777).to.equal(0o600);
      const record = JSON.parse(await fs.readFile(lockFile, 'utf8')) as Record<string, unknown>;
      expect(record['pid']).to.equal(process.pid);
      expect(record['host']).to.equal(os.hostname());
      expect(record['token']).to.match(/^[0-9a-f]{32}$/);
      expect(record['startedAt']).to.be.closeTo(Date.now() - process.uptime() * 1000, 2_000);
      expect(record['createdAt']).to.be.within(before, Date.now());
      expect(lock.owner).to.deep.equal({ pid: process.pid, host: os.hostname(), startedAt: record['startedAt'], createdAt: record['createdAt'] });
    });

    it('fails at once with E_LOCKED naming this pid and host when this process already holds the lock', async function () {
      await acquire(dir);
      const error = await rejectionOf(acquire(dir));
      expect(error).to.be.instanceOf(LockedError);
      expect(error).to.include({ code: 'E_LOCKED', path: lockFile, ownerPid: process.pid, ownerHost: os.hostname() });
      expect(error.message).to.include(`process ${process.pid} on ${os.hostname()}`);
    });

    it('makes a child process fail with E_LOCKED naming this process', async function () {
      await acquire(dir);
      const [child] = children as [Child];
      const reply = await childAcquire(child, dir);
      expect(reply).to.deep.include({ ok: false, code: 'E_LOCKED', ownerPid: process.pid, ownerHost: os.hostname() });
    });

    it('fails with E_LOCKED naming the child process that holds the lock', async function () {
      const [child] = children as [Child];
      expect(await childAcquire(child, dir)).to.deep.include({ ok: true, tookOverStaleLock: false });
      const error = await rejectionOf(acquire(dir));
      expect(error).to.include({ code: 'E_LOCKED', ownerPid: child.pid, ownerHost: os.hostname() });
      expect(await readLockOwner(dir)).to.deep.include({ live: true, reason: 'running' });
    });

    it('waits up to timeoutMs and gets the lock when the holder releases in time', async function () {
      const [child] = children as [Child];
      expect(await childAcquire(child, dir)).to.deep.include({ ok: true });
      const started = performance.now();
      const waiting = acquire(dir, { timeoutMs: 5_000, pollMs: 20 });
      await new Promise((resolve) => setTimeout(resolve, 250));
      await child.request({ op: 'release', dir });
      const lock = await waiting;
      const waited = performance.now() - started;
      expect(waited).to.be.within(240, 2_000);
      expect(lock.tookOverStaleLock).to.equal(false);
      expect((await readLockOwner(dir))?.owner?.pid).to.equal(process.pid);
    });

    it('fails with E_LOCKED after timeoutMs when the holder keeps the lock', async function () {
      const [child] = children as [Child];
      expect(await childAcquire(child, dir)).to.deep.include({ ok: true });
      const started = performance.now();
      const error = await rejectionOf(acquire(dir, { timeoutMs: 300, pollMs: 50 }));
      expect(performance.now() - started).to.be.within(290, 2_000);
      expect(error).to.include({ code: 'E_LOCKED', ownerPid: child.pid });
    });

    it('polls with the injected timers, so sinon fake timers drive the wait and none is left', async function () {
      const holder = await acquire(dir);
      const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      try {
        let settled = false;
        const waiting = DirectoryLock.acquire(dir, { timeoutMs: 1_000, pollMs: 100 }).finally(() => (settled = true));
        await until(() => clock.countTimers() === 1, 'the first poll is scheduled');
        await clock.tickAsync(100);
        await until(() => clock.countTimers() === 1, 'the second poll is scheduled');
        expect(settled).to.equal(false);
        await holder.release();
        await clock.tickAsync(100);
        const lock = await waiting;
        taken.push(lock);
        expect(clock.countTimers()).to.equal(0);

        // And the deadline: nothing but fake time passes, yet it gives up after timeoutMs.
        const timingOut = rejectionOf(DirectoryLock.acquire(dir, { timeoutMs: 1_000, pollMs: 100 }));
        let error: Error | undefined;
        void timingOut.then((e) => (error = e));
        for (let tick = 0; tick < 20 && error === undefined; tick++) {
          await until(() => clock.countTimers() === 1 || error !== undefined, 'a poll is scheduled or the wait ends');
          if (error === undefined) await clock.tickAsync(100);
        }
        await until(() => error !== undefined, 'the wait ends');
        expect(error).to.include({ code: 'E_LOCKED', ownerPid: process.pid });
        expect(clock.now).to.equal(1_200); // 200 ms of the first wait, then timeoutMs
        expect(clock.countTimers()).to.equal(0);
      } finally {
        clock.restore();
      }
    });

    it('rejects invalid options, naming them', async function () {
      for (const [options, option] of [
        [{ timeoutMs: -1 }, 'timeoutMs'],
        [{ timeoutMs: 1.5 }, 'timeoutMs'],
        [{ pollMs: 0 }, 'pollMs'],
        [{ clock: {} }, 'clock'],
        [{ timers: { setTimeout: () => 0 } }, 'timers'],
        [{ timeout: 5 }, 'timeout'],
      ] as const) {
        const error = await rejectionOf(DirectoryLock.acquire(dir, options as never));
        expect(error, JSON.stringify(options)).to.be.instanceOf(InvalidOptionError).and.include({ option });
      }
    });
  });

  describe('stale locks', function () {
    it('takes over the lock of a process killed with SIGKILL, and reports its owner', async function () {
      const victim = await killedHolder(dir);
      expect(await readLockOwner(dir)).to.deep.include({ live: false, reason: 'no-such-process' });
      const lock = await acquire(dir);
      expect(lock.tookOverStaleLock).to.equal(true);
      expect(lock.staleLock).to.deep.include({ path: lockFile, live: false, reason: 'no-such-process' });
      expect(lock.staleLock?.owner).to.include({ pid: victim, host: os.hostname() });
      expect(JSON.parse(await fs.readFile(lockFile, 'utf8'))).to.include({ pid: process.pid });
      expect(await fs.readdir(dir)).to.deep.equal([LOCK_FILE_NAME]);
    });

    it('takes over a lock naming a running pid whose start time differs (the pid was reused)', async function () {
      await writeLock(lockRecord({ pid: process.ppid, startedAt: 1_000 }));
      expect(await readLockOwner(dir)).to.deep.include({ live: false, reason: 'pid-reused' });
      const lock = await acquire(dir);
      expect(lock.staleLock).to.deep.include({ reason: 'pid-reused' });
      expect(lock.staleLock?.owner?.pid).to.equal(process.ppid);
    });

    it('takes over a lock naming this very pid with another start time', async function () {
      await writeLock(lockRecord({ pid: process.pid, startedAt: 1_000 }));
      const lock = await acquire(dir);
      expect(lock.staleLock).to.deep.include({ reason: 'pid-reused' });
    });

    it('on Linux, tells reuse by start ticks and boot id, whatever the wall clock says', async function () {
      if (!ON_LINUX) this.skip();
      const bootId = (await fs.readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
      const [child] = children as [Child];
      expect(await childAcquire(child, dir)).to.deep.include({ ok: true });
      const real = JSON.parse(await fs.readFile(lockFile, 'utf8')) as Record<string, number | string>;
      expect(real).to.include({ bootId });

      // The wall clock stepped an hour since the child wrote its lock: still the same process.
      await fs.writeFile(lockFile, JSON.stringify({ ...real, startedAt: Number(real['startedAt']) + 3_600_000 }));
      expect(await rejectionOf(acquire(dir))).to.include({ code: 'E_LOCKED', ownerPid: child.pid });

      // Same pid, another start tick: another process.
      await fs.writeFile(lockFile, JSON.stringify({ ...real, startTicks: Number(real['startTicks']) + 1 }));
      expect(await readLockOwner(dir)).to.deep.include({ live: false, reason: 'pid-reused' });

      // Same pid and tick, but from an earlier boot.
      await fs.writeFile(lockFile, JSON.stringify({ ...real, bootId: 'an-earlier-boot' }));
      expect(await readLockOwner(dir)).to.deep.include({ live: false, reason: 'pid-reused' });

      // A lock from another pid namespace (a container with our host name) cannot be checked.
      await fs.writeFile(lockFile, JSON.stringify({ ...real, pid: NO_SUCH_PID, pidNs: 'pid:[1]' }));
      expect(await readLockOwner(dir)).to.deep.include({ live: true, reason: 'other-host' });
      await fs.writeFile(lockFile, JSON.stringify(real)); // the child releases it after the test
    });

    it('does not take over a lock from another host, even naming a pid that does not run here', async function () {
      await writeLock(lockRecord({ host: 'another-host.invalid' }));
      const error = await rejectionOf(acquire(dir));
      expect(error).to.include({ code: 'E_LOCKED', ownerPid: NO_SUCH_PID, ownerHost: 'another-host.invalid' });
      expect(await readLockOwner(dir)).to.deep.include({ live: true, reason: 'other-host' });
    });

    for (const [kind, content] of [
      ['an empty', ''],
      ['an unparseable', '{"pid": 12'],
      ['a non-lock JSON', '{"hello":"world"}'],
    ] as const) {
      it(`respects ${kind} lock file younger than the grace period (a writer may be about to fill it)`, async function () {
        await writeLock(content);
        const error = await rejectionOf(acquire(dir));
        expect(error).to.include({ code: 'E_LOCKED', ownerPid: undefined });
        expect(await readLockOwner(dir)).to.deep.include({ live: true, reason: 'being-written', owner: undefined });
        expect(await fs.readFile(lockFile, 'utf8')).to.equal(content);
      });

      it(`takes over ${kind} lock file older than the grace period`, async function () {
        await writeLock(content);
        const tenSecondsAgo = new Date(Date.now() - 10_000);
        await fs.utimes(lockFile, tenSecondsAgo, tenSecondsAgo);
        const lock = await acquire(dir);
        expect(lock.staleLock).to.deep.include({ live: false, reason: 'abandoned', owner: undefined });
      });
    }

    it('measures the age of an incomplete lock file with the injected clock', async function () {
      await writeLock('');
      const later = { now: () => Date.now() + 6_000 };
      expect(await readLockOwner(dir, { clock: later })).to.deep.include({ live: false, reason: 'abandoned' });
      const lock = await acquire(dir, { clock: later });
      expect(lock.staleLock?.reason).to.equal('abandoned');
    });

    it('waits for a takeover in progress by a live process (its claim on the stale lock)', async function () {
      await writeLock(lockRecord());
      // Our own record stands for a live claimant.
      const other = await acquire(path.join(root, 'other'));
      const live = await fs.readFile(other.path, 'utf8');
      await fs.writeFile(await claimPath(dir, 0), live);
      const error = await rejectionOf(acquire(dir));
      expect(error).to.include({ code: 'E_LOCKED', ownerPid: process.pid });
      expect(JSON.parse(await fs.readFile(lockFile, 'utf8'))).to.include({ pid: NO_SUCH_PID });
    });

    it('skips the claim of a contender killed inside its takeover, and sweeps it afterwards', async function () {
      await writeLock(lockRecord());
      const dead = await claimPath(dir, 0);
      await fs.writeFile(dead, lockRecord());
      const lock = await acquire(dir);
      expect(lock.staleLock?.reason).to.equal('no-such-process');
      expect(await fs.readdir(dir)).to.deep.equal([LOCK_FILE_NAME]);
    });

    it(`lets exactly one of ${RACERS} processes take over a stale lock, ${RACE_ROUNDS} rounds`, async function () {
      const dirs = Array.from({ length: RACE_ROUNDS }, (_, round) => path.join(root, `round-${round}`));
      // The stale locks: one holder per round, all killed with SIGKILL.
      const victims = await Promise.all(dirs.map((d) => killedHolder(d)));
      for (const [round, roundDir] of dirs.entries()) {
        const at = Date.now() + 40; // all children try at the same moment
        const replies = await Promise.all(children.map((child) => childAcquire(child, roundDir, { at })));
        const winners = replies.flatMap((reply, i) => (reply.ok ? [{ reply, child: children[i] as Child }] : []));
        expect(winners, `round ${round}: ${JSON.stringify(replies)}`).to.have.length(1);
        const [{ reply: won, child: winner }] = winners as [{ reply: ChildReply; child: Child }];
        expect(won).to.deep.include({ tookOverStaleLock: true, staleReason: 'no-such-process', stalePid: victims[round] });
        for (const reply of replies) {
          if (reply.ok) continue;
          expect(reply.code, reply.message).to.equal('E_LOCKED');
          // Named after the new holder, or anonymous if its claim was still being written.
          expect([undefined, winner.pid]).to.include(reply.ownerPid);
        }
        expect(await readLockOwner(roundDir)).to.deep.include({ live: true, reason: 'running' });
        expect((await readLockOwner(roundDir))?.owner?.pid).to.equal(winner.pid);
        expect(await fs.readdir(roundDir), 'no takeover claim is left behind').to.deep.equal([LOCK_FILE_NAME]);
      }
    });
  });

  describe('symbolic links', function () {
    it('refuses a symlink at LOCK pointing to a stale lock file, and neither follows nor removes it', async function () {
      const target = path.join(root, 'elsewhere');
      const content = lockRecord();
      await fs.writeFile(target, content);
      await fs.mkdir(dir);
      await fs.symlink(target, lockFile);
      for (const attempt of [() => acquire(dir), () => readLockOwner(dir)]) {
        const error = await rejectionOf(attempt());
        expect(error).to.be.instanceOf(StoreIOError).and.include({ code: 'E_STORE_IO', path: lockFile, syscallCode: 'ELOOP' });
        expect(error.message).to.include('symbolic link');
      }
      expect(await fs.readFile(target, 'utf8')).to.equal(content);
      expect((await fs.lstat(lockFile)).isSymbolicLink()).to.equal(true);
    });

    it('refuses a dangling symlink at LOCK and creates nothing at its target', async function () {
      const target = path.join(root, 'planted');
      await fs.mkdir(dir);
      await fs.symlink(target, lockFile);
      const error = await rejectionOf(acquire(dir));
      expect(error).to.include({ code: 'E_STORE_IO', syscallCode: 'ELOOP' });
      await fs.access(target).then(
        () => expect.fail('the symlink was followed'),
        (e: NodeJS.ErrnoException) => expect(e.code).to.equal('ENOENT'),
      );
    });

    it('refuses a directory at LOCK', async function () {
      await fs.mkdir(lockFile, { recursive: true });
      expect(await rejectionOf(acquire(dir))).to.include({ code: 'E_STORE_IO' });
    });
  });

  describe('#release()', function () {
    it('removes the lock file; a second call does nothing; the lock can be taken again', async function () {
      const lock = await acquire(dir);
      await lock.release();
      expect(lock.released).to.equal(true);
      expect(await readLockOwner(dir)).to.equal(undefined);
      await lock.release();
      const again = await acquire(dir);
      await lock.release(); // still must not touch the new lock
      expect((await readLockOwner(dir))?.owner).to.deep.equal(again.owner);
    });

    it('never removes a lock holding another token', async function () {
      const lock = await acquire(dir);
      const someoneElse = lockRecord({ pid: process.pid });
      await fs.writeFile(lockFile, someoneElse);
      await lock.release();
      expect(await fs.readFile(lockFile, 'utf8')).to.equal(someoneElse);
    });

    it('does not follow or remove a symlink planted in place of its lock', async function () {
      const lock = await acquire(dir);
      const target = path.join(root, 'target');
      await fs.writeFile(target, 'keep');
      await fs.rm(lockFile);
      await fs.symlink(target, lockFile);
      await lock.release();
      expect((await fs.lstat(lockFile)).isSymbolicLink()).to.equal(true);
      expect(await fs.readFile(target, 'utf8')).to.equal('keep');
      await fs.rm(lockFile);
    });
  });

  describe('readLockOwner()', function () {
    it('is undefined when there is no lock or no directory', async function () {
      expect(await readLockOwner(dir)).to.equal(undefined);
      await fs.mkdir(dir);
      expect(await readLockOwner(dir)).to.equal(undefined);
    });

    it('describes a live lock and a dead one', async function () {
      const lock = await acquire(dir);
      expect(await readLockOwner(dir)).to.deep.equal({ path: lockFile, owner: lock.owner, live: true, reason: 'running' });
      await lock.release();
      await writeLock(lockRecord({ startedAt: 5, createdAt: 6 }));
      expect(await readLockOwner(dir)).to.deep.equal({
        path: lockFile,
        owner: { pid: NO_SUCH_PID, host: os.hostname(), startedAt: 5, createdAt: 6 },
        live: false,
        reason: 'no-such-process',
      });
    });
  });
});
