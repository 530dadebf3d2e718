/**
 * Compaction: rewrites the live entries of a snapshot and its segments into a new
 * snapshot, off the main thread when it can.
 *
 * This module does the rewriting itself ({@link compactFiles}: read, replay, write a temp
 * file, fsync) and runs it in a `worker_threads` Worker ({@link runCompaction}) or, when
 * a codec involved is not built in (functions cannot cross to a worker), in this thread,
 * where every step awaits I/O so the event loop keeps running. The store decides what to
 * compact and commits the result (see `file.ts`); nothing here touches the manifest.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { builtinCodec } from '../../codec/index.js';
import type { Codec } from '../../codec/types.js';
import { CacheGraphError, CorruptFileError, StoreIOError, UnsupportedFormatError } from '../../errors.js';
import { decodeFrame, encodeFrame, frameChecksum, type FrameChunk, type FrameSummary } from '../frame.js';
import type { StoredEntry } from '../types.js';
import { CREATE_FLAGS, FileReader, FileWriter, io, openForRead, yieldIfBusy } from './fsio.js';
import type { ChunkKeys } from './key-index.js';
import { isPrimitiveKey, objectIdentity, Patch } from './keys.js';
import { decodeOperations, readSegmentHeader, walkSegment } from './segment.js';

/** Entries per chunk of the snapshots FileStore writes: small, so one key reads little. */
export const SNAPSHOT_CHUNK_ENTRIES = 1024;

/** What to compact and where to write the result. Plain data: it is sent to a Worker. */
export interface CompactionJob {
  /** The cache's name. */
  readonly cacheName: string;
  /** The snapshot to start from, or `null`. */
  readonly snapshot: { readonly path: string; readonly bytes: number; readonly crc: number } | null;
  /** Segments to replay in order, each up to `end` (all whole batches: verified before). */
  readonly segments: readonly { readonly no: number; readonly path: string; readonly end: number }[];
  /** The temp file to create (exclusively) and write the new snapshot into. */
  readonly temp: string;
  /** Its permissions. */
  readonly fileMode: number;
  /** Codec of the new snapshot (by name). */
  readonly codec: string;
  /** Codec that makes identities of object keys, or `null` when no key lists are wanted. */
  readonly identityCodec: string | null;
  /** Entries that expired at this time (ms) are dropped. */
  readonly now: number;
  /** `savedAt` of the new snapshot. */
  readonly savedAt: number;
}

/** One chunk of the new snapshot and the keys in it. */
export interface CompactedChunk extends FrameChunk, ChunkKeys {
  /** Entries in the chunk. */
  readonly operations: number;
}

/** What a compaction wrote. */
export interface CompactionOutput {
  /** Size of the new snapshot. */
  readonly bytes: number;
  /** Entries in it. */
  readonly entries: number;
  /** Its frame crc. */
  readonly crc: number;
  /** Keys dropped because they had expired. */
  readonly expired: ChunkKeys;
}

/** The codecs a compaction uses, resolved from the job's names. */
export interface CompactionCodecs {
  /** Codec of the new snapshot. */
  readonly codec: Codec;
  /** Codec for key identities, when key lists are wanted. */
  readonly identity: Codec | undefined;
  /** Codec of an input file by the name in its header. */
  lookup(name: string): Codec | undefined;
}

/** Codecs by name, for a job run where only built-in codecs exist (a Worker). */
export function builtinCodecs(job: CompactionJob): CompactionCodecs {
  const codec = builtinCodec(job.codec);
  if (codec === undefined) throw new Error(`codec ${job.codec} is not built in`);
  const identity = job.identityCodec === null ? undefined : builtinCodec(job.identityCodec);
  return { codec, identity, lookup: builtinCodec };
}

function identities(codec: Codec | undefined, entries: readonly StoredEntry[]): ChunkKeys {
  const prims: unknown[] = [];
  const objs: string[] = [];
  if (codec !== undefined) {
    for (const [key] of entries) {
      if (isPrimitiveKey(key)) prims.push(key);
      else objs.push(objectIdentity(codec, key));
    }
  }
  return { prims, objs };
}

/**
 * Reads the job's snapshot and segments, replays them, and writes the live entries to
 * the job's temp file (checked writes, fsync). Reports each chunk written.
 *
 * @throws {CorruptFileError} an input file fails its checks (it was verified before, so
 *   it changed since)
 * @throws {StoreIOError} reading or writing failed
 */
export async function compactFiles(
  job: CompactionJob,
  codecs: CompactionCodecs,
  onChunk: (chunk: CompactedChunk) => void,
  signal?: AbortSignal,
): Promise<CompactionOutput> {
  const name = job.cacheName;
  let base: StoredEntry[] = [];
  if (job.snapshot !== null) {
    const { path: file, bytes, crc } = job.snapshot;
    const handle = await openForRead(file, name);
    if (handle === undefined) throw new CorruptFileError(file, 'the snapshot to compact is missing', { cacheName: name });
    try {
      const frame = await decodeFrame(new FileReader(handle, bytes, file, name), file, { codec: codecs.codec, cacheName: name });
      if (frame.crc !== crc) throw new CorruptFileError(file, 'it is not the snapshot the manifest names (checksum differs)', { cacheName: name });
      base = frame.entries;
    } finally {
      await handle.close().catch(() => undefined);
    }
  }
  const patch = new Patch(codecs.identity ?? codecs.codec);
  for (const segment of job.segments) {
    signal?.throwIfAborted();
    const handle = await openForRead(segment.path, name);
    if (handle === undefined) throw new CorruptFileError(segment.path, 'the segment to compact is missing', { cacheName: name });
    try {
      const { header, end: headerEnd } = await readSegmentHeader(handle, segment.end, segment.path, name, segment.no);
      const codec = header.codec === codecs.codec.name ? codecs.codec : codecs.lookup(header.codec);
      if (codec === undefined) throw new UnsupportedFormatError(segment.path, `codec ${header.codec}`, `written with codec ${JSON.stringify(header.codec)} which this process does not have`);
      await walkSegment(handle, segment.end, segment.path, name, segment.no, headerEnd, false, (batch) => {
        if (batch.cleared) patch.clear();
        batch.parts.forEach((part, i) => {
          for (const op of decodeOperations(codec, batch.payloads[i] as Uint8Array, segment.path, part.offset, name)) patch.apply(op);
        });
      });
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  const expired: StoredEntry[] = [];
  function* live(): Generator<StoredEntry, void, undefined> {
    for (const entry of patch.mergeLazily(base)) {
      if (entry[2] !== 0 && entry[2] <= job.now) expired.push(entry);
      else yield entry;
    }
  }

  let handle: FileHandle | undefined;
  try {
    handle = await io('open', job.temp, () => fs.open(job.temp, CREATE_FLAGS, job.fileMode));
    const writer = new FileWriter(handle, job.temp, 0, signal);
    const frame = encodeFrame(name, live(), { codec: codecs.codec, clock: { now: () => job.savedAt } }, {
      chunkEntries: SNAPSHOT_CHUNK_ENTRIES,
      onChunk: (chunk, entries) => onChunk({ ...chunk, operations: entries.length, ...identities(codecs.identity, entries) }),
    });
    let summary: FrameSummary;
    let last: Uint8Array | undefined;
    for (let step = frame.next(); ; step = frame.next()) {
      if (step.done === true) {
        summary = step.value;
        break;
      }
      last = step.value;
      await writer.write(step.value);
      await yieldIfBusy();
    }
    await writer.flush();
    const written = handle;
    await io('fsync', job.temp, () => written.sync());
    handle = undefined;
    await io('close', job.temp, () => written.close());
    return { bytes: summary.bytes, entries: summary.entries, crc: frameChecksum(last as Uint8Array), expired: identities(codecs.identity, expired) };
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** An error as plain data, to cross from a Worker. */
interface ErrorData {
  readonly code?: string;
  readonly name: string;
  readonly message: string;
  readonly path?: string;
  readonly offset?: number;
  readonly cacheName?: string;
  readonly op?: string;
  readonly syscallCode?: string;
  readonly causeMessage?: string;
  readonly found?: string;
}

/** Turns an error into plain data (see {@link reviveError}). */
export function describeError(error: unknown): ErrorData {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const data: Record<string, unknown> = { name: error.name, message: error.message };
  if (error instanceof CacheGraphError) data['code'] = error.code;
  if (error instanceof CorruptFileError) {
    data['path'] = error.path;
    if (error.offset !== undefined) data['offset'] = error.offset;
    if (error.cacheName !== undefined) data['cacheName'] = error.cacheName;
  }
  if (error instanceof StoreIOError) {
    data['path'] = error.path;
    data['op'] = error.op;
    if (error.syscallCode !== undefined) data['syscallCode'] = error.syscallCode;
    data['causeMessage'] = error.cause instanceof Error ? error.cause.message : String(error.cause);
  }
  if (error instanceof UnsupportedFormatError) {
    data['path'] = error.path;
    data['found'] = error.found;
  }
  return data as unknown as ErrorData;
}

/** Rebuilds an error described by {@link describeError}, with its class where it matters. */
function reviveError(data: ErrorData): Error {
  if (data.code === 'E_CORRUPT_FILE' && data.path !== undefined) {
    const prefix = `Corrupt cache file ${data.path}${data.offset === undefined ? '' : ` at byte ${data.offset}`}: `;
    const reason = data.message.startsWith(prefix) ? data.message.slice(prefix.length) : data.message;
    const details: { offset?: number; cacheName?: string } = {};
    if (data.offset !== undefined) details.offset = data.offset;
    if (data.cacheName !== undefined) details.cacheName = data.cacheName;
    return new CorruptFileError(data.path, reason, details);
  }
  if (data.code === 'E_STORE_IO' && data.path !== undefined && data.op !== undefined) {
    const cause = Object.assign(new Error(data.causeMessage ?? data.message), data.syscallCode === undefined ? {} : { code: data.syscallCode });
    return new StoreIOError(data.op, data.path, cause);
  }
  if (data.code === 'E_UNSUPPORTED_FORMAT' && data.path !== undefined && data.found !== undefined) {
    const prefix = `Cannot read cache file ${data.path}: `;
    const suffix = ` (found ${data.found})`;
    let reason = data.message.startsWith(prefix) ? data.message.slice(prefix.length) : data.message;
    if (reason.endsWith(suffix)) reason = reason.slice(0, -suffix.length);
    return new UnsupportedFormatError(data.path, data.found, reason);
  }
  return Object.assign(new Error(data.message), { name: data.name });
}

/**
 * How to start the worker. Built (`dist/`), it is `compact-worker.js`. Run from source
 * through tsx (this file is `.ts`), a Worker cannot start from a `.ts` file even with
 * `execArgv: ['--import', 'tsx']` on Node 20 (the entry is resolved before the loader is
 * registered), so the worker starts from a one-line script that imports tsx's ESM API,
 * registers its loader, then imports `compact-worker.ts`.
 */
function workerEntry(): { readonly entry: string | URL; readonly eval: boolean } {
  if (!import.meta.url.endsWith('.ts')) return { entry: new URL('./compact-worker.js', import.meta.url), eval: false };
  const script = new URL('./compact-worker.ts', import.meta.url);
  tsxApi ??= findTsxApi();
  if (tsxApi === null) return { entry: script, eval: false }; // another TypeScript loader, or a Node that strips types
  const code = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(script.href)}); });`;
  return { entry: code, eval: true };
}

let tsxApi: string | null | undefined;

/**
 * The URL of tsx's ESM API (`tsx/esm/api`, import condition), or `null`. Found through
 * tsx's package.json with require: under tsx this module may itself have been loaded as
 * CommonJS (mocha require()s spec files first), where import.meta has no resolve(); and
 * the CommonJS build of that API cannot register from a worker.
 */
function findTsxApi(): string | null {
  try {
    const manifest = createRequire(import.meta.url).resolve('tsx/package.json');
    const exported = (JSON.parse(readFileSync(manifest, 'utf8')) as { exports?: Record<string, unknown> }).exports?.['./esm/api'];
    const target = (exported as { import?: { default?: unknown } | string } | undefined)?.import;
    const file = typeof target === 'string' ? target : target?.default;
    return typeof file === 'string' ? pathToFileURL(path.join(path.dirname(manifest), file)).href : null;
  } catch {
    return null;
  }
}

type WorkerMessage =
  | { readonly type: 'chunk'; readonly chunk: CompactedChunk }
  | { readonly type: 'done'; readonly output: CompactionOutput }
  | { readonly type: 'error'; readonly error: ErrorData };

/**
 * Runs {@link compactFiles} in a new Worker. The worker is unref'd (it does not keep the
 * process alive) and terminated when `signal` aborts.
 *
 * From source, the worker is started through tsx (see `workerEntry`).
 */
export function runInWorker(job: CompactionJob, onChunk: (chunk: CompactedChunk) => void, signal: AbortSignal): Promise<CompactionOutput> {
  return new Promise<CompactionOutput>((resolve, reject) => {
    signal.throwIfAborted();
    const { entry, eval: isCode } = workerEntry();
    const worker = new Worker(entry, { workerData: job, eval: isCode });
    worker.unref();
    let settled = false;
    const finish = (action: () => void): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', abort);
      action();
    };
    const abort = (): void => {
      finish(() => reject(signal.reason));
      void worker.terminate();
    };
    signal.addEventListener('abort', abort, { once: true });
    worker.on('message', (message: WorkerMessage) => {
      if (settled) return;
      if (message.type === 'chunk') onChunk(message.chunk);
      else if (message.type === 'done') finish(() => resolve(message.output));
      else finish(() => reject(reviveError(message.error)));
    });
    worker.on('error', (error) => finish(() => reject(error)));
    worker.on('exit', (code) => finish(() => reject(new Error(`the compaction worker exited with code ${code} before finishing`))));
  });
}
