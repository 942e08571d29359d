// npm run paper [-- --check]
//
// Regenerates the paper from the benchmark JSON: reads benchmarks/results/{bench,failover,
// simulations}.json, draws the SVG figures into papers/figures/, and fills the placeholders of
// papers/adama-chain.src.md into papers/adama-chain.md. Every number in the evaluation comes from
// those files; `--check` fails if the committed paper or figures differ from what they give.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from '../benchmarks/report.ts';
import { accessors, proseClaims, type Bench, type Failover, type ManagerFailover, type Simulations } from './inputs.ts';
import { fill, lineChart, markdownTable, type Series } from './figures.ts';

const usage = `npm run paper [-- --check]

Reads benchmarks/results/bench.json (from npm run bench; falls back to bench-quick.json from
npm run bench -- --quick), failover.json (npm run failover) and simulations.json
(npm run simulate:report), writes papers/figures/*.svg and papers/adama-chain.md from
papers/adama-chain.src.md. --check: write nothing, exit 1 if the committed files are stale.`;
const args = parseArgs(process.argv.slice(2), usage, { check: 'flag' });
const here = path.dirname(fileURLToPath(import.meta.url));
const results = path.join(here, '..', 'benchmarks', 'results');

function load<T>(name: string, makeWith: string): T {
  const file = path.join(results, `${name}.json`);
  if (!existsSync(file)) {
    console.error(`npm run paper needs benchmarks/results/${name}.json; make it with: ${makeWith}`);
    process.exit(1);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

const benchName = existsSync(path.join(results, 'bench.json')) ? 'bench' : 'bench-quick';
const bench = load<Bench>(benchName, 'npm run bench');
const failover = load<Failover>('failover', 'npm run failover');
const sims = load<Simulations>('simulations', 'npm run simulate:report');
const managerFailover = load<ManagerFailover>('manager-failover', 'npm run failover:manager');

const { row, view, open, systems, chainKs, kMax, kMin } = accessors(bench, benchName);
const n0 = (x: number): string => Math.round(x).toLocaleString('en-US');
/** A number to at most two decimals, as text (milliseconds and ratios alike). */
const x2 = (x: number): string => `${Number(x.toFixed(2))}`;

// ---------- figures ----------
const figures: Record<string, string> = {};
// The figures' systems (a chart holds ten series): the chain's lengths and variants that the
// text discusses, the seed's MySQL host, the batching hosts with full durability, memory.
const figureSystems = [
  'chain k=1',
  'chain k=3',
  `chain k=${kMax}`,
  'chain k=3 no-sync',
  'chain k=3 via proxy',
  'mysql flush=1',
  'mysql flush=2',
  'mysql-batch flush=1',
  'pg-batch sync=on',
  'memory',
].filter((system) => systems.includes(system));
const manyScenario = 'c16-many';
figures['latency-cdf'] = lineChart({
  title: `Commit latency, ${row(systems[0] as string, manyScenario).clients} closed-loop clients, many documents`,
  xLabel: 'latency (ms, log scale)',
  yLabel: 'fraction of commits at or below',
  xLog: true,
  yMin: 0,
  yMax: 1,
  series: figureSystems.map((system) => {
    const c = bench.cdfs.find((x) => x.system === system && x.scenario === manyScenario);
    if (c === undefined) throw new Error(`no CDF for ${system} ${manyScenario}`);
    return { name: system, points: c.points.filter(([q]) => q > 0).map(([q, v]) => [Math.max(v, 0.01), q / 100] as [number, number]), dashed: !system.startsWith('chain') };
  }),
});
const k3 = bench.cdfs.filter((c) => c.system === 'chain k=3' && c.scenario.startsWith('views-'));
figures['optimistic-cdf'] = lineChart({
  title: 'Chain k=3: speculative view vs commit ack (16 subscribed clients)',
  xLabel: 'latency from submit (ms, log scale)',
  yLabel: 'fraction at or below',
  xLog: true,
  yMin: 0,
  yMax: 1,
  series: k3.map((c) => ({
    name: c.scenario === 'views-speculative' ? 'speculative view' : 'commit ack',
    points: c.points.filter(([q]) => q > 0).map(([q, v]) => [Math.max(v, 0.01), q / 100] as [number, number]),
  })),
});
const kSeries = (scenario: string, name: string): Series => ({ name, points: chainKs.map((k) => [k, row(`chain k=${k}`, scenario).commitsPerSecond] as [number, number]) });
figures['throughput-vs-chain-length'] = lineChart({
  title: 'Throughput against chain length (sync writes, one machine)',
  xLabel: 'chain length k',
  yLabel: 'commits per second',
  xTicks: chainKs,
  yMin: 0,
  series: [
    kSeries('c64-many', 'chain, 64 clients'),
    kSeries('c16-many', 'chain, 16 clients'),
    kSeries('c64-hot', 'chain, 64 on 1 doc'),
    { name: 'MySQL flush=1, 64', dashed: true, points: chainKs.map((k) => [k, row('mysql flush=1', 'c64-many').commitsPerSecond] as [number, number]) },
    { name: 'MySQL flush=1, hot', dashed: true, points: chainKs.map((k) => [k, row('mysql flush=1', 'c64-hot').commitsPerSecond] as [number, number]) },
  ],
});
// Issue 16: the same chain with each node process held to a CPU quota (one "machine" each), beside the shared-CPU line.
const equal = bench.equalCpu;
const equalRows = equal?.rows.filter((x) => x.scenario === 'c64-many' && x.k > 0) ?? [];
figures['throughput-vs-k-equal-cpu'] = lineChart({
  title: `Throughput against chain length: shared CPU, and ${equal?.quotaCpus ?? '–'} CPUs per node process`,
  xLabel: 'chain length k',
  yLabel: 'commits per second (64 clients, many documents)',
  xTicks: chainKs,
  yMin: 0,
  series: [
    kSeries('c64-many', `shared ${bench.machine.cpus} cores`),
    // Absent from a bench JSON without the sweep (cgroups unavailable, or an older run).
    ...(equalRows.length === 0 ? [] : [{ name: `${equal?.quotaCpus} CPUs per node`, points: equalRows.map((x) => [x.k, x.commitsPerSecond] as [number, number]) }]),
  ],
});
const clientCounts = [...new Set(bench.rows.filter((r) => r.scenario.endsWith('-many')).map((r) => r.clients))].sort((a, b) => a - b);
figures['throughput-vs-concurrency'] = lineChart({
  title: 'Throughput against concurrency (many documents)',
  xLabel: 'closed-loop clients (log scale)',
  yLabel: 'commits per second',
  xLog: true,
  xTicks: clientCounts,
  yMin: 0,
  series: figureSystems.map((system) => ({ name: system, dashed: !system.startsWith('chain'), points: clientCounts.map((c) => [c, row(system, `c${c}-many`).commitsPerSecond] as [number, number]) })),
});
const t = bench.timeline;
figures['failover-timeline'] = lineChart({
  title: `Throughput with the head killed (${t.nodes} nodes, k=${t.k}, ${t.clients} clients)`,
  xLabel: 'time (s)',
  yLabel: `commits per second (${t.bucketMs} ms buckets)`,
  yMin: 0,
  series: [{ name: 'commits/s', points: t.buckets.map((b) => [b.tMs / 1_000, b.commitsPerSecond] as [number, number]) }],
  marks: [
    { x: t.killAtMs / 1_000, label: `head ${t.victim} killed` },
    { x: t.detectedAtMs / 1_000, label: `declared dead +${t.detectedAtMs - t.killAtMs} ms` },
    { x: (t.killAtMs + t.firstCommitAfterKillMs) / 1_000, label: `first new commit +${t.firstCommitAfterKillMs} ms` },
  ],
});

// ---------- tables ----------
const tables: Record<string, string> = {};
const scenarios = [...new Set(bench.rows.map((r) => r.scenario))];
tables.throughput = markdownTable(systems.map((system) => ({ system, ...Object.fromEntries(scenarios.map((s) => [`${s} commits/s`, row(system, s).commitsPerSecond])) })));
tables.latency = markdownTable(
  systems.flatMap((system) =>
    ['c1-many', 'c16-many', 'c64-hot'].map((s) => ({
      system,
      scenario: s,
      'p50 ms': row(system, s).p50Ms,
      'p90 ms': row(system, s).p90Ms,
      'p99 ms': row(system, s).p99Ms,
      'p99.9 ms': row(system, s).p999Ms,
    })),
  ),
);
tables.cpu = markdownTable(
  systems.map((system) => {
    const c = row(system, 'c64-many');
    const k = /^chain k=(\d+)/.exec(system);
    return {
      system,
      'commits/s (64 clients)': c.commitsPerSecond,
      'server CPU µs/commit': c.serverCpuUs,
      'per process µs/commit': k === null ? '–' : String(Math.round(c.serverCpuUs / Number(k[1]))),
      'generator CPU µs/commit': c.generatorCpuUs,
      'CPU-bound ceiling/s': Math.round((bench.machine.cpus * 1e6) / (c.serverCpuUs + c.generatorCpuUs)),
    };
  }),
);
tables.views = markdownTable(
  bench.views.map((v) => ({
    system: v.system,
    'speculative p50 ms': v.speculativeP50Ms,
    'commit p50 ms': v.commitP50Ms,
    ratio: x2(v.speculativeP50Ms / v.commitP50Ms),
    'speculative p99 ms': v.speculativeP99Ms,
    'commit p99 ms': v.commitP99Ms,
  })),
);
tables.openloop = markdownTable(
  bench.openLoop.map((o) => ({
    system: o.system,
    'offered/s': o.ratePerSecond,
    'committed/s': o.commitsPerSecond,
    refused: o.refused,
    'p50 ms': o.p50Ms,
    'p90 ms': o.p90Ms,
    'p99 ms': o.p99Ms,
    'p99.9 ms': o.p999Ms,
  })),
);
const isChain = (system: string): boolean => system.startsWith('chain');
tables.baselines = markdownTable(
  systems
    .filter((system) => !isChain(system))
    .map((system) => ({
      system,
      'c16 p50 ms': row(system, 'c16-many').p50Ms,
      'c64-many commits/s': row(system, 'c64-many').commitsPerSecond,
      'c64-hot commits/s': row(system, 'c64-hot').commitsPerSecond,
      'server CPU µs/commit (c64-many)': row(system, 'c64-many').serverCpuUs,
      best: system === bench.bestBaselineC64Many ? 'best at c64-many' : '',
    })),
);
const viaProxy = 'chain k=3 via proxy';
// The strongest baseline whose commit is synced, like the chain's (flush=1, synchronous_commit on).
const bestSync = bench.rows
  .filter((x) => x.scenario === 'c64-many' && !isChain(x.system) && x.system !== 'memory' && /flush=1|sync=on/.test(x.system))
  .sort((a, b) => b.commitsPerSecond - a.commitsPerSecond)[0];
tables.proxy = markdownTable(
  ['chain k=3', viaProxy].map((system) => ({
    system,
    'c1 p50 ms': row(system, 'c1-many').p50Ms,
    'c16 p50 ms': row(system, 'c16-many').p50Ms,
    'c64-many commits/s': row(system, 'c64-many').commitsPerSecond,
    'c64-hot commits/s': row(system, 'c64-hot').commitsPerSecond,
    'server CPU µs/commit (c64-many)': row(system, 'c64-many').serverCpuUs,
    'generator CPU µs/commit': row(system, 'c64-many').generatorCpuUs,
    'speculative p50 ms': view(system).speculativeP50Ms,
  })),
);
tables.equalcpu =
  equal === undefined || equal.rows.length === 0
    ? `*(not measured: ${equal?.skipped ?? 'this bench JSON has no equal-CPU sweep'})*`
    : markdownTable(
        equal.rows.map((x) => ({
          system: x.system,
          scenario: x.scenario,
          'CPUs per node': x.quotaCpus,
          'commits/s': x.commitsPerSecond,
          'p50 ms': x.p50Ms,
          'server CPU µs/commit': x.serverCpuUs,
          'shared-CPU commits/s': row(x.system, x.scenario).commitsPerSecond,
        })),
      );
const r = bench.ratios;
// The five goals the issue set: each ratio with its bound, stated once for the table and the count.
const goals: { ratio: string; measured: number; goal: string; met: boolean }[] = [
  { ratio: 'chain k=3 sync commit p50 ÷ MySQL flush=1 p50 (16 clients)', measured: r.k3SyncP50OverMysqlFlush1P50 as number, goal: '≤ 1', met: (r.k3SyncP50OverMysqlFlush1P50 as number) <= 1 },
  {
    ratio: 'chain k=3 ÷ MySQL flush=1 throughput, 64 clients, many documents',
    measured: r.chainK3ThroughputOverMysqlManyDocs64 as number,
    goal: '≥ 3',
    met: (r.chainK3ThroughputOverMysqlManyDocs64 as number) >= 3,
  },
  {
    ratio: 'chain k=3 ÷ MySQL flush=1 throughput, 64 clients, one hot document',
    measured: r.chainK3ThroughputOverMysqlHotDoc64 as number,
    goal: '≥ 10',
    met: (r.chainK3ThroughputOverMysqlHotDoc64 as number) >= 10,
  },
  { ratio: 'k=3 speculative-view p50 ÷ commit p50', measured: r.k3SpeculativeP50OverCommitP50 as number, goal: '≤ 0.2', met: (r.k3SpeculativeP50OverCommitP50 as number) <= 0.2 },
  { ratio: `throughput k=${kMax} ÷ k=${kMin}, 64 clients`, measured: r.throughputK5OverK1Clients64 as number, goal: '≥ 0.8', met: (r.throughputK5OverK1Clients64 as number) >= 0.8 },
];
tables.ratios = markdownTable(goals.map((g) => ({ ratio: g.ratio, measured: x2(g.measured), goal: g.goal, met: g.met ? 'yes' : '**no**' })));
const goalsMet = goals.filter((g) => g.met).length;
// Issue 16's goals, from the same run (a null ratio: not measured in this run).
const measuredOr = (x: number | null | undefined): string => (x === null || x === undefined ? 'not measured' : x2(x));
const goals16: { figure: string; value: number | null | undefined; goal: string; met: (x: number) => boolean }[] = [
  { figure: 'CPU per commit per replica (µs), k=3, 64 clients, many documents', value: r.cpuUsPerReplicaCommitK3, goal: '≤ 15', met: (x) => x <= 15 },
  { figure: 'k=3 sync commit p50 ÷ MySQL flush=1 p50, 16 clients', value: r.k3SyncP50OverMysqlFlush1P50, goal: '≤ 1.0', met: (x) => x <= 1 },
  { figure: 'k=3 throughput ÷ seed MySQL host, 64 clients, many documents', value: r.chainK3ThroughputOverMysqlManyDocs64, goal: '≥ 3', met: (x) => x >= 3 },
  { figure: 'k=3 throughput ÷ seed MySQL host, 64 clients, one hot document', value: r.chainK3ThroughputOverMysqlHotDoc64, goal: '≥ 10', met: (x) => x >= 10 },
  { figure: `k=5 ÷ k=1 throughput, ${equal?.quotaCpus ?? '–'} CPUs per node process`, value: r.throughputK5OverK1EqualCpu, goal: '≥ 0.8', met: (x) => x >= 0.8 },
  { figure: 'k=3 speculative-view p50 ÷ commit p50', value: r.k3SpeculativeP50OverCommitP50, goal: '≤ 0.2', met: (x) => x <= 0.2 },
  { figure: `k=3 throughput ÷ best baseline (${bench.bestBaselineC64Many ?? '–'}), 64 clients, many documents`, value: r.k3ThroughputOverBestBaseline, goal: 'reported, ≥ 1', met: (x) => x >= 1 },
];
// The same comparisons under equal per-node CPU (reported, no goal of their own).
const equalRatios = markdownTable([
  { figure: `k=3 throughput ÷ seed MySQL host, ${equal?.quotaCpus ?? '–'} CPUs per process, 64 clients, many documents`, measured: measuredOr(r.k3ThroughputOverMysqlEqualCpu) },
  { figure: `k=3 throughput ÷ best MySQL baseline, ${equal?.quotaCpus ?? '–'} CPUs per process, 64 clients, many documents`, measured: measuredOr(r.k3ThroughputOverBestBaselineEqualCpu) },
]);
tables.goals = markdownTable(
  goals16.map((g) => ({ figure: g.figure, measured: measuredOr(g.value), goal: g.goal, met: g.value === null || g.value === undefined ? '–' : g.met(g.value) ? 'yes' : '**no**' })),
);
tables.equalratios = equalRatios;
const goals16Met = goals16.filter((g) => g.value !== null && g.value !== undefined && g.met(g.value)).length;
tables.failover = markdownTable([
  ...failover.summary.map((s) => ({ killed: s.role, kills: s.runs, 'median detection ms': s.medianDetectMs, 'median first new commit ms': s.medianFirstCommitMs })),
  { killed: '**all**', kills: failover.summary.reduce((a, s) => a + s.runs, 0), 'median detection ms': failover.all.medianDetectMs, 'median first new commit ms': failover.all.medianFirstCommitMs },
]);
tables.planted = markdownTable(
  sims.planted.map((p) => ({
    'planted bug': `\`${p.bug}\``,
    'caught by': p.invariant,
    seeds: `${p.seedsCaught}/${p.seeds}`,
    'runs to first catch': p.runsToCatchMin === p.runsToCatchMax ? String(p.runsToCatchMin) : `${p.runsToCatchMin}–${p.runsToCatchMax}`,
    'shrunk schedule lines': p.shrunkScheduleLines,
  })),
);
tables.simulation = markdownTable([
  { measure: 'scenarios (seed 1)', value: n0(sims.clean.runs) },
  { measure: 'simulated events', value: n0(sims.clean.events) },
  { measure: 'wall time', value: `${sims.clean.seconds} s` },
  { measure: 'events per second', value: n0(sims.clean.eventsPerSecond) },
  { measure: 'invariant violations', value: String(sims.clean.violations) },
  { measure: 'runs with SWIM and the automatic manager', value: n0(sims.clean.autopilotRuns) },
  { measure: 'running nodes declared dead with no fault anywhere in the last 2 s (false deaths)', value: String(sims.clean.falsePositives) },
  { measure: 'running nodes declared dead within 2 s of a fault anywhere (cut off, slowed or paused)', value: n0(sims.clean.deathsWhileCutOff) },
]);
const sources = [
  {
    file: `benchmarks/results/${benchName}.json`,
    command: bench.settings.quick ? 'npm run bench -- --quick' : 'npm run bench',
    date: bench.date.slice(0, 10),
    commit: bench.commit,
    cpu: `${bench.machine.cpus} × ${bench.machine.cpuModel}`,
  },
  { file: 'benchmarks/results/failover.json', command: 'npm run failover', date: failover.date.slice(0, 10), commit: failover.commit, cpu: `${failover.machine.cpus} × ${failover.machine.cpuModel}` },
  {
    file: 'benchmarks/results/manager-failover.json',
    command: 'npm run failover:manager',
    date: managerFailover.date.slice(0, 10),
    commit: managerFailover.commit,
    cpu: `${managerFailover.machine.cpus} × ${managerFailover.machine.cpuModel}`,
  },
  { file: 'benchmarks/results/simulations.json', command: 'npm run simulate:report', date: sims.date.slice(0, 10), commit: sims.commit, cpu: `${sims.machine.cpus} × ${sims.machine.cpuModel}` },
];
tables.sources = markdownTable(sources);

// ---------- values ----------
const values: Record<string, string> = {
  machine: `${bench.machine.cpus} × ${bench.machine.cpuModel}, ${bench.machine.memoryGiB} GiB, Node.js ${bench.machine.node}, ${bench.machine.platform}`,
  benchCommand: bench.settings.quick ? 'npm run bench -- --quick' : 'npm run bench',
  benchSeconds: String(bench.settings.seconds),
  benchRounds: String(bench.settings.rounds),
  benchElapsedS: String(bench.settings.elapsedSeconds),
  openRate: n0(bench.settings.rate),
  k3P50Ms: x2(row('chain k=3', manyScenario).p50Ms),
  k1P50Ms: x2(row('chain k=1', manyScenario).p50Ms),
  k2P50Ms: chainKs.includes(2) ? x2(row('chain k=2', manyScenario).p50Ms) : '–',
  k5P50Ms: x2(row(`chain k=${kMax}`, manyScenario).p50Ms),
  mysql1P50Ms: x2(row('mysql flush=1', manyScenario).p50Ms),
  mysql2P50Ms: x2(row('mysql flush=2', manyScenario).p50Ms),
  memP50Ms: x2(row('memory', manyScenario).p50Ms),
  k3NoSyncP50Ms: x2(row('chain k=3 no-sync', manyScenario).p50Ms),
  k3c1P50Ms: x2(row('chain k=3', 'c1-many').p50Ms),
  mysql1c1P50Ms: x2(row('mysql flush=1', 'c1-many').p50Ms),
  k3P50OverMysql: x2(r.k3SyncP50OverMysqlFlush1P50 as number),
  k3ManyTput: n0(row('chain k=3', 'c64-many').commitsPerSecond),
  k1ManyTput: n0(row('chain k=1', 'c64-many').commitsPerSecond),
  k5ManyTput: n0(row(`chain k=${kMax}`, 'c64-many').commitsPerSecond),
  mysql1ManyTput: n0(row('mysql flush=1', 'c64-many').commitsPerSecond),
  memoryManyTput: n0(row('memory', 'c64-many').commitsPerSecond),
  k3HotTput: n0(row('chain k=3', 'c64-hot').commitsPerSecond),
  mysql1HotTput: n0(row('mysql flush=1', 'c64-hot').commitsPerSecond),
  manyRatio: x2(r.chainK3ThroughputOverMysqlManyDocs64 as number),
  k1OverMysqlMany: x2(row('chain k=1', 'c64-many').commitsPerSecond / row('mysql flush=1', 'c64-many').commitsPerSecond),
  hotRatio: x2(r.chainK3ThroughputOverMysqlHotDoc64 as number),
  k5OverK1: x2(r.throughputK5OverK1Clients64 as number),
  kMax: String(kMax),
  k3SpecP50Ms: x2(view('chain k=3').speculativeP50Ms),
  k3CommitP50Ms: x2(view('chain k=3').commitP50Ms),
  specRatio: x2(r.k3SpeculativeP50OverCommitP50 as number),
  k3NoSyncManyTput: n0(row('chain k=3 no-sync', 'c64-many').commitsPerSecond),
  mysql2ManyTput: n0(row('mysql flush=2', 'c64-many').commitsPerSecond),
  k1CpuUs: String(row('chain k=1', 'c64-many').serverCpuUs),
  k3CpuUs: String(row('chain k=3', 'c64-many').serverCpuUs),
  k5CpuUs: String(row(`chain k=${kMax}`, 'c64-many').serverCpuUs),
  k5CpuPerNodeUs: String(Math.round(row(`chain k=${kMax}`, 'c64-many').serverCpuUs / kMax)),
  mysql1CpuUs: String(row('mysql flush=1', 'c64-many').serverCpuUs),
  memoryCpuUs: String(row('memory', 'c64-many').serverCpuUs),
  cpus: String(bench.machine.cpus),
  goalsMet: goalsMet === 0 ? 'none of the five goals' : goalsMet === 5 ? 'all five goals' : `${goalsMet} of the five goals`,
  ceilingShare: (() => {
    const shares = systems.map((system) => {
      const c = row(system, 'c64-many');
      return (100 * c.commitsPerSecond * (c.serverCpuUs + c.generatorCpuUs)) / (bench.machine.cpus * 1e6);
    });
    return `${Math.round(Math.min(...shares))} to ${Math.round(Math.max(...shares))}%`;
  })(),
  openK3P50Ms: x2(open('chain k=3').p50Ms),
  openMysql1P50Ms: x2(open('mysql flush=1').p50Ms),
  openMemoryP50Ms: x2(open('memory').p50Ms),
  timelineDetectMs: String(t.detectedAtMs - t.killAtMs),
  timelineReconfigMs: String(t.reconfiguredAtMs - t.killAtMs),
  timelineFirstCommitMs: String(t.firstCommitAfterKillMs),
  timelineCommits: n0(t.commits),
  timelineLost: String(t.ackedLost),
  failoverDetectMs: String(failover.all.medianDetectMs),
  failoverFirstCommitMs: String(failover.all.medianFirstCommitMs),
  headKills: String(failover.summary.find((x) => x.role === 'head')?.runs ?? 0),
  k1c1P50Ms: x2(row('chain k=1', 'c1-many').p50Ms),
  headFailoverMs: String(failover.summary.find((x) => x.role === 'head')?.medianFirstCommitMs ?? -1),
  failoverKills: String(failover.summary.reduce((a, s) => a + s.runs, 0)),
  failoverPauses: String(failover.all.pauses),
  failoverFalsePositives: String(failover.all.falsePositives),
  failoverLost: String(failover.all.ackedLost),
  failoverCommits: n0(failover.all.commits),
  managerKills: String(managerFailover.kills),
  managerTakeoverMs: n0(managerFailover.takeoverMsMedian),
  managerTakeoverMaxMs: n0(managerFailover.takeoverMsMax),
  commitP50BeforeTakeoverMs: x2(managerFailover.commitMsBefore.p50),
  commitP99BeforeTakeoverMs: x2(managerFailover.commitMsBefore.p99),
  commitP50DuringTakeoverMs: x2(managerFailover.commitMsDuringTakeover.p50),
  commitP99DuringTakeoverMs: x2(managerFailover.commitMsDuringTakeover.p99),
  headKillAloneMs: n0(managerFailover.headKillFirstCommitMs.aloneMedian),
  headKillWithLeaderMs: n0(managerFailover.headKillFirstCommitMs.withLeaderKilledMedian),
  headKillPairs: String(managerFailover.headKillFirstCommitMs.alone.length),
  managerFailoverLost: String(managerFailover.lost),
  managerFailoverAcked: n0(managerFailover.acknowledged),
  simRuns: n0(sims.clean.runs),
  simEventsPerSecond: n0(sims.clean.eventsPerSecond),
  simViolations: String(sims.clean.violations),
  plantedCount: String(sims.planted.length),
  goals16Met: goals16Met === 0 ? 'none of the seven' : `${goals16Met} of the seven`,
  equalK5OverK2: (() => {
    const at = (k: number): number | undefined => equalRows.find((x) => x.k === k)?.commitsPerSecond;
    const k2 = at(2);
    const k5 = at(kMax);
    return k2 === undefined || k5 === undefined ? '–' : x2(k5 / k2);
  })(),
  k3OverMysqlEqual: measuredOr(r.k3ThroughputOverMysqlEqualCpu),
  k3OverBestEqual: measuredOr(r.k3ThroughputOverBestBaselineEqualCpu),
  bestEqualBaseline: equal?.rows.filter((x) => x.k === 0 && x.scenario === 'c64-many').sort((a, b) => b.commitsPerSecond - a.commitsPerSecond)[0]?.system ?? '–',
  bestSyncBaseline: bestSync?.system ?? '–',
  bestSyncBaselineManyTput: bestSync === undefined ? '–' : n0(bestSync.commitsPerSecond),
  k3OverBestSync: bestSync === undefined ? '–' : x2(row('chain k=3', 'c64-many').commitsPerSecond / bestSync.commitsPerSecond),
  warmSeconds: String((bench.settings as { warmSeconds?: number }).warmSeconds ?? 0),
  cpuPerReplicaK3Us: measuredOr(r.cpuUsPerReplicaCommitK3),
  equalQuota: String(equal?.quotaCpus ?? '–'),
  equalK5OverK1: measuredOr(r.throughputK5OverK1EqualCpu),
  bestBaseline: bench.bestBaselineC64Many ?? '–',
  bestBaselineManyTput: bench.bestBaselineC64Many === undefined ? '–' : n0(row(bench.bestBaselineC64Many, 'c64-many').commitsPerSecond),
  k3OverBest: measuredOr(r.k3ThroughputOverBestBaseline),
  proxyManyTput: n0(row(viaProxy, 'c64-many').commitsPerSecond),
  proxyC16P50Ms: x2(row(viaProxy, 'c16-many').p50Ms),
  proxyCpuUs: String(row(viaProxy, 'c64-many').serverCpuUs),
  proxySpecP50Ms: x2(view(viaProxy).speculativeP50Ms),
  plantedRunsMax: String(Math.max(...sims.planted.map((p) => p.runsToCatchMax))),
};
const claims = proseClaims(bench, benchName);
const broken = claims.filter(([, holds]) => !holds).map(([claim]) => claim);
if (broken.length > 0) {
  console.error(`the data no longer supports these statements in papers/adama-chain.src.md; revise them (and the list in papers/inputs.ts):\n- ${broken.join('\n- ')}`);
  process.exit(1);
}
for (const [name, table] of Object.entries(tables)) values[`table:${name}`] = table;
for (const name of Object.keys(figures)) values[`figure:${name}`] = `![${name.replace(/-/g, ' ')}](figures/${name}.svg)`;

const source = readFileSync(path.join(here, 'adama-chain.src.md'), 'utf8');
const banner = '<!-- Generated by `npm run paper` from papers/adama-chain.src.md and benchmarks/results/*.json. Edit the source, not this file. -->\n';
const outputs = new Map<string, string>([
  [path.join(here, 'adama-chain.md'), banner + fill(source, values)],
  ...Object.entries(figures).map(([name, svg]) => [path.join(here, 'figures', `${name}.svg`), svg] as [string, string]),
]);
if (args.check === true) {
  const stale = [...outputs].filter(([file, text]) => !existsSync(file) || readFileSync(file, 'utf8') !== text).map(([file]) => path.relative(path.join(here, '..'), file));
  if (stale.length > 0) {
    console.error(`stale (run npm run paper and commit): ${stale.join(', ')}`);
    process.exit(1);
  }
  console.log(`papers/ is up to date with benchmarks/results (${outputs.size} files)`);
} else {
  mkdirSync(path.join(here, 'figures'), { recursive: true });
  for (const [file, text] of outputs) writeFileSync(file, text);
  console.log(`wrote papers/adama-chain.md and ${Object.keys(figures).length} figures in papers/figures/ from ${sources.map((s) => s.file).join(', ')}`);
}
