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

import mysql from 'mysql2/promise';
import pg from 'pg';
import { type BaselineMode, baselineTable, bestBaseline, databaseOf, type PgSync, pgStartHint, pgUrl } from './baselines.ts';
import { mysqlUrlDefault } from './mysql.ts';
import { parseArgs, printTable, writeResults } from './report.ts';
import {
  defaultWorkload,
  messageSource,
  workloadMixes,
  type Workload,
  cdfPoints,
  cpuSeconds,
  closedLoop,
  closedLoopWithViews,
  failoverTimeline,
  histogram,
  openLoop,
  percentileMs,
  startChain,
  startChainViaProxy,
  startHost,
  type Started,
} from './systems.ts';

const usage = `npm run bench -- [--quick] [--seconds S] [--rounds R] [--rate N] [--timeline-seconds T] [--doc-type T] [--mix simple|workload]

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
benchmarks/results/bench.json (bench-quick.json with --quick).

What the clients send (closed and open loop): --doc-type counter|chat|poll|card-table (default
counter) and --mix simple (one valid message per type: counter add, chat say, poll vote,
card-table sit; the default) or workload (the engine's mix of channels, viewers and illegal
moves). A non-default choice adds -TYPE-MIX to the file name; npm run paper reads the default
files only. The optimistic-path measurement and the failover timeline always use counter adds.`;
const a = parseArgs(process.argv.slice(2), usage, { quick: 'flag', seconds: 'number', rounds: 'number', rate: 'number', 'timeline-seconds': 'number', 'doc-type': 'string', mix: 'string' });
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
const openLoopShape = { connections: 8, docs: 64 };

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
// Ctrl-C (or SIGTERM) stops the system under test and restores the MySQL setting before exiting.
let current: Started | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`[bench] ${signal}: stopping the system under test and restoring innodb_flush_log_at_trx_commit = ${originalFlush}`);
    void Promise.allSettled([current?.stop(), db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`)]).then(() => process.exit(130));
  });
}
try {
  for (let round = 1; round <= rounds; round++) {
    for (const system of round % 2 === 1 ? systems : [...systems].reverse()) {
      if (system.flush !== undefined) await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${system.flush}`);
      if (system.mode !== undefined && databaseOf(system.mode) === 'mysql') await db.query(`DROP TABLE IF EXISTS ${baselineTable(system.mode)}`);
      if (system.mode !== undefined && databaseOf(system.mode) === 'pg') await pgDb.query(`DROP TABLE IF EXISTS ${baselineTable(system.mode)}`);
      const s = await system.start();
      current = s;
      try {
        for (const scenario of scenarios) {
          const k = key(system.name, scenario.name);
          if (!histograms.has(k)) histograms.set(k, histogram());
          const cpuBefore = cpuSeconds(s.pids);
          const generatorBefore = process.cpuUsage();
          const n = await closedLoop(
            s,
            { clients: scenario.clients, docs: scenario.docs, seconds, prefix: `${scenario.name}-r${round}`, workload, client: s.client },
            histograms.get(k) as ReturnType<typeof histogram>,
          );
          commits.set(k, (commits.get(k) ?? 0) + n);
          const generator = process.cpuUsage(generatorBefore);
          const c = cpu.get(k) ?? { server: 0, generator: 0 };
          cpu.set(k, { server: c.server + cpuSeconds(s.pids) - cpuBefore, generator: c.generator + (generator.user + generator.system) / 1e6 });
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
        await s.stop();
      }
      console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0)}s] round ${round}/${rounds}: ${system.name} done`);
    }
  }
} finally {
  await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`);
  await db.end();
  await pgDb.end();
}

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
};
const bestBaselineC64Many = bestC64Many.system;
console.log(JSON.stringify({ ratios, bestBaselineC64Many }));
for (const r of [...rows, ...open]) if (!(r.commitsPerSecond > 0 && Number.isFinite(r.p50Ms))) throw new Error(`no commits for ${r.system} ${'scenario' in r ? r.scenario : 'open loop'}`);
if (timeline.ackedLost > 0 || timeline.firstCommitAfterKillMs < 0)
  throw new Error(`failover timeline: ${timeline.ackedLost} acknowledged messages lost; first commit after the kill ${timeline.firstCommitAfterKillMs} ms`);
const file = writeResults(`${quick ? 'bench-quick' : 'bench'}${workloadSuffix}`, {
  settings: { quick, seconds, rounds, rate, workload, timelineSeconds, mysqlFlushRestoredTo: originalFlush, elapsedSeconds: Math.round((Date.now() - started) / 1_000) },
  rows,
  views,
  openLoop: open,
  ratios,
  bestBaselineC64Many,
  timeline,
  cdfs,
});
console.log(`wrote ${file}`);
