// Exactly once: each document remembers, per client, the outcome of its recent messages, so a
// resend of (clientId, clientSeq) is answered instead of applied again. The table is part of
// the replicated state: every replica changes it the same way, from the deltas it applies
// (never from its own clock), so every replica evicts the same clients in the same order, in
// memory and on disk.
//
// Bounds: `dedupeWindowMax` entries per client (a resend older than the window is refused as
// client_seq_too_old), `dedupeClientsMax` clients per document. Past that bound a client is
// forgotten only once it has been idle for `dedupeIdleMsMin`, longer than any client keeps
// resending; until then the head refuses new clients with a retryable busy. So a client that
// can still resend is never forgotten.

import type { Bugs } from './planted.ts';
import { keys, latestSeq, type DedupeEntry } from './store.ts';

export interface Writes {
  put(key: string, value: string): void;
  del(key: string): void;
}

export interface DedupeLimits {
  /** (clientSeq -> seq, outcome) entries kept per client per document. */
  readonly dedupeWindowMax: number;
  /** Clients remembered per document (see dedupeIdleMsMin). */
  readonly dedupeClientsMax: number;
  /** A client is forgotten (past dedupeClientsMax) only after this long without a message. */
  readonly dedupeIdleMsMin: number;
}

export class DedupeTable {
  /** clientId -> window sorted by clientSeq; least recently used client first. */
  private clients: Map<string, DedupeEntry[]>;

  constructor(
    private readonly chain: string,
    private readonly doc: string,
    clients: Map<string, DedupeEntry[]> = new Map(),
  ) {
    this.clients = clients;
  }

  get size(): number {
    return this.clients.size;
  }

  has(clientId: string): boolean {
    return this.clients.has(clientId);
  }

  find(clientId: string, clientSeq: number): DedupeEntry | undefined {
    const window = this.clients.get(clientId);
    if (window === undefined) return undefined;
    for (const e of window) if (e[0] === clientSeq) return e;
    return undefined;
  }

  /** True when clientSeq is below a full window: its outcome may have been forgotten. */
  tooOld(clientId: string, clientSeq: number, limits: DedupeLimits): boolean {
    const window = this.clients.get(clientId);
    return window !== undefined && window.length >= limits.dedupeWindowMax && clientSeq < (window[0] as DedupeEntry)[0];
  }

  /**
   * Whether `newClients` clients not in the table yet may be admitted at time `now` (the head,
   * at submit): the table has room for them, or its least recently used client is idle.
   */
  admits(newClients: number, now: number, limits: DedupeLimits, bugs: Bugs): boolean {
    if (this.clients.size + newClients <= limits.dedupeClientsMax || bugs.has('dedupe-forgets-live-client')) return true;
    const [lru] = this.clients.values();
    return lru !== undefined && lastUse(lru) <= now - limits.dedupeIdleMsMin;
  }

  /** Records one applied message (on every replica, in seq order). */
  remember(clientId: string, entry: DedupeEntry, writes: Writes, limits: DedupeLimits, bugs: Bugs): void {
    let window = this.clients.get(clientId);
    if (window === undefined) window = [];
    else this.clients.delete(clientId);
    this.clients.set(clientId, window); // most recently used last: the order recovery rebuilds from seqs
    let at = window.length;
    while (at > 0 && (window[at - 1] as DedupeEntry)[0] > entry[0]) at--;
    window.splice(at, 0, entry);
    writes.put(keys.dedupe(this.chain, this.doc, clientId, entry[0]), JSON.stringify([entry[1], entry[2], entry[3]]));
    if (window.length > limits.dedupeWindowMax) {
      // The lowest clientSeq goes, but never the entry just added (it is the latest use).
      const evicted = (window[0] === entry ? window.splice(1, 1)[0] : window.shift()) as DedupeEntry;
      writes.del(keys.dedupe(this.chain, this.doc, clientId, evicted[0]));
    }
    // Past the bound, forget idle clients only; the timestamp is the message's, so every replica decides alike.
    while (this.clients.size > limits.dedupeClientsMax) {
      const [oldest, lru] = this.clients.entries().next().value as [string, DedupeEntry[]];
      if (oldest === clientId) break;
      if (!bugs.has('dedupe-forgets-live-client') && lastUse(lru) > entry[3] - limits.dedupeIdleMsMin) break;
      this.forget(oldest, writes);
    }
  }

  forget(clientId: string, writes: Writes): void {
    for (const e of this.clients.get(clientId) ?? []) writes.del(keys.dedupe(this.chain, this.doc, clientId, e[0]));
    this.clients.delete(clientId);
  }

  forgetAll(writes: Writes): void {
    for (const client of [...this.clients.keys()]) this.forget(client, writes);
  }

  /** Writes every entry (after a state transfer replaced the table). */
  writeAll(writes: Writes): void {
    for (const [client, window] of this.clients) {
      for (const e of window) writes.put(keys.dedupe(this.chain, this.doc, client, e[0]), JSON.stringify([e[1], e[2], e[3]]));
    }
  }

  /** The table in LRU order, for state transfer. */
  toJson(): string {
    return JSON.stringify([...this.clients].map(([client, window]) => [client, window]));
  }

  /** Sorted by client: equal on replicas that agree, whatever the order (for digests). */
  digestText(): string {
    return JSON.stringify([...this.clients].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  }

  entries(): IterableIterator<[string, DedupeEntry[]]> {
    return this.clients.entries();
  }
}

/** When a client last sent a message that was applied (the timestamp of its latest entry). */
function lastUse(window: readonly DedupeEntry[]): number {
  const seq = latestSeq(window);
  for (const e of window) if (e[1] === seq) return e[3];
  return 0;
}
