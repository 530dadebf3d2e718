/**
 * The dashboard page of the admin service: static HTML, CSS and a script without
 * dependencies, served from these strings. The script polls the JSON endpoints (relative
 * URLs, so the page works under any `basePath`), draws the caches table with live hit
 * rates, the dependency graph as SVG in a simple layered layout, and the AutoSync
 * timeline; the invalidate button shows the cascade (a dry run) before doing it.
 * Every name is inserted as text, never as markup.
 *
 * @module
 */

/**
 * The page.
 *
 * @example
 * res.end(DASHBOARD_HTML);
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cachegraph</title>
<link rel="stylesheet" href="dashboard.css">
<script src="dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>cachegraph</h1>
  <span id="label" class="muted"></span>
  <span id="status" class="muted">connecting…</span>
  <label id="token-box" hidden>token <input id="token" type="password" autocomplete="off" size="24"></label>
</header>
<main>
  <section id="caches-panel">
    <h2>Caches</h2>
    <table id="caches">
      <thead><tr>
        <th>cache</th><th class="num">entries</th><th class="num">hit rate</th><th class="num">hits</th><th class="num">misses</th>
        <th class="num">pending</th><th>last save</th><th>next save</th><th class="num">saves</th><th></th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p id="empty" class="muted" hidden>No caches.</p>
  </section>
  <section id="cascade-panel" hidden>
    <h2>Invalidate <span id="cascade-source"></span></h2>
    <p id="cascade-text"></p>
    <ol id="cascade-list"></ol>
    <button id="cascade-confirm" class="danger">Invalidate</button>
    <button id="cascade-cancel">Cancel</button>
    <p id="cascade-result" role="status"></p>
  </section>
  <section id="graph-panel">
    <h2>Dependency graph</h2>
    <svg id="graph" role="img" aria-label="dependency graph"></svg>
  </section>
  <section id="timeline-panel">
    <h2>AutoSync timeline <span class="muted">(last 10 minutes: ● save, ✕ failed save, ▲ invalidated)</span></h2>
    <svg id="timeline" role="img" aria-label="AutoSync timeline"></svg>
  </section>
</main>
</body>
</html>
`;

/**
 * The style sheet.
 *
 * @example
 * res.end(DASHBOARD_CSS);
 */
export const DASHBOARD_CSS = `:root { --fg: #1d2330; --muted: #6b7385; --line: #d8dce5; --accent: #2f6fde; --ok: #1f9d55; --bad: #d64545; --warn: #e08a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f6f7fa; }
header { display: flex; gap: 1rem; align-items: baseline; padding: .8rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.2rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1rem; padding: 1rem 1.2rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8rem 1rem; }
#caches-panel, #timeline-panel { grid-column: 1 / -1; }
.muted { color: var(--muted); font-weight: normal; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flash td { background: #fff4d6; }
button { font: inherit; padding: .2rem .7rem; border: 1px solid var(--line); border-radius: 4px; background: #fff; cursor: pointer; }
button:hover { border-color: var(--accent); }
button.danger { border-color: var(--bad); color: var(--bad); }
#graph { display: block; margin: 0 auto; max-width: 100%; height: auto; }
#graph .node rect { fill: #eef3ff; stroke: var(--accent); stroke-width: 1.5; rx: 6; }
#graph .node.unknown rect { fill: #fff; stroke: var(--muted); stroke-dasharray: 4 3; }
#graph .node.cascade rect { fill: #fff0d9; stroke: var(--warn); stroke-width: 2.5; }
#graph .node.invalidated rect { fill: #ffe1e1; stroke: var(--bad); }
#graph .node text { font-size: 12px; fill: var(--fg); text-anchor: middle; dominant-baseline: middle; }
#graph .edge { fill: none; stroke: #9aa3b5; stroke-width: 1.5; }
#timeline { width: 100%; }
#timeline .row text { font-size: 12px; fill: var(--muted); dominant-baseline: middle; }
#timeline .grid { stroke: var(--line); }
#timeline .tick { font-size: 11px; fill: var(--muted); text-anchor: middle; }
#timeline .sync { fill: var(--ok); }
#timeline .sync-error { stroke: var(--bad); stroke-width: 2; }
#timeline .invalidated { fill: var(--warn); }
#cascade-panel { border-color: var(--warn); }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
`;

/**
 * The script (plain ES2020, no modules, no dependencies).
 *
 * @example
 * res.end(DASHBOARD_JS);
 */
export const DASHBOARD_JS = `'use strict';
(function () {
  var SVG = 'http://www.w3.org/2000/svg';
  var POLL_MS = 2000;
  var WINDOW_MS = 10 * 60 * 1000;
  var state = { info: null, rows: [], previous: new Map(), rates: new Map(), graph: null, graphKey: '', events: [], since: 0, cascade: null, highlighted: new Set(), invalidated: new Set() };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function time(ms) { return ms ? new Date(ms).toLocaleTimeString() : '–'; }
  function number(n) { return n === undefined || n === null ? '–' : String(n); }
  function percent(r) { return r === null || r === undefined ? '–' : (100 * r).toFixed(1) + ' %'; }

  function api(path, options) {
    var headers = { accept: 'application/json' };
    if (options && options.body !== undefined) headers['content-type'] = 'application/json';
    var token = $('token').value;
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(path, { method: (options && options.method) || 'GET', headers: headers, body: options && options.body !== undefined ? JSON.stringify(options.body) : undefined })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body && body.error ? body.error : res.status + ' ' + res.statusText);
          return body;
        });
      });
  }

  // Live hit rate: over the last poll interval when there were reads, else since the start.
  function updateRates(rows) {
    rows.forEach(function (row) {
      var before = state.previous.get(row.name);
      var dh = before ? (row.hits || 0) - before.hits : 0;
      var dm = before ? (row.misses || 0) - before.misses : 0;
      if (dh + dm > 0) state.rates.set(row.name, dh / (dh + dm));
      else if (!state.rates.has(row.name)) state.rates.set(row.name, row.hitRate);
      state.previous.set(row.name, { hits: row.hits || 0, misses: row.misses || 0 });
    });
  }

  function renderTable() {
    var body = document.querySelector('#caches tbody');
    body.textContent = '';
    $('empty').hidden = state.rows.length > 0;
    state.rows.forEach(function (row) {
      var tr = el('tr', { 'data-cache': row.name });
      if (state.invalidated.has(row.name)) tr.className = 'flash';
      tr.appendChild(el('td', { class: 'name' }, row.name));
      tr.appendChild(el('td', { class: 'num entries' }, number(row.entries)));
      tr.appendChild(el('td', { class: 'num hit-rate' }, percent(state.rates.get(row.name))));
      tr.appendChild(el('td', { class: 'num' }, number(row.hits)));
      tr.appendChild(el('td', { class: 'num' }, number(row.misses)));
      tr.appendChild(el('td', { class: 'num' }, number(row.pendingChanges)));
      tr.appendChild(el('td', {}, time(row.lastSaveAt)));
      tr.appendChild(el('td', {}, row.saving ? 'saving…' : time(row.nextSaveAt)));
      tr.appendChild(el('td', { class: 'num' }, row.saves + (row.saveErrors ? ' / ' + row.saveErrors + ' failed' : '')));
      var actions = el('td', {});
      var invalidate = el('button', { class: 'invalidate', 'data-cache': row.name, title: 'show the cascade, then invalidate' }, 'Invalidate');
      invalidate.addEventListener('click', function () { showCascade(row.name); });
      actions.appendChild(invalidate);
      if (state.info && state.info.canSave) {
        var save = el('button', { class: 'save', 'data-cache': row.name }, 'Save');
        save.addEventListener('click', function () {
          api('api/caches/' + encodeURIComponent(row.name) + '/save', { method: 'POST', body: {} }).then(refresh, report);
        });
        actions.appendChild(document.createTextNode(' '));
        actions.appendChild(save);
      }
      tr.appendChild(actions);
      body.appendChild(tr);
    });
  }

  // Layers by longest path from the roots; within a layer, ordered by the mean position of
  // the parents (one sweep), which keeps most edges from crossing on small graphs.
  function layout(graph) {
    var parents = new Map(), children = new Map();
    graph.nodes.forEach(function (n) { parents.set(n.name, []); children.set(n.name, []); });
    graph.edges.forEach(function (e) {
      if (!parents.has(e.to) || !parents.has(e.from)) return;
      parents.get(e.to).push(e.from); children.get(e.from).push(e.to);
    });
    var indegree = new Map(), layer = new Map(), queue = [];
    graph.nodes.forEach(function (n) { indegree.set(n.name, parents.get(n.name).length); if (!parents.get(n.name).length) { queue.push(n.name); layer.set(n.name, 0); } });
    for (var i = 0; i < queue.length; i++) {
      var name = queue[i];
      children.get(name).forEach(function (child) {
        layer.set(child, Math.max(layer.get(child) || 0, layer.get(name) + 1));
        indegree.set(child, indegree.get(child) - 1);
        if (indegree.get(child) === 0) queue.push(child);
      });
    }
    var layers = [];
    queue.forEach(function (name) { var l = layer.get(name); (layers[l] = layers[l] || []).push(name); });
    var position = new Map();
    layers.forEach(function (names, l) {
      if (l > 0) {
        names.sort(function (a, b) {
          function mean(n) { var ps = parents.get(n); return ps.reduce(function (s, p) { return s + position.get(p); }, 0) / ps.length; }
          return mean(a) - mean(b);
        });
      }
      names.forEach(function (n, i) { position.set(n, i); });
    });
    return { layers: layers, position: position };
  }

  function renderGraph() {
    var graph = state.graph, root = $('graph');
    root.textContent = '';
    if (!graph || graph.nodes.length === 0) { root.setAttribute('viewBox', '0 0 300 40'); root.appendChild(svg('text', { x: 10, y: 24 }, 'no caches')); return; }
    var placed = layout(graph), boxes = new Map();
    var rowHeight = 70, gap = 24, widest = 0;
    placed.layers.forEach(function (names) {
      var width = names.reduce(function (s, n) { return s + Math.max(70, n.length * 7.5 + 24) + gap; }, -gap);
      widest = Math.max(widest, width);
    });
    placed.layers.forEach(function (names, l) {
      var widths = names.map(function (n) { return Math.max(70, n.length * 7.5 + 24); });
      var total = widths.reduce(function (s, w) { return s + w + gap; }, -gap);
      var x = 10 + (widest - total) / 2;
      names.forEach(function (n, i) { boxes.set(n, { x: x, y: 10 + l * rowHeight, w: widths[i], h: 30 }); x += widths[i] + gap; });
    });
    var width = widest + 20, height = placed.layers.length * rowHeight - 20;
    root.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    // Natural size (shrunk to fit by CSS), so a small graph is not blown up.
    root.setAttribute('width', String(width));
    root.setAttribute('height', String(height));
    var defs = svg('defs');
    var marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#9aa3b5' }));
    defs.appendChild(marker);
    root.appendChild(defs);
    graph.edges.forEach(function (e) {
      var a = boxes.get(e.from), b = boxes.get(e.to);
      if (!a || !b) return;
      var x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y, mid = (y1 + y2) / 2;
      root.appendChild(svg('path', { class: 'edge', 'data-from': e.from, 'data-to': e.to, d: 'M' + x1 + ' ' + y1 + ' C' + x1 + ' ' + mid + ' ' + x2 + ' ' + mid + ' ' + x2 + ' ' + y2, 'marker-end': 'url(#arrow)' }));
    });
    graph.nodes.forEach(function (n) {
      var box = boxes.get(n.name);
      if (!box) return;
      var cls = 'node' + (n.known ? '' : ' unknown') + (state.highlighted.has(n.name) ? ' cascade' : '') + (state.invalidated.has(n.name) ? ' invalidated' : '');
      var g = svg('g', { class: cls, 'data-cache': n.name });
      g.appendChild(svg('title', {}, n.known ? n.name : n.name + ' (linked, not registered or saved)'));
      g.appendChild(svg('rect', { x: box.x, y: box.y, width: box.w, height: box.h, rx: 6 }));
      g.appendChild(svg('text', { x: box.x + box.w / 2, y: box.y + box.h / 2 }, n.name));
      root.appendChild(g);
    });
  }

  function renderTimeline() {
    var root = $('timeline'), now = Date.now();
    root.textContent = '';
    var names = state.rows.map(function (r) { return r.name; });
    state.events.forEach(function (e) { if (names.indexOf(e.cache) < 0) names.push(e.cache); });
    var left = 120, width = 900, rowHeight = 22, top = 20;
    var height = top + Math.max(1, names.length) * rowHeight + 10;
    root.setAttribute('viewBox', '0 0 ' + (left + width + 10) + ' ' + height);
    for (var m = 0; m <= 10; m++) {
      var x = left + (m / 10) * width;
      root.appendChild(svg('line', { class: 'grid', x1: x, y1: top - 6, x2: x, y2: height - 6 }));
      root.appendChild(svg('text', { class: 'tick', x: x, y: 10 }, m === 10 ? 'now' : '-' + (10 - m) + ' min'));
    }
    names.forEach(function (name, i) {
      var y = top + i * rowHeight + rowHeight / 2;
      var row = svg('g', { class: 'row' });
      row.appendChild(svg('text', { x: 4, y: y }, name.length > 16 ? name.slice(0, 15) + '…' : name));
      root.appendChild(row);
    });
    state.events.forEach(function (e) {
      if (e.at < now - WINDOW_MS) return;
      var i = names.indexOf(e.cache), x = left + ((e.at - (now - WINDOW_MS)) / WINDOW_MS) * width, y = top + i * rowHeight + rowHeight / 2;
      var mark;
      if (e.kind === 'sync') mark = svg('circle', { class: 'event sync', cx: x, cy: y, r: 4 });
      else if (e.kind === 'sync-error') { mark = svg('path', { class: 'event sync-error', d: 'M' + (x - 4) + ' ' + (y - 4) + ' L' + (x + 4) + ' ' + (y + 4) + ' M' + (x + 4) + ' ' + (y - 4) + ' L' + (x - 4) + ' ' + (y + 4) }); }
      else mark = svg('path', { class: 'event invalidated', d: 'M' + x + ' ' + (y - 5) + ' L' + (x + 5) + ' ' + (y + 4) + ' L' + (x - 5) + ' ' + (y + 4) + ' z' });
      var detail = e.kind === 'sync' ? 'saved (' + e.reason + '): ' + e.entries + ' entries, ' + e.bytes + ' bytes, ' + Math.round(e.ms) + ' ms'
        : e.kind === 'sync-error' ? 'save failed (' + e.reason + '): ' + e.error : 'invalidated (' + e.reason + ' of ' + e.source + ')';
      mark.appendChild(svg('title', {}, new Date(e.at).toLocaleTimeString() + ' ' + e.cache + ': ' + detail));
      root.appendChild(mark);
    });
  }

  function report(error) { $('status').textContent = 'error: ' + (error && error.message ? error.message : String(error)); }

  function showCascade(name) {
    api('api/caches/' + encodeURIComponent(name) + '/invalidate', { method: 'POST', body: { dryRun: true } }).then(function (answer) {
      var names = answer.invalidated.map(function (r) { return r.cache; });
      state.cascade = name;
      state.highlighted = new Set(names);
      $('cascade-panel').hidden = false;
      $('cascade-source').textContent = name;
      $('cascade-text').textContent = 'This empties ' + names.length + ' cache(s), upstreams first, and rebuilds those with builders:';
      var list = $('cascade-list');
      list.textContent = '';
      answer.invalidated.forEach(function (r) { list.appendChild(el('li', { 'data-cache': r.cache }, r.cache + (r.cause === 'direct' ? '' : ' (downstream of ' + name + ')'))); });
      $('cascade-confirm').textContent = 'Invalidate ' + names.length + ' cache(s)';
      $('cascade-confirm').disabled = false;
      $('cascade-result').textContent = '';
      renderGraph();
    }, report);
  }

  function confirmCascade() {
    var name = state.cascade;
    if (!name) return;
    $('cascade-confirm').disabled = true;
    api('api/caches/' + encodeURIComponent(name) + '/invalidate', { method: 'POST', body: {} }).then(function (answer) {
      var names = answer.invalidated.map(function (r) { return r.cache; });
      state.invalidated = new Set(names);
      $('cascade-result').textContent = 'Invalidated ' + names.join(' → ');
      setTimeout(function () { state.invalidated = new Set(); state.highlighted = new Set(); renderGraph(); renderTable(); }, 4000);
      return refresh();
    }).catch(function (error) { $('cascade-confirm').disabled = false; $('cascade-result').textContent = 'Failed: ' + error.message; });
  }

  function refresh() {
    return Promise.all([api('api/caches'), api('api/timeline?since=' + state.since)]).then(function (answers) {
      state.rows = answers[0].caches;
      updateRates(state.rows);
      var fresh = answers[1].events;
      if (fresh.length) { state.events = state.events.concat(fresh).slice(-500); state.since = fresh[fresh.length - 1].at; }
      renderTable();
      renderTimeline();
      var key = state.rows.map(function (r) { return r.name + ':' + r.dependsOn.join(','); }).join('|');
      var graphDone = key === state.graphKey && state.graph ? Promise.resolve() : api('api/graph').then(function (graph) { state.graph = graph; state.graphKey = key; });
      return graphDone.then(function () {
        renderGraph();
        $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
        document.body.setAttribute('data-ready', 'true');
      });
    }).catch(report);
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('token').value = sessionStorage.getItem('cachegraph-token') || '';
    $('token').addEventListener('change', function () { sessionStorage.setItem('cachegraph-token', $('token').value); });
    $('cascade-confirm').addEventListener('click', confirmCascade);
    $('cascade-cancel').addEventListener('click', function () { $('cascade-panel').hidden = true; state.cascade = null; state.highlighted = new Set(); renderGraph(); });
    api('api/info').then(function (info) {
      state.info = info;
      $('label').textContent = info.source + ' ' + info.name;
      $('token-box').hidden = !info.mutationsNeedToken;
      return refresh();
    }).catch(report);
    setInterval(refresh, POLL_MS);
  });
})();
`;
