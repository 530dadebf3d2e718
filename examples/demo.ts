/**
 * cachegraph demo: a map-tile cache and an index derived from it, persisted in local files.
 *
 *   npm run demo            # first run builds everything; later runs reload it from disk
 *   npm run demo -- --reset # forget the saved caches and start over
 *
 * What it shows: registering caches with builders, a dependency (the index depends on the
 * tiles), an invalidation cascade with its events, TTLs, persistence across runs, and a
 * memoized function whose stored results know which tiles they were computed from.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { CacheManager, type HookContext } from '../lib/index.js';

interface Tile {
  readonly z: number;
  readonly x: number;
  readonly y: number;
  /** 16×16 elevation samples, 0–255. */
  readonly heights: Uint8Array;
  readonly renderedAt: Date;
}

interface TileIndex {
  readonly tiles: number;
  readonly meanHeight: number;
  readonly highest: string;
  readonly style: number;
}

const dir = path.resolve(process.env['CACHEGRAPH_DEMO_DIR'] ?? '.demo-cache');
const ZOOM = 3;
const SIDE = 2 ** ZOOM;

/** Deterministic pseudo-terrain, so the "renderer" has real work to do and a style to change. */
function renderTile(z: number, x: number, y: number, style: number): Tile {
  const heights = new Uint8Array(16 * 16);
  for (let py = 0; py < 16; py++) {
    for (let px = 0; px < 16; px++) {
      const gx = (x * 16 + px) / (16 * 2 ** z);
      const gy = (y * 16 + py) / (16 * 2 ** z);
      const h = Math.sin(gx * 7 + style) * Math.cos(gy * 5 - style) + Math.sin((gx + gy) * 13) * 0.3;
      heights[py * 16 + px] = Math.round(((h + 1.3) / 2.6) * 255);
    }
  }
  return { z, x, y, heights, renderedAt: new Date() };
}

function mean(values: Uint8Array): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

async function main(): Promise<void> {
  if (process.argv.includes('--reset')) {
    await rm(dir, { recursive: true, force: true });
    console.log(`removed ${dir}`);
    return;
  }

  await using manager = new CacheManager({ name: 'demo', dir });
  manager.on('cache:loaded', (e) => console.log(`  loaded   ${e.name}: ${e.entries} entries from ${e.source} in ${e.ms.toFixed(1)} ms`));
  manager.on('cache:built', (e) => console.log(`  built    ${e.name}: ${e.entries} entries in ${e.ms.toFixed(1)} ms`));
  manager.on('cache:invalidated', (e) => console.log(`  invalid  ${e.name} (${e.cause}, from ${e.source})`));
  manager.on('sync:done', (e) => console.log(`  saved    ${e.name}: ${e.entries} entries, ${e.bytes} bytes (${e.reason})`));
  manager.on('memo:hit', (e) => console.log(`  memo hit  ${e.name} (from ${e.source})`));
  manager.on('memo:miss', (e) => console.log(`  memo miss ${e.name}: computed in ${e.ms.toFixed(1)} ms (${e.reason})`));

  console.log(`cachegraph demo, files in ${dir}`);
  // Settings survive runs too: the run counter and the current map style.
  const settings = await manager.registerCache<string, number>('settings');
  const run = (settings.get('runs') ?? 0) + 1;
  settings.set('runs', run);
  const style = settings.get('style') ?? 1;
  console.log(
    run === 1
      ? `run #1: nothing saved yet, so every cache is built`
      : `run #${run}: the caches come back from disk (e.g. ${manager.store.locate('tiles')})`,
  );

  console.log('\nregistering caches');
  const tiles = await manager.registerCache<string, Tile>('tiles', {
    ttl: '1d',
    builder: () => {
      const current = manager.getCache<string, number>('settings').get('style') ?? 1;
      const built: Array<[string, Tile]> = [];
      for (let x = 0; x < SIDE; x++) for (let y = 0; y < SIDE; y++) built.push([`${ZOOM}/${x}/${y}`, renderTile(ZOOM, x, y, current)]);
      return built;
    },
  });
  const index = await manager.registerCache<string, TileIndex>('tile-index', {
    dependsOn: ['tiles'],
    builder: ({ manager: m }: HookContext) => {
      const source = m.getCache<string, Tile>('tiles');
      let best = '';
      let bestHeight = -1;
      let total = 0;
      for (const [key, tile] of source) {
        const h = mean(tile.heights);
        total += h;
        if (h > bestHeight) [best, bestHeight] = [key, h];
      }
      const current = m.getCache<string, number>('settings').get('style') ?? 1;
      return [['summary', { tiles: source.size, meanHeight: total / Math.max(1, source.size), highest: best, style: current }]];
    },
  });

  const summary = (): string => {
    const s = index.get('summary');
    return s === undefined ? 'none' : `${s.tiles} tiles, mean height ${s.meanHeight.toFixed(2)}, highest ${s.highest}, style ${s.style}`;
  };
  const sample = tiles.get(`${ZOOM}/0/0`);
  console.log(`\ntiles: ${tiles.size}, tile ${ZOOM}/0/0 rendered at ${sample?.renderedAt.toISOString() ?? '-'}`);
  console.log(`index: ${summary()}`);
  console.log(`tile entries expire at ${new Date(tiles.expiresAt(`${ZOOM}/0/0`) ?? 0).toISOString()} (absolute, kept across runs)`);

  // A memoized computation over the tiles: its results are saved like any cache, and each
  // remembers the tiles it read (with fetch), so new tiles make it compute again.
  const ridge = manager.memoize(
    async (row: number) => {
      let best = { x: -1, height: -1 };
      for (let x = 0; x < SIDE; x++) {
        const tile = await tiles.fetch(`${ZOOM}/${x}/${row}`);
        const height = tile === undefined ? -1 : Math.max(...tile.heights);
        if (height > best.height) best = { x, height };
      }
      return best;
    },
    { name: 'ridge', cache: 'analysis' },
  );
  console.log('\nthe highest point of row 0, memoized (a hit from the second run on):');
  console.log(`  ridge(0) = ${JSON.stringify(await ridge(0))}`);

  // The map style changes: every tile is stale, and so is everything derived from them.
  console.log(`\nchanging the map style ${style} -> ${style + 1}: invalidating 'tiles' cascades to ${JSON.stringify(manager.dependentsOf('tiles'))}`);
  settings.set('style', style + 1);
  await manager.invalidate('tiles');
  console.log(`index: ${summary()}`);
  console.log('the tiles ridge(0) read have changed, so it computes again:');
  console.log(`  ridge(0) = ${JSON.stringify(await ridge(0))}`);

  console.log('\nclosing: changed caches are saved');
  // `await using` closes the manager here, saving every cache with unsaved changes.
}

main().then(
  () => console.log('\ndone. Run `npm run demo` again to see the caches reloaded from disk.'),
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
