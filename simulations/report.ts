// npm run simulate:report -- [--runs N] [--seeds S] [--planted-runs-max M]
//
// The simulation numbers the paper quotes, written to benchmarks/results/simulations.json: one
// clean batch (N scenarios, seed 1: events, speed, violations, false deaths of the failure
// detector), and for each planted bug the run at which seeds 1..S first catch it (without
// shrinking) and which invariant caught it, plus the size of the shrunk schedule for seed 1.

import { parseArgs, printTable, writeResults } from '../benchmarks/report.ts';
import { plantedBugNames } from '../chain/core/planted.ts';
import { runBatch } from './scenario.ts';

const usage = `npm run simulate:report -- [--runs N] [--seeds S] [--planted-runs-max M]

Runs the clean batch (N scenarios with seed 1, default 10000, about 3 minutes) and every planted bug
with seeds 1..S (default 6), up to M runs each (default 500), and writes
benchmarks/results/simulations.json for npm run paper. Exits 1 if the clean batch finds a
violation or a planted bug escapes.`;
const a = parseArgs(process.argv.slice(2), usage, { runs: 'number', seeds: 'number', 'planted-runs-max': 'number' });
const runs = (a.runs as number | undefined) ?? 10_000;
const seeds = (a.seeds as number | undefined) ?? 6;
const plantedRunsMax = (a['planted-runs-max'] as number | undefined) ?? 500;
const started = Date.now();
const say = (line: string): void => void process.stderr.write(`[simulate:report ${((Date.now() - started) / 1_000).toFixed(0)}s] ${line}\n`);

let lastSaid = Date.now();
const clean = await runBatch({
  runs,
  seed: 1,
  onRun: (done, events) => {
    if (Date.now() - lastSaid < 5_000) return;
    lastSaid = Date.now();
    say(`clean batch: ${done}/${runs} runs, ${events.toLocaleString('en-US')} events`);
  },
});
say(`clean batch: ${clean.runs} runs, ${clean.violations.length} violations, ${Math.round(clean.events / clean.seconds).toLocaleString('en-US')} events/s`);

const planted = [];
for (const bug of plantedBugNames) {
  const catches = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const r = await runBatch({ runs: plantedRunsMax, seed, bugs: [bug], shrink: false });
    catches.push({ seed, runsToCatch: r.violations.length === 0 ? -1 : r.runs, invariant: r.violations[0]?.invariant ?? 'none' });
  }
  const shrunk = await runBatch({ runs: plantedRunsMax, seed: 1, bugs: [bug] });
  const invariants = [...new Set(catches.map((c) => c.invariant))];
  const caught = catches.filter((c) => c.runsToCatch > 0).map((c) => c.runsToCatch);
  const row = {
    bug,
    invariant: invariants.join(', '),
    seedsCaught: caught.length,
    seeds,
    runsToCatchMin: Math.min(...caught),
    runsToCatchMax: Math.max(...caught),
    shrunkScheduleLines: shrunk.violations[0]?.schedule.length ?? -1,
    shrinkRuns: shrunk.shrinkRuns,
  };
  planted.push({ ...row, catches, shrunkSchedule: shrunk.violations[0]?.schedule ?? [] });
  say(`${bug}: caught by ${row.invariant} on ${caught.length}/${seeds} seeds, after ${row.runsToCatchMin}-${row.runsToCatchMax} runs`);
}
printTable(planted.map(({ catches: _c, shrunkSchedule: _s, ...row }) => row));
const cleanOut = {
  runs: clean.runs,
  seed: 1,
  events: clean.events,
  seconds: Number(clean.seconds.toFixed(1)),
  eventsPerSecond: Math.round(clean.events / clean.seconds),
  violations: clean.violations.length,
  autopilotRuns: clean.autopilotRuns,
  falsePositives: clean.falsePositives,
  deathsWhileCutOff: clean.deathsWhileCutOff,
};
console.log(JSON.stringify({ clean: cleanOut }));
const file = writeResults('simulations', { settings: { runs, seeds, plantedRunsMax }, clean: cleanOut, planted });
say(`wrote ${file}`);
if (clean.violations.length > 0 || planted.some((p) => p.seedsCaught < seeds)) process.exitCode = 1;
