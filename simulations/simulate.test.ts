// The simulator's own tests: clean runs pass, every planted bug is caught by the invariant it
// breaks within a fixed budget, and a failure replays exactly from its seed and path.

import test from 'ava';
import fc from 'fast-check';
import { plantedBugNames, type PlantedBug } from '../chain/core/planted.ts';
import { describe, runBatch, runScenario, scenarioArb, type Scenario } from './scenario.ts';
import type { InvariantName } from './invariants.ts';

/** The invariant each planted bug breaks (design brief, section 4). */
const expected: Record<PlantedBug, InvariantName | readonly InvariantName[]> = {
  'early-back': 'durable-reads',
  'no-dedupe': 'exactly-once',
  // Accepting older configurations splits the chain's view of its members (agreement) or
  // leaves it unable to settle (liveness): with the store's faults, seed 1 finds the second first.
  'no-epoch-check': ['agreement', 'liveness'],
  'tail-out-of-order': 'determinism',
  'unfiltered-speculation': 'privacy',
  'skip-confirmed-view': 'convergence',
  'no-queue-resend': 'liveness',
  'zombie-head': 'lease',
  'dedupe-forgets-live-client': 'exactly-once',
  'caught-up-in-memory': 'liveness',
  'unsplit-frames': 'liveness',
  'unvalidated-peer-input': 'validation',
  'router-early-patches': 'convergence',
  'unsubscribe-by-viewer': 'subscriptions',
  'subscription-leak': 'subscriptions',
  'undurable-reads': 'durable-reads',
  'unsplit-catchup': 'liveness',
  'session-stays-on-timeout': 'liveness',
  'write-without-cas': 'configurations',
  'node-trusts-pushes': 'configurations',
  'entropy-per-replica': 'agreement',
};

/** Runs allowed to find each bug, and runs allowed to shrink what was found. */
const bugRunsMax = 500;
const shrinkRunsMax = 150;
/** Clean runs that must all pass. */
const cleanRuns = 300;

test('every planted bug has an expected invariant', (t) => {
  t.deepEqual(Object.keys(expected).sort(), [...plantedBugNames].sort());
});

test(`${cleanRuns} runs without planted bugs keep every invariant`, (t) => {
  const result = runBatch({ runs: cleanRuns, seed: 1 });
  t.deepEqual(result.violations, []);
  t.is(result.runs, cleanRuns);
  t.true(result.events > cleanRuns * 100, `only ${result.events} events in ${cleanRuns} runs`);
});

for (const bug of plantedBugNames) {
  const wanted = ([] as InvariantName[]).concat(expected[bug]);
  test(`planted bug ${bug} is caught as ${wanted.join(' or ')} within ${bugRunsMax} runs`, (t) => {
    const result = runBatch({ runs: bugRunsMax, seed: 1, bugs: [bug], shrinkRunsMax });
    const violation = result.violations[0];
    t.truthy(violation, `${bug} was not caught in ${bugRunsMax} runs`);
    t.true(wanted.includes(violation?.invariant as InvariantName), `${violation?.invariant}: ${violation?.message}`);
    t.true(result.runs <= bugRunsMax);
  });
}

test('a recorded failure replays to the same schedule and the same violation, and is clean without its bug', (t) => {
  const found = runBatch({ runs: bugRunsMax, seed: 7, bugs: ['tail-out-of-order'], shrinkRunsMax });
  const violation = found.violations[0];
  if (violation === undefined) return t.fail('tail-out-of-order was not caught with seed 7');
  for (let i = 0; i < 2; i++) {
    const replay = runBatch({ runs: 1, seed: violation.seed, path: violation.path, bugs: ['tail-out-of-order'] });
    t.is(replay.runs, 1);
    t.deepEqual(replay.violations, [violation]);
  }
  // Without the bug the same schedule is clean: the violation is the bug's, not the schedule's.
  const clean = runBatch({ runs: 1, seed: violation.seed, path: violation.path });
  t.deepEqual(clean.violations, []);
});

test('a scenario is a pure function of its description: same events, same outcome', (t) => {
  const scenarios = fc.sample(scenarioArb, { seed: 42, numRuns: 5 });
  for (const scenario of scenarios) {
    const a = runScenario(scenario);
    const b = runScenario(structuredClone(scenario) as Scenario);
    t.deepEqual(a, b, describe(scenario).join('\n'));
  }
});

test('shrinking keeps the invariant that failed first and shortens the schedule', (t) => {
  const found = runBatch({ runs: bugRunsMax, seed: 1, bugs: ['no-dedupe'], shrink: false });
  const shrunk = runBatch({ runs: bugRunsMax, seed: 1, bugs: ['no-dedupe'], shrinkRunsMax: 400 });
  const before = found.violations[0];
  const after = shrunk.violations[0];
  t.is(after?.invariant, 'exactly-once');
  t.is(after?.invariant, before?.invariant);
  // Smaller: fewer or simpler clients, messages and faults, so a shorter description.
  const size = (schedule: string[] | undefined): number => (schedule ?? []).join('\n').length;
  t.true(size(after?.schedule) < size(before?.schedule), `${size(before?.schedule)} characters before shrinking, ${size(after?.schedule)} after`);
  t.true(shrunk.shrinkRuns > 0 && shrunk.shrinkRuns <= 400);
});
