/**
 * The dependency DAG between caches. An edge `parent → dependent` means "dependent depends on
 * parent": invalidating `parent` invalidates `dependent`, and `parent` is rebuilt first.
 *
 * Design notes:
 * - Every structure is a `Map`/`Set` keyed by name, so `'__proto__'`, `'constructor'` or
 *   `'hasOwnProperty'` are ordinary cache names (STYLE #8).
 * - Every walk is iterative (explicit queues): a chain of tens of thousands of caches must not
 *   overflow the stack.
 * - Cycles are refused when the edge is added, so every read below can assume a DAG.
 * - Each node carries a topological *rank* kept up to date incrementally (Pearce–Kelly, "A
 *   Dynamic Topological Sort Algorithm for Directed Acyclic Graphs", 2006): for every edge
 *   `u → v`, `rank(u) < rank(v)`. An edge that already agrees with the ranks cannot close a
 *   cycle, so it is added in O(1) without searching, and so is an edge to or from a node with
 *   no edges yet (it simply takes a fresh rank). Only an edge between two linked nodes against
 *   the ranks triggers a search, bounded to the nodes whose rank lies between the two ends,
 *   followed by a local re-ranking of just those nodes. Without this, building a long chain
 *   from its tail would cost O(n²) (each new head searching the whole chain below it). The
 *   known worst case that remains is joining already-linked pieces in an adversarial order.
 * - Ranks only decide *whether* to search. Every order this class returns is computed by
 *   Kahn's algorithm over insertion-ordered sets, so it depends only on the names and the order
 *   edges were added, never on rank history.
 *
 * @module
 */

import { DependencyCycleError } from './errors.js';

/** What the graph keeps per name. Internal: never handed out. */
interface GraphNode {
  /** Direct upstreams, in the order their edges were added. */
  readonly parents: Set<string>;
  /** Direct downstreams, in the order their edges were added. */
  readonly children: Set<string>;
  /** Topological rank: smaller than the rank of every child. Unique among nodes. */
  rank: number;
}

/**
 * A directed acyclic graph of cache names. Names need not belong to registered caches: a link
 * may name a cache that does not exist yet.
 *
 * A name becomes a node when an edge mentions it (or through {@link DependencyGraph.addNode})
 * and stays one, even with no edges left, until {@link DependencyGraph.removeNode}.
 *
 * @example
 * const graph = new DependencyGraph();
 * graph.addDependency('users', 'userStats'); // userStats depends on users
 * graph.addDependency('userStats', 'dashboard');
 * graph.dependentsOf('users'); // ['userStats', 'dashboard']
 */
export class DependencyGraph {
  /** Every node, in the order its name was first mentioned. */
  readonly #nodes = new Map<string, GraphNode>();
  /**
   * {@link DependencyGraph.cascadeOf} answers since the last change of the edges: the same
   * cache is usually invalidated again and again, and its closure only changes with them.
   */
  readonly #dependents = new Map<string, readonly string[]>();
  /** Next fresh rank above every other (grows): new nodes, free nodes gaining a parent. */
  #nextHighRank = 0;
  /** Next fresh rank below every other (shrinks): free nodes becoming a parent of a linked node. */
  #nextLowRank = -1;
  #edgeCount = 0;

  /**
   * Number of nodes.
   *
   * @example
   * new DependencyGraph().size; // 0
   */
  get size(): number {
    return this.#nodes.size;
  }

  /**
   * Number of edges.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.edgeCount; // 1
   */
  get edgeCount(): number {
    return this.#edgeCount;
  }

  /**
   * Whether `name` is a node (mentioned by an edge or added with {@link addNode}).
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.has('b'); // true
   */
  has(name: string): boolean {
    return this.#nodes.has(name);
  }

  /**
   * Whether the direct edge `parent → dependent` exists.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.hasDependency('a', 'b'); // true
   */
  hasDependency(parent: string, dependent: string): boolean {
    return this.#nodes.get(parent)?.children.has(dependent) ?? false;
  }

  /**
   * Adds `name` as a node with no edges, so it appears in {@link nodes} and
   * {@link topologicalOrder}.
   *
   * @returns `false` if it was already a node
   * @example
   * const g = new DependencyGraph(); g.addNode('a'); g.nodes(); // ['a']
   */
  addNode(name: string): boolean {
    if (this.#nodes.has(name)) return false;
    this.#create(name);
    return true;
  }

  /**
   * Declares that `dependent` depends on `parent`. Either name may be new.
   *
   * @returns `false` if the edge already existed (nothing changes)
   * @throws {@link DependencyCycleError} if `parent === dependent` or if `dependent` already
   *   reaches `parent`. Its `cyclePath` is the new edge followed by the shortest existing path
   *   back: with `a → b → c`, adding `c → a` throws with `['c', 'a', 'b', 'c']`. Nothing changes.
   * @example
   * const g = new DependencyGraph();
   * g.addDependency('a', 'b'); // true
   * g.addDependency('a', 'b'); // false
   * g.addDependency('b', 'a'); // throws DependencyCycleError, cyclePath ['b', 'a', 'b']
   */
  addDependency(parent: string, dependent: string): boolean {
    if (parent === dependent) throw new DependencyCycleError([parent, parent]);
    const p = this.#nodes.get(parent) ?? this.#create(parent);
    const d = this.#nodes.get(dependent) ?? this.#create(dependent);
    if (p.children.has(dependent)) return false;
    const pFree = p.parents.size === 0 && p.children.size === 0;
    const dFree = d.parents.size === 0 && d.children.size === 0;
    if (pFree || dFree) {
      // A node without edges is unconstrained, so it takes a fresh rank: below every other
      // for a lone parent of a linked dependent, above every other otherwise. Nothing can
      // close a cycle through it. Chains built from either end thus never need re-ranking,
      // even when every name was added beforehand with addNode().
      if (pFree) p.rank = dFree ? this.#nextHighRank++ : this.#nextLowRank--;
      if (dFree) d.rank = this.#nextHighRank++;
    } else if (d.rank < p.rank) {
      // Ranks are unique, so `<` is the only case where the edge disagrees with them.
      // Both ends already had edges, so neither was created above: if this throws, the
      // graph is unchanged.
      this.#reorder(parent, p, dependent, d);
    }
    p.children.add(dependent);
    d.parents.add(parent);
    this.#edgeCount++;
    this.#dependents.clear();
    return true;
  }

  /**
   * Removes the edge `parent → dependent`. Both names stay nodes.
   *
   * @returns `false` if there was no such edge
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b');
   * g.removeDependency('a', 'b'); // true
   * g.childrenOf('a'); // []
   */
  removeDependency(parent: string, dependent: string): boolean {
    const p = this.#nodes.get(parent);
    if (p === undefined || !p.children.delete(dependent)) return false;
    this.#nodes.get(dependent)?.parents.delete(parent);
    this.#edgeCount--;
    this.#dependents.clear();
    // Removing an edge never invalidates the ranks: the rest still agree with them.
    return true;
  }

  /**
   * Removes `name` and every edge into or out of it. Its parents and children are not
   * reconnected: what depended on `name` no longer depends on its upstreams through it.
   *
   * @returns `false` if it was not a node
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.addDependency('b', 'c');
   * g.removeNode('b'); // true
   * g.dependentsOf('a'); // []
   */
  removeNode(name: string): boolean {
    const node = this.#nodes.get(name);
    if (node === undefined) return false;
    for (const child of node.children) this.#nodes.get(child)?.parents.delete(name);
    for (const parent of node.parents) this.#nodes.get(parent)?.children.delete(name);
    this.#edgeCount -= node.children.size + node.parents.size;
    this.#nodes.delete(name);
    this.#dependents.clear();
    return true;
  }

  /**
   * Removes every node and edge.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.clear(); g.size; // 0
   */
  clear(): void {
    this.#nodes.clear();
    this.#dependents.clear();
    this.#edgeCount = 0;
    this.#nextHighRank = 0;
    this.#nextLowRank = -1;
  }

  /**
   * Every node, in the order each name was first mentioned.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('b', 'a'); g.nodes(); // ['b', 'a']
   */
  nodes(): string[] {
    return [...this.#nodes.keys()];
  }

  /**
   * Every edge as `[parent, dependent]`, grouped by parent (in {@link nodes} order), each
   * group in insertion order.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.edges(); // [['a', 'b']]
   */
  edges(): Array<[parent: string, dependent: string]> {
    const out: Array<[string, string]> = [];
    for (const [name, node] of this.#nodes) for (const child of node.children) out.push([name, child]);
    return out;
  }

  /**
   * Direct upstreams of `name`, in the order their edges were added; `[]` for an unknown name.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'c'); g.addDependency('b', 'c');
   * g.parentsOf('c'); // ['a', 'b']
   */
  parentsOf(name: string): string[] {
    const node = this.#nodes.get(name);
    return node === undefined ? [] : [...node.parents];
  }

  /**
   * Direct downstreams of `name`, in the order their edges were added; `[]` for an unknown name.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.addDependency('a', 'c');
   * g.childrenOf('a'); // ['b', 'c']
   */
  childrenOf(name: string): string[] {
    const node = this.#nodes.get(name);
    return node === undefined ? [] : [...node.children];
  }

  /**
   * Every cache transitively downstream of `name` (excluding `name`), each once, in
   * topological order: each appears after all of its upstreams that are in the result.
   * Deterministic: ties follow edge insertion order. O(reachable nodes + their edges) the
   * first time after the edges change; then a copy of the remembered answer.
   *
   * @example
   * const g = new DependencyGraph();
   * g.addDependency('a', 'b'); g.addDependency('a', 'c');
   * g.addDependency('b', 'd'); g.addDependency('c', 'd');
   * g.dependentsOf('a'); // ['b', 'c', 'd']
   */
  dependentsOf(name: string): string[] {
    return this.cascadeOf(name).slice(1);
  }

  /**
   * `name`, then every cache downstream of it in {@link DependencyGraph.dependentsOf}'s
   * order: what a cascade from `name` touches. The same frozen array is returned until the
   * edges change, so callers may remember what they derive from it by its identity.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b');
   * g.cascadeOf('a'); // ['a', 'b']
   * g.cascadeOf('zz'); // ['zz']
   */
  cascadeOf(name: string): readonly string[] {
    let known = this.#dependents.get(name);
    if (known === undefined) {
      if (!this.#nodes.has(name)) return [name];
      // The root has no upstream inside its own closure, so Kahn's order emits it first.
      known = Object.freeze(this.#downstreamClosure([name]));
      this.#dependents.set(name, known);
    }
    return known;
  }

  /**
   * Every cache transitively upstream of `name` (excluding `name`), each once, in topological
   * order: roots first, each after all of its upstreams. O(upstream nodes + their edges).
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'b'); g.addDependency('b', 'c');
   * g.upstreamOf('c'); // ['a', 'b']
   */
  upstreamOf(name: string): string[] {
    const start = this.#nodes.get(name);
    if (start === undefined) return [];
    // Breadth-first upwards; discovery order then breaks ties between roots.
    const found: string[] = [];
    const seen = new Set<string>([name]);
    for (let i = -1; i < found.length; i++) {
      const node = i < 0 ? start : this.#node(found[i]!);
      for (const parent of node.parents) {
        if (!seen.has(parent)) {
          seen.add(parent);
          found.push(parent);
        }
      }
    }
    return this.#kahn(found);
  }

  /**
   * The given names plus everything downstream of any of them, each once, in one topological
   * order (upstreams first): the order in which to cascade from several roots at once.
   * Names that are not nodes are included as they are. O(result + its edges).
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('a', 'c'); g.addDependency('b', 'c');
   * g.closure(['a', 'b']); // ['a', 'b', 'c']
   */
  closure(names: Iterable<string>): string[] {
    return this.#downstreamClosure(names);
  }

  /**
   * A topological order of every node, or of the given names ordered only by the edges among
   * them (a path through a name outside the subset does not count; use {@link closure} for
   * transitive cascades). Ties follow the order of `names` (or {@link nodes}); duplicate names
   * appear once; names that are not nodes are included.
   *
   * @example
   * const g = new DependencyGraph(); g.addDependency('b', 'a');
   * g.topologicalOrder(); // ['b', 'a']
   * g.topologicalOrder(['a', 'b']); // ['b', 'a']
   */
  topologicalOrder(names?: Iterable<string>): string[] {
    return this.#kahn(names === undefined ? this.#nodes.keys() : names);
  }

  // ---------------------------------------------------------------------------------------
  // Internals

  #create(name: string): GraphNode {
    const node: GraphNode = { parents: new Set(), children: new Set(), rank: this.#nextHighRank++ };
    this.#nodes.set(name, node);
    return node;
  }

  /** The node of a name known to exist (edges only ever name nodes). */
  #node(name: string): GraphNode {
    const node = this.#nodes.get(name);
    if (node === undefined) throw new Error(`DependencyGraph invariant broken: no node ${JSON.stringify(name)}`);
    return node;
  }

  /**
   * Called before adding `parent → dependent` when `rank(dependent) < rank(parent)`. Throws
   * {@link DependencyCycleError} if `dependent` reaches `parent`; otherwise re-ranks the
   * affected nodes so the new edge agrees with the ranks. Changes nothing when it throws.
   */
  #reorder(parent: string, p: GraphNode, dependent: string, d: GraphNode): void {
    const upper = p.rank;
    const lower = d.rank;

    // Forward: breadth-first from `dependent`, with back-pointers for the cycle path. Only
    // nodes ranked below `parent` can reach it, so the rest are pruned. Every path from
    // `dependent` to `parent` stays inside that range, so the pruning does not change which
    // path breadth-first search finds: the shortest, ties by edge insertion order.
    const forward: string[] = [dependent];
    const cameFrom = new Map<string, string>();
    for (let i = 0; i < forward.length; i++) {
      const name = forward[i]!;
      for (const child of this.#node(name).children) {
        if (child === parent) throw new DependencyCycleError(this.#cyclePath(parent, name, cameFrom));
        if (cameFrom.has(child)) continue;
        if (this.#node(child).rank < upper) {
          cameFrom.set(child, name);
          forward.push(child);
        }
      }
    }

    // Backward: everything upstream of `parent` ranked above `dependent`. These must all move
    // below the forward set.
    const backward: string[] = [parent];
    const seenBack = new Set<string>(backward);
    for (let i = 0; i < backward.length; i++) {
      for (const up of this.#node(backward[i]!).parents) {
        if (!seenBack.has(up) && this.#node(up).rank > lower) {
          seenBack.add(up);
          backward.push(up);
        }
      }
    }

    // Reuse the same ranks: the backward set takes the smallest, the forward set the rest,
    // each keeping its internal relative order. Nodes outside both sets keep their ranks,
    // and every edge still agrees (Pearce & Kelly, theorem 1).
    const byRank = (a: GraphNode, b: GraphNode): number => a.rank - b.rank;
    const moved = [
      ...backward.map((name) => this.#node(name)).sort(byRank),
      ...forward.map((name) => this.#node(name)).sort(byRank),
    ];
    const ranks = moved.map((node) => node.rank).sort((a, b) => a - b);
    for (let i = 0; i < moved.length; i++) moved[i]!.rank = ranks[i]!;
  }

  /** `[parent, dependent, …, last, parent]` from the forward search's back-pointers. */
  #cyclePath(parent: string, last: string, cameFrom: ReadonlyMap<string, string>): string[] {
    const back: string[] = [parent, last];
    for (let at = cameFrom.get(last); at !== undefined; at = cameFrom.get(at)) back.push(at);
    back.push(parent);
    return back.reverse();
  }

  /**
   * `roots` (deduplicated) plus everything downstream, in Kahn's topological order. Each
   * in-degree counts only parents inside the closure; they are tallied during the discovery
   * pass, since every edge leaving a closure member ends inside the closure.
   */
  #downstreamClosure(roots: Iterable<string>): string[] {
    const inDegree = new Map<string, number>();
    const members: string[] = [];
    for (const root of roots) {
      if (!inDegree.has(root)) {
        inDegree.set(root, 0);
        members.push(root);
      }
    }
    const rootCount = members.length;
    for (let i = 0; i < members.length; i++) {
      const node = this.#nodes.get(members[i]!);
      if (node === undefined) continue;
      for (const child of node.children) {
        const seen = inDegree.get(child);
        if (seen === undefined) members.push(child);
        inDegree.set(child, (seen ?? 0) + 1);
      }
    }

    // Sources are exactly the roots not downstream of another root (anything discovered has
    // a parent in the closure), taken in the order given.
    const order: string[] = [];
    for (let i = 0; i < rootCount; i++) {
      const root = members[i]!;
      if (inDegree.get(root) === 0) order.push(root);
    }
    return this.#drain(order, inDegree);
  }

  /**
   * Kahn's algorithm over the subgraph induced by `names` (deduplicated, any order; names
   * that are not nodes are isolated). Sources are taken in the order of `names`.
   */
  #kahn(names: Iterable<string>): string[] {
    const inDegree = new Map<string, number>();
    const members: string[] = [];
    for (const name of names) {
      if (!inDegree.has(name)) {
        inDegree.set(name, 0);
        members.push(name);
      }
    }
    for (const name of members) {
      const node = this.#nodes.get(name);
      if (node === undefined) continue;
      let count = 0;
      for (const parent of node.parents) if (inDegree.has(parent)) count++;
      inDegree.set(name, count);
    }
    const order = members.filter((name) => inDegree.get(name) === 0);
    return this.#drain(order, inDegree);
  }

  /**
   * Completes Kahn's algorithm: `order` holds the sources, `inDegree` every member's count of
   * parents among the members (non-members are absent). FIFO, children in insertion order.
   */
  #drain(order: string[], inDegree: Map<string, number>): string[] {
    for (let i = 0; i < order.length; i++) {
      const node = this.#nodes.get(order[i]!);
      if (node === undefined) continue;
      for (const child of node.children) {
        const remaining = inDegree.get(child);
        if (remaining === undefined) continue;
        if (remaining === 1) order.push(child);
        inDegree.set(child, remaining - 1);
      }
    }
    if (order.length !== inDegree.size) {
      // Unreachable while addDependency refuses cycles; fail loudly rather than drop names.
      throw new Error('DependencyGraph invariant broken: the graph has a cycle');
    }
    return order;
  }
}
