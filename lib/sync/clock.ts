/**
 * Time and timers, injected so tests can drive them (sinon fake timers) and so nothing
 * reads `Date.now()` or calls `setTimeout` behind the user's back.
 *
 * @module
 */

/**
 * A source of wall-clock time in milliseconds since the epoch. Entry expiry times are
 * absolute values of this clock, so they mean the same thing after a restart.
 *
 * @example
 * new CacheManager({ clock: { now: () => Date.now() } });
 */
export interface Clock {
  /** Current time, ms since the epoch. */
  now(): number;
}

/** A handle returned by {@link TimerProvider.setTimeout}. */
export type TimerHandle = unknown;

/**
 * Schedules callbacks. The default looks the globals up at call time, so sinon fake timers
 * installed after cachegraph was imported still take effect.
 *
 * @example
 * const timers: TimerProvider = { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as never) };
 */
export interface TimerProvider {
  /** Runs `fn` after `ms`; the handle must not keep the process alive (unref it). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a pending timer. */
  clearTimeout(handle: TimerHandle): void;
}

/** The system clock, read through `Date.now` at call time (fake-timer friendly). */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

/** Global timers, looked up at call time and unref'd. */
export const systemTimers: TimerProvider = Object.freeze({
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = globalThis.setTimeout(fn, ms) as unknown as { unref?: () => void };
    handle.unref?.();
    return handle;
  },
  clearTimeout(handle: TimerHandle): void {
    globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0]);
  },
});
