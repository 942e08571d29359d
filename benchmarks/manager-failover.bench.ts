// npm run failover:manager -- [--kills 10] [--pairs 5]
//
// The replicated manager on real processes and a real etcd (started from /usr/bin/etcd on
// loopback): 4 nodes, one chain of 3, 2 manager processes, 8 closed-loop clients.
//   1. `kills` times: SIGKILL the leading manager; measure the time until a standby leads, and
//      the commit latency of messages sent during the takeover against the 2 s before it
//      (the data path does not go through the manager, so it should not move).
//   2. `pairs` times each, alternating: SIGKILL the chain's head alone (the leader reconfigures),
//      and the head together with the leading manager (the standby must take over first):
//      time from the kill to the first commit of a message sent after it. The difference is
//      what a manager failover adds to a node failover.
// Every acknowledged add must be in the final state. Prints a table and writes
// benchmarks/results/manager-failover.json.

import { randomBytes } from 'node:crypto';
import { nodeStatus, tcpSession } from '../chain/client/tcp.ts';
import { EtcdCluster } from '../chain/tools/etcd-cluster.ts';
import { etcdBinary, etcdMissing } from '../chain/tools/etcd-server.ts';
import { parseArgs, printTable, writeResults } from './report.ts';

const usage = `npm run failover:manager -- [--kills N] [--pairs P]

Measures the replicated manager on real processes and a real etcd: the takeover time after a
SIGKILL of the leading manager (N times, default 10), commit latency during the takeover
against before it, and the time to the first new commit after a head SIGKILL with and without
the leading manager killed at the same moment (P times each, default 5). Needs /usr/bin/etcd
(apt-get install -y etcd-server). Prints a table and writes benchmarks/results/manager-failover.json.`;

const args = parseArgs(process.argv.slice(2), usage, { kills: 'number', pairs: 'number' });
const kills = (args.kills as number | undefined) ?? 10;
const pairs = (args.pairs as number | undefined) ?? 5;
if (etcdBinary() === undefined) {
  console.error(`error: ${etcdMissing}`);
  process.exit(2);
}
const started = Date.now();
const say = (line: string): void => void process.stderr.write(`[manager-failover ${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] as number);
};
const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.min(s.length - 1, Math.floor(q * s.length))] as number);
};
const round1 = (x: number): number => Math.round(x * 10) / 10;

const cluster = await EtcdCluster.start({ nodes: 4, managers: 2, chains: 1, k: 3, secret: randomBytes(12).toString('hex') });
process.on('SIGINT', () => void cluster.stop().then(() => process.exit(130)));

interface Commit {
  readonly start: number;
  readonly end: number;
}
const commits: Commit[] = [];
const acked = new Map<string, number>();
let running = true;
try {
  await cluster.waitHealthy(30_000);
  const docs = Array.from({ length: 8 }, (_, i) => `mf${i}`);
  const load = docs.map(async (doc, i) => {
    const session = tcpSession({ ...cluster.clientOptions, addresses: cluster.addresses, chain: 'c1', clientId: `mf${i}`, submitTimeoutMs: 30_000, requestTimeoutMs: 1_000 });
    while (running) {
      const start = Date.now();
      try {
        await session.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'bench' });
        commits.push({ start, end: Date.now() });
        acked.set(doc, (acked.get(doc) ?? 0) + 1);
      } catch {
        // unknown outcome
      }
    }
    session.close();
  });
  await sleep(2_000);

  // 1. Leader kills.
  const takeovers: number[] = [];
  const windows: { killedAt: number; ledAt: number }[] = [];
  for (let i = 0; i < kills; i++) {
    const leader = cluster.leader() ?? (await cluster.waitForLeader(5_000))?.manager;
    if (leader === undefined) throw new Error('no manager leads');
    const killedAt = Date.now();
    await cluster.managers.get(leader)?.kill('SIGKILL');
    const next = await cluster.waitForLeader(10_000, leader, killedAt);
    if (next === undefined) throw new Error(`no standby took over within 10 s of killing ${leader}`);
    takeovers.push(next.at - killedAt);
    windows.push({ killedAt, ledAt: next.at });
    say(`kill ${i + 1}/${kills}: ${leader} -> ${next.manager} in ${next.at - killedAt} ms`);
    await cluster.startManager(leader);
    await sleep(1_500);
  }

  // 2. Head kills, alone and with the leading manager.
  const firstCommit = { alone: [] as number[], withLeader: [] as number[] };
  for (let i = 0; i < 2 * pairs; i++) {
    const withLeader = i % 2 === 1;
    await cluster.waitHealthy(30_000);
    await sleep(1_000);
    const statuses = await Promise.all(cluster.addresses.map((a) => nodeStatus(a, cluster.adminOptions).catch(() => undefined)));
    const newest = Math.max(...statuses.map((s) => s?.chains.find((c) => c.chain === 'c1')?.epoch ?? 0));
    const head = statuses.find((s) => s?.chains.some((c) => c.chain === 'c1' && c.epoch === newest && (c.role === 'head' || c.role === 'single')))?.node;
    if (head === undefined) throw new Error('the chain has no head');
    const leader = cluster.leader();
    const killedAt = Date.now();
    await Promise.all([cluster.nodes.get(head)?.kill('SIGKILL'), withLeader && leader !== undefined ? cluster.managers.get(leader)?.kill('SIGKILL') : undefined]);
    const deadline = killedAt + 30_000;
    let first: number | undefined;
    while (first === undefined && Date.now() < deadline) {
      await sleep(10);
      first = commits.filter((c) => c.start > killedAt + 5).reduce<number | undefined>((m, c) => (m === undefined || c.end < m ? c.end : m), undefined);
    }
    if (first === undefined) throw new Error(`no commit within 30 s of killing ${head}`);
    (withLeader ? firstCommit.withLeader : firstCommit.alone).push(first - killedAt);
    say(`head kill ${i + 1}/${2 * pairs}${withLeader ? ` with ${leader}` : ''}: first new commit after ${first - killedAt} ms`);
    await cluster.startNode(head);
    if (withLeader && leader !== undefined) await cluster.startManager(leader);
  }
  running = false;
  await Promise.all(load);
  // Commits by when they were sent: in the 2 s before a leader kill, or during its takeover (counted once every commit ended).
  const before: number[] = [];
  const during: number[] = [];
  for (const c of commits) {
    for (const w of windows) {
      if (c.start >= w.killedAt - 2_000 && c.start < w.killedAt) before.push(c.end - c.start);
      else if (c.start >= w.killedAt && c.start <= w.ledAt) during.push(c.end - c.start);
    }
  }

  // Nothing acknowledged is lost; one sequence of epochs.
  await cluster.waitHealthy(30_000);
  const statuses = await Promise.all(cluster.addresses.map((a) => nodeStatus(a, cluster.adminOptions, { includeState: true })));
  const newest = Math.max(...statuses.map((s) => s.chains.find((c) => c.chain === 'c1')?.epoch ?? 0));
  const head = statuses.map((s) => s.chains.find((c) => c.chain === 'c1')).find((c) => c?.epoch === newest && (c.role === 'head' || c.role === 'single'));
  let lost = 0;
  for (const [doc, n] of acked) lost += Math.max(0, n - ((head?.docs.find((d) => d.doc === doc)?.state as { value?: number } | undefined)?.value ?? 0));
  const conflicts = cluster.conflicts();
  const result = {
    kills,
    takeoverMs: takeovers,
    takeoverMsMedian: median(takeovers),
    takeoverMsMax: Math.max(...takeovers),
    commitMsBefore: { n: before.length, p50: round1(quantile(before, 0.5)), p99: round1(quantile(before, 0.99)) },
    commitMsDuringTakeover: { n: during.length, p50: round1(quantile(during, 0.5)), p99: round1(quantile(during, 0.99)) },
    headKillFirstCommitMs: { alone: firstCommit.alone, withLeaderKilled: firstCommit.withLeader, aloneMedian: median(firstCommit.alone), withLeaderKilledMedian: median(firstCommit.withLeader) },
    acknowledged: [...acked.values()].reduce((a, b) => a + b, 0),
    lost,
    epochConflicts: conflicts,
  };
  printTable([
    { measure: 'takeover after leader SIGKILL (ms)', median: result.takeoverMsMedian, max: result.takeoverMsMax, n: kills },
    { measure: 'commit p50 before a takeover (ms)', median: result.commitMsBefore.p50, max: result.commitMsBefore.p99, n: before.length },
    { measure: 'commit p50 during a takeover (ms)', median: result.commitMsDuringTakeover.p50, max: result.commitMsDuringTakeover.p99, n: during.length },
    { measure: 'head kill -> first new commit (ms)', median: result.headKillFirstCommitMs.aloneMedian, max: Math.max(...firstCommit.alone), n: pairs },
    { measure: 'head + leader kill -> first commit (ms)', median: result.headKillFirstCommitMs.withLeaderKilledMedian, max: Math.max(...firstCommit.withLeader), n: pairs },
  ]);
  console.log(`(max column: p99 for the commit rows) acknowledged ${result.acknowledged}, lost ${lost}, epoch conflicts ${conflicts.length}`);
  console.log(`wrote ${writeResults('manager-failover', result)}`);
  if (lost > 0 || conflicts.length > 0) process.exitCode = 1;
} finally {
  running = false;
  await cluster.stop();
}
