// The dedupe table: idle-only eviction past dedupeClientsMax, admission at the head, and one
// LRU order in memory and after recovery.

import test from 'ava';
import { DedupeTable, type DedupeLimits, type Writes } from './dedupe.ts';
import { noBugs } from './planted.ts';
import { Recovery, type DedupeEntry } from './store.ts';

const limits: DedupeLimits = { dedupeWindowMax: 4, dedupeClientsMax: 2, dedupeIdleMsMin: 1_000 };

/** A store as ordered puts and deletes. */
class Store implements Writes {
  readonly entries = new Map<string, string>();
  put(key: string, value: string): void {
    this.entries.set(key, value);
  }
  del(key: string): void {
    this.entries.delete(key);
  }
}

test('past dedupeClientsMax a client is forgotten only once it has been idle for dedupeIdleMsMin', (t) => {
  const store = new Store();
  const table = new DedupeTable('c1', 'd1');
  let seq = 0;
  const remember = (client: string, clientSeq: number, at: number): void => table.remember(client, [clientSeq, ++seq, '{"ok":true}', at], store, limits, noBugs);
  remember('a', 1, 0);
  remember('b', 1, 100);
  remember('c', 1, 500); // a was last seen 500 ms ago: not idle yet, so nobody is forgotten
  t.is(table.size, 3);
  t.truthy(table.find('a', 1), 'a client that can still resend was forgotten');
  remember('c', 2, 1_050); // now a has been idle for 1,050 ms: it goes, b (950 ms) stays
  t.is(table.size, 2);
  t.is(table.find('a', 1), undefined);
  t.truthy(table.find('b', 1));
  t.false(
    [...store.entries.keys()].some((k) => k.includes('!k!a!')),
    'the forgotten client is still on disk',
  );
});

test('the head admits a new client only with room or an idle least recently used client', (t) => {
  const store = new Store();
  const table = new DedupeTable('c1', 'd1');
  table.remember('a', [1, 1, '{"ok":true}', 0], store, limits, noBugs);
  table.remember('b', [1, 2, '{"ok":true}', 100], store, limits, noBugs);
  t.false(table.admits(1, 500, limits, noBugs), 'admitted a third client while the table is full of recent ones');
  t.true(table.admits(1, 1_000, limits, noBugs), 'refused a new client although the least recently used one is idle');
  t.true(table.admits(1, 500, limits, new Set(['dedupe-forgets-live-client'])), 'the planted bug admits regardless');
});

test('the LRU order after recovery is the order in memory, whatever the clientSeqs', (t) => {
  const store = new Store();
  const table = new DedupeTable('c1', 'd1');
  // Each client's entries arrive with clientSeqs out of order, and clients interleave.
  const uses: [string, number][] = [
    ['a', 5],
    ['b', 1],
    ['a', 2],
    ['c', 9],
    ['b', 7],
    ['a', 3],
    ['c', 1],
  ];
  for (const [i, [client, clientSeq]] of uses.entries()) table.remember(client, [clientSeq, i + 1, '{"ok":true}', i], store, { ...limits, dedupeClientsMax: 10 }, noBugs);
  // Recovery reads the store in key order, as a LevelDB iterator gives it: by client, then clientSeq.
  store.put('c!c1!d!d1!meta', JSON.stringify({ docType: 'counter', appliedSeq: 0, snapshotSeq: 0, logFrom: 1 }));
  store.put('c!c1!d!d1!e', JSON.stringify('00'.repeat(32))); // every document's entropy (store.ts)
  const recovery = new Recovery();
  for (const key of [...store.entries.keys()].sort()) recovery.add(key, store.entries.get(key) as string);
  const recovered = recovery.finish().get('c1')?.docs.get('d1')?.dedupe;
  const order = (entries: Iterable<[string, DedupeEntry[]]>): string[] => [...entries].map(([client]) => client);
  t.deepEqual(order(recovered ?? []), order(table.entries()));
  t.deepEqual(order(table.entries()), ['b', 'a', 'c']);
});
