// One node's replica of one chain, as a deterministic sans-I/O state machine (in the manner
// of etcd's raft library). It does no I/O and reads no clock:
//
//   inputs   configure (from the chain manager), frames from the predecessor or successor,
//            link up/down, client submit/subscribe, tick(now), durable(batchId)
//   outputs  drain() -> frames for the predecessor, the successor and clients;
//            takeBatch() -> the next atomic batch to write with sync (group commit)
//
// The runtime (node.ts: TCP, LevelDB, timers) and the simulator drive this same code.
//
// Protocol (design brief, sections 1 and 3):
// - The head sequences: it gives each message the document's next seq and a timestamp,
//   appends it to its queue (a write) and forwards it at once, without waiting for the write.
//   A middle node does the same. The tail executes each message in seq order and records the
//   delta (a write). Deltas flow back; each node applies a delta (one batch: queue entry
//   deleted, log entry, appliedSeq, dedupe) and passes it upstream only once its own write for
//   that seq (its queue append, or the tail's execution) is durable. A delta applied at the
//   head is durable on every replica: it is committed, and the client is acknowledged.
// - Every epoch starts with a sync, tail first. A predecessor sends Attach (what it has
//   applied). A successor that is itself synced (the tail always is) answers with Catchup
//   frames holding what the predecessor lacks, then Sync (what it has applied). The
//   predecessor applies those, sends Catchup frames with what the successor lacks (state
//   transfer to a new tail), resends its whole queue, and is synced. The head sequences only
//   when synced, so no seq can be assigned twice.
// - A node that joins a chain (it was not a member of its last configuration, or was removed
//   since) forgets what it held of that chain and takes everything by state transfer: while it
//   was out, entries it had applied but the chain never committed may have been re-sequenced
//   (the simulator found this). A member that merely restarts keeps its state and transfers
//   only what it lacks.
// - Frames carry the epoch. Lower epochs are refused (stale_epoch); a higher one means this
//   node has not heard of that configuration yet (epoch_unknown, retryable).

import { createHash } from 'node:crypto';
import { assert, debugAssert, unreachable } from '../engine/assert.ts';
import type { DocumentType } from '../engine/document.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { LimitError } from '../engine/errors.ts';
import { execute, type Envelope, type Outcome } from '../engine/execute.ts';
import { canonicalJson, cloneJson, deepFreeze, isObject, utf8Length, type Json, type JsonObject } from '../engine/json.ts';
import { apply, applyInPlace } from '../engine/patch.ts';
import { Speculation } from '../engine/speculation.ts';
import { Audience } from '../engine/view.ts';
import { isPlanted } from './planted.ts';
import { idPattern, keys, type Batch, type ChainConfig, type DedupeEntry, type Op, type RecoveredChain, type RecoveredDoc } from './store.ts';
import {
  failure,
  make,
  type DocCatchup,
  type DocSeq,
  type Frame,
  type Member,
  type Submit,
  type Subscribe,
  type ViewKind,
  type ViewUpdate,
  type WireDelta,
  type WireEnvelope,
} from './wire.ts';

export interface ReplicaLimits {
  /** Messages sequenced and not yet committed, per document, at the head. */
  docQueueDepthMax: number;
  /** Messages sequenced and not yet committed, over all documents of this replica. */
  nodeQueueDepthMax: number;
  /** Documents one replica holds (all are kept in memory). */
  documentsMax: number;
  /** Log entries past the last snapshot; one more triggers a snapshot and compaction. */
  deltaLogEntriesMax: number;
  /** Log entries kept after compaction, to answer resends and catch up peers with deltas. */
  deltaLogKeepEntries: number;
  /** (clientSeq -> seq, outcome) entries kept per client per document. */
  dedupeWindowMax: number;
  /** Clients remembered per document; past it, the least recently seen client is forgotten. */
  dedupeClientsMax: number;
  /** Subscribed viewers per document. */
  viewersMax: number;
  /** Subscriptions per document (several connections may watch as one viewer). */
  subscriptionsMax: number;
  /** Envelopes or deltas per Forward/Back frame. */
  frameItemsMax: number;
  /** Approximate bytes per Forward/Back/Catchup frame (kept well under frameBytesMax). */
  frameBytesTarget: number;
  /** How long a predecessor waits for its successor's Sync before it redials. */
  attachTimeoutMs: number;
  /** Deferred actions waiting for durability. */
  releasesMax: number;
}

export const defaultReplicaLimits: ReplicaLimits = Object.freeze({
  docQueueDepthMax: 256,
  nodeQueueDepthMax: 16_384,
  documentsMax: 50_000,
  deltaLogEntriesMax: 1_024,
  deltaLogKeepEntries: 512,
  dedupeWindowMax: 64,
  dedupeClientsMax: 4_096,
  viewersMax: 1_000,
  subscriptionsMax: 4_000,
  frameItemsMax: 512,
  frameBytesTarget: 1024 * 1024,
  attachTimeoutMs: 5_000,
  releasesMax: 1_000_000,
});

/** The runtime's handle for a client connection. */
export type ClientRef = number;

export type Role = 'head' | 'middle' | 'tail' | 'single' | 'none';
export type Side = 'pred' | 'succ';

export interface Outbox {
  readonly pred: Frame[];
  readonly succ: Frame[];
  readonly clients: { readonly to: ClientRef; readonly frame: Frame }[];
  /** The successor link is stuck (no Sync in time) or broken by protocol: close and redial it. */
  readonly resetSucc: boolean;
}

/** A peer broke the protocol or is fenced: send this failure and close that connection. */
export interface Rejection {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

interface Waiter {
  readonly to: ClientRef;
  readonly requestId: number;
  readonly duplicate: boolean;
}

interface Subscription {
  readonly to: ClientRef;
  readonly requestId: number;
  readonly viewer: string;
}

interface HeadView {
  readonly speculation: Speculation;
  readonly confirmed: Audience;
  readonly speculative: Audience;
  readonly subs: Subscription[];
}

interface Doc {
  readonly id: string;
  readonly type: DocumentType;
  /** State at appliedSeq. Persistent (frozen in debug runs) at the head, mutable elsewhere. */
  state: JsonObject;
  persistent: boolean;
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
  queued: Map<string, number>;
  /** clientId -> window, least recently used first. */
  dedupe: Map<string, DedupeEntry[]>;
  /** Head only: seq -> requests waiting for its commit. */
  waiters: Map<number, Waiter[]>;
  view: HeadView | undefined;
}

const clientKey = (clientId: string, clientSeq: number): string => `${clientId}\n${clientSeq}`;

export class Replica {
  readonly limits: ReplicaLimits;
  /** Observation only (the simulator records what heads sequence); never changes behaviour. */
  onSequenced: ((envelope: WireEnvelope) => void) | undefined;
  /**
   * Observation only (the simulator's privacy check): every view frame for a subscriber, with
   * the speculative and confirmed states it was computed from. Never changes behaviour.
   */
  onViewFrame: ((update: ViewUpdate, docType: string, basis: { readonly speculative: JsonObject; readonly confirmed: JsonObject }) => void) | undefined;
  private config: ChainConfig | undefined;
  private readonly docs = new Map<string, Doc>();
  private queuedTotal = 0;

  // Links.
  private succLinkUp = false;
  private succState: 'down' | 'attaching' | 'synced' = 'down';
  private attachSentAt = 0;
  private predState: 'none' | 'pending' | 'answered' = 'none';
  private predApplied = new Map<string, number>();
  private predLast = new Map<string, number>();
  /** The predecessor's applied seqs in its last Attach: once this node holds them it is caught up. */
  private catchupTarget: { readonly epoch: number; readonly applied: ReadonlyMap<string, number> } | undefined;
  private caughtUpEpochValue = 0;
  private caughtUpPending: { readonly epoch: number; readonly batch: number } | undefined;
  private now = 0;

  // Group commit.
  private ops: Op[] = [];
  private openBatchId = 1;
  private durableBatchId = 0;
  private releases: { readonly batch: number; readonly run: () => void }[] = [];
  private releaseHead = 0;

  // Outbox.
  private forwardPending: WireEnvelope[] = [];
  private backPending: WireDelta[] = [];
  private outPred: Frame[] = [];
  private outSucc: Frame[] = [];
  private outClients: { to: ClientRef; frame: Frame }[] = [];
  private resetSuccRequested = false;

  constructor(
    readonly node: string,
    readonly chain: string,
    /** Seeds each document's PRNG; the same on every replica of the cluster. */
    readonly entropy: string,
    recovered: RecoveredChain | undefined,
    limits: Partial<ReplicaLimits> = {},
  ) {
    this.limits = Object.freeze({ ...defaultReplicaLimits, ...limits });
    assert(idPattern.test(chain), `Replica: bad chain id ${chain}`);
    assert(this.limits.deltaLogKeepEntries >= this.limits.docQueueDepthMax, 'Replica: deltaLogKeepEntries must cover docQueueDepthMax');
    assert(this.limits.deltaLogEntriesMax >= 1 && this.limits.deltaLogKeepEntries >= 1, 'Replica: log bounds must be positive');
    if (recovered !== undefined) {
      assert(recovered.chain === chain, 'Replica: recovered contents of another chain');
      this.config = recovered.config;
      for (const r of recovered.docs.values()) this.adoptRecovered(r);
      const isHead = this.role === 'head' || this.role === 'single';
      for (const doc of this.docs.values()) this.setPersistent(doc, isHead);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Inspection

  get epoch(): number {
    return this.config?.epoch ?? 0;
  }

  get members(): readonly Member[] {
    return this.config?.members ?? [];
  }

  get role(): Role {
    const members = this.members;
    const index = members.findIndex((m) => m.node === this.node);
    if (index < 0) return 'none';
    if (members.length === 1) return 'single';
    if (index === 0) return 'head';
    return index === members.length - 1 ? 'tail' : 'middle';
  }

  get successor(): Member | undefined {
    const members = this.members;
    const index = members.findIndex((m) => m.node === this.node);
    return index < 0 ? undefined : members[index + 1];
  }

  get predecessor(): Member | undefined {
    const members = this.members;
    const index = members.findIndex((m) => m.node === this.node);
    return index <= 0 ? undefined : members[index - 1];
  }

  /** Everything downstream has caught up with this node in this epoch. */
  get synced(): boolean {
    const role = this.role;
    if (role === 'none') return false;
    return this.successor === undefined || this.succState === 'synced';
  }

  /** The head accepts submissions. */
  get ready(): boolean {
    const role = this.role;
    return (role === 'head' || role === 'single') && this.synced;
  }

  get pendingReleases(): number {
    return this.releases.length - this.releaseHead;
  }

  /** Cheap per-document seqs, for invariant checks that run on every event. */
  seqs(): Map<string, { applied: number; last: number }> {
    const out = new Map<string, { applied: number; last: number }>();
    for (const doc of this.docs.values()) out.set(doc.id, { applied: doc.appliedSeq, last: lastSeqOf(doc) });
    return out;
  }

  /**
   * The latest epoch in which this node held everything its predecessor had applied when it
   * attached. A joiner (a member since epoch e) is caught up once this is at least e; until
   * then the manager must keep another member that holds the committed state.
   */
  get caughtUpEpoch(): number {
    const target = this.catchupTarget;
    if (target !== undefined && target.epoch === this.epoch) {
      let all = true;
      for (const [doc, seq] of target.applied) if ((this.docs.get(doc)?.appliedSeq ?? 0) < seq) all = false;
      if (all) {
        // Reported only once durable: a power loss before that would lose it again (the
        // simulator found a manager removing the last full member on an unsynced report).
        this.caughtUpPending = { epoch: target.epoch, batch: this.writtenBatch() };
        this.catchupTarget = undefined;
      }
    }
    const pending = this.caughtUpPending;
    if (pending !== undefined && pending.batch <= this.durableBatchId) {
      this.caughtUpEpochValue = Math.max(this.caughtUpEpochValue, pending.epoch);
      this.caughtUpPending = undefined;
    }
    return this.caughtUpEpochValue;
  }

  /** The successor link has finished this epoch's sync. */
  get succSynced(): boolean {
    return this.succState === 'synced';
  }

  /** A document's applied state, its log and (at a head with subscribers) the speculative state. Read-only. */
  peek(docId: string): { type: DocumentType; state: JsonObject; log: readonly WireDelta[]; logFrom: number; speculative: JsonObject | undefined; confirmed: JsonObject | undefined } | undefined {
    const doc = this.docs.get(docId);
    if (doc === undefined) return undefined;
    return { type: doc.type, state: doc.state, log: doc.log, logFrom: doc.logFrom, speculative: doc.view?.speculation.speculative, confirmed: doc.view?.speculation.confirmed };
  }

  documents(): string[] {
    return [...this.docs.keys()];
  }

  status(includeState = false): JsonObject {
    const docs: Json[] = [];
    for (const doc of [...this.docs.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      const last = doc.log[doc.log.length - 1];
      const entry: JsonObject = {
        doc: doc.id,
        docType: doc.type.name,
        appliedSeq: doc.appliedSeq,
        lastSeq: lastSeqOf(doc),
        queue: doc.queue.length,
        snapshotSeq: doc.snapshotSeq,
        logFrom: doc.logFrom,
        stateDigest: digest(canonicalJson(doc.state)),
        dedupeDigest: digest(canonicalJson(dedupeJson(doc.dedupe, true))),
        lastDeltaDigest: last === undefined ? '' : digest(JSON.stringify(last)),
      };
      if (includeState) entry.state = cloneJson(doc.state);
      docs.push(entry);
    }
    return {
      node: this.node,
      chain: this.chain,
      epoch: this.epoch,
      role: this.role,
      members: this.members.map((m) => ({ node: m.node, address: m.address, sinceEpoch: m.sinceEpoch })),
      synced: this.synced,
      ready: this.ready,
      caughtUpEpoch: this.caughtUpEpoch,
      succ: this.succState,
      pred: this.predState,
      queued: this.queuedTotal,
      docs,
    };
  }

  // ---------------------------------------------------------------------------------------
  // Group commit

  /** The next batch to write (everything since the last one), or undefined when idle. */
  takeBatch(): Batch | undefined {
    if (this.ops.length === 0) return undefined;
    const batch: Batch = { id: this.openBatchId, ops: this.ops };
    this.ops = [];
    this.openBatchId++;
    return batch;
  }

  /** Batch `id` (and every earlier one) is on disk. */
  durable(id: number): void {
    assert(id === this.durableBatchId + 1, () => `Replica.durable: batch ${id} completed out of order (last ${this.durableBatchId})`);
    assert(id < this.openBatchId, () => `Replica.durable: batch ${id} was never taken`);
    this.durableBatchId = id;
    this.runReleases();
  }

  /** The batch that holds every write made so far. */
  private writtenBatch(): number {
    return this.ops.length > 0 ? this.openBatchId : this.openBatchId - 1;
  }

  /** Runs `run` once batch `batch` is durable, after every action deferred before it (FIFO). */
  private afterDurable(batch: number, run: () => void): void {
    if (isPlanted('early-back') || (this.pendingReleases === 0 && batch <= this.durableBatchId)) {
      run();
      return;
    }
    if (this.pendingReleases >= this.limits.releasesMax) {
      throw new LimitError('releasesMax', this.limits.releasesMax, `replica ${this.node} has too many actions waiting for the disk`);
    }
    this.releases.push({ batch, run });
  }

  private runReleases(): void {
    while (this.releaseHead < this.releases.length) {
      const next = this.releases[this.releaseHead] as { batch: number; run: () => void };
      if (next.batch > this.durableBatchId) break;
      this.releaseHead++;
      next.run();
    }
    if (this.releaseHead > 1024 && this.releaseHead * 2 > this.releases.length) {
      this.releases = this.releases.slice(this.releaseHead);
      this.releaseHead = 0;
    }
  }

  private put(key: string, value: string): void {
    this.ops.push({ type: 'put', key, value });
  }

  private del(key: string): void {
    this.ops.push({ type: 'del', key });
  }

  // ---------------------------------------------------------------------------------------
  // Outbox

  drain(): Outbox {
    this.flushPeerItems();
    const out: Outbox = { pred: this.outPred, succ: this.outSucc, clients: this.outClients, resetSucc: this.resetSuccRequested };
    this.outPred = [];
    this.outSucc = [];
    this.outClients = [];
    this.resetSuccRequested = false;
    return out;
  }

  private flushPeerItems(): void {
    const { chain, epoch } = this;
    for (const envelopes of chunk(this.forwardPending, this.limits, (e) => e.payloadJson.length)) {
      this.outSucc.push(make('forward', { chain, epoch, envelopes }));
    }
    for (const deltas of chunk(this.backPending, this.limits, (d) => d.redoJson.length + d.undoJson.length)) {
      this.outPred.push(make('back', { chain, epoch, deltas }));
    }
    this.forwardPending = [];
    this.backPending = [];
  }

  private toClient(to: ClientRef, frame: Frame): void {
    this.outClients.push({ to, frame });
  }

  private clientFailure(to: ClientRef, requestId: number, code: string, message: string, retryable: boolean, hint = ''): void {
    this.toClient(to, failure(code, message, { requestId, retryable, epoch: this.epoch, hint }));
  }

  // ---------------------------------------------------------------------------------------
  // Configuration

  /** A new configuration from the chain manager. Returns a rejection for a stale or conflicting one. */
  configure(next: ChainConfig): Rejection | undefined {
    assert(next.chain === this.chain, 'Replica.configure: configuration of another chain');
    const previous = this.config;
    if (previous !== undefined && next.epoch < previous.epoch && !isPlanted('no-epoch-check')) {
      return { code: 'stale_epoch', message: `epoch ${next.epoch} is older than this node's ${previous.epoch}`, retryable: false };
    }
    if (previous !== undefined && next.epoch === previous.epoch && !isPlanted('no-epoch-check')) {
      if (canonicalJson(next.members as unknown as Json) === canonicalJson(previous.members as unknown as Json)) return undefined;
      return { code: 'epoch_conflict', message: `epoch ${next.epoch} already names other members`, retryable: false };
    }
    const problem = checkConfig(next);
    if (problem !== undefined) return { code: 'invalid_config', message: problem, retryable: false };

    const oldRole = this.role;
    const oldSucc = this.successor?.node;
    const me = next.members.find((m) => m.node === this.node);
    const wasMember = previous !== undefined && previous.members.some((m) => m.node === this.node);
    const joining = me !== undefined && (!wasMember || me.sinceEpoch > (previous as ChainConfig).epoch);

    this.config = { chain: next.chain, epoch: next.epoch, members: next.members.map((m) => ({ ...m })) };
    this.put(keys.config(this.chain), JSON.stringify(this.config));
    const role = this.role;

    // Whatever was in flight belongs to the old epoch: the sync of the new one resends it.
    this.forwardPending = [];
    this.backPending = [];
    this.predState = 'none';
    this.predApplied = new Map();
    this.predLast = new Map();
    if (this.successor?.node !== oldSucc) this.succLinkUp = false;
    this.succState = 'down';

    if ((oldRole === 'head' || oldRole === 'single') && role !== 'head' && role !== 'single') this.leaveHead();
    if (joining) {
      // What this node holds may come from a history the chain no longer has (entries it
      // applied that were never committed, then re-sequenced after it was removed). Only the
      // chain's history counts: forget everything and take it by state transfer.
      for (const doc of [...this.docs.values()]) this.forgetDoc(doc);
    } else if (role === 'none') {
      for (const doc of this.docs.values()) this.dropQueue(doc);
    }
    const isHead = role === 'head' || role === 'single';
    for (const doc of this.docs.values()) this.setPersistent(doc, isHead);
    if (role === 'tail' || role === 'single') {
      // A new tail executes what it has queued, in seq order.
      for (const doc of this.docs.values()) {
        while (doc.queue.length > 0) this.executeAsTail(doc, doc.queue[0] as WireEnvelope, true);
      }
    }
    if (this.successor !== undefined && this.succLinkUp) this.sendAttach();
    return undefined;
  }

  private leaveHead(): void {
    for (const doc of this.docs.values()) {
      for (const [, waiters] of doc.waiters) {
        for (const w of waiters) this.clientFailure(w.to, w.requestId, 'not_head', `node ${this.node} is no longer the head of chain ${this.chain}; retry at the new head`, true, this.members[0]?.address ?? '');
      }
      doc.waiters.clear();
      if (doc.view !== undefined) {
        for (const sub of doc.view.subs) this.clientFailure(sub.to, sub.requestId, 'not_head', `node ${this.node} is no longer the head of chain ${this.chain}; subscribe at the new head`, true, this.members[0]?.address ?? '');
        doc.view = undefined;
      }
    }
  }

  private dropQueue(doc: Doc): void {
    for (const entry of doc.queue) this.del(keys.queue(this.chain, doc.id, entry.seq));
    this.queuedTotal -= doc.queue.length;
    doc.queue = [];
    doc.queueBatch = [];
    doc.queued.clear();
    for (const [, waiters] of doc.waiters) {
      for (const w of waiters) this.clientFailure(w.to, w.requestId, 'unavailable', 'the message was not committed; resend it', true);
    }
    doc.waiters.clear();
  }

  private forgetDoc(doc: Doc): void {
    this.dropQueue(doc);
    for (let seq = doc.logFrom; seq <= doc.appliedSeq; seq++) this.del(keys.log(this.chain, doc.id, seq));
    for (const client of [...doc.dedupe.keys()]) this.forgetClient(doc, client);
    this.del(keys.snapshot(this.chain, doc.id));
    this.del(keys.meta(this.chain, doc.id));
    this.docs.delete(doc.id);
  }

  private setPersistent(doc: Doc, persistent: boolean): void {
    if (doc.persistent === persistent) return;
    doc.state = persistent ? deepFreeze(cloneJson(doc.state)) : cloneJson(doc.state);
    doc.persistent = persistent;
  }

  // ---------------------------------------------------------------------------------------
  // Links

  /** The link to the successor is open (the runtime dialed `successor` and authenticated). */
  linkUp(): void {
    assert(this.successor !== undefined, 'Replica.linkUp: no successor');
    this.succLinkUp = true;
    this.sendAttach();
  }

  linkDown(side: Side): void {
    if (side === 'succ') {
      this.succLinkUp = false;
      this.succState = 'down';
      this.forwardPending = [];
    } else {
      this.predState = 'none';
      this.predApplied = new Map();
      this.predLast = new Map();
      this.backPending = [];
    }
  }

  tick(now: number): void {
    this.now = Math.max(this.now, now);
    if (this.succState === 'attaching' && this.now - this.attachSentAt > this.limits.attachTimeoutMs) {
      this.linkDown('succ');
      this.resetSuccRequested = true;
    }
  }

  private sendAttach(): void {
    const applied: DocSeq[] = [];
    for (const doc of this.docs.values()) applied.push({ doc: doc.id, docType: doc.type.name, seq: doc.appliedSeq, lastSeq: lastSeqOf(doc) });
    this.outSucc.push(make('attach', { chain: this.chain, epoch: this.epoch, applied }));
    this.succState = 'attaching';
    this.attachSentAt = this.now;
  }

  /** Checks a peer frame's epoch and sender. */
  private fence(epoch: number, fromNode: string, side: Side): Rejection | undefined {
    if (this.config === undefined || this.role === 'none') {
      return { code: 'not_member', message: `node ${this.node} is not a member of chain ${this.chain} (epoch ${this.epoch})`, retryable: true };
    }
    if (epoch < this.epoch && !isPlanted('no-epoch-check')) return { code: 'stale_epoch', message: `epoch ${epoch} is older than ${this.epoch}`, retryable: false };
    if (epoch > this.epoch) return { code: 'epoch_unknown', message: `node ${this.node} has not been configured for epoch ${epoch} yet (it has ${this.epoch})`, retryable: true };
    const expected = side === 'pred' ? this.predecessor : this.successor;
    if (expected?.node !== fromNode) {
      return { code: side === 'pred' ? 'not_predecessor' : 'not_successor', message: `${fromNode} is not the ${side === 'pred' ? 'predecessor' : 'successor'} of ${this.node} in epoch ${this.epoch}`, retryable: false };
    }
    return undefined;
  }

  /** A frame from the predecessor's connection (authenticated as `fromNode`). */
  fromPred(frame: Frame, fromNode: string): Rejection | undefined {
    switch (frame.kind) {
      case 'attach': {
        const rejection = this.fence(frame.attach.epoch, fromNode, 'pred') ?? this.checkChain(frame.attach.chain);
        if (rejection !== undefined) return rejection;
        this.predState = 'pending';
        this.predApplied = new Map(frame.attach.applied.map((d) => [d.doc, d.seq]));
        this.catchupTarget = { epoch: this.epoch, applied: this.predApplied };
        this.predLast = new Map(frame.attach.applied.map((d) => [d.doc, d.lastSeq]));
        if (this.synced) this.answerPred();
        return undefined;
      }
      case 'catchup': {
        const rejection = this.fence(frame.catchup.epoch, fromNode, 'pred') ?? this.checkChain(frame.catchup.chain);
        if (rejection !== undefined) return rejection;
        if (this.predState !== 'answered') return protocol('catchup before this node answered the Attach');
        return this.applyCatchups(frame.catchup.docs, 'pred');
      }
      case 'forward': {
        const rejection = this.fence(frame.forward.epoch, fromNode, 'pred') ?? this.checkChain(frame.forward.chain);
        if (rejection !== undefined) return rejection;
        if (this.predState !== 'answered') return protocol('forward before this node answered the Attach');
        for (const envelope of isPlanted('tail-out-of-order') && this.role === 'tail' ? swapPayloads(frame.forward.envelopes) : frame.forward.envelopes) {
          const bad = this.acceptFromPred(envelope);
          if (bad !== undefined) return bad;
        }
        return undefined;
      }
      case 'failure':
        // The predecessor refused something we sent (e.g. a stale epoch): it closes the link.
        this.linkDown('pred');
        return undefined;
      default:
        return protocol(`a predecessor may not send ${frame.kind}`);
    }
  }

  /** A frame from the successor's connection (authenticated as `fromNode`). */
  fromSucc(frame: Frame, fromNode: string): Rejection | undefined {
    if (frame.kind === 'failure') {
      // The successor refused us (fenced, not configured yet, or a protocol error): the runtime
      // closes the link and redials after a delay.
      this.linkDown('succ');
      return undefined;
    }
    const body = frame.kind === 'sync' ? frame.sync : frame.kind === 'catchup' ? frame.catchup : frame.kind === 'back' ? frame.back : undefined;
    if (body === undefined) return protocol(`a successor may not send ${frame.kind}`);
    const rejection = this.fence(body.epoch, fromNode, 'succ') ?? this.checkChain(body.chain);
    if (rejection !== undefined) return rejection;
    switch (frame.kind) {
      case 'catchup': {
        if (this.succState !== 'attaching') return protocol('catchup outside a sync');
        return this.applyCatchups(frame.catchup.docs, 'succ');
      }
      case 'sync': {
        if (this.succState !== 'attaching') return protocol('sync without an Attach');
        // Queued messages this node lost (unsynced appends before a restart) come back first.
        for (const envelope of frame.sync.envelopes) {
          const found = this.docFor(envelope.doc, envelope.docType);
          if (!isDoc(found)) return protocol(`${found.code}: ${found.message}`);
          const last = lastSeqOf(found);
          if (envelope.seq <= found.appliedSeq) continue;
          if (envelope.seq <= last) {
            const mine = found.queue[envelope.seq - found.appliedSeq - 1] as WireEnvelope;
            if (!sameMessage(mine, envelope)) {
              return protocol(`queue entry ${found.id}@${envelope.seq} differs from the successor's: histories diverged`);
            }
            continue;
          }
          if (envelope.seq !== last + 1) return protocol(`sync gap on ${found.id}: got ${envelope.seq} after ${last}`);
          this.enqueue(found, envelope);
        }
        const theirs = new Map(frame.sync.applied.map((d) => [d.doc, d.seq]));
        for (const [doc, seq] of theirs) {
          const mine = this.docs.get(doc);
          // A document the successor created without applying anything (seq 0) need not exist here.
          if ((mine?.appliedSeq ?? 0) < seq) return protocol(`successor is ahead on ${doc} after its catch-up`);
        }
        // State transfer carries only what is durable here: a successor that kept deltas this
        // node then lost to a power failure would hold a history the chain no longer has (the
        // simulator found exactly that). So the catch-up, the queue resend and the end of the
        // sync wait for everything written so far.
        const epoch = this.epoch;
        this.afterDurable(this.writtenBatch(), () => {
          if (this.epoch !== epoch || this.succState !== 'attaching') return;
          const catchups: DocCatchup[] = [];
          for (const doc of this.docs.values()) {
            const c = this.buildCatchup(doc, theirs.get(doc.id) ?? 0);
            if (c !== undefined) catchups.push(c);
          }
          this.flushPeerItems();
          for (const docs of chunk(catchups, this.limits, catchupBytes)) this.outSucc.push(make('catchup', { chain: this.chain, epoch, docs }));
          if (!isPlanted('no-queue-resend')) for (const doc of this.docs.values()) for (const entry of doc.queue) this.forwardPending.push(entry);
          this.succState = 'synced';
          if (this.predState === 'pending') this.answerPred();
        });
        return undefined;
      }
      case 'back': {
        if (this.succState !== 'synced') return protocol('back before sync');
        for (const delta of frame.back.deltas) {
          const bad = this.applyFromSucc(delta);
          if (bad !== undefined) return bad;
        }
        return undefined;
      }
      default:
        return unreachable(frame as never);
    }
  }

  private checkChain(chain: string): Rejection | undefined {
    return chain === this.chain ? undefined : protocol(`frame for chain ${chain} on a link of chain ${this.chain}`);
  }

  /** Sends the predecessor what it lacks, then Sync, once all of it is durable here. */
  private answerPred(): void {
    assert(this.predState === 'pending' && this.synced, 'Replica.answerPred: not ready to answer');
    const catchups: DocCatchup[] = [];
    const applied: DocSeq[] = [];
    const envelopes: WireEnvelope[] = [];
    for (const doc of this.docs.values()) {
      applied.push({ doc: doc.id, docType: doc.type.name, seq: doc.appliedSeq, lastSeq: lastSeqOf(doc) });
      const c = this.buildCatchup(doc, this.predApplied.get(doc.id) ?? 0);
      if (c !== undefined) catchups.push(c);
      // Queue entries past the predecessor's last seq: it lost them in a restart.
      const from = Math.max(this.predLast.get(doc.id) ?? 0, doc.appliedSeq);
      for (const entry of doc.queue) if (entry.seq > from) envelopes.push(entry);
    }
    this.predState = 'answered';
    const epoch = this.epoch;
    this.afterDurable(this.writtenBatch(), () => {
      if (this.epoch !== epoch || this.predState !== 'answered') return;
      this.flushPeerItems(); // frames queued before the answer go before it
      for (const docs of chunk(catchups, this.limits, catchupBytes)) this.outPred.push(make('catchup', { chain: this.chain, epoch, docs }));
      this.outPred.push(make('sync', { chain: this.chain, epoch, applied, envelopes }));
    });
  }

  /** What a peer at `theirSeq` needs to reach this node's applied seq, or undefined. */
  private buildCatchup(doc: Doc, theirSeq: number): DocCatchup | undefined {
    if (theirSeq >= doc.appliedSeq) return undefined;
    const base = { doc: doc.id, docType: doc.type.name };
    if (theirSeq + 1 >= doc.logFrom) {
      return { ...base, snapshotSeq: 0, snapshotJson: '', dedupeJson: '', deltas: doc.log.slice(theirSeq + 1 - doc.logFrom) };
    }
    return {
      ...base,
      snapshotSeq: doc.appliedSeq,
      snapshotJson: JSON.stringify(doc.state),
      dedupeJson: JSON.stringify(dedupeJson(doc.dedupe, false)),
      deltas: [],
    };
  }

  // ---------------------------------------------------------------------------------------
  // Documents

  private adoptRecovered(r: RecoveredDoc): void {
    const doc = this.newDoc(r.doc, r.type);
    doc.state = r.state;
    doc.appliedSeq = r.meta.appliedSeq;
    doc.snapshotSeq = r.meta.snapshotSeq;
    doc.logFrom = r.meta.logFrom;
    doc.log = r.log;
    doc.dedupe = r.dedupe;
    doc.queue = r.queue;
    doc.queueBatch = r.queue.map(() => 0);
    for (const entry of r.queue) if (entry.clientId !== '') doc.queued.set(clientKey(entry.clientId, entry.clientSeq), entry.seq);
    this.queuedTotal += r.queue.length;
  }

  private newDoc(id: string, type: DocumentType): Doc {
    const doc: Doc = {
      id,
      type,
      state: type.createState(),
      persistent: false,
      appliedSeq: 0,
      snapshotSeq: 0,
      logFrom: 1,
      log: [],
      queue: [],
      queueBatch: [],
      queued: new Map(),
      dedupe: new Map(),
      waiters: new Map(),
      view: undefined,
    };
    this.docs.set(id, doc);
    return doc;
  }

  /** Finds or creates a document; a string is a rejection reason. */
  private docFor(id: string, typeName: string): Doc | { code: string; message: string } {
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
    const doc = this.newDoc(id, type);
    this.setPersistent(doc, this.role === 'head' || this.role === 'single');
    this.writeMeta(doc);
    return doc;
  }

  private writeMeta(doc: Doc): void {
    this.put(
      keys.meta(this.chain, doc.id),
      JSON.stringify({ docType: doc.type.name, appliedSeq: doc.appliedSeq, snapshotSeq: doc.snapshotSeq, logFrom: doc.logFrom }),
    );
  }

  /** Appends a sequenced envelope to this node's queue (a write) and forwards it if synced. */
  private enqueue(doc: Doc, envelope: WireEnvelope): void {
    assert(envelope.seq === lastSeqOf(doc) + 1, () => `enqueue: seq ${envelope.seq} does not follow ${lastSeqOf(doc)} on ${doc.id}`);
    this.put(keys.queue(this.chain, doc.id, envelope.seq), JSON.stringify(envelope));
    doc.queue.push(envelope);
    doc.queueBatch.push(this.openBatchId);
    if (envelope.clientId !== '') doc.queued.set(clientKey(envelope.clientId, envelope.clientSeq), envelope.seq);
    this.queuedTotal++;
    if (this.succState === 'synced') this.forwardPending.push(envelope);
  }

  /** The tail's step: execute the next message and record its delta. */
  private executeAsTail(doc: Doc, envelope: WireEnvelope, fromQueue: boolean): void {
    assert(envelope.seq === doc.appliedSeq + 1, () => `executeAsTail: seq ${envelope.seq} is not next after ${doc.appliedSeq} on ${doc.id}`);
    const payload = JSON.parse(envelope.payloadJson) as unknown;
    const engineEnvelope: Envelope = {
      doc: envelope.doc,
      seq: envelope.seq,
      timestamp: envelope.timestamp,
      viewer: envelope.viewer,
      channel: envelope.channel,
      payload,
    };
    const execution = execute(doc.type, doc.state, engineEnvelope, this.entropy, { inPlace: !doc.persistent });
    const delta: WireDelta = {
      doc: doc.id,
      seq: envelope.seq,
      redoJson: JSON.stringify(execution.redo),
      undoJson: JSON.stringify(execution.undo),
      outcomeJson: JSON.stringify(execution.outcome),
      clientId: envelope.clientId,
      clientSeq: envelope.clientSeq,
    };
    doc.state = execution.state;
    if (fromQueue) this.shiftQueue(doc, envelope.seq);
    this.recordDelta(doc, delta);
    this.afterApplied(doc, delta, this.writtenBatch(), 'local');
  }

  /** Applies a delta computed elsewhere. */
  private applyDelta(doc: Doc, delta: WireDelta): void {
    const redo = JSON.parse(delta.redoJson) as unknown;
    assert(isObject(redo), () => `applyDelta: redo of ${doc.id}@${delta.seq} is not an object`);
    if (doc.persistent) {
      const next = apply(redo, doc.state);
      assert(isObject(next), 'applyDelta: state became a non-object');
      doc.state = next;
    } else {
      applyInPlace(redo, doc.state);
    }
  }

  /** Removes the queue entry for `seq` (the head of the queue); returns its append batch. */
  private shiftQueue(doc: Doc, seq: number): number {
    const entry = doc.queue.shift() as WireEnvelope;
    const batch = doc.queueBatch.shift() as number;
    assert(entry.seq === seq, () => `shiftQueue: queue head is ${entry.seq}, not ${seq}`);
    if (entry.clientId !== '') doc.queued.delete(clientKey(entry.clientId, entry.clientSeq));
    this.queuedTotal--;
    this.del(keys.queue(this.chain, doc.id, seq));
    return batch;
  }

  /** The durable half of applying a delta: log, appliedSeq, dedupe, compaction. */
  private recordDelta(doc: Doc, delta: WireDelta): void {
    assert(delta.seq === doc.appliedSeq + 1, () => `recordDelta: seq ${delta.seq} does not follow ${doc.appliedSeq}`);
    doc.appliedSeq = delta.seq;
    doc.log.push(delta);
    this.put(keys.log(this.chain, doc.id, delta.seq), JSON.stringify(delta));
    if (delta.clientId !== '') this.remember(doc, delta.clientId, [delta.clientSeq, delta.seq, delta.outcomeJson]);
    if (doc.appliedSeq - doc.snapshotSeq > this.limits.deltaLogEntriesMax) this.compact(doc);
    this.writeMeta(doc);
    assert(doc.log.length === doc.appliedSeq - doc.logFrom + 1, 'recordDelta: log does not end at appliedSeq');
  }

  private remember(doc: Doc, clientId: string, entry: DedupeEntry): void {
    let window = doc.dedupe.get(clientId);
    if (window === undefined) window = [];
    else doc.dedupe.delete(clientId);
    doc.dedupe.set(clientId, window); // most recently used last
    // Sorted by clientSeq, as recovery reads the keys back; the lowest is evicted first.
    let at = window.length;
    while (at > 0 && (window[at - 1] as DedupeEntry)[0] > entry[0]) at--;
    window.splice(at, 0, entry);
    this.put(keys.dedupe(this.chain, doc.id, clientId, entry[0]), JSON.stringify([entry[1], entry[2]]));
    if (window.length > this.limits.dedupeWindowMax) {
      const evicted = window.shift() as DedupeEntry;
      this.del(keys.dedupe(this.chain, doc.id, clientId, evicted[0]));
    }
    if (doc.dedupe.size > this.limits.dedupeClientsMax) {
      const [oldest] = doc.dedupe.keys() as IterableIterator<string>;
      this.forgetClient(doc, oldest as string);
    }
  }

  private forgetClient(doc: Doc, clientId: string): void {
    for (const e of doc.dedupe.get(clientId) ?? []) this.del(keys.dedupe(this.chain, doc.id, clientId, e[0]));
    doc.dedupe.delete(clientId);
  }

  private writeDedupe(doc: Doc): void {
    for (const [client, window] of doc.dedupe) {
      for (const e of window) this.put(keys.dedupe(this.chain, doc.id, client, e[0]), JSON.stringify([e[1], e[2]]));
    }
  }

  /** Snapshot at appliedSeq; keep the last deltaLogKeepEntries log entries. */
  private compact(doc: Doc): void {
    doc.snapshotSeq = doc.appliedSeq;
    this.put(keys.snapshot(this.chain, doc.id), JSON.stringify({ seq: doc.snapshotSeq, stateJson: JSON.stringify(doc.state) }));
    const logFrom = Math.max(doc.logFrom, doc.appliedSeq - this.limits.deltaLogKeepEntries + 1);
    for (let seq = doc.logFrom; seq < logFrom; seq++) this.del(keys.log(this.chain, doc.id, seq));
    doc.log = doc.log.slice(logFrom - doc.logFrom);
    doc.logFrom = logFrom;
  }

  /** After a delta is applied here: acknowledge (head) or pass it upstream, once `batch` is durable. */
  private afterApplied(doc: Doc, delta: WireDelta, batch: number, source: 'local' | 'succ' | 'pred'): void {
    const role = this.role;
    if (role === 'head' || role === 'single') {
      this.afterDurable(batch, () => this.committed(doc, delta));
      return;
    }
    if (source === 'pred' || this.predState !== 'answered') return; // the Attach answer covers it
    const epoch = this.epoch;
    this.afterDurable(batch, () => {
      if (this.epoch === epoch && this.predState === 'answered') this.backPending.push(delta);
    });
  }

  /** At the head: `delta` is durable on every replica. */
  private committed(doc: Doc, delta: WireDelta): void {
    const waiters = doc.waiters.get(delta.seq);
    if (waiters !== undefined) {
      doc.waiters.delete(delta.seq);
      for (const w of waiters) {
        this.toClient(w.to, make('ack', { requestId: w.requestId, seq: delta.seq, outcomeJson: delta.outcomeJson, duplicate: w.duplicate }));
      }
    }
    const view = doc.view;
    if (view === undefined || delta.seq <= view.speculation.confirmedSeq) return;
    const redo = JSON.parse(delta.redoJson) as JsonObject;
    const outcome = JSON.parse(delta.outcomeJson) as Outcome;
    const transition = view.speculation.confirm(delta.seq, { redo, outcome });
    const confirmed = view.confirmed.advance(view.speculation.confirmed);
    const speculative = view.speculative.advance(view.speculation.speculative);
    if (speculative.size > 0 || !isPlanted('skip-confirmed-view')) this.publish(doc, confirmed, 'confirmed', delta.seq);
    const kind: ViewKind = transition.dropped.length > 0 || transition.rebased ? 'rollback' : 'speculative';
    this.publish(doc, speculative, kind, lastSeqOf(doc));
  }

  private publish(doc: Doc, deltas: Map<string, Json>, kind: ViewKind, seq: number): void {
    if (deltas.size === 0) return;
    const view = doc.view as HeadView;
    const texts = new Map<string, string>();
    for (const sub of view.subs) {
      const delta = deltas.get(sub.viewer);
      if (delta === undefined) continue;
      let json = texts.get(sub.viewer);
      if (kind === 'speculative' && isPlanted('unfiltered-speculation')) json = JSON.stringify({ ...view.speculation.speculative, ...(delta as JsonObject) });
      if (json === undefined) texts.set(sub.viewer, (json = JSON.stringify(delta)));
      this.sendView(doc, sub, kind, seq, json, '');
    }
  }

  /** A message arriving from the predecessor. */
  private acceptFromPred(envelope: WireEnvelope): Rejection | undefined {
    const found = this.docFor(envelope.doc, envelope.docType);
    if (!isDoc(found)) return protocol(`${found.code}: ${found.message}`);
    const doc = found;
    if (envelope.seq <= doc.appliedSeq) {
      // Already applied here: answer with the recorded delta (a resend after a failure).
      const delta = doc.log[envelope.seq - doc.logFrom];
      if (delta === undefined) return protocol(`delta ${doc.id}@${envelope.seq} was compacted; the predecessor should have synced`);
      this.afterApplied(doc, delta, this.writtenBatch(), 'succ');
      return undefined;
    }
    const last = lastSeqOf(doc);
    if (envelope.seq <= last) {
      const mine = doc.queue[envelope.seq - doc.appliedSeq - 1] as WireEnvelope;
      if (!sameMessage(mine, envelope)) {
        return protocol(`queue entry ${doc.id}@${envelope.seq} differs from the predecessor's: histories diverged`);
      }
      return undefined;
    }
    if (envelope.seq !== last + 1) return protocol(`sequence gap on ${doc.id}: got ${envelope.seq} after ${last}`);
    if (this.role === 'tail') this.executeAsTail(doc, envelope, false);
    else this.enqueue(doc, envelope);
    return undefined;
  }

  /** A delta coming back from the successor. */
  private applyFromSucc(delta: WireDelta): Rejection | undefined {
    const doc = this.docs.get(delta.doc);
    if (doc === undefined) return protocol(`delta for unknown document ${delta.doc}`);
    if (delta.seq <= doc.appliedSeq) return undefined; // a duplicate (answer to a resend)
    if (delta.seq !== doc.appliedSeq + 1) return protocol(`delta gap on ${doc.id}: got ${delta.seq} after ${doc.appliedSeq}`);
    let batch = this.openBatchId;
    const head = doc.queue[0];
    if (head !== undefined) {
      if (head.clientId !== delta.clientId || head.clientSeq !== delta.clientSeq) {
        return protocol(`delta ${doc.id}@${delta.seq} is for another message than the queued one: histories diverged`);
      }
      batch = this.shiftQueue(doc, delta.seq);
    }
    this.applyDelta(doc, delta);
    this.recordDelta(doc, delta);
    this.afterApplied(doc, delta, batch, 'succ');
    return undefined;
  }

  private applyCatchups(docs: readonly DocCatchup[], from: Side): Rejection | undefined {
    for (const dc of docs) {
      const bad = this.applyCatchup(dc, from);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }

  /** State transfer in either direction. */
  private applyCatchup(dc: DocCatchup, from: Side): Rejection | undefined {
    const found = this.docFor(dc.doc, dc.docType);
    if (!isDoc(found)) return protocol(`${found.code}: ${found.message}`);
    const doc = found;
    let changed = false;
    if (dc.snapshotSeq > doc.appliedSeq) {
      const state = JSON.parse(dc.snapshotJson) as unknown;
      const dedupe = JSON.parse(dc.dedupeJson) as [string, DedupeEntry[]][];
      if (!isObject(state) || !Array.isArray(dedupe)) return protocol(`snapshot of ${doc.id} is not a state`);
      for (let seq = doc.logFrom; seq <= doc.appliedSeq; seq++) this.del(keys.log(this.chain, doc.id, seq));
      for (const client of [...doc.dedupe.keys()]) this.forgetClient(doc, client);
      while (doc.queue.length > 0 && (doc.queue[0] as WireEnvelope).seq <= dc.snapshotSeq) this.shiftQueue(doc, (doc.queue[0] as WireEnvelope).seq);
      doc.state = doc.persistent ? deepFreeze(state) : state;
      doc.appliedSeq = dc.snapshotSeq;
      doc.snapshotSeq = dc.snapshotSeq;
      doc.logFrom = dc.snapshotSeq + 1;
      doc.log = [];
      doc.dedupe = new Map(dedupe);
      this.writeDedupe(doc);
      this.put(keys.snapshot(this.chain, doc.id), JSON.stringify({ seq: doc.snapshotSeq, stateJson: dc.snapshotJson }));
      this.writeMeta(doc);
      // Waiters of seqs covered by the snapshot cannot learn their outcome here: they resend
      // and the dedupe table answers.
      for (const [seq, waiters] of doc.waiters) {
        if (seq > doc.appliedSeq) continue;
        for (const w of waiters) this.clientFailure(w.to, w.requestId, 'unavailable', 'the chain re-formed; resend the message', true);
        doc.waiters.delete(seq);
      }
      changed = true;
    }
    for (const delta of dc.deltas) {
      if (delta.seq <= doc.appliedSeq) continue;
      if (delta.seq !== doc.appliedSeq + 1) return protocol(`catch-up gap on ${doc.id}: got ${delta.seq} after ${doc.appliedSeq}`);
      let batch = this.openBatchId;
      const head = doc.queue[0];
      if (head !== undefined) {
        if (head.clientId !== delta.clientId || head.clientSeq !== delta.clientSeq) return protocol(`catch-up delta ${doc.id}@${delta.seq} diverges from the queue`);
        batch = this.shiftQueue(doc, delta.seq);
      }
      this.applyDelta(doc, delta);
      this.recordDelta(doc, delta);
      this.afterApplied(doc, delta, batch, from);
      changed = true;
    }
    if (changed && doc.view !== undefined) this.resetView(doc);
    return undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Head client API

  submit(to: ClientRef, s: Submit, now: number): void {
    this.now = Math.max(this.now, now);
    const fail = (code: string, message: string, retryable = false, hint = ''): void => this.clientFailure(to, s.requestId, code, message, retryable, hint);
    const role = this.role;
    if (role !== 'head' && role !== 'single') {
      return fail('not_head', `node ${this.node} is not the head of chain ${this.chain} (epoch ${this.epoch}); send to ${this.members[0]?.node ?? 'the head'}`, true, this.members[0]?.address ?? '');
    }
    if (!this.ready) return fail('unavailable', `chain ${this.chain} is re-forming after a configuration change; retry shortly`, true);
    if (s.chain !== this.chain) return fail('wrong_chain', `this replica serves chain ${this.chain}, not ${s.chain}`);
    if (!idPattern.test(s.clientId)) return fail('invalid_client', `client ids match ${idPattern}`);
    if (!Number.isSafeInteger(s.clientSeq) || s.clientSeq < 1) return fail('invalid_client', 'clientSeq must be a positive integer');
    if (s.viewer.length === 0 || s.viewer.length > 128) return fail('invalid_viewer', 'a viewer id is 1 to 128 characters');
    const found = this.docFor(s.doc, s.docType);
    if (!isDoc(found)) return fail(found.code, found.message);
    const doc = found;

    // Exactly once: a (clientId, clientSeq) seen before is answered, not applied again.
    const window = isPlanted('no-dedupe') ? undefined : doc.dedupe.get(s.clientId);
    const seen = window?.find((e) => e[0] === s.clientSeq);
    if (seen !== undefined) {
      // The entry may come from a write that is not durable yet (its own ack is waiting for it).
      const ack = make('ack', { requestId: s.requestId, seq: seen[1], outcomeJson: seen[2], duplicate: true });
      this.afterDurable(this.writtenBatch(), () => this.toClient(to, ack));
      return;
    }
    if (window !== undefined && window.length >= this.limits.dedupeWindowMax && s.clientSeq < (window[0] as DedupeEntry)[0]) {
      return fail('client_seq_too_old', `clientSeq ${s.clientSeq} is older than the last ${this.limits.dedupeWindowMax} this document remembers for ${s.clientId}`);
    }
    const queuedSeq = isPlanted('no-dedupe') ? undefined : doc.queued.get(clientKey(s.clientId, s.clientSeq));
    if (queuedSeq !== undefined) {
      this.wait(doc, queuedSeq, { to, requestId: s.requestId, duplicate: true });
      return;
    }
    if (doc.queue.length >= this.limits.docQueueDepthMax) {
      return fail('busy', `document ${doc.id} has ${doc.queue.length} messages in flight (docQueueDepthMax); retry after a short delay`, true);
    }
    if (this.queuedTotal >= this.limits.nodeQueueDepthMax) {
      return fail('busy', `chain ${this.chain} has ${this.queuedTotal} messages in flight on this node (nodeQueueDepthMax); retry after a short delay`, true);
    }
    if (doc.type.findChannel(s.channel) === undefined) {
      return fail('unknown_channel', `document type ${doc.type.name} has no channel ${JSON.stringify(s.channel)}`);
    }
    if (utf8Length(s.payloadJson) > doc.type.limits.payloadBytesMax) {
      return fail('payload_too_large', `payload is over ${doc.type.limits.payloadBytesMax} bytes`);
    }
    try {
      JSON.parse(s.payloadJson);
    } catch {
      return fail('invalid_payload', 'payload is not JSON text');
    }

    const envelope: WireEnvelope = {
      doc: doc.id,
      docType: doc.type.name,
      seq: lastSeqOf(doc) + 1,
      timestamp: Math.floor(this.now),
      viewer: s.viewer,
      channel: s.channel,
      payloadJson: s.payloadJson,
      clientId: s.clientId,
      clientSeq: s.clientSeq,
    };
    this.onSequenced?.(envelope);
    this.wait(doc, envelope.seq, { to, requestId: s.requestId, duplicate: false });
    this.speculate(doc, envelope);
    if (role === 'single') this.executeAsTail(doc, envelope, false);
    else this.enqueue(doc, envelope);
  }

  private wait(doc: Doc, seq: number, waiter: Waiter): void {
    const list = doc.waiters.get(seq);
    if (list === undefined) doc.waiters.set(seq, [waiter]);
    else list.push(waiter);
  }

  private speculate(doc: Doc, envelope: WireEnvelope): void {
    const view = doc.view;
    if (view === undefined) return;
    view.speculation.push(engineEnvelope(envelope));
    this.publish(doc, view.speculative.advance(view.speculation.speculative), 'speculative', envelope.seq);
  }

  subscribe(to: ClientRef, s: Subscribe): void {
    const fail = (code: string, message: string, retryable = false, hint = ''): void => this.clientFailure(to, s.requestId, code, message, retryable, hint);
    const role = this.role;
    if (role !== 'head' && role !== 'single') {
      return fail('not_head', `node ${this.node} is not the head of chain ${this.chain}`, true, this.members[0]?.address ?? '');
    }
    if (!this.ready) return fail('unavailable', `chain ${this.chain} is re-forming; retry shortly`, true);
    if (s.chain !== this.chain) return fail('wrong_chain', `this replica serves chain ${this.chain}, not ${s.chain}`);
    if (s.viewer.length === 0 || s.viewer.length > 128) return fail('invalid_viewer', 'a viewer id is 1 to 128 characters');
    const found = this.docFor(s.doc, s.docType);
    if (!isDoc(found)) return fail(found.code, found.message);
    const doc = found;
    const view = doc.view ?? this.createView(doc);
    if (view.subs.length >= this.limits.subscriptionsMax) return fail('too_many_subscriptions', `subscriptionsMax (${this.limits.subscriptionsMax}) reached on ${doc.id}`, true);
    let speculative: JsonObject;
    let confirmed: JsonObject;
    try {
      speculative = view.speculative.join(s.viewer);
      confirmed = view.confirmed.join(s.viewer);
    } catch (error) {
      if (error instanceof LimitError) return fail('too_many_viewers', error.message, true);
      throw error;
    }
    const sub: Subscription = { to, requestId: s.requestId, viewer: s.viewer };
    view.subs.push(sub);
    this.sendView(doc, sub, 'full', view.speculation.confirmedSeq, JSON.stringify(speculative), JSON.stringify(confirmed));
  }

  unsubscribe(to: ClientRef, docId: string, viewer: string): void {
    const doc = this.docs.get(docId);
    if (doc?.view === undefined) return;
    this.removeSubs(doc, (sub) => sub.to === to && sub.viewer === viewer);
  }

  /** A client connection closed: forget its subscriptions and waiters. */
  clientGone(to: ClientRef): void {
    for (const doc of this.docs.values()) {
      for (const [seq, waiters] of doc.waiters) {
        const rest = waiters.filter((w) => w.to !== to);
        if (rest.length === 0) doc.waiters.delete(seq);
        else if (rest.length !== waiters.length) doc.waiters.set(seq, rest);
      }
      if (doc.view !== undefined) this.removeSubs(doc, (sub) => sub.to === to);
    }
  }

  private removeSubs(doc: Doc, match: (sub: Subscription) => boolean): void {
    const view = doc.view as HeadView;
    const kept = view.subs.filter((sub) => !match(sub));
    if (kept.length === view.subs.length) return;
    view.subs.length = 0;
    view.subs.push(...kept);
    const still = new Set(kept.map((sub) => sub.viewer));
    for (const viewer of [...view.confirmed.viewers()]) {
      if (!still.has(viewer)) {
        view.confirmed.leave(viewer);
        view.speculative.leave(viewer);
      }
    }
    if (kept.length === 0) doc.view = undefined;
  }

  private createView(doc: Doc): HeadView {
    assert(doc.persistent, 'createView: the head keeps persistent states');
    const speculation = new Speculation(doc.type, doc.state, doc.appliedSeq, this.entropy, this.limits.docQueueDepthMax);
    for (const entry of doc.queue) speculation.push(engineEnvelope(entry));
    const view: HeadView = {
      speculation,
      confirmed: new Audience(doc.type, speculation.confirmed, this.limits.viewersMax),
      speculative: new Audience(doc.type, speculation.speculative, this.limits.viewersMax),
      subs: [],
    };
    doc.view = view;
    return view;
  }

  /** The head's state changed outside the queue (a catch-up): every subscriber gets a full view. */
  private resetView(doc: Doc): void {
    const old = doc.view as HeadView;
    doc.view = undefined;
    const view = this.createView(doc);
    for (const sub of old.subs) {
      const speculative = view.speculative.join(sub.viewer);
      const confirmed = view.confirmed.join(sub.viewer);
      view.subs.push(sub);
      this.sendView(doc, sub, 'full', doc.appliedSeq, JSON.stringify(speculative), JSON.stringify(confirmed));
    }
  }

  private sendView(doc: Doc, sub: Subscription, kind: ViewKind, seq: number, json: string, confirmedJson: string): void {
    const update: ViewUpdate = { requestId: sub.requestId, doc: doc.id, viewer: sub.viewer, kind, seq, json, confirmedJson };
    if (this.onViewFrame !== undefined) {
      const speculation = (doc.view as HeadView).speculation;
      this.onViewFrame(update, doc.type.name, { speculative: speculation.speculative, confirmed: speculation.confirmed });
    }
    this.toClient(sub.to, make('viewUpdate', update));
  }
}

// -----------------------------------------------------------------------------------------

/** Planted bug tail-out-of-order: pairs of consecutive messages of a document run in swapped order. */
function swapPayloads(envelopes: WireEnvelope[]): WireEnvelope[] {
  const out = [...envelopes];
  for (let i = 0; i + 1 < out.length; i++) {
    const a = out[i] as WireEnvelope;
    const b = out[i + 1] as WireEnvelope;
    if (a.doc !== b.doc || b.seq !== a.seq + 1) continue;
    // Identities (seq, clientId, clientSeq) stay; the bodies trade places.
    out[i] = { ...a, viewer: b.viewer, channel: b.channel, payloadJson: b.payloadJson };
    out[i + 1] = { ...b, viewer: a.viewer, channel: a.channel, payloadJson: a.payloadJson };
    i++;
  }
  return out;
}

/** Two queue entries for one seq are the same message (the histories agree there). */
function sameMessage(a: WireEnvelope, b: WireEnvelope): boolean {
  return a.clientId === b.clientId && a.clientSeq === b.clientSeq && a.payloadJson === b.payloadJson;
}

function isDoc(value: Doc | { code: string; message: string }): value is Doc {
  return 'state' in value;
}

function lastSeqOf(doc: Doc): number {
  return doc.appliedSeq + doc.queue.length;
}

function protocol(message: string): Rejection {
  return { code: 'protocol_error', message, retryable: true };
}

function engineEnvelope(envelope: WireEnvelope): Envelope {
  return {
    doc: envelope.doc,
    seq: envelope.seq,
    timestamp: envelope.timestamp,
    viewer: envelope.viewer,
    channel: envelope.channel,
    payload: JSON.parse(envelope.payloadJson) as unknown,
  };
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function dedupeJson(dedupe: Map<string, DedupeEntry[]>, sorted: boolean): Json {
  const entries = [...dedupe].map(([client, window]) => [client, window.map((e) => [...e])]);
  if (sorted) entries.sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1));
  return entries as Json;
}

function catchupBytes(c: DocCatchup): number {
  let bytes = c.snapshotJson.length + c.dedupeJson.length + 64;
  for (const d of c.deltas) bytes += d.redoJson.length + d.undoJson.length + 64;
  return bytes;
}

/** Splits items into frames of at most frameItemsMax items and about frameBytesTarget bytes. */
function chunk<T>(items: readonly T[], limits: ReplicaLimits, bytesOf: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item) + 128;
    if (current.length > 0 && (current.length >= limits.frameItemsMax || bytes + size > limits.frameBytesTarget)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** A configuration's own consistency: non-empty, distinct nodes, valid ids and epochs. */
export function checkConfig(config: ChainConfig): string | undefined {
  if (!idPattern.test(config.chain)) return `chain id ${JSON.stringify(config.chain)} does not match ${idPattern}`;
  if (!Number.isSafeInteger(config.epoch) || config.epoch < 1) return 'epoch must be a positive integer';
  if (config.members.length === 0) return 'a chain needs at least one member';
  const nodes = new Set<string>();
  for (const m of config.members) {
    if (!idPattern.test(m.node)) return `node id ${JSON.stringify(m.node)} does not match ${idPattern}`;
    if (nodes.has(m.node)) return `node ${m.node} appears twice`;
    nodes.add(m.node);
    if (!Number.isSafeInteger(m.sinceEpoch) || m.sinceEpoch < 1 || m.sinceEpoch > config.epoch) return `member ${m.node} has a bad sinceEpoch`;
  }
  return undefined;
}

debugAssert(() => defaultReplicaLimits.deltaLogKeepEntries >= defaultReplicaLimits.docQueueDepthMax, 'defaults: keep covers the queue');
