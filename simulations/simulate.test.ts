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
  path: "123:7:0:0:1:2:2:3:5:3:4:6:6:6:7:4:4:6:6:1:2:3:3:3:3:3:5:6:4:5:4:4:5:5:5:6:5:5:7:2:3:2:3:4:3:3:3:5:3:3:3:3:6:2:3:2:2:3:3:5:3:3:3:3:6:2:2:2:2:2:4:4:5:6:5:6:6:5:5:6:6",
  invariant: "determinism",
  message: "n1's delta d1-card-table@1 (cl1#1) is not the execution of the message sequenced there ({}); redo {}",
  schedule: [
    "2 nodes, ssd disks, 1 chain(s) of k=2: c1=n1>n2; docs d1-card-table@c1; world seed 1",
    "cl1 (alice): 0ms d1 move 0/0",
    "cl2 (alice): 0ms d1 move 1/0",
    "3ms n1 paused (SIGSTOP) for 41ms",
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

test.serial('shrinking keeps the invariant that failed first and shortens the schedule', async (t) => {
  const found = await runBatch({ runs: bugRunsMax, seed: 1, bugs: ['no-dedupe'], shrink: false });
  const shrunk = await runBatch({ runs: bugRunsMax, seed: 1, bugs: ['no-dedupe'], shrinkRunsMax: 400 });
  const before = found.violations[0];
  const after = shrunk.violations[0];
  t.is(after?.invariant, 'exactly-once');
  t.is(after?.invariant, before?.invariant);
  // Smaller: fewer or simpler clients, messages and faults, so a shorter description.
  const size = (schedule: string[] | undefined): number => (schedule ?? []).join('\n').length;
  t.true(size(after?.schedule) < size(before?.schedule), `${size(before?.schedule)} characters before shrinking, ${size(after?.schedule)} after`);
  t.true(shrunk.shrinkRuns > 0 && shrunk.shrinkRuns <= 400);
});
