/**
 * Pieces shared by the structural walks of the codecs' `check` (v8.ts, json.ts).
 *
 * `check` runs on every `cache.set()` of a persistent cache, so a walk must cost little
 * more than reading the value: its stacks are reused from one walk to the next instead of
 * allocated per call (see {@link beginWalk}).
 *
 * @module
 */

/**
 * Objects a walk visits before it starts tracking which it has seen. Most cached values
 * are small trees: walking them without a `seen` set saves its allocation, which would
 * cost more than the walk. A value with a cycle or more objects than this is walked again
 * from the start with tracking (a cycle exhausts the budget instead of looping).
 */
export const UNTRACKED_VISITS = 64;

/**
 * Stack entries a finished walk may leave allocated for the next one. A walk through a
 * wide value (an array of 100 000 objects) grows its stacks that far; keeping them would
 * hold that memory for as long as the process lives.
 */
const KEPT_CAPACITY = 1024;

/**
 * The working stacks of a walk: objects still to visit, with their depth and (tracked
 * walks only) their path, as parallel arrays so that a visit allocates nothing. `size`
 * counts the entries in use; the arrays may be longer.
 */
export interface WalkState {
  readonly values: (object | undefined)[];
  readonly depths: number[];
  readonly paths: string[];
  size: number;
  tracked: boolean;
}

/** Stacks that no walk is using, kept for the next one. */
let spare: WalkState | undefined;

/**
 * Empty stacks for a walk. They are reused: a walk that starts while another runs (a getter
 * that calls `check`) gets new ones.
 *
 * @example
 * const state = beginWalk(false);
 * try { push(state, value, 1, ''); while (state.size > 0) look(pop(state)); } finally { endWalk(state); }
 */
export function beginWalk(tracked: boolean): WalkState {
  let state = spare;
  if (state === undefined) state = { values: [], depths: [], paths: [], size: 0, tracked };
  else spare = undefined;
  state.tracked = tracked;
  return state;
}

/**
 * Gives the stacks back once a walk is over, however it ended: what it left on them is
 * dropped (no check keeps a cached value reachable).
 *
 * @example
 * endWalk(state);
 */
export function endWalk(state: WalkState): void {
  const { values, paths } = state;
  for (let i = 0; i < state.size; i++) values[i] = undefined;
  if (state.tracked) paths.fill('', 0, state.size);
  state.size = 0;
  if (values.length <= KEPT_CAPACITY) spare = state;
}

/**
 * Puts an object on the stacks, to be visited later at `depth`, with its path when tracked.
 *
 * @example
 * push(state, child, depth + 1, `${path}.child`);
 */
export function push(state: WalkState, value: object, depth: number, path: string): void {
  const top = state.size++;
  state.values[top] = value;
  state.depths[top] = depth;
  if (state.tracked) state.paths[top] = path;
}

/**
 * Takes the next object off the stacks; its depth and path are then `state.depths[state.size]`
 * and `state.paths[state.size]`.
 *
 * @example
 * const value = pop(state); const depth = state.depths[state.size];
 */
export function pop(state: WalkState): object {
  const top = --state.size;
  const value = state.values[top] as object;
  state.values[top] = undefined;
  return value;
}

/**
 * Checks a primitive child in place with `primitiveProblem`, or pushes an object child for
 * a later visit. Returns the reason a primitive cannot be encoded. (A module function, not
 * a closure: creating a closure per `check` would cost more than walking a small value.)
 */
export function visit(
  state: WalkState,
  child: unknown,
  depth: number,
  at: string,
  primitiveProblem: (value: unknown) => string | undefined,
): string | undefined {
  if (typeof child === 'object' && child !== null) {
    push(state, child, depth, at);
    return undefined;
  }
  return primitiveProblem(child);
}
