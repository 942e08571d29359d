// Where the baseline hosts keep their log: one table of (doc, seq, request_json, redo_json,
// undo_json) with primary key (doc, seq), in MySQL or PostgreSQL. append writes its rows in one
// transaction (a single multi-row INSERT, which both databases run atomically in autocommit),
// so a batch is all or nothing; a document is loaded by reading its redo patches in seq order.

import mysql from 'mysql2/promise';
import pg from 'pg';
import type { PgSync } from './baselines.ts';

export interface LogRow {
  readonly doc: string;
  readonly seq: number;
  readonly requestJson: string;
  readonly redoJson: string;
  readonly undoJson: string;
}

export interface LogStore {
  /** The redo patches of `doc`, in seq order. */
  redos(doc: string): Promise<{ seq: number; redoJson: string }[]>;
  /** Appends `rows` in one transaction: all of them or none. */
  append(rows: readonly LogRow[]): Promise<void>;
  /** Whether `error` (from append) is a primary key collision: another writer took the seq. */
  isDuplicateKey(error: unknown): boolean;
  end(): Promise<void>;
}

/** Bound on parameters of one PostgreSQL statement (the protocol's limit is 65,535). */
const pgParametersMax = 65_535;
const columns = 'doc, seq, request_json, redo_json, undo_json';
const flat = (rows: readonly LogRow[]): (string | number)[] => rows.flatMap((r) => [r.doc, r.seq, r.requestJson, r.redoJson, r.undoJson]);

function checkTable(table: string): void {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(table)) throw new Error(`table ${JSON.stringify(table)} is not a plain identifier`);
}

export async function mysqlStore(url: string, table: string, connectionsMax: number): Promise<LogStore> {
  checkTable(table);
  const pool = mysql.createPool({ uri: url, connectionLimit: connectionsMax, waitForConnections: true, queueLimit: 10_000 });
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${table} (doc VARCHAR(128) NOT NULL, seq BIGINT NOT NULL, request_json MEDIUMTEXT NOT NULL, redo_json MEDIUMTEXT NOT NULL, undo_json MEDIUMTEXT NOT NULL, PRIMARY KEY (doc, seq)) ENGINE=InnoDB`,
  );
  const single = `INSERT INTO ${table} (${columns}) VALUES (?, ?, ?, ?, ?)`;
  return {
    async redos(doc) {
      const [rows] = await pool.query(`SELECT seq, redo_json FROM ${table} WHERE doc = ? ORDER BY seq`, [doc]);
      return (rows as { seq: number; redo_json: string }[]).map((r) => ({ seq: Number(r.seq), redoJson: r.redo_json }));
    },
    async append(rows) {
      if (rows.length === 0) return;
      // One row: a prepared statement, as the seed's host did; more: one multi-row INSERT, escaped client side.
      if (rows.length === 1) await pool.execute(single, flat(rows));
      else await pool.query(`INSERT INTO ${table} (${columns}) VALUES ${rows.map(() => '(?, ?, ?, ?, ?)').join(', ')}`, flat(rows));
    },
    isDuplicateKey: (error) => (error as { code?: string }).code === 'ER_DUP_ENTRY',
    end: () => pool.end(),
  };
}

/**
 * PostgreSQL with synchronous_commit set per session (a connection option), so nothing global
 * changes. All `connectionsMax` connections are opened before this resolves and kept open, so
 * their backends exist (and can be counted for CPU) while the host runs.
 */
export async function pgStore(url: string, table: string, connectionsMax: number, sync: PgSync): Promise<LogStore> {
  checkTable(table);
  const pool = new pg.Pool({ connectionString: url, max: connectionsMax, idleTimeoutMillis: 0, options: `-c synchronous_commit=${sync}` });
  pool.on('error', (error) => console.error(`baseline-host: an idle PostgreSQL connection failed: ${error.message}`));
  const clients = await Promise.all(Array.from({ length: connectionsMax }, () => pool.connect()));
  try {
    for (const c of clients) {
      const shown = (await c.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]?.synchronous_commit;
      if (shown !== sync) throw new Error(`PostgreSQL session has synchronous_commit = ${shown}, not ${sync}`);
    }
  } finally {
    for (const c of clients) c.release();
  }
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${table} (doc VARCHAR(128) NOT NULL, seq BIGINT NOT NULL, request_json TEXT NOT NULL, redo_json TEXT NOT NULL, undo_json TEXT NOT NULL, PRIMARY KEY (doc, seq))`,
  );
  return {
    async redos(doc) {
      const r = await pool.query<{ seq: string; redo_json: string }>(`SELECT seq, redo_json FROM ${table} WHERE doc = $1 ORDER BY seq`, [doc]);
      return r.rows.map((row) => ({ seq: Number(row.seq), redoJson: row.redo_json }));
    },
    async append(rows) {
      if (rows.length === 0) return;
      if (rows.length * 5 > pgParametersMax) throw new Error(`a batch of ${rows.length} rows is over PostgreSQL's ${pgParametersMax} parameters`);
      const values = rows.map((_, i) => `($${i * 5 + 1}, $${i * 5 + 2}, $${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5})`).join(', ');
      await pool.query(`INSERT INTO ${table} (${columns}) VALUES ${values}`, flat(rows));
    },
    isDuplicateKey: (error) => (error as { code?: string }).code === '23505',
    end: () => pool.end(),
  };
}
