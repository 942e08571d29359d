// The simulated world's own fault semantics, which the invariant checks rely on.

import test from 'ava';
import { recover } from '../chain/store.ts';
import { Checker } from './invariants.ts';
import { defaultNetwork, World, type WorldSettings } from './world.ts';

const settings = (seed: number): WorldSettings => ({
  seed,
  nodes: 1,
  k: 1,
  chains: [{ id: 'c1', members: [0] }],
  docs: [{ id: 'd1', type: 'counter', chain: 'c1' }],
  clients: [{ viewer: 0, ops: Array.from({ length: 20 }, (_, i) => ({ atMs: i, doc: 0, move: { viewer: 0, kind: 0, pick: i } })) }],
  ...defaultNetwork,
  diskMs: { min: 5, max: 5 },
});

/** Runs until the node has a write in flight that contains a log entry, and returns that world. */
async function worldWithWriteInFlight(seed: number): Promise<World> {
  const world = new World(settings(seed), new Checker());
  await world.start();
  await world.run(5_000, () => world.nodes[0]?.inFlight.some((op) => op.key.includes('!l!')) === true);
  return world;
}

for (const powerLoss of [true, false]) {
  test(`a ${powerLoss ? 'power loss loses' : 'process crash keeps'} the write in flight`, async (t) => {
    const world = await worldWithWriteInFlight(3);
    const node = world.nodes[0];
    if (node === undefined) return t.fail('no node');
    const inFlight = node.inFlight.filter((op) => op.type === 'put' && op.key.includes('!l!'));
    t.true(inFlight.length > 0, 'the run never had a log write in flight');
    await node.crash(powerLoss);
    for (const op of inFlight) t.is(await node.store.get(op.key), powerLoss ? undefined : (op as { value: string }).value, op.key);
    // Either way the disk recovers with its invariants intact, and the node restarts from it.
    const recovered = await recover(node.store);
    t.true(recovered.has('c1'));
    await node.start();
    t.is(node.replicas.get('c1')?.epoch, 1);
  });
}

test('a partition breaks the chain link; after healing the chain re-forms and the clients finish', async (t) => {
  const world = new World({ ...settings(5), nodes: 2, chains: [{ id: 'c1', members: [0, 1] }] }, new Checker());
  await world.start();
  await world.run(200);
  const head = world.nodes[0];
  const tail = world.nodes[1];
  if (head === undefined || tail === undefined) return t.fail('no nodes');
  t.true(head.replicas.get('c1')?.succSynced, 'the chain did not form');
  world.net.blocked.add('n1>n2');
  const sent = world.net.framesSent;
  await world.run(world.now + 2_000);
  t.true(world.net.framesSent > sent, 'nothing was sent during the partition');
  t.false(head.replicas.get('c1')?.succSynced, 'the head did not notice the broken link');
  world.net.blocked.clear();
  await world.run(world.now + 5_000);
  t.true(head.replicas.get('c1')?.succSynced, 'the chain did not re-form after healing');
  t.true(world.clients.every((c) => c.done), 'the clients did not finish');
});
