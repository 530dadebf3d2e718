/**
 * AutoSync: saves caches on Redis `save S C` rules. A rule `{ seconds: S, changes: C }`
 * fires for a cache when at least C changes were made since its last successful save
 * **and** more than S seconds have passed since that save (strictly more: the first
 * instant it may fire is `lastSave + S * 1000 + 1` ms). The window of a cache starts when
 * it is added to the scheduler and restarts at every successful save.
 *
 * The scheduler owns no data and does no I/O: each cache is a {@link SyncTarget} that
 * reports its pending changes and performs one save when asked. One unref'd timer serves
 * every cache; it is armed only while some cache has enough changes for a rule to fire
 * later, at the earliest such moment. See docs/autosync.md for the semantics in full.
 *
 * @module
 */
import { z } from 'zod';
import { InvalidOptionError } from '../errors.js';
import type { Clock, TimerHandle, TimerProvider } from './clock.js';

/**
 * One rule: save when at least `changes` changes were made since the last successful save
 * and more than `seconds` seconds have passed since it (Redis `save <seconds> <changes>`).
 *
 * @example
 * const rule: AutoSyncRule = { seconds: 300, changes: 10 }; // 10 changes, after 5 minutes
 */
export interface AutoSyncRule {
  /** Seconds that must have passed since the last save (strictly more than this); positive, may be fractional. */
  readonly seconds: number;
  /** Changes that must have been made since the last save (at least this many); a positive integer. */
  readonly changes: number;
}

/**
 * The default rules, Redis' classic `save 900 1 / save 300 10 / save 60 10000`.
 *
 * @example
 * new CacheManager({ autoSync: { rules: [...DEFAULT_AUTOSYNC_RULES, { seconds: 5, changes: 1_000_000 }] } });
 */
export const DEFAULT_AUTOSYNC_RULES: readonly AutoSyncRule[] = Object.freeze([
  Object.freeze({ seconds: 60, changes: 10_000 }),
  Object.freeze({ seconds: 300, changes: 10 }),
  Object.freeze({ seconds: 900, changes: 1 }),
]);

/**
 * The `autoSync` option of the manager and of each cache, when it is not `false`.
 *
 * @example
 * const options: AutoSyncOptions = { rules: [{ seconds: 30, changes: 1 }] };
 */
export interface AutoSyncOptions {
  /**
   * The rules; a save runs as soon as any one of them is met. A non-empty array.
   * @default the manager's rules for a cache, {@link DEFAULT_AUTOSYNC_RULES} for the manager
   */
  rules?: readonly AutoSyncRule[] | undefined;
}

/**
 * What the user writes for `autoSync`: rules, or `false` to save only when asked (and on
 * `close()` / `deregister()`).
 *
 * @example
 * const never: AutoSyncOption = false;
 */
export type AutoSyncOption = false | AutoSyncOptions;

/** Resolved rules of one cache, or `false` (never saved automatically). */
export type ResolvedAutoSync = readonly AutoSyncRule[] | false;

const SECONDS_MESSAGE =
  'must be a positive, finite number of seconds (the rule fires only when more than this many seconds have passed since the last save)';
const CHANGES_MESSAGE =
  'must be a positive integer (the rule fires only when at least this many changes were made since the last save)';

const ruleSchema = z.strictObject(
  {
    seconds: z.number({ message: SECONDS_MESSAGE }).positive({ message: SECONDS_MESSAGE }),
    changes: z.number({ message: CHANGES_MESSAGE }).int({ message: CHANGES_MESSAGE }).positive({ message: CHANGES_MESSAGE }),
  },
  { error: (issue) => (issue.code === 'invalid_type' ? 'must be a rule { seconds, changes }' : undefined) },
);

const autoSyncObjectSchema = z.strictObject(
  {
    rules: z
      .array(ruleSchema, { message: 'must be an array of rules [{ seconds, changes }, ...]' })
      .min(1, { message: 'must list at least one rule (use autoSync: false to turn automatic saves off)' })
      .optional(),
  },
  {
    error: (issue) =>
      issue.code === 'invalid_type'
        ? 'must be false (save only when asked) or { rules: [{ seconds, changes }, ...] }'
        : undefined,
  },
);

/**
 * Schema of the `autoSync` option (manager and cache). Built without `z.union` on
 * purpose: a union reports "invalid input" at `autoSync` for any mistake inside a rule,
 * whereas this reports the exact path (`autoSync.rules.0.seconds`) and what is wrong.
 * Use it as `autoSync: autoSyncSchema.optional()` inside an options schema.
 *
 * @example
 * autoSyncSchema.parse({ rules: [{ seconds: 60, changes: 100 }] });
 * autoSyncSchema.safeParse({ rules: [{ seconds: 0, changes: 1 }] }).success; // false, path rules.0.seconds
 */
export const autoSyncSchema: z.ZodType<AutoSyncOption> = z.custom<AutoSyncOption>(() => true).superRefine((value, ctx) => {
  if (value === false) return;
  const parsed = autoSyncObjectSchema.safeParse(value);
  if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue(issue as Parameters<typeof ctx.addIssue>[0]);
});

/**
 * Turns an already validated `autoSync` option into rules or `false`.
 *
 * - `undefined` → `inherited` (for the manager: {@link DEFAULT_AUTOSYNC_RULES}; for a
 *   cache: the manager's resolved value);
 * - `false` → `false`;
 * - `{}` (no `rules`) → `inherited`, or the defaults when `inherited` is `false` (a cache
 *   can opt in to automatic saves on a manager that has them off);
 * - `{ rules }` → a frozen copy of the rules.
 *
 * @param input - the option, validated by {@link autoSyncSchema}
 * @param inherited - what `undefined` means here
 * @example
 * const managerRules = resolveAutoSync(options.autoSync);              // default rules unless given
 * const cacheRules = resolveAutoSync(cacheOptions.autoSync, managerRules);
 */
export function resolveAutoSync(
  input: AutoSyncOption | undefined,
  inherited: ResolvedAutoSync = DEFAULT_AUTOSYNC_RULES,
): ResolvedAutoSync {
  if (input === undefined) return inherited;
  if (input === false) return false;
  if (input.rules === undefined) return inherited === false ? DEFAULT_AUTOSYNC_RULES : inherited;
  return Object.freeze(input.rules.map((rule) => Object.freeze({ seconds: rule.seconds, changes: rule.changes })));
}

/**
 * Whether two resolved values are the same rules in the same order. Resolved rule arrays
 * are fresh objects, so `Object.is` cannot compare them (say, in `getCacheManager`'s
 * conflict check).
 *
 * @example
 * sameAutoSync(resolveAutoSync({ rules: [{ seconds: 1, changes: 1 }] }), resolveAutoSync({ rules: [{ seconds: 1, changes: 1 }] })); // true
 */
export function sameAutoSync(a: ResolvedAutoSync, b: ResolvedAutoSync): boolean {
  if (a === b) return true;
  if (a === false || b === false || a.length !== b.length) return false;
  return a.every((rule, i) => rule.seconds === b[i]?.seconds && rule.changes === b[i]?.changes);
}

/**
 * One cache as the scheduler sees it.
 *
 * @example
 * const target: SyncTarget = {
 *   name: 'users',
 *   rules: DEFAULT_AUTOSYNC_RULES,
 *   pendingChanges: () => cache.pendingChanges,
 *   save: () => manager.save('users'), // the manager uses its internal save with reason 'auto'
 * };
 */
export interface SyncTarget {
  /** The cache's name; unique within one scheduler. */
  readonly name: string;
  /** Its rules, or `false`: never saved automatically (it can still be added, and is ignored). */
  readonly rules: ResolvedAutoSync;
  /** Changes made since the last successful save that a save started now would cover. Must be cheap: it is read on the write path. */
  pendingChanges(): number;
  /** Performs one save of the cache with reason `'auto'`; rejects if it fails (the cache then keeps its changes). */
  save(): Promise<unknown>;
}

/**
 * Settings of an {@link AutoSync} scheduler.
 *
 * @example
 * new AutoSync({ clock: systemClock, timers: systemTimers, onError: (name, err) => log(name, err) });
 */
export interface AutoSyncSettings {
  /** Wall-clock time, ms since the epoch. */
  readonly clock: Clock;
  /** Timers; the handles must not keep the process alive (the system provider unrefs them). */
  readonly timers: TimerProvider;
  /** Called when an automatic save rejects (after its retry was scheduled). Must not throw; if it does, the error is ignored. */
  onError(name: string, error: unknown): void;
  /** Delay before the first retry of a failed automatic save, ms. @default 5000 */
  readonly minRetryMs?: number;
  /** Longest delay between retries; each failure doubles the delay up to this, ms. @default 60000 */
  readonly maxRetryMs?: number;
}

/**
 * The scheduler's view of one cache, from {@link AutoSync.stats}. Times are ms since the
 * epoch by the scheduler's clock.
 */
export interface AutoSyncStats {
  /** The cache's rules, or `false`. */
  readonly rules: ResolvedAutoSync;
  /** Changes not yet covered by a successful save (read from the target now). */
  readonly pendingChanges: number;
  /** When the last successful save the scheduler knows of completed; `undefined` before the first. */
  readonly lastSaveAt: number | undefined;
  /** Where the rules' clocks start: the last save, else the registration (moved back if the clock jumped back). */
  readonly windowStart: number;
  /** When the next automatic save is due with the changes made so far (it may already be past while a save is running); `undefined` if no rule can fire without more changes, with `rules: false`, or after `close()`. */
  readonly nextDueAt: number | undefined;
  /** The rule that is met at `nextDueAt`. */
  readonly dueRule: AutoSyncRule | undefined;
  /** When a failed automatic save is retried, if one is waiting. */
  readonly retryAt: number | undefined;
  /** Automatic saves that failed in a row (0 after a success). */
  readonly failures: number;
  /** Whether an automatic save of the cache is in flight. */
  readonly saving: boolean;
}

/** A rule with its window length in ms, so nothing is multiplied on the write path. */
interface CompiledRule {
  readonly rule: AutoSyncRule;
  readonly ms: number;
  readonly changes: number;
}

/** Per-target state. Mutable on purpose: it is updated in place, never reallocated. */
interface Slot {
  readonly target: SyncTarget;
  /** Rules sorted by `seconds`, then `changes`; empty for `rules: false`. */
  readonly rules: readonly CompiledRule[];
  windowStart: number;
  lastSaveAt: number | undefined;
  /** `pendingChanges()` from which the next due time can move earlier; see {@link AutoSync.changed}. */
  recheckAt: number;
  /** When this slot needs the timer (next due time, or its retry if later); Infinity if never. */
  wakeAt: number;
  retryAt: number | undefined;
  retryDelay: number;
  failures: number;
  saving: boolean;
  removed: boolean;
}

/** Longest delay `setTimeout` takes; longer ones would fire at once (Node's TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function compileRules(rules: ResolvedAutoSync): CompiledRule[] {
  if (rules === false) return [];
  return [...rules]
    .sort((a, b) => a.seconds - b.seconds || a.changes - b.changes)
    .map((rule) => ({ rule, ms: rule.seconds * 1000, changes: rule.changes }));
}

/** First instant (integer ms) strictly more than `ms` after `start`. */
function firstInstantAfter(start: number, ms: number): number {
  return Math.floor(start + ms) + 1;
}

/**
 * The AutoSync scheduler: one per manager, one timer for all its caches.
 *
 * Lifecycle of a cache: {@link AutoSync.add} when it is registered; {@link AutoSync.changed}
 * after every write; {@link AutoSync.saved} after every successful save, whatever started
 * it; {@link AutoSync.remove} when it is deregistered; {@link AutoSync.close} when the
 * manager closes (before its final flush).
 *
 * Guarantees: one automatic save per cache at a time; a failed one is retried no sooner
 * than `minRetryMs`, the delay doubling up to `maxRetryMs` and reset by a success; no timer
 * while no rule can fire; a forward clock jump fires the due rules once; a backward jump
 * delays a save by at most the `seconds` of the rule that fires (see docs/autosync.md).
 *
 * @example
 * const sync = new AutoSync({ clock: systemClock, timers: systemTimers, onError: () => {} });
 * sync.add({ name: 'users', rules: DEFAULT_AUTOSYNC_RULES, pendingChanges: () => cache.pendingChanges, save: () => saveUsers() });
 * cache.set('u1', alice); sync.changed('users');
 * // ... 900 s later, one change being pending, saveUsers() is called
 * await sync.close();
 */
export class AutoSync {
  readonly #clock: Clock;
  readonly #timers: TimerProvider;
  readonly #onError: (name: string, error: unknown) => void;
  readonly #minRetryMs: number;
  readonly #maxRetryMs: number;
  readonly #slots = new Map<string, Slot>();
  /** Slots with a finite `wakeAt`: the only ones the timer looks at. */
  readonly #scheduled = new Set<Slot>();
  readonly #inFlight = new Set<Promise<void>>();
  #timer: TimerHandle | undefined;
  /** Wall-clock time the timer is expected to fire at; Infinity when disarmed. */
  #timerAt = Number.POSITIVE_INFINITY;
  #closed = false;
  /** Bound once, so arming the timer allocates no closure. */
  readonly #onTimerBound = (): void => this.#onTimer();

  /**
   * @param settings - clock, timers, error callback and retry bounds
   * @throws InvalidOptionError if the retry bounds are not positive or `minRetryMs > maxRetryMs`
   * @example
   * const sync = new AutoSync({ clock, timers, onError: (name, error) => {}, minRetryMs: 1_000 });
   */
  constructor(settings: AutoSyncSettings) {
    const min = settings.minRetryMs ?? 5_000;
    const max = settings.maxRetryMs ?? Math.max(60_000, min);
    if (!(Number.isFinite(min) && min > 0)) throw new InvalidOptionError('minRetryMs', 'must be a positive number of milliseconds');
    if (!(Number.isFinite(max) && max >= min))
      throw new InvalidOptionError('maxRetryMs', `must be a finite number of milliseconds, at least minRetryMs (${min})`);
    this.#clock = settings.clock;
    this.#timers = settings.timers;
    this.#onError = settings.onError;
    this.#minRetryMs = min;
    this.#maxRetryMs = max;
  }

  /**
   * Starts watching a cache. Its window ("since the last save") starts now. A target that
   * already has pending changes is scheduled at once. Adding a name again replaces the
   * previous target (an automatic save of the old one still in flight is forgotten).
   * After {@link AutoSync.close} the target is recorded but never scheduled.
   *
   * @returns the target's own {@link AutoSync.changed}: the same, without finding the target
   *   by name (a no-op once the target is removed or replaced)
   * @example
   * const changed = sync.add({ name: 'users', rules: resolveAutoSync(undefined), pendingChanges: () => users.pendingChanges, save });
   */
  add(target: SyncTarget): () => void {
    if (this.#slots.has(target.name)) this.remove(target.name);
    const now = this.#clock.now();
    const slot: Slot = {
      target,
      rules: compileRules(target.rules),
      windowStart: now,
      lastSaveAt: undefined,
      recheckAt: 0,
      wakeAt: Number.POSITIVE_INFINITY,
      retryAt: undefined,
      retryDelay: this.#minRetryMs,
      failures: 0,
      saving: false,
      removed: false,
    };
    this.#slots.set(target.name, slot);
    this.#update(slot, now);
    // `changed(name)` without the lookup by name: the cache calls it on every write. After
    // `remove`, `recheckAt` is Infinity, so a notifier left behind does nothing.
    return () => this.#changed(slot);
  }

  /**
   * Stops watching a cache; `true` if it was watched. An automatic save of it in flight
   * runs to its end but is not retried. Disarms the timer if nothing else needs it.
   *
   * @example
   * sync.remove('users');
   */
  remove(name: string): boolean {
    const slot = this.#slots.get(name);
    if (slot === undefined) return false;
    slot.removed = true;
    slot.recheckAt = Number.POSITIVE_INFINITY;
    this.#slots.delete(name);
    this.#unschedule(slot);
    return true;
  }

  /**
   * Tells the scheduler that `name`'s pending changes may have grown. Call it after every
   * write (set/delete/clear), after the count was incremented, and after anything else that
   * adds pending changes (dirty contents swapped in, a failed save giving its changes back).
   * Unknown names are ignored.
   *
   * This is on the hot path of `cache.set()`, so the common case is one Map lookup, one
   * `pendingChanges()` read and one comparison, without allocating:
   *
   * With `p` pending changes, the next automatic save is due at the `lastSave + S*1000 + 1`
   * of the rule with the smallest S among those with `C <= p`. That time depends only on
   * `p` and the window start, not on the current time, so while `p` grows it can only
   * move *earlier*, and only when `p` reaches the C of a rule with a smaller S. After each
   * evaluation the slot keeps `recheckAt`: the smallest such C (Infinity if none). Below
   * it, a write changes nothing: the timer is already armed for the due time, or no rule
   * can fire yet. Reaching it re-evaluates: the save starts now if a rule is met (its S
   * already passed; this is the Redis "threshold" case), otherwise the timer is moved
   * earlier. Each rule is crossed at most once per window, so between two saves a cache
   * takes the slow path at most once per rule (three times with the defaults) whatever the
   * number of writes, and arms the timer at most as often.
   *
   * @example
   * cache.set('k', 1); sync.changed(cache.name);
   */
  changed(name: string): void {
    const slot = this.#slots.get(name);
    if (slot !== undefined) this.#changed(slot);
  }

  /** {@link AutoSync.changed} of a known slot. */
  #changed(slot: Slot): void {
    if (slot.target.pendingChanges() >= slot.recheckAt) this.#update(slot, this.#clock.now());
  }

  /**
   * Tells the scheduler that a save of `name` succeeded (manual, automatic, any reason),
   * completing at `at` (default: now). Its window restarts there, and its retry back-off is
   * reset. Pending changes left (made during the save) count toward the next save.
   * Calling it for the scheduler's own automatic saves as well is harmless.
   *
   * @param at - when the save completed, ms since the epoch @default clock.now()
   * @example
   * await manager.save('users'); sync.saved('users');
   */
  saved(name: string, at?: number): void {
    const slot = this.#slots.get(name);
    if (slot === undefined) return;
    const now = this.#clock.now();
    this.#restartWindow(slot, at ?? now);
    this.#update(slot, now);
  }

  /**
   * What the scheduler knows about `name`, or `undefined` if it is not watched.
   *
   * @example
   * const { pendingChanges, nextDueAt, dueRule } = sync.stats('users') ?? {};
   */
  stats(name: string): AutoSyncStats | undefined {
    const slot = this.#slots.get(name);
    if (slot === undefined) return undefined;
    const now = this.#clock.now();
    const pendingChanges = slot.target.pendingChanges();
    const windowStart = Math.min(slot.windowStart, now);
    let nextDueAt: number | undefined;
    let dueRule: AutoSyncRule | undefined;
    if (!this.#closed) {
      for (const rule of slot.rules) {
        if (rule.changes <= pendingChanges) {
          dueRule = rule.rule;
          nextDueAt = firstInstantAfter(windowStart, rule.ms);
          if (slot.retryAt !== undefined && slot.retryAt > nextDueAt) nextDueAt = slot.retryAt;
          break;
        }
      }
    }
    return {
      rules: slot.target.rules,
      pendingChanges,
      lastSaveAt: slot.lastSaveAt,
      windowStart,
      nextDueAt,
      dueRule,
      retryAt: slot.retryAt,
      failures: slot.failures,
      saving: slot.saving,
    };
  }

  /**
   * Stops scheduling: cancels the timer (none is left afterwards) and starts no further
   * automatic save or retry; later calls to the other methods change nothing. It does not
   * save anything: the manager's `close()` flushes every dirty cache itself. Idempotent.
   *
   * @returns a promise that resolves (never rejects) once the automatic saves in flight
   *   when it was called have settled; their failures still go to `onError`
   * @example
   * const settled = sync.close(); await settled; // then flush the dirty caches
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#disarm();
      this.#scheduled.clear();
      for (const slot of this.#slots.values()) {
        slot.recheckAt = Number.POSITIVE_INFINITY;
        slot.wakeAt = Number.POSITIVE_INFINITY;
      }
    }
    return Promise.all([...this.#inFlight]).then(() => undefined);
  }

  // ---------------------------------------------------------------- internals

  /** Re-evaluates one slot at `now`, then starts its save or fixes the timer. */
  #update(slot: Slot, now: number): void {
    this.#evaluate(slot, now);
    if (slot.wakeAt !== Number.POSITIVE_INFINITY) this.#armBy(slot.wakeAt, now);
    else this.#disarmIfIdle();
  }

  /**
   * Computes the slot's next due time and `recheckAt`; starts its save if due now. Leaves
   * the timer alone (callers arm it once for all the slots they evaluated).
   */
  #evaluate(slot: Slot, now: number): void {
    if (slot.removed || slot.saving || this.#closed) {
      slot.recheckAt = Number.POSITIVE_INFINITY;
      this.#scheduled.delete(slot);
      slot.wakeAt = Number.POSITIVE_INFINITY;
      return;
    }
    // The wall clock went back past the window start and the timer has not noticed it
    // (see #onTimer): restart the window here rather than wait for the clock to catch up.
    if (now < slot.windowStart) slot.windowStart = now;
    const pending = slot.target.pendingChanges();
    let recheckAt = Number.POSITIVE_INFINITY;
    let dueAt = Number.POSITIVE_INFINITY;
    for (const rule of slot.rules) {
      if (rule.changes <= pending) {
        dueAt = firstInstantAfter(slot.windowStart, rule.ms);
        break;
      }
      // A rule with a smaller S than the one due: reaching its C brings the due time forward.
      if (rule.changes < recheckAt) recheckAt = rule.changes;
    }
    slot.recheckAt = recheckAt;
    const wakeAt = slot.retryAt !== undefined && slot.retryAt > dueAt ? slot.retryAt : dueAt;
    if (wakeAt <= now) {
      this.#startSave(slot);
      return;
    }
    slot.wakeAt = wakeAt;
    if (wakeAt === Number.POSITIVE_INFINITY) this.#scheduled.delete(slot);
    else this.#scheduled.add(slot);
  }

  #startSave(slot: Slot): void {
    slot.saving = true;
    slot.recheckAt = Number.POSITIVE_INFINITY;
    slot.wakeAt = Number.POSITIVE_INFINITY;
    this.#scheduled.delete(slot);
    let saving: Promise<unknown>;
    try {
      saving = Promise.resolve(slot.target.save());
    } catch (err) {
      saving = Promise.reject(err);
    }
    const settled: Promise<void> = saving
      .then(
        () => this.#succeeded(slot),
        (err: unknown) => this.#failed(slot, err),
      )
      // Only a target whose pendingChanges() throws gets here; never leave a rejection unhandled.
      .catch((err: unknown) => this.#report(slot.target.name, err))
      .finally(() => this.#inFlight.delete(settled));
    this.#inFlight.add(settled);
  }

  #succeeded(slot: Slot): void {
    slot.saving = false;
    if (slot.removed || this.#closed) return;
    const now = this.#clock.now();
    this.#restartWindow(slot, now);
    this.#update(slot, now);
  }

  #failed(slot: Slot, error: unknown): void {
    slot.saving = false;
    if (!slot.removed && !this.#closed) {
      const now = this.#clock.now();
      slot.failures++;
      slot.retryAt = now + slot.retryDelay;
      slot.retryDelay = Math.min(slot.retryDelay * 2, this.#maxRetryMs);
      this.#update(slot, now);
    }
    this.#report(slot.target.name, error);
  }

  #report(name: string, error: unknown): void {
    try {
      this.#onError(name, error);
    } catch {
      // onError must not throw; if it does, there is nobody left to tell, and a throw here
      // would only become an unhandled rejection.
    }
  }

  #restartWindow(slot: Slot, at: number): void {
    slot.windowStart = at;
    slot.lastSaveAt = at;
    slot.retryAt = undefined;
    slot.retryDelay = this.#minRetryMs;
    slot.failures = 0;
  }

  #onTimer(): void {
    const expectedAt = this.#timerAt;
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    if (this.#closed) return;
    const now = this.#clock.now();
    if (now < expectedAt) {
      // Timers measure elapsed time; the wall clock does not. The timer waited the full
      // delay, yet the clock shows less time passed: it was set back by `back` ms. Move every
      // window (and retry) back as much, so what was due now is due now, instead of waiting
      // for the clock to catch up (hours, after a -3 h jump).
      const back = expectedAt - now;
      for (const slot of this.#slots.values()) {
        slot.windowStart -= back;
        if (slot.retryAt !== undefined) slot.retryAt -= back;
      }
    }
    let next = Number.POSITIVE_INFINITY;
    // A copy: a save started here may add or remove slots synchronously.
    for (const slot of [...this.#scheduled]) {
      this.#evaluate(slot, now);
      if (slot.wakeAt < next) next = slot.wakeAt;
    }
    if (next !== Number.POSITIVE_INFINITY) this.#armBy(next, now);
  }

  /** Makes sure the timer fires no later than `at` (it may fire earlier: it then re-arms). */
  #armBy(at: number, now: number): void {
    if (this.#closed || at >= this.#timerAt) return;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    // `at` is always after `now` here (what is due now is saved at once), so the delay is
    // positive and no timer is ever armed in the past.
    const delay = Math.min(Math.max(Math.ceil(at - now), 1), MAX_TIMER_MS);
    this.#timerAt = now + delay;
    this.#timer = this.#timers.setTimeout(this.#onTimerBound, delay);
  }

  #unschedule(slot: Slot): void {
    slot.wakeAt = Number.POSITIVE_INFINITY;
    this.#scheduled.delete(slot);
    this.#disarmIfIdle();
  }

  /** No timer while no slot needs one. A timer armed for a slot's old, earlier time is left: it fires once and re-arms. */
  #disarmIfIdle(): void {
    if (this.#scheduled.size === 0) this.#disarm();
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
  }
}
