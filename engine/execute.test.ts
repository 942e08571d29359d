import test from 'ava';
import fc from 'fast-check';
import { movesArb } from './arbitraries.ts';
import { defineDocument, type DocumentType, pub } from './document.ts';
import { cardTable, chat, counter, documentTypes } from './documents/index.ts';
import { execute, type Envelope, type Execution } from './execute.ts';
import { canonicalize, jsonEqual, type JsonObject } from './json.ts';
import { apply } from './patch.ts';
import { documentRandom, seededRandom } from './random.ts';
import { v } from './validate.ts';
import { runMoves, type Move } from './workloads.ts';

const types = [...documentTypes.values()];
const bytes = (execution: Execution): string => JSON.stringify([execution.redo, execution.undo, execution.outcome]);
const reparse = (state: JsonObject): JsonObject => canonicalize(JSON.parse(JSON.stringify(state))) as JsonObject;
const envelope = (channel: string, payload: unknown, viewer = 'alice', seq = 1): Envelope => ({
  doc: 'doc-1',
  seq,
  timestamp: 1_700_000_000_000,
  viewer,
  channel,
  payload,
});

/**
 * Determinism checker: re-executes every logged envelope against a copy of its input state
 * parsed back from JSON (as a replica that recovered from disk would hold it) and returns the
 * seqs whose deltas are not byte-identical.
 */
function nondeterministicSeqs(type: DocumentType, moves: readonly Move[]): number[] {
  const run = runMoves(type, moves);
  const bad: number[] = [];
  run.envelopes.forEach((env, i) => {
    const again = execute(type, reparse(run.states[i] as JsonObject), env, 'entropy');
    if (bytes(again) !== bytes(run.executions[i] as Execution)) bad.push(env.seq);
  });
  return bad;
}

test('determinism: the same state and envelope give byte-identical deltas, on any replica', (t) => {
  for (const type of types) {
    t.notThrows(() =>
      fc.assert(
        fc.property(movesArb(60), (moves) => nondeterministicSeqs(type, moves).length === 0),
        { numRuns: 60 },
      ),
    );
  }
});

test('determinism: a tail executing in place and a head executing by copying produce the same bytes', (t) => {
  for (const type of types) {
    t.notThrows(() =>
      fc.assert(
        fc.property(movesArb(80), (moves) => {
          const head = runMoves(type, moves);
          let tail = type.createState();
          for (const [i, env] of head.envelopes.entries()) {
            const result = execute(type, tail, env, 'entropy', { inPlace: true });
            if (result.state !== tail) return false; // in place means the same object
            if (bytes(result) !== bytes(head.executions[i] as Execution)) return false;
            tail = result.state;
          }
          return JSON.stringify(tail) === JSON.stringify(head.final);
        }),
        { numRuns: 60 },
      ),
    );
  }
});

test('determinism checker catches a planted bug: state kept outside the document', (t) => {
  let calls = 0;
  const impure = defineDocument({ name: 'counter', initial: { n: 0 }, privacy: { n: pub } })
    .channel('add', v.json(), () => ({ n: ++calls })) // the planted bug: a module-level counter
    .channel('reset', v.json(), () => ({ n: 0 }));
  const moves: Move[] = [
    { viewer: 0, kind: 0, pick: 0 },
    { viewer: 1, kind: 1, pick: 0 },
  ];
  t.deepEqual(nondeterministicSeqs(impure, moves), [1, 2]);
});

test('replay: re-executing the log, or applying its redo deltas, gives the final state; undo walks back', (t) => {
  for (const type of types) {
    t.notThrows(() =>
      fc.assert(
        fc.property(movesArb(80), (moves) => {
          const run = runMoves(type, moves);
          // A new tail re-executes the committed log from the initial state.
          let replayed = type.initial;
          for (const env of run.envelopes) replayed = execute(type, replayed, env, 'entropy').state;
          if (JSON.stringify(replayed) !== JSON.stringify(run.final)) return false;
          // A replica applies the redo deltas it receives.
          let applied: JsonObject = type.initial;
          for (const execution of run.executions) applied = apply(execution.redo, applied) as JsonObject;
          if (JSON.stringify(applied) !== JSON.stringify(run.final)) return false;
          // Undo deltas in reverse order take the final state back to the initial one.
          let undone: JsonObject = run.final;
          for (const execution of [...run.executions].reverse()) undone = apply(execution.undo, undone) as JsonObject;
          return jsonEqual(undone, type.initial);
        }),
        { numRuns: 60 },
      ),
    );
  }
});

test('ctx.random is seeded by (doc, seq, entropy); ctx.now is the envelope timestamp', (t) => {
  let state = cardTable.initial;
  for (const [i, viewer] of ['alice', 'bob'].entries()) {
    state = execute(cardTable, state, envelope('sit', {}, viewer, i + 1), 'e').state;
  }
  const deal = (entropy: string, seq = 3, doc = 'doc-1') => JSON.stringify(execute(cardTable, state, { ...envelope('start', {}, 'alice', seq), doc }, entropy).state.deck);
  t.is(deal('e'), deal('e'));
  t.not(deal('e'), deal('f'), 'other entropy, other shuffle');
  t.not(deal('e', 3), deal('e', 4), 'other seq, other shuffle');
  t.not(deal('e', 3, 'doc-1'), deal('e', 3, 'doc-2'), 'other document, other shuffle');

  let room = execute(chat, chat.initial, envelope('join', {}), 'e').state;
  room = execute(chat, room, { ...envelope('say', { text: 'hi' }, 'alice', 2), timestamp: 42 }, 'e').state;
  t.deepEqual(room.messages, { m000000000000: { at: 42, from: 'alice', text: 'hi' } });
});

test('ctx.random is keyed by the entropy bytes (HMAC-SHA256(entropy, doc | seq)), not by anything a client knows', (t) => {
  let state = cardTable.initial;
  for (const [i, viewer] of ['alice', 'bob'].entries()) state = execute(cardTable, state, envelope('sit', {}, viewer, i + 1), 'e').state;
  const deal = (entropy: Uint8Array | string) => JSON.stringify(execute(cardTable, state, envelope('start', {}, 'alice', 3), entropy).state.deck);
  const key = new Uint8Array(32).map((_, i) => (i * 37 + 11) & 255);
  t.is(deal(key), deal(Uint8Array.from(key)), 'the same key, the same shuffle');
  t.not(deal(key), deal(key.map((b, i) => (i === 31 ? b ^ 1 : b))), 'one bit of the key changes the shuffle');
  t.is(deal('walkthrough'), deal(new TextEncoder().encode('walkthrough')), 'text is its UTF-8 bytes');
  // Unkeyed text seeding (tools only) is not what documents get.
  t.not(documentRandom('doc-1', 3, 'sim-cluster').next(), seededRandom('doc-1', 3, 'sim-cluster').next());
});

// ---------------------------------------------------------------------------------------------
// Error paths: each gives a typed outcome, empty deltas, and the very same state object.

function assertRejected(t: import('ava').ExecutionContext, type: DocumentType, state: JsonObject, env: Envelope, code: string, message?: RegExp): void {
  const result = execute(type, state, env, 'e');
  t.false(result.outcome.ok);
  if (!result.outcome.ok) {
    t.is(result.outcome.code, code);
    if (message) t.regex(result.outcome.message, message);
  }
  t.deepEqual(result.redo, {});
  t.deepEqual(result.undo, {});
  t.is(result.state, state);
}

test('error: unknown channel', (t) => {
  assertRejected(t, counter, counter.initial, envelope('subtract', { by: 1 }), 'unknown_channel', /no channel "subtract"/);
});

test('error: payload fails validation (wrong type, missing member, unknown member)', (t) => {
  assertRejected(t, counter, counter.initial, envelope('add', { by: 'one' }), 'invalid_payload', /payload\.by: expected an integer/);
  assertRejected(t, counter, counter.initial, envelope('add', {}), 'invalid_payload', /payload\.by/);
  assertRejected(t, counter, counter.initial, envelope('add', { by: 1, extra: 2 }), 'invalid_payload', /no member named "extra"/);
  assertRejected(t, counter, counter.initial, envelope('add', [1]), 'invalid_payload', /expected an object/);
});

test('error: payload is not JSON', (t) => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assertRejected(t, counter, counter.initial, envelope('add', cyclic), 'payload_too_large', /or is cyclic/);
  assertRejected(t, counter, counter.initial, envelope('add', { by: Number.NaN }), 'invalid_payload');
  assertRejected(t, counter, counter.initial, envelope('add', { by: new Date(0) }), 'invalid_payload', /plain objects/);
});

test('error: payload over the size bound, in bytes or in nesting depth', (t) => {
  const big = 'x'.repeat(counter.limits.payloadBytesMax);
  assertRejected(t, counter, counter.initial, envelope('add', { by: big }), 'payload_too_large', /bytes; the limit is 16384/);
  // Multi-byte characters count as their UTF-8 size.
  const wide = '€'.repeat(Math.ceil(counter.limits.payloadBytesMax / 3));
  assertRejected(t, counter, counter.initial, envelope('add', { by: wide }), 'payload_too_large');
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = { d: deep };
  assertRejected(t, counter, counter.initial, envelope('add', deep), 'payload_too_large', /nests deeper than 16/);
});

test('error: a handler that throws changes nothing', (t) => {
  const type = defineDocument({ name: 'thrower', initial: { n: 0 }, privacy: { n: pub } }).channel('boom', v.object({}), () => {
    throw new Error('kaboom');
  });
  assertRejected(t, type, type.initial, envelope('boom', {}), 'handler_failed', /threw: kaboom/);
});

test('error: an async handler (a promise that rejects) changes nothing', async (t) => {
  const type = defineDocument({ name: 'async', initial: { n: 0 }, privacy: { n: pub } }).channel('later', v.object({}), (async () => {
    throw new Error('rejected later');
  }) as never);
  assertRejected(t, type, type.initial, envelope('later', {}), 'handler_failed', /must be synchronous/);
  await new Promise((resolve) => setImmediate(resolve)); // no unhandled rejection escapes
});

test('error: ctx.reject gives the typed document error; an undeclared code is a handler failure', (t) => {
  const type = defineDocument({ name: 'picky', initial: { n: 0 }, errors: ['too_small'], privacy: { n: pub } })
    .channel('set', v.object({ n: v.integer() }), (_s, payload, ctx) => {
      if (payload.n < 10) ctx.reject('too_small', 'n must be at least 10');
      return { n: payload.n };
    })
    .channel('rogue', v.object({}), (_s, _p, ctx) => ctx.reject('made_up' as 'too_small', 'no such code'))
    .channel('swallow', v.object({}), (_s, _p, ctx) => {
      try {
        ctx.reject('too_small', 'caught and ignored');
      } catch {
        // a handler cannot take a rejection back
      }
      return { n: 99 };
    });
  assertRejected(t, type, type.initial, envelope('set', { n: 3 }), 'too_small', /at least 10/);
  assertRejected(t, type, type.initial, envelope('rogue', {}), 'handler_failed', /undeclared code "made_up"/);
  assertRejected(t, type, type.initial, envelope('swallow', {}), 'too_small');
  t.deepEqual(execute(type, type.initial, envelope('set', { n: 12 }), 'e').state, { n: 12 });
});

test('error: a handler returning something that is not a JSON merge patch', (t) => {
  const returns = (value: () => unknown) => defineDocument({ name: 'bad-patch', initial: { n: 0 }, privacy: { n: pub } }).channel('go', v.object({}), value as never);
  assertRejected(
    t,
    returns(() => 5),
    counter.initial,
    envelope('go', {}),
    'invalid_patch',
    /must return a merge patch object/,
  );
  assertRejected(
    t,
    returns(() => ({ n: undefined })),
    counter.initial,
    envelope('go', {}),
    'invalid_patch',
    /undefined is not JSON/,
  );
  assertRejected(
    t,
    returns(() => ({ n: Number.POSITIVE_INFINITY })),
    counter.initial,
    envelope('go', {}),
    'invalid_patch',
  );
  assertRejected(
    t,
    returns(() => ({ n: () => 1 })),
    counter.initial,
    envelope('go', {}),
    'invalid_patch',
    /function is not JSON/,
  );
  assertRejected(
    t,
    returns(() => ({ n: new Map() })),
    counter.initial,
    envelope('go', {}),
    'invalid_patch',
    /plain objects/,
  );
  let deep: Record<string, unknown> = {};
  const root = deep;
  for (let i = 0; i < 40; i++) deep = deep.d = {};
  assertRejected(
    t,
    returns(() => root),
    counter.initial,
    envelope('go', {}),
    'invalid_patch',
    /too deep/,
  );
});

test('error: document code has no route to Math.random, Date.now, new Date(), performance.now or crypto', (t) => {
  const sources: [string, () => unknown][] = [
    ['Math.random', () => Math.random()],
    ['Date.now', () => Date.now()],
    ['new Date()', () => new Date()],
    ['performance.now', () => performance.now()],
    ['crypto.randomUUID', () => crypto.randomUUID()],
    ['crypto.getRandomValues', () => crypto.getRandomValues(new Uint8Array(4))],
    ['process.hrtime', () => process.hrtime()],
    ['process.hrtime.bigint', () => process.hrtime.bigint()],
  ];
  for (const [name, call] of sources) {
    const type = defineDocument({ name: 'cheater', initial: { n: 0 }, privacy: { n: pub } }).channel('roll', v.object({}), () => {
      try {
        call(); // even a caught trap fails the message
      } catch {
        return { n: 4 };
      }
      return { n: 5 };
    });
    assertRejected(t, type, type.initial, envelope('roll', {}), 'nondeterministic_call', new RegExp(name.replace(/[.()]/g, '\\$&')));
  }
  // The traps are gone afterwards, and a date from a timestamp is still allowed inside.
  t.is(typeof Math.random(), 'number');
  t.true(Date.now() > 0);
  t.is(typeof process.hrtime.bigint(), 'bigint', 'sealing keeps process.hrtime.bigint for the rest of the process');
  const dated = defineDocument({ name: 'dated', initial: { y: 0 }, privacy: { y: pub } }).channel('go', v.object({}), (_s, _p, ctx) => ({
    y: new Date(ctx.now).getUTCFullYear(),
  }));
  t.deepEqual(execute(dated, dated.initial, envelope('go', {}), 'e').state, { y: 2023 });
});

test('a handler that mutates its input fails alike on a copying head and an in-place tail (debug runs)', (t) => {
  const type = defineDocument({ name: 'mutator', initial: { items: [] as string[] }, privacy: { items: pub } }).channel('push', v.object({ x: v.string() }), (state) => {
    (state.items as string[]).push('sneaky');
    return { items: state.items as string[] };
  });
  const head = execute(type, type.initial, envelope('push', { x: 'a' }), 'e');
  const tailState = type.createState();
  const tail = execute(type, tailState, envelope('push', { x: 'a' }), 'e', { inPlace: true });
  t.is(head.outcome.ok ? 'ok' : head.outcome.code, 'handler_failed');
  t.deepEqual(tail.outcome, head.outcome);
  t.deepEqual(tailState, { items: [] });
  t.deepEqual(type.initial, { items: [] });
});

test('document code reached through a returned getter, a Date instance or an assignment is still sealed', (t) => {
  const sneaky = (handler: () => unknown) => defineDocument({ name: 'sneaky', initial: { n: 0 }, privacy: { n: pub } }).channel('go', v.object({}), handler as never);
  const getter = sneaky(() => ({
    get n() {
      return Math.random();
    },
  }));
  assertRejected(t, getter, getter.initial, envelope('go', {}), 'nondeterministic_call');
  const viaInstance = sneaky(() => ({ n: new (new Date(0).constructor as DateConstructor)().getTime() }));
  assertRejected(t, viaInstance, viaInstance.initial, envelope('go', {}), 'nondeterministic_call', /new Date\(\)/);
  const disarm = sneaky(() => {
    Math.random = () => 0.5;
    return { n: 1 };
  });
  assertRejected(t, disarm, disarm.initial, envelope('go', {}), 'handler_failed');
  assertRejected(t, getter, getter.initial, envelope('go', {}), 'nondeterministic_call');
  const weird = sneaky(() => {
    throw Object.create(null);
  });
  assertRejected(t, weird, weird.initial, envelope('go', {}), 'handler_failed', /\[object Object\]/);
  t.true(new Date(0).constructor === Date, 'the real constructor is back afterwards');
});

test('error: card-table rejects each illegal move with its typed error', (t) => {
  const steps: [string, string, unknown, string][] = [
    ['alice', 'start', {}, 'not_seated'],
    ['alice', 'sit', {}, 'ok'],
    ['alice', 'sit', {}, 'already_seated'],
    ['alice', 'start', {}, 'not_enough_players'],
    ['alice', 'draw', {}, 'not_playing'],
    ['bob', 'sit', {}, 'ok'],
    ['alice', 'start', {}, 'ok'],
    ['carol', 'sit', {}, 'game_in_progress'],
    ['bob', 'start', {}, 'game_in_progress'],
    ['bob', 'draw', {}, 'not_your_turn'],
    ['carol', 'draw', {}, 'not_seated'],
    ['alice', 'play', { card: 'ZZ' }, 'card_not_in_hand'],
    ['alice', 'bet', { amount: 101 }, 'insufficient_chips'],
    ['alice', 'bet', { amount: 0 }, 'invalid_payload'],
    ['alice', 'bet', { amount: 100 }, 'ok'],
  ];
  let state = cardTable.initial;
  steps.forEach(([viewer, channel, payload, code], i) => {
    const result = execute(cardTable, state, envelope(channel, payload, viewer, i + 1), 'e');
    t.is(result.outcome.ok ? 'ok' : result.outcome.code, code, `${viewer} ${channel}`);
    if (!result.outcome.ok) t.is(result.state, state);
    state = result.state;
  });
  t.is(state.pot, 100);
  t.is(state.turn, 'bob');
});

test('error: chat not_a_member, unknown_recipient and room_full; counter out_of_range and too_many_contributors', (t) => {
  const send = (type: DocumentType, state: JsonObject, viewer: string, channel: string, payload: unknown, seq = 1) => execute(type, state, envelope(channel, payload, viewer, seq), 'e');
  assertRejected(t, chat, chat.initial, envelope('say', { text: 'hi' }), 'not_a_member', /join the room/);
  assertRejected(t, chat, chat.initial, envelope('leave', {}), 'not_a_member');
  const joined = send(chat, chat.initial, 'alice', 'join', {}).state;
  assertRejected(t, chat, joined, envelope('dm', { to: 'bob', text: 'psst' }), 'unknown_recipient', /bob is not a member/);
  let full = joined;
  for (let i = 1; i < 1000; i++) full = send(chat, full, `m${i}`, 'join', {}, i + 1).state;
  assertRejected(t, chat, full, envelope('join', {}, 'late'), 'room_full', /at most 1000 members/);

  const big = send(counter, counter.initial, 'alice', 'add', { by: 1 }).state;
  assertRejected(t, counter, { ...big, value: 999_999_999 }, envelope('add', { by: 1000 }), 'out_of_range');
  const crowd: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) crowd[`v${i}`] = 1;
  assertRejected(t, counter, { value: 1000, contributions: crowd }, envelope('add', { by: 1 }, 'newcomer'), 'too_many_contributors');
});

test('error: card-table table_full, deck_empty and hand_full', (t) => {
  let seq = 0;
  let state = cardTable.initial;
  const run = (viewer: string, channel: string, payload: unknown = {}) => {
    const result = execute(cardTable, state, envelope(channel, payload, viewer, ++seq), 'e');
    state = result.state;
    return result.outcome.ok ? 'ok' : result.outcome.code;
  };
  for (const p of ['p0', 'p1', 'p2', 'p3', 'p4', 'p5']) t.is(run(p, 'sit'), 'ok');
  t.is(run('p6', 'sit'), 'table_full');
  t.is(run('p0', 'start'), 'ok');
  // 52 - 30 dealt = 22 cards in the deck; draw in turn until it is empty or a hand is full.
  const order = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
  const codes = new Set<string>();
  for (let turn = 0; turn < 60; turn++) {
    const who = order[turn % order.length] as string;
    const code = run(who, 'draw');
    codes.add(code);
    if (code !== 'ok') t.is(run(who, 'bet', { amount: 1 }), 'ok');
  }
  t.true(codes.has('deck_empty'));
  // A hand can only grow to handCardsMax: make one player draw while the others bet.
  let table = cardTable.initial;
  seq = 0;
  state = table;
  for (const p of ['a', 'b']) run(p, 'sit');
  run('a', 'start');
  let sawFull = false;
  for (let i = 0; i < 40 && !sawFull; i++) {
    const code = run('a', 'draw');
    if (code === 'hand_full') sawFull = true;
    else if (code === 'ok') run('b', 'bet', { amount: 1 });
    else break;
  }
  table = state;
  t.true(sawFull);
  t.is(((table.players as JsonObject).a as { hand: string[] }).hand.length, 12);
});
