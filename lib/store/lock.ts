/**
 * One writing process per store directory: the lock file `<dir>/LOCK`.
 *
 * A process holds the lock when the current `LOCK` file is its own: created exclusively
 * (`O_CREAT | O_EXCL`) when there was none, or renamed over a stale one (below). The file
 * records its pid, host, process start time and a random token. No kernel lock is used, so
 * it works wherever exclusive create, `link` and `rename` are atomic (local file systems,
 * NFSv3+).
 *
 * **When is a lock stale?** When the process that wrote it is gone: it was written on this
 * host (and, on Linux, in this pid namespace) and either no process has its pid any more
 * (`process.kill(pid, 0)` fails with ESRCH, or the pid is a zombie) or the process with
 * that pid started at another time than the recorded one (the pid was reused). A lock from
 * another host is always live: its pid means nothing here, so we cannot check it; a person
 * removes it (see {@link readLockOwner}). An empty or unparseable `LOCK` is what a writer
 * killed between creating and writing it leaves, but also what a writer that is about to
 * write looks like: it is stale only once its mtime is older than a grace period.
 *
 * **Taking over a stale lock, by exactly one contender.** Several processes may judge the
 * same `LOCK` stale at the same moment; a naive "unlink, then create" lets a slow one unlink
 * the lock another one has just created. So the only way to remove a stale `LOCK` is this:
 *
 * 1. Name the stale file by an *instance id*: a hash of its inode, ctime, mtime, size and
 *    content. A `LOCK` created later, even one reusing the inode, has another id (another
 *    random token, or at least another ctime), so an id never comes back.
 * 2. Claim the takeover of that instance: write our own lock record in full to a private
 *    draft, then hard-link it to `LOCK.takeover-<id>-<n>` with n = 0 (`link` fails if the
 *    name exists, and the slot never shows a half-written claim). If slot n is taken and
 *    its writer is alive, someone else is taking over: we are locked out. If its writer is
 *    dead (it was killed inside its takeover), try slot n + 1. Claims are never deleted
 *    while the instance is still the `LOCK`, only skipped, so two live processes can never
 *    both hold a claim on the same instance: the later one would have had to judge the
 *    earlier one's claim dead while its writer was alive.
 * 3. With the claim held, read `LOCK` again. If it is no longer the instance we judged
 *    (someone finished a takeover, or the lock was released and re-acquired), give up the
 *    claim and start over. Otherwise `rename` our claim file over `LOCK`.
 *
 * Between the check in 3 and the rename, `LOCK` cannot change: replacing it would need
 * deleting the stale instance, which only its owner (dead) or a holder of a claim on it
 * (only us) ever does, and creating a new `LOCK` needs the name free, which it is not.
 * So the rename replaces exactly the stale file, once; every later claimant finds another
 * instance in 3 and backs off (the rename frees the winner's slot, but whoever takes it
 * next also fails 3). The rename is atomic, so there is never a moment without a
 * `LOCK` for a fresh `O_EXCL` contender to slip into, and the new `LOCK` appears with its
 * content complete and fsynced. Claims on instances that are no longer the `LOCK` are inert
 * (every step 3 on them fails), so the new holder sweeps them all.
 *
 * Residual risks, accepted: a writer stalled for longer than the grace period between
 * creating `LOCK` and writing it loses it (and so does a claimant, on a file system without
 * hard links, where claims are created like `LOCK`); a clock step larger than the grace
 * shortens that period; two hosts writing the same directory through a file system that
 * does not make `O_EXCL` atomic (NFSv2) are not excluded; on Windows pid reuse is not
 * detected (no start time), so a reused pid keeps a dead process's lock until removed.
 *
 * @module
 */

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, type BigIntStats } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { CacheGraphError, InvalidOptionError, LockedError, StoreIOError } from '../errors.js';
import { systemClock, systemTimers, type Clock, type TimerProvider } from '../sync/clock.js';

/**
 * Name of the lock file inside a store directory.
 *
 * @example
 * path.join(dir, LOCK_FILE_NAME); // '/…/.cache/LOCK'
 */
export const LOCK_FILE_NAME = 'LOCK';

const CLAIM_PREFIX = `${LOCK_FILE_NAME}.takeover-`;
const CLAIM_RE = /^LOCK\.takeover-[0-9a-f]{32}-(?:\d+|tmp-[0-9a-f]{32})$/;

/** An empty or unparseable record younger than this may still be being written. */
const INCOMPLETE_GRACE_MS = 5_000;
/** Start times measured through wall clocks (not Linux's ticks since boot) may differ by this much. */
const START_TOLERANCE_MS = 2_000;
/** A lock record is ~200 bytes; anything longer than this is not one. */
const MAX_RECORD_BYTES = 4_096;
/** Takeover slots per stale instance; each one skipped means a contender died inside a takeover. */
const MAX_CLAIMS = 16;
/** Attempts within one poll round when the lock changes under us (released, taken over). */
const MAX_ATTEMPTS_PER_ROUND = 8;
/**
 * USER_HZ, the unit of `starttime` in `/proc/<pid>/stat`: 100 on every Linux ABI Node runs
 * on. Only used to show start times as dates; identity compares raw ticks.
 */
const USER_HZ = 100;

const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fsConstants.O_NONBLOCK ?? 0;
const READ_FLAGS = fsConstants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
const CREATE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | O_NOFOLLOW;

/**
 * Who holds (or held) a lock, as its file records it.
 *
 * @example
 * const { pid, host } = (await readLockOwner(dir))?.owner ?? {};
 */
export interface LockOwner {
  /** Process id of the writer. */
  readonly pid: number;
  /** `os.hostname()` of the writer's machine. */
  readonly host: string;
  /** When the writer process started, ms since the epoch (identifies it despite pid reuse). */
  readonly startedAt: number;
  /** When the lock was taken, ms since the epoch, by the writer's clock. */
  readonly createdAt: number;
}

/**
 * Why a lock is live or stale. Live: `'running'` (its process runs; also when that cannot
 * be verified, e.g. no start time on this platform), `'other-host'` (written on another
 * host or pid namespace: cannot be checked), `'being-written'` (empty or unparseable, but
 * younger than the grace period). Stale: `'no-such-process'`, `'pid-reused'` (a process with
 * that pid runs but started at another time, or in an earlier boot), `'abandoned'` (empty or
 * unparseable and older than the grace period).
 */
export type LockStatusReason = 'running' | 'other-host' | 'being-written' | 'no-such-process' | 'pid-reused' | 'abandoned';

/**
 * What a lock file says and whether a contender would respect it.
 *
 * @example
 * const status = await readLockOwner(dir);
 * if (status && !status.live) console.log(`stale lock of pid ${status.owner?.pid}: ${status.reason}`);
 */
export interface LockStatus {
  /** The lock file. */
  readonly path: string;
  /** What it records; `undefined` when it is empty or not a lock record. */
  readonly owner: LockOwner | undefined;
  /** Whether a contender waits for it (`true`) or takes it over (`false`). */
  readonly live: boolean;
  /** Why. */
  readonly reason: LockStatusReason;
}

/**
 * Options of {@link DirectoryLock.acquire}.
 *
 * @example
 * await DirectoryLock.acquire(dir, { timeoutMs: 10_000, pollMs: 200 });
 */
export interface AcquireLockOptions {
  /**
   * How long to wait for a live holder to release, in ms; 0 fails at once.
   * @default 0
   */
  readonly timeoutMs?: number;
  /**
   * Delay between two attempts while waiting, in ms.
   * @default 100
   */
  readonly pollMs?: number;
  /**
   * Time source for the waiting deadline and the age of incomplete lock files.
   * @default systemClock
   */
  readonly clock?: Clock;
  /**
   * Timers for polling (sinon fake timers work through the default).
   * @default systemTimers
   */
  readonly timers?: TimerProvider;
  /**
   * Fsync the lock file when it is created. `false` for locks that need not survive a power
   * loss (a lock that vanishes with the machine protects nothing that survived it either).
   * @default true
   */
  readonly durable?: boolean;
}

/**
 * Options of {@link readLockOwner}.
 *
 * @example
 * await readLockOwner(dir, { clock: systemClock });
 */
export interface ReadLockOwnerOptions {
  /**
   * Time source for the age of incomplete lock files.
   * @default systemClock
   */
  readonly clock?: Clock;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const clockSchema = z.custom<Clock>((v) => isObject(v) && typeof v['now'] === 'function', {
  message: 'must be a clock { now(): number }',
});
const timersSchema = z.custom<TimerProvider>(
  (v) => isObject(v) && typeof v['setTimeout'] === 'function' && typeof v['clearTimeout'] === 'function',
  { message: 'must be a timer provider { setTimeout(fn, ms), clearTimeout(handle) }' },
);
const acquireOptionsSchema = z.strictObject({
  /** @default 0 */
  timeoutMs: z.number().int().min(0, { message: 'must be a whole number of milliseconds, 0 or more' }).optional(),
  /** @default 100 */
  pollMs: z.number().int().min(1, { message: 'must be a whole number of milliseconds, 1 or more' }).max(60_000).optional(),
  /** @default systemClock */
  clock: clockSchema.optional(),
  /** @default systemTimers */
  timers: timersSchema.optional(),
  /** @default true */
  durable: z.boolean({ message: 'must be a boolean' }).optional(),
});
const readOptionsSchema = z.strictObject({
  /** @default systemClock */
  clock: clockSchema.optional(),
});

interface ResolvedAcquireOptions {
  readonly timeoutMs: number;
  readonly pollMs: number;
  readonly clock: Clock;
  readonly timers: TimerProvider;
  readonly durable: boolean;
}

function optionError(error: z.ZodError, where: string): InvalidOptionError {
  const issue = error.issues[0];
  if (issue === undefined) return new InvalidOptionError('', `${error.message} (${where})`);
  if (issue.code === 'unrecognized_keys') return new InvalidOptionError(issue.keys[0] ?? '', `unknown option (${where})`);
  return new InvalidOptionError(issue.path.map(String).join('.'), `${issue.message} (${where})`);
}

function resolveAcquireOptions(input: AcquireLockOptions): ResolvedAcquireOptions {
  const parsed = acquireOptionsSchema.safeParse(input);
  if (!parsed.success) throw optionError(parsed.error, 'DirectoryLock.acquire');
  return Object.freeze({
    timeoutMs: parsed.data.timeoutMs ?? 0,
    pollMs: parsed.data.pollMs ?? 100,
    clock: parsed.data.clock ?? systemClock,
    timers: parsed.data.timers ?? systemTimers,
    durable: parsed.data.durable ?? true,
  });
}

/**
 * The content of `LOCK` (and of takeover claims). `bootId`, `startTicks` and `pidNs` exist
 * on Linux only: they identify the process exactly, whatever the wall clock does.
 */
const recordSchema = z.object({
  pid: z.number().int().min(1).max(2 ** 31 - 1),
  host: z.string().min(1).max(255),
  startedAt: z.number(),
  token: z.string().regex(/^[0-9a-f]{32}$/),
  createdAt: z.number(),
  bootId: z.string().min(1).max(64).optional(),
  startTicks: z.number().int().min(0).optional(),
  pidNs: z.string().min(1).max(64).optional(),
});
type LockRecord = z.infer<typeof recordSchema>;

/** A record file as read: its parsed record (if any), age and instance id. */
interface RecordFile {
  readonly record: LockRecord | undefined;
  readonly mtimeMs: number;
  /** Changes whenever the file is replaced or rewritten; see the module comment, step 1. */
  readonly id: string;
}

/** When and in which boot a process started; `undefined` fields are unknown. */
interface ProcessStart {
  readonly startedAt: number;
  readonly bootId: string | undefined;
  readonly startTicks: number | undefined;
  readonly zombie: boolean;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

async function io<T>(op: string, file: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof CacheGraphError) throw error;
    throw new StoreIOError(op, file, error);
  }
}

/** Errors saying "what is at this path is not a lock file" (as opposed to an I/O failure). */
const refusals = new WeakSet<Error>();

function refuse(file: string, reason: string, code?: string): StoreIOError {
  const error = new StoreIOError('lock', file, Object.assign(new Error(reason), code === undefined ? {} : { code }));
  refusals.add(error);
  return error;
}

function refuseSymlink(file: string): StoreIOError {
  return refuse(file, 'it is a symbolic link, which a lock file never is; refusing to follow it (remove it if nobody should have put it there)', 'ELOOP');
}

// ---------------------------------------------------------------------------------------
// Processes: does a pid run, and when did it start?

const execFileAsync = promisify(execFile);

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal.
    return errorCode(error) !== 'ESRCH';
  }
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Per-process facts that cannot change while it runs. */
let linuxFacts: Promise<{ bootId: string | undefined; pidNs: string | undefined }> | undefined;
function getLinuxFacts(): Promise<{ bootId: string | undefined; pidNs: string | undefined }> {
  linuxFacts ??= (async () => ({
    bootId: (await readText('/proc/sys/kernel/random/boot_id'))?.trim() || undefined,
    pidNs: await fs.readlink('/proc/self/ns/pid').catch(() => undefined),
  }))();
  return linuxFacts;
}

/**
 * Linux: `/proc/<pid>/stat` gives the start in clock ticks since boot, exact and immune to
 * wall-clock steps (pidusage reads the same file but keeps it open between calls, and a
 * kept descriptor of an exited process never shows the process that reuses its pid).
 */
async function linuxProcessStart(pid: number): Promise<ProcessStart | undefined> {
  const stat = await readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[19]);
  if (!Number.isSafeInteger(ticks)) return undefined;
  const btime = /^btime (\d+)$/m.exec((await readText('/proc/stat')) ?? '')?.[1];
  const bootMs = btime === undefined ? Date.now() - os.uptime() * 1000 : Number(btime) * 1000;
  return {
    startedAt: Math.round(bootMs + (ticks * 1000) / USER_HZ),
    bootId: (await getLinuxFacts()).bootId,
    startTicks: ticks,
    zombie: fields[0] === 'Z' || fields[0] === 'X',
  };
}

/** Other POSIX systems: `ps` gives the elapsed time, to the second. */
async function psProcessStart(pid: number): Promise<ProcessStart | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('ps', ['-o', 'stat=', '-o', 'etime=', '-p', String(pid)], { timeout: 5_000, windowsHide: true }));
  } catch {
    return undefined;
  }
  const match = /^\s*(\S+)\s+(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)\s*$/.exec(stdout);
  if (match === null) return undefined;
  const [, state = '', days = '0', hours = '0', minutes = '0', seconds = '0'] = match;
  const elapsed = ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds);
  return { startedAt: Date.now() - elapsed * 1000, bootId: undefined, startTicks: undefined, zombie: state.startsWith('Z') };
}

/** When `pid` started; `undefined` when it cannot be told (gone, hidden, Windows). */
async function processStart(pid: number): Promise<ProcessStart | undefined> {
  if (process.platform === 'linux' || process.platform === 'android') return linuxProcessStart(pid);
  if (process.platform === 'win32') return undefined;
  return psProcessStart(pid);
}

let ownStart: Promise<ProcessStart> | undefined;
/** This process's start, measured once, so our own records always match it exactly. */
function getOwnStart(): Promise<ProcessStart> {
  ownStart ??= (async () => {
    const linux = process.platform === 'linux' || process.platform === 'android' ? await linuxProcessStart(process.pid) : undefined;
    return linux ?? { startedAt: Math.round(Date.now() - process.uptime() * 1000), bootId: undefined, startTicks: undefined, zombie: false };
  })();
  return ownStart;
}

/** Whether `recorded` describes the process `observed` (same pid assumed). */
function sameProcess(recorded: LockRecord, observed: ProcessStart): boolean {
  if (recorded.bootId !== undefined && observed.bootId !== undefined) {
    if (recorded.bootId !== observed.bootId) return false; // it ran in an earlier boot
    if (recorded.startTicks !== undefined && observed.startTicks !== undefined) return recorded.startTicks === observed.startTicks;
  }
  return Math.abs(recorded.startedAt - observed.startedAt) <= START_TOLERANCE_MS;
}

async function newRecord(clock: Clock): Promise<LockRecord> {
  const own = await getOwnStart();
  const { pidNs } = process.platform === 'linux' ? await getLinuxFacts() : { pidNs: undefined };
  return {
    pid: process.pid,
    host: os.hostname(),
    startedAt: own.startedAt,
    token: randomBytes(16).toString('hex'),
    createdAt: clock.now(),
    ...(own.bootId === undefined ? {} : { bootId: own.bootId }),
    ...(own.startTicks === undefined ? {} : { startTicks: own.startTicks }),
    ...(pidNs === undefined ? {} : { pidNs }),
  };
}

interface Verdict {
  readonly live: boolean;
  readonly reason: LockStatusReason;
}

/** Judges a record file: see the module comment. */
async function judge(file: RecordFile, clock: Clock): Promise<Verdict> {
  const record = file.record;
  if (record === undefined) {
    return clock.now() - file.mtimeMs > INCOMPLETE_GRACE_MS ? { live: false, reason: 'abandoned' } : { live: true, reason: 'being-written' };
  }
  if (record.host !== os.hostname()) return { live: true, reason: 'other-host' };
  if (record.pidNs !== undefined && process.platform === 'linux') {
    const { pidNs } = await getLinuxFacts();
    // Same host name, other pid namespace (a container): its pids mean nothing here.
    if (pidNs !== undefined && pidNs !== record.pidNs) return { live: true, reason: 'other-host' };
  }
  if (record.pid === process.pid) {
    return sameProcess(record, await getOwnStart()) ? { live: true, reason: 'running' } : { live: false, reason: 'pid-reused' };
  }
  if (!pidExists(record.pid)) return { live: false, reason: 'no-such-process' };
  const observed = await processStart(record.pid);
  if (observed === undefined) {
    // It may have exited in between; if it still runs, we cannot tell more: respect it.
    return pidExists(record.pid) ? { live: true, reason: 'running' } : { live: false, reason: 'no-such-process' };
  }
  if (observed.zombie) return { live: false, reason: 'no-such-process' };
  return sameProcess(record, observed) ? { live: true, reason: 'running' } : { live: false, reason: 'pid-reused' };
}

// ---------------------------------------------------------------------------------------
// Record files

/** Reads a record file without following a symlink; `undefined` when it does not exist. */
async function readRecordFile(file: string): Promise<RecordFile | undefined> {
  if (O_NOFOLLOW === 0) {
    // No O_NOFOLLOW (Windows): check first. Racy, but Windows needs privileges to plant links.
    const stat = await fs.lstat(file).catch(() => undefined);
    if (stat?.isSymbolicLink() === true) throw refuseSymlink(file);
  }
  let handle: FileHandle;
  try {
    handle = await fs.open(file, READ_FLAGS);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return undefined;
    // ELOOP (Linux) / EMLINK (FreeBSD): the last component is a link and O_NOFOLLOW refused it.
    if (code === 'ELOOP' || code === 'EMLINK') {
      const stat = await fs.lstat(file).catch(() => undefined);
      if (stat?.isSymbolicLink() === true) throw refuseSymlink(file);
    }
    throw new StoreIOError('lock', file, error);
  }
  try {
    const stat: BigIntStats = await io('lock', file, () => handle.stat({ bigint: true }));
    if (!stat.isFile()) throw refuse(file, 'not a regular file, which a lock file always is');
    const bytes = Buffer.alloc(MAX_RECORD_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await io('lock', file, () => handle.read(bytes, length, bytes.length - length, length));
      if (bytesRead === 0 || (length += bytesRead) === bytes.length) break;
    }
    const content = bytes.subarray(0, length);
    const id = createHash('sha256')
      .update(`${stat.dev}:${stat.ino}:${stat.ctimeNs}:${stat.mtimeNs}:${stat.size}\n`)
      .update(content)
      .digest('hex')
      .slice(0, 32);
    return { record: parseRecord(content), mtimeMs: Number(stat.mtimeMs), id };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function parseRecord(content: Buffer): LockRecord | undefined {
  if (content.length === 0 || content.length > MAX_RECORD_BYTES) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = recordSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

/**
 * Creates `file` exclusively (never through a symlink) holding `record`, checked write and
 * fsync; `false` when something is already there.
 */
async function createRecordFile(file: string, record: LockRecord, durable = true): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await fs.open(file, CREATE_FLAGS, 0o600);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw new StoreIOError('lock', file, error);
  }
  try {
    const bytes = Buffer.from(`${JSON.stringify(record)}\n`);
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await io('lock', file, () => handle.write(bytes, done, bytes.length - done, done));
      if (!(bytesWritten > 0)) throw new StoreIOError('lock', file, new Error(`short write: 0 of ${bytes.length - done} bytes written`));
      done += bytesWritten;
    }
    if (durable) await io('lock', file, () => handle.sync());
    await io('lock', file, () => handle.close());
    return true;
  } catch (error) {
    await handle.close().catch(() => undefined);
    // Ours, and judged "being written" by everyone else during the grace period: safe to remove.
    await fs.unlink(file).catch(() => undefined);
    throw error;
  }
}

function ownerOf(record: LockRecord | undefined): LockOwner | undefined {
  if (record === undefined) return undefined;
  return Object.freeze({ pid: record.pid, host: record.host, startedAt: record.startedAt, createdAt: record.createdAt });
}

function lockedBy(record: LockRecord | undefined): { pid?: number; host?: string } {
  return record === undefined ? {} : { pid: record.pid, host: record.host };
}

// ---------------------------------------------------------------------------------------
// Acquiring

type Attempt =
  | { readonly acquired: true; readonly stale: LockStatus | undefined }
  | { readonly acquired: false; readonly holder: { pid?: number; host?: string } };

type Takeover = 'acquired' | 'changed' | { readonly holder: { pid?: number; host?: string } };

/** One round: create, or judge the existing lock and take it over if stale. */
async function attempt(dir: string, file: string, record: LockRecord, clock: Clock, durable: boolean): Promise<Attempt> {
  for (let i = 0; i < MAX_ATTEMPTS_PER_ROUND; i++) {
    if (await createRecordFile(file, record, durable)) return { acquired: true, stale: undefined };
    const current = await readRecordFile(file);
    if (current === undefined) continue; // released meanwhile
    const verdict = await judge(current, clock);
    if (verdict.live) return { acquired: false, holder: lockedBy(current.record) };
    const outcome = await takeOver(dir, file, current, record, clock);
    if (outcome === 'changed') continue;
    if (outcome === 'acquired') {
      const stale: LockStatus = Object.freeze({ path: file, owner: ownerOf(current.record), live: false, reason: verdict.reason });
      return { acquired: true, stale };
    }
    return { acquired: false, holder: outcome.holder };
  }
  // The lock kept changing under us: someone else is busy with it.
  return { acquired: false, holder: {} };
}

/** Steps 2 and 3 of the module comment, for the stale instance `stale`. */
async function takeOver(dir: string, file: string, stale: RecordFile, record: LockRecord, clock: Clock): Promise<Takeover> {
  // The claim is written in full under a private name, then hard-linked into its slot: a
  // slot never shows a half-written claim, so judging one never depends on a grace period.
  const draft = path.join(dir, `${CLAIM_PREFIX}${stale.id}-tmp-${record.token}`);
  if (!(await createRecordFile(draft, record))) return 'changed'; // our own random name: cannot happen
  let claim: string | undefined;
  try {
    for (let n = 0; n < MAX_CLAIMS && claim === undefined; n++) {
      const slot = path.join(dir, `${CLAIM_PREFIX}${stale.id}-${n}`);
      const placed = await placeClaim(draft, slot, record);
      if (placed === 'gone') return 'changed'; // our draft was swept: the instance is gone
      if (placed) {
        claim = slot;
        break;
      }
      const other = await readRecordFile(slot);
      // Claims vanish only once the instance is gone (renamed over it, or swept): look again.
      if (other === undefined) return 'changed';
      const verdict = await judge(other, clock);
      if (verdict.live) {
        // A live claimant. If the stale instance is gone, it is a late one about to back off
        // (the winner's claim became the LOCK and freed its slot): name the real holder instead.
        if ((await readRecordFile(file))?.id !== stale.id) return 'changed';
        return { holder: lockedBy(other.record) };
      }
      // Its writer died inside its takeover: skip the slot, never delete it (module comment).
    }
    if (claim === undefined) return { holder: {} };
    const current = await readRecordFile(file);
    if (current?.id !== stale.id) return 'changed';
    await io('lock', file, () => fs.rename(claim as string, file));
    claim = undefined;
    return 'acquired';
  } finally {
    await fs.unlink(draft).catch(() => undefined);
    // Only reached when the instance is no longer the LOCK: the claim is inert.
    if (claim !== undefined) await fs.unlink(claim).catch(() => undefined);
  }
}

/** Errors of link() meaning "no hard links on this file system". */
const LINK_UNSUPPORTED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK']);

/** Puts our claim in `slot`: `true`, `false` when the slot is taken, `'gone'` when our draft vanished. */
async function placeClaim(draft: string, slot: string, record: LockRecord): Promise<boolean | 'gone'> {
  try {
    await fs.link(draft, slot);
    return true;
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST') return false;
    if (code === 'ENOENT') return 'gone';
    // Without hard links, create the slot itself: a claimant killed between creating and
    // writing it leaves an empty claim, judged like an empty LOCK (the grace period).
    if (code !== undefined && LINK_UNSUPPORTED.has(code)) return createRecordFile(slot, record);
    throw new StoreIOError('lock', slot, error);
  }
}

/**
 * Removes takeover claims. Called by a new holder: the `LOCK` is its own, so every claim
 * names an instance that is gone for good, and no step 3 on it can succeed. Best effort.
 */
async function sweepClaims(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (CLAIM_RE.test(name)) await fs.unlink(path.join(dir, name)).catch(() => undefined);
  }
}

function sleep(timers: TimerProvider, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const handle = timers.setTimeout(resolve, ms) as { ref?: () => unknown } | undefined;
    // The caller awaits this wait: unlike background timers it must keep the process alive,
    // or a script waiting for the lock would exit with the promise pending.
    handle?.ref?.();
  });
}

/**
 * The writer lock of a store directory: while a process holds it, no other process (on a
 * host that sees the same files) gets it. See the module comment for what "stale" means
 * and how a stale lock is taken over by exactly one contender.
 *
 * Releasing on a normal exit is the holder's job (`release()`, e.g. from the store's
 * `close()`); a killed process leaves its lock, and the next contender takes it over and
 * learns it from {@link DirectoryLock.tookOverStaleLock}.
 *
 * @example
 * const lock = await DirectoryLock.acquire('./.cache', { timeoutMs: 5_000 });
 * if (lock.tookOverStaleLock) console.warn(`took over the lock of dead pid ${lock.staleLock?.owner?.pid}`);
 * try { // ... write files ...
 * } finally { await lock.release(); }
 */
export class DirectoryLock {
  /**
   * The lock file, `<dir>/LOCK`, absolute.
   *
   * @example
   * lock.path; // '/home/me/app/.cache/LOCK'
   */
  readonly path: string;

  /**
   * This process, as the lock file records it.
   *
   * @example
   * lock.owner.pid === process.pid; // true
   */
  readonly owner: LockOwner;

  /**
   * The stale lock this one replaced (its owner, and why it was stale), or `undefined`.
   *
   * @example
   * lock.staleLock?.reason; // 'no-such-process'
   */
  readonly staleLock: LockStatus | undefined;

  readonly #token: string;
  #releasing: Promise<void> | undefined;
  #released = false;

  private constructor(file: string, record: LockRecord, staleLock: LockStatus | undefined) {
    this.path = file;
    this.owner = ownerOf(record) as LockOwner;
    this.staleLock = staleLock;
    this.#token = record.token;
  }

  /**
   * Takes the lock of `dir` (created with mode 0700 if missing): at once, or by taking over
   * a stale lock, or, with `timeoutMs`, once the live holder releases it.
   *
   * @param dir - the store directory
   * @param options - waiting, clock and timers
   * @throws {LockedError} E_LOCKED: a live process holds it (named when known), still after `timeoutMs`
   * @throws {StoreIOError} E_STORE_IO: a symbolic link or a non-file at `LOCK` (refused, never
   *   followed), or a file-system failure
   * @throws {InvalidOptionError} E_INVALID_OPTION naming the option
   * @example
   * const lock = await DirectoryLock.acquire(dir); // throws LockedError if another process writes there
   */
  static async acquire(dir: string, options: AcquireLockOptions = {}): Promise<DirectoryLock> {
    const o = resolveAcquireOptions(options);
    const absolute = path.resolve(dir);
    const file = path.join(absolute, LOCK_FILE_NAME);
    await io('mkdir', absolute, () => fs.mkdir(absolute, { recursive: true, mode: 0o700 }));
    const deadline = o.clock.now() + o.timeoutMs;
    for (;;) {
      const record = await newRecord(o.clock);
      const outcome = await attempt(absolute, file, record, o.clock, o.durable);
      if (outcome.acquired) {
        await sweepClaims(absolute);
        return new DirectoryLock(file, record, outcome.stale);
      }
      const remaining = deadline - o.clock.now();
      if (remaining <= 0) throw new LockedError(file, outcome.holder);
      await sleep(o.timers, Math.min(o.pollMs, remaining));
    }
  }

  /**
   * Whether a stale lock (of a dead process, a reused pid, or an abandoned empty file) was
   * replaced to get this one: the store reports it as a warning.
   *
   * @example
   * if (lock.tookOverStaleLock) warn(lock.staleLock);
   */
  get tookOverStaleLock(): boolean {
    return this.staleLock !== undefined;
  }

  /**
   * Whether {@link DirectoryLock.release} has completed.
   *
   * @example
   * await lock.release(); lock.released; // true
   */
  get released(): boolean {
    return this.#released;
  }

  /**
   * Removes the lock file if it is still this lock's (same token); otherwise leaves it alone,
   * whoever's it is. Idempotent; a failed release can be retried.
   *
   * @throws {StoreIOError} E_STORE_IO: the lock file could not be read or removed
   * @example
   * await lock.release(); await lock.release(); // the second call does nothing
   */
  release(): Promise<void> {
    this.#releasing ??= this.#unlock().then(
      () => {
        this.#released = true;
      },
      (error: unknown) => {
        this.#releasing = undefined;
        throw error;
      },
    );
    return this.#releasing;
  }

  async #unlock(): Promise<void> {
    let current: RecordFile | undefined;
    try {
      current = await readRecordFile(this.path);
    } catch (error) {
      // A symlink or a directory planted at LOCK is not our lock: nothing of ours to remove.
      if (error instanceof Error && refusals.has(error)) return;
      throw error;
    }
    if (current?.record?.token !== this.#token) return;
    // Between that read and this unlink only a takeover could replace the file, and nobody
    // takes over the lock of a running process.
    try {
      await fs.unlink(this.path);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw new StoreIOError('unlock', this.path, error);
    }
  }
}

/**
 * Who holds the lock of `dir`, and whether a contender would respect it (for diagnostics
 * and a CLI); `undefined` when there is no lock.
 *
 * @throws {StoreIOError} E_STORE_IO: a symbolic link or a non-file at `LOCK`, or a read failure
 * @throws {InvalidOptionError} E_INVALID_OPTION naming the option
 * @example
 * const status = await readLockOwner('./.cache');
 * // { path: '/…/.cache/LOCK', owner: { pid: 4242, host: 'ci-1', … }, live: false, reason: 'no-such-process' }
 */
export async function readLockOwner(dir: string, options: ReadLockOwnerOptions = {}): Promise<LockStatus | undefined> {
  const parsed = readOptionsSchema.safeParse(options);
  if (!parsed.success) throw optionError(parsed.error, 'readLockOwner');
  const file = path.join(path.resolve(dir), LOCK_FILE_NAME);
  let current: RecordFile | undefined;
  try {
    current = await readRecordFile(file);
  } catch (error) {
    // A missing or non-directory parent: there is no lock.
    if (error instanceof StoreIOError && error.syscallCode === 'ENOTDIR') return undefined;
    throw error;
  }
  if (current === undefined) return undefined;
  const verdict = await judge(current, parsed.data.clock ?? systemClock);
  return Object.freeze({ path: file, owner: ownerOf(current.record), live: verdict.live, reason: verdict.reason });
}
