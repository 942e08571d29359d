// npm run simulate -- --runs N [--seed S] [--bug NAME] [--json] [--path P] [--no-shrink] [--list-bugs]
//
// Runs N generated scenarios (cluster shape, workload, fault schedule) in the simulated world,
// checking the seven invariants. A failing scenario is shrunk to a minimal schedule and
// reported with the seed and path that replay it exactly.

import { parseArgs } from 'node:util';
import { plantedBugNames, type PlantedBug } from '../chain/core/planted.ts';
import { activeMs, livenessMs, runBatch } from './scenario.ts';

const help = `npm run simulate -- [options]

Deterministic failure simulations: the product's node driver, replica, manager loop, client
sessions and proxy router, on a virtual network, disks and clock with crashes, partitions,
pauses and reconfigurations (see README, "Simulations"). Each run is one generated scenario;
the invariants are checked as it runs and once it has settled.

Options:
  --runs N        scenarios to run (default 100)
  --seed S        fast-check seed (default: random; printed so the batch can be repeated)
  --bug NAME      plant a bug; one of: ${plantedBugNames.join(', ')}
  --path P        replay one recorded case: the seed and path from a violation report
  --no-shrink     report the first failing scenario as found, without shrinking it
  --json          end with one JSON line: {runs, seed, events, eventsPerSecond, violations, bug}
  --list-bugs     print every planted bug's name, one a line, and exit
  --help          this text

Exit status: 0 when every run kept every invariant, 1 when a violation was found, 2 on bad usage.
Faults happen in the first ${activeMs} virtual ms; after healing, everything must settle within
${livenessMs} virtual ms (liveness).`;

function usage(message: string): never {
  process.stderr.write(`simulate: ${message}\n\n${help}\n`);
  process.exit(2);
}

let values: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      runs: { type: 'string' },
      seed: { type: 'string' },
      bug: { type: 'string' },
      path: { type: 'string' },
      'no-shrink': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'list-bugs': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}
try {
  values = parse();
} catch (error) {
  usage((error as Error).message);
}
if (values.help) {
  console.log(help);
  process.exit(0);
}
if (values['list-bugs']) {
  for (const name of plantedBugNames) console.log(name);
  process.exit(0);
}
const runs = values.runs === undefined ? 100 : Number(values.runs);
if (!Number.isSafeInteger(runs) || runs < 1 || runs > 10_000_000) usage(`--runs takes a whole number from 1 to 10000000, not ${JSON.stringify(values.runs)}`);
const seed = values.seed === undefined ? (Date.now() ^ (process.pid << 16)) >>> 0 : Number(values.seed);
if (!Number.isSafeInteger(seed)) usage(`--seed takes an integer, not ${JSON.stringify(values.seed)}`);
const bug = values.bug as PlantedBug | undefined;
if (bug !== undefined && !plantedBugNames.includes(bug)) usage(`unknown bug ${JSON.stringify(bug)}; planted bugs are: ${plantedBugNames.join(', ')}`);
if (values.path !== undefined && !/^\d+(:\d+)*$/.test(values.path)) usage(`--path takes the path from a violation report, like 42:3:0, not ${JSON.stringify(values.path)}`);

const say = (line: string): void => void process.stderr.write(`${line}\n`);
say(`simulate: ${values.path === undefined ? `${runs} runs` : `replaying path ${values.path}`}, seed ${seed}${bug === undefined ? '' : `, planted bug ${bug}`}`);
let lastReport = performance.now();
const started = performance.now();
const result = await runBatch({
  runs: values.path === undefined ? runs : 1,
  seed,
  bugs: bug === undefined ? [] : [bug],
  path: values.path,
  shrink: !values['no-shrink'],
  onRun: (done, events) => {
    const now = performance.now();
    if (now - lastReport < 1_000) return;
    lastReport = now;
    const seconds = (now - started) / 1_000;
    const phase = done > runs ? ` (shrinking a failure: ${done - runs} extra runs)` : '';
    say(`  ${Math.min(done, runs)}/${runs} runs, ${events} events, ${Math.round(events / seconds)} events/s${phase}`);
  },
});
const eventsPerSecond = Math.round(result.events / Math.max(result.seconds, 1e-9));
say(
  `simulate: ${result.runs} runs${result.shrinkRuns > 0 ? ` + ${result.shrinkRuns} while shrinking` : ''}, ${result.events} simulated events in ${result.seconds.toFixed(1)} s = ${eventsPerSecond} events/s`,
);
say(
  `autopilot runs (SWIM + automatic manager): ${result.autopilotRuns}; running nodes declared dead: ${result.deathsWhileCutOff} after a crash or while cut off, slowed or paused over 300 ms, ${result.falsePositives} false positives (no such fault)`,
);
if (result.violations.length === 0) {
  say(`no violations${bug === undefined ? '' : ` (planted bug ${bug} was not caught)`}`);
} else {
  for (const v of result.violations) {
    say(`VIOLATION of ${v.invariant}: ${v.message}`);
    say(`replay: npm run simulate -- --seed ${v.seed} --path ${v.path}${bug === undefined ? '' : ` --bug ${bug}`}`);
    say('schedule (shrunk):');
    for (const line of v.schedule) say(`  ${line}`);
  }
}
if (values.json) {
  console.log(
    JSON.stringify({
      runs: result.runs,
      shrinkRuns: result.shrinkRuns,
      autopilotRuns: result.autopilotRuns,
      falsePositives: result.falsePositives,
      deathsWhileCutOff: result.deathsWhileCutOff,
      seed,
      events: result.events,
      eventsPerSecond,
      violations: result.violations,
      bug: bug ?? null,
    }),
  );
}
process.exit(result.violations.length > 0 ? 1 : 0);
