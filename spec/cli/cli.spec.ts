// The `cachegraph` command: the real binary (bin/cachegraph.js) spawned against real
// FileStore directories and a real redis-server. Caches are written by a real manager,
// closed before the command runs (a running manager holds the directory's lock).
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { CacheManager, FileStore, RedisStore, v8Codec, type CacheManagerOptions } from '../../lib/index.js';
import { startRedisServer, type RedisServer } from '../fixtures/redis-server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin', 'cachegraph.js');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the binary to completion (10 s at most). */
function cachegraph(args: readonly string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: os.tmpdir(), ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** users → stats → report, plus an unrelated cache, saved by a real manager (then closed). */
async function populate(options: CacheManagerOptions): Promise<void> {
  const manager = new CacheManager({ name: 'cli-spec', autoSync: false, ...options });
  const users = await manager.registerCache<string, unknown>('users');
  users.set('u1', { name: 'Ada' });
  users.set('u2', new Map<number, bigint>([[1, 2n]]));
  await manager.registerCache('stats', { dependsOn: ['users'], builder: () => [['count', 2]] });
  await manager.registerCache('report', { dependsOn: ['stats'], builder: () => [['total', 42]] });
  const other = await manager.registerCache('other');
  other.set(7, new Date(0));
  await manager.close();
}

function json<T>(run: Run): T {
  expect(run.stderr, run.stderr).to.equal('');
  return JSON.parse(run.stdout) as T;
}

describe('cachegraph (CLI)', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cachegraph-cli-'));
    await populate({ dir });
  });
  afterEach(async () => fs.rm(dir, { recursive: true, force: true }));

  describe('usage', function () {
    it('--help lists the commands and exit codes; <command> --help describes each command', async function () {
      const runs = await Promise.all([cachegraph(['--help']), cachegraph(['invalidate', '--help'])]);
      for (const run of runs) expect(run.code).to.equal(0);
      const [top, invalidate] = runs as [Run, Run];
      for (const command of ['ls', 'show', 'verify', 'compact', 'invalidate', 'graph', 'export', 'import', 'stats', 'serve']) expect(top.stdout).to.match(new RegExp(`^  ${command} `, 'm'));
      expect(top.stdout).to.include('Exit codes');
      expect(invalidate.stdout).to.include('Usage: cachegraph invalidate <cache> [--dry-run]').and.include('Global options');
    });

    it('exits 2 naming the problem for an unknown command, an unknown option, a missing store', async function () {
      const [command, option, store] = await Promise.all([
        cachegraph(['frobnicate', '--dir', dir]),
        cachegraph(['ls', '--dir', dir, '--colour']),
        cachegraph(['invalidate']),
      ]);
      for (const run of [command, option, store]) expect(run.code, run.stderr).to.equal(2);
      expect(command.stderr).to.include('unknown command "frobnicate"');
      expect(option.stderr).to.include('--colour');
      expect(store.stderr).to.include('--dir DIR').and.include('--redis URL');
    });
  });

  describe('reading a directory', function () {
    it('ls lists each cache with entries, bytes, last save, dirty bytes and links (text and --json)', async function () {
      const [text, asJson] = await Promise.all([cachegraph(['ls', '--dir', dir]), cachegraph(['ls', '--dir', dir, '--json'])]);
      expect(text.code).to.equal(0);
      expect(text.stdout).to.match(/^CACHE\s+ENTRIES\s+BYTES\s+LAST SAVE\s+DIRTY/m);
      expect(text.stdout).to.match(/^stats\s+1\s.*users$/m);
      const listed = json<{ caches: { name: string; entries: number; bytes: number; savedAt: number; dependsOn: string[]; logBytes: number }[] }>(asJson).caches;
      expect(listed.map((c) => c.name)).to.deep.equal(['other', 'report', 'stats', 'users']);
      const byName = new Map(listed.map((c) => [c.name, c]));
      expect(byName.get('users')).to.include({ entries: 2 });
      expect(byName.get('report')?.dependsOn).to.deep.equal(['stats']);
      expect(byName.get('users')?.bytes).to.be.greaterThan(0);
      expect(byName.get('users')?.savedAt).to.be.closeTo(Date.now(), 60_000);
    });

    it('show prints a cache and one key (--json keeps non-JSON values in v8 base64); an unknown cache exits 1 naming it', async function () {
      const [whole, asJson, missing] = await Promise.all([
        cachegraph(['show', 'users', '--dir', dir]),
        cachegraph(['show', 'other', '7', '--key-json', '--dir', dir, '--json']),
        cachegraph(['show', 'nope', '--dir', dir]),
      ]);
      expect(whole.stdout).to.include('entries     2').and.include("{ name: 'Ada' }").and.include("Map(1) { 1 => 2n }");
      const shown = json<{ key: number; value64: string }>(asJson);
      expect(shown.key).to.equal(7);
      expect(v8Codec.decode(Buffer.from(shown.value64, 'base64'))).to.deep.equal(new Date(0));
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.include('no cache named "nope"').and.include(dir);
    });

    it('graph draws the recorded links as Mermaid and as DOT', async function () {
      const [mermaid, dot] = await Promise.all([cachegraph(['graph', '--dir', dir]), cachegraph(['graph', '--dir', dir, '--format', 'dot'])]);
      expect(mermaid.stdout).to.match(/^graph TD$/m);
      const ids = new Map([...mermaid.stdout.matchAll(/(n\d+)\["([^"]+)"\]/g)].map((m) => [m[2], m[1]]));
      expect(mermaid.stdout).to.include(`${ids.get('users')} --> ${ids.get('stats')}`).and.include(`${ids.get('stats')} --> ${ids.get('report')}`);
      expect(dot.stdout).to.match(/^digraph cachegraph \{/).and.include('"users" -> "stats";').and.include('"stats" -> "report";');
    });

    it('stats sums the store', async function () {
      const stats = json<{ caches: number; entries: number; links: number; bytes: number }>(await cachegraph(['stats', '--dir', dir, '--json']));
      expect(stats).to.include({ caches: 4, entries: 5, links: 2 });
      expect(stats.bytes).to.be.greaterThan(0);
    });
  });

  describe('verify', function () {
    it('exits 0 when every checksum matches', async function () {
      const run = await cachegraph(['verify', '--dir', dir]);
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include('4 cache(s) verified');
    });

    it('exits 1 on a flipped byte, naming the cache, the file and the offset', async function () {
      const cacheDir = path.join(dir, 'users.cgc');
      const file = path.join(cacheDir, (await fs.readdir(cacheDir)).find((name) => name.endsWith('.log') || name.endsWith('.snapshot')) as string);
      const bytes = await fs.readFile(file);
      bytes[20] = (bytes[20] as number) ^ 0xff; // inside the file's checksummed header
      await fs.writeFile(file, bytes);
      const run = await cachegraph(['verify', '--dir', dir, '--json']);
      expect(run.code).to.equal(1);
      const report = JSON.parse(run.stdout) as { ok: boolean; findings: { cache: string; level: string; file: string; offset: number; message: string }[] };
      expect(report.ok).to.equal(false);
      expect(report.findings).to.have.length(1);
      expect(report.findings[0]).to.include({ cache: 'users', level: 'damage', file });
      expect(report.findings[0]?.offset).to.be.a('number');
      expect(report.findings[0]?.message).to.include(file).and.include(`at byte ${report.findings[0]?.offset}`);
    });
  });

  describe('writing a directory', function () {
    it('invalidate --dry-run lists the cascade and deletes nothing; invalidate deletes it, upstreams first', async function () {
      const dry = json<{ invalidated: { cache: string; cause: string }[] }>(await cachegraph(['invalidate', 'users', '--dry-run', '--dir', dir, '--json']));
      expect(dry.invalidated.map((r) => r.cache)).to.deep.equal(['users', 'stats', 'report']);
      expect(await new FileStore({ dir, readOnly: true }).list()).to.deep.equal(['other', 'report', 'stats', 'users']);
      const run = await cachegraph(['invalidate', 'stats', '--dir', dir]);
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include('invalidated 2 cache(s)').and.include('report (downstream of stats)');
      expect(await new FileStore({ dir, readOnly: true }).list()).to.deep.equal(['other', 'users']);
    });

    it('a writing command exits 3 while a running manager holds the directory, and says why', async function () {
      const manager = new CacheManager({ name: 'holder', dir, autoSync: false });
      try {
        (await manager.registerCache('other')).set('x', 1);
        await manager.save('other'); // the first write takes the directory's lock
        const run = await cachegraph(['invalidate', 'users', '--dir', dir]);
        expect(run.code).to.equal(3);
        expect(run.stderr).to.include('locked by process').and.include('running application');
      } finally {
        await manager.close();
      }
    });

    it('export then import into another directory keeps keys, values (Map, BigInt, Date), expiry and links', async function () {
      const target = await fs.mkdtemp(path.join(os.tmpdir(), 'cachegraph-cli-import-'));
      try {
        const file = path.join(target, 'dump.jsonl');
        const exported = await cachegraph(['export', '--dir', dir, '--out', file]);
        expect(exported.code, exported.stderr).to.equal(0);
        expect((await fs.stat(file)).mode & 0o777).to.equal(0o600);
        const lines = (await fs.readFile(file, 'utf8')).trim().split('\n');
        expect(lines.every((line) => JSON.parse(line) !== null)).to.equal(true);
        const into = path.join(target, 'cache');
        const imported = await cachegraph(['import', '--dir', into], { input: await fs.readFile(file, 'utf8') });
        expect(imported.code, imported.stderr).to.equal(0);
        expect(imported.stdout).to.include('imported 5 entries into 4 cache(s)');
        const manager = new CacheManager({ name: 'reader', dir: into, autoSync: false });
        try {
          expect([...(await manager.registerCache('users')).entries()]).to.deep.equal([
            ['u1', { name: 'Ada' }],
            ['u2', new Map([[1, 2n]])],
          ]);
          expect((await manager.registerCache('other')).get(7)).to.deep.equal(new Date(0));
        } finally {
          await manager.close();
        }
        expect((await new FileStore({ dir: into, readOnly: true }).describe('report'))?.dependsOn).to.deep.equal(['stats']);
      } finally {
        await fs.rm(target, { recursive: true, force: true });
      }
    });

    it('import refuses a malformed line, naming it, and writes nothing', async function () {
      const run = await cachegraph(['import', '--dir', dir], { input: '{"type":"cache","name":"fresh"}\n{"type":"entry","cache":"fresh","key":"k"}\n' });
      expect(run.code).to.equal(1);
      expect(run.stderr).to.include('line 2').and.include('"value"');
      expect(await new FileStore({ dir, readOnly: true }).has('fresh')).to.equal(false);
    });

    it('compact folds the logs into snapshots', async function () {
      const before = await new FileStore({ dir, readOnly: true }).describe('users');
      expect(before?.logBytes).to.be.greaterThan(0);
      expect(before?.entries).to.equal(undefined); // a log must be replayed to count
      const run = await cachegraph(['compact', 'users', '--dir', dir, '--json']);
      expect(run.code, run.stderr).to.equal(0);
      expect(json<{ compacted: { cache: string; entries: number }[] }>(run).compacted.map((c) => [c.cache, c.entries])).to.deep.equal([['users', 2]]);
      const after = await new FileStore({ dir, readOnly: true }).describe('users');
      expect(after).to.include({ entries: 2 });
      expect(after?.logBytes).to.be.lessThan(before?.logBytes as number);
    });
  });

  describe('serve', function () {
    it('serves the store until SIGTERM, on 127.0.0.1', async function () {
      const child = spawn(process.execPath, [BIN, 'serve', '--dir', dir, '--port', '0', '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const url = await new Promise<string>((resolve, reject) => {
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => {
            out += chunk.toString();
            if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0] as string) as { url: string }).url);
          });
          child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
        });
        expect(url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/$/);
        const caches = (await (await fetch(`${url}api/caches`)).json()) as { caches: { name: string }[] };
        expect(caches.caches.map((c) => c.name)).to.deep.equal(['other', 'report', 'stats', 'users']);
        const graph = (await (await fetch(`${url}api/graph`)).json()) as { edges: { from: string; to: string }[] };
        expect(graph.edges).to.deep.include({ from: 'users', to: 'stats' });
      } finally {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        expect(await exited).to.equal(0);
      }
    });
  });

  describe('on Redis', function () {
    const PASSWORD = 'cli-spec-secret-pw';
    let server: RedisServer;
    let url: string;

    before(async function () {
      this.timeout(20_000);
      server = await startRedisServer();
      // Set after the start: the fixture's readiness PING has no password.
      const admin = new Redis(server.url);
      await admin.config('SET', 'requirepass', PASSWORD);
      admin.disconnect();
      url = `redis://:${PASSWORD}@127.0.0.1:${server.port}`;
    });
    after(async () => server?.stop());

    beforeEach(async () => {
      const store = new RedisStore({ url, namespace: 'cli' });
      await populate({ store });
      await store.close();
    });

    it('ls and graph read the caches and links without printing the password', async function () {
      const [listed, graph] = await Promise.all([
        cachegraph(['ls', '--namespace', 'cli', '--json'], { env: { CACHEGRAPH_REDIS: url } }),
        cachegraph(['graph', '--redis', url, '--namespace', 'cli', '--format', 'dot']),
      ]);
      const caches = json<{ location: string; caches: { name: string; entries: number; dependsOn: string[] }[] }>(listed);
      expect(caches.caches.map((c) => [c.name, c.entries, c.dependsOn])).to.deep.equal([
        ['other', 1, []],
        ['report', 1, ['stats']],
        ['stats', 1, ['users']],
        ['users', 2, []],
      ]);
      expect(graph.stdout).to.include('"users" -> "stats";');
      for (const run of [listed, graph]) expect(run.stdout + run.stderr).to.not.include(PASSWORD);
    });

    it('invalidate deletes the cascade atomically and announces it on the bus', async function () {
      const listener = new RedisStore({ url, namespace: 'cli' });
      const messages: unknown[] = [];
      const stop = await listener.subscribe((message) => void messages.push(message));
      try {
        const run = await cachegraph(['invalidate', 'users', '--redis', url, '--namespace', 'cli']);
        expect(run.code, run.stderr).to.equal(0);
        expect(await listener.list()).to.deep.equal(['other']);
        for (let i = 0; i < 50 && messages.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
        expect(messages).to.deep.equal([{ v: 1, t: 'invalidated', names: ['users', 'stats', 'report'], source: 'users' }]);
      } finally {
        await stop();
        await listener.close();
      }
    });

    it('verify checks every record; an unreachable server exits 3 without the password', async function () {
      const ok = await cachegraph(['verify', '--redis', url, '--namespace', 'cli']);
      expect(ok.code, ok.stderr).to.equal(0);
      const down = await cachegraph(['ls', '--redis', `redis://:${PASSWORD}@127.0.0.1:1`]);
      expect(down.code).to.equal(3);
      expect(down.stderr).to.include('127.0.0.1:1').and.not.include(PASSWORD);
    });
  });
});
