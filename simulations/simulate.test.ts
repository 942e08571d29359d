// The simulator's own tests: clean runs pass, every planted bug is caught by the invariant it
// breaks within a fixed budget, and a failure replays exactly from its seed and path.
// Serial: planted bugs are a process-wide flag.

import test from 'ava';
import fc from 'fast-check';
import { plantedBugNames, type PlantedBug } from '../chain/planted.ts';
import { describe, runBatch, runScenario, scenarioArb, type Scenario } from './scenario.ts';
import type { InvariantName } from './invariants.ts';

/** The invariant each planted bug breaks (design brief, section 4). */
const expected: Record<PlantedBug, InvariantName> = {
  'early-back': 'no-acked-lost',
  'no-dedupe': 'exactly-once',
  'no-epoch-check': 'agreement',
  'tail-out-of-order': 'determinism',
  'unfiltered-speculation': 'privacy',
  'skip-confirmed-view': 'convergence',
  'no-queue-resend': 'liveness',
};

/** Runs allowed to find each bug, and runs allowed to shrink what was found. */
const bugRunsMax = 500;
const shrinkRunsMax = 150;
/** Clean runs that must all pass. */
const cleanRuns = 300;

test.serial('every planted bug has an expected invariant', (t) => {
  t.deepEqual(Object.keys(expected).sort(), [...plantedBugNames].sort());
});

test.serial(`${cleanRuns} runs without planted bugs keep every invariant`, async (t) => {
  const result = await runBatch({ runs: cleanRuns, seed: 1 });
  t.deepEqual(result.violations, []);
  t.is(result.runs, cleanRuns);
  t.true(result.events > cleanRuns * 100, `only ${result.events} events in ${cleanRuns} runs`);
});

for (const bug of plantedBugNames) {
  test.serial(`planted bug ${bug} is caught as ${expected[bug]} within ${bugRunsMax} runs`, async (t) => {
    const result = await runBatch({ runs: bugRunsMax, seed: 1, bugs: [bug], shrinkRunsMax });
    const violation = result.violations[0];
    t.truthy(violation, `${bug} was not caught in ${bugRunsMax} runs`);
    t.is(violation?.invariant, expected[bug], violation?.message);
    t.true(result.runs <= bugRunsMax);
  });
}

test.serial('a recorded failure replays to the same schedule and the same violation', async (t) => {
  const found = await runBatch({ runs: bugRunsMax, seed: 7, bugs: ['tail-out-of-order'], shrinkRunsMax });
  const violation = found.violations[0];
  if (violation === undefined) return t.fail('tail-out-of-order was not caught with seed 7');
  for (let i = 0; i < 2; i++) {
    const replay = await runBatch({ runs: 1, seed: violation.seed, path: violation.path, bugs: ['tail-out-of-order'] });
    t.is(replay.runs, 1);
    t.deepEqual(replay.violations, [violation]);
  }
  // Without the bug the same schedule is clean: the violation is the bug's, not the schedule's.
  const clean = await runBatch({ runs: 1, seed: violation.seed, path: violation.path });
  t.deepEqual(clean.violations, []);
});

test.serial('a scenario is a pure function of its description: same events, same outcome', async (t) => {
  const scenarios = fc.sample(scenarioArb, { seed: 42, numRuns: 5 });
  for (const scenario of scenarios) {
    const a = await runScenario(scenario);
    const b = await runScenario(structuredClone(scenario) as Scenario);
    t.deepEqual(a, b, describe(scenario).join('\n'));
  }
});

test.serial('shrinking keeps the invariant that failed first and ends with a short schedule', async (t) => {
  const result = await runBatch({ runs: bugRunsMax, seed: 1, bugs: ['no-dedupe'], shrinkRunsMax: 400 });
  const violation = result.violations[0];
  t.is(violation?.invariant, 'exactly-once');
  // The first line describes the cluster; the rest are clients and faults.
  t.true((violation?.schedule.length ?? 99) <= 8, violation?.schedule.join('\n'));
});
