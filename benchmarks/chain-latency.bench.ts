// Quick commit-latency measurement of the chain (issue 3): k = 1, 2, 3 real node processes on
// loopback with sync writes, 16 closed-loop clients over 16 counter documents. Chain lengths
// are interleaved in rounds so that machine drift hits all of them alike. The full benchmark
// (MySQL baseline, HDR histograms, throughput) is benchmarks/ work of a later issue.
//
//   npm run bench:chain -- [--seconds S] [--rounds R] [--clients C]

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { tcpSession } from '../chain/client/tcp.ts';
import { initialConfig } from '../chain/control/decisions.ts';
import { spawnNode, type NodeProcess } from '../chain/tools/processes.ts';
import { pushConfig } from '../chain/tools/reconfigure.ts';
import { parseArgs, printTable, writeResults } from './report.ts';

const usage = `usage: npm run bench:chain -- [--seconds S] [--rounds R] [--clients C] [--docs D] [--no-sync]

Commit latency (submit -> ack, durable on every replica) for chains of k = 1, 2, 3 node
processes with sync writes. Each round runs every k for S seconds (default 3); R rounds
(default 3); C closed-loop clients (default 16) over D counter documents (default 16).
--no-sync writes without fsync (isolates network and CPU costs).
Prints a table and writes benchmarks/results/chain-latency[-cC][-nosync].json (-cC when C != 16).`;

const args = parseArgs(process.argv.slice(2), usage, { seconds: 'number', rounds: 'number', clients: 'number', docs: 'number', 'no-sync': 'flag' });
const syncWrites = args['no-sync'] !== true;
const seconds = Number(args.seconds ?? 3);
const rounds = Number(args.rounds ?? 3);
const clients = Number(args.clients ?? 16);
const docs = Number(args.docs ?? 16);
const opts = { cluster: 'bench', secret: randomBytes(12).toString('hex') };

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function runOnce(k: number, round: number): Promise<{ latenciesMs: number[]; seconds: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-chain-bench-'));
  const nodes: NodeProcess[] = [];
  try {
    for (let i = 1; i <= k; i++) nodes.push(await spawnNode({ id: `n${i}`, dataDir: path.join(dir, `n${i}`), syncWrites, ...opts }));
    const pushed = await pushConfig(
      initialConfig(
        'c1',
        nodes.map((n) => ({ node: n.id, address: n.address })),
      ),
      [],
      opts,
    );
    if (pushed.missing.length > 0) throw new Error(`configure failed: ${pushed.missing.join(', ')} did not acknowledge`);
    const latenciesMs: number[] = [];
    const warmupEnd = performance.now() + 500;
    const end = warmupEnd + seconds * 1000;
    await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        const session = tcpSession({ ...opts, addresses: nodes.map((n) => n.address), chain: 'c1', clientId: `b${round}-${i}` });
        for (let j = 0; performance.now() < end; j++) {
          const start = performance.now();
          await session.submit({ doc: `doc-${(i + j) % docs}`, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: `b${i}` });
          if (start >= warmupEnd) latenciesMs.push(performance.now() - start);
        }
        session.close();
      }),
    );
    return { latenciesMs, seconds };
  } finally {
    await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
    rmSync(dir, { recursive: true, force: true });
  }
}

const ks = [1, 2, 3];
const all = new Map<number, number[]>(ks.map((k) => [k, []]));
const perRound: { round: number; k: number; commits: number; p50Ms: number; p99Ms: number }[] = [];
for (let round = 1; round <= rounds; round++) {
  for (const k of round % 2 === 1 ? ks : [...ks].reverse()) {
    const { latenciesMs } = await runOnce(k, round);
    const sorted = [...latenciesMs].sort((a, b) => a - b);
    perRound.push({ round, k, commits: sorted.length, p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99) });
    (all.get(k) as number[]).push(...latenciesMs);
    console.error(`round ${round}/${rounds} k=${k}: ${sorted.length} commits, p50 ${quantile(sorted, 0.5).toFixed(2)} ms`);
  }
}
const summary = ks.map((k) => {
  const sorted = (all.get(k) as number[]).sort((a, b) => a - b);
  return {
    k,
    commits: sorted.length,
    commitsPerSecond: Math.round(sorted.length / (seconds * rounds)),
    p50Ms: Number(quantile(sorted, 0.5).toFixed(3)),
    p90Ms: Number(quantile(sorted, 0.9).toFixed(3)),
    p99Ms: Number(quantile(sorted, 0.99).toFixed(3)),
  };
});
const k1 = summary[0]?.p50Ms ?? NaN;
const rows = summary.map((s) => ({ ...s, p50VsK1: Number((s.p50Ms / k1).toFixed(2)) }));
printTable(rows);
const name = `chain-latency${clients === 16 ? '' : `-c${clients}`}${syncWrites ? '' : '-nosync'}`;
const file = writeResults(name, { settings: { seconds, rounds, clients, docs, syncWrites }, summary: rows, perRound });
console.log(`wrote ${file}`);
