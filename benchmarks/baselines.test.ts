import test from 'ava';
import { baselineTable, bestBaseline, databaseOf, isDurableBaseline } from './baselines.ts';

test('bestBaseline picks the durable baseline with the most commits per second in the scenario, never a chain or the memory host', (t) => {
  const rows = [
    { system: 'chain k=3', scenario: 'c64-many', commitsPerSecond: 9_000 },
    { system: 'memory', scenario: 'c64-many', commitsPerSecond: 50_000 },
    { system: 'mysql flush=1', scenario: 'c64-many', commitsPerSecond: 900 },
    { system: 'pg-batch sync=on', scenario: 'c64-many', commitsPerSecond: 4_000 },
    { system: 'mysql-batch flush=1', scenario: 'c64-many', commitsPerSecond: 3_000 },
    { system: 'mysql-batch flush=1', scenario: 'c64-hot', commitsPerSecond: 8_000 },
  ];
  t.is(bestBaseline(rows, 'c64-many')?.system, 'pg-batch sync=on');
  t.is(bestBaseline(rows, 'c64-hot')?.system, 'mysql-batch flush=1');
  t.is(bestBaseline(rows, 'c1-many'), undefined);
  t.false(isDurableBaseline('chain k=3 no-sync'));
});

test('each mode has its own table and database', (t) => {
  t.deepEqual(
    (['mysql', 'mysql-batch', 'pg', 'pg-batch', 'memory'] as const).map((m) => [baselineTable(m), databaseOf(m)]),
    [
      ['adama_log', 'mysql'],
      ['adama_log_mysql_batch', 'mysql'],
      ['adama_log_pg', 'pg'],
      ['adama_log_pg_batch', 'pg'],
      ['adama_log_memory', 'none'],
    ],
  );
});
