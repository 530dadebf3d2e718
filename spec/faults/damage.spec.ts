// Damaged files: a torn tail of the last segment is cut back to the last whole batch with a
// warning; damage anywhere else (the middle of a segment, a sealed segment, the snapshot,
// the manifest) is a CorruptFileError naming the file, or, with onCorrupt: 'quarantine',
// the files are moved aside and the cache is rebuilt; thousands of random bit flips are
// always detected or cut back cleanly, never a crash, a hang or wrong data.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CacheManager,
  CorruptFileError,
  FileStore,
  UnsupportedFormatError,
  v8Codec,
  type CacheRejectedEvent,
  type StoreWarning,
} from '../../lib/index.js';
import { buildLayout, faultSeed, randomInt, readManifestBody, type Layout } from '../fixtures/fault-helpers.js';
import { CACHE_NAME, digest, seededRandom, type ModelValue } from '../fixtures/fault-model.js';

const seed = faultSeed();
const ctx = (warnings: StoreWarning[] = []) => ({ codec: v8Codec, clock: { now: () => Date.now() }, warn: (w: StoreWarning) => warnings.push(w) });

/** Loads the cache through a new manager on `dir`; the store is closed afterwards. */
async function loadThroughManager(
  dir: string,
  options: { onCorrupt?: 'throw' | 'quarantine'; builder?: () => Array<[string, ModelValue]> } = {},
): Promise<{ contents?: Map<string, ModelValue>; error?: Error; warnings: StoreWarning[]; rejected: CacheRejectedEvent[]; saveAgain: () => Promise<Map<string, ModelValue>> }> {
  const store = new FileStore({ dir, appendfsync: 'always', compaction: false });
  const manager = new CacheManager({ name: 'damage', store, autoSync: false, ...(options.onCorrupt === undefined ? {} : { onCorrupt: options.onCorrupt }) });
  const warnings: StoreWarning[] = [];
  const rejected: CacheRejectedEvent[] = [];
  manager.on('store:warning', (w) => warnings.push(w));
  manager.on('cache:rejected', (e) => rejected.push(e));
  const close = async (): Promise<void> => {
    await manager.close();
    await store.close();
  };
  try {
    const cache = await manager.registerCache<string, ModelValue>(CACHE_NAME, options.builder === undefined ? {} : { builder: options.builder });
    const contents = new Map(cache);
    return {
      contents,
      warnings,
      rejected,
      saveAgain: async () => {
        try {
          cache.set('saved-again', { n: 1, step: 0, pad: 'again' });
          await manager.save(CACHE_NAME);
          return new Map(cache);
        } finally {
          await close();
        }
      },
    };
  } catch (error) {
    await close();
    return { error: error as Error, warnings, rejected, saveAgain: () => Promise.reject(new Error('the load failed')) };
  }
}

/** What a read-only store loads (never writes, never cuts). */
async function readOnlyLoad(dir: string): Promise<Map<string, ModelValue> | undefined> {
  const store = new FileStore({ dir, readOnly: true });
  try {
    const snapshot = await store.load(CACHE_NAME, ctx());
    return snapshot === undefined ? undefined : new Map(snapshot.entries.map(([k, v]) => [k as string, v as ModelValue]));
  } finally {
    await store.close();
  }
}

describe('Faults: damaged files', function () {
  this.timeout(60_000);
  let root: string;
  let layout: Layout;
  let trial = 0;

  before(async function () {
    root = await mkdtemp(path.join(os.tmpdir(), 'cachegraph-damage-'));
    layout = await buildLayout(path.join(root, 'pristine'), seed);
    const batches = layout.lastBatches;
    expect(batches.length, 'whole batches in the last segment').to.be.greaterThan(2);
    expect((await stat(layout.last)).size).to.equal(batches.at(-1)?.end);
    expect(await readOnlyLoad(layout.dir)).to.deep.equal(layout.states.at(-1));
  });

  after(async function () {
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh copy of the pristine layout; paths of its files. */
  async function copy(): Promise<{ dir: string; at: (file: string) => string }> {
    const dir = path.join(root, `trial-${trial++}`);
    await cp(layout.dir, dir, { recursive: true });
    return { dir, at: (file) => path.join(dir, path.relative(layout.dir, file)) };
  }

  const finalState = (): ReadonlyMap<string, ModelValue> => layout.states.at(-1) as ReadonlyMap<string, ModelValue>;

  describe('a torn tail of the last segment', function () {
    it('truncated at random offsets inside its last batch: loads the state before that batch, warns torn-tail, cuts it, and the next save works', async function () {
      const random = seededRandom(seed ^ 0x1234);
      const lastBatch = layout.lastBatches.at(-1) as { offset: number; end: number; state: number };
      const offsets = new Set([lastBatch.offset + 1, lastBatch.offset + 35, lastBatch.offset + 36, lastBatch.offset + 37, lastBatch.offset + 44, lastBatch.end - 1]);
      while (offsets.size < 24) offsets.add(randomInt(random, lastBatch.offset + 1, lastBatch.end - 1));
      for (const offset of offsets) {
        const { dir, at } = await copy();
        await truncate(at(layout.last), offset);
        const result = await loadThroughManager(dir);
        const where = `cut at ${offset} (last batch ${lastBatch.offset}..${lastBatch.end}); seed ${seed}`;
        expect(result.error, where).to.equal(undefined);
        expect(result.contents, where).to.deep.equal(layout.states[lastBatch.state - 1]);
        const torn = result.warnings.filter((w) => w.kind === 'torn-tail');
        expect(torn, where).to.have.length(1);
        expect(torn[0]?.path, where).to.equal(at(layout.last));
        expect(torn[0]?.name, where).to.equal(CACHE_NAME);
        // Cut back to the last whole batch.
        expect((await stat(at(layout.last))).size, where).to.equal(lastBatch.offset);
        const saved = await result.saveAgain();
        expect(await readOnlyLoad(dir), where).to.deep.equal(saved);
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('truncated anywhere after its header: loads the state of the whole batches before the cut', async function () {
      const random = seededRandom(seed ^ 0x5678);
      const end = layout.lastBatches.at(-1)?.end ?? 0;
      for (let i = 0; i < 16; i++) {
        const offset = randomInt(random, layout.lastHeaderEnd, end - 1);
        const whole = layout.lastBatches.filter((b) => b.end <= offset);
        const expected = whole.length === 0 ? layout.states[(layout.lastBatches[0]?.state ?? 1) - 1] : layout.states[whole.at(-1)?.state ?? 0];
        const { dir, at } = await copy();
        await truncate(at(layout.last), offset);
        const result = await loadThroughManager(dir);
        const where = `cut at ${offset}; seed ${seed}`;
        expect(result.error, where).to.equal(undefined);
        expect(result.contents, where).to.deep.equal(expected);
        const cutInside = !layout.lastBatches.some((b) => b.offset === offset);
        expect(result.warnings.filter((w) => w.kind === 'torn-tail'), where).to.have.length(cutInside ? 1 : 0);
        await result.saveAgain();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('truncated inside its header: CorruptFileError naming the segment', async function () {
      for (const offset of [0, 5, 15, 16, layout.lastHeaderEnd - 1]) {
        const { dir, at } = await copy();
        await truncate(at(layout.last), offset);
        const result = await loadThroughManager(dir);
        if (offset === 0) {
          // An empty segment is a file the manifest names with nothing in it: damage too.
          expect(result.error, `cut at ${offset}`).to.be.instanceOf(CorruptFileError);
        }
        expect(result.error, `cut at ${offset}`).to.be.instanceOf(CorruptFileError).with.property('path', at(layout.last));
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('damage before the end', function () {
    /** Flips one byte at `offset` of `file` (in a copy), returns the load result. */
    async function flipAndLoad(file: string, offset: number, options: Parameters<typeof loadThroughManager>[1] = {}) {
      const { dir, at } = await copy();
      const handle = await open(at(file), 'r+');
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, offset);
      byte[0] = (byte[0] as number) ^ 0x5a;
      await handle.write(byte, 0, 1, offset);
      await handle.close();
      return { dir, at, result: await loadThroughManager(dir, options) };
    }

    it('in the middle of the last segment (a batch with whole batches after it): CorruptFileError naming it and the offset', async function () {
      const batches = layout.lastBatches;
      const victims = [batches[0], batches[1], batches.at(-2)] as Array<{ offset: number; end: number }>;
      for (const batch of victims) {
        for (const offset of [batch.offset, batch.offset + 20, batch.offset + 40, batch.end - 1]) {
          const { dir, at, result } = await flipAndLoad(layout.last, offset);
          const where = `flip at ${offset} of ${batch.offset}..${batch.end}`;
          expect(result.error, where).to.be.instanceOf(CorruptFileError);
          const error = result.error as CorruptFileError;
          expect(error.path, where).to.equal(at(layout.last));
          expect(error.cacheName, where).to.equal(CACHE_NAME);
          expect(error.message, where).to.contain(at(layout.last));
          expect(error.offset, where).to.be.a('number');
          await rm(dir, { recursive: true, force: true });
        }
      }
    });

    for (const kind of ['sealed', 'snapshot', 'manifest'] as const) {
      it(`in the ${kind === 'sealed' ? 'sealed segment' : kind}: CorruptFileError naming the path; the files are left as they are`, async function () {
        const file = layout[kind];
        const size = (await stat(file)).size;
        for (const offset of [0, 9, 14, Math.floor(size / 2), size - 5, size - 1]) {
          const { dir, at, result } = await flipAndLoad(file, offset);
          const where = `${kind} flip at ${offset}/${size}`;
          // Byte 9 is the low byte of the major version: 1 ^ 0x5a reads as a newer version.
          expect(result.error, where).to.be.instanceOf(offset === 9 ? UnsupportedFormatError : CorruptFileError);
          expect((result.error as CorruptFileError | UnsupportedFormatError).path, where).to.equal(at(file));
          // Nothing was cut, moved or rewritten.
          expect(await readdir(path.dirname(at(file))), where).to.have.members(await readdir(layout.cacheDir));
          await rm(dir, { recursive: true, force: true });
        }
      });
    }

    for (const kind of ['snapshot', 'manifest', 'sealed'] as const) {
      it(`in the ${kind === 'sealed' ? 'sealed segment' : kind} truncated (header, middle, before the trailer): CorruptFileError naming the path`, async function () {
        const file = layout[kind];
        const size = (await stat(file)).size;
        for (const length of [4, 15, Math.floor(size / 2), size - 20, size - 4, size - 1]) {
          const { dir, at } = await copy();
          await truncate(at(file), length);
          const result = await loadThroughManager(dir);
          expect(result.error, `${kind} cut to ${length}/${size}`).to.be.instanceOf(CorruptFileError).with.property('path', at(file));
          await rm(dir, { recursive: true, force: true });
        }
      });
    }

    for (const kind of ['snapshot', 'manifest', 'sealed', 'last'] as const) {
      it(`a newer major format version in the ${kind === 'sealed' || kind === 'last' ? `${kind} segment` : kind}: UnsupportedFormatError naming the path and version`, async function () {
        const { dir, at } = await copy();
        const bytes = await readFile(at(layout[kind]));
        bytes.writeUInt16BE(2, 8);
        await writeFile(at(layout[kind]), bytes);
        const result = await loadThroughManager(dir);
        expect(result.error, kind).to.be.instanceOf(UnsupportedFormatError);
        expect((result.error as UnsupportedFormatError).path, kind).to.equal(at(layout[kind]));
        expect(result.error?.message, kind).to.match(/version 2/);
        await rm(dir, { recursive: true, force: true });
      });
    }

    for (const kind of ['last', 'sealed', 'snapshot', 'manifest'] as const) {
      it(`with onCorrupt: 'quarantine', damage in the ${kind === 'sealed' || kind === 'last' ? `${kind} segment` : kind} moves the files aside as *.corrupt-* and the builder rebuilds the cache`, async function () {
        const file = layout[kind];
        // For the last segment: damage in its first batch, which whole batches follow.
        const offset = kind === 'last' ? (layout.lastBatches[0]?.offset ?? 0) + 40 : Math.floor((await stat(file)).size / 2);
        const built: Array<[string, ModelValue]> = [['rebuilt', { n: 42, step: 0, pad: 'from the builder' }]];
        const { dir, at, result } = await flipAndLoad(file, offset, { onCorrupt: 'quarantine', builder: () => built });
        expect(result.error, kind).to.equal(undefined);
        expect(result.contents, kind).to.deep.equal(new Map(built));
        expect(result.rejected, kind).to.have.length(1);
        const rejected = result.rejected[0] as CacheRejectedEvent;
        expect(rejected.reason).to.equal('corrupt');
        expect(rejected.error).to.be.instanceOf(CorruptFileError).with.property('path', at(file));
        const entries = await readdir(dir);
        const aside = entries.filter((name) => name.startsWith(`${CACHE_NAME}.cgc.corrupt-`));
        expect(aside, kind).to.have.length(1);
        expect(rejected.quarantinedTo).to.equal(path.join(dir, aside[0] as string));
        // The damaged files are kept as they were, for a post-mortem.
        expect(await readdir(path.join(dir, aside[0] as string))).to.have.members(await readdir(layout.cacheDir));
        // The rebuilt cache is saved and loads again.
        const saved = await result.saveAgain();
        expect(await readOnlyLoad(dir)).to.deep.equal(saved);
        expect(saved.get('rebuilt')).to.deep.equal(built[0]?.[1]);
        await rm(dir, { recursive: true, force: true });
      });
    }
  });

  describe('debris a crash leaves', function () {
    /** A pid that no process has any more. */
    function deadPid(): number {
      const child = spawnSync(process.execPath, ['-e', '0']);
      return child.pid as number;
    }

    it('temp files of a dead writer: ignored by the load, removed by the next writer; a live process\'s are kept', async function () {
      const { dir } = await copy();
      const cacheDir = path.join(dir, `${CACHE_NAME}.cgc`);
      const { next } = await readManifestBody(cacheDir);
      const dead = deadPid();
      const debris = [`.${next}.snapshot.tmp-${dead}-0123456789ab`, `.MANIFEST.tmp-${dead}-0123456789ab`, `.${next}.log.tmp-${dead}-0123456789ab`];
      for (const name of debris) await writeFile(path.join(cacheDir, name), Buffer.alloc(300, 0x41));
      const live = `.${next + 1}.snapshot.tmp-${process.pid}-0123456789ab`;
      await writeFile(path.join(cacheDir, live), 'a write in progress');
      const result = await loadThroughManager(dir);
      expect(result.error).to.equal(undefined);
      expect(result.contents).to.deep.equal(finalState());
      await result.saveAgain();
      const left = await readdir(cacheDir);
      for (const name of debris) expect(left).not.to.include(name);
      expect(left).to.include(live);
    });

    it('data files no manifest names (written just before a crash): ignored by the load, and removed by the next writer', async function () {
      const { dir } = await copy();
      const cacheDir = path.join(dir, `${CACHE_NAME}.cgc`);
      const { next } = await readManifestBody(cacheDir);
      // What a crash between writing a file and committing the manifest that names it leaves:
      // a snapshot at the next number (a full save), a snapshot at a reserved number (a compaction).
      const orphans = [`${next}.snapshot`, `${next + 1}.snapshot`, `${next + 2}.log`];
      for (const name of orphans) await cp(layout.snapshot, path.join(cacheDir, name));
      const result = await loadThroughManager(dir);
      expect(result.error).to.equal(undefined);
      expect(result.contents).to.deep.equal(finalState());
      const saved = await result.saveAgain();
      expect(await readOnlyLoad(dir)).to.deep.equal(saved);
      // Left there, an orphan is a full copy of the cache that nothing ever deletes.
      expect((await readdir(cacheDir)).filter((name) => orphans.includes(name))).to.deep.equal([]);
    });
  });

  describe('bit flips', function () {
    const FLIPS_PER_FILE = Number(process.env['CACHEGRAPH_FLIPS'] ?? 1000);
    // The soak raises the count (CACHEGRAPH_FLIPS): about 10 ms per flip at most.
    this.timeout(Math.max(60_000, FLIPS_PER_FILE * 30));
    const tally: Record<string, { detected: number; cutBack: number; cutBackMore: number }> = {};

    after(function () {
      const rows = Object.entries(tally).map(([kind, t]) => `${kind}: ${t.detected} detected, ${t.cutBack} cut back as a torn tail (last batch), ${t.cutBackMore} cut back over 2+ whole batches`);
      console.log(`      bit flips (${FLIPS_PER_FILE} per file, seed ${seed}): ${rows.join('; ')}`);
    });

    for (const kind of ['manifest', 'snapshot', 'sealed', 'last'] as const) {
      it(`${kind === 'sealed' || kind === 'last' ? `${kind} segment` : kind}: every random 1–2 byte flip is detected (typed error naming the file) or, in the last batch, cut back to the state before it`, async function () {
        const { dir, at } = await copy();
        const file = at(layout[kind]);
        const pristine = await readFile(file);
        const random = seededRandom((seed ^ kind.length * 0x9e3779b1) >>> 0);
        const lastBatch = layout.lastBatches.at(-1) as { offset: number; state: number };
        const counts = { detected: 0, cutBack: 0, cutBackMore: 0 };
        // Flips are written in place and undone after each load (a whole-file write per flip
        // would cost more than the load).
        const handle = await open(file, 'r+');
        try {
          for (let i = 0; i < FLIPS_PER_FILE; i++) {
            const positions = [randomInt(random, 0, pristine.length - 1)];
            if (random() < 0.5) positions.push(random() < 0.5 ? Math.min(pristine.length - 1, (positions[0] as number) + 1) : randomInt(random, 0, pristine.length - 1));
            const flipped = new Map<number, number>();
            for (const p of positions) flipped.set(p, ((flipped.get(p) ?? pristine[p]) as number) ^ randomInt(random, 1, 255));
            for (const [p, value] of [...flipped]) if (value === pristine[p]) flipped.delete(p);
            if (flipped.size === 0) continue;
            for (const [p, value] of flipped) await handle.write(Uint8Array.of(value), 0, 1, p);
            const where = `${kind}: flip at ${[...flipped.keys()].join(',')} (seed ${seed}, i ${i})`;
            const warnings: StoreWarning[] = [];
            const store = new FileStore({ dir, readOnly: true });
            const started = performance.now();
            let loaded: Map<string, ModelValue> | undefined;
            let error: unknown;
            try {
              const snapshot = await store.load(CACHE_NAME, ctx(warnings));
              loaded = new Map(snapshot?.entries.map(([k, v]) => [k as string, v as ModelValue]));
            } catch (e) {
              error = e;
            }
            await store.close();
            expect(performance.now() - started, `${where}: took too long`).to.be.below(5_000);
            if (error !== undefined) {
              if (!(error instanceof CorruptFileError || error instanceof UnsupportedFormatError)) {
                expect.fail(`${where}: ${String(error)} is not a CorruptFileError/UnsupportedFormatError`);
              }
              expect(error.path, where).to.equal(file);
              counts.detected++;
            } else {
              // Loaded without an error: only a cut-back torn tail may do that, and what loads is
              // then the state before a batch of the last segment at or before the first flip.
              const first = Math.min(...flipped.keys());
              const candidates = kind === 'last' ? layout.lastBatches.filter((b) => b.offset <= first) : [];
              const match = candidates.find((b) => digest(loaded ?? []) === digest(layout.states[b.state - 1] ?? []));
              if (match === undefined) expect.fail(`${where}: loaded ${loaded?.size} entries (digest ${digest(loaded ?? [])}) without an error, and not the state before any batch at or before the flip`);
              expect(warnings.map((w) => w.kind), where).to.deep.equal(['torn-tail']);
              if (match === lastBatch) counts.cutBack++;
              else {
                // A damaged batch header followed only by a damaged last batch: whole batches
                // are cut as one torn tail (see 'damage spanning the last two batches' below).
                counts.cutBackMore++;
                expect(loaded, where).to.deep.equal(layout.states[match.state - 1]);
              }
            }
            for (const p of flipped.keys()) await handle.write(pristine, p, 1, p);
          }
        } finally {
          await handle.close();
        }
        expect(await readFile(file)).to.deep.equal(pristine);
        expect(await readOnlyLoad(dir)).to.deep.equal(finalState());
        tally[kind] = counts;
        expect(counts.detected + counts.cutBack + counts.cutBackMore).to.be.greaterThan(FLIPS_PER_FILE * 0.95);
      });
    }
  });
});
