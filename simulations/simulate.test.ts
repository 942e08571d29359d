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

// Recorded with `npm run simulate -- --bug tail-out-of-order --runs 500 --seed 7 --json`. If the
// scenario generator changes on purpose, record it again the same way.
const recorded = {
  seed: 7,
  path: '124:0:1:1:1:3:4:3:3:3:3:9:5:7:6:5:7:7:8:5:5:7:6:7:6:6:9:8:9:9:11:13:10:9:6:7:7:9:8:13:13:17:7:5:24:32:25:25:25:25:26:15:9:4:7:9:11:8:8:9:9:9:9:13:17:12:11:13:12:12:13:17:14:13:13:13:13:15:14:15:15:15:18:16:8:8:11:9:8:16:8:8:9:8:8:8:17:17:17:17:9:20:20:22:21:21:21:21:21:21:21:21:22:22:17:19:19:19:20:19:19:19:19:19:19:19:19:21:20:20:25:25:27:13:13:10:25:24:24:24',
  invariant: 'determinism',
  message: "n1's delta d1-card-table@7 (cl2#3) is not the execution of the message sequenced there ({}); redo {}",
  schedule: [
    '2 nodes, ssd disks, 1 chain(s) of k=2: c1=n1>n2; docs d1-card-table@c1; world seed 1',
    'cl1 (alice): 0ms d1 move 0/0, 0ms d1 move 0/0, 1721ms d1 move 0/0',
    'cl2 (alice): 4ms d1 move 0/0, 95ms d1 move 0/0, 2511ms d1 move 1/0',
    'cl3 (alice): 3ms d1 move 0/0, 3ms d1 move 0/0, 3ms d1 move 9/0',
    '498ms n2 receives the configuration of c1 from 2 epoch(s) ago',
    '1760ms power loss of every node for 184ms',
    '2141ms one-way partition n1 -> n2 for 1103ms',
  ],
};

test.serial('the recorded failing seed and path replay to the recorded schedule and violation', async (t) => {
  const replay = await runBatch({ runs: 1, seed: recorded.seed, path: recorded.path, bugs: ['tail-out-of-order'] });
  t.deepEqual(replay.violations, [{ invariant: recorded.invariant, message: recorded.message, seed: recorded.seed, path: recorded.path, schedule: recorded.schedule }]);
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
