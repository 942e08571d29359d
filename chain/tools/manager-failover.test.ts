// The replicated manager on real processes and a real etcd (started by the test from
// /usr/bin/etcd on loopback, with a temporary data dir): under load, the leading manager is
// SIGKILLed three times (and restarted with no memory), and between the kills a node is
// SIGKILLed so that the new leader must reconfigure. No acknowledged add may be lost, a
// standby must take over within 2 s each time, and the configurations the nodes accepted must
// form one sequence of epochs.

import test from 'ava';
import { tcpSession, nodeStatus } from '../client/tcp.ts';
import { EtcdCluster } from './etcd-cluster.ts';
import { etcdBinary, etcdMissing } from './etcd-server.ts';

const ci = process.env.CI === 'true';
const run = etcdBinary() === undefined && !ci ? test.skip : test.serial;
if (etcdBinary() === undefined && !ci) console.log(`manager-failover.test.ts skipped: ${etcdMissing}`);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

run('killing the leading manager under load: a standby leads within 2 s, nothing acknowledged is lost, one sequence of epochs', async (t) => {
  t.timeout(110_000);
  if (etcdBinary() === undefined) throw new Error(etcdMissing);
  const trace: string[] = [];
  const cluster = await EtcdCluster.start({
    nodes: 4,
    managers: 2,
    chains: 1,
    k: 3,
    secret: 'manager-failover-test-secret',
    log: (line) => /leads|leadership|elected|deposed/.test(line) && trace.push(`${Date.now()} ${line}`),
  });
  t.teardown(() => t.log(trace.slice(-20).join('\n')));
  try {
    await cluster.waitHealthy(20_000);
    const docs = Array.from({ length: 8 }, (_, i) => `doc${i}`);
    const acked = new Map<string, number>();
    const sent = new Map<string, number>();
    let running = true;
    const load = docs.map(async (doc, i) => {
      const session = tcpSession({ ...cluster.clientOptions, addresses: cluster.addresses, chain: 'c1', clientId: `load${i}`, submitTimeoutMs: 30_000 });
      while (running) {
        sent.set(doc, (sent.get(doc) ?? 0) + 1);
        try {
          await session.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'load' });
          acked.set(doc, (acked.get(doc) ?? 0) + 1);
        } catch {
          // an add that timed out: its outcome is unknown (it may have been applied)
        }
      }
      session.close();
    });
    const takeovers: number[] = [];
    for (let round = 0; round < 3; round++) {
      await sleep(1_000);
      const leader = cluster.leader();
      t.truthy(leader, 'a manager leads');
      const killedAt = Date.now();
      await cluster.managers.get(leader as string)?.kill('SIGKILL');
      const next = await cluster.waitForLeader(5_000, leader, killedAt);
      t.truthy(next, `a standby took over after ${leader} was killed`);
      takeovers.push((next?.at ?? Number.POSITIVE_INFINITY) - killedAt);
      await cluster.startManager(leader as string);
      // The new leader must reconfigure: kill a node of the chain, then bring it back.
      const victim = `n${(round % 4) + 1}`;
      await cluster.nodes.get(victim)?.kill('SIGKILL');
      await sleep(2_000);
      await cluster.startNode(victim);
      await cluster.waitHealthy(20_000);
    }
    running = false;
    await Promise.all(load);
    t.log(`takeover after a leader's SIGKILL: ${takeovers.map((ms) => `${ms} ms`).join(', ')}; epochs accepted: ${[...new Set(cluster.accepted.map((a) => a.epoch))].join(', ')}`);
    for (const ms of takeovers) t.true(ms <= 2_000, `a standby led within 2 s (took ${ms} ms)`);
    // Every acknowledged add is in the final state of the head (and no more were applied than sent).
    await cluster.waitHealthy(20_000);
    const statuses = await Promise.all(cluster.addresses.map((a) => nodeStatus(a, cluster.adminOptions, { includeState: true })));
    // The head of the newest epoch (a node that was removed while it was down may still believe its old epoch).
    const newest = Math.max(...statuses.map((s) => s.chains.find((c) => c.chain === 'c1')?.epoch ?? 0));
    const head = statuses.map((s) => s.chains.find((c) => c.chain === 'c1')).find((c) => c?.epoch === newest && (c.role === 'head' || c.role === 'single'));
    t.truthy(head, 'the chain has a head');
    let total = 0;
    for (const doc of docs) {
      const value = (head?.docs.find((d) => d.doc === doc)?.state as { value?: number } | undefined)?.value ?? 0;
      total += acked.get(doc) ?? 0;
      t.true(value >= (acked.get(doc) ?? 0), `${doc}: ${value} applied, ${acked.get(doc)} acknowledged`);
      t.true(value <= (sent.get(doc) ?? 0), `${doc}: ${value} applied, ${sent.get(doc)} sent`);
    }
    t.true(total > 100, `the load made progress (${total} acknowledged adds)`);
    t.deepEqual(cluster.conflicts(), [], 'the configurations nodes accepted form one sequence of epochs');
    const epochs = new Set(cluster.accepted.map((a) => a.epoch));
    t.true(epochs.size >= 4, `the chain was reconfigured (epochs ${[...epochs].sort((a, b) => a - b).join(', ')})`);
  } finally {
    await cluster.stop();
  }
});
