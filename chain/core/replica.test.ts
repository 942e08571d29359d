// The replica state machine driven directly, without sockets or disks: frames are handed from
// one replica to the next and every batch becomes durable when the driver says so. This tests
// the protocol logic in isolation; cluster.test.ts runs the same code as real processes.

import test from 'ava';
import { cardTable, type CardTableState } from '../../engine/documents/card-table.ts';
import { execute } from '../../engine/execute.ts';
import { canonicalJson, type JsonObject } from '../../engine/json.ts';
import type { ChainConfig } from './config.ts';
import type { Frame, Member, WireEnvelope } from './frames.ts';
import { noBugs, type Bugs } from './planted.ts';
import { Replica, type ClientRef, type ReplicaLimits } from './replica.ts';
import { CorruptStore, keys, OldStore, Recovery, type Batch, type RecoveredChain } from './store.ts';

/** What a store holds after `batches` were written in order (the durable ones). */
function storeAfter(batches: readonly Batch[]): Map<string, RecoveredChain> {
  const store = new Map<string, string>();
  for (const batch of batches) for (const op of batch.ops) op.type === 'put' ? store.set(op.key, op.value) : store.delete(op.key);
  const recovery = new Recovery();
  for (const key of [...store.keys()].sort()) recovery.add(key, store.get(key) as string);
  return recovery.finish();
}

const replica = (node: string, limits: Partial<ReplicaLimits> = {}, recovered?: RecoveredChain, bugs: Bugs = noBugs): Replica => new Replica(node, 'c1', recovered, { limits, now: 1_000, bugs });
const fullStatus = { includeState: true, includeDigests: true, docsMax: 1_000 };

interface Sent {
  to: ClientRef;
  frame: Frame;
}

class Bench {
  readonly replicas = new Map<string, Replica>();
  readonly clientFrames: Sent[] = [];
  readonly batches = new Map<string, Batch[]>();
  /** Every frame pump delivered between replicas, as `from>to:kind`. */
  readonly delivered: string[] = [];
  /** Links that are "up": pred node -> succ node. */
  private links = new Set<string>();
  config: ChainConfig = { chain: 'c1', epoch: 0, members: [] };
  now = 1_000;

  constructor(nodes: string[]) {
    for (const node of nodes) this.replicas.set(node, replica(node));
  }

  replica(node: string): Replica {
    return this.replicas.get(node) as Replica;
  }

  configure(nodes: string[], joinedAt: Record<string, number> = {}): void {
    const epoch = this.config.epoch + 1;
    const members: Member[] = nodes.map((node) => ({
      node,
      address: `${node}:1`,
      sinceEpoch: joinedAt[node] ?? this.config.members.find((m) => m.node === node)?.sinceEpoch ?? epoch,
    }));
    this.config = { chain: 'c1', epoch, members };
    for (const node of nodes) this.replica(node).configure(this.config, this.now);
    const before = this.links;
    this.links = new Set();
    for (const node of nodes) {
      const r = this.replica(node);
      if (r.successor !== undefined) {
        const link = `${node}>${r.successor.node}`;
        this.links.add(link);
        // A link that stays up carries the new epoch's Attach already (configure sent it).
        if (!before.has(link)) r.linkUp(this.now);
      }
    }
  }

  /** Delivers frames and completes writes until nothing moves. */
  pump(options: { durable?: boolean; until?: () => boolean } = {}): void {
    for (let round = 0; round < 10_000; round++) {
      let moved = false;
      for (const [node, r] of this.replicas) {
        if (options.until?.() === true) return;
        if (options.durable !== false) {
          for (let batch = r.takeBatch(); batch !== undefined; batch = r.takeBatch()) {
            this.batches.set(node, [...(this.batches.get(node) ?? []), batch]);
            r.durable(batch.id);
            moved = true;
          }
        }
        const out = r.drain();
        for (const c of out.clients) this.clientFrames.push(c);
        const succ = r.successor?.node;
        if (succ !== undefined && this.links.has(`${node}>${succ}`)) {
          for (const frame of out.succ) {
            moved = true;
            this.delivered.push(`${node}>${succ}:${frame.kind}`);
            const rejection = this.replica(succ).fromPred(frame, node, this.now);
            if (rejection !== undefined) throw new Error(`${succ} rejected ${frame.kind} from ${node}: ${rejection.code} ${rejection.message}`);
          }
        }
        const pred = r.predecessor?.node;
        if (pred !== undefined && this.links.has(`${pred}>${node}`)) {
          for (const frame of out.pred) {
            moved = true;
            this.delivered.push(`${node}>${pred}:${frame.kind}`);
            const rejection = this.replica(pred).fromSucc(frame, node, this.now);
            if (rejection !== undefined) throw new Error(`${pred} rejected ${frame.kind} from ${node}: ${rejection.code} ${rejection.message}`);
          }
        }
      }
      if (!moved) return;
    }
    throw new Error('pump: no quiescence');
  }

  submit(node: string, requestId: number, doc: string, by: number, clientId = 'client-1', clientSeq = requestId): void {
    this.replica(node).submit(7, { requestId, chain: 'c1', doc, docType: 'counter', channel: 'add', payloadJson: JSON.stringify({ by }), clientId, clientSeq, viewer: 'alice' }, this.now);
  }

  /** A message of any document type (submit sends counter adds). */
  send(node: string, requestId: number, doc: string, docType: string, channel: string, payload: unknown, viewer: string, clientId = viewer, clientSeq = requestId): void {
    this.replica(node).submit(7, { requestId, chain: 'c1', doc, docType, channel, payloadJson: JSON.stringify(payload), clientId, clientSeq, viewer }, this.now);
  }

  acks(): Map<number, { seq: number; duplicate: boolean }> {
    const out = new Map<number, { seq: number; duplicate: boolean }>();
    for (const { frame } of this.clientFrames) if (frame.kind === 'ack') out.set(frame.ack.requestId, { seq: frame.ack.seq, duplicate: frame.ack.duplicate });
    return out;
  }

  failures(): string[] {
    return this.clientFrames.filter((c) => c.frame.kind === 'failure').map((c) => (c.frame.kind === 'failure' ? c.frame.failure.code : ''));
  }

  digests(nodes: string[]): string[] {
    return nodes.map((node) => JSON.stringify((this.replica(node).status(fullStatus) as { docs: { state?: unknown }[] }).docs.map(({ state: _, ...d }) => d)));
  }
}

for (const k of [1, 2, 3]) {
  test(`k=${k}: messages commit, are acknowledged once, and every replica agrees`, (t) => {
    const nodes = ['n1', 'n2', 'n3'].slice(0, k);
    const bench = new Bench(nodes);
    bench.configure(nodes);
    bench.pump();
    t.true(bench.replica('n1').ready);
    for (let i = 1; i <= 20; i++) bench.submit('n1', i, i % 2 === 0 ? 'doc-a' : 'doc-b', i);
    bench.pump();
    const acks = bench.acks();
    t.is(acks.size, 20);
    t.deepEqual(bench.failures(), []);
    const digests = bench.digests(nodes);
    for (const d of digests) t.is(d, digests[0] ?? '');
    const status = bench.replica(nodes[nodes.length - 1] ?? 'n1').status(fullStatus) as { docs: { doc: string; appliedSeq: number; state: { value: number } }[] };
    t.deepEqual(
      status.docs.map((d) => [d.doc, d.appliedSeq, d.state.value]),
      [
        ['doc-a', 10, 110],
        ['doc-b', 10, 100],
      ],
    );
  });
}

test('no acknowledgement before the writes are durable: the head waits for its own queue append', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  bench.submit('n1', 1, 'doc-a', 5);
  bench.pump({ durable: false });
  t.is(bench.acks().size, 0, 'nothing is durable anywhere yet, so nothing is committed');
  bench.pump();
  t.is(bench.acks().size, 1);
});

test('a resend of the same (clientId, clientSeq) is answered from the dedupe table, not applied again', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  bench.submit('n1', 1, 'doc-a', 5, 'client-9', 1);
  bench.submit('n1', 2, 'doc-a', 5, 'client-9', 1); // resend while queued
  bench.pump();
  bench.submit('n1', 3, 'doc-a', 5, 'client-9', 1); // resend after commit
  bench.pump();
  const acks = bench.acks();
  t.deepEqual(
    [acks.get(1), acks.get(2), acks.get(3)],
    [
      { seq: 1, duplicate: false },
      { seq: 1, duplicate: true },
      { seq: 1, duplicate: true },
    ],
  );
  const state = (bench.replica('n3').status(fullStatus) as { docs: { state: { value: number } }[] }).docs[0]?.state;
  t.is(state?.value, 5);
});

test('middle removed: its predecessor resends the queue, nothing acknowledged is lost, and a resend after failover applies once', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  for (let i = 1; i <= 5; i++) bench.submit('n1', i, 'doc-a', 1);
  // Deliver forwards but lose everything n2 would send back: n2 dies with the deltas.
  bench.pump();
  for (let i = 6; i <= 10; i++) bench.submit('n1', i, 'doc-a', 1);
  bench.replica('n2').drain(); // in flight to n3 and back to n1: lost with n2
  bench.configure(['n1', 'n3']);
  bench.pump();
  t.is(bench.acks().size, 10);
  t.deepEqual(bench.digests(['n1'])[0], bench.digests(['n3'])[0]);
  const value = (bench.replica('n1').status(fullStatus) as { docs: { state: { value: number } }[] }).docs[0]?.state.value;
  t.is(value, 10);
  t.deepEqual(bench.failures(), []);
});

test('head removed: the successor takes over from its queue and dedupes resends', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  for (let i = 1; i <= 3; i++) bench.submit('n1', i, 'doc-a', 1, 'client-1', i);
  // n1 forwards, then dies before any ack.
  const out = bench.replica('n1').drain();
  for (const frame of out.succ) t.is(bench.replica('n2').fromPred(frame, 'n1', bench.now), undefined);
  bench.configure(['n2', 'n3']);
  bench.pump();
  // n2 passed on n1's lease rounds: it serves only once the last lease n1 could hold ran out.
  bench.submit('n2', 99, 'doc-a', 1, 'client-1', 1);
  bench.clientFrames.push(...bench.replica('n2').drain().clients);
  t.deepEqual(bench.failures(), ['unavailable']);
  bench.now += 1_100;
  for (const r of bench.replicas.values()) r.tick(bench.now);
  bench.pump();
  // The client resends all three to the new head: each commits exactly once.
  for (let i = 1; i <= 3; i++) bench.submit('n2', 100 + i, 'doc-a', 1, 'client-1', i);
  bench.pump();
  const acks = bench.acks();
  t.deepEqual(
    [101, 102, 103].map((r) => acks.get(r)?.seq),
    [1, 2, 3],
  );
  const value = (bench.replica('n3').status(fullStatus) as { docs: { state: { value: number } }[] }).docs[0]?.state.value;
  t.is(value, 3);
});

test('tail removed: the new tail executes its queue and produces the same deltas', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  for (let i = 1; i <= 4; i++) bench.submit('n1', i, 'doc-a', 2);
  bench.replica('n1').drain(); // forwards lost: n2 never gets them... resent after reconfigure
  bench.configure(['n1', 'n2']);
  bench.pump();
  t.is(bench.acks().size, 4);
  t.deepEqual(bench.digests(['n1'])[0], bench.digests(['n2'])[0]);
});

test('a node joins at the tail by state transfer, with snapshots once the log was compacted', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  for (const node of ['n1', 'n2']) {
    bench.replicas.set(node, replica(node, { deltaLogEntriesMax: 8, deltaLogKeepEntries: 4, docQueueDepthMax: 4 }));
  }
  bench.configure(['n1', 'n2']);
  bench.pump();
  for (let i = 1; i <= 30; i++) {
    bench.submit('n1', i, i % 3 === 0 ? 'doc-a' : 'doc-b', 1);
    bench.pump();
  }
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  const joined = (bench.replica('n3').status(fullStatus) as { docs: { snapshotSeq: number; appliedSeq: number }[] }).docs;
  t.deepEqual(
    joined.map((d) => [d.snapshotSeq, d.appliedSeq]),
    [
      [10, 10],
      [20, 20],
    ],
    'the joiner got snapshots: the log no longer reached back to seq 1',
  );
  for (let i = 31; i <= 40; i++) {
    bench.submit('n1', i, 'doc-a', 1);
    bench.pump();
  }
  t.is(bench.acks().size, 40);
  const digests = bench
    .digests(['n1', 'n2', 'n3'])
    .map((d) => JSON.parse(d).map((x: { stateDigest: string; appliedSeq: number; dedupeDigest: string }) => [x.appliedSeq, x.stateDigest, x.dedupeDigest]));
  t.deepEqual(digests[0], digests[1]);
  t.deepEqual(digests[0], digests[2]);
});

test('stale epochs are refused and a busy document answers with a retryable error', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  const old = bench.config;
  bench.configure(['n1', 'n2']);
  bench.pump();
  t.is(bench.replica('n2').configure(old, bench.now)?.code, 'stale_epoch');
  const rejection = bench.replica('n2').fromPred({ kind: 'forward', forward: { chain: 'c1', epoch: old.epoch, envelopes: [] } }, 'n1', bench.now);
  t.is(rejection?.code, 'stale_epoch');
  const limited = new Bench(['n1', 'n2']);
  limited.replicas.set('n1', replica('n1', { docQueueDepthMax: 2, deltaLogKeepEntries: 2 }));
  limited.configure(['n1', 'n2']);
  limited.pump();
  for (let i = 1; i <= 3; i++) limited.submit('n1', i, 'doc-a', 1);
  t.deepEqual(limited.failures(), []);
  limited.clientFrames.push(...limited.replica('n1').drain().clients);
  t.deepEqual(
    limited.clientFrames.filter((c) => c.frame.kind === 'failure').map((c) => (c.frame.kind === 'failure' ? [c.frame.failure.code, c.frame.failure.retryable] : [])),
    [['busy', true]],
  );
});

test('a head restarted after losing an unsynced, already forwarded queue append gets it back from its successor', async (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  bench.submit('n1', 1, 'doc-a', 1, 'client-1', 1);
  bench.pump();
  // Message 2: n1 forwards it, but n1's own write never reaches the disk.
  bench.submit('n1', 2, 'doc-a', 10, 'client-1', 2);
  for (const frame of bench.replica('n1').drain().succ) t.is(bench.replica('n2').fromPred(frame, 'n1', bench.now), undefined);
  bench.replica('n2').drain(); // and n2's forward to n3 is lost: only n2's queue holds message 2
  // Restart n1 from what is durable: every batch it completed, not the one in progress.
  const recovered = storeAfter(bench.batches.get('n1') ?? []).get('c1');
  t.is((recovered?.docs.get('doc-a')?.queue ?? []).length, 0, 'the lost append is not on n1');
  bench.replicas.set('n1', replica('n1', {}, recovered));
  bench.configure(['n1', 'n2', 'n3']); // the manager re-issues the chain (next epoch)
  bench.replica('n1').linkUp(bench.now);
  // Submit the moment n1 can sequence again, before message 2's delta can come back.
  bench.pump({ until: () => bench.replica('n1').ready });
  // A new message must get seq 3, not a second seq 2.
  bench.submit('n1', 3, 'doc-a', 100, 'client-2', 1);
  bench.submit('n1', 4, 'doc-a', 10, 'client-1', 2); // the resend of message 2
  bench.pump();
  const acks = bench.acks();
  t.deepEqual([acks.get(3)?.seq, acks.get(4)?.seq, acks.get(4)?.duplicate], [3, 2, true]);
  const digests = bench.digests(['n1', 'n2', 'n3']);
  t.is(digests[0], digests[1]);
  t.is(digests[0], digests[2]);
  const state = (bench.replica('n1').status(fullStatus) as { docs: { state: { value: number } }[] }).docs[0]?.state;
  t.is(state?.value, 111);
});

test('subscribers get a full view, then speculative deltas at once and confirmed ones after the commit, filtered per viewer', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  const head = bench.replica('n1');
  head.subscribe(11, { requestId: 1, chain: 'c1', doc: 'doc-v', docType: 'counter', viewer: 'alice' }, bench.now);
  head.subscribe(12, { requestId: 2, chain: 'c1', doc: 'doc-v', docType: 'counter', viewer: 'bob' }, bench.now);
  bench.submit('n1', 5, 'doc-v', 7); // viewer alice
  const early = head.drain();
  bench.clientFrames.push(...early.clients);
  const kinds = (to: number): string[] =>
    bench.clientFrames
      .filter((c) => c.to === to && c.frame.kind === 'viewUpdate')
      .map((c) => (c.frame.kind === 'viewUpdate' ? `${c.frame.viewUpdate.kind}:${canonicalJson(JSON.parse(c.frame.viewUpdate.json))}` : ''));
  t.deepEqual(kinds(11), ['full:{"contributions":{},"mine":0,"value":0}', 'speculative:{"contributions":{"alice":7},"mine":7,"value":7}']);
  t.deepEqual(kinds(12), ['full:{"contributions":{},"mine":0,"value":0}', 'speculative:{"value":7}'], "bob never sees alice's contribution");
  t.false(
    bench.clientFrames.some((c) => c.frame.kind === 'ack'),
    'not committed yet',
  );
  for (const frame of early.succ) t.is(bench.replica('n2').fromPred(frame, 'n1', bench.now), undefined);
  bench.pump();
  t.deepEqual(kinds(11).slice(2), ['confirmed:{"contributions":{"alice":7},"mine":7,"value":7}']);
  t.deepEqual(kinds(12).slice(2), ['confirmed:{"value":7}']);
  t.is(bench.acks().get(5)?.seq, 1);
});

test('a joiner that caught up says so durably: caughtUpEpoch survives its restart', (t) => {
  for (const bugs of [noBugs, new Set(['caught-up-in-memory'] as const)] as Bugs[]) {
    const bench = new Bench(['n1', 'n2']);
    bench.replicas.set('n2', replica('n2', {}, undefined, bugs));
    bench.configure(['n1']);
    bench.pump();
    for (let i = 1; i <= 5; i++) bench.submit('n1', i, 'doc-a', 1);
    bench.pump();
    bench.configure(['n1', 'n2']);
    bench.pump();
    t.is(bench.replica('n2').caughtUpEpoch, 2, 'the joiner did not report its catch-up');
    const recovered = storeAfter(bench.batches.get('n2') ?? []).get('c1');
    const restarted = replica('n2', {}, recovered, bugs);
    if (bugs === noBugs) t.is(restarted.caughtUpEpoch, 2, 'a restart forgot that the node caught up (the manager would never refill the chain)');
    else t.is(restarted.caughtUpEpoch, 0, 'the planted bug keeps caughtUpEpoch in memory only');
  }
});

test('a subscribe, a refused submit and an unsubscribe create no document', (t) => {
  const bench = new Bench(['n1']);
  bench.configure(['n1']);
  bench.pump();
  const head = bench.replica('n1');
  head.subscribe(11, { requestId: 1, chain: 'c1', doc: 'doc-watched', docType: 'counter', viewer: 'alice' }, bench.now);
  head.submit(12, { requestId: 2, chain: 'c1', doc: 'doc-refused', docType: 'counter', channel: 'no-such-channel', payloadJson: '{}', clientId: 'client-1', clientSeq: 1, viewer: 'alice' }, bench.now);
  head.submit(12, { requestId: 3, chain: 'c1', doc: 'doc-bad-json', docType: 'counter', channel: 'add', payloadJson: '{', clientId: 'client-1', clientSeq: 2, viewer: 'alice' }, bench.now);
  head.unsubscribe(11, 1, 'doc-watched');
  bench.pump();
  t.deepEqual(bench.failures(), ['unknown_channel', 'invalid_payload']);
  t.deepEqual(head.documents(), [], 'reads and refusals must not fill documentsMax');
  bench.submit('n1', 4, 'doc-real', 1);
  bench.pump();
  t.deepEqual(head.documents(), ['doc-real']);
});

test('a delta whose redo is not an object is refused as invalid_frame and changes nothing', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  bench.submit('n1', 1, 'doc-a', 5);
  const head = bench.replica('n1');
  const tail = bench.replica('n2');
  const forwarded = head.drain();
  for (const frame of forwarded.succ) t.is(tail.fromPred(frame, 'n1', bench.now), undefined);
  for (let batch = tail.takeBatch(); batch !== undefined; batch = tail.takeBatch()) tail.durable(batch.id);
  const back = tail.drain().pred.find((f) => f.kind === 'back');
  if (back?.kind !== 'back') return t.fail('the tail sent no delta back');
  const before = JSON.stringify(head.status(fullStatus));
  for (const redoJson of ['[1]', '7', '{"value":']) {
    const bad = { ...back, back: { ...back.back, deltas: back.back.deltas.map((d) => ({ ...d, redoJson })) } };
    t.is(head.fromSucc(bad, 'n2', bench.now)?.code, 'invalid_frame', `redo ${redoJson} was not refused`);
    t.is(JSON.stringify(head.status(fullStatus)), before, `redo ${redoJson} changed the head`);
  }
  t.is(head.fromSucc(back, 'n2', bench.now), undefined, 'the good delta is still accepted after the refusals');
});

test('Attach and catch-up are split into frames of frameItemsMax items, and a joiner still converges', (t) => {
  const small = { frameItemsMax: 2 };
  const bench = new Bench([]);
  for (const node of ['n1', 'n2', 'n3']) bench.replicas.set(node, replica(node, small));
  bench.configure(['n1', 'n2']);
  bench.pump();
  for (let i = 1; i <= 14; i++) bench.submit('n1', i, `doc-${i % 7}`, 1);
  bench.pump();
  bench.delivered.length = 0;
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  const count = (kind: string): number => bench.delivered.filter((d) => d === `n2>n3:${kind}`).length;
  t.true(count('attach') >= 4, `7 documents in ${count('attach')} attach frames`);
  t.true(count('catchup') >= 4, `7 catch-ups in ${count('catchup')} frames`);
  t.is(bench.replica('n3').documents().length, 7);
  const digests = bench.digests(['n1', 'n2', 'n3']);
  t.is(digests[1], digests[2]);
  t.is(digests[0], digests[2]);
});

test('a state transfer at the head re-sends full views and keeps the subscription count exact', (t) => {
  const bench = new Bench(['n1']);
  bench.configure(['n1']);
  bench.pump();
  bench.submit('n1', 1, 'doc-a', 3);
  bench.pump();
  const r = bench.replica('n1');
  r.subscribe(11, { requestId: 1, chain: 'c1', doc: 'doc-a', docType: 'counter', viewer: 'alice' }, bench.now);
  r.subscribe(12, { requestId: 2, chain: 'c1', doc: 'doc-a', docType: 'counter', viewer: 'bob' }, bench.now);
  const doc = r.docs.get('doc-a');
  if (doc === undefined) return t.fail('no document');
  r.head.resetTo(doc, doc.appliedSeq); // what a snapshot catch-up at the head does
  bench.pump();
  const fulls = bench.clientFrames.filter((c) => c.frame.kind === 'viewUpdate' && c.frame.viewUpdate.kind === 'full').map((c) => c.to);
  t.deepEqual(fulls, [11, 12, 11, 12], 'each subscriber gets a fresh full view');
  t.is(r.head.subscriptionCount, 2, 'nodeSubscriptionsMax is enforced on this counter');
  t.is([...r.head.subscriptions().values()].flat().length, 2);
});

// ---------------------------------------------------------------------------------------------
// Per-document entropy (issue 15)

const hexOf = (bytes: Uint8Array | undefined): string => (bytes === undefined ? 'none' : Buffer.from(bytes).toString('hex'));
const entropyOf = (bench: Bench, node: string, doc: string): string => hexOf(bench.replica(node).docs.get(doc)?.entropy);

/** alice and bob (and more) sit at `doc`, sending to the head n1 from request id `from`. */
function seat(bench: Bench, doc: string, players: readonly string[], from: number): void {
  for (const [i, player] of players.entries()) {
    bench.send('n1', from + i, doc, 'card-table', 'sit', {}, player);
    bench.pump();
  }
}

/** What `start` at `doc` deals when run on `state` with `entropy`: the expected continuation of the shuffle. */
function dealt(doc: string, seq: number, state: JsonObject, entropy: Uint8Array): CardTableState {
  const envelope = { doc, seq, timestamp: 0, viewer: 'alice', channel: 'start', payload: {} };
  return execute(cardTable, structuredClone(state), envelope, entropy).state as CardTableState;
}

test('entropy: each new document gets 32 fresh bytes at the head, and every replica adopts them from the envelope of seq 1', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  seat(bench, 'table-a', ['alice', 'bob'], 1);
  seat(bench, 'table-b', ['alice', 'bob'], 3);
  const a = entropyOf(bench, 'n1', 'table-a');
  t.is(a.length, 64);
  t.not(a, entropyOf(bench, 'n1', 'table-b'), 'two documents share an entropy');
  for (const node of ['n2', 'n3']) {
    t.is(entropyOf(bench, node, 'table-a'), a);
    t.is(entropyOf(bench, node, 'table-b'), entropyOf(bench, 'n1', 'table-b'));
  }
  const digests = bench.digests(['n1', 'n2', 'n3']);
  t.is(digests[0], digests[1]);
  t.is(digests[0], digests[2]);
  t.regex(digests[0] ?? '', /"entropyDigest":"[0-9a-f]{16}"/);
});

test('entropy: it survives recovery from disk and reaches joiners by catch-up (snapshot and deltas), where the shuffle continues the same', (t) => {
  const small = { deltaLogEntriesMax: 2, deltaLogKeepEntries: 2, docQueueDepthMax: 2 };
  const bench = new Bench([]);
  for (const node of ['n1', 'n2', 'n3']) bench.replicas.set(node, replica(node, small));
  bench.configure(['n1', 'n2']);
  bench.pump();
  seat(bench, 'table-snap', ['alice', 'bob', 'carol'], 1); // 3 messages: compacted, a joiner needs a snapshot
  seat(bench, 'table-log', ['alice', 'bob'], 4); // 2 messages: a joiner gets the deltas
  seat(bench, 'table-disk', ['alice', 'bob'], 6);
  const docs = ['table-snap', 'table-log', 'table-disk'];
  const made = new Map(docs.map((doc) => [doc, bench.replica('n1').docs.get(doc)?.entropy as Uint8Array]));

  // Recovery: n2 restarts from what it wrote.
  const recovered = storeAfter(bench.batches.get('n2') ?? []).get('c1');
  for (const doc of docs) t.is(hexOf(recovered?.docs.get(doc)?.entropy), hexOf(made.get(doc)), `${doc}: n2's store lost the entropy`);
  bench.replicas.set('n2', replica('n2', small, recovered));
  for (const doc of docs) t.is(entropyOf(bench, 'n2', doc), hexOf(made.get(doc)));

  // n3 joins as tail: table-snap by snapshot, the others by deltas.
  bench.configure(['n1', 'n2', 'n3']);
  bench.replica('n2').linkUp(bench.now);
  bench.pump();
  const joined = (bench.replica('n3').status(fullStatus) as { docs: { doc: string; snapshotSeq: number; logFrom: number }[] }).docs;
  t.deepEqual(
    joined.map((d) => [d.doc, d.snapshotSeq > 0]),
    [
      ['table-disk', false],
      ['table-log', false],
      ['table-snap', true],
    ],
  );
  for (const doc of docs) t.is(entropyOf(bench, 'n3', doc), hexOf(made.get(doc)), `${doc}: the joiner holds another entropy`);

  // The joiner executes the deals as tail: the same shuffle the creating head's entropy gives.
  const before = new Map(docs.map((doc) => [doc, structuredClone(bench.replica('n1').peek(doc)?.state as JsonObject)]));
  bench.send('n1', 10, 'table-snap', 'card-table', 'start', {}, 'alice');
  bench.send('n1', 11, 'table-log', 'card-table', 'start', {}, 'alice');
  bench.pump();
  t.deepEqual(bench.failures(), []);
  for (const [doc, seq] of [
    ['table-snap', 4],
    ['table-log', 3],
  ] as const) {
    const state = bench.replica('n3').peek(doc)?.state as CardTableState;
    t.is(state.phase, 'playing');
    t.deepEqual(state, dealt(doc, seq, before.get(doc) as JsonObject, made.get(doc) as Uint8Array), `${doc}: the joiner dealt another shuffle`);
  }

  // n3 restarts from its own disk and runs alone: it deals table-disk as the creating head's entropy says.
  const own = storeAfter(bench.batches.get('n3') ?? []).get('c1');
  bench.replicas.set('n3', replica('n3', small, own));
  bench.configure(['n3']);
  bench.now += 1_100; // past any lease n3 passed on
  for (const r of bench.replicas.values()) r.tick(bench.now);
  bench.pump();
  t.true(bench.replica('n3').ready);
  bench
    .replica('n3')
    .submit(7, { requestId: 12, chain: 'c1', doc: 'table-disk', docType: 'card-table', channel: 'start', payloadJson: '{}', clientId: 'alice', clientSeq: 12, viewer: 'alice' }, bench.now);
  bench.pump();
  t.is(bench.acks().get(12)?.seq, 3);
  t.deepEqual(bench.replica('n3').peek('table-disk')?.state, dealt('table-disk', 3, before.get('table-disk') as JsonObject, made.get('table-disk') as Uint8Array));
});

test('entropy: no frame a client receives (full, speculative and confirmed views, acks) shows it', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  const head = bench.replica('n1');
  for (const [i, viewer] of ['alice', 'bob', 'eve'].entries()) head.subscribe(20 + i, { requestId: 100 + i, chain: 'c1', doc: 'table', docType: 'card-table', viewer }, bench.now);
  seat(bench, 'table', ['alice', 'bob'], 1);
  bench.send('n1', 3, 'table', 'card-table', 'start', {}, 'alice');
  bench.pump();
  bench.send('n1', 4, 'table', 'card-table', 'draw', {}, 'alice');
  bench.pump();
  // A late subscriber's full view is computed from the log and the queue.
  head.subscribe(30, { requestId: 200, chain: 'c1', doc: 'table', docType: 'card-table', viewer: 'bob' }, bench.now);
  bench.pump();
  const views = bench.clientFrames.filter((c) => c.frame.kind === 'viewUpdate').map((c) => (c.frame.kind === 'viewUpdate' ? c.frame.viewUpdate : undefined));
  const kinds = new Set(views.map((v) => v?.kind));
  t.deepEqual([...kinds].sort(), ['confirmed', 'full', 'speculative'], 'the game did not produce every kind of view frame');
  t.true(
    views.some((v) => v?.viewer === 'alice' && /"hand":\["[2-9AKQJT][SHDC]"/.test(v.json)),
    'no frame shows alice her dealt hand',
  );
  const entropy = head.docs.get('table')?.entropy;
  if (entropy === undefined) return t.fail('no document');
  const bytes = Buffer.from(entropy);
  const texts = [
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    bytes.toString('base64').replace(/=+$/, ''),
    bytes.toString('base64url'),
    JSON.stringify([...bytes]),
    JSON.stringify(entropy),
  ];
  for (const { frame } of bench.clientFrames) {
    const text = JSON.stringify(frame);
    for (const leak of texts) t.false(text.includes(leak), `a ${frame.kind} frame shows the entropy`);
  }
});

test('entropy: a first message that is refused still creates the document with one entropy everywhere', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  bench.send('n1', 1, 'table', 'card-table', 'start', {}, 'alice'); // not seated: refused by the handler, at seq 1
  bench.pump();
  t.is(bench.acks().get(1)?.seq, 1);
  const outcome = bench.clientFrames.find((c) => c.frame.kind === 'ack');
  t.regex(outcome?.frame.kind === 'ack' ? outcome.frame.ack.outcomeJson : '', /not_seated/);
  t.is(entropyOf(bench, 'n1', 'table').length, 64);
  t.is(entropyOf(bench, 'n2', 'table'), entropyOf(bench, 'n1', 'table'));
});

test('entropy: a head that fails before seq 1 reached anyone takes it along; the next head creates the document with new bytes, and the chain agrees', (t) => {
  const bench = new Bench(['n1', 'n2', 'n3']);
  bench.configure(['n1', 'n2', 'n3']);
  bench.pump();
  bench.send('n1', 1, 'table', 'card-table', 'sit', {}, 'alice', 'client-1', 1);
  const lost = entropyOf(bench, 'n1', 'table');
  bench.replica('n1').drain(); // the forward dies with n1
  bench.configure(['n2', 'n3']);
  bench.pump();
  bench.now += 1_100;
  for (const r of bench.replicas.values()) r.tick(bench.now);
  bench.pump();
  bench.send('n2', 2, 'table', 'card-table', 'sit', {}, 'alice', 'client-1', 1); // the client's resend
  bench.pump();
  t.is(bench.acks().get(2)?.seq, 1);
  const fresh = entropyOf(bench, 'n2', 'table');
  t.is(fresh.length, 64);
  t.not(fresh, lost);
  t.is(entropyOf(bench, 'n3', 'table'), fresh);
});

/** A forward of one envelope from n1 to n2, as n1 sent it, with `change` applied. */
function forwardWith(bench: Bench, change: (e: WireEnvelope) => WireEnvelope): Frame {
  const frame = bench
    .replica('n1')
    .drain()
    .succ.find((f) => f.kind === 'forward');
  if (frame?.kind !== 'forward') throw new Error('n1 forwarded nothing');
  return { ...frame, forward: { ...frame.forward, envelopes: frame.forward.envelopes.map(change) } };
}

test('entropy: a peer that sends a wrong one is refused (typed rejection), and nothing is created', (t) => {
  const cases: [string, (e: WireEnvelope) => WireEnvelope, string][] = [
    ['no entropy on seq 1', ({ entropy: _, ...e }) => e, 'invalid_frame'],
    ['31 bytes', (e) => ({ ...e, entropy: new Uint8Array(31) }), 'invalid_frame'],
    ['33 bytes', (e) => ({ ...e, entropy: new Uint8Array(33) }), 'invalid_frame'],
    ['not bytes', (e) => ({ ...e, entropy: 'x'.repeat(32) as unknown as Uint8Array }), 'invalid_frame'],
    ['entropy on seq 2', (e) => ({ ...e, seq: 2 }), 'invalid_frame'],
    ['seq 2 of a document this node lacks', ({ entropy: _, ...e }) => ({ ...e, seq: 2 }), 'protocol_error'],
  ];
  for (const [what, change, code] of cases) {
    const bench = new Bench(['n1', 'n2']);
    bench.configure(['n1', 'n2']);
    bench.pump();
    bench.send('n1', 1, 'table', 'card-table', 'sit', {}, 'alice');
    const rejection = bench.replica('n2').fromPred(forwardWith(bench, change), 'n1', bench.now);
    t.is(rejection?.code, code, what);
    t.deepEqual(bench.replica('n2').documents(), [], `${what}: the document was created anyway`);
  }
  // A document held here with another entropy: the histories diverged.
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  bench.send('n1', 1, 'table', 'card-table', 'sit', {}, 'alice');
  const sent = bench
    .replica('n1')
    .drain()
    .succ.find((f) => f.kind === 'forward');
  if (sent?.kind !== 'forward') return t.fail('n1 forwarded nothing');
  t.is(bench.replica('n2').fromPred(sent, 'n1', bench.now), undefined);
  const other: Frame = { ...sent, forward: { ...sent.forward, envelopes: sent.forward.envelopes.map((e) => ({ ...e, entropy: new Uint8Array(32).fill(7) })) } };
  t.is(bench.replica('n2').fromPred(other, 'n1', bench.now)?.code, 'protocol_error', 'a resend of seq 1 with another entropy');
  t.is(entropyOf(bench, 'n2', 'table'), entropyOf(bench, 'n1', 'table'));
});

test('entropy: a catch-up piece with a wrong-length or another entropy is refused', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1']);
  bench.pump();
  seat(bench, 'table', ['alice', 'bob'], 1);
  const doc = bench.replica('n1').docs.get('table');
  if (doc === undefined) return t.fail('no document');
  bench.configure(['n1', 'n2']);
  const joiner = bench.replica('n2');
  // Let the Attach be answered, then feed catch-ups by hand.
  bench.pump({ until: () => bench.delivered.includes('n2>n1:sync') });
  const piece = { doc: 'table', docType: 'card-table', snapshotSeq: 0, snapshotJson: '', dedupeJson: '', deltas: doc.log.slice(), entropy: doc.entropy };
  const catchup = (entropy: Uint8Array): Frame => ({ kind: 'catchup', catchup: { chain: 'c1', epoch: bench.config.epoch, docs: [{ ...piece, entropy }] } });
  t.is(joiner.fromPred(catchup(new Uint8Array(16)), 'n1', bench.now)?.code, 'invalid_frame');
  t.deepEqual(joiner.documents(), []);
  t.is(joiner.fromPred(catchup(doc.entropy), 'n1', bench.now), undefined);
  t.is(entropyOf(bench, 'n2', 'table'), hexOf(doc.entropy));
  t.is(joiner.fromPred(catchup(new Uint8Array(32)), 'n1', bench.now)?.code, 'protocol_error');
});

test('entropy: a store written before per-document entropy is refused at open, saying to delete the data directory', (t) => {
  const bench = new Bench(['n1']);
  bench.configure(['n1']);
  bench.pump();
  seat(bench, 'table', ['alice'], 1);
  const store = new Map<string, string>();
  for (const batch of bench.batches.get('n1') ?? []) for (const op of batch.ops) op.type === 'put' ? store.set(op.key, op.value) : store.delete(op.key);
  t.true(store.has(keys.entropy('c1', 'table')));
  const recover = (entries: Map<string, string>) => () => {
    const recovery = new Recovery();
    for (const key of [...entries.keys()].sort()) recovery.add(key, entries.get(key) as string);
    return recovery.finish();
  };
  t.notThrows(recover(store));
  const old = new Map(store);
  old.delete(keys.entropy('c1', 'table'));
  const error = t.throws(recover(old), { instanceOf: OldStore });
  t.regex(error?.message ?? '', /doc table: the document has no entropy, so this data directory was written by an earlier version/);
  t.regex(error?.message ?? '', /Delete the data directory/);
  const damaged = new Map(store).set(keys.entropy('c1', 'table'), JSON.stringify('abcd'));
  t.throws(recover(damaged), { instanceOf: CorruptStore, message: /entropy is not 32 bytes/ });
});

test('store layout (issue 16): a commit writes its seq key only; recovery reads appliedSeq off the log and moves old-layout queue keys', (t) => {
  const bench = new Bench(['n1', 'n2']);
  bench.configure(['n1', 'n2']);
  bench.pump();
  bench.submit('n1', 1, 'doc-a', 1);
  bench.pump();
  const before = (bench.batches.get('n1') ?? []).length;
  bench.submit('n1', 2, 'doc-a', 2);
  bench.pump();
  // At the head: the queued envelope under l!2, then the delta over it (no meta, no queue delete, no dedupe entry).
  const ops = (bench.batches.get('n1') ?? []).slice(before).flatMap((b) => b.ops.map((o) => `${o.type} ${o.key}`));
  t.deepEqual(ops, [`put ${keys.log('c1', 'doc-a', 2)}`, `put ${keys.log('c1', 'doc-a', 2)}`]);
  const recovered = storeAfter(bench.batches.get('n1') ?? []);
  const doc = recovered.get('c1')?.docs.get('doc-a');
  t.is(doc?.meta.appliedSeq, 2, 'appliedSeq is the last delta, not the meta written at creation');
  t.is((doc?.state as { value?: number } | undefined)?.value, 3);
  // A queued envelope under the old layout's queue key is read, and moved in the first batch.
  const store = new Map<string, string>();
  for (const batch of bench.batches.get('n1') ?? []) for (const op of batch.ops) op.type === 'put' ? store.set(op.key, op.value) : store.delete(op.key);
  store.set(keys.queue('c1', 'doc-a', 3), JSON.stringify({ doc: 'doc-a', seq: 3, timestamp: 5, viewer: 'alice', channel: 'add', payloadJson: '{"by":4}', clientId: 'client-1', clientSeq: 3 }));
  const recovery = new Recovery();
  for (const key of [...store.keys()].sort()) recovery.add(key, store.get(key) as string);
  const old = recovery.finish().get('c1')?.docs.get('doc-a');
  t.deepEqual(
    old?.queue.map((e) => e.seq),
    [3],
  );
  t.deepEqual(old?.legacyQueueSeqs, [3]);
  const restarted = replica('n1', {}, recovery.finish().get('c1'));
  const moved = restarted.takeBatch()?.ops.map((o) => `${o.type} ${o.key}`) ?? [];
  t.true(moved.includes(`put ${keys.log('c1', 'doc-a', 3)}`) && moved.includes(`del ${keys.queue('c1', 'doc-a', 3)}`), moved.join(', '));
  // A delta stored after a queued envelope is damage (here seq 1 holds an envelope, seq 2 its delta).
  const damaged = new Map(store);
  damaged.delete(keys.queue('c1', 'doc-a', 3));
  damaged.set(keys.log('c1', 'doc-a', 1), store.get(keys.queue('c1', 'doc-a', 3)) as string);
  const r2 = new Recovery();
  t.throws(
    () => {
      for (const key of [...damaged.keys()].sort()) r2.add(key, damaged.get(key) as string);
    },
    { instanceOf: CorruptStore, message: /a delta after a queued envelope/ },
  );
});

// Two tables: one that keeps every entry (a lost one shows), one that evicts all the time.
for (const [name, windowMax, clientsMax] of [
  ['keeping', 16, 4],
  ['evicting', 3, 2],
] as const)
  test(`store layout (issue 16): the dedupe table (${name}) is rebuilt from the log at restart, through compactions, and an older layout is converted`, (t) => {
    const limits = { deltaLogEntriesMax: 8, deltaLogKeepEntries: 4, docQueueDepthMax: 4, dedupeWindowMax: windowMax, dedupeClientsMax: clientsMax, dedupeIdleMsMin: 50 };
    const bench = new Bench([]);
    bench.replicas.set('n1', replica('n1', limits));
    bench.configure(['n1']);
    bench.pump();
    const dedupeOf = (r: Replica): unknown => (r.status(fullStatus) as { docs: { dedupeDigest?: string }[] }).docs.map((d) => d.dedupeDigest);
    let requestId = 0;
    const seqs = new Map<string, number>();
    // Three clients on one document (the table holds two: idle ones are forgotten), 40 messages, compaction every 8.
    for (let i = 0; i < 40; i++) {
      const client = ['a', 'b', 'c'][i % 7 < 4 ? 0 : i % 7 < 6 ? 1 : 2] as string;
      const clientSeq = (seqs.get(client) ?? 0) + 1;
      seqs.set(client, clientSeq);
      bench.now += 20;
      bench.submit('n1', ++requestId, 'doc-a', 1, client, clientSeq);
      bench.pump();
      const restarted = replica('n1', limits, storeAfter(bench.batches.get('n1') ?? []).get('c1'));
      t.deepEqual(dedupeOf(restarted), dedupeOf(bench.replica('n1')), `after message ${i + 1}`);
    }
    const ops = (bench.batches.get('n1') ?? []).flatMap((b) => b.ops);
    t.true(
      ops.some((o) => o.type === 'put' && o.key.includes('!k!')),
      'compaction wrote the stored table',
    );
    t.true(ops.filter((o) => o.key.includes('!k!')).length < 40, 'fewer dedupe writes than messages');
    // An older layout: meta without a layout, dedupe keys holding the table at appliedSeq.
    const store = new Map<string, string>();
    for (const batch of bench.batches.get('n1') ?? []) for (const op of batch.ops) op.type === 'put' ? store.set(op.key, op.value) : store.delete(op.key);
    const live = bench.replica('n1');
    const meta = JSON.parse(store.get(keys.meta('c1', 'doc-a')) as string);
    for (const key of [...store.keys()]) if (key.includes('!k!')) store.delete(key);
    const liveDocs = (live as unknown as { docs: { get(id: string): { dedupe: { toJson(): string } } | undefined } }).docs;
    const table = JSON.parse(liveDocs.get('doc-a')?.dedupe.toJson() ?? '[]') as [string, [number, number, string, number][]][];
    t.true(table.length > 0);
    for (const [client, window] of table) for (const e of window) store.set(keys.dedupe('c1', 'doc-a', client, e[0]), JSON.stringify([e[1], e[2], e[3]]));
    store.set(keys.meta('c1', 'doc-a'), JSON.stringify({ ...meta, layout: undefined }));
    const recovery = new Recovery();
    for (const key of [...store.keys()].sort()) recovery.add(key, store.get(key) as string);
    const converted = replica('n1', limits, recovery.finish().get('c1'));
    t.deepEqual(dedupeOf(converted), dedupeOf(live));
    const conversion = converted.takeBatch()?.ops ?? [];
    t.true(
      conversion.some((o) => o.type === 'put' && o.key === keys.snapshot('c1', 'doc-a')),
      'a snapshot at appliedSeq',
    );
    t.true(conversion.some((o) => o.type === 'put' && o.key === keys.meta('c1', 'doc-a') && JSON.parse(o.value).layout === 2));
    // A store of a newer layout is refused, not taken for an older one.
    const newer = new Map(store).set(keys.meta('c1', 'doc-a'), JSON.stringify({ ...meta, layout: 3 }));
    const r3 = new Recovery();
    for (const key of [...newer.keys()].sort()) r3.add(key, newer.get(key) as string);
    t.throws(() => r3.finish(), { instanceOf: CorruptStore, message: /newer version/ });
  });
