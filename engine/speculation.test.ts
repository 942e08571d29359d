import test from 'ava';
import fc from 'fast-check';
import { movesArb } from './arbitraries.ts';
import { type DocumentType, collection, defineDocument, pub, record } from './document.ts';
import { cardTable, chat, counter, documentTypes } from './documents/index.ts';
import { findLeaks } from './documents/secrets.ts';
import { LimitError } from './errors.ts';
import { execute, type Envelope } from './execute.ts';
import { jsonEqual, type Json, type JsonObject } from './json.ts';
import { apply } from './patch.ts';
import { Speculation } from './speculation.ts';
import { Audience, view } from './view.ts';
import { concreteOp, viewers, type Move } from './workloads.ts';

/** Null members mean "hidden", i.e. absent: compare views with them stripped. */
const normal = (value: Json): Json => apply(value, {});

interface HeadRun {
  leaks: string[];
  divergent: string[];
  memoMismatches: string[];
  rebases: number;
  drops: number;
  /** Confirms whose delta differed from the speculation with no drop to explain it. */
  mismatches: number;
}

/**
 * A head and a tail in one process. Each move is sequenced at the head, executed
 * speculatively, and queued for the tail; the move's pick also decides whether the tail
 * catches up, whether a queued message is lost before the tail (the head learns it when a
 * later seq commits), or whether the head drops its newest queued message. Viewers join at
 * different times. Every frame (a full view or a delta, confirmed or speculative) is checked
 * by the privacy oracle against the state it was computed from; at the end every client's
 * speculative view must equal its confirmed view and view(final state).
 *
 * `bug` plants a head bug for the checkers to catch.
 */
function runHead(type: DocumentType, moves: readonly Move[], bug?: 'no-drop' | 'no-confirm'): HeadRun {
  const entropy = 'doc-entropy';
  const spec = new Speculation(type, type.initial, 0, entropy);
  const speculative = new Audience(type, type.initial);
  const confirmed = new Audience(type, type.initial);
  const clients = new Map<string, { spec: Json; conf: Json }>();
  const out: HeadRun = { leaks: [], divergent: [], memoMismatches: [], rebases: 0, drops: 0, mismatches: 0 };
  const tailState = type.createState(); // the tail executes in place, as a real tail does
  let tailQueue: Envelope[] = [];
  let seq = 0;

  const check = (viewer: string, state: JsonObject, frame: Json, stream: string) => {
    for (const leak of findLeaks(type.name, state, viewer, frame)) out.leaks.push(`${stream}: ${leak}`);
  };
  const deliver = (audience: Audience, next: JsonObject, stream: 'spec' | 'conf') => {
    for (const [viewer, delta] of audience.advance(next)) {
      check(viewer, next, delta, stream);
      const client = clients.get(viewer);
      if (client) client[stream] = apply(delta, client[stream]);
    }
    for (const viewer of audience.viewers()) {
      const cached = audience.viewOf(viewer) as JsonObject;
      if (!jsonEqual(cached, view(type, next, viewer))) out.memoMismatches.push(`${stream} view of ${viewer} at seq ${seq}`);
    }
  };
  const join = (viewer: string) => {
    const s = speculative.join(viewer);
    const c = confirmed.join(viewer);
    check(viewer, spec.speculative, s, 'spec join');
    check(viewer, spec.confirmed, c, 'conf join');
    clients.set(viewer, { spec: s, conf: c });
  };
  const tailCatchUp = (count: number) => {
    for (let i = 0; i < count && tailQueue.length > 0; i++) {
      const envelope = tailQueue.shift() as Envelope;
      const result = execute(type, tailState, envelope, entropy, { inPlace: true });
      if (bug === 'no-confirm' && tailQueue.length === 0) continue;
      const transition = spec.confirm(envelope.seq, { redo: result.redo, outcome: result.outcome });
      if (transition.rebased) out.rebases++;
      if (transition.rebased && transition.dropped.length === 0) out.mismatches++;
      deliver(confirmed, spec.confirmed, 'conf');
      deliver(speculative, spec.speculative, 'spec');
    }
  };

  join(viewers[0]);
  moves.forEach((move, index) => {
    if (index === 3) join(viewers[1]);
    if (index === Math.floor(moves.length / 2)) for (const viewer of viewers) join(viewer);
    const op = concreteOp(type.name, spec.speculative, move, index);
    const envelope: Envelope = { doc: 'doc-1', seq: ++seq, timestamp: 1_700_000_000_000 + seq, ...op };
    spec.push(envelope);
    tailQueue.push(envelope);
    deliver(speculative, spec.speculative, 'spec');
    const p = move.pick;
    if (p % 13 === 1 && spec.queue.length > 0) {
      // The head loses its newest queued message (e.g. its forward failed) and rolls it back.
      const lost = (spec.queue[spec.queue.length - 1] as { seq: number }).seq;
      tailQueue = tailQueue.filter((e) => e.seq !== lost);
      out.drops++;
      if (bug !== 'no-drop') {
        spec.drop(lost);
        deliver(speculative, spec.speculative, 'spec');
      }
    } else if (p % 11 === 2 && tailQueue.length > 1) {
      // The oldest queued message never reaches the tail; the head learns when a later seq commits.
      tailQueue.shift();
      out.drops++;
    }
    if (p % 3 === 0) tailCatchUp(p % 5);
  });
  tailCatchUp(Number.POSITIVE_INFINITY);

  const final = spec.confirmed;
  if (!jsonEqual(final, tailState)) out.divergent.push('head confirmed state differs from the tail state');
  for (const [viewer, client] of clients) {
    const expected = normal(view(type, tailState, viewer));
    if (!jsonEqual(normal(client.spec), expected)) out.divergent.push(`${viewer}: speculative view differs`);
    if (!jsonEqual(normal(client.conf), expected)) out.divergent.push(`${viewer}: confirmed view differs`);
  }
  return out;
}

const exampleTypes = [...documentTypes.values()];

test('privacy: no view or view delta, speculative included, shows another hand, the deck, or others\u2019 direct messages', (t) => {
  for (const type of exampleTypes) {
    t.notThrows(() =>
      fc.assert(
        fc.property(movesArb(120), (moves) => {
          const run = runHead(type, moves);
          if (run.leaks.length > 0) throw new Error(run.leaks.slice(0, 3).join('; '));
          return true;
        }),
        { numRuns: 60 },
      ),
    );
  }
});

test('speculation converges: after every queued message is confirmed or dropped, speculative view = confirmed view = view(final)', (t) => {
  let rebases = 0;
  let drops = 0;
  for (const type of exampleTypes) {
    t.notThrows(() =>
      fc.assert(
        fc.property(movesArb(120), (moves) => {
          const run = runHead(type, moves);
          rebases += run.rebases;
          drops += run.drops;
          if (run.divergent.length > 0) throw new Error(run.divergent.slice(0, 3).join('; '));
          if (run.mismatches > 0) throw new Error(`${run.mismatches} confirms differed from the speculation`);
          if (run.memoMismatches.length > 0) throw new Error(`memoized view differs: ${run.memoMismatches[0]}`);
          return true;
        }),
        { numRuns: 60 },
      ),
    );
  }
  t.true(rebases > 0, 'the workloads exercise rebasing');
  t.true(drops > 0, 'the workloads exercise drops');
});

test('privacy checker catches a planted bug: a card table that shows every hand', (t) => {
  const leaky = defineDocument({
    name: 'card-table',
    initial: cardTable.initial,
    errors: [...cardTable.errors],
    privacy: { ...cardTable.privacy.fields, players: collection(record({ id: pub, seat: pub, chips: pub, hand: pub })) },
  });
  for (const name of cardTable.channels) {
    const channel = cardTable.findChannel(name);
    if (channel) leaky.channel(name, channel.validator, channel.handler as never);
  }
  const moves: Move[] = [
    { viewer: 0, kind: 0, pick: 0 },
    { viewer: 1, kind: 0, pick: 0 },
    { viewer: 0, kind: 1, pick: 0 },
  ];
  const run = runHead(leaky, moves);
  t.true(run.leaks.length > 0);
  t.regex(run.leaks[0] as string, /in (alice|bob)'s hand/);
  t.deepEqual(runHead(cardTable, moves).leaks, []);
  // And one that shows the deck.
  const deckShown = defineDocument({ name: 'card-table', initial: cardTable.initial, privacy: { ...cardTable.privacy.fields, deck: pub } });
  const dealt = executeAll(cardTable, moves);
  t.regex(findLeaks('card-table', dealt, 'eve', view(deckShown, dealt, 'eve')).join(), /in the deck/);
  t.deepEqual(findLeaks('card-table', dealt, 'eve', view(cardTable, dealt, 'eve')), []);
});

test('the chat oracle flags a direct message between others, but not a text the viewer may read in its own', (t) => {
  const dm = (from: string, to: string, text: string) => ({ from, to, text, at: 1 });
  const state = {
    ...chat.initial,
    members: { alice: { joinedAt: 1 }, bob: { joinedAt: 1 } },
    dms: { d1: dm('alice', 'alice', 'same-text'), d2: dm('bob', 'alice', 'same-text'), d3: dm('alice', 'alice', 'only-alice') },
  };
  // bob's own message says what alice told herself: showing it to bob leaks nothing.
  t.deepEqual(findLeaks('chat', state, 'bob', { dms: { d2: dm('bob', 'alice', 'same-text') } }), []);
  t.regex(findLeaks('chat', state, 'bob', { dms: { d3: dm('alice', 'alice', 'only-alice') } }).join(), /from alice to alice/);
});

test('convergence checker catches planted bugs: a head that never rolls back a lost message, or misses a confirm', (t) => {
  const moves: Move[] = [
    { viewer: 0, kind: 0, pick: 0 }, // join (chat) / sit (card-table) / add (counter)
    { viewer: 0, kind: 3, pick: 14 }, // pick % 13 === 1: the head drops its newest message
  ];
  for (const type of [chat, counter]) {
    t.deepEqual(runHead(type, moves).divergent, [], `${type.name} converges without the bug`);
    t.true(runHead(type, moves, 'no-drop').divergent.length > 0, `${type.name}: missing rollback is caught`);
    t.true(runHead(type, moves, 'no-confirm').divergent.length > 0, `${type.name}: missing confirm is caught`);
  }
});

function executeAll(type: DocumentType, moves: readonly Move[]): JsonObject {
  let state = type.initial;
  moves.forEach((move, i) => {
    const op = concreteOp(type.name, state, move, i);
    state = execute(type, state, { doc: 'doc-1', seq: i + 1, timestamp: i, ...op }, 'doc-entropy').state;
  });
  return state;
}

// ---------------------------------------------------------------------------------------------

const say = (seq: number, text: string, viewer = 'alice'): Envelope => ({
  doc: 'room',
  seq,
  timestamp: seq,
  viewer,
  channel: seq === 1 ? 'join' : 'say',
  payload: seq === 1 ? {} : { text },
});

test('confirm with the speculated delta is a pointer move; a different delta rebases the queue', (t) => {
  const spec = new Speculation(chat, chat.initial, 0, 'e');
  const tail = [1, 2, 3].map((seq) => say(seq, `m${seq}`));
  for (const envelope of tail) spec.push(envelope);
  const speculated = spec.queue[0]?.execution.state as JsonObject;
  let tailState = chat.initial;
  const first = execute(chat, tailState, tail[0] as Envelope, 'e');
  tailState = first.state;
  const same = spec.confirm(1, first);
  t.false(same.rebased);
  t.is(spec.confirmed, speculated, 'the speculated object is kept');
  // The tail lost seq 2 (a failover): it commits seq 3 on a state without seq 2.
  const third = execute(chat, tailState, tail[2] as Envelope, 'e');
  const rebased = spec.confirm(3, third);
  t.deepEqual(rebased.dropped, [2]);
  t.true(rebased.rebased);
  t.deepEqual(Object.values(spec.confirmed.messages as JsonObject), [{ at: 3, from: 'alice', text: 'm3' }]);
  t.is(spec.queue.length, 0);
});

test('drop(seq) rebases later messages and returns the rollback delta', (t) => {
  const spec = new Speculation(counter, counter.initial, 0, 'e');
  const add = (seq: number, by: number): Envelope => ({ doc: 'c', seq, timestamp: seq, viewer: 'alice', channel: 'add', payload: { by } });
  spec.push(add(1, 5));
  spec.push(add(2, 7));
  spec.push(add(3, 1));
  t.is(spec.speculative.value, 13);
  const { rollback, rebased } = spec.drop(2);
  t.true(rebased);
  t.deepEqual(rollback, { contributions: { alice: 6 }, value: 6 });
  t.is(spec.speculative.value, 6);
  t.deepEqual(
    spec.queue.map((p) => p.seq),
    [1, 3],
  );
  const all = spec.dropAll();
  t.deepEqual(all.dropped, [1, 3]);
  t.deepEqual(all.rollback, { contributions: { alice: null }, value: 0 });
});

test('a full speculation queue gives a clear LimitError and keeps what it has', (t) => {
  const spec = new Speculation(counter, counter.initial, 0, 'e', 2);
  const add = (seq: number): Envelope => ({ doc: 'c', seq, timestamp: seq, viewer: 'a', channel: 'add', payload: { by: 1 } });
  spec.push(add(1));
  spec.push(add(2));
  t.true(spec.full);
  const error = t.throws(() => spec.push(add(3)), { instanceOf: LimitError });
  t.regex(error.message, /queueDepthMax \(2\) reached/);
  t.is(spec.queue.length, 2);
  t.is(spec.speculative.value, 2);
});
