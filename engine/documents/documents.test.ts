import test from 'ava';
import fc from 'fast-check';
import { movesArb } from '../arbitraries.ts';
import { execute, type Envelope } from '../execute.ts';
import { view } from '../view.ts';
import type { JsonObject } from '../json.ts';
import { runMoves } from '../workloads.ts';
import { cardTable, fullDeck, type CardTableState } from './card-table.ts';
import { chat, entryId, historyMessagesMax, type ChatState } from './chat.ts';
import { counter, type CounterState } from './counter.ts';

test('card-table conserves the deck: every card is in exactly one place, chips plus pot are constant', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(movesArb(150), (moves) => {
        for (const raw of runMoves(cardTable, moves).states) {
          const state = raw as unknown as CardTableState;
          if (state.round === 0) continue;
          const players = Object.values(state.players);
          const cards = [...state.deck, ...state.pile, ...players.flatMap((p) => p.hand)];
          if (cards.length !== fullDeck.length || new Set(cards).size !== fullDeck.length) return false;
          const chips = players.reduce((sum, p) => sum + p.chips, state.pot);
          if (chips !== players.length * 100) return false;
        }
        return true;
      }),
      { numRuns: 100 },
    ),
  );
});

test('card-table deals five cards to each player from a seeded shuffle', (t) => {
  const run = runMoves(cardTable, [
    { viewer: 0, kind: 0, pick: 0 },
    { viewer: 1, kind: 0, pick: 0 },
    { viewer: 2, kind: 0, pick: 0 },
    { viewer: 1, kind: 1, pick: 0 },
  ]);
  const state = run.final as unknown as CardTableState;
  t.is(state.phase, 'playing');
  t.deepEqual(
    Object.values(state.players).map((p) => p.hand.length),
    [5, 5, 5],
  );
  t.is(state.deck.length, 52 - 15);
  t.is(state.turn, 'alice', 'seat order decides the first turn');
  t.notDeepEqual(state.deck, fullDeck.slice(15), 'the deck is shuffled');
});

test('a winner takes the pot when their hand is empty', (t) => {
  let state = cardTable.initial;
  let seq = 0;
  const send = (viewer: string, channel: string, payload: unknown = {}) => {
    const envelope: Envelope = { doc: 'd', seq: ++seq, timestamp: seq, viewer, channel, payload };
    const result = execute(cardTable, state, envelope, 'e');
    t.true(result.outcome.ok, `${viewer} ${channel}: ${JSON.stringify(result.outcome)}`);
    state = result.state;
  };
  send('alice', 'sit');
  send('bob', 'sit');
  send('alice', 'start');
  for (let i = 0; i < 5; i++) {
    send('alice', 'play', { card: (state as unknown as CardTableState).players.alice?.hand[0] });
    if (i < 4) send('bob', 'bet', { amount: 5 });
  }
  const over = state as unknown as CardTableState;
  t.is(over.phase, 'over');
  t.is(over.winner, 'alice');
  t.is(over.players.alice?.chips, 120);
  t.is(over.pot, 0);
});

test('chat keeps at most historyMessagesMax public messages, evicting the oldest', (t) => {
  let state = execute(chat, chat.initial, { doc: 'r', seq: 1, timestamp: 1, viewer: 'alice', channel: 'join', payload: {} }, 'e').state;
  for (let seq = 2; seq <= historyMessagesMax + 11; seq++) {
    state = execute(chat, state, { doc: 'r', seq, timestamp: seq, viewer: 'alice', channel: 'say', payload: { text: `m${seq}` } }, 'e').state;
  }
  const keys = Object.keys((state as unknown as ChatState).messages);
  t.is(keys.length, historyMessagesMax);
  t.is(keys[0], entryId(10), 'the ten oldest were evicted');
  t.is(keys[keys.length - 1], entryId(historyMessagesMax + 9));
  t.is((state as unknown as ChatState).messagesMade, historyMessagesMax + 10);
});

test('counter reset clears every contribution', (t) => {
  const run = runMoves(counter, [
    { viewer: 0, kind: 0, pick: 25 },
    { viewer: 1, kind: 0, pick: 30 },
    { viewer: 0, kind: 7, pick: 0 },
  ]);
  t.deepEqual(run.final as unknown as CounterState, { contributions: {}, value: 0 });
  t.deepEqual((run.states[2] as JsonObject).contributions, { alice: 5, bob: 10 });
});

test('chat direct-message keys do not reveal how many direct messages others sent', (t) => {
  const room = (othersSent: number) => {
    let state = chat.initial;
    let seq = 0;
    const send = (viewer: string, channel: string, payload: unknown) => {
      const result = execute(chat, state, { doc: 'r', seq: ++seq, timestamp: seq, viewer, channel, payload }, 'e');
      t.true(result.outcome.ok);
      state = result.state;
    };
    for (const who of ['alice', 'bob', 'carol']) send(who, 'join', {});
    for (let i = 0; i < othersSent; i++) send('bob', 'dm', { to: 'carol', text: `b${i}` });
    send('alice', 'dm', { to: 'bob', text: 'hi' });
    return view(chat, state, 'alice');
  };
  const quiet = room(0);
  const busy = room(7);
  t.is(Object.keys(quiet.dms as JsonObject).length, 1);
  t.is(busy.dmsMade, null);
  t.is(busy.dmOrder, null);
  t.regex(Object.keys(busy.dms as JsonObject)[0] as string, /^d[0-9a-z]{16}$/);
});

test('chat keeps at most historyMessagesMax direct messages, evicting the oldest', (t) => {
  let state = chat.initial;
  let seq = 0;
  for (const who of ['alice', 'bob']) state = execute(chat, state, { doc: 'r', seq: ++seq, timestamp: seq, viewer: who, channel: 'join', payload: {} }, 'e').state;
  for (let i = 0; i < historyMessagesMax + 5; i++) {
    state = execute(chat, state, { doc: 'r', seq: ++seq, timestamp: seq, viewer: 'alice', channel: 'dm', payload: { to: 'bob', text: `t${i}` } }, 'e').state;
  }
  const dms = Object.values((state as unknown as ChatState).dms);
  t.is(dms.length, historyMessagesMax);
  t.is(dms[0]?.text, 't5');
  t.is(Object.keys((state as unknown as ChatState).dmOrder).length, historyMessagesMax);
});

test('a viewer id such as "toString" or "__proto__" is an ordinary key', (t) => {
  let state = counter.initial;
  for (const [seq, viewer] of ['toString', '__proto__', 'constructor'].entries()) {
    const result = execute(counter, state, { doc: 'c', seq: seq + 1, timestamp: 0, viewer, channel: 'add', payload: { by: 5 } }, 'e');
    t.true(result.outcome.ok);
    state = result.state;
  }
  t.is(JSON.stringify(state), '{"contributions":{"toString":5,"__proto__":5,"constructor":5},"value":15}');
  t.is(view(counter, state, 'toString').mine, 5);
});
