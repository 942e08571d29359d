// npm run failover -- [--nodes 5] [--chains 5] [--k 3] [--repeats 3] [--pause-seconds 60]
//
// Real node processes with SWIM failure detection and the automatic manager, under load (one
// closed-loop client per chain). For each position (head, middle, tail) it SIGKILLs a node
// and measures the time from the kill to the manager declaring it dead, and to the first
// commit of a message sent after the kill on a document of a chain that held it. Then it
// restarts the node and waits until the cluster is healthy again. Last, it pauses one node
// (SIGSTOP) for 300 ms every 5 s and counts false deaths. Every acknowledged message must be
// in the final state.

import { randomBytes } from 'node:crypto';
import type { ChainSession } from '../chain/client/session.ts';
import { nodeStatus } from '../chain/client/tcp.ts';
import { chainIds } from '../chain/control/placement.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { parseArgs, printTable, writeResults } from './report.ts';

const usage = `npm run failover -- [--nodes N] [--chains C] [--k K] [--repeats R] [--pause-seconds S]

Measures failover on real processes on this machine: detection time (kill -> declared dead by
the manager) and time to the first commit after a kill, for a head, a middle node and a tail,
R times each (default 3); then S seconds (default 60) with one node paused 300 ms every 5 s,
counting false positives. Prints a table and writes benchmarks/results/failover.json.`;

const args = parseArgs(process.argv.slice(2), usage, { nodes: 'number', chains: 'number', k: 'number', repeats: 'number', 'pause-seconds': 'number' });
const nodes = (args.nodes as number | undefined) ?? 5;
const chains = (args.chains as number | undefined) ?? nodes;
const k = (args.k as number | undefined) ?? 3;
const repeats = (args.repeats as number | undefined) ?? 3;
const pauseSeconds = (args['pause-seconds'] as number | undefined) ?? 60;
const say = (line: string): void => void process.stderr.write(`[failover ${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
const started = Date.now();

const cluster = await LocalCluster.start({ nodes, chains, k, secret: randomBytes(12).toString('hex') });
const cleanup = async (): Promise<void> => cluster.stop();
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

interface Commit {
  readonly doc: string;
  readonly start: number;
  readonly end: number;
}
const commits: Commit[] = [];
const acked = new Map<string, number>();
let loading = true;
const docs = chainIds(chains).map((chain) => ({ chain, doc: cluster.docOn(chain) }));
const loops: Promise<void>[] = [];

try {
  await cluster.waitHealthy();
  say(`cluster up: ${nodes} nodes, ${chains} chains of ${k}; ${[...cluster.manager.configs.values()].map((c) => `${c.chain}=${c.members.map((m) => m.node).join('>')}`).join(' ')}`);
  for (const { doc } of docs) {
    const session: ChainSession = cluster.session(doc, `load-${doc}`);
    loops.push(
      (async () => {
        while (loading) {
          const start = Date.now();
          try {
            await session.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'bench' });
            commits.push({ doc, start, end: Date.now() });
            acked.set(doc, (acked.get(doc) ?? 0) + 1);
          } catch (error) {
            say(`${doc}: ${(error as Error).message}`);
          }
        }
        session.close();
      })(),
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 1_000));

  const rows: { role: string; run: number; chain: string; victim: string; detectMs: number; firstCommitMs: number }[] = [];
  const roles = ['head', 'middle', 'tail'] as const;
  for (let run = 1; run <= repeats; run++) {
    for (const role of roles) {
      await cluster.waitHealthy();
      const configs = [...cluster.manager.configs.values()];
      const config = configs[(run * 3 + roles.indexOf(role)) % configs.length] as (typeof configs)[number];
      const index = role === 'head' ? 0 : role === 'tail' ? config.members.length - 1 : 1;
      const victim = config.members[index]?.node as string;
      const doc = docs.find((d) => d.chain === config.chain)?.doc as string;
      const killAt = Date.now();
      await cluster.kill(victim);
      const deadline = killAt + 15_000;
      let deadAt: number | undefined;
      let committedAt: number | undefined;
      while (Date.now() < deadline && (deadAt === undefined || committedAt === undefined)) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        deadAt ??= cluster.events.find((e) => e.kind === 'member' && e.node === victim && e.state === 'dead' && e.at >= killAt)?.at;
        committedAt ??= commits.find((c) => c.doc === doc && c.start >= killAt)?.end;
      }
      const row = { role, run, chain: config.chain, victim, detectMs: deadAt === undefined ? -1 : deadAt - killAt, firstCommitMs: committedAt === undefined ? -1 : committedAt - killAt };
      rows.push(row);
      say(`killed ${victim} (${role} of ${config.chain}): declared dead after ${row.detectMs} ms, first new commit on ${doc} after ${row.firstCommitMs} ms`);
      await cluster.startNode(victim);
    }
  }
  await cluster.waitHealthy();

  // False positives: one node paused (SIGSTOP) for 300 ms every 5 s.
  const pauseFrom = Date.now();
  const paused = 'n1';
  let pauses = 0;
  while (Date.now() - pauseFrom < pauseSeconds * 1_000) {
    const p = cluster.processes.get(paused);
    p?.child.kill('SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 300));
    p?.child.kill('SIGCONT');
    pauses++;
    await new Promise((resolve) => setTimeout(resolve, 4_700));
  }
  const falsePositives = cluster.events.filter((e) => e.kind === 'member' && e.state === 'dead' && e.at >= pauseFrom).length;
  const suspicions = cluster.events.filter((e) => e.kind === 'member' && e.state === 'suspect' && e.at >= pauseFrom).length;
  say(`${pauses} pauses of ${paused} over ${pauseSeconds} s: ${falsePositives} false positives (${suspicions} suspicions, all refuted)`);

  loading = false;
  await Promise.all(loops);
  // No acknowledged message lost: each counter holds at least its acked adds.
  let lost = 0;
  for (const { chain, doc } of docs) {
    const head = cluster.manager.configs.get(chain)?.members[0]?.address as string;
    const st = await nodeStatus(head, cluster.adminOptions, { includeState: true });
    const value = ((st.chains.find((c) => c.chain === chain)?.docs.find((d) => d.doc === doc)?.state ?? {}) as { value?: number }).value ?? 0;
    if (value < (acked.get(doc) ?? 0)) lost += (acked.get(doc) ?? 0) - value;
  }

  const median = (xs: number[]): number => {
    const s = [...xs].filter((x) => x >= 0).sort((a, b) => a - b);
    return s.length === 0 ? -1 : (s[Math.floor((s.length - 1) / 2)] as number);
  };
  printTable(rows.map((r) => ({ ...r })));
  const summary = roles.map((role) => ({
    role,
    runs: rows.filter((r) => r.role === role).length,
    medianDetectMs: median(rows.filter((r) => r.role === role).map((r) => r.detectMs)),
    medianFirstCommitMs: median(rows.filter((r) => r.role === role).map((r) => r.firstCommitMs)),
  }));
  console.log('');
  printTable(summary);
  const all = {
    medianDetectMs: median(rows.map((r) => r.detectMs)),
    medianFirstCommitMs: median(rows.map((r) => r.firstCommitMs)),
    falsePositives,
    pauses,
    pauseSeconds,
    ackedLost: lost,
    commits: commits.length,
  };
  console.log(
    `\nall kills: median detection ${all.medianDetectMs} ms, median first commit ${all.medianFirstCommitMs} ms; ${falsePositives} false positives in ${pauses} pauses; ${lost} acknowledged messages lost of ${commits.length}`,
  );
  const file = writeResults('failover', { settings: { nodes, chains, k, repeats, pauseSeconds, pauseMs: 300, pauseEveryMs: 5_000 }, kills: rows, summary, all });
  say(`wrote ${file}`);
  if (lost > 0 || rows.some((r) => r.detectMs < 0 || r.firstCommitMs < 0)) process.exitCode = 1;
} finally {
  loading = false;
  await cleanup();
}
