// The benchmark JSON that npm run paper reads, its accessors, and the directions the paper's
// prose states in words, checked against the data.

import type { Machine } from '../benchmarks/report.ts';

export type { Machine };

export interface Row {
  system: string;
  scenario: string;
  clients: number;
  docs: number;
  commitsPerSecond: number;
  serverCpuUs: number;
  generatorCpuUs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
}
export interface View {
  system: string;
  clients: number;
  speculativeP50Ms: number;
  commitP50Ms: number;
  speculativeP99Ms: number;
  commitP99Ms: number;
}
export interface Open {
  system: string;
  ratePerSecond: number;
  connections: number;
  docs: number;
  commitsPerSecond: number;
  refused: number;
  failed: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
}
export interface Bench {
  date: string;
  commit: string;
  machine: Machine;
  settings: { quick: boolean; seconds: number; rounds: number; rate: number; timelineSeconds: number; elapsedSeconds: number };
  rows: Row[];
  views: View[];
  openLoop: Open[];
  ratios: Record<string, number | null>;
  /** The strongest durable baseline at 64 clients over many documents (issue 16). */
  bestBaselineC64Many?: string;
  /** The chain under a CPU quota per node process (cgroups; issue 16), or why it was skipped. */
  equalCpu?: { quotaCpus: number; skipped: string | null; rows: (Row & { k: number; quotaCpus: number })[] };
  timeline: {
    nodes: number;
    k: number;
    clients: number;
    bucketMs: number;
    buckets: { tMs: number; commitsPerSecond: number }[];
    victim: string;
    killAtMs: number;
    detectedAtMs: number;
    reconfiguredAtMs: number;
    firstCommitAfterKillMs: number;
    commits: number;
    ackedLost: number;
  };
  cdfs: { system: string; scenario: string; points: [number, number][] }[];
}
export interface Failover {
  date: string;
  commit: string;
  machine: Machine;
  settings: { nodes: number; chains: number; k: number; repeats: number; pauseSeconds: number };
  summary: { role: string; runs: number; medianDetectMs: number; medianFirstCommitMs: number }[];
  all: { medianDetectMs: number; medianFirstCommitMs: number; falsePositives: number; pauses: number; ackedLost: number; commits: number };
}
export interface ManagerFailover {
  date: string;
  commit: string;
  machine: Machine;
  kills: number;
  takeoverMs: number[];
  takeoverMsMedian: number;
  takeoverMsMax: number;
  commitMsBefore: { n: number; p50: number; p99: number };
  commitMsDuringTakeover: { n: number; p50: number; p99: number };
  headKillFirstCommitMs: { alone: number[]; withLeaderKilled: number[]; aloneMedian: number; withLeaderKilledMedian: number };
  acknowledged: number;
  lost: number;
  epochConflicts: string[];
}
export interface Simulations {
  date: string;
  commit: string;
  machine: Machine;
  clean: { runs: number; seed: number; events: number; seconds: number; eventsPerSecond: number; violations: number; autopilotRuns: number; falsePositives: number; deathsWhileCutOff: number };
  planted: { bug: string; invariant: string; seedsCaught: number; seeds: number; runsToCatchMin: number; runsToCatchMax: number; shrunkScheduleLines: number; shrinkRuns: number }[];
}

/** Lookups into bench JSON that fail with a clear message when a row is missing. */
export function accessors(bench: Bench, benchName: string) {
  const row = (system: string, scenario: string): Row => {
    const r = bench.rows.find((x) => x.system === system && x.scenario === scenario);
    if (r === undefined) throw new Error(`${benchName}.json has no row for ${system} / ${scenario}; rerun npm run bench`);
    return r;
  };
  const view = (system: string): View => {
    const v = bench.views.find((x) => x.system === system);
    if (v === undefined) throw new Error(`${benchName}.json has no optimistic-path measurement for ${system}`);
    return v;
  };
  const open = (system: string): Open => {
    const o = bench.openLoop.find((x) => x.system === system);
    if (o === undefined) throw new Error(`${benchName}.json has no open-loop row for ${system}`);
    return o;
  };
  const systems = [...new Set(bench.rows.map((r) => r.system))];
  const chainKs = systems.filter((s) => /^chain k=\d+$/.test(s)).map((s) => Number(s.slice('chain k='.length)));
  return { row, view, open, systems, chainKs, kMax: Math.max(...chainKs), kMin: Math.min(...chainKs) };
}

/**
 * The directions the prose states in words ("throughput falls with chain length"), each with
 * whether the data supports it. npm run paper fails if one does not, so a rerun that reverses
 * one cannot ship a paper whose words contradict its tables.
 */
export function proseClaims(bench: Bench, benchName: string): [string, boolean][] {
  const { row, view, chainKs, kMax } = accessors(bench, benchName);
  const manyScenario = 'c16-many';
  const r = bench.ratios;
  const t = bench.timeline;
  const chainP50 = (k: number, scenario: string): number => row(`chain k=${k}`, scenario).p50Ms;
  return [
    [
      'abstract, 5.1, 7: with k >= 3 on independent documents (16 clients) the chain p50 exceeds MySQL flush=1',
      chainKs.filter((k) => k >= 3).every((k) => chainP50(k, manyScenario) > row('mysql flush=1', manyScenario).p50Ms),
    ],
    ['5.1: with k = 1 (16 clients) the chain p50 is below MySQL flush=1', chainP50(1, manyScenario) < row('mysql flush=1', manyScenario).p50Ms],
    ['5.1: on one hot document the k = 3 chain p50 is below MySQL flush=1', chainP50(3, 'c64-hot') < row('mysql flush=1', 'c64-hot').p50Ms],
    [
      '5.2: throughput (64 clients, many documents) falls with each step of chain length',
      chainKs.every((k, i) => i === 0 || row(`chain k=${k}`, 'c64-many').commitsPerSecond < row(`chain k=${chainKs[i - 1]}`, 'c64-many').commitsPerSecond),
    ],
    ['abstract: k = 5 is far from a flat line (below 0.8 of k = 1)', (r.throughputK5OverK1Clients64 as number) < 0.8],
    [
      '5.2: a hot document costs the k = 3 chain little (at least 0.8 of its many-document throughput)',
      row('chain k=3', 'c64-hot').commitsPerSecond >= 0.8 * row('chain k=3', 'c64-many').commitsPerSecond,
    ],
    ['5.2: k = 3 and MySQL flush=1 spend similar CPU per commit (within 30%)', Math.abs(row('chain k=3', 'c64-many').serverCpuUs / row('mysql flush=1', 'c64-many').serverCpuUs - 1) < 0.3],
    ['5.2: the many-document ratio sits near 1 rather than 3 (below 1.5)', (r.chainK3ThroughputOverMysqlManyDocs64 as number) < 1.5],
    ['5.3: the speculative p50 grows with k (k max above k = 1)', view(`chain k=${kMax}`).speculativeP50Ms > view('chain k=1').speculativeP50Ms],
    ['5.4: no open-loop request was refused', bench.openLoop.every((o) => o.refused === 0 && o.failed === 0)],
    [
      '5.5: throughput drops to zero between the kill and the first new commit',
      t.buckets.some((b) => b.tMs >= t.killAtMs && b.tMs + t.bucketMs <= t.killAtMs + t.firstCommitAfterKillMs && b.commitsPerSecond === 0),
    ],
    ['6.3: k = 1 spends less CPU per commit than MySQL flush=1', row('chain k=1', 'c64-many').serverCpuUs < row('mysql flush=1', 'c64-many').serverCpuUs],
    [
      '5.7: under equal per-node CPU, the head is the node throttled most (c64-many)',
      (bench.equalCpu?.rows ?? [])
        .filter((x) => x.scenario === 'c64-many' && x.k > 0)
        .every((x) => {
          const shares = x as unknown as { headThrottledShare: number; maxThrottledShare: number };
          return shares.headThrottledShare >= shares.maxThrottledShare;
        }),
    ],
    [
      '5.7: under equal per-node CPU the line is nearly flat from k = 2 on (k max at least 0.7 of k = 2), and the step from k = 1 to 2 is a head at its quota (throttled in 90% of periods or more at both) doing more per commit',
      (() => {
        const at = (k: number) => (bench.equalCpu?.rows ?? []).find((x) => x.k === k && x.scenario === 'c64-many') as unknown as { commitsPerSecond: number; headThrottledShare: number } | undefined;
        const [k1, k2, km] = [at(1), at(2), at(kMax)];
        if (k1 === undefined || k2 === undefined || km === undefined) return bench.equalCpu === undefined || bench.equalCpu.rows.length === 0;
        return km.commitsPerSecond >= 0.7 * k2.commitsPerSecond && k1.headThrottledShare >= 0.9 && k2.headThrottledShare >= 0.9 && k2.commitsPerSecond < k1.commitsPerSecond;
      })(),
    ],
    [
      '5.7: equal per-node CPU flattens the line (k max / k = 1 above the shared-CPU ratio)',
      r.throughputK5OverK1EqualCpu === null || r.throughputK5OverK1EqualCpu === undefined || (r.throughputK5OverK1EqualCpu as number) > (r.throughputK5OverK1Clients64 as number),
    ],
    [
      '5.7: through the proxy on shared cores, the k = 3 chain is not faster than direct (at most 10% above, c64-many)',
      row('chain k=3 via proxy', 'c64-many').commitsPerSecond <= 1.1 * row('chain k=3', 'c64-many').commitsPerSecond,
    ],
  ];
}
