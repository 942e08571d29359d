import test from 'ava';
import fc from 'fast-check';
import { canonicalJson } from '../../engine/json.ts';
import { frame, FrameReader, WireError } from './framing.ts';
import { decodeFrame, encodeFrame, type Frame } from './wire.ts';

const u64 = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const envelope = fc.record(
  {
    doc: fc.string(),
    docType: fc.constantFrom('chat', 'counter'),
    seq: u64,
    timestamp: fc.integer({ min: 0, max: 2 ** 48 }),
    viewer: fc.string(),
    channel: fc.string(),
    payloadJson: fc.json(),
    clientId: fc.string(),
    clientSeq: u64,
    entropy: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  },
  { requiredKeys: ['doc', 'docType', 'seq', 'timestamp', 'viewer', 'channel', 'payloadJson', 'clientId', 'clientSeq'] },
);
const delta = fc.record({
  doc: fc.string(),
  seq: u64,
  redoJson: fc.json(),
  undoJson: fc.json(),
  outcomeJson: fc.json(),
  clientId: fc.string(),
  clientSeq: u64,
  timestamp: fc.integer({ min: 0, max: 2 ** 48 }),
});
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc
    .record({
      cluster: fc.string(),
      node: fc.string(),
      epoch: u64,
      role: fc.constantFrom('peer' as const, 'client' as const, 'admin' as const, 'listener' as const),
      nonce: fc.uint8Array({ maxLength: 16 }),
      mac: fc.uint8Array({ maxLength: 32 }),
    })
    .map((hello) => ({ kind: 'hello' as const, hello })),
  fc.record({ chain: fc.string(), epoch: u64, envelopes: fc.array(envelope, { maxLength: 4 }) }).map((forward) => ({ kind: 'forward' as const, forward })),
  fc
    .record({
      chain: fc.string(),
      epoch: u64,
      deltas: fc.array(delta, { maxLength: 4 }),
    })
    .map((back) => ({ kind: 'back' as const, back })),
  fc
    .record({
      chain: fc.string(),
      epoch: u64,
      docs: fc.array(
        fc.record({
          doc: fc.string(),
          docType: fc.string(),
          snapshotSeq: u64,
          snapshotJson: fc.json(),
          dedupeJson: fc.json(),
          deltas: fc.array(delta, { maxLength: 2 }),
          entropy: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        }),
        { maxLength: 3 },
      ),
    })
    .map((catchup) => ({ kind: 'catchup' as const, catchup })),
  fc
    .record({ code: fc.string(), message: fc.string(), retryable: fc.boolean(), fatal: fc.boolean(), requestId: u64, epoch: u64, hint: fc.string() })
    .map((failure) => ({ kind: 'failure' as const, failure })),
  fc
    .record({ chain: fc.string(), epoch: u64, applied: fc.array(fc.record({ doc: fc.string(), docType: fc.string(), seq: u64, lastSeq: u64 }), { maxLength: 4 }), more: fc.boolean() })
    .map((attach) => ({ kind: 'attach' as const, attach })),
  fc.record({ chain: fc.string(), epoch: u64, round: u64 }).map((lease) => ({ kind: 'lease' as const, lease })),
  fc
    .record({
      requestId: u64,
      node: fc.string(),
      chain: fc.string(),
      epoch: u64,
      role: fc.string(),
      members: fc.array(fc.record({ node: fc.string(), address: fc.string(), sinceEpoch: u64 }), { maxLength: 3 }),
      ready: fc.boolean(),
      caughtUpEpoch: u64,
    })
    .map((chainInfo) => ({ kind: 'chainInfo' as const, chainInfo })),
);

/** Comparable text: byte arrays as number arrays, object keys sorted. */
const normalize = (value: unknown): string => canonicalJson(JSON.parse(JSON.stringify(value, (_k, v) => (v instanceof Uint8Array || (v && v.type === 'Buffer') ? [...(v.data ?? v)] : v))));

test('frames survive encoding, length-prefixing and arbitrary chunking', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => frame(encodeFrame(f))));
        const reader = new FrameReader();
        const received: Frame[] = [];
        let offset = 0;
        for (let i = 0; offset < stream.length; i++) {
          const size = cuts[i % cuts.length] as number;
          for (const body of reader.push(stream.subarray(offset, offset + size))) received.push(decodeFrame(body));
          offset += size;
        }
        reader.end();
        return normalize(received) === normalize(frames);
      }),
    ),
  );
});

test('an oversized frame is refused as soon as its header arrives, without buffering it', (t) => {
  const reader = new FrameReader(1024);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1025);
  const error = t.throws(() => reader.push(header), { instanceOf: WireError });
  t.is(error.code, 'frame_too_large');
  t.regex(error.message, /1025-byte frame; frameBytesMax is 1024/);
  t.throws(() => frame(new Uint8Array(2000), 1024), { instanceOf: WireError, message: /frame_too_large/ });
});

test('a stream that ends inside a frame is a truncated_frame error', (t) => {
  const bytes = frame(encodeFrame({ kind: 'failure', failure: { code: 'busy', message: 'm', retryable: true, fatal: false, requestId: 0, epoch: 0, hint: '' } }));
  const reader = new FrameReader();
  t.deepEqual(reader.push(bytes.subarray(0, bytes.length - 1)), []);
  t.is(t.throws(() => reader.end(), { instanceOf: WireError }).code, 'truncated_frame');
});

test('garbage decodes to a typed malformed_frame error or a frame, never another exception', (t) => {
  let malformed = 0;
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeFrame(bytes);
        } catch (error) {
          if (!(error instanceof WireError) || error.code !== 'malformed_frame') return false;
          malformed++;
        }
        return true;
      }),
      { numRuns: 500 },
    ),
  );
  t.true(malformed > 0);
  t.is(t.throws(() => decodeFrame(Buffer.from('GET / HTTP/1.1\r\n')), { instanceOf: WireError }).code, 'malformed_frame');
  t.is(t.throws(() => decodeFrame(new Uint8Array()), { instanceOf: WireError }).message, 'malformed_frame: the frame has no body');
});

test('the entropy travels only where it is set: an envelope without one decodes without the field (and costs no bytes)', (t) => {
  const base = { doc: 'd', docType: 'counter', seq: 2, timestamp: 1, viewer: 'v', channel: 'add', payloadJson: '{}', clientId: 'c', clientSeq: 2 };
  const entropy = new Uint8Array(32).map((_, i) => i + 1);
  const plain = encodeFrame({ kind: 'forward', forward: { chain: 'c1', epoch: 1, envelopes: [base] } });
  const creating = encodeFrame({ kind: 'forward', forward: { chain: 'c1', epoch: 1, envelopes: [{ ...base, seq: 1, entropy }] } });
  t.is(creating.length - plain.length, 2 + 32, 'the entropy costs its field header and 32 bytes, on seq 1 only');
  const decodedPlain = decodeFrame(plain);
  const decodedCreating = decodeFrame(creating);
  if (decodedPlain.kind !== 'forward' || decodedCreating.kind !== 'forward') return t.fail('not a forward');
  t.false('entropy' in (decodedPlain.forward.envelopes[0] ?? {}), 'an absent entropy decodes as a field (it would be stored with every queued envelope)');
  t.deepEqual([...(decodedCreating.forward.envelopes[0]?.entropy ?? [])], [...entropy]);
});
