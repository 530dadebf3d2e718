/**
 * Entry point of the compaction Worker: runs one job (`workerData`, a
 * {@link CompactionJob}) and reports each chunk, then `done` or `error`, to its parent.
 * Only built-in codecs exist here; FileStore compacts in its own thread otherwise.
 *
 * @module
 */

import { parentPort, workerData } from 'node:worker_threads';
import { builtinCodecs, compactFiles, describeError, type CompactionJob } from './compact.js';

const port = parentPort;
if (port === null) throw new Error('compact-worker.ts runs only as a worker thread');
const job = workerData as CompactionJob;

try {
  const output = await compactFiles(job, builtinCodecs(job), (chunk) => port.postMessage({ type: 'chunk', chunk }));
  port.postMessage({ type: 'done', output });
} catch (error) {
  port.postMessage({ type: 'error', error: describeError(error) });
}
