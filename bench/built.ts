// cachegraph as its users run it: the compiled `dist/` (`npm run build`, which every bench
// script runs first), not `lib/` compiled on the fly by tsx. tsx compiles with esbuild's
// `keepNames`, which passes every function through a naming helper: each closure then
// carries a property store of its own (about 250 bytes), a registered cache weighs twice
// what it does in `dist/` (8.4 KB against 4.0 KB), and work that creates closures or walks
// many caches (cascades, flights) is measured slower than it is. Types come from `lib/`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as Lib from '../lib/index.js';
import type * as CodecLib from '../lib/codec/index.js';

const dist = new URL('../dist/', import.meta.url);
if (!existsSync(fileURLToPath(new URL('index.js', dist)))) throw new Error('bench: dist/ is missing: run `npm run build` first (the npm bench scripts do)');

const lib = (await import(new URL('index.js', dist).href)) as typeof Lib;
const codecs = (await import(new URL('codec/index.js', dist).href)) as typeof CodecLib;

export const { CacheManager, EVENTS, FileStore, MemoryStore, RedisStore, systemClock, v8Codec } = lib;
export type CacheManager = Lib.CacheManager;
export type Cache<K = unknown, V = unknown> = Lib.Cache<K, V>;
export type FileStore = Lib.FileStore;
export type StoredEntry = Lib.StoredEntry;
export const { checkJson, checkV8 } = codecs;
