// The baseline hosts' modes (what benchmarks/baseline-host.ts runs, which database each uses
// and the table it writes by default), where PostgreSQL is, and bestBaseline: the strongest
// durable baseline of a scenario, the one the chain's ratios are taken against.

export const baselineModes = ['mysql', 'mysql-batch', 'pg', 'pg-batch', 'memory'] as const;
export type BaselineMode = (typeof baselineModes)[number];
export const isBaselineMode = (s: string): s is BaselineMode => (baselineModes as readonly string[]).includes(s);

/** The database a mode appends to; memory keeps nothing. */
export function databaseOf(mode: BaselineMode): 'mysql' | 'pg' | 'none' {
  return mode.startsWith('mysql') ? 'mysql' : mode.startsWith('pg') ? 'pg' : 'none';
}

/** Batching modes commit all pending messages of a tick in one transaction. */
export const isBatching = (mode: BaselineMode): boolean => mode.endsWith('-batch');

/** The table a mode writes unless told otherwise: one per mode (the seed's adama_log for mysql). */
export function baselineTable(mode: BaselineMode): string {
  return mode === 'mysql' ? 'adama_log' : `adama_log_${mode.replace('-', '_')}`;
}

/** Where the PostgreSQL baselines connect: PG_URL, or PostgreSQL on this machine (trust auth). */
export const pgUrlDefault = 'postgres://root@127.0.0.1:5432/test';
export const pgUrl = (): string => process.env.PG_URL ?? pgUrlDefault;
export const pgStartHint = 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start';

export type PgSync = 'on' | 'off';

/** A durable baseline: neither a chain nor the in-memory host (which keeps nothing). */
export const isDurableBaseline = (system: string): boolean => !system.startsWith('chain') && system !== 'memory';

/** The durable baseline row of `scenario` with the most commits per second, if any. */
export function bestBaseline<R extends { readonly system: string; readonly scenario: string; readonly commitsPerSecond: number }>(rows: readonly R[], scenario: string): R | undefined {
  let best: R | undefined;
  for (const r of rows) if (r.scenario === scenario && isDurableBaseline(r.system) && (best === undefined || r.commitsPerSecond > best.commitsPerSecond)) best = r;
  return best;
}
