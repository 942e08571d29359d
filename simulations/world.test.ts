// The simulated world's own fault semantics, which the invariant checks rely on.

import test from 'ava';
import { Checker } from './invariants.ts';
import type { NodeProcess } from './processes.ts';
import { defaultNetwork, World, type WorldSettings } from './world.ts';

const settings = (seed: number, nodes = 1): WorldSettings => ({
  seed,
  nodes,
  k: nodes,
  chains: [{ id: 'c1', members: Array.from({ length: nodes }, (_, i) => i) }],
  docs: [{ id: 'd1', type: 'counter' }],
  clients: [{ viewer: 0, via: 'session', proxy: 0, pipeline: 1, ops: Array.from({ length: 20 }, (_, i) => ({ atMs: i, doc: 0, move: { viewer: 0, kind: 0, pick: i } })), tabs: [] }],
  proxies: 0,
  ...defaultNetwork,
  diskMs: { min: 5, max: 5 },
  frameBytesMax: 4 * 1024 * 1024,
  submitTimeoutMs: 20_000,
  requestTimeoutMs: 1_000,
});

function world(s: WorldSettings): { world: World; checker: Checker } {
  let w: World | undefined;
  const checker = new Checker(() => w as World);
  w = new World(s, checker, new Set());
  return { world: w, checker };
}

/** Runs until node 1 has a write in flight that contains a log entry. */
function withWriteInFlight(seed: number): { world: World; node: NodeProcess } {
  const { world: w } = world(settings(seed));
  w.start();
  const node = w.nodes[0] as NodeProcess;
  w.run(5_000, () => node.disk.inFlightOps.some((op) => op.key.includes('!l!')));
  return { world: w, node };
}

for (const powerLoss of [true, false]) {
  test(`a ${powerLoss ? 'power loss loses' : 'process crash keeps'} the write in flight`, (t) => {
    const { node } = withWriteInFlight(3);
    const inFlight = node.disk.inFlightOps.filter((op) => op.type === 'put' && op.key.includes('!l!'));
    t.true(inFlight.length > 0, 'the run never had a log write in flight');
    node.crash(powerLoss);
    for (const op of inFlight) t.is(node.disk.durable.get(op.key), powerLoss ? undefined : (op as { value: string }).value, op.key);
    // Either way the disk recovers with its invariants intact, and the node restarts from it.
    t.true(node.disk.recover().has('c1'));
    node.start();
    t.is(node.driver?.replica('c1')?.epoch, 1);
  });
}

test('a partition breaks the chain link; after healing the chain re-forms and the clients finish', (t) => {
  const { world: w } = world(settings(5, 2));
  w.start();
  w.run(300);
  const head = w.nodes[0]?.driver?.replica('c1');
  t.true(head?.succSynced, 'the chain did not form');
  w.net.blocked.add('n1>n2');
  const sent = w.net.framesSent;
  w.run(w.now + 2_000);
  t.true(w.net.framesSent > sent, 'nothing was sent during the partition');
  t.false(w.nodes[0]?.driver?.replica('c1')?.succSynced, 'the head did not notice the broken link');
  w.net.blocked.clear();
  w.run(w.now + 5_000);
  t.true(w.nodes[0]?.driver?.replica('c1')?.succSynced, 'the chain did not re-form after healing');
  t.true(
    w.clients.every((c) => c.done),
    'the clients did not finish',
  );
  t.true(
    w.clients.every((c) => c.records.every((r) => r.status === 'acked')),
    'a message was not acknowledged',
  );
});

test('a paused process does nothing until it resumes; a hung one never again', (t) => {
  const { world: w } = world(settings(9, 2));
  w.start();
  w.run(300);
  const node = w.nodes[1] as NodeProcess;
  const writes = node.disk.writes;
  node.pausedUntil = w.now + 1_000;
  w.run(w.now + 900);
  t.is(node.disk.writes, writes, 'a paused node wrote');
  w.run(w.now + 2_000);
  t.true(node.disk.writes > writes || w.clients.every((c) => c.done), 'the node did not resume');
  node.hung = true;
  const after = node.disk.writes;
  w.run(w.now + 5_000);
  t.is(node.disk.writes, after, 'a hung node wrote');
});

test('what reaches a paused process runs in arrival order, also when the pause is extended while it waits', (t) => {
  const { world: w } = world(settings(9, 2));
  const node = w.nodes[1] as NodeProcess;
  node.start();
  const ran: number[] = [];
  node.pausedUntil = w.now + 100;
  node.run(node.incarnation, () => ran.push(1));
  w.after(50, () => node.run(node.incarnation, () => ran.push(2)));
  // At 60 the pause is extended to 200 (a second SIGSTOP); a task arriving at 80 still comes after 1 and 2.
  w.after(60, () => void (node.pausedUntil = w.now + 140));
  w.after(80, () => node.run(node.incarnation, () => ran.push(3)));
  w.run(w.now + 150);
  t.deepEqual(ran, [], 'a paused process ran something');
  w.run(w.now + 100);
  t.deepEqual(ran, [1, 2, 3]);
});
