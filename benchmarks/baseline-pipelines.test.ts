// The batching pipeline against an in-memory store whose commits the test releases by hand: the
// messages that arrive while a batch commits go out together in the next one, acks wait for
// their batch, the bounds answer busy, and a failed batch fails its messages and the queued
// messages of its documents (retryable) while memory is reloaded to match the store. No
// database needed; baseline-host.test.ts runs the same pipelines against MySQL and PostgreSQL.

import test from 'ava';
import type { Submit } from '../chain/runtime/wire.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import type { JsonObject } from '../engine/json.ts';
import { apply } from '../engine/patch.ts';
import { type Answer, batching, type BatchingOptions } from './baseline-pipelines.ts';
import type { LogRow, LogStore } from './log-store.ts';

const counter = findDocumentType('counter') as NonNullable<ReturnType<typeof findDocumentType>>;

/** A store keeping rows in memory; each append waits until the test settles it. */
function heldStore() {
  const rows: LogRow[] = [];
  const appends: { rows: readonly LogRow[]; settle: (error?: Error) => void }[] = [];
  const store: LogStore = {
    redos: async (doc) => rows.filter((r) => r.doc === doc).map((r) => ({ seq: r.seq, redoJson: r.redoJson })),
    append: (batch) =>
      new Promise<void>((resolve, reject) =>
        appends.push({
          rows: batch,
          settle: (error) => {
            if (error !== undefined) return reject(error);
            rows.push(...batch);
            resolve();
          },
        }),
      ),
    isDuplicateKey: () => false,
    end: async () => {},
  };
  return { store, rows, appends };
}

const options: BatchingOptions = { documentsMax: 100, batchRowsMax: 100, batchBytesMax: 1 << 20, pendingMessagesMax: 100 };
let requestId = 0;
const add = (doc: string, by: number): Submit => ({
  requestId: ++requestId,
  chain: 'c1',
  doc,
  docType: 'counter',
  channel: 'add',
  payloadJson: JSON.stringify({ by }),
  clientId: 'cl',
  clientSeq: requestId,
  viewer: 'v',
});
type Result = Parameters<Answer>[0];
/** The counter's value after replaying `doc`'s rows. */
const value = (rows: readonly LogRow[], doc: string): number =>
  (rows.filter((r) => r.doc === doc).reduce((state, r) => apply(JSON.parse(r.redoJson), state) as JsonObject, counter.initial) as { value: number }).value;
const tick = () => new Promise((resolve) => setImmediate(resolve));
/** Waits until `f` holds, a tick at a time. */
async function until(f: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000 && !f(); i++) await tick();
  if (!f()) throw new Error('condition not reached');
}

test('messages that arrive while a batch commits go out together in the next one; acks wait for their batch', async (t) => {
  const { store, rows, appends } = heldStore();
  const p = batching(store, options);
  const answers = new Map<number, Result>();
  const submit = (s: Submit) => p.submit(counter, s, (r) => answers.set(s.requestId, r));
  const first = add('a', 1);
  submit(first);
  await until(() => appends.length === 1);
  const later = [add('a', 2), add('b', 5), add('a', 3)];
  for (const s of later) submit(s);
  await tick();
  t.is(appends.length, 1, 'one batch in flight');
  t.is(answers.size, 0, 'nothing acknowledged before its commit');
  appends[0]?.settle();
  await until(() => appends.length === 2);
  t.deepEqual(answers.get(first.requestId), { ok: true, seq: 1, outcomeJson: '{"ok":true}' });
  // Order holds per document; b's message waited for b to load, so it comes after a's.
  t.deepEqual(
    appends[1]?.rows.map((r) => `${r.doc}#${r.seq}`),
    ['a#2', 'a#3', 'b#1'],
  );
  appends[1]?.settle();
  await until(() => answers.size === 4);
  t.deepEqual(
    later.map((s) => (answers.get(s.requestId) as { seq: number }).seq),
    [2, 1, 3],
  );
  t.is(p.batches, 2);
  // Each message ran on the state after its document's previous one: a holds 1 + 2 + 3.
  t.is(value(rows, 'a'), 6);
  t.is(value(rows, 'b'), 5);
});

test('batchRowsMax splits a queue; pendingMessagesMax answers busy, not unbounded growth', async (t) => {
  const { store, appends } = heldStore();
  const p = batching(store, { ...options, batchRowsMax: 2, pendingMessagesMax: 5 });
  const answers: Result[] = [];
  for (let i = 0; i < 7; i++) p.submit(counter, add(`d${i}`, 1), (r) => answers.push(r));
  await until(() => appends.length === 1);
  t.deepEqual(
    answers.map((r) => (r.ok ? 'ack' : r.code)),
    ['busy', 'busy'],
  );
  t.true(answers.every((r) => !r.ok && r.retryable));
  t.is(appends[0]?.rows.length, 2);
  appends[0]?.settle();
  await until(() => appends.length === 2);
  t.is(appends[1]?.rows.length, 2);
  appends[1]?.settle();
  await until(() => appends.length === 3);
  t.is(appends[2]?.rows.length, 1);
  appends[2]?.settle();
  await until(() => answers.length === 7);
});

test('a failed batch fails its messages and the queued ones of its documents (retryable); memory is reloaded to match the store', async (t) => {
  const { store, rows, appends } = heldStore();
  const p = batching(store, options);
  const answers = new Map<number, Result>();
  const submit = (s: Submit) => p.submit(counter, s, (r) => answers.set(s.requestId, r));
  submit(add('a', 1));
  await until(() => appends.length === 1);
  appends[0]?.settle();
  await until(() => answers.size === 1);
  const doomed = add('a', 10);
  submit(doomed);
  await until(() => appends.length === 2);
  const queuedSame = add('a', 100); // executed on top of the doomed message
  const queuedOther = add('b', 7);
  submit(queuedSame);
  submit(queuedOther);
  await tick();
  appends[1]?.settle(new Error('disk on fire'));
  await until(() => appends.length === 3);
  for (const s of [doomed, queuedSame]) t.like(answers.get(s.requestId), { ok: false, code: 'storage_error', retryable: true });
  t.deepEqual(
    appends[2]?.rows.map((r) => `${r.doc}#${r.seq}`),
    ['b#1'],
  );
  appends[2]?.settle();
  await until(() => answers.has(queuedOther.requestId));
  t.like(answers.get(queuedOther.requestId), { ok: true, seq: 1 });
  // a was reloaded from the store: its next message is seq 2, on top of the committed 1.
  const next = add('a', 1000);
  submit(next);
  await until(() => appends.length === 4);
  appends[3]?.settle();
  await until(() => answers.has(next.requestId));
  t.like(answers.get(next.requestId), { ok: true, seq: 2 });
  t.is(value(rows, 'a'), 1001);
});
