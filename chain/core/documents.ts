// The documents one replica holds, and every change to their durable form: the queue of
// sequenced messages, the delta log, the snapshot and its compaction, the dedupe table and the
// per-document meta. Each change is a put or delete into the replica's open batch (see
// store.ts for the key layout); nothing here decides the protocol.

import { assert } from '../../engine/assert.ts';
import type { DocumentType } from '../../engine/document.ts';
import { findDocumentType } from '../../engine/documents/index.ts';
import type { JsonObject } from '../../engine/json.ts';
import { idPattern } from './config.ts';
import { DedupeTable, type DedupeLimits, type Writes } from './dedupe.ts';
import type { GroupCommit } from './durability.ts';
import type { WireDelta, WireEnvelope } from './frames.ts';
import type { Bugs } from './planted.ts';
import { type DedupeEntry, type DocMeta, entropyRecord, keys, type RecoveredDoc, storeLayout } from './store.ts';
import { isEntropy } from './validate.ts';

export interface DocumentLimits extends DedupeLimits {
  /** Documents one replica holds (all are kept in memory). */
  readonly documentsMax: number;
  /** Log entries past the last snapshot; one more triggers a snapshot and compaction. */
  readonly deltaLogEntriesMax: number;
  /** Log entries kept after compaction, to answer resends and catch up peers with deltas. */
  readonly deltaLogKeepEntries: number;
}

export interface Doc {
  readonly id: string;
  readonly type: DocumentType;
  /**
   * The document's secret entropy, the key of its PRNG (engine/random.ts): made by the head
   * that created it, taken from the envelope of seq 1 or a catch-up everywhere else, the same
   * on every replica, persisted once (keys.entropy), never in a view.
   */
  readonly entropy: Uint8Array;
  /** State at appliedSeq, changed in place (the head keeps its own persistent copies for views). */
  state: JsonObject;
  appliedSeq: number;
  snapshotSeq: number;
  logFrom: number;
  /** Log entries logFrom..appliedSeq. */
  log: WireDelta[];
  /** Sequenced, not yet applied here: seqs appliedSeq+1, appliedSeq+2, ... */
  queue: WireEnvelope[];
  /** For each queue entry, the batch holding this node's append of it. */
  queueBatch: number[];
  /** clientKey -> seq for queue entries. */
  readonly queued: Map<string, number>;
  /** The dedupe table at appliedSeq (what the replica answers resends from); written nowhere. */
  dedupe: DedupeTable;
  /**
   * The dedupe table at logFrom - 1: what the store's dedupe keys hold. Recovery replays the
   * log onto it to get `dedupe` back, so a commit writes no dedupe entry; compaction replays
   * the entries it trims onto this one and writes the difference.
   */
  dedupeStored: DedupeTable;
  /** At the head: the highest seq durable on every replica (the confirmed state's seq). */
  committedSeq: number;
}

export const clientKey = (clientId: string, clientSeq: number): string => `${clientId}\n${clientSeq}`;

export function lastSeqOf(doc: Doc): number {
  return doc.appliedSeq + doc.queue.length;
}

export class Documents {
  private readonly docs = new Map<string, Doc>();
  /** Queue entries over all documents. */
  queuedTotal = 0;
  /** Counts every change of seqs (appends, applications, transfers, forgetting): observers compare it to skip unchanged replicas. */
  version = 0;

  constructor(
    private readonly chain: string,
    private readonly limits: DocumentLimits,
    private readonly writes: GroupCommit,
    private readonly bugs: Bugs,
  ) {}

  get size(): number {
    return this.docs.size;
  }

  get(id: string): Doc | undefined {
    return this.docs.get(id);
  }

  values(): IterableIterator<Doc> {
    return this.docs.values();
  }

  ids(): IterableIterator<string> {
    return this.docs.keys();
  }

  adopt(r: RecoveredDoc): Doc {
    const doc = this.blank(r.doc, r.type, r.entropy);
    doc.state = r.state;
    doc.appliedSeq = r.meta.appliedSeq;
    doc.snapshotSeq = r.meta.snapshotSeq;
    doc.logFrom = r.meta.logFrom;
    doc.log = r.log;
    if (r.meta.layout === storeLayout) {
      // The stored table is at logFrom - 1: the log's deltas, remembered in seq order, give the table at appliedSeq.
      doc.dedupeStored = new DedupeTable(this.chain, doc.id, copyDedupe(r.dedupe));
      doc.dedupe = new DedupeTable(this.chain, doc.id, r.dedupe);
      for (const delta of r.log) this.rememberIn(doc.dedupe, delta, noWrites);
    } else {
      // An older layout's table is at appliedSeq: a snapshot there with an empty log makes it the table at logFrom - 1.
      doc.dedupe = new DedupeTable(this.chain, doc.id, r.dedupe);
      doc.dedupeStored = new DedupeTable(this.chain, doc.id, copyDedupe(r.dedupe));
      this.checkpoint(doc);
    }
    doc.queue = r.queue;
    doc.queueBatch = r.queue.map(() => 0);
    // A store of the layout before issue 16 keeps queued envelopes under their own keys: they
    // move to the seq's one key (where the delta will overwrite them) in the first batch.
    for (const seq of r.legacyQueueSeqs) {
      const entry = r.queue.find((e) => e.seq === seq) as WireEnvelope;
      this.writes.put(keys.log(this.chain, doc.id, seq), queuedRecord(entry));
      this.writes.del(keys.queue(this.chain, doc.id, seq));
    }
    for (const entry of r.queue) if (entry.clientId !== '') doc.queued.set(clientKey(entry.clientId, entry.clientSeq), entry.seq);
    doc.committedSeq = r.meta.appliedSeq;
    this.queuedTotal += r.queue.length;
    return doc;
  }

  /**
   * The document, created (its entropy and meta written) when missing; a rejection reason
   * otherwise. `entropy` is what a new one gets: the head's fresh bytes, or what the frame
   * that creates it here carries; without it a missing document is refused (the frame does
   * not create it). The caller compares an existing document's entropy with a frame's.
   */
  obtain(id: string, typeName: string, entropy: Uint8Array | undefined): Doc | { code: string; message: string } {
    if (!idPattern.test(id)) return { code: 'invalid_doc', message: `document ids match ${idPattern}` };
    const type = findDocumentType(typeName);
    if (type === undefined) return { code: 'unknown_doc_type', message: `no document type ${JSON.stringify(typeName)}` };
    const existing = this.docs.get(id);
    if (existing !== undefined) {
      if (existing.type !== type) return { code: 'wrong_doc_type', message: `document ${id} is a ${existing.type.name}, not a ${typeName}` };
      return existing;
    }
    if (this.docs.size >= this.limits.documentsMax) {
      return { code: 'too_many_documents', message: `documentsMax (${this.limits.documentsMax}) reached on chain ${this.chain}` };
    }
    if (entropy === undefined) return { code: 'no_entropy', message: `document ${id} does not exist here, and what created it elsewhere (seq 1 or a catch-up, with its entropy) did not come first` };
    const doc = this.blank(id, type, entropy);
    this.writes.put(keys.entropy(this.chain, id), entropyRecord(doc.entropy));
    this.writeMeta(doc);
    return doc;
  }

  private blank(id: string, type: DocumentType, entropy: Uint8Array): Doc {
    assert(isEntropy(entropy), () => `Documents: the entropy of ${id} is not 32 bytes`);
    const doc: Doc = {
      id,
      type,
      // A copy: bytes decoded from a frame may share (and would pin) the whole frame's buffer.
      entropy: Uint8Array.from(entropy),
      state: type.createState(),
      appliedSeq: 0,
      snapshotSeq: 0,
      logFrom: 1,
      log: [],
      queue: [],
      queueBatch: [],
      queued: new Map(),
      dedupe: new DedupeTable(this.chain, id),
      dedupeStored: new DedupeTable(this.chain, id),
      committedSeq: 0,
    };
    this.docs.set(id, doc);
    return doc;
  }

  writeMeta(doc: Doc): void {
    const meta: DocMeta = { docType: doc.type.name, appliedSeq: doc.appliedSeq, snapshotSeq: doc.snapshotSeq, logFrom: doc.logFrom, layout: storeLayout };
    this.writes.put(keys.meta(this.chain, doc.id), JSON.stringify(meta));
  }

  /** Appends a sequenced envelope to the queue (a write). Seq 1 carries the document's entropy (the stored copy does not: keys.entropy has it). */
  enqueue(doc: Doc, envelope: WireEnvelope): void {
    this.version++;
    assert(envelope.seq === lastSeqOf(doc) + 1, () => `enqueue: seq ${envelope.seq} does not follow ${lastSeqOf(doc)} on ${doc.id}`);
    const creates = envelope.seq === 1;
    assert(
      creates ? envelope.entropy !== undefined && sameBytes(envelope.entropy, doc.entropy) : (envelope.entropy?.length ?? 0) === 0,
      () => `enqueue: ${doc.id}@${envelope.seq} does not carry the entropy as seq ${creates ? '1 must' : '> 1 must not'}`,
    );
    this.writes.put(keys.log(this.chain, doc.id, envelope.seq), queuedRecord(envelope));
    doc.queue.push(envelope);
    doc.queueBatch.push(this.writes.open);
    if (envelope.clientId !== '') doc.queued.set(clientKey(envelope.clientId, envelope.clientSeq), envelope.seq);
    this.queuedTotal++;
  }

  /**
   * Removes the queue entry for `seq` (the head of the queue); returns its append batch. Its
   * key is the seq's one key: `record` overwrites it with the delta in the same batch (no
   * delete), otherwise (`recorded` false) it is deleted.
   */
  shift(doc: Doc, seq: number, recorded: boolean): number {
    this.version++;
    const entry = doc.queue.shift() as WireEnvelope;
    const batch = doc.queueBatch.shift() as number;
    assert(entry.seq === seq, () => `shiftQueue: queue head is ${entry.seq}, not ${seq}`);
    if (entry.clientId !== '') doc.queued.delete(clientKey(entry.clientId, entry.clientSeq));
    this.queuedTotal--;
    if (!recorded) this.writes.del(keys.log(this.chain, doc.id, seq));
    return batch;
  }

  /**
   * The durable half of applying a delta: the log entry (over the queued envelope, when there
   * was one) and the dedupe entry; on compaction the snapshot and meta. appliedSeq is not
   * written: recovery reads it off the log's last entry (two LevelDB operations fewer per
   * commit than a queue key deleted and a meta rewritten on every message).
   */
  record(doc: Doc, delta: WireDelta): void {
    this.version++;
    assert(delta.seq === doc.appliedSeq + 1, () => `recordDelta: seq ${delta.seq} does not follow ${doc.appliedSeq}`);
    doc.appliedSeq = delta.seq;
    doc.log.push(delta);
    this.writes.put(keys.log(this.chain, doc.id, delta.seq), JSON.stringify(delta));
    this.rememberIn(doc.dedupe, delta, noWrites);
    if (doc.appliedSeq - doc.snapshotSeq > this.limits.deltaLogEntriesMax) this.compact(doc);
    assert(doc.log.length === doc.appliedSeq - doc.logFrom + 1, 'recordDelta: log does not end at appliedSeq');
  }

  /** A message's entry in a dedupe table (messages without a client have none). */
  private rememberIn(table: DedupeTable, delta: WireDelta, writes: Writes): void {
    if (delta.clientId !== '') table.remember(delta.clientId, [delta.clientSeq, delta.seq, delta.outcomeJson, delta.timestamp], writes, this.limits, this.bugs);
  }

  /** Snapshot at appliedSeq; keep the last deltaLogKeepEntries log entries. */
  private compact(doc: Doc): void {
    this.trimLog(doc, Math.max(doc.logFrom, doc.appliedSeq - this.limits.deltaLogKeepEntries + 1), true);
  }

  /** Snapshot at appliedSeq and an empty log: an older layout's dedupe keys (a table at appliedSeq, as stored) become this layout's. */
  private checkpoint(doc: Doc): void {
    this.trimLog(doc, doc.appliedSeq + 1, false);
  }

  /**
   * Snapshot at appliedSeq; log entries before `logFrom` go. With `replay`, the stored dedupe
   * table moves past them (only what changed is written); without, it is there already.
   */
  private trimLog(doc: Doc, logFrom: number, replay: boolean): void {
    doc.snapshotSeq = doc.appliedSeq;
    this.writes.put(keys.snapshot(this.chain, doc.id), JSON.stringify({ seq: doc.snapshotSeq, stateJson: JSON.stringify(doc.state) }));
    const changes = new NetWrites();
    for (let seq = doc.logFrom; seq < logFrom; seq++) {
      this.writes.del(keys.log(this.chain, doc.id, seq));
      if (replay) this.rememberIn(doc.dedupeStored, doc.log[seq - doc.logFrom] as WireDelta, changes);
    }
    changes.flushTo(this.writes);
    doc.log = doc.log.slice(logFrom - doc.logFrom);
    doc.logFrom = logFrom;
    this.writeMeta(doc);
    assert(doc.log.length > 0 || doc.dedupeStored.digestText() === doc.dedupe.digestText(), 'trimLog: with an empty log the stored dedupe table is the live one');
  }

  /** Replaces everything up to `seq` by a transferred snapshot and dedupe table. */
  replace(doc: Doc, seq: number, state: JsonObject, stateJson: string, dedupe: Map<string, DedupeEntry[]>): void {
    this.version++;
    for (let s = doc.logFrom; s <= doc.appliedSeq; s++) this.writes.del(keys.log(this.chain, doc.id, s));
    doc.dedupeStored.forgetAll(this.writes);
    while (doc.queue.length > 0 && (doc.queue[0] as WireEnvelope).seq <= seq) this.shift(doc, (doc.queue[0] as WireEnvelope).seq, false);
    doc.state = state;
    doc.appliedSeq = seq;
    doc.snapshotSeq = seq;
    doc.logFrom = seq + 1;
    doc.log = [];
    doc.dedupe = new DedupeTable(this.chain, doc.id, dedupe);
    // The log starts after seq: the stored table is the transferred one.
    doc.dedupeStored = new DedupeTable(this.chain, doc.id, copyDedupe(dedupe));
    doc.dedupeStored.writeAll(this.writes);
    this.writes.put(keys.snapshot(this.chain, doc.id), JSON.stringify({ seq, stateJson }));
    this.writeMeta(doc);
  }

  /** Drops the queue (the messages were not committed; the sync of a new epoch resends what the chain still has). */
  dropQueue(doc: Doc): void {
    this.version++;
    for (const entry of doc.queue) this.writes.del(keys.log(this.chain, doc.id, entry.seq));
    this.queuedTotal -= doc.queue.length;
    doc.queue = [];
    doc.queueBatch = [];
    doc.queued.clear();
  }

  /** Forgets a document entirely (a joiner takes everything by state transfer). */
  forget(doc: Doc): void {
    this.version++;
    this.dropQueue(doc);
    for (let seq = doc.logFrom; seq <= doc.appliedSeq; seq++) this.writes.del(keys.log(this.chain, doc.id, seq));
    doc.dedupeStored.forgetAll(this.writes);
    this.writes.del(keys.snapshot(this.chain, doc.id));
    this.writes.del(keys.meta(this.chain, doc.id));
    this.writes.del(keys.entropy(this.chain, doc.id));
    this.docs.delete(doc.id);
  }
}

/** Two byte strings are equal (entropies: not secret from this node, so no constant time needed). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The stored form of a queued envelope (at keys.log until its delta replaces it); seq 1's entropy is not repeated (keys.entropy holds it). */
function queuedRecord(envelope: WireEnvelope): string {
  return JSON.stringify(envelope.seq === 1 ? { ...envelope, entropy: undefined } : envelope);
}

/** A copy of a dedupe table's windows (tables change their windows in place; entries are immutable). */
function copyDedupe(table: ReadonlyMap<string, readonly DedupeEntry[]>): Map<string, DedupeEntry[]> {
  return new Map([...table].map(([client, window]) => [client, [...window]]));
}

/** The writes of the live dedupe table: none (recovery rebuilds it from the log). */
const noWrites: Writes = { put() {}, del() {} };

/**
 * Writes collected, then handed on as their net effect: a key put and deleted again (an entry
 * remembered and evicted within one compaction) costs nothing.
 */
class NetWrites implements Writes {
  private readonly ops = new Map<string, string | undefined>();
  /** Keys whose first operation here was a put: not on disk before. */
  private readonly fresh = new Set<string>();

  put(key: string, value: string): void {
    if (!this.ops.has(key)) this.fresh.add(key);
    this.ops.set(key, value);
  }

  del(key: string): void {
    if (this.fresh.has(key)) {
      this.fresh.delete(key);
      this.ops.delete(key);
    } else this.ops.set(key, undefined);
  }

  flushTo(writes: Writes): void {
    for (const [key, value] of this.ops) value === undefined ? writes.del(key) : writes.put(key, value);
  }
}
