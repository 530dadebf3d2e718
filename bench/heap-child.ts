// One heap measurement, in a process of its own (see heap.ts). Run with --expose-gc:
//   node --expose-gc --import tsx bench/heap-child.ts '<implementation>' <entries> <string|integer>
// Prints a HeapSample as JSON on stdout.
import { dataset, type KeyKind } from './data.js';
import { HEAP_SUBJECTS, type HeapSample } from './heap.js';
import { check, fill, sample } from './subjects.js';

const [name, entriesArg, kindArg] = process.argv.slice(2);
const subject = HEAP_SUBJECTS.find((s) => s.name === name);
const gc = globalThis.gc;
if (subject === undefined || gc === undefined) throw new Error('usage: node --expose-gc --import tsx bench/heap-child.ts <implementation> <entries> <string|integer>');

/** Several full GCs: weak references and finalizers need more than one to settle. */
function settledMemory(): NodeJS.MemoryUsage {
  for (let i = 0; i < 4; i++) gc?.();
  return process.memoryUsage();
}

const entries = Number(entriesArg);
const data = dataset(entries, kindArg as KeyKind);
const before = settledMemory();
const instance = await subject.open(entries, false);
await fill(subject, instance.cache, data);
await instance.settle();
const after = settledMemory();
const problem = await check(instance.cache, data, sample(entries));
const result: HeapSample = { heapBytes: after.heapUsed - before.heapUsed, externalBytes: after.external - before.external, ...(problem === undefined ? {} : { problem }) };
process.stdout.write(`${JSON.stringify(result)}\n`);
await instance.close();
