/**
 * Pieces shared by the structural walks of the codecs' `check` (v8.ts, json.ts).
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

/** The working stacks of a walk: parallel arrays, so no allocation per visited object. */
export interface WalkState {
  readonly values: object[];
  readonly depths: number[];
  readonly paths: string[];
  readonly tracked: boolean;
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
    state.values.push(child);
    state.depths.push(depth);
    if (state.tracked) state.paths.push(at);
    return undefined;
  }
  return primitiveProblem(child);
}
