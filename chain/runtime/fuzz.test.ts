// Issue 15: fuzz tests of a real node process over its documented wire, with fast-check:
// bytes before the handshake, bytes and frames after it (as an authenticated client), and
// gossip datagrams. After every run the process lives; every few runs a legitimate client
// commits; at the end the committed data is what the legitimate clients wrote, nothing else.

import test from 'ava';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { commit, committed, rawClient, sleep, startTestNode, testCluster, type TestNode } from '../tools/test-node.ts';
import { deriveKeyring } from './credentials.ts';
import { frame } from './framing.ts';
import { encodeFrame, encodeGossip, type Frame } from './wire.ts';

const runs = Number(process.env.ADAMA_FUZZ_RUNS ?? 60);
const seed = Number(process.env.ADAMA_FUZZ_SEED ?? 15);

/** The checks between runs: alive always, a commit every `every` runs. */
function checker(t: import('ava').ExecutionContext, node: TestNode, every = 10) {
  let run = 0;
  let commits = 0;
  return {
    async after(): Promise<void> {
      run++;
      if (!node.alive()) throw new Error(`the node died at run ${run}: ${node.logs.slice(-5).join(' | ')}`);
      if (run % every === 0) {
        commits++;
        const seq = await commit(node, 'probe', 'prober', commits);
        if (seq !== commits) throw new Error(`a legitimate commit got seq ${seq}, not ${commits}`);
      }
    },
    async end(victim: unknown): Promise<void> {
      commits++;
      t.is(await commit(node, 'probe', 'prober', commits), commits, 'a legitimate client still commits');
      const docs = await committed(node);
      t.deepEqual(docs.find((d) => d.doc === 'victim')?.state, victim, 'the committed document nobody legitimate touched is unchanged');
      t.deepEqual(docs.map((d) => d.doc).sort(), ['probe', 'victim'], 'no document was created by the fuzz input');
      t.deepEqual((docs.find((d) => d.doc === 'probe')?.state as { contributions?: unknown } | undefined)?.contributions, { prober: commits });
    },
  };
}

async function withNode(t: import('ava').ExecutionContext, options: Parameters<typeof startTestNode>[0], body: (node: TestNode, victim: unknown) => Promise<void>): Promise<void> {
  const node = await startTestNode(options);
  try {
    await commit(node, 'victim', 'owner', 1, 5);
    const victim = (await committed(node)).find((d) => d.doc === 'victim')?.state;
    t.truthy(victim);
    await body(node, victim);
  } finally {
    await node.stop();
  }
}

for (const transport of ['tls', 'plain'] as const) {
  test.serial(`fuzz: arbitrary bytes before the handshake (${transport})`, async (t) => {
    await withNode(t, { transport }, async (node, victim) => {
      const check = checker(t, node);
      const [host, port] = node.address.split(':') as [string, string];
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 8_192 }), fc.constantFrom('end', 'reset', 'wait'), async (bytes, how) => {
          await new Promise<void>((resolve) => {
            const s = net.connect({ host, port: Number(port) });
            s.on('error', () => resolve());
            s.resume(); // read what the node answers, so its close reaches us
            s.once('close', () => resolve());
            s.once('connect', () => {
              s.write(bytes);
              if (how === 'end') s.end();
              else if (how === 'reset') s.resetAndDestroy();
              else setTimeout(() => s.destroy(), 30);
            });
          });
          await check.after();
        }),
        { numRuns: runs, seed },
      );
      await check.end(victim);
    });
  });
}

/** Frames a client may or may not send, with fields of every shape (lone surrogates, huge numbers, other roles' frames). */
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('\ud800', 'victim', 'probe', 'c1', 'counter', '', 'x'.repeat(300)), fc.string({ unit: 'binary', maxLength: 20 }));
const int = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom(0, 1, 2 ** 31, Number.MAX_SAFE_INTEGER));
const frames: fc.Arbitrary<Frame> = fc.oneof(
  fc
    .record({ requestId: int, chain: text, doc: text, docType: text, channel: text, payloadJson: fc.oneof(text, fc.json()), clientId: text, clientSeq: int, viewer: text })
    .map((submit) => ({ kind: 'submit', submit }) as Frame),
  fc.record({ requestId: int, chain: text, doc: text, docType: text, viewer: text }).map((subscribe) => ({ kind: 'subscribe', subscribe }) as Frame),
  fc.record({ requestId: int, doc: text }).map((unsubscribe) => ({ kind: 'unsubscribe', unsubscribe }) as Frame),
  fc.record({ requestId: int, chain: text }).map((lookup) => ({ kind: 'lookup', lookup }) as Frame),
  fc
    .record({ requestId: int, chain: text, epoch: int, members: fc.array(fc.record({ node: text, address: text, sinceEpoch: int }), { maxLength: 3 }) })
    .map((configure) => ({ kind: 'configure', configure }) as Frame),
  fc.record({ chain: text, epoch: int, applied: fc.constant([]), more: fc.boolean() }).map((attach) => ({ kind: 'attach', attach }) as unknown as Frame),
  fc.record({ requestId: int, includeState: fc.boolean(), includeDigests: fc.boolean(), docsAfter: text, docsMax: int }).map((statusRequest) => ({ kind: 'statusRequest', statusRequest }) as Frame),
);

function encoded(f: Frame): Buffer | undefined {
  try {
    return frame(encodeFrame(f));
  } catch {
    return undefined; // not encodable (protobuf refuses the value): not a frame anyone can send
  }
}

test.serial('fuzz: bytes and frames after the handshake, as an authenticated client (tls)', async (t) => {
  await withNode(t, {}, async (node, victim) => {
    const check = checker(t, node);
    const input = fc.oneof(
      fc.array(frames, { minLength: 1, maxLength: 6 }).map((fs) => Buffer.concat(fs.map(encoded).filter((b): b is Buffer => b !== undefined))),
      fc.uint8Array({ maxLength: 4_096 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 512 }).map((b) => frame(b)),
    );
    await fc.assert(
      fc.asyncProperty(input, async (bytes) => {
        const raw = await rawClient(node, 'fuzz');
        raw.socket.write(bytes);
        await Promise.race([raw.closed, sleep(50)]);
        raw.socket.destroy();
        await check.after();
      }),
      { numRuns: runs * 2, seed },
    );
    await check.end(victim);
  });
});

test.serial('fuzz: gossip datagrams, forged and signed with the gossip key', async (t) => {
  await withNode(t, { gossip: true }, async (node, victim) => {
    const check = checker(t, node, 20);
    const gossipKey = deriveKeyring(node.secret, testCluster).gossip;
    const [host, port] = node.address.split(':') as [string, string];
    const socket = dgram.createSocket('udp4');
    socket.on('error', () => {});
    const member = fc.record({ node: text, address: text, state: fc.constantFrom('alive', 'suspect', 'dead', 'zombie'), incarnation: int });
    const message = fc.record({ kind: fc.constantFrom('ping', 'ack', 'ping-req', 'pong'), from: text, fromAddress: text, seq: int, target: text, updates: fc.array(member, { maxLength: 12 }) });
    const datagram = fc.oneof(
      fc.uint8Array({ maxLength: 9_000 }).map((b) => Buffer.from(b)),
      message.map((m) => {
        try {
          return encodeGossip(testCluster, gossipKey, m as Parameters<typeof encodeGossip>[2]);
        } catch {
          return randomBytes(16);
        }
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(datagram, { minLength: 1, maxLength: 8 }), async (datagrams) => {
        for (const d of datagrams) socket.send(d, Number(port), host);
        await sleep(5);
        await check.after();
      }),
      { numRuns: runs * 4, seed },
    );
    socket.close();
    await check.end(victim);
  });
});
