// The chaos runner's history checks catch each kind of planted fault, and pass a clean history.

import test from 'ava';
import { checkExactlyOnce, checkReads, checkReplicaLogs, checkValues, pairOps, Violations, type FinalDoc, type HistoryEvent, type LoggedEntry } from './history.ts';

const ok = { ok: true };
const entry = (seq: number, clientId: string, clientSeq: number, by: number): LoggedEntry => ({
  seq,
  redoJson: JSON.stringify({ value: by }),
  outcomeJson: JSON.stringify(ok),
  clientId,
  clientSeq,
});
const finalDoc = (log: LoggedEntry[], value: number, contributions: Record<string, number>): FinalDoc => ({
  doc: 'd1',
  appliedSeq: log.length,
  snapshotSeq: 0,
  logFrom: 1,
  log,
  state: { value, contributions },
});

/** Two clients, three acked adds of 1, 2, 3, and a read of 3 after the first two. */
function history(): HistoryEvent[] {
  let time = 0;
  const ev = (process: number, type: HistoryEvent['type'], f: string, value: number | null, extra: Partial<HistoryEvent> = {}): HistoryEvent => ({
    process,
    type,
    f,
    key: 'd1',
    value,
    time: (time += 10),
    ...extra,
  });
  return [
    ev(0, 'invoke', 'add', 1, { clientId: 'p0', clientSeq: 1 }),
    ev(0, 'ok', 'add', 1, { clientId: 'p0', clientSeq: 1, seq: 1 }),
    ev(1, 'invoke', 'add', 2, { clientId: 'p1', clientSeq: 1 }),
    ev(1, 'ok', 'add', 2, { clientId: 'p1', clientSeq: 1, seq: 2 }),
    ev(0, 'invoke', 'read', null),
    ev(0, 'ok', 'read', 3),
    ev(1, 'invoke', 'add', 3, { clientId: 'p1', clientSeq: 2 }),
    ev(1, 'ok', 'add', 3, { clientId: 'p1', clientSeq: 2, seq: 3 }),
  ];
}
const goodLog = [entry(1, 'p0', 1, 1), entry(2, 'p1', 1, 2), entry(3, 'p1', 2, 3)];

function check(events: HistoryEvent[], byNode: Map<string, FinalDoc>): string[] {
  const v = new Violations();
  const ops = pairOps(events, v);
  checkReplicaLogs(new Map([...byNode].map(([node, doc]) => [node, new Map([['d1', doc]])])), v);
  const docs = new Map([['d1', byNode.get('n1') as FinalDoc]]);
  checkExactlyOnce(ops, docs, v);
  checkValues(ops, docs, v);
  checkReads(ops, v);
  return [...new Set(v.result().map((x) => x.check))].sort();
}

test('a clean history passes every check', (t) => {
  const doc = finalDoc(goodLog, 6, { p0: 1, p1: 5 });
  t.deepEqual(
    check(
      history(),
      new Map([
        ['n1', doc],
        ['n2', doc],
      ]),
    ),
    [],
  );
});

test('planted: an acknowledged add missing from the log (lost)', (t) => {
  const doc = finalDoc(goodLog.slice(0, 2), 3, { p0: 1, p1: 2 });
  t.true(
    check(
      history(),
      new Map([
        ['n1', doc],
        ['n2', doc],
      ]),
    ).includes('exactly-once'),
  );
});

test('planted: one add applied twice (a resend without dedupe)', (t) => {
  const doc = finalDoc([...goodLog, entry(4, 'p1', 2, 3)], 9, { p0: 1, p1: 8 });
  t.true(
    check(
      history(),
      new Map([
        ['n1', doc],
        ['n2', doc],
      ]),
    ).includes('exactly-once'),
  );
});

test('planted: replicas whose logs differ', (t) => {
  const a = finalDoc(goodLog, 6, { p0: 1, p1: 5 });
  const b = finalDoc([goodLog[0] as LoggedEntry, goodLog[2] as LoggedEntry, goodLog[1] as LoggedEntry], 6, { p0: 1, p1: 5 });
  t.deepEqual(
    check(
      history(),
      new Map([
        ['n1', a],
        ['n2', b],
      ]),
    ),
    ['replica-logs'],
  );
});

test('planted: a final value that the log does not explain, and a read outside its bounds', (t) => {
  const doc = finalDoc(goodLog, 7, { p0: 1, p1: 6 });
  t.true(
    check(
      history(),
      new Map([
        ['n1', doc],
        ['n2', doc],
      ]),
    ).includes('value'),
  );
  const events = history().map((e) => (e.f === 'read' && e.type === 'ok' ? { ...e, value: 1 } : e));
  const good = finalDoc(goodLog, 6, { p0: 1, p1: 5 });
  t.deepEqual(
    check(
      events,
      new Map([
        ['n1', good],
        ['n2', good],
      ]),
    ),
    ['read-bounds'],
  );
});
