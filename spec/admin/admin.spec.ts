// The admin service over real HTTP: JSON endpoints, Prometheus text, the token rules and
// the handler mounted on an application's own server.
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminHandler } from '../../lib/admin/handler.js';
import { serve, type AdminServer } from '../../lib/admin/serve.js';
import type { CacheManager } from '../../lib/index.js';
import { record, useManagers } from '../helpers.js';

const TOKEN = 'a-token-of-at-least-16-chars';

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly body: Record<string, unknown>;
}

async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON (metrics, the page).
  }
  return { status: res.status, headers: res.headers, text, body };
}

function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return call(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

/** users → stats → report, with builders, and a scratch cache. */
async function registerChain(manager: CacheManager): Promise<void> {
  const users = await manager.registerCache<string, string>('users');
  users.set('u1', 'Ada');
  await manager.registerCache('stats', { dependsOn: ['users'], builder: ({ manager: m }) => [['count', m.getCache('users').size]] });
  await manager.registerCache('report', { dependsOn: ['stats'], builder: () => [['ok', true]] });
  await manager.registerCache('scratch', { persistent: false });
}

describe('admin service', function () {
  const managers = useManagers();
  let admin: AdminServer | undefined;

  afterEach(async () => {
    await admin?.close();
    admin = undefined;
  });

  describe('serve()', function () {
    it('binds 127.0.0.1 by default and lists the caches with their links', async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      admin = await serve(manager);
      expect(admin.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const caches = (await call(`${admin.url}api/caches`)).body['caches'] as { name: string; entries: number; dependsOn: string[]; hitRate: number | null }[];
      expect(caches.map((c) => [c.name, c.entries, c.dependsOn])).to.deep.equal([
        ['users', 1, []],
        ['stats', 1, ['users']],
        ['report', 1, ['stats']],
        ['scratch', 0, []],
      ]);
      const graph = (await call(`${admin.url}api/graph`)).body as { edges: unknown[] };
      expect(graph.edges).to.deep.equal([
        { from: 'users', to: 'stats' },
        { from: 'stats', to: 'report' },
      ]);
      const one = (await call(`${admin.url}api/caches/users`)).body;
      expect(one['cascade']).to.deep.equal(['users', 'stats', 'report']);
      const key = (await call(`${admin.url}api/caches/users/keys/u1`)).body;
      expect(key).to.include({ cache: 'users', key: 'u1', value: 'Ada' });
    });

    it('answers 404 naming an unknown cache or key, 400 for bad JSON, 415 for a form post, 405 for a wrong method', async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      admin = await serve(manager);
      const unknown = await post(`${admin.url}api/caches/nope/invalidate`, {});
      expect(unknown.status).to.equal(404);
      expect(unknown.body['error']).to.include('"nope"');
      expect((await call(`${admin.url}api/caches/users/keys/u9`)).status).to.equal(404);
      const bad = await post(`${admin.url}api/caches/users/invalidate`, '{"dryRun":');
      expect(bad.status).to.equal(400);
      expect(bad.body['error']).to.include('not valid JSON');
      expect((await post(`${admin.url}api/caches/users/invalidate`, { dryRun: 'yes' })).status).to.equal(400);
      const form = await call(`${admin.url}api/caches/users/invalidate`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' });
      expect(form.status).to.equal(415);
      const wrong = await call(`${admin.url}api/caches/users/invalidate`);
      expect(wrong.status).to.equal(405);
      expect(wrong.headers.get('allow')).to.equal('POST');
      expect((await post(`${admin.url}api/caches/users/invalidate`, {}, { origin: 'http://evil.example' })).status).to.equal(403);
    });

    it('invalidates with the cascade (a dry run first changes nothing) and saves', async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      admin = await serve(manager);
      const events = record<{ name: string; cause: string }>(manager, 'cache:invalidated');
      const dry = await post(`${admin.url}api/caches/users/invalidate`, { dryRun: true });
      expect(dry.body['invalidated']).to.deep.equal([
        { cache: 'users', cause: 'direct' },
        { cache: 'stats', cause: 'dependency' },
        { cache: 'report', cause: 'dependency' },
      ]);
      expect(events).to.deep.equal([]);
      const done = await post(`${admin.url}api/caches/users/invalidate`, {});
      expect(done.status).to.equal(200);
      expect(events.map((e) => [e.name, e.cause])).to.deep.equal([
        ['users', 'direct'],
        ['stats', 'dependency'],
        ['report', 'dependency'],
      ]);
      expect(manager.getCache('users').size).to.equal(0);
      manager.getCache('users').set('u2', 'Grace');
      expect((await post(`${admin.url}api/caches/users/save`, {})).body).to.deep.equal({ saved: 'users' });
      expect(manager.getCache('users').pendingChanges).to.equal(0);
      const timeline = (await call(`${admin.url}api/timeline`)).body['events'] as { cache: string; kind: string }[];
      expect(timeline.filter((e) => e.kind === 'invalidated').map((e) => e.cache)).to.deep.equal(['users', 'stats', 'report']);
      expect(timeline.some((e) => e.kind === 'sync' && e.cache === 'users')).to.equal(true);
    });

    it('with a token, refuses mutations without it (401) and never echoes it', async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      admin = await serve(manager, { token: TOKEN });
      const missing = await post(`${admin.url}api/caches/users/invalidate`, {});
      expect(missing.status).to.equal(401);
      expect(missing.headers.get('www-authenticate')).to.include('Bearer');
      expect((await post(`${admin.url}api/caches/users/invalidate`, {}, { authorization: 'Bearer wrong-token-wrong-token' })).status).to.equal(401);
      const ok = await post(`${admin.url}api/caches/users/invalidate`, {}, { authorization: `Bearer ${TOKEN}` });
      expect(ok.status).to.equal(200);
      const info = await call(`${admin.url}api/info`);
      expect(info.body['mutationsNeedToken']).to.equal(true);
      for (const reply of [missing, ok, info, await call(`${admin.url}metrics`), await call(`${admin.url}api/stats`), await call(admin.url)]) expect(reply.text).to.not.include(TOKEN);
    });

    it('bound beyond loopback without a token, refuses every mutation; a short token is refused at start', async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      admin = await serve(manager, { host: '0.0.0.0' });
      const url = `http://127.0.0.1:${admin.port}/`;
      expect((await call(`${url}api/caches`)).status).to.equal(200);
      const refused = await post(`${url}api/caches/users/invalidate`, {});
      expect(refused.status).to.equal(403);
      expect(refused.body['error']).to.include('no token');
      let error: unknown;
      try {
        await serve(manager, { token: 'short' });
      } catch (err) {
        error = err;
      }
      expect((error as { code?: string }).code).to.equal('E_INVALID_OPTION');
    });
  });

  describe('/metrics', function () {
    it('is valid Prometheus text: HELP and TYPE per family, histogram buckets with le, _sum and _count', async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      admin = await serve(manager);
      manager.getCache('users').set('u2', 'Grace');
      await manager.save('users');
      await manager.save('stats');
      const reply = await call(`${admin.url}metrics`);
      expect(reply.status).to.equal(200);
      expect(reply.headers.get('content-type')).to.include('text/plain; version=0.0.4');
      const lines = reply.text.trimEnd().split('\n');
      const families = new Map<string, string>();
      for (const line of lines) {
        if (line.startsWith('# HELP ')) continue;
        const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
        if (type !== null) {
          expect(families.has(type[1] as string), `duplicate ${type[1]}`).to.equal(false);
          families.set(type[1] as string, type[2] as string);
          continue;
        }
        const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
        expect(sample, line).to.not.equal(null);
        const name = (sample as RegExpExecArray)[1] as string;
        const family = name.replace(/_(bucket|sum|count)$/, '');
        expect(families.has(name) || families.get(family) === 'histogram', `${name} declared`).to.equal(true);
      }
      for (const name of ['cachegraph_cache_entries', 'cachegraph_cache_hits_total', 'cachegraph_cache_misses_total', 'cachegraph_cache_evictions_total', 'cachegraph_sync_total', 'cachegraph_cache_dirty_entries', 'cachegraph_store_errors_total', 'cachegraph_process_cpu_percent', 'cachegraph_process_memory_bytes']) {
        expect(families.has(name), name).to.equal(true);
      }
      expect(families.get('cachegraph_sync_duration_seconds')).to.equal('histogram');
      const buckets = lines.filter((l) => l.startsWith('cachegraph_sync_duration_seconds_bucket{cache="users"'));
      const counts = buckets.map((l) => Number(l.split(' ')[1]));
      expect(counts).to.deep.equal([...counts].sort((a, b) => a - b)); // cumulative
      expect(buckets.at(-1)).to.match(/le="\+Inf"\} 1$/);
      expect(lines).to.include('cachegraph_sync_duration_seconds_count{cache="users"} 1');
      expect(lines.some((l) => l.startsWith('cachegraph_sync_duration_seconds_sum{cache="users"} '))).to.equal(true);
      expect(lines).to.include('cachegraph_sync_total{cache="users",result="ok"} 1');
      expect(lines).to.include('cachegraph_cache_entries{cache="users"} 2');
    });
  });

  describe('createAdminHandler()', function () {
    it("mounts under basePath on the application's server and passes other requests on", async function () {
      const manager = managers.make({ autoSync: false });
      await registerChain(manager);
      const handler = createAdminHandler(manager, { basePath: '/admin/cache/' });
      const server = http.createServer((req, res) => handler(req, res, () => res.end('app')));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        expect((await call(`${base}/hello`)).text).to.equal('app');
        expect((await call(`${base}/admin/cache/api/caches`)).body['caches']).to.have.length(4);
        const page = await call(`${base}/admin/cache/`);
        expect(page.headers.get('content-type')).to.include('text/html');
        expect(page.headers.get('content-security-policy')).to.include("script-src 'self'");
        const redirect = await fetch(`${base}/admin/cache`, { redirect: 'manual' });
        expect(redirect.status).to.equal(308);
        expect(redirect.headers.get('location')).to.equal('/admin/cache/');
      } finally {
        handler.close();
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      expect(manager.listenerCount('sync:done')).to.equal(0);
    });
  });
});
