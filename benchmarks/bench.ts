// npm run bench [-- --quick] [--seconds S] [--rounds R]
//
// The comparison matrix, side by side in one process tree: every system is started in turn
// (systems interleaved, order reversed every other round, so machine drift hits all alike) and
// driven through each load scenario by the same closed-loop generator. Prints a table and
// writes benchmarks/results/bench.json (bench-quick.json with --quick).
//
// For chain systems it also measures the head's optimistic path: 16 subscribed clients, time to
// the speculative view against time to the commit. Every system also runs one open-loop
// scenario at a fixed rate (latency from each request's due time). Last, a throughput timeline
// on a real cluster with SWIM and the automatic manager, with the head killed half way.
// npm run paper turns the JSON into the paper's tables and figures.
//
// Issue 16, equal hardware per node: --per-node-cpu Q runs the whole matrix with each system
// process in a cgroup of its own limited to Q CPUs (benchmarks/cgroups.ts), and every run
// also sweeps the chain over k under equal per-node CPU (--equal-cpu Q, default 0.3), so
// throughput against k is not just k processes sharing two cores.

import os from 'node:os';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { type BaselineMode, baselineTable, bestBaseline, databaseOf, type PgSync, pgStartHint, pgUrl } from './baselines.ts';
import { available, CpuGroups, cfsPeriodUs, quotaCpusMin, removeStaleGroups } from './cgroups.ts';
import { mysqlUrlDefault } from './mysql.ts';
import { parseArgs, printTable, writeResults } from './report.ts';
import {
  defaultWorkload,
  messageSource,
  workloadMixes,
  type Workload,
  cdfPoints,
  closedLoopWithViews,
  failoverTimeline,
  histogram,
  measuredClosedLoop,
  openLoop,
  percentileMs,
  startChain,
  startChainViaProxy,
  startHost,
  type Started,
} from './systems.ts';

const usage = `npm run bench -- [--quick] [--seconds S] [--rounds R] [--rate N] [--timeline-seconds T] [--doc-type T] [--mix simple|workload]
    [--per-node-cpu Q] [--equal-cpu Q] [--warm-seconds W]

Systems: chain k=1..5 with sync writes, chain k=3 without sync, chain k=3 without TLS
(--transport plain: what TLS costs, side by side), chain k=3 via proxy (the product's client
path: WebSocket clients with signed viewer tokens through a proxy process, whose CPU counts
as the system's), MySQL flush=1 and flush=2 (the
"Durable" host: one transaction per message), mysql-batch flush=1 and flush=2 (group commit:
a tick's messages in one transaction), the same two hosts on PostgreSQL with
synchronous_commit on and off (pg, pg-batch), and the in-memory "Ultra YOLO" host.
Scenarios: 1, 16 and 64 closed-loop clients over many documents (one each), 64 clients on
one hot document, and an open loop at --rate requests/s (default 1000) over 64 documents.
Then the failover timeline: 4 node processes, one chain of 3, 16 clients, the head SIGKILLed
half way through T seconds (default 12, quick 6). Defaults: 4 s per scenario, 2 rounds, k = 1..5. --quick: k = 1, 3, 5 only, 1 s
per scenario, 1 round, and of the new baselines only mysql-batch flush=1 and pg-batch sync=on
(under 3 minutes). Needs MySQL at MYSQL_URL (default ${mysqlUrlDefault}); sets
innodb_flush_log_at_trx_commit itself and restores it. Needs PostgreSQL at PG_URL (default
${pgUrl()}; start it with ${pgStartHint}); synchronous_commit is set per session. Writes
benchmarks/results/bench.json (bench-quick.json with --quick). Every system, freshly started,
first runs W s (default 3, quick 1) of unrecorded load at 64 clients, so cells compare warm
processes (a cold node spends its first seconds in V8's compiler).

What the clients send (closed and open loop): --doc-type counter|chat|poll|card-table (default
counter) and --mix simple (one valid message per type: counter add, chat say, poll vote,
card-table sit; the default) or workload (the engine's mix of channels, viewers and illegal
moves). A non-default choice adds -TYPE-MIX to the file name; npm run paper reads the default
files only. The optimistic-path measurement and the failover timeline always use counter adds.

Equal hardware per node (cgroup v1 cpu controller at /sys/fs/cgroup/cpu, as root):
--per-node-cpu Q puts every process of the system under test (each chain node, the baseline
host, mariadbd) in a cgroup of its own with a quota of Q CPUs while that system runs; the load
generator and the failover timeline stay unconfined. Adds -cpuQ to the file name. Exits with 2
if cgroups are unavailable. --equal-cpu Q (default 0.3; 0 turns it off): after the matrix, the
chain over k = 1..5 (quick: 1 and 5) on c64-many (full run: c1-many too) with Q CPUs per node,
and the baselines mysql flush=1, mysql-batch flush=1 and flush=2 (quick: the first two) on
c64-many with Q CPUs for the host and Q for mariadbd (PostgreSQL, one process per connection, is
not held to one quota; --per-node-cpu gives each of its processes one), stored under
equalCpu; if cgroups are unavailable it is skipped with the reason (CI=true: exit 2).`;
const a = parseArgs(process.argv.slice(2), usage, {
  quick: 'flag',
  seconds: 'number',
  rounds: 'number',
  rate: 'number',
  'timeline-seconds': 'number',
  'warm-seconds': 'number',
  'doc-type': 'string',
  mix: 'string',
  'per-node-cpu': 'number',
  'equal-cpu': 'string',
});
const mix = (a.mix as string | undefined) ?? defaultWorkload.mix;
if (!(workloadMixes as readonly string[]).includes(mix)) {
  console.error(`--mix must be one of ${workloadMixes.join(', ')}, not ${mix}`);
  process.exit(2);
}
const workload: Workload = { docType: (a['doc-type'] as string | undefined) ?? defaultWorkload.docType, mix: mix as Workload['mix'] };
try {
  messageSource(workload, 1, 'check');
} catch (error) {
  console.error(`${(error as Error).message}\n\n${usage}`);
  process.exit(2);
}
const workloadSuffix = workload.docType === defaultWorkload.docType && workload.mix === defaultWorkload.mix ? '' : `-${workload.docType}-${workload.mix}`;
const quick = a.quick === true;
const seconds = (a.seconds as number | undefined) ?? (quick ? 1 : 4);
const rounds = (a.rounds as number | undefined) ?? (quick ? 1 : 2);
const rate = (a.rate as number | undefined) ?? 1_000;
const timelineSeconds = (a['timeline-seconds'] as number | undefined) ?? (quick ? 6 : 12);
// Issue 16: every system is freshly started, and a cold node process spends its first seconds
// in V8's compiler (15-18% of a chain node's CPU in its first 6 s under load, 2% after 10 s, by
// perf). Each system gets the same unrecorded warm-up at 64 clients before its first cell, so
// the cells compare warm processes (mariadbd itself is always warm).
const warmSeconds = (a['warm-seconds'] as number | undefined) ?? (quick ? 1 : 3);
/** The unrecorded warm-up load of a freshly started system. */
const warmUp = (s: Started, prefix: string): Promise<unknown> =>
  warmSeconds > 0 ? measuredClosedLoop(s, { clients: 64, docs: 64, seconds: warmSeconds, prefix: `warm-${prefix}`, workload }, histogram()) : Promise.resolve();
const openLoopShape = { connections: 8, docs: 64 };

// Issue 16: CPU quotas per system process (cgroups), for the whole matrix and for the equal-CPU sweep.
const quotaCpusMax = os.cpus().length;
const perNodeCpu = a['per-node-cpu'] as number | undefined;
const equalCpuQuota = a['equal-cpu'] === undefined ? 0.3 : Number(a['equal-cpu']);
for (const [flag, q] of [
  ['--per-node-cpu', perNodeCpu],
  ['--equal-cpu', equalCpuQuota === 0 ? undefined : equalCpuQuota],
] as const) {
  if (q !== undefined && !(q >= quotaCpusMin && q <= quotaCpusMax)) {
    console.error(`${flag} takes CPUs per process between ${quotaCpusMin} and ${quotaCpusMax} (this machine's cores)${flag === '--equal-cpu' ? ', or 0 for no equal-CPU sweep' : ''}, not ${q}`);
    process.exit(2);
  }
}
const cgroupsCheck = perNodeCpu !== undefined || equalCpuQuota > 0 ? available() : ({ ok: true } as const);
if (!cgroupsCheck.ok) {
  if (perNodeCpu !== undefined || process.env.CI === 'true') {
    console.error(`${perNodeCpu !== undefined ? '--per-node-cpu' : 'the equal-CPU sweep (CI=true)'} needs cpu cgroups, which are unavailable: ${cgroupsCheck.reason}`);
    process.exit(2);
  }
  console.error(`[bench] the equal-CPU sweep will be skipped: ${cgroupsCheck.reason}`);
}
const cpuGroups = cgroupsCheck.ok ? new CpuGroups() : undefined;
if (cpuGroups !== undefined) for (const stale of removeStaleGroups()) console.error(`[bench] removed the cpu cgroup ${stale} of a run that is gone`);
/** Puts each process of `s` in its own group of `quotaCpus` CPUs; returns what moves them back. */
function confine(s: Started, quotaCpus: number): () => void {
  const groups = cpuGroups as CpuGroups;
  const release = (): void => {
    for (const pid of s.pids) groups.release(pid);
  };
  try {
    for (const [i, pid] of s.pids.entries()) groups.confine(s.names?.[i] ?? `p${i + 1}`, pid, quotaCpus);
  } catch (error) {
    release();
    throw error;
  }
  return release;
}

interface System {
  readonly name: string;
  readonly flush?: 1 | 2;
  /** Baseline hosts: the mode, whose table is dropped before the system starts. */
  readonly mode?: BaselineMode;
  start(): Promise<Started>;
}
const mysqlHost = (mode: BaselineMode, flush: 1 | 2): System => ({ name: `${mode} flush=${flush}`, flush, mode, start: () => startHost(mode) });
const pgHost = (mode: BaselineMode, pgSync: PgSync): System => ({ name: `${mode} sync=${pgSync}`, mode, start: () => startHost(mode, { pgSync }) });
const ks = quick ? [1, 3, 5] : [1, 2, 3, 4, 5];
const systems: System[] = [
  ...ks.map((k) => ({ name: `chain k=${k}`, start: () => startChain(k) })),
  { name: 'chain k=3 no-sync', start: () => startChain(3, false) },
  // Issue 15: what TLS costs, side by side (the same chain with the plain HMAC handshake and no TLS).
  { name: 'chain k=3 plain', start: () => startChain(3, true, 'plain') },
  // Issue 16: the product's client path, WebSocket clients with viewer tokens through the proxy process.
  { name: 'chain k=3 via proxy', start: () => startChainViaProxy(3) },
  mysqlHost('mysql', 1),
  mysqlHost('mysql', 2),
  // Issue 16: stronger baselines (group commit, and PostgreSQL); --quick keeps one of each kind.
  ...(quick
    ? [mysqlHost('mysql-batch', 1), pgHost('pg-batch', 'on')]
    : [mysqlHost('mysql-batch', 1), mysqlHost('mysql-batch', 2), pgHost('pg', 'on'), pgHost('pg', 'off'), pgHost('pg-batch', 'on'), pgHost('pg-batch', 'off')]),
  { name: 'memory', start: () => startHost('memory') },
];
const scenarios = [
  { name: 'c1-many', clients: 1, docs: 1 },
  { name: 'c16-many', clients: 16, docs: 16 },
  { name: 'c64-many', clients: 64, docs: 64 },
  { name: 'c64-hot', clients: 64, docs: 1 },
] as const;

const db = await mysql.createConnection(process.env.MYSQL_URL ?? mysqlUrlDefault).catch((e: Error) => {
  console.error(`npm run bench needs MySQL at ${process.env.MYSQL_URL ?? mysqlUrlDefault}: ${e.message}\nStart MariaDB: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`);
  process.exit(1);
});
const pgDb = new pg.Client({ connectionString: pgUrl() });
await pgDb.connect().catch((e: Error) => {
  console.error(`npm run bench needs PostgreSQL at ${pgUrl()}: ${e.message}\nStart it: ${pgStartHint}`);
  process.exit(1);
});
const [[flushRow]] = (await db.query('SELECT @@GLOBAL.innodb_flush_log_at_trx_commit AS f')) as unknown as [[{ f: number }]];
const originalFlush = Number(flushRow.f);
const key = (system: string, scenario: string): string => `${system}|${scenario}`;
const histograms = new Map<string, ReturnType<typeof histogram>>();
const commits = new Map<string, number>();
/** CPU seconds the system's processes, and the load generator, spent in each cell. */
const cpu = new Map<string, { server: number; generator: number }>();
const openLoops = new Map<string, { h: ReturnType<typeof histogram>; sent: number; committed: number; refused: number; failed: number }>();
const viewHistograms = new Map<string, { speculative: ReturnType<typeof histogram>; committed: ReturnType<typeof histogram> }>();
const started = Date.now();
// Ctrl-C (or SIGTERM) stops the system under test and restores the MySQL setting before exiting;
// it first moves every confined process back and removes the cpu cgroups (also done on exit).
let current: Started | undefined;
const restoreCgroups = (): void => {
  try {
    cpuGroups?.restore();
  } catch (error) {
    console.error(`[bench] ${(error as Error).message}`);
  }
};
process.once('exit', restoreCgroups);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    restoreCgroups();
    console.error(`[bench] ${signal}: cpu cgroups restored; stopping the system under test and restoring innodb_flush_log_at_trx_commit = ${originalFlush}`);
    void Promise.allSettled([current?.stop(), db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`)]).then(() => process.exit(130));
  });
}
/** Before a system starts: its MySQL durability setting, and an empty table for a baseline host. */
async function prepare(system: System): Promise<void> {
  if (system.flush !== undefined) await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${system.flush}`);
  if (system.mode !== undefined && databaseOf(system.mode) === 'mysql') await db.query(`DROP TABLE IF EXISTS ${baselineTable(system.mode)}`);
  if (system.mode !== undefined && databaseOf(system.mode) === 'pg') await pgDb.query(`DROP TABLE IF EXISTS ${baselineTable(system.mode)}`);
}
try {
  for (let round = 1; round <= rounds; round++) {
    for (const system of round % 2 === 1 ? systems : [...systems].reverse()) {
      await prepare(system);
      const s = await system.start();
      current = s;
      const release = perNodeCpu === undefined ? () => {} : confine(s, perNodeCpu);
      try {
        await warmUp(s, `r${round}`);
        for (const scenario of scenarios) {
          const k = key(system.name, scenario.name);
          if (!histograms.has(k)) histograms.set(k, histogram());
          const m = await measuredClosedLoop(
            s,
            { clients: scenario.clients, docs: scenario.docs, seconds, prefix: `${scenario.name}-r${round}`, workload },
            histograms.get(k) as ReturnType<typeof histogram>,
          );
          commits.set(k, (commits.get(k) ?? 0) + m.commits);
          const c = cpu.get(k) ?? { server: 0, generator: 0 };
          cpu.set(k, { server: c.server + m.serverCpuSeconds, generator: c.generator + m.generatorCpuSeconds });
        }
        const ol = openLoops.get(system.name) ?? { h: histogram(), sent: 0, committed: 0, refused: 0, failed: 0 };
        openLoops.set(system.name, ol);
        const r = await openLoop(s, { rate, seconds, ...openLoopShape, prefix: `open-r${round}`, workload, client: s.client }, ol.h);
        ol.sent += r.sent;
        ol.committed += r.committed;
        ol.refused += r.refused;
        ol.failed += r.failed;
        if (system.name.startsWith('chain')) {
          // The head's optimistic path: time to the speculative view against time to the commit.
          const sk = key(system.name, 'views');
          if (!viewHistograms.has(sk)) viewHistograms.set(sk, { speculative: histogram(), committed: histogram() });
          const vh = viewHistograms.get(sk) as { speculative: ReturnType<typeof histogram>; committed: ReturnType<typeof histogram> };
          await closedLoopWithViews(s, { clients: 16, seconds, prefix: `views-r${round}`, client: s.client }, vh.speculative, vh.committed);
        }
      } finally {
        current = undefined;
        await s.stop().finally(release);
      }
      console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] round ${round}/${rounds}: ${system.name} done`);
    }
  }
} catch (error) {
  restoreCgroups();
  await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`);
  throw error;
}

// Issue 16: the chain's k sweep under equal per-node CPU, each node process in its own cgroup of
// equalCpuQuota CPUs (the generator outside), for the figure next to the shared-CPU rows.
const equalCpuKs = quick ? [1, 5] : [1, 2, 3, 4, 5];
const equalCpuScenarios = scenarios.filter((sc) => sc.name === 'c64-many' || (!quick && sc.name === 'c1-many'));
// The baselines under the same quotas (their host and database server processes each in a group
// of their own), at 64 clients over many documents: the chain's ratios under equal per-node CPU.
// PostgreSQL is not among them: it serves each connection from a process of its own, which
// confine() would give a quota each (and backends started later none), so it would not be held
// to one machine's worth of CPU; mariadbd is one process, held to one quota.
const equalBaselineNames = quick ? ['mysql flush=1', 'mysql-batch flush=1'] : ['mysql flush=1', 'mysql-batch flush=1', 'mysql-batch flush=2'];
const equalSystems: { name: string; k: number; system?: System; start(): Promise<Started>; scenarios: readonly (typeof scenarios)[number][] }[] = [
  ...equalCpuKs.map((k) => ({ name: `chain k=${k}`, k, start: () => startChain(k), scenarios: equalCpuScenarios })),
  ...systems.filter((x) => equalBaselineNames.includes(x.name)).map((x) => ({ name: x.name, k: 0, system: x, start: () => x.start(), scenarios: scenarios.filter((sc) => sc.name === 'c64-many') })),
];
const equalCpuSkipped = equalCpuQuota === 0 ? 'turned off (--equal-cpu 0)' : cgroupsCheck.ok ? undefined : cgroupsCheck.reason;
/** Per cell: CPU seconds of the nodes and the generator, wall seconds measured, and each node's (by index) active and throttled CFS periods. */
const equalCells = new Map<string, { h: ReturnType<typeof histogram>; commits: number; server: number; generator: number; wall: number; periods: number[]; throttledPeriods: number[] }>();
if (equalCpuSkipped === undefined) {
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const eq of round % 2 === 1 ? equalSystems : [...equalSystems].reverse()) {
        if (eq.system !== undefined) await prepare(eq.system);
        const s = await eq.start();
        current = s;
        const release = confine(s, equalCpuQuota);
        const throttling = (): { periods: number; throttledPeriods: number }[] => s.pids.map((pid) => (cpuGroups as CpuGroups).throttling(pid));
        try {
          await warmUp(s, `eq-r${round}`);
          for (const scenario of eq.scenarios) {
            const cell = equalCells.get(key(eq.name, scenario.name)) ?? {
              h: histogram(),
              commits: 0,
              server: 0,
              generator: 0,
              wall: 0,
              periods: new Array<number>(s.pids.length).fill(0),
              throttledPeriods: new Array<number>(s.pids.length).fill(0),
            };
            equalCells.set(key(eq.name, scenario.name), cell);
            const before = throttling();
            const m = await measuredClosedLoop(s, { clients: scenario.clients, docs: scenario.docs, seconds, prefix: `eq-${scenario.name}-r${round}`, workload }, cell.h);
            cell.commits += m.commits;
            cell.server += m.serverCpuSeconds;
            cell.generator += m.generatorCpuSeconds;
            cell.wall += m.wallSeconds;
            for (const [i, t] of throttling().entries()) {
              cell.periods[i] = (cell.periods[i] as number) + t.periods - (before[i]?.periods ?? 0);
              cell.throttledPeriods[i] = (cell.throttledPeriods[i] as number) + t.throttledPeriods - (before[i]?.throttledPeriods ?? 0);
            }
          }
        } finally {
          current = undefined;
          await s.stop().finally(release);
        }
        console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] round ${round}/${rounds}: ${eq.name} at ${equalCpuQuota} CPUs per process done`);
      }
    }
  } finally {
    restoreCgroups();
    // The baselines of the sweep set it too: restored here, on success or not.
    await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`);
  }
} else console.error(`[bench] equal-CPU sweep skipped: ${equalCpuSkipped}`);
await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`);
await db.end();
await pgDb.end();
const equalCpuRows = [...equalCells].map(([cellKey, c]) => {
  const [system, scenarioName] = cellKey.split('|') as [string, string];
  const scenario = scenarios.find((sc) => sc.name === scenarioName) as (typeof scenarios)[number];
  /** The chain's length; 0 for a baseline. */
  const k = (equalSystems.find((x) => x.name === system) as (typeof equalSystems)[number]).k;
  const us = (x: number): number => (c.commits > 0 ? Math.round((x * 1e6) / c.commits) : -1);
  const shares = c.periods.map((p, i) => (p > 0 ? (c.throttledPeriods[i] as number) / p : 0));
  const share = (x: number): number => Number(x.toFixed(2));
  return {
    system,
    k,
    scenario: scenario.name,
    clients: scenario.clients,
    docs: scenario.docs,
    quotaCpus: equalCpuQuota,
    commitsPerSecond: Math.round(c.commits / (seconds * rounds)),
    serverCpuUs: us(c.server),
    generatorCpuUs: us(c.generator),
    /** CPUs the k node processes used together over the measured wall time (at most k × quotaCpus). */
    serverCpus: Number((c.server / c.wall).toFixed(2)),
    /** The share of a node's active CFS periods in which it hit its quota: the head, and the most of any node. */
    headThrottledShare: share(shares[0] as number),
    maxThrottledShare: share(Math.max(...shares)),
    p50Ms: percentileMs(c.h, 50),
    p90Ms: percentileMs(c.h, 90),
    p99Ms: percentileMs(c.h, 99),
    p999Ms: percentileMs(c.h, 99.9),
  };
});

/** Microseconds of CPU per commit: in the system's processes, and in the load generator. */
function cpuPerCommit(k: string): { serverCpuUs: number; generatorCpuUs: number } {
  const n = commits.get(k) ?? 0;
  const c = cpu.get(k) ?? { server: Number.NaN, generator: Number.NaN };
  const us = (x: number): number => (n > 0 && Number.isFinite(x) ? Math.round((x * 1e6) / n) : -1);
  return { serverCpuUs: us(c.server), generatorCpuUs: us(c.generator) };
}
const rows = systems.flatMap((system) =>
  scenarios.map((scenario) => {
    const h = histograms.get(key(system.name, scenario.name)) as ReturnType<typeof histogram>;
    return {
      system: system.name,
      scenario: scenario.name,
      clients: scenario.clients,
      docs: scenario.docs,
      commitsPerSecond: Math.round((commits.get(key(system.name, scenario.name)) ?? 0) / (seconds * rounds)),
      ...cpuPerCommit(key(system.name, scenario.name)),
      p50Ms: percentileMs(h, 50),
      p90Ms: percentileMs(h, 90),
      p99Ms: percentileMs(h, 99),
      p999Ms: percentileMs(h, 99.9),
    };
  }),
);
printTable(rows);
const views = [...viewHistograms].map(([k, v]) => ({
  system: k.split('|')[0] as string,
  clients: 16,
  speculativeP50Ms: percentileMs(v.speculative, 50),
  commitP50Ms: percentileMs(v.committed, 50),
  speculativeP99Ms: percentileMs(v.speculative, 99),
  commitP99Ms: percentileMs(v.committed, 99),
}));
console.log('');
printTable(views);
if (equalCpuRows.length > 0) {
  console.log(`\nchain at ${equalCpuQuota} CPUs per node (cgroups):`);
  printTable(equalCpuRows);
}
const open = systems.map((system) => {
  const o = openLoops.get(system.name) as NonNullable<ReturnType<typeof openLoops.get>>;
  return {
    system: system.name,
    ratePerSecond: rate,
    connections: openLoopShape.connections,
    docs: openLoopShape.docs,
    commitsPerSecond: Math.round(o.committed / (seconds * rounds)),
    refused: o.refused,
    failed: o.failed,
    p50Ms: percentileMs(o.h, 50),
    p90Ms: percentileMs(o.h, 90),
    p99Ms: percentileMs(o.h, 99),
    p999Ms: percentileMs(o.h, 99.9),
  };
});
console.log('');
printTable(open);
const cdfs = [
  ...systems.flatMap((system) =>
    scenarios.map((scenario) => ({ system: system.name, scenario: scenario.name, points: cdfPoints(histograms.get(key(system.name, scenario.name)) as ReturnType<typeof histogram>) })),
  ),
  ...systems.map((system) => ({ system: system.name, scenario: `open-${rate}/s`, points: cdfPoints((openLoops.get(system.name) as NonNullable<ReturnType<typeof openLoops.get>>).h) })),
  ...[...viewHistograms].flatMap(([k, v]) => [
    { system: k.split('|')[0] as string, scenario: 'views-speculative', points: cdfPoints(v.speculative) },
    { system: k.split('|')[0] as string, scenario: 'views-commit', points: cdfPoints(v.committed) },
  ]),
];

console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] failover timeline: ${timelineSeconds} s, the head killed at ${timelineSeconds / 2} s`);
const timeline = await failoverTimeline({ nodes: 4, k: 3, clients: 16, seconds: timelineSeconds, bucketMs: 100, log: (line) => console.error(`[bench timeline] ${line}`) });
console.log(
  `\nfailover timeline: head ${timeline.victim} killed at ${timeline.killAtMs} ms; declared dead +${timeline.detectedAtMs - timeline.killAtMs} ms, chain reconfigured +${timeline.reconfiguredAtMs - timeline.killAtMs} ms, first new commit +${timeline.firstCommitAfterKillMs} ms; ${timeline.commits} commits, ${timeline.ackedLost} acknowledged lost`,
);

const row = (system: string, scenario: string) => rows.find((r) => r.system === system && r.scenario === scenario) as (typeof rows)[number];
const ratio = (x: number, y: number): number => Number((x / y).toFixed(2));
const bestC64Many = bestBaseline(rows, 'c64-many') as (typeof rows)[number];
const ratios = {
  k3SyncP50OverMysqlFlush1P50: ratio(row('chain k=3', 'c16-many').p50Ms, row('mysql flush=1', 'c16-many').p50Ms),
  chainK3ThroughputOverMysqlManyDocs64: ratio(row('chain k=3', 'c64-many').commitsPerSecond, row('mysql flush=1', 'c64-many').commitsPerSecond),
  chainK3ThroughputOverMysqlHotDoc64: ratio(row('chain k=3', 'c64-hot').commitsPerSecond, row('mysql flush=1', 'c64-hot').commitsPerSecond),
  throughputK5OverK1Clients64: ratio(row('chain k=5', 'c64-many').commitsPerSecond, row('chain k=1', 'c64-many').commitsPerSecond),
  k3SpeculativeP50OverCommitP50: ratio(
    (views.find((v) => v.system === 'chain k=3') as (typeof views)[number]).speculativeP50Ms,
    (views.find((v) => v.system === 'chain k=3') as (typeof views)[number]).commitP50Ms,
  ),
  // Against the strongest durable baseline of the run, whichever it is (named in bestBaselineC64Many; ratios stay numbers).
  k3ThroughputOverBestBaseline: ratio(row('chain k=3', 'c64-many').commitsPerSecond, bestC64Many.commitsPerSecond),
  // Issue 16: the chain's CPU per commit per replica (k=3, 64 clients, many documents: the server CPU of the three nodes, divided by 3).
  cpuUsPerReplicaCommitK3: Math.round(row('chain k=3', 'c64-many').serverCpuUs / 3),
  // Issue 16, under equal per-node CPU (the sweep's c64-many cells): against the seed's host and the strongest batching baseline.
  k3ThroughputOverMysqlEqualCpu: ((k3, m) => (k3 === undefined || m === undefined ? null : ratio(k3.commitsPerSecond, m.commitsPerSecond)))(
    equalCpuRows.find((r) => r.system === 'chain k=3' && r.scenario === 'c64-many'),
    equalCpuRows.find((r) => r.system === 'mysql flush=1' && r.scenario === 'c64-many'),
  ),
  k3ThroughputOverBestBaselineEqualCpu: ((k3, best) => (k3 === undefined || best === undefined ? null : ratio(k3.commitsPerSecond, best.commitsPerSecond)))(
    equalCpuRows.find((r) => r.system === 'chain k=3' && r.scenario === 'c64-many'),
    bestBaseline(equalCpuRows, 'c64-many'),
  ),
  throughputK5OverK1EqualCpu: ((k1, k5) => (k1 === undefined || k5 === undefined ? null : ratio(k5.commitsPerSecond, k1.commitsPerSecond)))(
    equalCpuRows.find((r) => r.k === 1 && r.scenario === 'c64-many'),
    equalCpuRows.find((r) => r.k === 5 && r.scenario === 'c64-many'),
  ),
};
const bestBaselineC64Many = bestC64Many.system;
console.log(JSON.stringify({ ratios, bestBaselineC64Many }));
for (const r of [...rows, ...open, ...equalCpuRows])
  if (!(r.commitsPerSecond > 0 && Number.isFinite(r.p50Ms))) throw new Error(`no commits for ${r.system} ${'scenario' in r ? r.scenario : 'open loop'}`);
if (timeline.ackedLost > 0 || timeline.firstCommitAfterKillMs < 0)
  throw new Error(`failover timeline: ${timeline.ackedLost} acknowledged messages lost; first commit after the kill ${timeline.firstCommitAfterKillMs} ms`);
const file = writeResults(`${quick ? 'bench-quick' : 'bench'}${workloadSuffix}${perNodeCpu === undefined ? '' : `-cpu${perNodeCpu}`}`, {
  settings: {
    quick,
    seconds,
    rounds,
    rate,
    workload,
    timelineSeconds,
    warmSeconds,
    perNodeCpu: perNodeCpu ?? null,
    mysqlFlushRestoredTo: originalFlush,
    elapsedSeconds: Math.round((Date.now() - started) / 1_000),
  },
  rows,
  equalCpu: { quotaCpus: equalCpuQuota, cfsPeriodUs, ks: equalCpuKs, scenarios: equalCpuScenarios.map((sc) => sc.name), skipped: equalCpuSkipped ?? null, rows: equalCpuRows },
  views,
  openLoop: open,
  ratios,
  bestBaselineC64Many,
  timeline,
  cdfs,
});
console.log(`wrote ${file}`);
