// The baselines the chain is measured against, as processes that speak the chain head's client
// protocol (the same HMAC handshake, Submit and Ack frames), so one load generator drives all:
//
//   --mode mysql   the seed's "Durable" topology: one host runs the engine and appends each
//                  message's (doc, seq, request, redo, undo) to MySQL in one transaction. On a
//                  duplicate key it reloads the document (replaying its rows) and retries, as
//                  Adama did. A document is loaded by replaying its rows.
//   --mode memory  "Ultra YOLO": the same engine in memory, no durability; the lower bound.
//
// The first stdout line is JSON: {"event":"listening","address":"host:port"}.

import type net from 'node:net';
import mysql from 'mysql2/promise';
import { keyringOf } from '../chain/runtime/credentials.ts';
import { listenConnections } from '../chain/runtime/tcp-net.ts';
import { failure, make, type Submit } from '../chain/runtime/wire.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import type { DocumentType } from '../engine/document.ts';
import { execute } from '../engine/execute.ts';
import type { JsonObject } from '../engine/json.ts';
import { apply } from '../engine/patch.ts';
import { mysqlUrlDefault } from './mysql.ts';

const entropy = 'baseline';
/** Bound on documents held in memory. */
const documentsMax = 50_000;
/** Bound on retries after duplicate keys for one message. */
const duplicateRetriesMax = 8;

interface Doc {
  readonly type: DocumentType;
  state: JsonObject;
  seq: number;
  /** Messages of this document run one after another. */
  tail: Promise<void>;
}

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(String(process.argv[i]).replace(/^--/, ''), String(process.argv[i + 1]));
if (process.argv.includes('--help')) {
  console.log('usage: tsx benchmarks/baseline-host.ts --mode mysql|memory [--port P] [--cluster C] [--table T]\n(the cluster secret comes from ADAMA_CLUSTER_SECRET; MySQL from MYSQL_URL)');
  process.exit(0);
}
const mode = args.get('mode') ?? 'memory';
if (mode !== 'mysql' && mode !== 'memory') {
  console.error('baseline-host: --mode is mysql or memory');
  process.exit(2);
}
const cluster = args.get('cluster') ?? 'bench';
const secret = process.env.ADAMA_CLUSTER_SECRET ?? '';
if (secret.length < 8) {
  console.error('baseline-host: set ADAMA_CLUSTER_SECRET (at least 8 characters)');
  process.exit(2);
}
const table = args.get('table') ?? 'adama_log';
if (!/^[a-z_][a-z0-9_]{0,40}$/.test(table)) {
  console.error('baseline-host: --table is a plain identifier');
  process.exit(2);
}

const pool = mode === 'mysql' ? mysql.createPool({ uri: process.env.MYSQL_URL ?? mysqlUrlDefault, connectionLimit: 32, waitForConnections: true, queueLimit: 10_000 }) : undefined;
if (pool !== undefined) {
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${table} (doc VARCHAR(128) NOT NULL, seq BIGINT NOT NULL, request_json MEDIUMTEXT NOT NULL, redo_json MEDIUMTEXT NOT NULL, undo_json MEDIUMTEXT NOT NULL, PRIMARY KEY (doc, seq)) ENGINE=InnoDB`,
  );
}
const docs = new Map<string, Doc>();

async function load(id: string, type: DocumentType): Promise<Doc> {
  let state = type.initial;
  let seq = 0;
  if (pool !== undefined) {
    const [rows] = await pool.query(`SELECT seq, redo_json FROM ${table} WHERE doc = ? ORDER BY seq`, [id]);
    for (const row of rows as { seq: number; redo_json: string }[]) {
      state = apply(JSON.parse(row.redo_json), state) as JsonObject;
      seq = Number(row.seq);
    }
  }
  return { type, state, seq, tail: Promise.resolve() };
}

async function commit(doc: Doc, id: string, s: Submit): Promise<{ seq: number; outcomeJson: string }> {
  for (let attempt = 0; ; attempt++) {
    const envelope = { doc: id, seq: doc.seq + 1, timestamp: Date.now(), viewer: s.viewer, channel: s.channel, payload: JSON.parse(s.payloadJson) as unknown };
    const execution = execute(doc.type, doc.state, envelope, entropy);
    if (pool !== undefined) {
      try {
        await pool.execute(`INSERT INTO ${table} (doc, seq, request_json, redo_json, undo_json) VALUES (?, ?, ?, ?, ?)`, [
          id,
          envelope.seq,
          JSON.stringify({ ...envelope, clientId: s.clientId, clientSeq: s.clientSeq }),
          JSON.stringify(execution.redo),
          JSON.stringify(execution.undo),
        ]);
      } catch (error) {
        if ((error as { code?: string }).code !== 'ER_DUP_ENTRY' || attempt >= duplicateRetriesMax) throw error;
        const fresh = await load(id, doc.type); // another host wrote this seq: reload and retry
        doc.state = fresh.state;
        doc.seq = fresh.seq;
        continue;
      }
    }
    doc.state = execution.state;
    doc.seq = envelope.seq;
    return { seq: envelope.seq, outcomeJson: JSON.stringify(execution.outcome) };
  }
}

const transport = process.env.ADAMA_TRANSPORT === 'plain' ? 'plain' : 'tls';
const server = await listenConnections(
  '127.0.0.1',
  Number(args.get('port') ?? 0),
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
      let doc = docs.get(s.doc);
      const ready: Promise<Doc> =
        doc !== undefined
          ? Promise.resolve(doc)
          : docs.size >= documentsMax
            ? Promise.reject(new Error(`documentsMax (${documentsMax}) reached`))
            : load(s.doc, type).then((d) => {
                doc = docs.get(s.doc) ?? d;
                docs.set(s.doc, doc);
                return doc;
              });
      ready.then(
        (d) => {
          const run = d.tail.then(() => commit(d, s.doc, s));
          d.tail = run.then(
            () => undefined,
            () => undefined,
          );
          run.then(
            (r) => connection.send(make('ack', { requestId: s.requestId, seq: r.seq, outcomeJson: r.outcomeJson, duplicate: false })),
            (e: Error) => connection.send(failure('internal_error', e.message, { requestId: s.requestId, retryable: true })),
          );
        },
        (e: Error) => connection.send(failure('busy', e.message, { requestId: s.requestId, retryable: true })),
      );
    });
  },
  (line) => console.error(`baseline-host: ${line}`),
);
console.log(JSON.stringify({ event: 'listening', node: `baseline-${mode}`, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, pid: process.pid }));
const stop = (): void => {
  server.close();
  void pool?.end().finally(() => process.exit(0));
  if (pool === undefined) process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
