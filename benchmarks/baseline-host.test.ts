// The durable baseline hosts against real databases (MariaDB and PostgreSQL here): messages are
// appended and acknowledged, a restarted host reloads a document by replaying its rows, two
// hosts writing one document meet a duplicate key, reload and retry; under many concurrent
// clients (several per document) every acked message is in the table exactly once, in seq
// order per document, with the right states; a batch that cannot commit is answered with
// retryable failures and the host carries on from what is on disk. Without a database its
// tests skip with a message saying how to start it, except under CI=true, where they must run.

import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { ChainClient, ChainError } from '../chain/client/tcp.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import type { JsonObject } from '../engine/json.ts';
import { apply } from '../engine/patch.ts';
import { type BaselineMode, databaseOf, pgStartHint, pgUrl } from './baselines.ts';
import { mysqlUrl } from './mysql.ts';

const secret = randomBytes(12).toString('hex');
const suffix = randomBytes(3).toString('hex');
const tableOf = (mode: BaselineMode, name = 'main'): string => `adama_test_${mode.replace('-', '_')}_${name}_${suffix}`;
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'baseline-host.ts');
const credentials = { cluster: 'test', secret };

async function host(mode: BaselineMode, table: string, extra: readonly string[] = []): Promise<{ address: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--mode', mode, '--cluster', 'test', '--table', table, ...extra], {
    env: { ...process.env, ADAMA_CLUSTER_SECRET: secret },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the host exited with ${code}`)));
  });
  return {
    address: (JSON.parse(line) as { address: string }).address,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Runs SQL (with ? placeholders, rewritten to $n for PostgreSQL) on the mode's database. */
async function sql<R>(mode: BaselineMode, text: string, params: unknown[] = []): Promise<R[]> {
  if (databaseOf(mode) === 'mysql') {
    const c = await mysql.createConnection(mysqlUrl());
    try {
      return (await c.query(text, params))[0] as R[];
    } finally {
      await c.end();
    }
  }
  const c = new pg.Client({ connectionString: pgUrl() });
  await c.connect();
  try {
    let n = 0;
    return (
      await c.query(
        text.replaceAll('?', () => `$${++n}`),
        params,
      )
    ).rows as R[];
  } finally {
    await c.end();
  }
}

const reachable = async (mode: BaselineMode): Promise<boolean> =>
  sql(mode, 'SELECT 1').then(
    () => true,
    () => false,
  );
const available = { mysql: await reachable('mysql'), pg: await reachable('pg') };
const hints = {
  mysql: `no MySQL at ${mysqlUrl()}. Start MariaDB (start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd) or set MYSQL_URL.`,
  pg: `no PostgreSQL at ${pgUrl()}. Start it (${pgStartHint}) or set PG_URL.`,
};
for (const database of ['mysql', 'pg'] as const)
  if (!available[database]) console.log(`baseline-host ${database} tests skipped: ${hints[database]}${process.env.CI === 'true' ? ' Under CI they run anyway and fail.' : ''}`);
const dbTest = (mode: BaselineMode) => (available[databaseOf(mode) as 'mysql' | 'pg'] || process.env.CI === 'true' ? test.serial : test.skip);

const durableModes: readonly BaselineMode[] = ['mysql', 'mysql-batch', 'pg', 'pg-batch'];
const tables: [BaselineMode, string][] = [];
const table = (mode: BaselineMode, name?: string): string => {
  const t = tableOf(mode, name);
  tables.push([mode, t]);
  return t;
};
test.after.always(async () => {
  for (const [mode, t] of tables) if (available[databaseOf(mode) as 'mysql' | 'pg']) for (const name of [t, `${t}_off`]) await sql(mode, `DROP TABLE IF EXISTS ${name}`);
});

const add = (c: ChainClient, doc: string, clientId: string, clientSeq: number, by: number) =>
  c.submit({ chain: 'c1', doc, docType: 'counter', channel: 'add', payload: { by }, clientId, clientSeq, viewer: 'v' });

interface Row {
  seq: number | string;
  request_json: string;
  redo_json: string;
}
const rowsOf = async (mode: BaselineMode, t: string, doc: string): Promise<Row[]> => sql<Row>(mode, `SELECT seq, request_json, redo_json FROM ${t} WHERE doc = ? ORDER BY seq`, [doc]);
const counter = findDocumentType('counter') as NonNullable<ReturnType<typeof findDocumentType>>;

for (const mode of ['mysql', 'pg'] as const) {
  dbTest(mode)(`${mode}: appends are acknowledged in seq order and survive a restart (the document is rebuilt from its rows)`, async (t) => {
    const name = table(mode, 'restart');
    const first = await host(mode, name);
    const c = await ChainClient.connect(first.address, credentials);
    for (let i = 1; i <= 5; i++) t.is((await add(c, 'doc-m', 'cl', i, i)).seq, i);
    c.close();
    await first.stop();
    const second = await host(mode, name);
    const d = await ChainClient.connect(second.address, credentials);
    t.is((await add(d, 'doc-m', 'cl', 6, 100)).seq, 6);
    d.close();
    await second.stop();
    const list = await rowsOf(mode, name, 'doc-m');
    t.deepEqual(
      list.map((r) => Number(r.seq)),
      [1, 2, 3, 4, 5, 6],
    );
    t.is((JSON.parse(list[5]?.redo_json ?? '{}') as { value?: number }).value, 1 + 2 + 3 + 4 + 5 + 100);
  });

  dbTest(mode)(`${mode}: two hosts on one document: the loser of a seq meets a duplicate key, reloads and retries`, async (t) => {
    const name = table(mode, 'two');
    const a = await host(mode, name);
    const b = await host(mode, name);
    const ca = await ChainClient.connect(a.address, credentials);
    const cb = await ChainClient.connect(b.address, credentials);
    // Both hosts load the document, then each appends: b's cached seq is stale after a's append.
    await add(ca, 'doc-m', 'cl', 10, 1);
    await add(cb, 'doc-m', 'cl', 11, 1);
    const ra = await add(ca, 'doc-m', 'cl', 12, 1);
    const rb = await add(cb, 'doc-m', 'cl', 13, 1);
    t.not(ra.seq, rb.seq);
    t.deepEqual(
      (await rowsOf(mode, name, 'doc-m')).map((r) => Number(r.seq)),
      [1, 2, 3, 4],
    );
    ca.close();
    cb.close();
    await a.stop();
    await b.stop();
  });
}

for (const mode of durableModes) {
  dbTest(mode)(`${mode}: many concurrent clients, several per document: every acked message is in the table once, in seq order, with the right states`, async (t) => {
    const name = table(mode, 'many');
    const h = await host(mode, name);
    const clients = 24;
    const docs = 5;
    const perClient = 12;
    const conns = await Promise.all(Array.from({ length: clients }, () => ChainClient.connect(h.address, credentials)));
    const acked = new Map<string, { seq: number; clientId: string; clientSeq: number; by: number }[]>();
    await Promise.all(
      conns.map((c, i) =>
        // Each client pipelines its messages: several in flight on one connection.
        Promise.all(
          Array.from({ length: perClient }, async (_, j) => {
            const doc = `doc-${i % docs}`;
            const by = i * 12 + j + 1; // distinct, and within the counter's bound on one add
            const r = await add(c, doc, `cl${i}`, j + 1, by);
            acked.set(doc, [...(acked.get(doc) ?? []), { seq: r.seq, clientId: `cl${i}`, clientSeq: j + 1, by }]);
          }),
        ),
      ),
    );
    for (const c of conns) c.close();
    await h.stop();
    let total = 0;
    for (let d = 0; d < docs; d++) {
      const doc = `doc-${d}`;
      const rows = await rowsOf(mode, name, doc);
      const acks = (acked.get(doc) ?? []).sort((x, y) => x.seq - y.seq);
      total += rows.length;
      t.deepEqual(
        rows.map((r) => Number(r.seq)),
        Array.from({ length: acks.length }, (_, i) => i + 1),
        `${doc}: seqs 1..n, one row per ack`,
      );
      let state = counter.initial;
      let sum = 0;
      for (const [i, r] of rows.entries()) {
        const request = JSON.parse(r.request_json) as { clientId: string; clientSeq: number; payload: { by: number } };
        const ack = acks[i] as (typeof acks)[number];
        t.deepEqual([request.clientId, request.clientSeq, request.payload.by], [ack.clientId, ack.clientSeq, ack.by], `${doc} seq ${i + 1} is the message acked with it`);
        state = apply(JSON.parse(r.redo_json), state) as JsonObject;
        sum += request.payload.by;
        t.is((state as { value: number }).value, sum, `${doc} seq ${i + 1}: the state after every earlier message`);
      }
    }
    t.is(total, clients * perClient);
  });
}

for (const mode of ['pg', 'pg-batch'] as const) {
  dbTest(mode)(`${mode} --pg-sync off: the host starts (it checks each session has synchronous_commit off) and commits; the server's default is untouched`, async (t) => {
    const name = table(mode, 'async');
    const h = await host(mode, name, ['--pg-sync', 'off']);
    const c = await ChainClient.connect(h.address, credentials);
    t.is((await add(c, 'doc-a', 'cl', 1, 1)).seq, 1);
    const sessions = await sql<{ setting: string }>(mode, "SELECT setting FROM pg_settings WHERE name = 'synchronous_commit'");
    t.is(sessions[0]?.setting, 'on', 'a new session still gets the server default');
    c.close();
    await h.stop();
  });
}

for (const mode of ['mysql-batch', 'pg-batch'] as const) {
  dbTest(mode)(`${mode}: a batch that cannot commit (its table gone) is answered with retryable failures; the host then carries on from the disk`, async (t) => {
    const name = table(mode, 'fail');
    const h = await host(mode, name);
    const c = await ChainClient.connect(h.address, credentials);
    for (let i = 1; i <= 3; i++) t.is((await add(c, 'doc-f', 'cl', i, 1)).seq, i);
    await sql(mode, databaseOf(mode) === 'mysql' ? `RENAME TABLE ${name} TO ${name}_off` : `ALTER TABLE ${name} RENAME TO ${name}_off`);
    const failed = await Promise.allSettled([4, 5, 6, 7].map((i) => add(c, i % 2 === 0 ? 'doc-f' : 'doc-g', 'cl', i, 1)));
    for (const r of failed) {
      t.is(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as ChainError;
      t.true(e instanceof ChainError && e.retryable, String(e));
    }
    await sql(mode, databaseOf(mode) === 'mysql' ? `RENAME TABLE ${name}_off TO ${name}` : `ALTER TABLE ${name}_off RENAME TO ${name}`);
    // Memory matches the disk again: the next message follows the three committed ones.
    t.is((await add(c, 'doc-f', 'cl', 8, 1)).seq, 4);
    t.is((await add(c, 'doc-g', 'cl', 9, 1)).seq, 1);
    c.close();
    await h.stop();
    t.deepEqual(
      (await rowsOf(mode, name, 'doc-f')).map((r) => Number(r.seq)),
      [1, 2, 3, 4],
    );
  });
}
