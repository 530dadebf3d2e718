// The dashboard in a real headless browser: Debian's chromium, driven by playwright-core
// (`.ci/run` installs chromium). It loads, lists the caches, draws the graph, and an
// invalidate click shows the cascade and runs it. With CACHEGRAPH_SCREENSHOT=1 it saves
// docs/dashboard.png for the README (otherwise a screenshot in the temporary directory, so
// that a test run does not change tracked files).
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { serve, type AdminServer } from '../../lib/admin/serve.js';
import { record, useManagers } from '../helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((candidate) => existsSync(candidate));

describe('admin dashboard (headless chromium)', function () {
  this.timeout(30_000);
  const managers = useManagers();
  let browser: Browser;
  let admin: AdminServer | undefined;

  before(async function () {
    // A missing browser is a failure with instructions, not a skip: this spec must not pass by not running.
    if (CHROMIUM === undefined) throw new Error('chromium was not found: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  });
  after(async () => browser?.close());
  afterEach(async () => {
    await admin?.close();
    admin = undefined;
  });

  it('lists the caches, draws the graph, and an invalidate click shows the cascade and runs it', async function () {
    const manager = managers.make({ name: 'shop', autoSync: { rules: [{ seconds: 1, changes: 1 }] } });
    const users = await manager.registerCache<string, string>('users');
    await manager.registerCache('orders', { dependsOn: ['users'], builder: () => [['o1', 1]] });
    await manager.registerCache('stats', { dependsOn: ['users', 'orders'], builder: ({ manager: m }) => [['users', m.getCache('users').size]] });
    await manager.registerCache('report', { dependsOn: ['stats'], builder: () => [['ok', true]] });
    admin = await serve(manager); // counts memo hits and saves from now on
    const price = manager.memoize(async (symbol: string) => symbol.length, { name: 'price', cache: 'prices' });
    for (const symbol of ['AAPL', 'MSFT', 'AAPL', 'AAPL', 'GOOG', 'MSFT']) await price(symbol);
    for (const id of ['u1', 'u2', 'u3']) users.set(id, id.toUpperCase());
    await manager.saveAll(); // on the AutoSync timeline
    const invalidated = record<{ name: string; cause: string }>(manager, 'cache:invalidated');

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    await page.goto(admin.url);
    await page.waitForSelector('body[data-ready="true"]');

    const rows = await page.$$eval('#caches tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-cache')));
    expect(rows).to.deep.equal(['users', 'orders', 'stats', 'report', 'prices']);
    expect(await page.textContent('#caches tr[data-cache="prices"] .hit-rate')).to.equal('50.0 %');
    const nodes = await page.$$eval('#graph g.node', (gs) => gs.map((g) => g.getAttribute('data-cache')));
    expect(nodes).to.have.members(['users', 'orders', 'stats', 'report', 'prices']);
    expect(await page.$$eval('#graph path.edge', (edges) => edges.map((e) => `${e.getAttribute('data-from')}>${e.getAttribute('data-to')}`))).to.have.members([
      'users>orders',
      'orders>stats',
      'stats>report',
    ]);
    // users→stats is implied by users→orders→stats: drawn once, through orders.
    expect(await page.$$eval('#timeline .event.sync', (marks) => marks.length)).to.be.greaterThan(0);

    await page.click('#caches button.invalidate[data-cache="users"]');
    await page.waitForSelector('#cascade-panel:not([hidden])');
    expect(await page.$$eval('#cascade-list li', (lis) => lis.map((li) => li.getAttribute('data-cache')))).to.deep.equal(['users', 'orders', 'stats', 'report']);
    expect(await page.$$eval('#graph g.node.cascade', (gs) => gs.map((g) => g.getAttribute('data-cache')))).to.have.members(['users', 'orders', 'stats', 'report']);
    expect(invalidated).to.deep.equal([]); // the dry run changed nothing
    const shot = process.env['CACHEGRAPH_SCREENSHOT'] === '1' ? path.join(ROOT, 'docs', 'dashboard.png') : path.join(os.tmpdir(), `cachegraph-dashboard-${process.pid}.png`);
    const png = await page.screenshot({ path: shot, fullPage: true });
    expect(png.subarray(1, 4).toString('latin1')).to.equal('PNG');

    await page.click('#cascade-confirm');
    await page.waitForSelector('#cascade-result:has-text("Invalidated")');
    expect(await page.textContent('#cascade-result')).to.equal('Invalidated users → orders → stats → report');
    expect(invalidated.map((e) => [e.name, e.cause])).to.deep.equal([
      ['users', 'direct'],
      ['orders', 'dependency'],
      ['stats', 'dependency'],
      ['report', 'dependency'],
    ]);
    expect(users.size).to.equal(0);
    await page.waitForSelector('#caches tr[data-cache="users"] .entries:text-is("0")');
    expect(problems).to.deep.equal([]);
    await page.close();
  });
});
