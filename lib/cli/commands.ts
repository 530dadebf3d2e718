/**
 * The `cachegraph` subcommands, each working on a store (a directory or Redis) without the
 * application: what they print, in text for people and with `--json` for scripts.
 *
 * @module
 */

import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';
import { CorruptFileError, UnsupportedFormatError } from '../errors.js';
import { FILE_EXTENSION, FileStore } from '../store/file.js';
import type { CacheStore, StoredEntry, StoredInfo, StoreWarning } from '../store/types.js';
import { codecFor, describeStored, readCatalog, storeContext, type Catalog } from './catalog.js';
import { formatBytes, formatTime, printJson, println, ProgressBar, table, type Output } from './output.js';
import { CommandFailure, EXIT, UsageError } from './store.js';
import { cacheLine, entryLine, parseLine, valueFields } from './transfer.js';

/**
 * What a command is given.
 *
 * @example
 * const code = await COMMANDS.ls.run({ store, out, args: [], flags: {}, where: '.cache' });
 */
export interface CommandContext {
  /** The open store. */
  readonly store: CacheStore;
  /** Where to print. */
  readonly out: Output;
  /** Positional arguments after the command name. */
  readonly args: readonly string[];
  /** The command's own options, parsed. */
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  /** The store's location for messages (no credentials). */
  readonly where: string;
}

/** A subcommand's implementation; resolves the exit code. */
export type CommandRun = (ctx: CommandContext) => Promise<number>;

/** The codec to read `info`'s copy with, or a failure naming the cache and codec. */
function readerCodec(info: StoredInfo): NonNullable<ReturnType<typeof codecFor>> {
  const codec = codecFor(info.codec);
  if (codec === undefined) {
    throw new CommandFailure(`cache ${JSON.stringify(info.name)} was written with codec ${JSON.stringify(info.codec)}, which the CLI does not have (only v8 and json are built in)`);
  }
  return codec;
}

async function infoOrFail(ctx: CommandContext, name: string): Promise<StoredInfo> {
  const info = await describeStored(ctx.store, name);
  if (info === undefined) throw new CommandFailure(`no cache named ${JSON.stringify(name)} is saved in ${ctx.where}`);
  return info;
}

async function catalogWithProgress(ctx: CommandContext, label: string): Promise<Catalog> {
  let bar: ProgressBar | undefined;
  const catalog = await readCatalog(ctx.store, (done, total) => {
    bar ??= new ProgressBar(ctx.out, label, total);
    bar.update(done);
  });
  (bar as ProgressBar | undefined)?.done();
  return catalog;
}

/** Counts entries by a full load where `describe` could not tell (a FileStore log). */
async function countEntries(store: CacheStore, info: StoredInfo): Promise<number | undefined> {
  if (info.entries !== undefined) return info.entries;
  const codec = codecFor(info.codec);
  if (codec === undefined) return undefined;
  return (await store.load(info.name, storeContext(codec)))?.entries.length;
}

/** `ls`: one row per saved cache. */
export const ls: CommandRun = async (ctx) => {
  const catalog = await catalogWithProgress(ctx, 'reading');
  const rows: (StoredInfo & { entries: number | undefined })[] = [];
  const bar = new ProgressBar(ctx.out, 'counting', catalog.caches.size);
  for (const info of catalog.caches.values()) {
    rows.push({ ...info, entries: await countEntries(ctx.store, info) });
    bar.tick(info.name);
  }
  bar.done();
  if (ctx.out.json) {
    printJson(ctx.out, { store: ctx.store.kind, location: ctx.where, caches: rows });
    return EXIT.ok;
  }
  if (rows.length === 0) {
    println(ctx.out, `no caches saved in ${ctx.where}`);
    return EXIT.ok;
  }
  println(
    ctx.out,
    table(
      ['CACHE', 'ENTRIES', 'BYTES', 'LAST SAVE', 'DIRTY', 'CODEC', 'DEPENDS ON'],
      rows.map((row) => [
        row.name,
        row.entries === undefined ? '?' : String(row.entries),
        formatBytes(row.bytes),
        formatTime(row.savedAt),
        formatBytes(row.logBytes),
        row.codec,
        row.dependsOn.join(', ') || '-',
      ]),
    ),
  );
  return EXIT.ok;
};

function showValue(value: unknown): string {
  return inspect(value, { depth: 4, breakLength: Infinity, maxArrayLength: 20, maxStringLength: 200 });
}

/** `show <cache> [key]`: a cache's facts and entries, or one entry. */
export const show: CommandRun = async (ctx) => {
  const [name, keyText] = ctx.args;
  if (name === undefined) throw new UsageError('show needs a cache name: cachegraph show <cache> [key]');
  const info = await infoOrFail(ctx, name);
  const context = storeContext(readerCodec(info));
  if (keyText !== undefined) {
    let key: unknown = keyText;
    if (ctx.flags['key-json'] === true) {
      try {
        key = JSON.parse(keyText);
      } catch {
        throw new UsageError(`--key-json: ${JSON.stringify(keyText)} is not JSON`);
      }
    }
    const entry = ctx.store.loadEntry !== undefined ? await ctx.store.loadEntry(name, key, context) : await findEntry(ctx.store, name, key, context);
    if (entry === undefined) throw new CommandFailure(`cache ${JSON.stringify(name)} has no key ${showValue(key)}`);
    if (ctx.out.json) printJson(ctx.out, { cache: name, ...valueFields('key', entry[0]), ...valueFields('value', entry[1]), expiresAt: entry[2] });
    else println(ctx.out, `${showValue(entry[0])} = ${showValue(entry[1])}${entry[2] === 0 ? '' : `  (expires ${formatTime(entry[2])})`}`);
    return EXIT.ok;
  }
  const snapshot = await ctx.store.load(name, context);
  const entries = snapshot?.entries ?? [];
  const limit = ctx.flags['all'] === true ? Infinity : Number(ctx.flags['limit'] ?? 20);
  if (!Number.isInteger(limit) && limit !== Infinity) throw new UsageError('--limit must be a whole number');
  const shown = entries.slice(0, limit);
  if (ctx.out.json) {
    printJson(ctx.out, {
      ...info,
      entries: entries.length,
      shown: shown.map((entry) => ({ ...valueFields('key', entry[0]), ...valueFields('value', entry[1]), expiresAt: entry[2] })),
    });
    return EXIT.ok;
  }
  println(ctx.out, `cache       ${info.name}`);
  println(ctx.out, `location    ${info.location}`);
  println(ctx.out, `entries     ${entries.length}`);
  println(ctx.out, `bytes       ${formatBytes(info.bytes)} (${formatBytes(info.logBytes)} not yet compacted)`);
  println(ctx.out, `last save   ${formatTime(info.savedAt)}`);
  println(ctx.out, `codec       ${info.codec}`);
  println(ctx.out, `depends on  ${info.dependsOn.join(', ') || '-'}`);
  if (shown.length > 0) {
    println(ctx.out);
    println(ctx.out, table(['KEY', 'VALUE', 'EXPIRES'], shown.map((entry) => [showValue(entry[0]), showValue(entry[1]).slice(0, 120), formatTime(entry[2])])));
  }
  if (shown.length < entries.length) println(ctx.out, `… ${entries.length - shown.length} more (--limit N or --all)`);
  return EXIT.ok;
};

async function findEntry(store: CacheStore, name: string, key: unknown, context: ReturnType<typeof storeContext>): Promise<StoredEntry | undefined> {
  const snapshot = await store.load(name, context);
  return snapshot?.entries.find((entry) => Object.is(entry[0], key));
}

/** One problem `verify` found. */
interface Finding {
  readonly cache: string;
  readonly level: 'damage' | 'warning' | 'skipped';
  readonly file: string | undefined;
  readonly offset: number | undefined;
  readonly message: string;
}

/** Cache directories `list()` could not name (their manifest is unreadable). */
async function unnamedCacheDirs(store: FileStore, names: readonly string[]): Promise<string[]> {
  const known = new Set(names.map((name) => store.locate(name)));
  const found = await fs.readdir(store.dir, { withFileTypes: true }).catch(() => []);
  return found
    .filter((dirent) => dirent.isDirectory() && !dirent.name.startsWith('.') && dirent.name.endsWith(FILE_EXTENSION))
    .map((dirent) => path.join(store.dir, dirent.name))
    .filter((dir) => !known.has(dir));
}

/** `verify [cache...]`: reads every byte of every copy and checks every checksum. */
export const verify: CommandRun = async (ctx) => {
  const names = ctx.args.length > 0 ? [...ctx.args] : await ctx.store.list();
  const findings: Finding[] = [];
  const bar = new ProgressBar(ctx.out, 'verifying', names.length);
  let checked = 0;
  for (const name of names) {
    const warnings: StoreWarning[] = [];
    try {
      const info = await describeStored(ctx.store, name);
      if (info === undefined) throw new CommandFailure(`no cache named ${JSON.stringify(name)} is saved in ${ctx.where}`);
      // Files name their codec: any built-in one reads them; a custom one cannot be checked.
      const codec = codecFor(info.codec);
      if (codec === undefined) {
        findings.push({ cache: name, level: 'skipped', file: info.location, offset: undefined, message: `written with codec ${JSON.stringify(info.codec)}, which the CLI does not have` });
      } else {
        await ctx.store.load(name, storeContext(codec, { warn: (warning) => warnings.push(warning) }));
        checked++;
      }
    } catch (error) {
      if (error instanceof CorruptFileError) {
        findings.push({ cache: name, level: 'damage', file: error.path, offset: error.offset, message: error.message });
      } else if (error instanceof UnsupportedFormatError) {
        findings.push({ cache: name, level: 'skipped', file: error.path, offset: undefined, message: error.message });
      } else {
        throw error;
      }
    }
    for (const warning of warnings) findings.push({ cache: name, level: 'warning', file: warning.path, offset: undefined, message: warning.message });
    bar.tick(name);
  }
  bar.done();
  if (ctx.args.length === 0 && ctx.store instanceof FileStore) {
    for (const dir of await unnamedCacheDirs(ctx.store, names)) {
      findings.push({ cache: path.basename(dir), level: 'damage', file: path.join(dir, 'MANIFEST'), offset: 0, message: `${dir}: its manifest cannot be read, so the cache's name is unknown` });
    }
  }
  const damaged = findings.filter((finding) => finding.level === 'damage');
  if (ctx.out.json) {
    printJson(ctx.out, { ok: damaged.length === 0, checked, findings });
  } else {
    for (const finding of findings) {
      const at = finding.file === undefined ? '' : ` ${finding.file}${finding.offset === undefined ? '' : ` at byte ${finding.offset}`}`;
      println(ctx.out, `${finding.level.toUpperCase()} ${finding.cache}:${at}: ${finding.message}`);
    }
    println(ctx.out, damaged.length === 0 ? `ok: ${checked} cache(s) verified, every checksum matches` : `${damaged.length} damaged cache(s) of ${names.length}`);
  }
  return damaged.length === 0 ? EXIT.ok : EXIT.failure;
};

/** `compact [cache...]`: folds FileStore logs into fresh snapshots. */
export const compact: CommandRun = async (ctx) => {
  const store = ctx.store;
  if (!(store instanceof FileStore)) {
    if (ctx.out.json) printJson(ctx.out, { compacted: [], note: `${store.kind} stores keep no log: nothing to compact` });
    else println(ctx.out, `${store.kind} stores keep no log: nothing to compact`);
    return EXIT.ok;
  }
  const names = ctx.args.length > 0 ? [...ctx.args] : await store.list();
  const results: { cache: string; entries: number; bytesBefore: number; bytesAfter: number }[] = [];
  const bar = new ProgressBar(ctx.out, 'compacting', names.length);
  for (const name of names) {
    const info = await infoOrFail(ctx, name);
    const result = await store.compact(name, storeContext(readerCodec(info)));
    if (result !== undefined) results.push({ cache: name, entries: result.entries, bytesBefore: result.bytesBefore, bytesAfter: result.bytesAfter });
    bar.tick(name);
  }
  bar.done();
  if (ctx.out.json) printJson(ctx.out, { compacted: results });
  else if (results.length === 0) println(ctx.out, 'nothing to compact');
  else println(ctx.out, table(['CACHE', 'ENTRIES', 'BEFORE', 'AFTER'], results.map((r) => [r.cache, String(r.entries), formatBytes(r.bytesBefore), formatBytes(r.bytesAfter)])));
  return EXIT.ok;
};

/**
 * Invalidates `name` and everything downstream of it in the store's recorded graph:
 * deletes their copies (atomically where the store can), then tells running applications
 * on the store's bus. Resolves the caches, upstreams first.
 *
 * @example
 * await invalidateStored(store, catalog, 'users'); // ['users', 'stats']
 */
export async function invalidateStored(store: CacheStore, catalog: Catalog, name: string): Promise<string[]> {
  const names = catalog.cascade(name);
  if (store.invalidateCascade !== undefined) await store.invalidateCascade(names);
  else for (const n of names) await store.delete(n);
  // The manager's bus message: running applications drop their copies.
  if (store.publish !== undefined) await store.publish({ v: 1, t: 'invalidated', names, source: name });
  return names;
}

/** `invalidate <cache> [--dry-run]`: deletes a cache's copy and those of its dependents. */
export const invalidate: CommandRun = async (ctx) => {
  const [name] = ctx.args;
  if (name === undefined) throw new UsageError('invalidate needs a cache name: cachegraph invalidate <cache> [--dry-run]');
  const catalog = await readCatalog(ctx.store);
  if (!catalog.caches.has(name) && !catalog.graph.has(name)) throw new CommandFailure(`no cache named ${JSON.stringify(name)} is saved or linked in ${ctx.where}`);
  const dryRun = ctx.flags['dry-run'] === true;
  const names = dryRun ? catalog.cascade(name) : await invalidateStored(ctx.store, catalog, name);
  const rows = names.map((n) => ({ cache: n, saved: catalog.caches.has(n), cause: n === name ? 'direct' : 'dependency' }));
  if (ctx.out.json) {
    printJson(ctx.out, { dryRun, source: name, invalidated: rows });
  } else {
    println(ctx.out, dryRun ? `would invalidate ${names.length} cache(s), upstreams first:` : `invalidated ${names.length} cache(s), upstreams first:`);
    for (const row of rows) println(ctx.out, `  ${row.cache}${row.cause === 'direct' ? '' : ` (downstream of ${name})`}${row.saved ? '' : ' (no saved copy)'}`);
  }
  return EXIT.ok;
};

function quoteDot(text: string): string {
  return `"${text.replace(/["\\]/g, '\\$&').replace(/\n/g, '\\n')}"`;
}

function quoteMermaid(text: string): string {
  return `"${text.replace(/"/g, '#quot;').replace(/\n/g, ' ')}"`;
}

/**
 * The graph of a catalog as Mermaid (`graph TD`) or Graphviz DOT. Caches linked but not
 * saved are drawn dashed.
 *
 * @example
 * renderGraph(catalog, 'dot'); // 'digraph cachegraph {\n  "users" -> "stats";\n}'
 */
export function renderGraph(catalog: Catalog, format: 'mermaid' | 'dot'): string {
  const nodes = catalog.graph.topologicalOrder();
  const edges = nodes.flatMap((node) => catalog.graph.childrenOf(node).map((child) => [node, child] as const));
  if (format === 'dot') {
    const lines = ['digraph cachegraph {', '  rankdir=TB;', '  node [shape=box, style=rounded];'];
    for (const node of nodes) if (!catalog.caches.has(node)) lines.push(`  ${quoteDot(node)} [style="rounded,dashed"];`);
    for (const node of nodes) if (catalog.caches.has(node)) lines.push(`  ${quoteDot(node)};`);
    for (const [from, to] of edges) lines.push(`  ${quoteDot(from)} -> ${quoteDot(to)};`);
    lines.push('}');
    return lines.join('\n');
  }
  const ids = new Map(nodes.map((node, i) => [node, `n${i}`]));
  const lines = ['graph TD'];
  for (const node of nodes) lines.push(`  ${ids.get(node)}[${quoteMermaid(node)}]`);
  for (const [from, to] of edges) lines.push(`  ${ids.get(from)} --> ${ids.get(to)}`);
  const unsaved = nodes.filter((node) => !catalog.caches.has(node));
  if (unsaved.length > 0) {
    lines.push('  classDef unsaved stroke-dasharray: 4 4');
    lines.push(`  class ${unsaved.map((node) => ids.get(node)).join(',')} unsaved`);
  }
  return lines.join('\n');
}

/** `graph [--format mermaid|dot]`: the recorded dependency DAG. */
export const graph: CommandRun = async (ctx) => {
  const format = (ctx.flags['format'] ?? 'mermaid') as string;
  if (format !== 'mermaid' && format !== 'dot') throw new UsageError(`--format must be mermaid or dot, not ${JSON.stringify(format)}`);
  const catalog = await readCatalog(ctx.store);
  if (ctx.out.json) {
    const nodes = catalog.graph.topologicalOrder();
    printJson(ctx.out, {
      nodes: nodes.map((name) => ({ name, saved: catalog.caches.has(name) })),
      edges: nodes.flatMap((from) => catalog.graph.childrenOf(from).map((to) => ({ from, to }))),
    });
  } else {
    println(ctx.out, renderGraph(catalog, format));
  }
  return EXIT.ok;
};

/** `export [cache...] [--out FILE]`: JSON lines of every entry. */
export const exportCaches: CommandRun = async (ctx) => {
  const names = ctx.args.length > 0 ? [...ctx.args] : await ctx.store.list();
  const file = ctx.flags['out'];
  const sink = typeof file === 'string' && file !== '-' ? createWriteStream(file, { mode: 0o600 }) : ctx.out.stdout;
  const write = async (line: string): Promise<void> => {
    if (!sink.write(`${line}\n`)) await once(sink, 'drain');
  };
  const bar = new ProgressBar(sink === ctx.out.stdout ? { ...ctx.out, tty: false } : ctx.out, 'exporting', names.length);
  let entries = 0;
  for (const name of names) {
    const info = await infoOrFail(ctx, name);
    const snapshot = await ctx.store.load(name, storeContext(readerCodec(info)));
    await write(cacheLine(info));
    for (const entry of snapshot?.entries ?? []) {
      try {
        await write(entryLine(name, entry));
      } catch (error) {
        throw new CommandFailure(`cache ${JSON.stringify(name)}: an entry cannot be exported (${error instanceof Error ? error.message : String(error)})`);
      }
      entries++;
    }
    bar.tick(name);
  }
  bar.done();
  if (sink !== ctx.out.stdout) {
    sink.end();
    await once(sink, 'finish');
    if (ctx.out.json) printJson(ctx.out, { caches: names.length, entries, file });
    else println(ctx.out, `exported ${entries} entries of ${names.length} cache(s) to ${file as string}`);
  }
  return EXIT.ok;
};

/** `import [FILE]`: replaces the copy of every cache in a JSON-lines export. */
export const importCaches: CommandRun = async (ctx) => {
  const file = ctx.args[0];
  const input = file === undefined || file === '-' ? process.stdin : createReadStream(file);
  const caches = new Map<string, { info: { codec: string; dependsOn: readonly string[] }; entries: StoredEntry[] }>();
  let lineNo = 0;
  try {
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      lineNo++;
      const line = parseLine(text, lineNo);
      if (line === undefined) continue;
      if (line.type === 'cache') {
        caches.set(line.name, { info: line, entries: [] });
      } else {
        const target = caches.get(line.cache);
        if (target === undefined) throw new SyntaxError(`line ${lineNo}: entry of cache ${JSON.stringify(line.cache)} before its "cache" line`);
        target.entries.push(line.entry);
      }
    }
  } catch (error) {
    if (error instanceof SyntaxError) throw new CommandFailure(`${file ?? 'stdin'}: ${error.message}`);
    throw error;
  }
  const bar = new ProgressBar(ctx.out, 'importing', caches.size);
  const done: { cache: string; entries: number }[] = [];
  for (const [name, { info, entries }] of caches) {
    const codec = codecFor(info.codec);
    if (codec === undefined) throw new CommandFailure(`cache ${JSON.stringify(name)}: codec ${JSON.stringify(info.codec)} is not built in; edit its "codec" to v8 or json`);
    await ctx.store.save(name, entries, storeContext(codec, { dependsOn: info.dependsOn }));
    done.push({ cache: name, entries: entries.length });
    bar.tick(name);
  }
  bar.done();
  if (ctx.out.json) printJson(ctx.out, { imported: done });
  else println(ctx.out, `imported ${done.reduce((sum, c) => sum + c.entries, 0)} entries into ${done.length} cache(s): ${done.map((c) => c.cache).join(', ') || '-'}`);
  return EXIT.ok;
};

/** `stats`: totals over the store. */
export const stats: CommandRun = async (ctx) => {
  const catalog = await catalogWithProgress(ctx, 'reading');
  const infos = [...catalog.caches.values()];
  let entries = 0;
  let uncounted = 0;
  for (const info of infos) {
    const count = await countEntries(ctx.store, info);
    if (count === undefined) uncounted++;
    else entries += count;
  }
  let quarantined = 0;
  if (ctx.store instanceof FileStore) {
    const names = await fs.readdir(ctx.store.dir).catch(() => [] as string[]);
    quarantined = names.filter((n) => n.includes(`${FILE_EXTENSION}.corrupt-`)).length;
  }
  const largest = [...infos].sort((a, b) => b.bytes - a.bytes)[0];
  const summary = {
    store: ctx.store.kind,
    location: ctx.where,
    caches: infos.length,
    entries,
    uncountedCaches: uncounted,
    bytes: infos.reduce((sum, info) => sum + info.bytes, 0),
    logBytes: infos.reduce((sum, info) => sum + info.logBytes, 0),
    links: catalog.graph.edgeCount,
    lastSaveAt: Math.max(0, ...infos.map((info) => info.savedAt)),
    largest: largest?.name ?? null,
    quarantined,
  };
  if (ctx.out.json) {
    printJson(ctx.out, summary);
    return EXIT.ok;
  }
  println(ctx.out, `store        ${summary.store} ${summary.location}`);
  println(ctx.out, `caches       ${summary.caches} (${summary.links} dependency links)`);
  println(ctx.out, `entries      ${summary.entries}${uncounted > 0 ? ` (+ ${uncounted} cache(s) the CLI cannot decode)` : ''}`);
  println(ctx.out, `bytes        ${formatBytes(summary.bytes)} (${formatBytes(summary.logBytes)} not yet compacted)`);
  println(ctx.out, `last save    ${formatTime(summary.lastSaveAt)}`);
  println(ctx.out, `largest      ${summary.largest ?? '-'}`);
  println(ctx.out, `quarantined  ${summary.quarantined}`);
  return EXIT.ok;
};
