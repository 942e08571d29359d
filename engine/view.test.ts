import test from 'ava';
import { AssertionError } from './assert.ts';
import { collection, defineDocument, hidden, ownedBy, policy, pub, record } from './document.ts';
import { counter } from './documents/index.ts';
import { LimitError } from './errors.ts';
import { execute } from './execute.ts';
import type { JsonObject } from './json.ts';
import { apply } from './patch.ts';
import { v } from './validate.ts';
import { Audience, view, viewDelta } from './view.ts';

type Doc = {
  title: string;
  secret: string;
  undeclared: number;
  owner: string;
  note: string;
  revealed: boolean;
  answer: string;
  profiles: Record<string, { name: string; email: string }>;
  mail: Record<string, { to: string; body: string }>;
  badges: Record<string, number>;
};

const initial: Doc = {
  title: 'T',
  secret: 's3cret',
  undeclared: 7,
  owner: 'alice',
  note: 'for alice',
  revealed: false,
  answer: '42',
  profiles: { alice: { name: 'Alice', email: 'a@x' }, bob: { name: 'Bob', email: 'b@x' } },
  mail: { '1': { to: 'bob', body: 'hi bob' }, '2': { to: 'carol', body: 'hi carol' } },
  badges: { alice: 1, bob: 2 },
};

const rules = defineDocument({
  name: 'rules',
  initial,
  privacy: {
    title: pub,
    secret: hidden,
    owner: pub,
    note: ownedBy('owner'),
    revealed: pub,
    answer: policy((_viewer, state: Doc) => state.revealed),
    profiles: collection(record({ name: pub, email: ownedBy('$key') })),
    mail: collection(ownedBy('to')),
    badges: collection(ownedBy('$key')),
  },
  computed: { whoami: (viewer) => viewer, badgeCount: (_viewer, state) => Object.keys(state.badges).length },
}).channel('reveal', v.object({}), () => ({ revealed: true }));

test('each privacy rule: public, hidden, owner field, owner key, policy, record, collection, computed', (t) => {
  const state = rules.initial;
  t.deepEqual(view(rules, state, 'bob'), {
    answer: null,
    badgeCount: 2,
    badges: { bob: 2 },
    mail: { '1': { body: 'hi bob', to: 'bob' } },
    note: null,
    owner: 'alice',
    profiles: { alice: { email: null, name: 'Alice' }, bob: { email: 'b@x', name: 'Bob' } },
    revealed: false,
    secret: null,
    title: 'T',
    undeclared: null,
    whoami: 'bob',
  });
  const alice = view(rules, state, 'alice');
  t.is(alice.note, 'for alice');
  t.deepEqual(alice.mail, {}, 'hidden collection entries are left out, ids included');
  t.is(alice.secret, null, 'hidden goes out as null');
  t.is(alice.undeclared, null, 'a member without a rule is hidden');
  const revealed = execute(rules, state, { doc: 'd', seq: 1, timestamp: 0, viewer: 'x', channel: 'reveal', payload: {} }, 'e').state;
  t.is(view(rules, revealed, 'carol').answer, '42', 'policy sees the whole state');
});

test('viewDelta carries newly visible values, and null for values that become hidden', (t) => {
  const before = view(rules, rules.initial, 'carol');
  const after = view(rules, { ...rules.initial, revealed: true, owner: 'carol' } as JsonObject, 'carol');
  t.deepEqual(viewDelta(before, after), { answer: '42', note: 'for alice', owner: 'carol', revealed: true });
  t.deepEqual(viewDelta(after, before), { answer: null, note: null, owner: 'alice', revealed: false });
  t.deepEqual(apply(apply(viewDelta(before, after), before), {}), apply(after, {}));
});

test('Audience: full view on join, deltas on advance, nothing for unaffected viewers, bounded viewers', (t) => {
  const audience = new Audience(counter, counter.initial, 2);
  t.deepEqual(audience.join('alice'), { contributions: {}, mine: 0, value: 0 });
  t.deepEqual(audience.join('bob'), { contributions: {}, mine: 0, value: 0 });
  const error = t.throws(() => audience.join('carol'), { instanceOf: LimitError });
  t.regex(error.message, /viewersMax \(2\) reached/);
  const add = execute(counter, counter.initial, { doc: 'c', seq: 1, timestamp: 0, viewer: 'alice', channel: 'add', payload: { by: 3 } }, 'e');
  const deltas = audience.advance(add.state);
  t.deepEqual(deltas.get('alice'), { contributions: { alice: 3 }, mine: 3, value: 3 });
  t.deepEqual(deltas.get('bob'), { value: 3 }, 'bob learns the total, not alice\u2019s share');
  t.is(audience.advance(add.state).size, 0, 'the same state again gives no deltas');
  audience.leave('bob');
  t.is(audience.size, 1);
  t.deepEqual(audience.join('carol'), { contributions: {}, mine: 0, value: 3 });
});

test('a policy or computed value that throws hides its value instead of breaking the view', (t) => {
  const fragile = defineDocument({
    name: 'fragile',
    initial: { a: 1 },
    privacy: {
      a: policy(() => {
        throw new Error('policy bug');
      }),
    },
    computed: {
      c: () => {
        throw new Error('computed bug');
      },
    },
  });
  t.deepEqual(view(fragile, fragile.initial, 'x'), { a: null, c: null });
});

test('privacy code that reaches for Math.random is an assertion failure, not a silent leak', (t) => {
  const random = defineDocument({ name: 'random', initial: { a: 1 }, privacy: { a: policy(() => Math.random() > 2) } });
  t.throws(() => view(random, random.initial, 'x'), { instanceOf: AssertionError, message: /called Math\.random/ });
  t.is(typeof Math.random(), 'number');
});

test('ownedBy on a collection of primitive entries: only $key can name the owner', (t) => {
  const type = defineDocument({
    name: 'notes',
    initial: { notes: { owner: 'mallory', alice: 'alice-private', bob: 'bob-private' } },
    privacy: { notes: collection(ownedBy('owner')) },
  });
  t.deepEqual(view(type, type.initial, 'mallory').notes, {}, 'an entry keyed "owner" does not make its value an owner field');
  const keyed = defineDocument({ name: 'notes', initial: type.initial, privacy: { notes: collection(ownedBy('$key', 'owner')) } });
  t.deepEqual(view(keyed, keyed.initial, 'alice').notes, { alice: 'alice-private' });
});
