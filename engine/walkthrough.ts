// npm start: a terminal walkthrough of the engine on a card table, the way a chain's head
// and tail use it: per-viewer views, a speculative move shown at once, its confirmation, a
// rollback when a message is lost, and a typed error for an illegal move.
// (Until the proxy issue lands, `npm start` runs this instead of a cluster.)

import { cardTable } from './documents/index.ts';
import { execute, type Envelope } from './execute.ts';
import type { Json } from './json.ts';
import { Speculation } from './speculation.ts';
import { Audience } from './view.ts';

const usage = `Usage: npm start [-- --entropy TEXT]

Walks through one card-table round as a chain head and tail would run it, printing what
each viewer (alice and bob play, eve watches) is sent.

  --entropy TEXT   the document's secret key, as text (default "walkthrough"); changes the
                   shuffle. A chain makes 32 random bytes per document instead and never
                   shows them to a viewer.
  --help           show this help`;

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(usage);
  process.exit(0);
}
let entropy = 'walkthrough';
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--entropy' && argv[i + 1] !== undefined) entropy = argv[++i] as string;
  else {
    console.error(`unknown argument ${argv[i]}\n\n${usage}`);
    process.exit(2);
  }
}

const viewers = ['alice', 'bob', 'eve'];
const head = new Speculation(cardTable, cardTable.initial, 0, entropy);
const tailState = cardTable.createState();
const speculative = new Audience(cardTable, head.speculative);
const confirmed = new Audience(cardTable, head.confirmed);
let seq = 0;
const inFlight: Envelope[] = [];

const show = (value: Json) => JSON.stringify(value);
const say = (text: string) => console.log(`\n== ${text}`);

function send(viewer: string, channel: string, payload: Json): Envelope {
  const envelope: Envelope = { doc: 'table-1', seq: ++seq, timestamp: 1_700_000_000_000 + seq, viewer, channel, payload };
  const execution = head.push(envelope);
  const verdict = execution.outcome.ok ? 'ok' : `${execution.outcome.code}: ${execution.outcome.message}`;
  console.log(`head: seq ${envelope.seq} ${viewer} ${channel} ${show(payload)} -> speculated ${verdict}`);
  for (const [who, delta] of speculative.advance(head.speculative)) console.log(`  to ${who} (pending): ${show(delta)}`);
  inFlight.push(envelope);
  return envelope;
}

function commit(): void {
  const envelope = inFlight.shift();
  if (envelope === undefined) return;
  const result = execute(cardTable, tailState, envelope, entropy, { inPlace: true });
  head.confirm(envelope.seq, { redo: result.redo, outcome: result.outcome });
  console.log(`tail: seq ${envelope.seq} executed, delta ${show(result.redo).slice(0, 100)}${show(result.redo).length > 100 ? '...' : ''}`);
  for (const [who, delta] of confirmed.advance(head.confirmed)) console.log(`  to ${who} (confirmed): ${show(delta)}`);
  speculative.advance(head.speculative);
}

say('Three viewers connect; each gets a full view first');
for (const viewer of viewers) {
  speculative.join(viewer);
  console.log(`  ${viewer}: ${show(confirmed.join(viewer))}`);
}

say("alice and bob sit down; alice starts a round (the deck is shuffled with the document's keyed PRNG)");
send('alice', 'sit', {});
send('bob', 'sit', {});
send('alice', 'start', {});
while (inFlight.length > 0) commit();

const hand = (player: string) => ((head.confirmed.players as Record<string, { hand: string[] }>)[player] as { hand: string[] }).hand;
say('Each player sees only their own hand; eve sees neither, and nobody sees the deck');
for (const viewer of viewers) {
  const players = confirmed.viewOf(viewer)?.players as Record<string, { hand: Json }>;
  console.log(`  ${viewer}: alice's hand ${show(players.alice?.hand ?? null)}, bob's hand ${show(players.bob?.hand ?? null)}`);
}

say('alice plays a card: every client sees it at once as pending, then the tail confirms it');
send('alice', 'play', { card: hand('alice')[0] as string });
commit();

say('bob bets, but that message is lost before it reaches the tail (say its node failed): a rollback');
const lost = send('bob', 'bet', { amount: 10 });
inFlight.splice(inFlight.indexOf(lost), 1);
const rollback = head.drop(lost.seq);
console.log(`head: seq ${lost.seq} dropped; state rollback ${show(rollback.rollback)}`);
for (const [who, delta] of speculative.advance(head.speculative)) console.log(`  to ${who} (rollback): ${show(delta)}`);

say('alice tries to move again, out of turn: a typed error, and nothing changes');
send('alice', 'draw', {});
commit();

console.log(`\nconfirmed through seq ${head.confirmedSeq}, ${head.queue.length} pending; pot ${show(head.confirmed.pot ?? null)}, turn ${show(head.confirmed.turn ?? null)}`);
console.log('Run `npm test` for the property tests and `npm run bench:engine` for the engine benchmark.');
