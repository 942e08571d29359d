// npm run bench:baseline -- [--seconds S] [--rounds R] [--clients N] [--docs D]
//
// The chain (k = 3, sync writes) side by side with the MySQL "Durable" host (flush = 1 and
// flush = 2) and the in-memory "Ultra YOLO" host, interleaved in each round, all driven by the
// same closed-loop load generator over the same client protocol. Latencies go into HDR
// histograms. This is the first step of issue 7 (the full matrix and the paper are not here yet).

import mysql from 'mysql2/promise';
import { mysqlUrlDefault } from './mysql.ts';
import { parseArgs, printTable, writeResults } from './report.ts';
import { closedLoop, histogram, percentileMs, startChain, startHost } from './systems.ts';

const usage = `npm run bench:baseline -- [--seconds S] [--rounds R] [--clients N] [--docs D]

Closed-loop clients (default 16) over D counter documents (default 16), S seconds (default 4)
per system per round, R rounds (default 2), systems interleaved: chain k=3 (sync), MySQL
flush=1, MySQL flush=2, in-memory. Needs MariaDB/MySQL at MYSQL_URL (default
${mysqlUrlDefault}); it sets innodb_flush_log_at_trx_commit itself and restores it.
Writes benchmarks/results/baseline-quick.json.`;
const a = parseArgs(process.argv.slice(2), usage, { seconds: 'number', rounds: 'number', clients: 'number', docs: 'number' });
const seconds = (a.seconds as number | undefined) ?? 4;
const rounds = (a.rounds as number | undefined) ?? 2;
const clients = (a.clients as number | undefined) ?? 16;
const docs = (a.docs as number | undefined) ?? 16;
const db = await mysql.createConnection(process.env.MYSQL_URL ?? mysqlUrlDefault).catch((e: Error) => {
  console.error(`bench:baseline needs MySQL at ${process.env.MYSQL_URL ?? mysqlUrlDefault}: ${e.message}\nStart MariaDB: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`);
  process.exit(1);
});
const [[flushRow]] = (await db.query('SELECT @@GLOBAL.innodb_flush_log_at_trx_commit AS f')) as unknown as [[{ f: number }]];
const originalFlush = Number(flushRow.f);
const systems = [
  { name: 'chain k=3 sync', start: () => startChain(3) },
  { name: 'mysql flush=1', flush: 1, start: () => startHost('mysql') },
  { name: 'mysql flush=2', flush: 2, start: () => startHost('mysql') },
  { name: 'memory (ultra yolo)', start: () => startHost('memory') },
] as const;
const histograms = new Map(systems.map((s) => [s.name, histogram()]));
const commits = new Map<string, number>(systems.map((s) => [s.name, 0]));
try {
  for (let round = 1; round <= rounds; round++) {
    for (const system of round % 2 === 1 ? systems : [...systems].reverse()) {
      if ('flush' in system) {
        await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${system.flush}`);
        await db.query('DROP TABLE IF EXISTS adama_log');
      }
      const started = await system.start();
      try {
        const n = await closedLoop(started.address, { clients, docs, seconds, prefix: 'doc' }, histograms.get(system.name) as ReturnType<typeof histogram>);
        commits.set(system.name, (commits.get(system.name) ?? 0) + n);
        console.error(`round ${round}/${rounds} ${system.name}: ${n} commits in ${seconds} s`);
      } finally {
        await started.stop();
      }
    }
  }
} finally {
  await db.query(`SET GLOBAL innodb_flush_log_at_trx_commit = ${originalFlush}`);
  await db.end();
}
const ms = percentileMs;
const rows = systems.map((s) => {
  const h = histograms.get(s.name) as ReturnType<typeof histogram>;
  return { system: s.name, commitsPerSecond: Math.round((commits.get(s.name) ?? 0) / (seconds * rounds)), p50Ms: ms(h, 50), p90Ms: ms(h, 90), p99Ms: ms(h, 99), p999Ms: ms(h, 99.9) };
});
printTable(rows);
const chain = rows[0] as (typeof rows)[number];
const mysql1 = rows[1] as (typeof rows)[number];
const ratios = { chainP50OverMysqlFlush1P50: Number((chain.p50Ms / mysql1.p50Ms).toFixed(2)), chainThroughputOverMysqlFlush1: Number((chain.commitsPerSecond / mysql1.commitsPerSecond).toFixed(2)) };
console.log(`chain k=3 p50 / MySQL flush=1 p50 = ${ratios.chainP50OverMysqlFlush1P50}; throughput ratio = ${ratios.chainThroughputOverMysqlFlush1} (${clients} clients, ${docs} documents)`);
const file = writeResults('baseline-quick', { settings: { seconds, rounds, clients, docs, mysqlFlushRestoredTo: originalFlush }, summary: rows, ratios });
console.log(`wrote ${file}`);
