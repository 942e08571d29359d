// One node's replica of one chain, as a deterministic sans-I/O state machine (in the manner
// of etcd's raft library). It does no I/O and reads no clock:
//
//   inputs   configure (from the chain manager), frames from the predecessor or successor,
//            link up/down, client submit/subscribe (head.ts), tick(now), durable(batchId)
//   outputs  drain() -> frames for the predecessor, the successor and clients;
//            takeBatch() -> the next atomic batch to write with sync (group commit)
//
// The runtime driver (runtime/driver.ts) runs this same code in real processes and in the
// simulator.
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
//   when synced, so no seq can be assigned twice. Attach and Sync carry one entry per
//   document and are split into frames under frameBytesTarget (`more` marks all but the last).
// - A node that joins a chain (it was not a member of its last configuration, or was removed
//   since) forgets what it held of that chain and takes everything by state transfer: while it
//   was out, entries it had applied but the chain never committed may have been re-sequenced
//   (the simulator found this). A member that merely restarts keeps its state and transfers
//   only what it lacks. Once it holds everything its predecessor had applied when it attached,
//   it records that epoch as caughtUpEpoch with its configuration (durably: the manager relies
//   on it to keep the chain's state alive, also across this node's restarts).
// - Frames carry the epoch. Lower epochs are refused (stale_epoch); a higher one means this
//   node has not heard of that configuration yet (epoch_unknown, retryable).
// - Leases: a head serves (sequences, acknowledges duplicates, answers subscriptions) only
//   while it holds a lease: a Lease round it started less than leaseMs ago went down the
//   chain to the tail and came back as LeaseAck, every node passing it on at the head's
//   epoch. A head removed from its chain cannot renew it (its successor fences it), so within
//   leaseMs it fails its waiters and ends its subscriptions with retryable errors: no client
//   waits on a zombie, and none reads from it. A node that becomes head waits until any lease
//   it helped renew as a member has run out (servingFrom, kept with its configuration), so
//   two heads never serve at once. A single-node chain needs no lease: it cannot be removed.
// - Peer frames are input: every field is validated (validate.ts) and a bad one is a typed
//   rejection that closes that link only.
// - Entropy: each document has a secret key for its PRNG (engine/random.ts), 32 bytes from
//   options.randomBytes made by the head (or single node) that creates it. It travels only
//   where the document does: in the envelope of seq 1 (which creates it on every replica that
//   lacks it) and in every catch-up piece. A replica adopts it where it first gets the
//   document and refuses a frame that names another one for it (histories diverged); it is
//   persisted once and never reaches a client. A head that fails before seq 1 reached anyone
//   takes its entropy with it: the next head creates the document afresh, with new bytes.

import { assert, unreachable } from '../../engine/assert.ts';
import type { Envelope } from '../../engine/execute.ts';
import { execute } from '../../engine/execute.ts';
import { canonicalJson, isObject, type JsonObject } from '../../engine/json.ts';
import { applyInPlace } from '../../engine/patch.ts';
import { createHash, randomBytes } from 'node:crypto';
import { checkConfig, idPattern, sameMembers, type ChainConfig } from './config.ts';
import { Documents, lastSeqOf, sameBytes, type Doc, type DocumentLimits } from './documents.ts';
import { GroupCommit } from './durability.ts';
import { failure, make, type DocCatchup, type DocSeq, type Frame, type Member, type Submit, type Subscribe, type ViewUpdate, type WireDelta, type WireEnvelope } from './frames.ts';
import { Head } from './head.ts';
import { noBugs, type Bugs } from './planted.ts';
import { keys, type Batch, type ConfigRecord, type DedupeEntry, type RecoveredChain } from './store.ts';
import { checkCatchup, checkDelta, checkDocSeq, checkEnvelope, docEntropyBytes, invalid, parseJson, protocol, type Rejection } from './validate.ts';

export type { Rejection } from './validate.ts';

export interface ReplicaLimits extends DocumentLimits {
  /** Messages sequenced and not yet committed, per document, at the head. */
  docQueueDepthMax: number;
  /** Messages sequenced and not yet committed, over all documents of this replica. */
  nodeQueueDepthMax: number;
  /** Subscribed viewers per document. */
  viewersMax: number;
  /** Subscriptions per document (several connections and tabs may watch as one viewer). */
  subscriptionsMax: number;
  /** Subscriptions over all documents of this replica (documents without messages included). */
  nodeSubscriptionsMax: number;
  /** Requests waiting for one message's commit (its first send and resends of it). */
  waitersPerMessageMax: number;
  /** Envelopes or deltas per Forward/Back frame, entries per Attach/Sync frame. */
  frameItemsMax: number;
  /** Approximate bytes per frame (kept well under frameBytesMax). */
  frameBytesTarget: number;
  /** How long a predecessor waits for its successor's Sync before it redials. */
  attachTimeoutMs: number;
  /** Deferred actions waiting for durability. */
  releasesMax: number;
  /** How long a lease round that came back lets the head serve. */
  leaseMs: number;
  /** How often the head starts a lease round. */
  leaseRenewMs: number;
  /** Added to a new head's wait for leases it helped renew (clock rates differ a little). */
  leaseMarginMs: number;
}

export const defaultReplicaLimits: ReplicaLimits = Object.freeze({
  docQueueDepthMax: 256,
  nodeQueueDepthMax: 16_384,
  documentsMax: 50_000,
  deltaLogEntriesMax: 1_024,
  deltaLogKeepEntries: 512,
  dedupeWindowMax: 64,
  dedupeClientsMax: 4_096,
  dedupeIdleMsMin: 600_000,
  viewersMax: 1_000,
  subscriptionsMax: 4_000,
  nodeSubscriptionsMax: 100_000,
  waitersPerMessageMax: 8,
  frameItemsMax: 512,
  frameBytesTarget: 1024 * 1024,
  attachTimeoutMs: 5_000,
  releasesMax: 1_000_000,
  leaseMs: 1_000,
  leaseRenewMs: 200,
  leaseMarginMs: 50,
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

/** Observation only (the simulator's checks); never changes behaviour. */
export interface ReplicaObserver {
  sequenced?(envelope: WireEnvelope): void;
  /** Every view frame for a subscriber, with the speculative and confirmed states it was computed from. */
  viewFrame?(update: ViewUpdate, docType: string, basis: { readonly speculative: JsonObject; readonly confirmed: JsonObject }): void;
  /** A subscription was answered with its full view. */
  subscribed?(subscribe: Subscribe, full: ViewUpdate): void;
}

export interface ReplicaOptions {
  readonly limits?: Partial<ReplicaLimits>;
  readonly bugs?: Bugs;
  /** The clock at construction (a restart: see servingFrom). */
  readonly now?: number;
  readonly observer?: ReplicaObserver;
  /**
   * n random bytes: the entropy of each document this node creates as head. Defaults to
   * node:crypto's randomBytes; the simulator passes bytes from its seeded PRNG (runs replay).
   */
  readonly randomBytes?: (n: number) => Uint8Array;
}

/** What a node knows of its chain, for the manager and for head lookups (costs no document reads). */
export interface ChainInfoBody {
  readonly node: string;
  readonly chain: string;
  readonly epoch: number;
  readonly role: Role;
  readonly members: readonly Member[];
  readonly ready: boolean;
  readonly caughtUpEpoch: number;
}

export interface StatusQuery {
  readonly includeState?: boolean;
  readonly includeDigests?: boolean;
  readonly docsAfter?: string;
  readonly docsMax?: number;
}

export class Replica {
  readonly limits: ReplicaLimits;
  readonly bugs: Bugs;
  readonly observer: ReplicaObserver;
  readonly docs: Documents;
  readonly commit: GroupCommit;
  readonly head: Head;
  private readonly randomBytes: (n: number) => Uint8Array;
  private config: ChainConfig | undefined;
  now = 0;

  // Links.
  private succLinkUp = false;
  private succState: 'down' | 'attaching' | 'synced' = 'down';
  private attachSentAt = 0;
  /** none: no Attach yet; receiving: Attach frames arriving; pending: waiting to answer; answering: answer waits for the disk; answered. */
  private predState: 'none' | 'receiving' | 'pending' | 'answering' | 'answered' = 'none';
  private predApplied = new Map<string, number>();
  private predLast = new Map<string, number>();
  private predTypes = new Map<string, string>();
  /** Sync frames of the successor's answer, until the last. */
  private syncParts: { applied: DocSeq[]; envelopes: WireEnvelope[] } | undefined;

  // Catching up (see caughtUpEpoch).
  private catchup: { readonly epoch: number; readonly target: ReadonlyMap<string, number>; readonly missing: Set<string> } | undefined;
  private caughtUpWritten = 0;
  private caughtUpEpochValue = 0;

  // Leases.
  private leaseRound = 0;
  private readonly leaseSent = new Map<number, number>();
  private lastLeaseSentAt = -Infinity;
  private leaseUntil = 0;
  /** When this node last passed on or answered a Lease of another head (-Infinity: never, a new node). */
  private lastLeaseSeenAt = -Infinity;
  /** This node does not serve as head before this time (persisted with the configuration). */
  private servingFrom = 0;
  /** Becoming head, this node serves only once the batch holding its promotion is durable. */
  private promotionBatch = 0;

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
    recovered: RecoveredChain | undefined,
    options: ReplicaOptions = {},
  ) {
    this.limits = Object.freeze({ ...defaultReplicaLimits, ...options.limits });
    this.bugs = options.bugs ?? noBugs;
    this.observer = options.observer ?? {};
    this.now = options.now ?? 0;
    this.randomBytes = options.randomBytes ?? randomBytes;
    assert(idPattern.test(chain), `Replica: bad chain id ${chain}`);
    assert(this.limits.deltaLogKeepEntries >= this.limits.docQueueDepthMax, 'Replica: deltaLogKeepEntries must cover docQueueDepthMax');
    assert(this.limits.deltaLogEntriesMax >= 1 && this.limits.deltaLogKeepEntries >= 1, 'Replica: log bounds must be positive');
    assert(this.limits.leaseRenewMs < this.limits.leaseMs, 'Replica: leaseRenewMs must be below leaseMs');
    this.commit = new GroupCommit(this.limits.releasesMax, this.bugs);
    this.docs = new Documents(chain, this.limits, this.commit, this.bugs);
    this.head = new Head(this);
    if (recovered !== undefined) {
      assert(recovered.chain === chain, 'Replica: recovered contents of another chain');
      this.config = recovered.config;
      this.caughtUpEpochValue = this.bugs.has('caught-up-in-memory') ? 0 : recovered.caughtUpEpoch;
      this.caughtUpWritten = this.caughtUpEpochValue;
      this.servingFrom = recovered.servingFrom;
      // It may have passed on a lease just before it stopped.
      this.lastLeaseSeenAt = this.now;
      for (const r of recovered.docs.values()) this.docs.adopt(r);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Inspection (queries have no side effects)

  get epoch(): number {
    return this.config?.epoch ?? 0;
  }

  get members(): readonly Member[] {
    return this.config?.members ?? [];
  }

  get role(): Role {
    return roleOf(this.members, this.node);
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
    if (this.role === 'none') return false;
    return this.successor === undefined || this.succState === 'synced';
  }

  /** The successor link has finished this epoch's sync. */
  get succSynced(): boolean {
    return this.succState === 'synced';
  }

  /** A head's lease holds at `now` (a single-node chain always holds one). */
  leaseHolds(now: number): boolean {
    const role = this.role;
    if (role === 'single') return true;
    if (role !== 'head') return false;
    return now < this.leaseUntil;
  }

  /** Why this node does not serve as head at `now`, or undefined when it does. */
  notServing(now: number): string | undefined {
    const role = this.role;
    if (role !== 'head' && role !== 'single') return 'not_head';
    if (!this.synced) return `chain ${this.chain} is re-forming after a configuration change`;
    if (now < this.servingFrom) return `node ${this.node} became head of ${this.chain}; it serves once the previous head's lease has run out`;
    if (this.commit.durable < this.promotionBatch) return `node ${this.node} is making its promotion durable`;
    if (!this.leaseHolds(now)) return `node ${this.node} holds no lease on chain ${this.chain} (its successors did not answer in time)`;
    return undefined;
  }

  /** The head accepts submissions and subscriptions (at the time of the last input). */
  get ready(): boolean {
    return this.notServing(this.now) === undefined;
  }

  get pendingReleases(): number {
    return this.commit.pending;
  }

  /**
   * The latest epoch in which this node held everything its predecessor had applied when it
   * attached, durably. A joiner (a member since epoch e) is caught up once this is at least e;
   * until then the manager must keep another member that holds the committed state.
   */
  get caughtUpEpoch(): number {
    return this.caughtUpEpochValue;
  }

  /** Cheap per-document seqs, for invariant checks that run on every event. */
  seqs(): Map<string, { applied: number; last: number }> {
    const out = new Map<string, { applied: number; last: number }>();
    for (const doc of this.docs.values()) out.set(doc.id, { applied: doc.appliedSeq, last: lastSeqOf(doc) });
    return out;
  }

  /** A document's applied state, its log and (at a head with subscribers) its views' states. Read-only. */
  peek(docId: string): { type: Doc['type']; state: JsonObject; log: readonly WireDelta[]; logFrom: number; committedSeq: number } | undefined {
    const doc = this.docs.get(docId);
    if (doc === undefined) return undefined;
    return { type: doc.type, state: doc.state, log: doc.log, logFrom: doc.logFrom, committedSeq: doc.committedSeq };
  }

  documents(): string[] {
    return [...this.docs.ids()];
  }

  /** A fresh entropy for a document this node creates (as head, on its first accepted message). */
  newEntropy(): Uint8Array {
    const bytes = this.randomBytes(docEntropyBytes);
    assert(bytes.length === docEntropyBytes, () => `Replica: randomBytes gave ${bytes.length} bytes, not ${docEntropyBytes}`);
    return Uint8Array.from(bytes);
  }

  /** The entropy a document created here from a peer's frame gets: the frame's (planted bug entropy-per-replica: its own). */
  private adopted(received: Uint8Array | undefined): Uint8Array | undefined {
    return received !== undefined && this.bugs.has('entropy-per-replica') ? this.newEntropy() : received;
  }

  /** A peer's frame names an entropy for a document held here: the same one, or the histories diverged. */
  private entropyDiffers(doc: Doc, received: Uint8Array | undefined): boolean {
    return received !== undefined && !sameBytes(doc.entropy, received) && !this.bugs.has('entropy-per-replica');
  }

  info(): ChainInfoBody {
    return { node: this.node, chain: this.chain, epoch: this.epoch, role: this.role, members: this.members, ready: this.ready, caughtUpEpoch: this.caughtUpEpoch };
  }

  /** The status for tools: a summary, then at most docsMax documents after docsAfter (id order). */
  status(query: StatusQuery = {}): JsonObject {
    const docsMax = query.docsMax ?? 0;
    const docs: JsonObject[] = [];
    let more = false;
    if (docsMax > 0) {
      const after = query.docsAfter ?? '';
      const ids = [...this.docs.ids()].filter((id) => id > after).sort();
      more = ids.length > docsMax;
      for (const id of ids.slice(0, docsMax)) {
        const doc = this.docs.get(id) as Doc;
        const entry: JsonObject = {
          doc: doc.id,
          docType: doc.type.name,
          appliedSeq: doc.appliedSeq,
          lastSeq: lastSeqOf(doc),
          queue: doc.queue.length,
          snapshotSeq: doc.snapshotSeq,
          logFrom: doc.logFrom,
        };
        if (query.includeDigests === true) {
          const last = doc.log[doc.log.length - 1];
          entry.stateDigest = digest(canonicalJson(doc.state));
          entry.entropyDigest = createHash('sha256').update('adama-chain/entropy|').update(doc.entropy).digest('hex').slice(0, 16);
          entry.dedupeDigest = digest(doc.dedupe.digestText());
          entry.lastDeltaDigest = last === undefined ? '' : digest(JSON.stringify(last));
        }
        if (query.includeState === true) entry.state = JSON.parse(JSON.stringify(doc.state)) as JsonObject;
        docs.push(entry);
      }
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
      queued: this.docs.queuedTotal,
      documents: this.docs.size,
      subscriptions: this.head.subscriptionCount,
      docs,
      more,
    };
  }

  // ---------------------------------------------------------------------------------------
  // Group commit

  /** The next batch to write (everything since the last one), or undefined when idle. */
  takeBatch(): Batch | undefined {
    return this.commit.take();
  }

  /** Batch `id` (and every earlier one) is on disk. */
  durable(id: number): void {
    this.commit.completed(id);
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
    if (this.forwardPending.length > 0) {
      for (const envelopes of chunk(this.forwardPending, this.limits, envelopeBytes)) this.outSucc.push(make('forward', { chain, epoch, envelopes }));
      this.forwardPending = [];
    }
    if (this.backPending.length > 0) {
      for (const deltas of chunk(this.backPending, this.limits, deltaBytes)) this.outPred.push(make('back', { chain, epoch, deltas }));
      this.backPending = [];
    }
  }

  toClient(to: ClientRef, frame: Frame): void {
    this.outClients.push({ to, frame });
  }

  clientFailure(to: ClientRef, requestId: number, code: string, message: string, retryable = false, hint = ''): void {
    this.toClient(to, failure(code, message, { requestId, retryable, epoch: this.epoch, hint }));
  }

  get headAddress(): string {
    return this.members[0]?.address ?? '';
  }

  // ---------------------------------------------------------------------------------------
  // Configuration

  /** A new configuration from the chain manager. Returns a rejection for a stale or conflicting one. */
  configure(next: ChainConfig, now = this.now): Rejection | undefined {
    this.now = Math.max(this.now, now);
    const problem = checkConfig(next);
    if (problem !== undefined) return { code: 'invalid_config', message: problem, retryable: false };
    if (next.chain !== this.chain) return { code: 'invalid_config', message: `this replica serves chain ${this.chain}, not ${next.chain}`, retryable: false };
    const previous = this.config;
    if (previous !== undefined && next.epoch < previous.epoch && !this.bugs.has('no-epoch-check')) {
      return { code: 'stale_epoch', message: `epoch ${next.epoch} is older than this node's ${previous.epoch}`, retryable: false };
    }
    if (previous !== undefined && next.epoch === previous.epoch && !this.bugs.has('no-epoch-check')) {
      if (sameMembers(next.members, previous.members)) return undefined;
      return { code: 'epoch_conflict', message: `epoch ${next.epoch} already names other members`, retryable: false };
    }

    const oldRole = this.role;
    const oldSucc = this.successor?.node;
    const me = next.members.find((m) => m.node === this.node);
    const wasMember = previous?.members.some((m) => m.node === this.node);
    const joining = me !== undefined && (!wasMember || me.sinceEpoch > (previous as ChainConfig).epoch);

    this.config = { chain: next.chain, epoch: next.epoch, members: next.members.map((m) => ({ node: m.node, address: m.address, sinceEpoch: m.sinceEpoch })) };
    const role = this.role;
    const wasHead = oldRole === 'head' || oldRole === 'single';
    const isHead = role === 'head' || role === 'single';

    // Whatever was in flight belongs to the old epoch: the sync of the new one resends it.
    this.forwardPending = [];
    this.backPending = [];
    this.resetPred();
    if (this.successor?.node !== oldSucc) this.succLinkUp = false;
    this.succState = 'down';
    this.syncParts = undefined;
    this.catchup = undefined;

    if (wasHead && !isHead) this.head.leave('not_head', `node ${this.node} is no longer the head of chain ${this.chain}; retry at the new head`);
    if (joining) {
      // What this node holds may come from a history the chain no longer has (entries it
      // applied that were never committed, then re-sequenced after it was removed). Only the
      // chain's history counts: forget everything and take it by state transfer.
      for (const doc of [...this.docs.values()]) this.docs.forget(doc);
    } else if (role === 'none') {
      for (const doc of this.docs.values()) this.docs.dropQueue(doc);
    }
    if (isHead && !wasHead) {
      // Promoted: what it applied as a member came back durable from its successors; once its
      // own record of it is durable too, it is committed. And it serves only once any lease it
      // helped another head renew has run out.
      for (const doc of this.docs.values()) doc.committedSeq = doc.appliedSeq;
      if (this.lastLeaseSeenAt > -Infinity) this.servingFrom = Math.max(this.servingFrom, this.lastLeaseSeenAt + this.limits.leaseMs + this.limits.leaseMarginMs);
      this.leaseUntil = 0;
    }
    this.writeConfigRecord();
    if (isHead && !wasHead) this.promotionBatch = this.commit.written;
    if (role === 'tail' || role === 'single') {
      // A new tail executes what it has queued, in seq order.
      for (const doc of this.docs.values()) {
        while (doc.queue.length > 0) this.executeAsTail(doc, doc.queue[0] as WireEnvelope, true);
      }
    }
    if (this.successor !== undefined && this.succLinkUp) this.sendAttach();
    return undefined;
  }

  private writeConfigRecord(): void {
    const config = this.config as ChainConfig;
    const record: ConfigRecord = {
      chain: config.chain,
      epoch: config.epoch,
      members: config.members,
      caughtUpEpoch: this.bugs.has('caught-up-in-memory') ? 0 : this.caughtUpWritten,
      servingFrom: this.servingFrom,
    };
    this.commit.put(keys.config(this.chain), JSON.stringify(record));
  }

  private resetPred(): void {
    this.predState = 'none';
    this.predApplied = new Map();
    this.predLast = new Map();
    this.predTypes = new Map();
  }

  // ---------------------------------------------------------------------------------------
  // Links

  /** The link to the successor is open (the runtime dialed `successor` and authenticated). */
  linkUp(now = this.now): void {
    this.now = Math.max(this.now, now);
    assert(this.successor !== undefined, 'Replica.linkUp: no successor');
    this.succLinkUp = true;
    this.sendAttach();
  }

  linkDown(side: Side): void {
    if (side === 'succ') {
      this.succLinkUp = false;
      this.succState = 'down';
      this.forwardPending = [];
      this.syncParts = undefined;
    } else {
      this.resetPred();
      this.backPending = [];
    }
  }

  tick(now: number): void {
    this.now = Math.max(this.now, now);
    if (this.succState === 'attaching' && this.now - this.attachSentAt > this.limits.attachTimeoutMs) {
      this.linkDown('succ');
      this.resetSuccRequested = true;
    }
    if (this.role === 'head' && this.succState === 'synced' && this.now - this.lastLeaseSentAt >= this.limits.leaseRenewMs) this.startLeaseRound();
    this.head.tick(this.now);
  }

  private startLeaseRound(): void {
    const round = ++this.leaseRound;
    this.leaseSent.set(round, this.now);
    if (this.leaseSent.size > 16) this.leaseSent.delete(this.leaseSent.keys().next().value as number);
    this.lastLeaseSentAt = this.now;
    this.outSucc.push(make('lease', { chain: this.chain, epoch: this.epoch, round }));
  }

  private sendAttach(): void {
    const applied: DocSeq[] = [];
    for (const doc of this.docs.values()) applied.push({ doc: doc.id, docType: doc.type.name, seq: doc.appliedSeq, lastSeq: lastSeqOf(doc) });
    const parts = this.bugs.has('unsplit-frames') ? [applied] : chunk(applied, this.limits, (d) => d.doc.length + d.docType.length + 32);
    if (parts.length === 0) parts.push([]);
    for (const [i, part] of parts.entries()) this.outSucc.push(make('attach', { chain: this.chain, epoch: this.epoch, applied: part, more: i < parts.length - 1 }));
    this.succState = 'attaching';
    this.attachSentAt = this.now;
  }

  /** Checks a peer frame's epoch and sender. */
  private fence(epoch: number, fromNode: string, side: Side): Rejection | undefined {
    if (this.config === undefined || this.role === 'none') {
      return { code: 'not_member', message: `node ${this.node} is not a member of chain ${this.chain} (epoch ${this.epoch})`, retryable: true };
    }
    if (epoch < this.epoch && !this.bugs.has('no-epoch-check')) return { code: 'stale_epoch', message: `epoch ${epoch} is older than ${this.epoch}`, retryable: false };
    if (epoch > this.epoch) return { code: 'epoch_unknown', message: `node ${this.node} has not been configured for epoch ${epoch} yet (it has ${this.epoch})`, retryable: true };
    const expected = side === 'pred' ? this.predecessor : this.successor;
    if (expected?.node !== fromNode) {
      return {
        code: side === 'pred' ? 'not_predecessor' : 'not_successor',
        message: `${fromNode} is not the ${side === 'pred' ? 'predecessor' : 'successor'} of ${this.node} in epoch ${this.epoch}`,
        retryable: false,
      };
    }
    return undefined;
  }

  private checkChain(chain: string): Rejection | undefined {
    return chain === this.chain ? undefined : protocol(`frame for chain ${chain} on a link of chain ${this.chain}`);
  }

  /** A validation result, unless the planted bug skips validation. */
  private valid(problem: string | undefined): Rejection | undefined {
    return problem === undefined || this.bugs.has('unvalidated-peer-input') ? undefined : invalid(problem);
  }

  /** A frame from the predecessor's connection (authenticated as `fromNode`). */
  fromPred(frame: Frame, fromNode: string, now = this.now): Rejection | undefined {
    this.now = Math.max(this.now, now);
    switch (frame.kind) {
      case 'attach': {
        const a = frame.attach;
        const rejection = this.fence(a.epoch, fromNode, 'pred') ?? this.checkChain(a.chain);
        if (rejection !== undefined) return rejection;
        if (this.predState !== 'receiving') {
          this.resetPred();
          this.predState = 'receiving';
        }
        for (const d of a.applied) {
          const bad = this.valid(checkDocSeq(d));
          if (bad !== undefined) return bad;
          this.predApplied.set(d.doc, d.seq);
          this.predLast.set(d.doc, d.lastSeq);
          this.predTypes.set(d.doc, d.docType);
        }
        if (this.predApplied.size > this.limits.documentsMax && !this.bugs.has('unvalidated-peer-input')) return invalid(`attach lists more than documentsMax (${this.limits.documentsMax}) documents`);
        if (a.more) return undefined;
        this.predState = 'pending';
        this.startCatchingUp();
        if (this.synced) this.answerPred();
        return undefined;
      }
      case 'catchup': {
        const rejection = this.fence(frame.catchup.epoch, fromNode, 'pred') ?? this.checkChain(frame.catchup.chain);
        if (rejection !== undefined) return rejection;
        if (this.predState !== 'answered' && this.predState !== 'answering') return protocol('catchup before this node answered the Attach');
        return this.applyCatchups(frame.catchup.docs, 'pred');
      }
      case 'forward': {
        const rejection = this.fence(frame.forward.epoch, fromNode, 'pred') ?? this.checkChain(frame.forward.chain);
        if (rejection !== undefined) return rejection;
        if (this.predState !== 'answered' && this.predState !== 'answering') return protocol('forward before this node answered the Attach');
        const envelopes = this.bugs.has('tail-out-of-order') && this.role === 'tail' ? swapPayloads(frame.forward.envelopes) : frame.forward.envelopes;
        for (const envelope of envelopes) {
          const bad = this.acceptFromPred(envelope);
          if (bad !== undefined) return bad;
        }
        return undefined;
      }
      case 'lease': {
        const rejection = this.fence(frame.lease.epoch, fromNode, 'pred') ?? this.checkChain(frame.lease.chain);
        if (rejection !== undefined) return rejection;
        const bad = this.valid(Number.isSafeInteger(frame.lease.round) && frame.lease.round > 0 ? undefined : 'lease: bad round');
        if (bad !== undefined) return bad;
        // Only a link synced in this epoch passes a lease on: the chain is whole down from here.
        if (this.predState !== 'answered') return undefined;
        this.lastLeaseSeenAt = this.now;
        if (this.role === 'tail') this.outPred.push(make('leaseAck', { chain: this.chain, epoch: this.epoch, round: frame.lease.round }));
        else if (this.succState === 'synced') this.outSucc.push(frame);
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
  fromSucc(frame: Frame, fromNode: string, now = this.now): Rejection | undefined {
    this.now = Math.max(this.now, now);
    if (frame.kind === 'failure') {
      // The successor refused us (fenced, not configured yet, or a protocol error): the runtime
      // closes the link and redials after a delay.
      this.linkDown('succ');
      return undefined;
    }
    const body = frame.kind === 'sync' ? frame.sync : frame.kind === 'catchup' ? frame.catchup : frame.kind === 'back' ? frame.back : frame.kind === 'leaseAck' ? frame.leaseAck : undefined;
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
        const parts = (this.syncParts ??= { applied: [], envelopes: [] });
        for (const d of frame.sync.applied) {
          const bad = this.valid(checkDocSeq(d));
          if (bad !== undefined) return bad;
          parts.applied.push(d);
        }
        for (const e of frame.sync.envelopes) {
          const bad = this.valid(checkEnvelope(e));
          if (bad !== undefined) return bad;
          parts.envelopes.push(e);
        }
        if (parts.applied.length > this.limits.documentsMax && !this.bugs.has('unvalidated-peer-input')) return invalid('sync lists more than documentsMax documents');
        if (frame.sync.more) return undefined;
        this.syncParts = undefined;
        return this.finishSync(parts.applied, parts.envelopes);
      }
      case 'back': {
        if (this.succState !== 'synced') return protocol('back before sync');
        for (const delta of frame.back.deltas) {
          const bad = this.applyFromSucc(delta);
          if (bad !== undefined) return bad;
        }
        return undefined;
      }
      case 'leaseAck': {
        if (this.succState !== 'synced') return undefined;
        const round = frame.leaseAck.round;
        if (this.role === 'head') {
          const sentAt = this.leaseSent.get(round);
          if (sentAt !== undefined) this.leaseUntil = Math.max(this.leaseUntil, sentAt + this.limits.leaseMs);
        } else if (this.predState === 'answered') {
          this.outPred.push(frame);
        }
        return undefined;
      }
      default:
        return unreachable(frame as never);
    }
  }

  /** The successor's answer to our Attach is complete: take what we lost, then send what it lacks. */
  private finishSync(applied: readonly DocSeq[], envelopes: readonly WireEnvelope[]): Rejection | undefined {
    // Queued messages this node lost (unsynced appends before a restart) come back first.
    for (const received of envelopes) {
      const adopted = this.adoptEnvelope(received);
      if ('code' in adopted) return adopted;
      const { doc: found, envelope } = adopted;
      const last = lastSeqOf(found);
      if (envelope.seq <= found.appliedSeq) continue;
      if (envelope.seq <= last) {
        const mine = found.queue[envelope.seq - found.appliedSeq - 1] as WireEnvelope;
        if (!sameMessage(mine, envelope)) return protocol(`queue entry ${found.id}@${envelope.seq} differs from the successor's: histories diverged`);
        continue;
      }
      if (envelope.seq !== last + 1) return protocol(`sync gap on ${found.id}: got ${envelope.seq} after ${last}`);
      this.docs.enqueue(found, envelope);
    }
    const theirs = new Map(applied.map((d) => [d.doc, d.seq]));
    for (const [doc, seq] of theirs) {
      // A document the successor created without applying anything (seq 0) need not exist here.
      if ((this.docs.get(doc)?.appliedSeq ?? 0) < seq) return protocol(`successor is ahead on ${doc} after its catch-up`);
    }
    if (!this.commit.hasRoom()) return { code: 'busy', message: `node ${this.node} has too many actions waiting for its disk`, retryable: true };
    // State transfer carries only what is durable here: a successor that kept deltas this
    // node then lost to a power failure would hold a history the chain no longer has (the
    // simulator found exactly that). So the catch-up, the queue resend and the end of the
    // sync wait for everything written so far.
    const epoch = this.epoch;
    this.commit.after(this.commit.written, () => {
      if (this.epoch !== epoch || this.succState !== 'attaching') return;
      const catchups: DocCatchup[] = [];
      for (const doc of this.docs.values()) {
        const c = buildCatchup(doc, theirs.get(doc.id) ?? 0);
        if (c !== undefined) catchups.push(c);
      }
      this.flushPeerItems();
      for (const docs of this.catchupFrames(catchups)) this.outSucc.push(make('catchup', { chain: this.chain, epoch, docs }));
      if (!this.bugs.has('no-queue-resend')) for (const doc of this.docs.values()) for (const entry of doc.queue) this.forwardPending.push(entry);
      this.succState = 'synced';
      if (this.role === 'head') this.startLeaseRound();
      if (this.predState === 'pending') this.answerPred();
    });
    return undefined;
  }

  /** Sends the predecessor what it lacks, then Sync, once all of it is durable here. */
  private answerPred(): void {
    assert(this.predState === 'pending' && this.synced, 'Replica.answerPred: not ready to answer');
    const catchups: DocCatchup[] = [];
    const applied: DocSeq[] = [];
    const envelopes: WireEnvelope[] = [];
    for (const doc of this.docs.values()) {
      applied.push({ doc: doc.id, docType: doc.type.name, seq: doc.appliedSeq, lastSeq: lastSeqOf(doc) });
      const c = buildCatchup(doc, this.predApplied.get(doc.id) ?? 0);
      if (c !== undefined) catchups.push(c);
      // Queue entries past the predecessor's last seq: it lost them in a restart.
      const from = Math.max(this.predLast.get(doc.id) ?? 0, doc.appliedSeq);
      for (const entry of doc.queue) if (entry.seq > from) envelopes.push(entry);
    }
    this.predState = 'answering';
    const epoch = this.epoch;
    this.commit.after(this.commit.written, () => {
      if (this.epoch !== epoch || this.predState !== 'answering') return;
      this.predState = 'answered';
      this.flushPeerItems(); // frames queued before the answer go before it
      for (const docs of this.catchupFrames(catchups)) this.outPred.push(make('catchup', { chain: this.chain, epoch, docs }));
      if (this.bugs.has('unsplit-frames')) {
        this.outPred.push(make('sync', { chain: this.chain, epoch, applied, envelopes, more: false }));
        return;
      }
      const appliedParts = chunk(applied, this.limits, (d) => d.doc.length + d.docType.length + 32);
      const envelopeParts = chunk(envelopes, this.limits, envelopeBytes);
      const frames = Math.max(1, appliedParts.length + envelopeParts.length);
      for (let i = 0; i < frames; i++) {
        this.outPred.push(
          make('sync', { chain: this.chain, epoch, applied: appliedParts[i] ?? [], envelopes: i >= appliedParts.length ? (envelopeParts[i - appliedParts.length] ?? []) : [], more: i < frames - 1 }),
        );
      }
    });
  }

  /**
   * State transfer in frames under frameBytesTarget: a long log is split into several pieces of
   * one document, in seq order (the snapshot, if any, with the first), so no frame carries a
   * whole log (one of 34,000 entries did not fit in frameBytesMax, and the chain never re-formed).
   */
  private catchupFrames(catchups: readonly DocCatchup[]): DocCatchup[][] {
    if (this.bugs.has('unsplit-catchup')) return chunk(catchups, this.limits, catchupBytes);
    const pieces: DocCatchup[] = [];
    for (const c of catchups) {
      if (c.deltas.length === 0) {
        pieces.push(c);
        continue;
      }
      let first = true;
      for (const deltas of chunk(c.deltas, this.limits, deltaBytes)) {
        pieces.push(first ? { ...c, deltas } : { doc: c.doc, docType: c.docType, snapshotSeq: 0, snapshotJson: '', dedupeJson: '', deltas, entropy: c.entropy });
        first = false;
      }
    }
    return chunk(pieces, this.limits, catchupBytes);
  }

  // ---------------------------------------------------------------------------------------
  // Catching up

  /** The predecessor's Attach is complete: this node is caught up once it holds what that listed. */
  private startCatchingUp(): void {
    const missing = new Set<string>();
    for (const [doc, seq] of this.predApplied) if ((this.docs.get(doc)?.appliedSeq ?? 0) < seq) missing.add(doc);
    this.catchup = { epoch: this.epoch, target: this.predApplied, missing };
    this.checkCaughtUp();
  }

  /** A document advanced: maybe the last one this node was catching up on. */
  private noteApplied(doc: Doc): void {
    const c = this.catchup;
    if (c === undefined || !c.missing.has(doc.id)) return;
    if (doc.appliedSeq >= (c.target.get(doc.id) ?? 0)) c.missing.delete(doc.id);
    this.checkCaughtUp();
  }

  private checkCaughtUp(): void {
    const c = this.catchup;
    if (c === undefined || c.missing.size > 0 || c.epoch !== this.epoch) return;
    this.catchup = undefined;
    if (c.epoch <= this.caughtUpWritten) return;
    // Reported only once durable, with the configuration: a power loss before that would lose
    // it again (the simulator found a manager removing the last full member on an unsynced
    // report), and a restart must not forget it (the manager would never refill the chain).
    this.caughtUpWritten = c.epoch;
    this.writeConfigRecord();
    this.commit.after(this.commit.written, () => {
      this.caughtUpEpochValue = Math.max(this.caughtUpEpochValue, c.epoch);
    });
  }

  // ---------------------------------------------------------------------------------------
  // The path of a message

  /** The head's step for a new message (head.ts validated it): apply at a single node, or queue and forward. */
  sequence(doc: Doc, envelope: WireEnvelope): void {
    this.observer.sequenced?.(envelope);
    if (this.role === 'single') this.executeAsTail(doc, envelope, false);
    else this.enqueue(doc, envelope);
  }

  /** Appends a sequenced envelope to this node's queue and forwards it if synced. */
  private enqueue(doc: Doc, envelope: WireEnvelope): void {
    this.docs.enqueue(doc, envelope);
    if (this.succState === 'synced') this.forwardPending.push(envelope);
  }

  /** The tail's step: execute the next message and record its delta. */
  private executeAsTail(doc: Doc, envelope: WireEnvelope, fromQueue: boolean): void {
    assert(envelope.seq === doc.appliedSeq + 1, () => `executeAsTail: seq ${envelope.seq} is not next after ${doc.appliedSeq} on ${doc.id}`);
    const payload = parseJson(envelope.payloadJson);
    const engineEnvelope: Envelope = { doc: envelope.doc, seq: envelope.seq, timestamp: envelope.timestamp, viewer: envelope.viewer, channel: envelope.channel, payload };
    // The head checked the payload is JSON text; one that is not (a peer's damage) fails the
    // same way on every replica instead of stopping the chain.
    const execution =
      payload === undefined
        ? { redo: {}, undo: {}, outcome: { ok: false as const, code: 'invalid_payload', message: 'the payload is not JSON text' }, state: doc.state }
        : execute(doc.type, doc.state, engineEnvelope, doc.entropy, { inPlace: true });
    const delta: WireDelta = {
      doc: doc.id,
      seq: envelope.seq,
      redoJson: JSON.stringify(execution.redo),
      undoJson: JSON.stringify(execution.undo),
      outcomeJson: JSON.stringify(execution.outcome),
      clientId: envelope.clientId,
      clientSeq: envelope.clientSeq,
      timestamp: envelope.timestamp,
    };
    doc.state = execution.state;
    if (fromQueue) this.docs.shift(doc, envelope.seq, true);
    this.docs.record(doc, delta);
    this.afterApplied(doc, delta, this.commit.written, 'local');
  }

  /** After a delta is applied here: commit it (head) or pass it upstream, once `batch` is durable. */
  private afterApplied(doc: Doc, delta: WireDelta, batch: number, source: 'local' | 'succ' | 'pred'): void {
    this.noteApplied(doc);
    const role = this.role;
    if (role === 'head' || role === 'single') {
      this.commit.after(batch, () => this.head.committed(doc, delta));
      return;
    }
    if (source === 'pred' || (this.predState !== 'answered' && this.predState !== 'answering')) return; // the Attach answer covers it
    const epoch = this.epoch;
    this.commit.after(batch, () => {
      if (this.epoch === epoch && this.predState === 'answered') this.backPending.push(delta);
    });
  }

  /** A message arriving from the predecessor. */
  private acceptFromPred(envelope: WireEnvelope): Rejection | undefined {
    const bad = this.valid(checkEnvelope(envelope));
    if (bad !== undefined) return bad;
    const adopted = this.adoptEnvelope(envelope);
    if ('code' in adopted) return adopted;
    const doc = adopted.doc;
    envelope = adopted.envelope;
    // Already applied here (a resend after a re-sync): the Attach answer or the back path has it.
    if (envelope.seq <= doc.appliedSeq) return undefined;
    const last = lastSeqOf(doc);
    if (envelope.seq <= last) {
      const mine = doc.queue[envelope.seq - doc.appliedSeq - 1] as WireEnvelope;
      if (!sameMessage(mine, envelope)) return protocol(`queue entry ${doc.id}@${envelope.seq} differs from the predecessor's: histories diverged`);
      return undefined;
    }
    if (envelope.seq !== last + 1) return protocol(`sequence gap on ${doc.id}: got ${envelope.seq} after ${last}`);
    if (!this.bugs.has('unvalidated-peer-input')) {
      if (doc.queue.length >= 2 * this.limits.docQueueDepthMax || this.docs.queuedTotal >= 2 * this.limits.nodeQueueDepthMax)
        return invalid(`the predecessor sends past the queue bounds on ${doc.id}`);
    }
    if (!this.commit.hasRoom()) return { code: 'busy', message: `node ${this.node} has too many actions waiting for its disk`, retryable: true };
    if (this.role === 'tail') this.executeAsTail(doc, envelope, false);
    else this.enqueue(doc, envelope);
    return undefined;
  }

  /**
   * The document of a peer's envelope: held here (seq 1 must then name its entropy), or
   * created from the envelope of seq 1 and its entropy. The envelope comes back as this node
   * keeps it (planted bug entropy-per-replica: with the entropy it made up).
   */
  private adoptEnvelope(envelope: WireEnvelope): { doc: Doc; envelope: WireEnvelope } | Rejection {
    const creating = envelope.seq === 1 ? envelope.entropy : undefined;
    const existing = this.docs.get(envelope.doc);
    if (existing !== undefined && this.entropyDiffers(existing, creating)) return protocol(`the entropy of ${envelope.doc} in its envelope of seq 1 differs from this node's: histories diverged`);
    const found = this.docs.obtain(envelope.doc, envelope.docType, existing === undefined ? this.adopted(creating) : undefined);
    if (!isDoc(found)) return protocol(`${found.code}: ${found.message}`);
    // Planted bug entropy-per-replica only: the node keeps and passes on the entropy it made up.
    if (creating !== undefined && !sameBytes(creating, found.entropy)) return { doc: found, envelope: { ...envelope, entropy: found.entropy } };
    return { doc: found, envelope };
  }

  /** A delta coming back from the successor. */
  private applyFromSucc(delta: WireDelta): Rejection | undefined {
    const bad = this.valid(checkDelta(delta));
    if (bad !== undefined) return bad;
    const doc = this.docs.get(delta.doc);
    if (doc === undefined) return protocol(`delta for unknown document ${delta.doc}`);
    if (delta.seq <= doc.appliedSeq) return undefined; // a duplicate (answer to a resend)
    if (delta.seq !== doc.appliedSeq + 1) return protocol(`delta gap on ${doc.id}: got ${delta.seq} after ${doc.appliedSeq}`);
    const head = doc.queue[0];
    if (head !== undefined && (head.clientId !== delta.clientId || head.clientSeq !== delta.clientSeq)) {
      return protocol(`delta ${doc.id}@${delta.seq} is for another message than the queued one: histories diverged`);
    }
    const redo = this.parseRedo(delta);
    if (redo === undefined) return invalid(`the redo of ${doc.id}@${delta.seq} is not a JSON object`);
    if (!this.commit.hasRoom()) return { code: 'busy', message: `node ${this.node} has too many actions waiting for its disk`, retryable: true };
    const batch = head !== undefined ? this.docs.shift(doc, delta.seq, true) : this.commit.open;
    applyInPlace(redo, doc.state);
    this.docs.record(doc, delta);
    this.afterApplied(doc, delta, batch, 'succ');
    return undefined;
  }

  private parseRedo(delta: WireDelta): JsonObject | undefined {
    if (this.bugs.has('unvalidated-peer-input')) {
      const redo = JSON.parse(delta.redoJson) as unknown;
      assert(isObject(redo), () => `applyDelta: redo of ${delta.doc}@${delta.seq} is not an object`);
      return redo;
    }
    const redo = parseJson(delta.redoJson);
    return isObject(redo) ? redo : undefined;
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
    const checked = checkCatchup(dc);
    if ('problem' in checked && !this.bugs.has('unvalidated-peer-input')) return invalid(checked.problem);
    const existing = this.docs.get(dc.doc);
    if (existing !== undefined && this.entropyDiffers(existing, dc.entropy)) return protocol(`the entropy of ${dc.doc} in a catch-up differs from this node's: histories diverged`);
    const found = this.docs.obtain(dc.doc, dc.docType, existing === undefined ? this.adopted(dc.entropy) : undefined);
    if (!isDoc(found)) return protocol(`${found.code}: ${found.message}`);
    const doc = found;
    if (!this.commit.hasRoom(dc.deltas.length + 1)) return { code: 'busy', message: `node ${this.node} has too many actions waiting for its disk`, retryable: true };
    if (dc.snapshotSeq > doc.appliedSeq) {
      const state = 'state' in checked ? checked.state : (JSON.parse(dc.snapshotJson) as JsonObject);
      const dedupe = 'dedupe' in checked ? checked.dedupe : new Map<string, DedupeEntry[]>(JSON.parse(dc.dedupeJson) as [string, DedupeEntry[]][]);
      assert(state !== undefined && dedupe !== undefined, 'applyCatchup: a snapshot without its state');
      this.docs.replace(doc, dc.snapshotSeq, state, dc.snapshotJson, dedupe);
      this.noteApplied(doc);
      if (this.role === 'head' || this.role === 'single') {
        const seq = dc.snapshotSeq;
        this.commit.after(this.commit.written, () => this.head.resetTo(doc, seq));
      }
    }
    for (const delta of dc.deltas) {
      if (delta.seq <= doc.appliedSeq) continue;
      if (delta.seq !== doc.appliedSeq + 1) return protocol(`catch-up gap on ${doc.id}: got ${delta.seq} after ${doc.appliedSeq}`);
      const head = doc.queue[0];
      if (head !== undefined && (head.clientId !== delta.clientId || head.clientSeq !== delta.clientSeq)) return protocol(`catch-up delta ${doc.id}@${delta.seq} diverges from the queue`);
      const redo = this.parseRedo(delta);
      if (redo === undefined) return invalid(`the redo of ${doc.id}@${delta.seq} is not a JSON object`);
      const batch = head !== undefined ? this.docs.shift(doc, delta.seq, true) : this.commit.open;
      applyInPlace(redo, doc.state);
      this.docs.record(doc, delta);
      this.afterApplied(doc, delta, batch, from);
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Head client API (head.ts)

  submit(to: ClientRef, s: Submit, now: number): void {
    this.now = Math.max(this.now, now);
    this.head.submit(to, s, this.now);
  }

  subscribe(to: ClientRef, s: Subscribe, now: number): void {
    this.now = Math.max(this.now, now);
    this.head.subscribe(to, s, this.now);
  }

  unsubscribe(to: ClientRef, requestId: number, docId: string): void {
    this.head.unsubscribe(to, requestId, docId);
  }

  /** A client connection closed: forget its subscriptions and waiters. */
  clientGone(to: ClientRef): void {
    this.head.clientGone(to);
  }
}

// -----------------------------------------------------------------------------------------

export function roleOf(members: readonly Member[], node: string): Role {
  const index = members.findIndex((m) => m.node === node);
  if (index < 0) return 'none';
  if (members.length === 1) return 'single';
  if (index === 0) return 'head';
  return index === members.length - 1 ? 'tail' : 'middle';
}

/** What a peer at `theirSeq` needs to reach this node's applied seq, or undefined. */
function buildCatchup(doc: Doc, theirSeq: number): DocCatchup | undefined {
  if (theirSeq >= doc.appliedSeq) return undefined;
  const base = { doc: doc.id, docType: doc.type.name, entropy: doc.entropy };
  if (theirSeq + 1 >= doc.logFrom) return { ...base, snapshotSeq: 0, snapshotJson: '', dedupeJson: '', deltas: doc.log.slice(theirSeq + 1 - doc.logFrom) };
  return { ...base, snapshotSeq: doc.appliedSeq, snapshotJson: JSON.stringify(doc.state), dedupeJson: doc.dedupe.toJson(), deltas: [] };
}

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

export function isDoc(value: Doc | { code: string; message: string }): value is Doc {
  return 'state' in value;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function envelopeBytes(e: WireEnvelope): number {
  return e.doc.length + e.docType.length + e.viewer.length + e.channel.length + e.payloadJson.length + e.clientId.length + 48;
}

function deltaBytes(d: WireDelta): number {
  return d.doc.length + d.redoJson.length + d.undoJson.length + d.outcomeJson.length + d.clientId.length + 48;
}

function catchupBytes(c: DocCatchup): number {
  let bytes = c.doc.length + c.docType.length + c.snapshotJson.length + c.dedupeJson.length + c.entropy.length + 32;
  for (const d of c.deltas) bytes += deltaBytes(d);
  return bytes;
}

/** Splits items into frames of at most frameItemsMax items and about frameBytesTarget bytes. */
export function chunk<T>(items: readonly T[], limits: Pick<ReplicaLimits, 'frameItemsMax' | 'frameBytesTarget'>, bytesOf: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item) + 16;
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
