// Real node processes with SWIM failure detection and the automatic manager (no admin
// commands): SIGKILL each node in turn under load, let the manager fail it over, restart it,
// let it rejoin, and check that no acknowledged message was lost.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { ChainSession } from '../client/session.ts';
import { lookupHead, nodeStatus } from '../client/tcp.ts';
import { LocalCluster } from '../tools/local-cluster.ts';
import { chainIds } from './placement.ts';

test.serial('a 5-node cluster survives SIGKILL of each node in turn, failed over and rejoined automatically, with no acknowledged message lost', async (t) => {
  const cluster = await LocalCluster.start({ nodes: 5, chains: 5, k: 3, secret: randomBytes(12).toString('hex') });
  let loading = true;
  const acked = new Map<string, number>();
  const loops: Promise<void>[] = [];
  try {
    await cluster.waitHealthy();
    const docs = chainIds(5).map((chain) => ({ chain, doc: cluster.docOn(chain) }));
    for (const { doc } of docs) {
      const session: ChainSession = cluster.session(doc, `t-${doc}`);
      loops.push(
        (async () => {
          while (loading) {
            try {
              await session.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'tester' });
              acked.set(doc, (acked.get(doc) ?? 0) + 1);
            } catch {
              // unknown outcome: not counted as acknowledged
            }
          }
          session.close();
        })(),
      );
    }
    for (const victim of ['n1', 'n2', 'n3', 'n4', 'n5']) {
      const before = cluster.events.length;
      await cluster.kill(victim);
      await cluster.waitHealthy(); // k live members per chain again, without the victim
      t.true(
        cluster.events.slice(before).some((e) => e.kind === 'member' && e.node === victim && e.state === 'dead'),
        `${victim} was never declared dead`,
      );
      for (const config of cluster.manager.configs.values())
        t.false(
          config.members.some((m) => m.node === victim),
          `${victim} is still in ${config.chain}`,
        );
      await cluster.startNode(victim);
      await cluster.waitHealthy();
      // Any client finds each document's head from the nodes alone, as the manager sees it.
      for (const { doc } of docs) {
        const found = await lookupHead(doc, 5, cluster.addresses, cluster.clientOptions);
        t.deepEqual({ chain: found.chain, node: found.node }, { chain: cluster.manager.headOf(doc).chain, node: cluster.manager.headOf(doc).node });
      }
    }
    loading = false;
    await Promise.all(loops);
    await cluster.waitHealthy();
    for (const { chain, doc } of docs) {
      const config = cluster.manager.configs.get(chain);
      const values = new Set<number>();
      for (const m of config?.members ?? []) {
        const st = await nodeStatus(m.address, cluster.adminOptions, { includeState: true });
        values.add(((st.chains.find((c) => c.chain === chain)?.docs.find((d) => d.doc === doc)?.state ?? {}) as { value?: number }).value ?? 0);
      }
      t.is(values.size, 1, `${chain}'s replicas disagree on ${doc}: ${[...values].join(', ')}`);
      const value = [...values][0] ?? 0;
      t.true(value >= (acked.get(doc) ?? 0), `${doc}: ${acked.get(doc)} adds acknowledged but the value is ${value}`);
      t.true((acked.get(doc) ?? 0) > 0, `${doc} never committed`);
    }
  } finally {
    loading = false;
    await Promise.allSettled(loops);
    await cluster.stop();
  }
});
