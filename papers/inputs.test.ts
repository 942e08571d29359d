import test from 'ava';
import { readFileSync } from 'node:fs';
import { proseClaims, type Bench } from './inputs.ts';

const committed = JSON.parse(readFileSync(new URL('../benchmarks/results/bench.json', import.meta.url), 'utf8')) as Bench;
const copy = (): Bench => structuredClone(committed);
const broken = (bench: Bench): string[] =>
  proseClaims(bench, 'bench')
    .filter(([, holds]) => !holds)
    .map(([claim]) => claim);

test('every direction the prose states holds for the committed bench.json', (t) => {
  t.deepEqual(broken(committed), []);
});

test('a rerun that reverses a direction breaks exactly the claims that state it', (t) => {
  // Chains of 4 and 5 suddenly as fast as k = 1: "falls with each step" and "far from a flat
  // line" no longer hold.
  const flat = copy();
  const k1 = flat.rows.find((r) => r.system === 'chain k=1' && r.scenario === 'c64-many')?.commitsPerSecond as number;
  for (const r of flat.rows) if ((r.system === 'chain k=4' || r.system === 'chain k=5') && r.scenario === 'c64-many') r.commitsPerSecond = k1;
  flat.ratios.throughputK5OverK1Clients64 = 1;
  t.deepEqual(broken(flat), [
    '5.2: throughput (64 clients, many documents) falls with each step of chain length',
    'abstract: k = 5 is far from a flat line (below 0.8 of k = 1)',
    '5.7: equal per-node CPU flattens the line (k max / k = 1 above the shared-CPU ratio)',
  ]);

  // Under equal per-node CPU, a proxy as fast as 2x the direct path: the "within 10%" sentence must go.
  const fastProxy = copy();
  for (const r of fastProxy.rows) if (r.system === 'chain k=3 via proxy' && r.scenario === 'c64-many') r.commitsPerSecond *= 2;
  t.deepEqual(broken(fastProxy), ['5.7: through the proxy on shared cores, the k = 3 chain is not faster than direct (at most 10% above, c64-many)']);

  // An open-loop request refused: the "no request was refused" sentence must go.
  const refused = copy();
  (refused.openLoop[0] as Bench['openLoop'][number]).refused = 3;
  t.deepEqual(broken(refused), ['5.4: no open-loop request was refused']);

  // Commits during the whole outage window: the timeline no longer drops to zero.
  const noGap = copy();
  for (const b of noGap.timeline.buckets) b.commitsPerSecond = Math.max(b.commitsPerSecond, 100);
  t.deepEqual(broken(noGap), ['5.5: throughput drops to zero between the kill and the first new commit']);
});

test('a missing row is a clear error naming the file and the command', (t) => {
  const bench = copy();
  bench.rows = bench.rows.filter((r) => r.system !== 'mysql flush=1');
  t.throws(() => proseClaims(bench, 'bench'), { message: /bench\.json has no row for mysql flush=1 \/ c16-many; rerun npm run bench/ });
});
