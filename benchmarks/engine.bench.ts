// npm run bench:engine [-- --time MS] : micro-benchmarks of the document engine.
//
// For each example document type, in a steady state (full chat history, a round in
// progress, 100 contributors):
//   execute      one message as the tail runs it: validation, handler, redo/undo deltas,
//                and the redo applied in place to the tail's own state
//   speculate    the same as the head runs it on top of its queue: the next state is a new
//                object sharing unchanged parts (the copying, persistent path)
//   apply        a middle replica applying one redo delta in place
//   views-100    every viewer's view delta for one message, with 100 viewers
// Prints a table and writes benchmarks/results/engine.json. Targets (issue 2): at least
// 50,000 executed chat messages/s, and at most 1 ms for all 100 viewers' deltas of one chat
// message. Both are judged on medians.

import { Bench } from 'tinybench';
import type { DocumentType } from '../engine/document.ts';
import { cardTable, chat, counter } from '../engine/documents/index.ts';
import type { CardTableState } from '../engine/documents/card-table.ts';
import { execute, type Envelope } from '../engine/execute.ts';
import { cloneJson, type JsonObject } from '../engine/json.ts';
import { applyInPlace } from '../engine/patch.ts';
import { Audience } from '../engine/view.ts';
import { parseArgs, printTable, writeResults } from './report.ts';

const usage = `Usage: npm run bench:engine [-- --time MS]

Micro-benchmarks of the document engine (tinybench). Prints a table and writes
benchmarks/results/engine.json.

  --time MS   measuring time per benchmark in milliseconds (default 1000)
  --help      show this help`;

const args = parseArgs(process.argv.slice(2), usage, { time: 'number' });
const timeMs = (args.time as number | undefined) ?? 1000;
const viewerCount = 100;
const entropy = 'bench-entropy';

/** A workload: a steady-state starting state and an endless stream of legal messages. */
interface Workload {
  type: DocumentType;
  /** Viewers for the 100-viewer benchmark. */
  viewers: string[];
  start: JsonObject;
  /** The next message for `state`. */
  next(state: JsonObject, seq: number): Omit<Envelope, 'doc' | 'seq' | 'timestamp'>;
}

const names = Array.from({ length: viewerCount }, (_, i) => `viewer-${i}`);

function drive(type: DocumentType, state: JsonObject, messages: [string, string, unknown][], seq0 = 0): JsonObject {
  let seq = seq0;
  for (const [viewer, channel, payload] of messages) {
    const result = execute(type, state, { doc: 'bench', seq: ++seq, timestamp: seq, viewer, channel, payload }, entropy);
    if (!result.outcome.ok) throw new Error(`setup ${channel} by ${viewer}: ${result.outcome.message}`);
    state = result.state;
  }
  return state;
}

const chatText = 'the quick brown fox jumps over the lazy dog';
const chatWorkload: Workload = {
  type: chat,
  viewers: names,
  start: drive(chat, chat.initial, [
    ...names.map((name): [string, string, unknown] => [name, 'join', {}]),
    ...Array.from({ length: 120 }, (_, i): [string, string, unknown] => [names[i % 100] as string, 'say', { text: chatText }]),
    ...Array.from({ length: 50 }, (_, i): [string, string, unknown] => [names[i] as string, 'dm', { to: names[i + 1], text: 'psst' }]),
  ]),
  next: (_state, seq) => ({ viewer: names[seq % viewerCount] as string, channel: 'say', payload: { text: chatText } }),
};

const counterWorkload: Workload = {
  type: counter,
  viewers: names,
  start: drive(
    counter,
    counter.initial,
    names.map((name): [string, string, unknown] => [name, 'add', { by: 1 }]),
  ),
  next: (_state, seq) => ({ viewer: names[seq % viewerCount] as string, channel: 'add', payload: { by: (seq % 7) + 1 } }),
};

const players = ['alice', 'bob', 'carol', 'dave'];
const cardWorkload: Workload = {
  type: cardTable,
  viewers: [...players, ...names.slice(players.length)],
  start: drive(cardTable, cardTable.initial, [...players.map((p): [string, string, unknown] => [p, 'sit', {}]), ['alice', 'start', {}]]),
  next: (raw, seq) => {
    const state = raw as unknown as CardTableState;
    if (state.phase !== 'playing') return { viewer: 'alice', channel: 'start', payload: {} };
    const player = state.players[state.turn] as CardTableState['players'][string];
    if (seq % 5 === 0 && player.chips > 0) return { viewer: player.id, channel: 'bet', payload: { amount: 1 } };
    if (state.deck.length > 0 && player.hand.length < 8 && seq % 2 === 0) return { viewer: player.id, channel: 'draw', payload: {} };
    return { viewer: player.id, channel: 'play', payload: { card: player.hand[0] } };
  },
};

const workloads = [chatWorkload, counterWorkload, cardWorkload];

/** A message stream over a workload; each call executes the next message and returns it. */
function stream(workload: Workload, inPlace: boolean) {
  let state = inPlace ? cloneJson(workload.start) : workload.start;
  let seq = 10_000;
  return () => {
    seq++;
    const message = workload.next(state, seq);
    const result = execute(workload.type, state, { doc: 'bench', seq, timestamp: seq, ...message }, entropy, { inPlace });
    if (!result.outcome.ok) throw new Error(`${workload.type.name} ${message.channel}: ${result.outcome.message}`);
    const before = state;
    state = result.state;
    return { before, result };
  };
}

const bench = new Bench({ time: timeMs, warmupTime: Math.min(500, timeMs / 2) });

for (const workload of workloads) {
  const name = workload.type.name;
  const executeNext = stream(workload, true);
  bench.add(`${name} execute`, () => {
    executeNext();
  });

  const speculateNext = stream(workload, false);
  bench.add(`${name} speculate`, () => {
    speculateNext();
  });

  // A middle replica: its own copy of the state, receiving the tail's redo deltas.
  const replica = cloneJson(workload.start);
  const applyNext = stream(workload, false);
  let pending = applyNext();
  bench.add(
    `${name} apply`,
    () => {
      applyInPlace(pending.result.redo, replica);
    },
    { beforeEach: () => void (pending = applyNext()) },
  );

  const viewNext = stream(workload, false);
  const audience = new Audience(workload.type, workload.start);
  for (const viewer of workload.viewers) audience.join(viewer);
  let next = workload.start;
  let deltas = 0;
  bench.add(
    `${name} views-${viewerCount}`,
    () => {
      deltas += audience.advance(next).size;
    },
    {
      beforeEach: () => {
        next = viewNext().result.state;
      },
    },
  );
  // Every viewer must get a delta for a public change: the benchmark measures real work.
  bench.addEventListener('complete', () => {
    if (deltas === 0) throw new Error(`${name} views-${viewerCount}: no deltas were produced`);
  });
}

bench.addEventListener('cycle', (event) => {
  const task = (event as unknown as { task?: { name: string } }).task;
  if (task) console.error(`  measured ${task.name}`);
});

console.error(`engine benchmarks: ${bench.tasks.length} tasks, ${timeMs} ms each`);
await bench.run();

interface Row {
  benchmark: string;
  type: string;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  perSecondMedian: number;
  samples: number;
}

const rows: Row[] = [];
for (const task of bench.tasks) {
  const result = task.result;
  if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state}${'error' in result ? `: ${String(result.error)}` : ''}`);
  const [type, benchmark] = task.name.split(' ') as [string, string];
  const p50Us = result.latency.p50 * 1000;
  rows.push({
    benchmark,
    type,
    p50Us: round(p50Us),
    p99Us: round(result.latency.p99 * 1000),
    meanUs: round(result.latency.mean * 1000),
    perSecondMedian: Math.round(1e6 / p50Us),
    samples: result.latency.samplesCount,
  });
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

const find = (benchmark: string, type: string) => rows.find((row) => row.benchmark === benchmark && row.type === type) as Row;
const chatExecute = find('execute', 'chat');
const chatViews = find(`views-${viewerCount}`, 'chat');
const targets = [
  {
    target: 'executed chat messages per second (median)',
    goal: '>= 50000',
    value: chatExecute.perSecondMedian,
    met: chatExecute.perSecondMedian >= 50_000,
  },
  {
    target: `all ${viewerCount} viewers' deltas for one chat message, p50 (us)`,
    goal: '<= 1000',
    value: chatViews.p50Us,
    met: chatViews.p50Us <= 1000,
  },
];

printTable(rows as unknown as Record<string, string | number>[]);
console.log('');
printTable(targets.map((t) => ({ target: t.target, goal: t.goal, value: t.value, met: t.met ? 'yes' : 'NO' })));
const file = writeResults('engine', { timeMsPerTask: timeMs, viewers: viewerCount, rows, targets });
console.log(`\nwrote ${file}`);
