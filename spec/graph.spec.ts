import { seededRandom } from './random.js';
import { expect } from 'chai';

import { CacheGraphError, DependencyCycleError } from '../lib/errors.js';
import { DependencyGraph } from '../lib/graph.js';

/** Builds a graph from `[parent, dependent]` pairs, in order. */
function graphOf(...edges: Array<[string, string]>): DependencyGraph {
  const graph = new DependencyGraph();
  for (const [parent, dependent] of edges) graph.addDependency(parent, dependent);
  return graph;
}

/** Runs `fn`, expecting a DependencyCycleError, and returns it. */
function cycleErrorOf(fn: () => unknown): DependencyCycleError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(DependencyCycleError);
    return error as DependencyCycleError;
  }
  expect.fail('expected a DependencyCycleError');
}

/** Everything observable about a graph, for "nothing changed" checks. */
function snapshot(graph: DependencyGraph): unknown {
  return {
    nodes: graph.nodes(),
    edges: graph.edges(),
    size: graph.size,
    edgeCount: graph.edgeCount,
    order: graph.topologicalOrder(),
  };
}


/** Asserts that, for every edge with both ends in `order`, the parent comes first. */
function expectRespectsEdges(order: readonly string[], edges: Iterable<readonly [string, string]>): void {
  const position = new Map(order.map((name, index) => [name, index]));
  expect(position.size, 'each name appears once').to.equal(order.length);
  for (const [parent, dependent] of edges) {
    const p = position.get(parent);
    const d = position.get(dependent);
    if (p !== undefined && d !== undefined) {
      expect(p, `${JSON.stringify(parent)} before ${JSON.stringify(dependent)}`).to.be.lessThan(d);
    }
  }
}

/**
 * The brute-force reference: a list of edges and nothing clever. Reachability by flooding,
 * shortest paths by breadth-first search over the edge list.
 */
class ReferenceGraph {
  readonly nodes = new Set<string>();
  readonly edges: Array<[string, string]> = [];

  hasEdge(parent: string, dependent: string): boolean {
    return this.edges.some(([p, d]) => p === parent && d === dependent);
  }

  /** Names reachable from `from` by one or more edges. */
  reach(from: string): Set<string> {
    const seen = new Set<string>();
    const todo = [from];
    while (todo.length > 0) {
      const at = todo.pop()!;
      for (const [p, d] of this.edges) {
        if (p === at && !seen.has(d)) {
          seen.add(d);
          todo.push(d);
        }
      }
    }
    return seen;
  }

  /** Number of edges on a shortest path from `from` to `to` (Infinity if none). */
  distance(from: string, to: string): number {
    let frontier = new Set([from]);
    const seen = new Set([from]);
    for (let steps = 1; frontier.size > 0; steps++) {
      const next = new Set<string>();
      for (const [p, d] of this.edges) {
        if (frontier.has(p) && !seen.has(d)) {
          if (d === to) return steps;
          seen.add(d);
          next.add(d);
        }
      }
      frontier = next;
    }
    return Infinity;
  }
}

const sorted = (names: Iterable<string>): string[] => [...names].sort();

describe('DependencyGraph', () => {
  describe('#addDependency()', () => {
    it('records that the dependent depends on the parent', () => {
      const graph = new DependencyGraph();
      expect(graph.addDependency('users', 'stats')).to.equal(true);
      expect(graph.hasDependency('users', 'stats')).to.equal(true);
      expect(graph.hasDependency('stats', 'users')).to.equal(false);
      expect(graph.childrenOf('users')).to.deep.equal(['stats']);
      expect(graph.parentsOf('stats')).to.deep.equal(['users']);
      expect(graph.edgeCount).to.equal(1);
    });

    it('returns false and changes nothing for an edge that already exists', () => {
      const graph = graphOf(['a', 'b'], ['a', 'c']);
      const before = snapshot(graph);
      expect(graph.addDependency('a', 'b')).to.equal(false);
      expect(snapshot(graph)).to.deep.equal(before);
      expect(graph.childrenOf('a')).to.deep.equal(['b', 'c']);
    });

    it('accepts names that no cache has registered yet and makes them nodes', () => {
      const graph = new DependencyGraph();
      expect(graph.has('future')).to.equal(false);
      graph.addDependency('future', 'later');
      expect(graph.has('future')).to.equal(true);
      expect(graph.has('later')).to.equal(true);
      expect(graph.nodes()).to.deep.equal(['future', 'later']);
    });

    it('refuses a self-loop with cyclePath [name, name], without creating the node', () => {
      const graph = new DependencyGraph();
      const error = cycleErrorOf(() => graph.addDependency('a', 'a'));
      expect(error.cyclePath).to.deep.equal(['a', 'a']);
      expect(graph.has('a')).to.equal(false);
      expect(graph.size).to.equal(0);
    });

    it('refuses a 2-cycle: the new edge, then the existing one back', () => {
      const graph = graphOf(['a', 'b']);
      const error = cycleErrorOf(() => graph.addDependency('b', 'a'));
      expect(error.cyclePath).to.deep.equal(['b', 'a', 'b']);
    });

    it('refuses a 3-cycle: the new edge first, then the existing path back downstream', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      const error = cycleErrorOf(() => graph.addDependency('c', 'a'));
      expect(error.cyclePath).to.deep.equal(['c', 'a', 'b', 'c']);
    });

    it('reports the shortest path back when several exist', () => {
      const graph = graphOf(['a', 'x'], ['x', 'y'], ['y', 'z'], ['a', 'z']);
      const error = cycleErrorOf(() => graph.addDependency('z', 'a'));
      expect(error.cyclePath).to.deep.equal(['z', 'a', 'z']);
    });

    it('raises a CacheGraphError with code E_DEPENDENCY_CYCLE naming the cycle', () => {
      const graph = graphOf(['a', 'b']);
      const error = cycleErrorOf(() => graph.addDependency('b', 'a'));
      expect(error).to.be.instanceOf(CacheGraphError);
      expect(error.code).to.equal('E_DEPENDENCY_CYCLE');
      expect(error.message).to.contain('"b" -> "a" -> "b"');
    });

    it('leaves the graph unchanged after refusing an edge', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c'], ['c', 'd'], ['x', 'b']);
      const before = snapshot(graph);
      cycleErrorOf(() => graph.addDependency('d', 'a'));
      cycleErrorOf(() => graph.addDependency('c', 'b'));
      cycleErrorOf(() => graph.addDependency('d', 'd'));
      expect(snapshot(graph)).to.deep.equal(before);
      // ...and keeps working afterwards.
      expect(graph.addDependency('a', 'd')).to.equal(true);
      expect(graph.dependentsOf('a')).to.deep.equal(['b', 'c', 'd']);
    });

    it('accepts edges that close an undirected loop but no directed cycle', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      expect(graph.addDependency('a', 'c')).to.equal(true);
      expect(graph.dependentsOf('a')).to.deep.equal(['b', 'c']);
    });

    it('accepts an edge between linked nodes that goes against their creation order', () => {
      // x0 and y0 were linked before x1 and y1; now x0 comes to depend on y1.
      const graph = graphOf(['x0', 'y0'], ['x1', 'y1']);
      expect(graph.addDependency('y1', 'x0')).to.equal(true);
      expect(graph.topologicalOrder()).to.deep.equal(['x1', 'y1', 'x0', 'y0']);
      expect(graph.dependentsOf('x1')).to.deep.equal(['y1', 'x0', 'y0']);
      const error = cycleErrorOf(() => graph.addDependency('y0', 'x1'));
      expect(error.cyclePath).to.deep.equal(['y0', 'x1', 'y1', 'x0', 'y0']);
    });

    it('gives orders that depend only on the edges and their insertion order', () => {
      const edges: Array<[string, string]> = [['d', 'e'], ['a', 'b'], ['b', 'd'], ['a', 'c'], ['c', 'e'], ['c', 'd']];
      const plain = graphOf(...edges);
      const prepared = new DependencyGraph();
      for (const name of ['e', 'd', 'c', 'b', 'a']) prepared.addNode(name);
      for (const [parent, dependent] of edges) prepared.addDependency(parent, dependent);
      for (const name of ['a', 'b', 'c', 'd', 'e']) {
        expect(prepared.dependentsOf(name), name).to.deep.equal(plain.dependentsOf(name));
        expect(prepared.upstreamOf(name), name).to.deep.equal(plain.upstreamOf(name));
      }
      expect(prepared.closure(['c', 'b'])).to.deep.equal(plain.closure(['c', 'b']));
      expect(plain.dependentsOf('a')).to.deep.equal(['b', 'c', 'd', 'e']);
    });
  });

  describe('#cascadeOf()', () => {
    it('answers the name, then its dependents in order, as one frozen array until the edges change', () => {
      const g = new DependencyGraph();
      g.addDependency('a', 'b');
      g.addDependency('b', 'c');
      const first = g.cascadeOf('a');
      expect(first).to.deep.equal(['a', 'b', 'c']);
      expect(Object.isFrozen(first)).to.equal(true);
      expect(g.cascadeOf('a'), 'remembered').to.equal(first);
      expect(g.dependentsOf('a')).to.deep.equal(['b', 'c']);
      g.addDependency('a', 'd');
      expect(g.cascadeOf('a')).to.deep.equal(['a', 'b', 'd', 'c']).and.not.equal(first);
      expect(g.cascadeOf('zz'), 'an unknown name cascades to itself').to.deep.equal(['zz']);
    });
  });

  describe('#removeDependency()', () => {
    it('removes the edge and returns true', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      expect(graph.removeDependency('a', 'b')).to.equal(true);
      expect(graph.hasDependency('a', 'b')).to.equal(false);
      expect(graph.childrenOf('a')).to.deep.equal([]);
      expect(graph.parentsOf('b')).to.deep.equal([]);
      expect(graph.dependentsOf('a')).to.deep.equal([]);
      expect(graph.edgeCount).to.equal(1);
    });

    it('keeps both names as nodes', () => {
      const graph = graphOf(['a', 'b']);
      graph.removeDependency('a', 'b');
      expect(graph.nodes()).to.deep.equal(['a', 'b']);
    });

    it('returns false for an edge that does not exist, in either direction or at all', () => {
      const graph = graphOf(['a', 'b']);
      expect(graph.removeDependency('b', 'a')).to.equal(false);
      expect(graph.removeDependency('a', 'nope')).to.equal(false);
      expect(graph.removeDependency('nope', 'a')).to.equal(false);
      expect(graph.edgeCount).to.equal(1);
    });

    it('allows the reverse edge once the path back is gone', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      graph.removeDependency('b', 'c');
      expect(graph.addDependency('c', 'a')).to.equal(true);
      expect(graph.dependentsOf('c')).to.deep.equal(['a', 'b']);
    });

    it('appends a re-added edge after the existing ones', () => {
      const graph = graphOf(['a', 'b'], ['a', 'c']);
      graph.removeDependency('a', 'b');
      graph.addDependency('a', 'b');
      expect(graph.childrenOf('a')).to.deep.equal(['c', 'b']);
    });
  });

  describe('#removeNode()', () => {
    it('drops the node and every edge into or out of it', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c'], ['x', 'b'], ['a', 'c']);
      expect(graph.removeNode('b')).to.equal(true);
      expect(graph.has('b')).to.equal(false);
      expect(graph.nodes()).to.deep.equal(['a', 'c', 'x']);
      expect(graph.edges()).to.deep.equal([['a', 'c']]);
      expect(graph.edgeCount).to.equal(1);
      expect(graph.childrenOf('x')).to.deep.equal([]);
      expect(graph.parentsOf('c')).to.deep.equal(['a']);
    });

    it('does not reconnect the upstreams of the node to its dependents', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      graph.removeNode('b');
      expect(graph.dependentsOf('a')).to.deep.equal([]);
    });

    it('returns false for an unknown name', () => {
      expect(graphOf(['a', 'b']).removeNode('nope')).to.equal(false);
    });

    it('lets the name be used again, with no memory of old edges', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      graph.removeNode('b');
      expect(graph.addDependency('c', 'b')).to.equal(true);
      expect(graph.addDependency('b', 'a')).to.equal(true);
      expect(graph.dependentsOf('c')).to.deep.equal(['b', 'a']);
    });
  });

  describe('#addNode()', () => {
    it('adds an isolated node that takes part in topologicalOrder()', () => {
      const graph = graphOf(['a', 'b']);
      expect(graph.addNode('lonely')).to.equal(true);
      expect(graph.addNode('lonely')).to.equal(false);
      expect(graph.addNode('a')).to.equal(false);
      expect(graph.topologicalOrder()).to.deep.equal(['a', 'lonely', 'b']);
      expect(graph.dependentsOf('lonely')).to.deep.equal([]);
    });
  });

  describe('#clear()', () => {
    it('removes every node and edge', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      graph.clear();
      expect(snapshot(graph)).to.deep.equal(snapshot(new DependencyGraph()));
      expect(graph.addDependency('c', 'a')).to.equal(true);
    });
  });

  describe('#parentsOf() and #childrenOf()', () => {
    it('list direct neighbours only, in edge insertion order', () => {
      const graph = graphOf(['z', 'm'], ['a', 'm'], ['m', 'q'], ['m', 'b'], ['q', 'r']);
      expect(graph.parentsOf('m')).to.deep.equal(['z', 'a']);
      expect(graph.childrenOf('m')).to.deep.equal(['q', 'b']);
      expect(graph.parentsOf('r')).to.deep.equal(['q']);
    });

    it('return [] for unknown names', () => {
      const graph = new DependencyGraph();
      expect(graph.parentsOf('nope')).to.deep.equal([]);
      expect(graph.childrenOf('nope')).to.deep.equal([]);
    });

    it('return copies that do not alter the graph', () => {
      const graph = graphOf(['a', 'b']);
      graph.childrenOf('a').push('x');
      graph.parentsOf('b').length = 0;
      graph.edges().pop();
      graph.nodes().pop();
      expect(graph.edges()).to.deep.equal([['a', 'b']]);
      expect(graph.nodes()).to.deep.equal(['a', 'b']);
    });
  });

  describe('#dependentsOf()', () => {
    it('lists a diamond bottom once, after both its upstreams', () => {
      const graph = graphOf(['a', 'b'], ['a', 'c'], ['b', 'd'], ['c', 'd']);
      expect(graph.dependentsOf('a')).to.deep.equal(['b', 'c', 'd']);
      expect(graph.dependentsOf('b')).to.deep.equal(['d']);
    });

    it('places a cache after an upstream that was discovered later', () => {
      // b is a's first child, but b also depends on c.
      const graph = graphOf(['a', 'b'], ['a', 'c'], ['c', 'b']);
      expect(graph.dependentsOf('a')).to.deep.equal(['c', 'b']);
    });

    it('breaks ties by edge insertion order', () => {
      const graph = graphOf(['r', 'z'], ['r', 'a'], ['r', 'm'], ['a', 'a1'], ['z', 'z1']);
      expect(graph.dependentsOf('r')).to.deep.equal(['z', 'a', 'm', 'z1', 'a1']);
    });

    it('handles a wide fan-out', () => {
      const graph = new DependencyGraph();
      const leaves = Array.from({ length: 5000 }, (_, i) => `leaf${i}`);
      for (const leaf of leaves) graph.addDependency('root', leaf);
      for (const leaf of leaves) graph.addDependency(leaf, 'sink');
      expect(graph.dependentsOf('root')).to.deep.equal([...leaves, 'sink']);
      expect(graph.upstreamOf('sink')).to.deep.equal(['root', ...leaves]);
    });

    it('excludes the name itself and returns [] for a leaf or an unknown name', () => {
      const graph = graphOf(['a', 'b']);
      expect(graph.dependentsOf('a')).to.deep.equal(['b']);
      expect(graph.dependentsOf('b')).to.deep.equal([]);
      expect(graph.dependentsOf('nope')).to.deep.equal([]);
    });
  });

  describe('#upstreamOf()', () => {
    it('lists transitive upstreams, roots first', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c'], ['c', 'd']);
      expect(graph.upstreamOf('d')).to.deep.equal(['a', 'b', 'c']);
    });

    it('lists a diamond top once, before both branches', () => {
      const graph = graphOf(['a', 'b'], ['a', 'c'], ['b', 'd'], ['c', 'd']);
      expect(graph.upstreamOf('d')).to.deep.equal(['a', 'b', 'c']);
    });

    it('excludes the name itself and returns [] for a root or an unknown name', () => {
      const graph = graphOf(['a', 'b']);
      expect(graph.upstreamOf('a')).to.deep.equal([]);
      expect(graph.upstreamOf('nope')).to.deep.equal([]);
    });
  });

  describe('#closure()', () => {
    it('merges the downstreams of several roots, each once, upstreams first', () => {
      // a and b share c; c and x share d.
      const graph = graphOf(['a', 'c'], ['b', 'c'], ['c', 'd'], ['x', 'd'], ['b', 'e']);
      const order = graph.closure(['a', 'b', 'x']);
      expect(order).to.deep.equal(['a', 'b', 'x', 'c', 'e', 'd']);
    });

    it('places a root after another root it depends on', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      expect(graph.closure(['c', 'b', 'a'])).to.deep.equal(['a', 'b', 'c']);
    });

    it('lists each name once when roots repeat or overlap', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c']);
      expect(graph.closure(['b', 'a', 'b', 'c'])).to.deep.equal(['a', 'b', 'c']);
    });

    it('includes names that are not in the graph as they are', () => {
      const graph = graphOf(['a', 'b']);
      expect(graph.closure(['ghost', 'a'])).to.deep.equal(['ghost', 'a', 'b']);
    });

    it('accepts any iterable and returns [] for none', () => {
      const graph = graphOf(['a', 'b']);
      expect(graph.closure(new Set(['a']))).to.deep.equal(['a', 'b']);
      expect(graph.closure([])).to.deep.equal([]);
    });
  });

  describe('#topologicalOrder()', () => {
    it('orders every node, parents before dependents, ties in first-mention order', () => {
      const graph = graphOf(['c', 'd'], ['a', 'b'], ['b', 'd']);
      expect(graph.topologicalOrder()).to.deep.equal(['c', 'a', 'b', 'd']);
    });

    it('orders a subset only by the edges among its members', () => {
      const graph = graphOf(['a', 'b'], ['b', 'c'], ['d', 'a']);
      expect(graph.topologicalOrder(['c', 'a', 'd'])).to.deep.equal(['c', 'd', 'a']);
      expect(graph.topologicalOrder(['c', 'b', 'b'])).to.deep.equal(['b', 'c']);
      expect(graph.topologicalOrder(['ghost', 'b', 'a'])).to.deep.equal(['ghost', 'a', 'b']);
    });

    it('returns [] for an empty graph', () => {
      expect(new DependencyGraph().topologicalOrder()).to.deep.equal([]);
    });
  });

  describe('#nodes(), #edges(), #has(), size and edgeCount', () => {
    it('describe the whole graph', () => {
      const graph = graphOf(['b', 'a'], ['b', 'c'], ['c', 'a']);
      expect(graph.nodes()).to.deep.equal(['b', 'a', 'c']);
      expect(graph.edges()).to.deep.equal([['b', 'a'], ['b', 'c'], ['c', 'a']]);
      expect(graph.size).to.equal(3);
      expect(graph.edgeCount).to.equal(3);
      expect(graph.has('c')).to.equal(true);
      expect(graph.has('d')).to.equal(false);
    });
  });

  describe('with hostile names', () => {
    const hostile = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'prototype', 'valueOf', ''];

    it('treats them as ordinary names', () => {
      const graph = new DependencyGraph();
      for (let i = 1; i < hostile.length; i++) graph.addDependency(hostile[i - 1]!, hostile[i]!);
      expect(graph.has('__proto__')).to.equal(true);
      expect(graph.has('isPrototypeOf')).to.equal(false);
      expect(graph.nodes()).to.deep.equal(hostile);
      expect(graph.dependentsOf('__proto__')).to.deep.equal(hostile.slice(1));
      expect(graph.upstreamOf('')).to.deep.equal(hostile.slice(0, -1));
      expect(graph.closure(['constructor'])).to.deep.equal(hostile.slice(1));
      expect(graph.topologicalOrder()).to.deep.equal(hostile);
      expect(graph.childrenOf('hasOwnProperty')).to.deep.equal(['toString']);
      expect(graph.parentsOf('constructor')).to.deep.equal(['__proto__']);
      expect(graph.dependentsOf('isPrototypeOf')).to.deep.equal([]);
    });

    it('detects cycles through them', () => {
      const graph = graphOf(['__proto__', 'constructor'], ['constructor', 'hasOwnProperty']);
      const error = cycleErrorOf(() => graph.addDependency('hasOwnProperty', '__proto__'));
      expect(error.cyclePath).to.deep.equal(['hasOwnProperty', '__proto__', 'constructor', 'hasOwnProperty']);
      expect(cycleErrorOf(() => graph.addDependency('__proto__', '__proto__')).cyclePath).to.deep.equal([
        '__proto__',
        '__proto__',
      ]);
    });

    it('removes them without touching Object.prototype', () => {
      const prototypeKeys = Object.getOwnPropertyNames(Object.prototype);
      const graph = graphOf(['__proto__', 'constructor'], ['toString', '__proto__']);
      expect(graph.removeNode('__proto__')).to.equal(true);
      expect(graph.removeDependency('toString', 'constructor')).to.equal(false);
      expect(graph.nodes()).to.deep.equal(['constructor', 'toString']);
      expect(graph.edgeCount).to.equal(0);
      expect(Object.getOwnPropertyNames(Object.prototype)).to.deep.equal(prototypeKeys);
      expect(Object.getPrototypeOf({})).to.equal(Object.prototype);
    });
  });

  describe('against a brute-force reference', () => {
    const pool = ['__proto__', 'constructor', 'hasOwnProperty', ''].concat(Array.from({ length: 20 }, (_, i) => `n${i}`));

    it('agrees on cycles, cycle paths, reachability and order for 300 random graphs', () => {
      let refused = 0;
      for (let seed = 1; seed <= 300; seed++) {
        const random = seededRandom(seed);
        const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
        const names = pool.filter(() => random() < 0.6).slice(0, 2 + Math.floor(random() * 20));
        if (names.length < 2) names.push('x', 'y');
        const graph = new DependencyGraph();
        const reference = new ReferenceGraph();

        // Pre-register some names in random order, so ranks start out shuffled.
        for (const name of names) {
          if (random() < 0.3) {
            graph.addNode(name);
            reference.nodes.add(name);
          }
        }

        const operations = names.length * 4;
        for (let op = 0; op < operations; op++) {
          const roll = random();
          if (roll < 0.08 && reference.edges.length > 0) {
            const [parent, dependent] = pick(reference.edges);
            expect(graph.removeDependency(parent, dependent)).to.equal(true);
            reference.edges.splice(reference.edges.findIndex(([p, d]) => p === parent && d === dependent), 1);
            continue;
          }
          if (roll < 0.1) {
            const name = pick(names);
            expect(graph.removeNode(name)).to.equal(reference.nodes.delete(name));
            for (let i = reference.edges.length - 1; i >= 0; i--) {
              if (reference.edges[i]!.includes(name)) reference.edges.splice(i, 1);
            }
            continue;
          }
          const parent = pick(names);
          const dependent = roll < 0.12 ? parent : pick(names);
          if (parent === dependent || reference.reach(dependent).has(parent)) {
            refused++;
            const before = snapshot(graph);
            const path = cycleErrorOf(() => graph.addDependency(parent, dependent)).cyclePath;
            expect(path[0]).to.equal(parent);
            expect(path[1]).to.equal(dependent);
            expect(path[path.length - 1]).to.equal(parent);
            for (let i = 1; i + 1 < path.length; i++) {
              expect(reference.hasEdge(path[i]!, path[i + 1]!), `edge ${path[i]} -> ${path[i + 1]}`).to.equal(true);
            }
            const shortest = parent === dependent ? 0 : reference.distance(dependent, parent);
            expect(path.length, 'the shortest way back').to.equal(shortest + 2);
            expect(snapshot(graph)).to.deep.equal(before);
          } else {
            const isNew = !reference.hasEdge(parent, dependent);
            expect(graph.addDependency(parent, dependent)).to.equal(isNew);
            if (isNew) reference.edges.push([parent, dependent]);
            reference.nodes.add(parent).add(dependent);
          }
        }

        expect(sorted(graph.nodes())).to.deep.equal(sorted(reference.nodes));
        expect(sorted(graph.edges().map((e) => JSON.stringify(e)))).to.deep.equal(
          sorted(reference.edges.map((e) => JSON.stringify(e))),
        );
        expect(graph.edgeCount).to.equal(reference.edges.length);

        const all = graph.topologicalOrder();
        expect(sorted(all)).to.deep.equal(sorted(reference.nodes));
        expectRespectsEdges(all, reference.edges);

        for (const name of reference.nodes) {
          const down = graph.dependentsOf(name);
          expect(sorted(down), `dependentsOf(${name})`).to.deep.equal(sorted(reference.reach(name)));
          expectRespectsEdges(down, reference.edges);

          const up = graph.upstreamOf(name);
          const expectedUp = [...reference.nodes].filter((other) => reference.reach(other).has(name));
          expect(sorted(up), `upstreamOf(${name})`).to.deep.equal(sorted(expectedUp));
          expectRespectsEdges(up, reference.edges);
        }

        const roots = names.filter(() => random() < 0.3);
        const expectedClosure = new Set(roots);
        for (const root of roots) for (const name of reference.reach(root)) expectedClosure.add(name);
        const closure = graph.closure(roots);
        expect(sorted(closure), 'closure').to.deep.equal(sorted(expectedClosure));
        expectRespectsEdges(closure, reference.edges);

        const subset = names.filter(() => random() < 0.5);
        const subOrder = graph.topologicalOrder(subset);
        expect(sorted(subOrder)).to.deep.equal(sorted(subset));
        expectRespectsEdges(subOrder, reference.edges);
      }
      // The generator must actually exercise refusals, not only happy paths.
      expect(refused).to.be.greaterThan(300);
    });
  });

  describe('with a chain of 20 000 caches', () => {
    const length = 20_000;
    const names = Array.from({ length }, (_, i) => `cache${i}`);
    const head = names[0]!;
    const tail = names[length - 1]!;

    // No timing assertions (speed is measured in bench/, not asserted): a quadratic or
    // recursive walk shows up here as the suite's timeout or a stack overflow.

    it('builds in chain order and walks it in both directions without deep recursion', () => {
      const graph = new DependencyGraph();
      for (let i = 1; i < length; i++) graph.addDependency(names[i - 1]!, names[i]!);
      const down = graph.dependentsOf(head);
      const closure = graph.closure([names[5]!, head, names[7]!]);
      const up = graph.upstreamOf(tail);
      const all = graph.topologicalOrder();
      expect(down).to.deep.equal(names.slice(1));
      expect(closure).to.deep.equal(names);
      expect(up).to.deep.equal(names.slice(0, -1));
      expect(all).to.deep.equal(names);
    });

    it('builds from the tail end (reverse order)', () => {
      const graph = new DependencyGraph();
      for (let i = length - 1; i > 0; i--) graph.addDependency(names[i - 1]!, names[i]!);
      expect(graph.dependentsOf(head)).to.deep.equal(names.slice(1));
      expect(graph.nodes()[0]).to.equal(names[length - 2]);
    });

    it('builds when every name was added beforehand in the opposite order', () => {
      const graph = new DependencyGraph();
      for (let i = length - 1; i >= 0; i--) graph.addNode(names[i]!);
      for (let i = 1; i < length; i++) graph.addDependency(names[i - 1]!, names[i]!);
      expect(graph.dependentsOf(head)).to.deep.equal(names.slice(1));
    });

    it('refuses closing the chain into a loop with the whole path, changing nothing', () => {
      const graph = new DependencyGraph();
      for (let i = 1; i < length; i++) graph.addDependency(names[i - 1]!, names[i]!);
      const error = cycleErrorOf(() => graph.addDependency(tail, head));
      expect(error.cyclePath).to.deep.equal([tail, ...names]);
      expect(graph.edgeCount).to.equal(length - 1);
      expect(graph.childrenOf(tail)).to.deep.equal([]);
    });
  });
});
