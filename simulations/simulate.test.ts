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
  path: "53:0:1:3:0:1:2:2:3:3:6:5:6:6:6:10:6:6:10:10:16:5:6:5:5:5:5:5:6:5:16:16:16:1:14:15:15:15:15:15:15:20:19:18:21:18:14:10:4:3:3:11:10:10:10:17:14:18:14:17:17:17:25:3:10:5:3:21:23:21:25:25:25:25:27:31:27:27:27:27:31:31:31:36:36:34:34:35:34:36:36:36:36:42:19:32:31:34:31:32:14:19:29:28:28:29:34:35:31",
  invariant: "determinism",
  message: "n1's delta d1-card-table@9 (cl2#8) is not the execution of the message sequenced there ({}); redo {}",
  schedule: [
    "2 nodes, ssd disks, 1 chain(s) of k=2: c1=n1>n2; docs d1-card-table@c1; world seed 1",
    "cl1 (alice): 0ms d1 move 0/0, 1717ms d1 move 0/0",
    "cl2 (alice): 547ms d1 move 0/0, 547ms d1 move 0/0, 626ms d1 move 6/670, 729ms d1 move 2/13, 1017ms d1 move 0/0, 1017ms d1 move 0/0, 1017ms d1 move 2/302, 1753ms d1 move 1/0, 2789ms d1 move 5/441",
    "218ms power loss of n2 at its next write for 456ms (manager fails it over)",
    "603ms n2 4x slower for 1470ms",
    "1753ms n2 isolated for 47ms",
    "1936ms manager adds n1 to c1",
    "1994ms n1 receives the configuration of c1 from 1 epoch(s) ago",
    "2332ms process crash of n1 for 609ms",
    "2618ms manager removes n2 from c1",
    "2668ms power loss of every node for 672ms",
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
