// Finding 7 (issue 15): card shuffles were predictable. The document PRNG was seeded from the
// cluster id ("sim-cluster" here; sent in clear in every Hello), the document id and the seq,
// all of which a spectator knows. These tests play card tables on simulated 3-node chains,
// through the proxy's router to browser tabs, and try the spectator's prediction.
//
// The first two tests use only what the simulator had before the fix (they fail on 1be0e9c:
// the spectator predicts every hand, and two clusters deal the same hands).

import test from 'ava';
import { fullDeck, handSize, type Card } from '../engine/documents/card-table.ts';
import type { JsonObject } from '../engine/json.ts';
import { seededRandom } from '../engine/random.ts';
import { ViolationError } from './events.ts';
import { Checker } from './invariants.ts';
import { simCluster } from './processes.ts';
import { defaultNetwork, World, type WorldSettings } from './world.ts';

const tables = 6;
const tableId = (i: number): string => `table-${i}`;
const at = (atMs: number, doc: number, kind: number) => ({ atMs, doc, move: { viewer: 0, kind, pick: 0 } });

/** alice and bob sit at each table, then alice deals (card-table moves: 0 sit, 1 start); both watch in tabs. */
function settings(seed: number): WorldSettings {
  const docs = Array.from({ length: tables }, (_, i) => ({ id: tableId(i), type: 'card-table' }));
  const watch = docs.map((_, doc) => ({ doc, events: [] }));
  return {
    seed,
    nodes: 3,
    k: 3,
    chains: [{ id: 'c1', members: [0, 1, 2] }],
    docs,
    clients: [
      { viewer: 0, via: 'proxy', proxy: 0, pipeline: 1, ops: [...docs.map((_, d) => at(d, d, 0)), ...docs.map((_, d) => at(1_000 + d, d, 1))], tabs: watch },
      { viewer: 1, via: 'proxy', proxy: 0, pipeline: 1, ops: docs.map((_, d) => at(500 + d, d, 0)), tabs: watch },
    ],
    proxies: 1,
    ...defaultNetwork,
    frameBytesMax: 4 * 1024 * 1024,
    submitTimeoutMs: 20_000,
    requestTimeoutMs: 1_000,
  };
}

interface Deal {
  readonly doc: string;
  /** The seq of the start message, from alice's acknowledgement. */
  readonly seq: number;
  /** Players in seat order (public). */
  readonly order: readonly string[];
  /** What each player's tab shows as their own hand. */
  readonly hands: Readonly<Record<string, readonly Card[]>>;
}

function play(seed: number): { world: World; checker: Checker; deals: Deal[] } {
  let w: World | undefined;
  const checker = new Checker(() => w as World);
  w = new World(settings(seed), checker, new Set());
  const world = w;
  world.start();
  world.run(20_000, () => world.clients.every((c) => c.done));
  world.run(world.now + 2_000); // the confirmed views arrive
  const alice = world.clients[0];
  const deals: Deal[] = [];
  for (let i = 0; i < tables; i++) {
    const doc = tableId(i);
    const start = alice?.records.filter((r) => r.doc === doc)[1];
    const hands: Record<string, Card[]> = {};
    let order: string[] = [];
    for (const client of world.clients) {
      const view = client.tabs.find((tab) => tab.doc === doc)?.confirmed as JsonObject | undefined;
      const players = (view?.players ?? {}) as Record<string, { seat: number; hand?: Card[] }>;
      hands[client.viewer] = players[client.viewer]?.hand ?? [];
      order = Object.keys(players).sort((a, b) => (players[a]?.seat ?? 0) - (players[b]?.seat ?? 0));
    }
    deals.push({ doc, seq: start?.status === 'acked' ? start.seq : 0, order, hands });
  }
  return { world, checker, deals };
}

/** The spectator's prediction with the formula of 1be0e9c: cyrb128(doc, seq, cluster id), the card table's shuffle, five cards each in seat order. */
function predict(doc: string, seq: number, order: readonly string[]): Record<string, Card[]> {
  const random = seededRandom(doc, seq, simCluster);
  const deck = [...fullDeck];
  for (let i = deck.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [deck[i], deck[j]] = [deck[j] as Card, deck[i] as Card];
  }
  const hands: Record<string, Card[]> = {};
  for (const id of order) hands[id] = deck.splice(0, handSize);
  return hands;
}

test('knowing the cluster id, the document id and every seq does not reproduce a shuffle', (t) => {
  const { deals } = play(1);
  let predicted = 0;
  let hands = 0;
  for (const deal of deals) {
    t.is(deal.seq, 3, `${deal.doc}: the deal was not the third message`);
    t.deepEqual(deal.order, ['alice', 'bob'], `${deal.doc}: seats`);
    const guess = predict(deal.doc, deal.seq, deal.order);
    for (const player of deal.order) {
      const seen = deal.hands[player] ?? [];
      t.is(seen.length, handSize, `${player}'s tab shows no dealt hand at ${deal.doc}`);
      hands++;
      if (JSON.stringify(seen) === JSON.stringify(guess[player])) predicted++;
    }
  }
  t.is(hands, 2 * tables);
  t.is(predicted, 0, `a spectator who knows the cluster id "${simCluster}" predicted ${predicted} of ${hands} hands exactly`);
});

test('the same document with the same messages on two fresh clusters with the same cluster id gets other shuffles', (t) => {
  const a = play(1).deals;
  const b = play(2).deals;
  let same = 0;
  for (let i = 0; i < tables; i++) {
    const x = a[i] as Deal;
    const y = b[i] as Deal;
    // The same history: the same document, seats, and seq for the deal.
    t.deepEqual([x.doc, x.seq, x.order], [y.doc, y.seq, y.order]);
    t.is((x.hands.alice ?? []).length, handSize);
    if (JSON.stringify(x.hands) === JSON.stringify(y.hands)) same++;
  }
  t.is(same, 0, `${same} of ${tables} tables dealt the same hands on both clusters`);
});

test("no frame a tab receives carries its document's entropy, and the leak check fails on one that does", (t) => {
  const frames: { doc: string; text: string }[] = [];
  let w: World | undefined;
  const checker = new (class extends Checker {
    override tabFrame(...args: Parameters<Checker['tabFrame']>): void {
      const [, update] = args;
      frames.push({ doc: update.doc, text: JSON.stringify(update) });
      super.tabFrame(...args);
    }
  })(() => w as World);
  w = new World(settings(3), checker, new Set());
  const world = w;
  world.start();
  world.run(20_000, () => world.clients.every((c) => c.done));
  world.run(world.now + 2_000);
  t.true(frames.length > 4 * tables, `only ${frames.length} view frames`);
  const replicas = world.nodes.map((n) => n.driver?.replica('c1'));
  for (let i = 0; i < tables; i++) {
    const doc = tableId(i);
    const entropies = replicas.map((r) => r?.docs.get(doc)?.entropy);
    const first = entropies[0];
    if (first === undefined) return t.fail(`n1 does not hold ${doc}`);
    t.is(first.length, 32);
    for (const e of entropies) t.deepEqual(e, first, `the replicas of ${doc} hold other entropies`);
    const bytes = Buffer.from(first);
    const texts = [bytes.toString('hex'), bytes.toString('base64').replace(/=+$/, ''), bytes.toString('base64url'), JSON.stringify([...bytes])];
    for (const frame of frames) for (const text of texts) t.false(frame.text.includes(text), `a ${frame.doc} frame shows the entropy of ${doc}`);
  }
  // The oracle itself: a frame that does show an entropy is a privacy violation.
  const tab = world.clients[0]?.tabs[0];
  const entropy = replicas[0]?.docs.get(tableId(0))?.entropy;
  if (tab === undefined || entropy === undefined) return t.fail('no tab or entropy');
  const leaky = { requestId: 1, doc: tableId(0), viewer: tab.viewer, kind: 'speculative' as const, seq: 3, json: JSON.stringify({ note: Buffer.from(entropy).toString('hex') }), confirmedJson: '' };
  const error = t.throws(() => checker.tabFrame(tab, leaky), { instanceOf: ViolationError });
  t.is(error?.invariant, 'privacy');
  t.regex(error?.message ?? '', /secret entropy/);
});
