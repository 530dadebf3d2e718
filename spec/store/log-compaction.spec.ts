// FileStore compaction: when it runs, what it produces, what survives it, and crashes in it.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sinon from 'sinon';
import { jsonCodec, v8Codec } from '../../lib/codec/index.js';
import type { Codec } from '../../lib/codec/types.js';
import { StoreIOError } from '../../lib/errors.js';
import { FileStore, type FileStoreOptions } from '../../lib/store/file.js';
import type { StoreContext, StoredEntry, StoreWarning } from '../../lib/store/types.js';
import { applyBatch as applyTo, changeBatch as batch, contextWith, FIXED_NOW, rejectionOf, seededRandom, systemError } from './conformance.js';
import { CRASH_CACHE, crashBase, crashBatch } from './log-crash-child.js';

describe('FileStore (compaction)', function () {
  let root: string;
  let dir: string;
  let store: FileStore;
  let warnings: StoreWarning[];
  let ctx: StoreContext;
  let model: Map<unknown, StoredEntry>;

  function make(options: Omit<FileStoreOptions, 'dir'> = {}): FileStore {
    return new FileStore({ dir, ...options });
  }

  beforeEach(async function () {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachegraph-compact-'));
    dir = path.join(root, 'store');
    warnings = [];
    ctx = { ...contextWith(v8Codec), warn: (warning) => warnings.push(warning) };
    model = new Map();
    store = make();
  });

  afterEach(async function () {
    await store.close().catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true });
  });

  async function files(name = 'users'): Promise<string[]> {
    return (await fs.readdir(store.locate(name))).sort();
  }

  async function seed(entries = 2000, context: StoreContext = ctx): Promise<void> {
    const base = Array.from({ length: entries }, (_, i): StoredEntry => [`key-${i}`, { i, pad: 'p'.repeat(40) }, 0]);
    await store.save('users', base, context);
    for (const entry of base) model.set(entry[0], entry);
  }

  async function change(round: number, count = 1500, context: StoreContext = ctx): Promise<void> {
    const sets = Array.from({ length: count }, (_, i): StoredEntry => [`key-${i}`, { i, round, pad: 'r'.repeat(40) }, 0]);
    const deletes = [`key-${1900 + (round % 50)}`];
    const next = batch(sets, deletes);
    await store.saveChanges('users', next, context);
    applyTo(model, next);
  }

  async function expectModel(target: FileStore = store, context: StoreContext = ctx): Promise<void> {
    expect((await target.load('users', context))?.entries).to.deep.equal([...model.values()]);
  }

  async function expectEntries(target: FileStore = store): Promise<void> {
    const random = seededRandom(5);
    const keys = [...model.keys()];
    for (let i = 0; i < 40; i++) {
      const key = keys[Math.floor(random() * keys.length)];
      expect(await target.loadEntry('users', key, ctx), String(key)).to.deep.equal(model.get(key));
    }
    expect(await target.loadEntry('users', 'key-never', ctx)).to.equal(undefined);
  }

  it('starts by itself in a worker once the dead share passes minDeadRatio, and keeps exactly the live state', async function () {
    store = make({ compaction: { minDeadRatio: 0.5, minDeadBytes: 0 } });
    await seed();
    await change(1);
    await store.idle();
    expect(await files()).to.deep.equal(['1.snapshot', '2.log', 'MANIFEST']);
    await change(2);
    await store.idle();
    // The old snapshot and segment are retired; the new segment took any appends made meanwhile.
    expect(await files()).to.deep.equal(['3.log', '4.snapshot', 'MANIFEST']);
    await expectModel();
    await expectEntries();
    await change(3, 10);
    await expectModel();
    await store.close();
    store = make();
    await expectModel();
    expect(warnings).to.deep.equal([]);
  });

  it('waits for minDeadBytes, and never runs by itself with compaction: false', async function () {
    store = make();
    await seed();
    for (let round = 1; round <= 3; round++) await change(round);
    await store.idle();
    expect(await files()).to.deep.equal(['1.snapshot', '2.log', 'MANIFEST']);
    await store.close();
    store = make({ compaction: false });
    await change(4);
    for (let round = 5; round <= 40; round++) await change(round);
    await store.idle();
    expect(await files()).to.deep.equal(['1.snapshot', '2.log', 'MANIFEST']);
    await expectModel();
  });

  it('compact() rewrites on demand, drops expired entries, and reports sizes', async function () {
    store = make({ compaction: false });
    await seed(500);
    const expiring = batch([['gone', 1, FIXED_NOW - 1], ['kept', 2, FIXED_NOW + 60_000]]);
    await store.saveChanges('users', expiring, ctx);
    applyTo(model, expiring);
    await change(1, 400);
    const result = await store.compact('users', ctx);
    expect(result).to.include({ entries: model.size - 1, location: store.locate('users') });
    expect(result?.bytesAfter).to.be.below(result?.bytesBefore as number);
    model.delete('gone');
    await expectModel();
    expect(await store.loadEntry('users', 'gone', ctx)).to.equal(undefined);
    expect(await store.loadEntry('users', 'kept', ctx)).to.deep.equal(['kept', 2, FIXED_NOW + 60_000]);
    await expectEntries();
  });

  it('keeps the appends made while it runs, and the index finds them', async function () {
    store = make({ compaction: false });
    await seed();
    await change(1);
    const running = store.compact('users', ctx);
    for (let round = 2; round <= 30; round++) await change(round, 30 + round);
    const last = batch([['during', 'compaction', 0]], ['key-5'], false);
    await store.saveChanges('users', last, ctx);
    applyTo(model, last);
    await running;
    expect(await files()).to.have.members(['3.log', '4.snapshot', 'MANIFEST']);
    await expectModel();
    await expectEntries();
    expect(await store.loadEntry('users', 'key-5', ctx)).to.equal(undefined);
    expect(await store.loadEntry('users', 'during', ctx)).to.deep.equal(['during', 'compaction', 0]);
    await store.close();
    store = make();
    await expectModel();
  });

  it('keeps a clear made while it runs', async function () {
    store = make({ compaction: false });
    await seed();
    await change(1);
    const running = store.compact('users', ctx);
    const cleared = batch([['only', 1, 0]], [], true);
    await store.saveChanges('users', cleared, ctx);
    applyTo(model, cleared);
    await running;
    await expectModel();
    expect(await store.loadEntry('users', 'key-1', ctx)).to.equal(undefined);
    expect(await store.loadEntry('users', 'only', ctx)).to.deep.equal(['only', 1, 0]);
  });

  it('is cancelled by a full save, a delete, or close(), leaving no stray file', async function () {
    store = make({ compaction: false });
    await seed();
    await change(1);
    let running = store.compact('users', ctx);
    await store.save('users', [['fresh', 1, 0]], ctx);
    expect(await running).to.equal(undefined);
    expect(await files()).to.deep.equal(['5.snapshot', 'MANIFEST']);
    expect((await store.load('users', ctx))?.entries).to.deep.equal([['fresh', 1, 0]]);

    await store.saveChanges('users', batch([['more', 2, 0]]), ctx);
    running = store.compact('users', ctx);
    expect(await store.delete('users')).to.equal(true);
    expect(await running).to.equal(undefined);
    expect(await store.has('users')).to.equal(false);

    model.clear();
    await seed();
    await change(2);
    running = store.compact('users', ctx);
    await store.close();
    expect(await running).to.equal(undefined);
    expect((await files()).filter((file) => file.includes('.tmp-'))).to.deep.equal([]);
    store = make();
    await expectModel();
  });

  it('failing (disk full) loses nothing: compact() rejects, automatic runs warn, both back off', async function () {
    store = make({ compaction: { minDeadRatio: 0.5, minDeadBytes: 0, worker: false } });
    await seed();
    const open = fs.open.bind(fs);
    const stub = sinon.stub(fs, 'open').callsFake(async (file, ...rest) => {
      if (String(file).includes('.snapshot.tmp-') && !String(file).endsWith('1.snapshot')) throw systemError('ENOSPC', 'open');
      return open(file, ...(rest as [string]));
    });
    await change(1);
    await change(2);
    await store.idle();
    expect(warnings.map((w) => w.kind)).to.deep.equal(['compaction-failed']);
    expect(warnings[0]?.message).to.include('ENOSPC');
    const error = await rejectionOf(store.compact('users', ctx));
    expect(error).to.be.instanceOf(StoreIOError).and.include({ syscallCode: 'ENOSPC' });
    await change(3);
    await store.idle();
    expect(warnings).to.have.length(1); // backing off
    stub.restore();
    expect((await files()).filter((file) => file.includes('.tmp-'))).to.deep.equal([]);
    await expectModel();
    expect(await store.compact('users', ctx)).to.include({ entries: model.size });
    await expectModel();
    await expectEntries();
  });

  it('runs in this thread for a codec that is not built in', async function () {
    const custom: Codec = { name: 'custom-json', encode: jsonCodec.encode, decode: jsonCodec.decode };
    const customCtx = contextWith(custom);
    store = make({ compaction: false });
    await seed(300, customCtx);
    await change(1, 250, customCtx);
    expect(await store.compact('users', customCtx)).to.include({ entries: model.size });
    await expectModel(store, customCtx);
  });

  it('is seen by a read-only store, which reloads its index', async function () {
    store = make({ compaction: false });
    await seed();
    const reader = make({ readOnly: true });
    expect(await reader.loadEntry('users', 'key-1', ctx)).to.deep.equal(model.get('key-1'));
    await change(1);
    await store.compact('users', ctx);
    await change(2, 20);
    await expectEntries(reader);
    await expectModel(reader);
    await reader.close();
  });

  describe('a writer killed at random moments (SIGKILL)', function () {
    const child = fileURLToPath(new URL('./log-crash-child.ts', import.meta.url));

    interface Run {
      readonly acked: number;
      readonly begun: number;
      readonly compactions: number;
    }

    /** Runs the child until `shouldKill` says so, then SIGKILLs it. */
    function runChild(
      runDir: string,
      runSeed: number,
      shouldKill: (event: Record<string, number>, acked: number) => boolean,
      crashPoint?: string,
    ): Promise<Run> {
      return new Promise((resolve, reject) => {
        const env = crashPoint === undefined ? process.env : { ...process.env, CRASH_POINT: crashPoint };
        const proc = spawn(process.execPath, ['--import', 'tsx', child, runDir, String(runSeed)], { stdio: ['ignore', 'pipe', 'pipe'], env });
        let acked = -1;
        let begun = 0;
        let compactions = 0;
        let buffered = '';
        let errors = '';
        let killed = false;
        proc.stderr.on('data', (data: Buffer) => {
          errors += data.toString();
        });
        proc.stdout.on('data', (data: Buffer) => {
          buffered += data.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          for (const line of lines) {
            const event = JSON.parse(line) as Record<string, number>;
            if (event['ack'] !== undefined) acked = event['ack'];
            if (event['begin'] !== undefined) begun = event['begin'];
            if (event['compacted'] !== undefined) compactions += 1;
            if (event['compactionError'] !== undefined) errors += line;
            if (!killed && shouldKill(event, acked)) {
              killed = true;
              proc.kill('SIGKILL');
            }
          }
        });
        proc.on('exit', (_code, signal) => {
          if (signal !== 'SIGKILL') reject(new Error(`child ended without being killed: ${errors}`));
          else if (errors !== '') reject(new Error(`child reported: ${errors}`));
          else resolve({ acked, begun, compactions });
        });
      });
    }

    function stateAfter(runSeed: number, batches: number): StoredEntry[] {
      const state = new Map<unknown, StoredEntry>(crashBase().map((entry) => [entry[0], entry]));
      for (let n = 1; n <= batches; n++) applyTo(state, crashBatch(runSeed, n));
      return [...state.values()];
    }

    /** Checks what a killed writer left: the last acknowledged state (or the one under way), loadable and writable. */
    async function checkAfterCrash(runDir: string, runSeed: number, result: Run, label: string): Promise<void> {
      const reader = new FileStore({ dir: runDir, compaction: false });
      const entries = (await reader.load(CRASH_CACHE, ctx))?.entries;
      const acknowledged = stateAfter(runSeed, result.acked);
      if (result.begun > result.acked) {
        expect([acknowledged, stateAfter(runSeed, result.begun)], label).to.deep.include(entries);
      } else {
        expect(entries, label).to.deep.equal(acknowledged);
      }
      // The next writer takes over the dead one's lock, removes its debris and carries on.
      await reader.saveChanges(CRASH_CACHE, batch([['after', 'crash', 0]]), ctx);
      const names = await fs.readdir(reader.locate(CRASH_CACHE));
      expect(names.filter((name) => name.includes('.tmp-')), label).to.deep.equal([]);
      expect(names.filter((name) => /^\d+\.(?:snapshot|log)$/.test(name)), label).to.have.length.at.most(3);
      expect((await reader.load(CRASH_CACHE, ctx))?.entries.at(-1), label).to.deep.equal(['after', 'crash', 0]);
      await reader.compact(CRASH_CACHE, ctx);
      expect((await reader.load(CRASH_CACHE, ctx))?.entries.at(-1), label).to.deep.equal(['after', 'crash', 0]);
      await reader.close();
      // A process kill loses no written byte, but a batch written in several calls can be cut.
      expect(warnings.map((w) => w.kind).filter((kind) => kind !== 'stale-lock' && kind !== 'torn-tail'), label).to.deep.equal([]);
    }

    // [where, crash point, whether appends were made during the compaction before it]
    const points: [string, string, boolean][] = [
      ['after the new segment is created, before a manifest names it', 'after:rename:.log:1', false],
      ['after the manifest names the new segment', 'after:rename:MANIFEST:1', false],
      ['with the new snapshot written, before it is renamed', 'before:rename:.snapshot:1', true],
      ['with the new snapshot in place, before the manifest names it', 'after:rename:.snapshot:1', true],
      ['after the new manifest, before the old files are deleted', 'after:rename:MANIFEST:2', true],
      ['after deleting one old file', 'after:unlink:any:1', true],
    ];
    for (const [where, point, appended] of points) {
      it(`in a compaction ${where}: the last acknowledged state survives`, async function () {
        this.timeout(20_000);
        const runDir = path.join(root, 'run');
        const result = await runChild(runDir, 7, () => false, point);
        expect(result.acked, 'appends made during the compaction').to.be.at.least(appended ? 31 : 30);
        await checkAfterCrash(runDir, 7, result, point);
      });
    }

    it('at random moments around worker compactions: the last acknowledged state survives', async function () {
      this.timeout(30_000);
      const random = seededRandom(31337);
      let compactions = 0;
      for (let run = 0; run < 2; run++) {
        const runDir = path.join(root, `run-${run}`);
        const runSeed = 1 + run;
        // Kill a random number of events (two per batch) after the first compaction ended:
        // later ones start right away, so the kill lands somewhere in one.
        const after = 1 + Math.floor(random() * 1500);
        let since = -1;
        const result = await runChild(runDir, runSeed, (event) => {
          if (event['compacted'] !== undefined && since < 0) since = 0;
          if (since >= 0) since += 1;
          return since > after;
        });
        compactions += result.compactions;
        await checkAfterCrash(runDir, runSeed, result, `run ${run}`);
      }
      expect(compactions, 'compactions completed before the kills').to.be.above(0);
    });
  });
});
