// Cache get/set against Map and lru-cache, and what the codec check at set() costs.
// Run: npm run bench:cache   (not part of npm test)
import { LRUCache } from 'lru-cache';
import { CacheManager, MemoryStore } from '../lib/index.js';
import { machine, measure, table, type Result } from './harness.js';

const N = 10_000;
const OPS = 1_000_000;
const keys = Array.from({ length: N }, (_, i) => `key:${i}`);
const values = Array.from({ length: N }, (_, i) => ({ id: i, name: `user ${i}`, tags: ['a', 'b', 'c'] }));

const manager = new CacheManager({ name: 'bench', store: new MemoryStore() });
const checkedV8 = await manager.registerCache<string, object>('v8');
const checkedJson = await new CacheManager({ name: 'bench-json', store: new MemoryStore(), codec: 'json' }).registerCache<string, object>('json');
const unchecked = await manager.registerCache<string, object>('memory-only', { persistent: false });
const bounded = await manager.registerCache<string, object>('bounded', { persistent: false, maxEntries: N });
const map = new Map<string, object>();
const lru = new LRUCache<string, object>({ max: N });

// Correctness gate: every implementation must hold the right values before it is timed.
for (const store of [checkedV8, checkedJson, unchecked, bounded, map, lru]) {
  for (let i = 0; i < N; i++) store.set(keys[i]!, values[i]!);
  for (let i = 0; i < N; i++) if (store.get(keys[i]!) !== values[i]) throw new Error(`wrong value from ${store.constructor.name}`);
}

const mask = N - 1 > 0 ? N : 1;
const setResults: Result[] = [
  measure('Map.set', OPS, (i) => map.set(keys[i % mask]!, values[i % mask]!)),
  measure('Cache.set (memory-only, no check)', OPS, (i) => unchecked.set(keys[i % mask]!, values[i % mask]!)),
  measure('Cache.set (v8 codec check)', OPS, (i) => checkedV8.set(keys[i % mask]!, values[i % mask]!)),
  measure('Cache.set (json codec check)', OPS, (i) => checkedJson.set(keys[i % mask]!, values[i % mask]!)),
  measure('Cache.set (maxEntries, LRU)', OPS, (i) => bounded.set(keys[i % mask]!, values[i % mask]!)),
  measure('lru-cache set', OPS, (i) => lru.set(keys[i % mask]!, values[i % mask]!)),
];
const getResults: Result[] = [
  measure('Map.get', OPS, (i) => map.get(keys[i % mask]!)),
  measure('Cache.get', OPS, (i) => checkedV8.get(keys[i % mask]!)),
  measure('Cache.get (maxEntries, LRU)', OPS, (i) => bounded.get(keys[i % mask]!)),
  measure('lru-cache get', OPS, (i) => lru.get(keys[i % mask]!)),
];

console.log(`# cache operations, ${N} string keys, object values {id, name, tags[3]}\n\n${machine()}\n`);
console.log(`## set\n\n${table(setResults, 'Map.set')}\n`);
console.log(`## get (hit)\n\n${table(getResults, 'Map.get')}`);
await manager.close();
