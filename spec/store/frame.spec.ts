import { expect } from 'chai';
import v8 from 'node:v8';
import { crc32 } from 'node:zlib';
import { jsonCodec, MAX_NESTING, v8Codec } from '../../lib/codec/index.js';
import type { Codec } from '../../lib/codec/types.js';
import { CorruptFileError, InvalidContentsError, InvalidOptionError, UnserializableError, UnsupportedFormatError } from '../../lib/errors.js';
import {
  bytesReader,
  decodeFrame,
  encodeFrame,
  encodeFrameToBytes,
  FRAME_MAGIC,
  readFrameHeader,
  type FrameReader,
} from '../../lib/store/frame.js';
import type { StoredEntry } from '../../lib/store/types.js';
import { contextWith, FIXED_NOW, rejectionOf } from './conformance.js';

const ctx = contextWith(v8Codec);
const entries = (count: number): StoredEntry[] => Array.from({ length: count }, (_, i): StoredEntry => [`k${i}`, { i }, i]);

/** Builds a version-1 frame by hand, with correct checksums, from a header and payloads. */
function handMadeFrame(header: object, payloads: Uint8Array[], entryCount: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(16);
  Buffer.from(FRAME_MAGIC).copy(prefix);
  prefix.writeUInt16BE(1, 8);
  prefix.writeUInt32BE(json.length, 12);
  const parts: Buffer[] = [prefix, json];
  for (const payload of payloads) {
    const chunkHeader = Buffer.alloc(8);
    chunkHeader.writeUInt32BE(payload.length, 0);
    chunkHeader.writeUInt32BE(crc32(payload), 4);
    parts.push(chunkHeader, Buffer.from(payload));
  }
  const trailer = Buffer.alloc(20);
  trailer.writeUInt32BE(0xffffffff, 0);
  trailer.writeUInt32BE(payloads.length, 4);
  trailer.writeBigUInt64BE(BigInt(entryCount), 8);
  parts.push(trailer);
  const frame = Buffer.concat(parts);
  frame.writeUInt32BE(crc32(frame.subarray(0, frame.length - 4)), frame.length - 4);
  return frame;
}

const goodHeader = { codec: 'v8', cache: 'c', savedAt: FIXED_NOW, node: process.version, v8: process.versions.v8 };

/** A reader that records the largest read, to prove no length field drives an allocation. */
function recordingReader(bytes: Uint8Array): FrameReader & { largest: number } {
  const inner = bytesReader(bytes);
  const reader = {
    size: inner.size,
    stable: true,
    largest: 0,
    read(offset: number, length: number): Promise<Uint8Array> {
      reader.largest = Math.max(reader.largest, length);
      return inner.read(offset, length);
    },
  };
  return reader;
}

describe('frame', function () {
  describe('encodeFrame()', function () {
    it('lays out magic, version, header, chunks and a trailer with counts and crc32', function () {
      const { bytes, summary } = encodeFrameToBytes('users', entries(10), ctx, { chunkEntries: 4 });
      const buffer = Buffer.from(bytes);
      expect(buffer.subarray(0, 8).toString('latin1')).to.equal('CGRAPH\r\n');
      expect(buffer.readUInt16BE(8)).to.equal(1);
      expect(buffer.readUInt16BE(10)).to.equal(0);
      const headerLength = buffer.readUInt32BE(12);
      expect(JSON.parse(buffer.subarray(16, 16 + headerLength).toString('utf8'))).to.deep.equal({
        codec: 'v8',
        cache: 'users',
        savedAt: FIXED_NOW,
        node: process.version,
        v8: process.versions.v8,
      });
      // Chunks of 4, 4 and 2 entries.
      let offset = 16 + headerLength;
      const chunkSizes: number[] = [];
      while (buffer.readUInt32BE(offset) !== 0xffffffff) {
        const length = buffer.readUInt32BE(offset);
        const payload = buffer.subarray(offset + 8, offset + 8 + length);
        expect(buffer.readUInt32BE(offset + 4)).to.equal(crc32(payload));
        chunkSizes.push((v8.deserialize(payload) as unknown[]).length);
        offset += 8 + length;
      }
      expect(chunkSizes).to.deep.equal([4, 4, 2]);
      expect(offset).to.equal(buffer.length - 20);
      expect(buffer.readUInt32BE(offset + 4)).to.equal(3);
      expect(buffer.readBigUInt64BE(offset + 8)).to.equal(10n);
      expect(buffer.readUInt32BE(offset + 16)).to.equal(crc32(buffer.subarray(0, buffer.length - 4)));
      expect(summary).to.deep.equal({ entries: 10, chunks: 3, bytes: buffer.length });
    });

    it('yields pieces that concatenate to the frame, and returns a summary', function () {
      const frame = encodeFrame('users', entries(5), ctx, { chunkEntries: 2 });
      const pieces: Uint8Array[] = [];
      let step = frame.next();
      while (step.done !== true) {
        pieces.push(step.value);
        step = frame.next();
      }
      expect(pieces.length).to.be.greaterThan(5);
      expect(Buffer.concat(pieces).length).to.equal(step.value.bytes);
      expect(step.value.entries).to.equal(5);
    });

    it('writes an empty cache as a frame without chunks', async function () {
      const { bytes, summary } = encodeFrameToBytes('empty', [], ctx);
      expect(summary.chunks).to.equal(0);
      expect((await decodeFrame(bytes, 'mem', { codec: v8Codec })).entries).to.deep.equal([]);
    });

    it('puts fewer entries in a chunk after a large one, and more again after small ones', async function () {
      const list: StoredEntry[] = [
        ...entries(3),
        ['big1', 'x'.repeat(5000), 0],
        ['big2', 'y'.repeat(5000), 0],
        ['big3', 'z'.repeat(5000), 0],
        ...entries(20),
      ];
      const { bytes, summary } = encodeFrameToBytes('adaptive', list, ctx, { chunkEntries: 4, chunkBytes: 1000 });
      expect(summary.chunks).to.be.greaterThan(list.length / 4);
      expect((await decodeFrame(bytes, 'mem', { codec: v8Codec })).entries).to.deep.equal(list);
    });

    it('splits a batch the codec cannot encode in one piece (a RangeError), keeping order', async function () {
      const picky: Codec = {
        name: 'v8',
        encode(value) {
          if ((value as unknown[]).length > 2) throw new RangeError('Array buffer allocation failed');
          return v8.serialize(value);
        },
        decode: (bytes) => v8.deserialize(bytes),
      };
      const list = entries(11);
      const { bytes, summary } = encodeFrameToBytes('split', list, contextWith(picky));
      expect(summary.chunks).to.be.at.least(6);
      expect((await decodeFrame(bytes, 'mem', { codec: v8Codec })).entries).to.deep.equal(list);
    });

    it('throws UnserializableError naming the key and path of the entry the codec refuses', function () {
      const list: StoredEntry[] = [...entries(50), ['culprit', { nested: [1, () => 2] }, 0], ...entries(50)];
      const attempt = (): unknown => encodeFrameToBytes('cache', list, ctx);
      expect(attempt).to.throw(UnserializableError).that.includes({ key: 'culprit', path: '.nested[1]', cacheName: 'cache' });
    });

    it('names the key itself when the key is what cannot be encoded', function () {
      const attempt = (): unknown => encodeFrameToBytes('cache', [[Symbol('k'), 1, 0]], ctx);
      expect(attempt).to.throw(UnserializableError).with.property('path', '(key)');
    });

    it('falls back to the encoder\'s message for a codec without check()', function () {
      const bare: Codec = { name: 'bare', encode: (value) => v8.serialize(value), decode: (b) => v8.deserialize(b) };
      const attempt = (): unknown => encodeFrameToBytes('cache', [['k', () => 1, 0]], contextWith(bare));
      expect(attempt).to.throw(UnserializableError, /could not be cloned/).with.property('path', '');
    });

    it(`round-trips a value nested ${MAX_NESTING} deep, which check() accepts, with both codecs`, async function () {
      const deep: Record<string, unknown> = {};
      let node = deep;
      for (let i = 1; i < MAX_NESTING; i++) node = (node['next'] = {}) as Record<string, unknown>;
      for (const codec of [v8Codec, jsonCodec]) {
        expect(codec.check?.(deep)).to.equal(undefined);
        const { bytes } = encodeFrameToBytes('deep', [['k', deep, 0]], contextWith(codec));
        expect((await decodeFrame(bytes, 'mem', { codec })).entries).to.deep.equal([['k', deep, 0]]);
      }
    });

    it('refuses a clock that returns something other than a finite number', function () {
      const attempt = (): unknown => encodeFrameToBytes('cache', [], contextWith(v8Codec, NaN));
      expect(attempt).to.throw(InvalidOptionError).with.property('option', 'clock');
    });

    it('refuses entries that are not [key, value, expiresAt] triples', function () {
      const bad = [['k', 1], ['k', 1, 'soon'], ['k', 1, NaN], 'k'];
      for (const entry of bad) {
        expect(() => encodeFrameToBytes('cache', [entry as never], ctx), JSON.stringify(entry)).to.throw(InvalidContentsError);
      }
    });
  });

  describe('decodeFrame()', function () {
    const list = entries(10);
    const good = Buffer.from(encodeFrameToBytes('c', list, ctx, { chunkEntries: 3 }).bytes);

    it('round-trips entries and reports header and size', async function () {
      const frame = await decodeFrame(good, 'mem:c', { codec: v8Codec, cacheName: 'c' });
      expect(frame.entries).to.deep.equal(list);
      expect(frame.header).to.include({ version: 1, codec: 'v8', cache: 'c', savedAt: FIXED_NOW });
      expect(frame.bytes).to.equal(good.length);
    });

    it('rejects every truncation, at every length, with a CorruptFileError and an offset', async function () {
      for (let length = 0; length < good.length; length++) {
        const error = await rejectionOf(decodeFrame(good.subarray(0, length), 'mem:c', { codec: v8Codec }));
        expect(error, `cut at ${length}`).to.be.instanceOf(CorruptFileError);
        expect((error as CorruptFileError).offset, `cut at ${length}`).to.be.a('number');
        expect((error as CorruptFileError).path).to.equal('mem:c');
      }
    });

    it('detects every single-byte change at every position, and never reads past the end', async function () {
      for (let position = 0; position < good.length; position++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const damaged = Buffer.from(good);
          damaged[position] = (damaged[position] as number) ^ mask;
          const reader = recordingReader(damaged);
          const error = await rejectionOf(decodeFrame(reader, 'mem:c', { codec: v8Codec }));
          expect(error, `byte ${position} ^ ${mask}`).to.satisfy(
            (e: unknown) => e instanceof CorruptFileError || e instanceof UnsupportedFormatError,
          );
          expect(reader.largest).to.be.at.most(damaged.length);
        }
      }
    });

    it('does not allocate what a damaged length field asks for', async function () {
      const damaged = Buffer.from(good);
      const firstChunk = 16 + damaged.readUInt32BE(12);
      damaged.writeUInt32BE(0xfffffff0, firstChunk);
      const reader = recordingReader(damaged);
      const error = await rejectionOf(decodeFrame(reader, 'mem:c', { codec: v8Codec }));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('offset', firstChunk);
      expect(reader.largest).to.be.lessThan(100);

      const hugeHeader = Buffer.from(good);
      hugeHeader.writeUInt32BE(0x7fffffff, 12);
      const headerReader = recordingReader(hugeHeader);
      expect(await rejectionOf(decodeFrame(headerReader, 'mem:c', { codec: v8Codec }))).to.be.instanceOf(CorruptFileError);
      expect(headerReader.largest).to.be.at.most(16);
    });

    it('rejects bytes appended after the trailer', async function () {
      const error = await rejectionOf(decodeFrame(Buffer.concat([good, Buffer.from('extra')]), 'mem:c', { codec: v8Codec }));
      expect(error).to.be.instanceOf(CorruptFileError);
    });

    it('rejects wrong magic as not a cachegraph file', async function () {
      const error = await rejectionOf(decodeFrame(Buffer.from('{"json": "not a frame at all"}'), 'f.cgc', { codec: v8Codec }));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('offset', 0);
      expect(error.message).to.include('not a cachegraph file').and.include('f.cgc');
    });

    it('rejects a newer major version, and accepts a newer minor version', async function () {
      const major = Buffer.from(good);
      major.writeUInt16BE(7, 8);
      const error = await rejectionOf(decodeFrame(major, 'f.cgc', { codec: v8Codec }));
      expect(error).to.be.instanceOf(UnsupportedFormatError).that.includes({ path: 'f.cgc', found: 'format version 7' });

      const minor = Buffer.from(good);
      minor.writeUInt16BE(3, 10);
      minor.writeUInt32BE(crc32(minor.subarray(0, minor.length - 4)), minor.length - 4);
      expect((await decodeFrame(minor, 'f.cgc', { codec: v8Codec })).entries).to.deep.equal(list);
    });

    it('rejects a frame of another cache when the expected cache is given', async function () {
      const error = await rejectionOf(decodeFrame(good, 'f.cgc', { codec: v8Codec, cacheName: 'd' }));
      expect(error).to.be.instanceOf(CorruptFileError).with.property('cacheName', 'd');
    });

    it('decodes with the codec named in the header', async function () {
      const json = encodeFrameToBytes('c', [['k', [1], 0]], contextWith(jsonCodec)).bytes;
      expect((await decodeFrame(json, 'm', { codec: v8Codec })).entries).to.deep.equal([['k', [1], 0]]);
      const impostor: Codec = { name: 'json', encode: () => new Uint8Array(), decode: () => [['from', 'impostor', 0]] };
      expect((await decodeFrame(json, 'm', { codec: impostor })).entries).to.deep.equal([['from', 'impostor', 0]]);
    });

    it('rejects an unknown codec with UnsupportedFormatError', async function () {
      const frame = handMadeFrame({ ...goodHeader, codec: 'msgpack' }, [], 0);
      const error = await rejectionOf(decodeFrame(frame, 'f.cgc', { codec: v8Codec }));
      expect(error).to.be.instanceOf(UnsupportedFormatError).with.property('found', 'codec msgpack');
      expect(error.message).to.include('written with codec "msgpack" which this process does not have');
    });

    it('reports v8 data from a newer Node as unsupported, and from this Node as corrupt', async function () {
      const garbage = Uint8Array.of(0xff, 0x0f, 0x99, 0x99);
      const newer = handMadeFrame({ ...goodHeader, v8: '999.1.0', node: 'v999.0.0' }, [garbage], 1);
      expect(await rejectionOf(decodeFrame(newer, 'f', { codec: v8Codec }))).to.be.instanceOf(UnsupportedFormatError).with.property('found', 'v8 999.1.0');
      const same = handMadeFrame(goodHeader, [garbage], 1);
      const error = await rejectionOf(decodeFrame(same, 'f', { codec: v8Codec }));
      expect(error).to.be.instanceOf(CorruptFileError);
      expect(error.cause).to.be.instanceOf(Error);
    });

    it('rejects verified chunks that do not hold entries, or hold a different count', async function () {
      const cases: [string, Buffer][] = [
        ['not a list', handMadeFrame(goodHeader, [v8.serialize({ a: 1 })], 1)],
        ['not triples', handMadeFrame(goodHeader, [v8.serialize([['k', 1]])], 1)],
        ['expiresAt not a number', handMadeFrame(goodHeader, [v8.serialize([['k', 1, 'x']])], 1)],
        ['wrong count', handMadeFrame(goodHeader, [v8.serialize([['k', 1, 0]])], 2)],
        ['bad header', handMadeFrame({ codec: 'v8' }, [], 0)],
      ];
      for (const [label, frame] of cases) {
        expect(await rejectionOf(decodeFrame(frame, 'f', { codec: v8Codec })), label).to.be.instanceOf(CorruptFileError);
      }
      expect((await decodeFrame(handMadeFrame(goodHeader, [v8.serialize([['k', 1, 0]])], 1), 'f', { codec: v8Codec })).entries).to.deep.equal([['k', 1, 0]]);
    });

    it('re-checks each chunk handed to the codec when the source may change between reads', async function () {
      // A source that returns damaged bytes the second time a range is read (after the
      // checksum pass), as a file rewritten in place by a stranger would.
      const inner = bytesReader(good);
      const readsOf = new Map<string, number>();
      const changing: FrameReader = {
        size: good.length,
        async read(offset, length) {
          const bytes = Buffer.from(await inner.read(offset, length));
          const range = `${offset}+${length}`;
          const count = (readsOf.get(range) ?? 0) + 1;
          readsOf.set(range, count);
          if (count > 1) bytes[0] = (bytes[0] as number) ^ 1;
          return bytes;
        },
      };
      let decodeCalls = 0;
      const counting: Codec = { ...v8Codec, decode: (bytes) => ((decodeCalls += 1), v8Codec.decode(bytes)) };
      const error = await rejectionOf(decodeFrame(changing, 'f', { codec: counting }));
      expect(error).to.be.instanceOf(CorruptFileError);
      expect(error.message).to.include('changed while being read');
      expect(decodeCalls).to.equal(0);
    });
  });

  describe('readFrameHeader()', function () {
    it('reads the header without decoding the chunks', async function () {
      const { bytes } = encodeFrameToBytes('users', entries(3), contextWith(jsonCodec, 42));
      expect(await readFrameHeader(bytes, 'm')).to.include({ codec: 'json', cache: 'users', savedAt: 42 });
    });

    it('rejects what is not a frame', async function () {
      expect(await rejectionOf(readFrameHeader(Buffer.from('hello'), 'm'))).to.be.instanceOf(CorruptFileError);
    });
  });
});
