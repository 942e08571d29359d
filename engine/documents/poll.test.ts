import test from 'ava';
import { readFileSync } from 'node:fs';
import { execute, type Envelope } from '../execute.ts';
import { view } from '../view.ts';
import { poll } from './poll.ts';

const at = (seq: number, viewer: string, channel: string, payload: unknown): Envelope => ({
  doc: 'poll-1',
  seq,
  timestamp: 1_700_000_000_000 + seq,
  viewer,
  channel,
  payload,
});

test('the README shows poll.ts verbatim', (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const source = readFileSync(new URL('./poll.ts', import.meta.url), 'utf8');
  t.true(readme.includes(source), 'README.md must contain engine/documents/poll.ts exactly; copy it back in');
});

test('the README walkthrough of the poll holds', (t) => {
  let state = poll.initial;
  state = execute(poll, state, at(1, 'ann', 'setup', { question: 'Lunch?', options: ['pizza', 'soup'] }), 'secret').state;
  const vote = execute(poll, state, at(2, 'bob', 'vote', { choice: 1 }), 'secret');
  t.deepEqual(vote.outcome, { ok: true });
  t.deepEqual(vote.redo, { ballots: { bob: { at: 1700000000002, choice: 1 } }, counts: [0, 1] });
  t.deepEqual(vote.undo, { ballots: { bob: null }, counts: [0, 0] });
  t.deepEqual(view(poll, vote.state, 'bob').ballots, { bob: { at: 1700000000002, choice: 1 } });
  t.deepEqual(view(poll, vote.state, 'cat').ballots, {});
  t.is(view(poll, vote.state, 'cat').counts, null);
  t.deepEqual(view(poll, vote.state, 'ann').counts, [0, 1], 'the owner watches the counts');
  t.deepEqual(execute(poll, vote.state, at(3, 'bob', 'close', {}), 'secret').outcome, {
    ok: false,
    code: 'not_owner',
    message: 'only the owner closes the poll',
  });
  const closed = execute(poll, vote.state, at(3, 'ann', 'close', {}), 'secret').state;
  t.deepEqual(view(poll, closed, 'cat').counts, [0, 1], 'everyone sees the counts once closed');
  t.is(execute(poll, closed, at(4, 'cat', 'vote', { choice: 0 }), 'secret').outcome.ok, false);
});

test('changing a vote moves it between counts', (t) => {
  let state = execute(poll, poll.initial, at(1, 'ann', 'setup', { question: 'Q', options: ['a', 'b', 'c'] }), 'e').state;
  state = execute(poll, state, at(2, 'bob', 'vote', { choice: 0 }), 'e').state;
  state = execute(poll, state, at(3, 'bob', 'vote', { choice: 2 }), 'e').state;
  t.deepEqual(state.counts, [0, 0, 1]);
  const again = execute(poll, state, at(4, 'ann', 'setup', { question: 'Q2', options: ['x'] }), 'e');
  t.is(again.outcome.ok ? 'ok' : again.outcome.code, 'already_set_up');
  const bad = execute(poll, state, at(5, 'bob', 'vote', { choice: 5 }), 'e');
  t.is(bad.outcome.ok ? 'ok' : bad.outcome.code, 'no_such_option');
});
