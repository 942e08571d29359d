// A zombie head on real processes: 5 nodes with failure detection and the automatic manager,
// one chain of 3. The head is stopped (SIGSTOP) for 4 s, long enough to be declared dead and
// replaced; then it runs again. Its subscribers must get an error or a fresh full view from the
// new head within the lease, its late sends must commit exactly once or fail, and nothing may
// wait forever.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { ChainError } from '../chain/client/requests.ts';
import { ChainClient, nodeStatus } from '../chain/client/tcp.ts';
import type { ViewUpdate } from '../chain/core/frames.ts';
import { defaultReplicaLimits } from '../chain/core/replica.ts';
import { systemClock } from '../chain/runtime/system.ts';
import { TcpNet } from '../chain/runtime/tcp-net.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { Router } from './router.ts';

const pauseMs = 4_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test.serial('a head stopped for 4 s and replaced: its subscribers hear within the lease, its late sends commit once or fail, nothing waits forever', async (t) => {
  const secret = randomBytes(12).toString('hex');
  const cluster = await LocalCluster.start({ nodes: 5, chains: 1, k: 3, secret });
  const router = new Router({ net: new TcpNet({ cluster: 'local', secret }), clock: systemClock }, { nodes: cluster.addresses, chains: 1, name: 'zombie-test' });
  try {
    await cluster.waitHealthy();
    const doc = cluster.docOn('c1', 'zombie');
    const head = cluster.manager.headOf(doc);
    const zombie = cluster.processes.get(head.node);
    if (zombie === undefined) return t.fail('no head process');
    const opts = cluster.clientOptions;

    // A subscriber straight at the head, and one through the router (as a browser behind the proxy).
    const direct = await ChainClient.connect(head.address, { ...opts, requestTimeoutMs: 20_000 });
    let directEnd: { error: ChainError; at: number } | undefined;
    const directFrames: ViewUpdate[] = [];
    await direct.subscribe(
      { chain: 'c1', doc, docType: 'counter', viewer: 'watcher' },
      (u) => directFrames.push(u),
      (error) => (directEnd = { error, at: Date.now() }),
    );
    const routed: { update: ViewUpdate; at: number }[] = [];
    let routedError: ChainError | undefined;
    const cancel = router.subscribe(
      doc,
      'counter',
      'watcher',
      (update) => routed.push({ update, at: Date.now() }),
      (e) => (routedError = e),
    );
    const deadline = Date.now() + 10_000;
    while (routed.length === 0 && Date.now() < deadline) await sleep(20);
    t.is(routed[0]?.update.kind, 'full', 'the routed subscriber got its full view');

    const sender = await ChainClient.connect(head.address, { ...opts, requestTimeoutMs: 30_000 });
    const first = await sender.submit({ chain: 'c1', doc, docType: 'counter', channel: 'add', payload: { by: 1 }, clientId: 'z1', clientSeq: 1, viewer: 'z' });
    t.is(first.seq, 1);

    // Stop the head; while it is stopped, send to it (the bytes wait in its socket).
    process.kill(zombie.child.pid as number, 'SIGSTOP');
    const stoppedAt = Date.now();
    const late = [2, 3, 4].map((clientSeq) =>
      sender.submit({ chain: 'c1', doc, docType: 'counter', channel: 'add', payload: { by: 10 }, clientId: 'z1', clientSeq, viewer: 'z' }).then(
        (r) => ({ clientSeq, ok: true as const, seq: r.seq, at: Date.now() }),
        (e: ChainError) => ({ clientSeq, ok: false as const, code: e.code, retryable: e.retryable, at: Date.now() }),
      ),
    );
    // Meanwhile the chain moves on: the detector declares the head dead and the manager replaces it.
    let newHead = head.node;
    while (Date.now() - stoppedAt < pauseMs) {
      newHead = cluster.manager.headOf(doc).node;
      await sleep(50);
    }
    t.not(newHead, head.node, `the manager did not replace the stopped head ${head.node} within ${pauseMs} ms`);
    process.kill(zombie.child.pid as number, 'SIGCONT');
    const resumedAt = Date.now();

    // Its late sends: each is answered (committed exactly once, or a retryable failure) soon.
    const answers = await Promise.race([Promise.all(late), sleep(10_000).then(() => undefined)]);
    if (answers === undefined) return t.fail('a late send to the resumed head was never answered');
    for (const a of answers) {
      t.true(a.at - resumedAt < 5_000, `clientSeq ${a.clientSeq} waited ${a.at - resumedAt} ms after the head resumed`);
      if (!a.ok) t.true(a.retryable, `clientSeq ${a.clientSeq} failed for good with ${a.code}`);
    }
    // Resend what failed, through the routed path: the dedupe table makes each apply once.
    for (const a of answers) {
      if (a.ok) continue;
      await new Promise<void>((resolve, reject) =>
        router.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 10 }, clientId: 'z1', clientSeq: a.clientSeq, viewer: 'z' }, (e) => (e === undefined ? resolve() : reject(e))),
      );
    }

    // The direct subscriber: an error within the lease (plus a tick) of the head running again.
    const leaseDeadline = resumedAt + defaultReplicaLimits.leaseMs + 500;
    while (directEnd === undefined && Date.now() < leaseDeadline + 2_000) await sleep(20);
    t.truthy(directEnd, 'the subscriber at the zombie head never heard anything');
    if (directEnd !== undefined) {
      t.true(directEnd.at <= leaseDeadline, `the subscriber at the zombie head heard ${directEnd.at - resumedAt} ms after it resumed`);
      t.true(directEnd.error.retryable, `its subscription ended with ${directEnd.error.code}, which is not retryable`);
    }
    // The routed subscriber: a fresh full view, within the lease and one resubscribe. It can only
    // come from the new head: the stopped one sends nothing, and once running again it has no
    // lease, so it refuses subscriptions.
    const freshFull = (): { update: ViewUpdate; at: number } | undefined => routed.find((r) => r.update.kind === 'full' && r.at > stoppedAt);
    const routedDeadline = leaseDeadline + 2_000;
    while (freshFull() === undefined && Date.now() < routedDeadline + 5_000) await sleep(20);
    const fresh = freshFull();
    t.truthy(fresh, 'the routed subscriber got no full view from the new head');
    if (fresh !== undefined) {
      t.true(fresh.at <= routedDeadline, `the routed subscriber's fresh full view came ${fresh.at - resumedAt} ms after the head resumed`);
      t.true(fresh.update.seq >= first.seq, `the fresh full view (seq ${fresh.update.seq}) misses the acknowledged seq ${first.seq}`);
    }
    t.is(routedError, undefined);

    // Exactly once: the counter holds 1 + 10 for each of clientSeq 2..4, on every member.
    await cluster.waitHealthy();
    const config = cluster.manager.configs.get('c1');
    for (const m of config?.members ?? []) {
      const status = await nodeStatus(m.address, cluster.adminOptions, { includeState: true });
      const value = (status.chains.find((c) => c.chain === 'c1')?.docs.find((d) => d.doc === doc)?.state as { value?: number } | undefined)?.value;
      t.is(value, 31, `${m.node} holds ${value}`);
    }
    cancel();
    direct.close();
    sender.close();
  } finally {
    router.close();
    await cluster.stop();
  }
});
