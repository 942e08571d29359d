// The baselines the chain is measured against, as processes that speak the chain head's client
// protocol (the same handshake, Submit and Ack frames), so one load generator drives all. Each
// runs the engine in memory and appends each message's (doc, seq, request, redo, undo) to a
// database table before acknowledging it; a document is loaded by replaying its rows
// (benchmarks/baseline-pipelines.ts has the two ways of committing):
//
//   --mode mysql        the seed's "Durable" topology: one MySQL transaction per message, a
//                       document's messages one after another; on a duplicate key it reloads
//                       the document and retries, as Adama did.
//   --mode mysql-batch  group commit: the messages that arrive while a batch commits go to MySQL
//                       together, in one transaction (a multi-row INSERT).
//   --mode pg           as mysql, on PostgreSQL (PG_URL).
//   --mode pg-batch     as mysql-batch, on PostgreSQL.
//   --mode memory       "Ultra YOLO": the same engine in memory, no durability; the lower bound.
//
// PostgreSQL's durability is --pg-sync on|off (synchronous_commit, set per session); MySQL's is
// the server's innodb_flush_log_at_trx_commit, which the benchmark sets.
//
// The first stdout line is JSON: {"event":"listening","address":"host:port"}.

import type net from 'node:net';
import { keyringOf } from '../chain/runtime/credentials.ts';
import { listenConnections } from '../chain/runtime/tcp-net.ts';
import { failure, make } from '../chain/runtime/wire.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { baselineModes, baselineTable, databaseOf, isBaselineMode, isBatching, pgUrl } from './baselines.ts';
import { batching, perMessage, type Pipeline } from './baseline-pipelines.ts';
import { type LogStore, mysqlStore, pgStore } from './log-store.ts';
import { mysqlUrl } from './mysql.ts';

/** Bound on documents held in memory. */
const documentsMax = 50_000;
/** Bound on retries after duplicate keys for one message (per-message modes). */
const duplicateRetriesMax = 8;
/** Database connections: per-message modes run one transaction per document at a time. */
const perMessageConnectionsMax = 32;
/** Batching modes: one batch in flight, and document loads beside it. */
const batchingConnectionsMax = 4;
const batchRowsMax = 1_024;
const batchBytesMax = 4 * 2 ** 20;
const pendingMessagesMax = 16_384;

const usage = `usage: tsx benchmarks/baseline-host.ts --mode ${baselineModes.join('|')} [--port P] [--cluster C] [--table T] [--pg-sync on|off]

  mysql        one MySQL transaction per message (the seed's "Durable" host)
  mysql-batch  the messages of a tick in one MySQL transaction, one batch in flight
  pg           one PostgreSQL transaction per message
  pg-batch     the messages of a tick in one PostgreSQL transaction, one batch in flight
  memory       no durability

--table defaults to one per mode (adama_log for mysql, adama_log_<mode> otherwise), created if
missing. --pg-sync (pg modes; default on) sets synchronous_commit on each connection.
The cluster secret comes from ADAMA_CLUSTER_SECRET; MySQL from MYSQL_URL; PostgreSQL from PG_URL.`;

const args = new Map<string, string>();
if (process.argv.includes('--help')) {
  console.log(usage);
  process.exit(0);
}
const fail = (message: string): never => {
  console.error(`baseline-host: ${message}\n\n${usage}`);
  process.exit(2);
};
for (let i = 2; i < process.argv.length; i += 2) {
  const name = String(process.argv[i]);
  if (!name.startsWith('--') || process.argv[i + 1] === undefined) fail(`expected --name value pairs, not ${name}`);
  args.set(name.slice(2), String(process.argv[i + 1]));
}
for (const name of args.keys()) if (!['mode', 'port', 'cluster', 'table', 'pg-sync'].includes(name)) fail(`unknown option --${name}`);
const modeArg = args.get('mode') ?? 'memory';
if (!isBaselineMode(modeArg)) fail(`--mode is one of ${baselineModes.join(', ')}, not ${modeArg}`);
const mode = modeArg as (typeof baselineModes)[number];
const database = databaseOf(mode);
const pgSync = args.get('pg-sync') ?? 'on';
if (pgSync !== 'on' && pgSync !== 'off') fail(`--pg-sync is on or off, not ${pgSync}`);
if (args.has('pg-sync') && database !== 'pg') fail('--pg-sync applies to the pg modes only');
const cluster = args.get('cluster') ?? 'bench';
const secret = process.env.ADAMA_CLUSTER_SECRET ?? '';
if (secret.length < 8) fail('set ADAMA_CLUSTER_SECRET (at least 8 characters)');
const table = args.get('table') ?? baselineTable(mode);
if (!/^[a-z_][a-z0-9_]{0,40}$/.test(table)) fail('--table is a plain identifier');
const port = Number(args.get('port') ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65_535) fail(`--port is a port number, not ${args.get('port')}`);

const connectionsMax = isBatching(mode) ? batchingConnectionsMax : perMessageConnectionsMax;
const store: LogStore | undefined = await (database === 'mysql'
  ? mysqlStore(mysqlUrl(), table, connectionsMax)
  : database === 'pg'
    ? pgStore(pgUrl(), table, connectionsMax, pgSync as 'on' | 'off')
    : Promise.resolve(undefined)
).catch((error: Error) => {
  console.error(`baseline-host: cannot open the ${database} table ${table} (${database === 'pg' ? pgUrl() : mysqlUrl()}): ${error.message}`);
  process.exit(1);
});
const pipeline: Pipeline =
  store !== undefined && isBatching(mode) ? batching(store, { documentsMax, batchRowsMax, batchBytesMax, pendingMessagesMax }) : perMessage(store, { documentsMax, duplicateRetriesMax });

const transport = process.env.ADAMA_TRANSPORT === 'plain' ? 'plain' : 'tls';
const server = await listenConnections(
  '127.0.0.1',
  port,
  { cluster, keys: keyringOf({ cluster, secret }), transport, node: `baseline-${mode}` },
  ['client'],
  (connection) => {
    connection.onFrame((frame) => {
      if (frame.kind !== 'submit') {
        connection.send(failure('protocol_error', `the baseline host serves submit only, not ${frame.kind}`, {}));
        return;
      }
      const s = frame.submit;
      const type = findDocumentType(s.docType);
      if (type === undefined) {
        connection.send(failure('unknown_document_type', `no document type ${s.docType}`, { requestId: s.requestId }));
        return;
      }
      pipeline.submit(type, s, (r) =>
        connection.send(
          r.ok ? make('ack', { requestId: s.requestId, seq: r.seq, outcomeJson: r.outcomeJson, duplicate: false }) : failure(r.code, r.message, { requestId: s.requestId, retryable: r.retryable }),
        ),
      );
    });
  },
  (line) => console.error(`baseline-host: ${line}`),
);
console.log(JSON.stringify({ event: 'listening', node: `baseline-${mode}`, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, pid: process.pid, table }));
const stop = (): void => {
  server.close();
  if (store === undefined) process.exit(0);
  void store.end().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
