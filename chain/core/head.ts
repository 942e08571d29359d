// The head's services to clients: submit validation, waiters for commits, answers from the
// dedupe table, subscriptions, and the speculative and confirmed views. The replica
// (replica.ts) owns the protocol and the documents; this owns everything that exists only for
// clients: its own persistent copies of confirmed states (so the log changes states in
// place), per-viewer audiences, and who waits for what.
//
// - A confirmed view (a full view's confirmed part, a confirmed patch) shows only committed
//   state: durable on every replica. A view that starts while deltas are still on their way
//   to durability shows them as speculative: its confirmed state is the applied state with
//   the undo of those deltas applied.
// - Subscriptions are counted one by one (a viewer may watch through several connections and
//   tabs); an unsubscribe names the subscription (its requestId on its connection).
// - A document exists once its first message is accepted; a subscription to a document that
//   does not exist yet watches its initial state and creates nothing. Creating it makes its
//   entropy (fresh random bytes, replica.ts); its envelope of seq 1 carries them down the
//   chain. Views and speculation execute with the document's entropy and never show it.
// - Without a lease (replica.ts) the head fails its waiters and ends its subscriptions with
//   retryable errors; clients resend (the dedupe table makes that safe) and resubscribe.

import { assert } from '../../engine/assert.ts';
import type { DocumentType } from '../../engine/document.ts';
import { findDocumentType } from '../../engine/documents/index.ts';
import { LimitError } from '../../engine/errors.ts';
import type { Envelope, Outcome } from '../../engine/execute.ts';
import { cloneJson, deepFreeze, utf8Length, type Json, type JsonObject } from '../../engine/json.ts';
import { applyInPlace } from '../../engine/patch.ts';
import { Speculation } from '../../engine/speculation.ts';
import { Audience } from '../../engine/view.ts';
import { idPattern } from './config.ts';
import { clientKey, lastSeqOf, type Doc } from './documents.ts';
import { make, type Submit, type Subscribe, type ViewKind, type ViewUpdate, type WireDelta, type WireEnvelope } from './frames.ts';
import type { ClientRef, Replica } from './replica.ts';
import { parseObject } from './store.ts';
import { parseJson } from './validate.ts';

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
  readonly type: DocumentType;
  readonly speculation: Speculation;
  readonly confirmed: Audience;
  readonly speculative: Audience;
  /** `${to}:${requestId}` -> subscription. */
  readonly subs: Map<string, Subscription>;
  /** Subscriptions per viewer: a viewer leaves the audiences with its last one. */
  readonly viewers: Map<string, number>;
}

const subKey = (to: ClientRef, requestId: number): string => `${to}:${requestId}`;

export class Head {
  private readonly views = new Map<string, HeadView>();
  /** docId -> seq -> requests waiting for that seq's commit. */
  private readonly waiters = new Map<string, Map<number, Waiter[]>>();
  subscriptionCount = 0;
  waiterCount = 0;

  constructor(private readonly r: Replica) {}

  /** Subscriptions, per document, for checks and status. */
  subscriptions(): Map<string, { to: ClientRef; requestId: number; viewer: string }[]> {
    const out = new Map<string, { to: ClientRef; requestId: number; viewer: string }[]>();
    for (const [doc, view] of this.views) out.set(doc, [...view.subs.values()]);
    return out;
  }

  /** The confirmed and speculative states a document's views are computed from (undefined without subscribers). */
  viewStates(docId: string): { confirmed: JsonObject; confirmedSeq: number; speculative: JsonObject } | undefined {
    const view = this.views.get(docId);
    if (view === undefined) return undefined;
    return { confirmed: view.speculation.confirmed, confirmedSeq: view.speculation.confirmedSeq, speculative: view.speculation.speculative };
  }

  // ---------------------------------------------------------------------------------------
  // Submissions

  submit(to: ClientRef, s: Submit, now: number): void {
    const r = this.r;
    const limits = r.limits;
    const role = r.role;
    if (role !== 'head' && role !== 'single') {
      return r.clientFailure(to, s.requestId, 'not_head', `node ${r.node} is not the head of chain ${r.chain} (epoch ${r.epoch}); send to ${r.members[0]?.node ?? 'the head'}`, true, r.headAddress);
    }
    const why = r.notServing(now);
    if (why !== undefined) return r.clientFailure(to, s.requestId, 'unavailable', `${why}; retry shortly`, true);
    if (s.chain !== r.chain) return r.clientFailure(to, s.requestId, 'wrong_chain', `this replica serves chain ${r.chain}, not ${s.chain}`);
    if (!idPattern.test(s.clientId)) return r.clientFailure(to, s.requestId, 'invalid_client', `client ids match ${idPattern}`);
    if (!Number.isSafeInteger(s.clientSeq) || s.clientSeq < 1) return r.clientFailure(to, s.requestId, 'invalid_client', 'clientSeq must be a positive integer');
    if (s.viewer.length === 0 || s.viewer.length > 128) return r.clientFailure(to, s.requestId, 'invalid_viewer', 'a viewer id is 1 to 128 characters');
    const existing = r.docs.get(s.doc);
    let type: DocumentType;
    if (existing !== undefined) {
      type = existing.type;
      if (s.docType !== type.name) return r.clientFailure(to, s.requestId, 'wrong_doc_type', `document ${s.doc} is a ${type.name}, not a ${s.docType}`);
      // Exactly once: a (clientId, clientSeq) seen before is answered, not applied again.
      const seen = r.bugs.has('no-dedupe') ? undefined : existing.dedupe.find(s.clientId, s.clientSeq);
      if (seen !== undefined) {
        if (!r.commit.hasRoom()) return r.clientFailure(to, s.requestId, 'busy', `node ${r.node} has too many answers waiting for its disk; retry shortly`, true);
        // The entry may come from a write that is not durable yet (its own ack is waiting for it).
        const ack = make('ack', { requestId: s.requestId, seq: seen[1], outcomeJson: seen[2], duplicate: true });
        r.commit.after(r.commit.written, () => r.toClient(to, ack));
        return;
      }
      if (existing.dedupe.tooOld(s.clientId, s.clientSeq, limits)) {
        return r.clientFailure(
          to,
          s.requestId,
          'client_seq_too_old',
          `clientSeq ${s.clientSeq} is older than the last ${limits.dedupeWindowMax} this document remembers for ${s.clientId}: whether it was applied is unknown`,
        );
      }
      const queuedSeq = r.bugs.has('no-dedupe') ? undefined : existing.queued.get(clientKey(s.clientId, s.clientSeq));
      if (queuedSeq !== undefined) {
        const list = this.waiters.get(existing.id)?.get(queuedSeq) ?? [];
        if (list.length >= limits.waitersPerMessageMax)
          return r.clientFailure(to, s.requestId, 'busy', `${list.length} requests already wait for this message (waitersPerMessageMax); wait for their answer`, true);
        this.wait(existing.id, queuedSeq, { to, requestId: s.requestId, duplicate: true });
        return;
      }
      if (existing.queue.length >= limits.docQueueDepthMax) {
        return r.clientFailure(to, s.requestId, 'busy', `document ${existing.id} has ${existing.queue.length} messages in flight (docQueueDepthMax); retry after a short delay`, true);
      }
      if (!existing.dedupe.has(s.clientId) && !existing.dedupe.admits(newClients(existing, s.clientId), now, limits, r.bugs)) {
        return r.clientFailure(
          to,
          s.requestId,
          'busy',
          `document ${existing.id} remembers ${existing.dedupe.size} recent clients (dedupeClientsMax ${limits.dedupeClientsMax}); new clients wait until one has been idle for ${limits.dedupeIdleMsMin} ms`,
          true,
        );
      }
    } else {
      if (!idPattern.test(s.doc)) return r.clientFailure(to, s.requestId, 'invalid_doc', `document ids match ${idPattern}`);
      const found = findDocumentType(s.docType);
      if (found === undefined) return r.clientFailure(to, s.requestId, 'unknown_doc_type', `no document type ${JSON.stringify(s.docType)}`);
      type = found;
      if (r.docs.size >= limits.documentsMax) return r.clientFailure(to, s.requestId, 'too_many_documents', `documentsMax (${limits.documentsMax}) reached on chain ${r.chain}`);
    }
    if (r.docs.queuedTotal >= limits.nodeQueueDepthMax) {
      return r.clientFailure(to, s.requestId, 'busy', `chain ${r.chain} has ${r.docs.queuedTotal} messages in flight on this node (nodeQueueDepthMax); retry after a short delay`, true);
    }
    if (type.findChannel(s.channel) === undefined) return r.clientFailure(to, s.requestId, 'unknown_channel', `document type ${type.name} has no channel ${JSON.stringify(s.channel)}`);
    if (utf8Length(s.payloadJson) > type.limits.payloadBytesMax) return r.clientFailure(to, s.requestId, 'payload_too_large', `payload is over ${type.limits.payloadBytesMax} bytes`);
    try {
      JSON.parse(s.payloadJson);
    } catch {
      return r.clientFailure(to, s.requestId, 'invalid_payload', 'payload is not JSON text');
    }
    if (!r.commit.hasRoom(2)) return r.clientFailure(to, s.requestId, 'busy', `node ${r.node} has too many actions waiting for its disk; retry shortly`, true);

    // Accepted: the document exists from now on, with a secret entropy of its own.
    const obtained = existing ?? r.docs.obtain(s.doc, s.docType, r.newEntropy());
    assert('state' in obtained, 'submit: the document could not be created after the checks');
    const doc = obtained as Doc;
    const view = this.views.get(doc.id);
    if (view !== undefined && view.type !== doc.type) this.endView(doc.id, 'wrong_doc_type', `document ${doc.id} is a ${doc.type.name}`, false);
    const envelope: WireEnvelope = {
      doc: doc.id,
      docType: doc.type.name,
      seq: lastSeqOf(doc) + 1,
      timestamp: Math.floor(now),
      viewer: s.viewer,
      channel: s.channel,
      payloadJson: s.payloadJson,
      clientId: s.clientId,
      clientSeq: s.clientSeq,
    };
    // The envelope that creates the document on the other replicas carries its entropy.
    if (envelope.seq === 1) envelope.entropy = doc.entropy;
    this.wait(doc.id, envelope.seq, { to, requestId: s.requestId, duplicate: false });
    this.speculate(doc, envelope);
    r.sequence(doc, envelope);
  }

  private wait(docId: string, seq: number, waiter: Waiter): void {
    let bySeq = this.waiters.get(docId);
    if (bySeq === undefined) this.waiters.set(docId, (bySeq = new Map()));
    const list = bySeq.get(seq);
    if (list === undefined) bySeq.set(seq, [waiter]);
    else list.push(waiter);
    this.waiterCount++;
  }

  private speculate(doc: Doc, envelope: WireEnvelope): void {
    const view = this.views.get(doc.id);
    if (view === undefined) return;
    view.speculation.push(engineEnvelope(envelope));
    this.publish(doc.id, view, view.speculative.advance(view.speculation.speculative), 'speculative', envelope.seq);
  }

  /** At the head: `delta` is durable on every replica. */
  committed(doc: Doc, delta: WireDelta): void {
    const r = this.r;
    if (r.role !== 'head' && r.role !== 'single') return;
    if (delta.seq > doc.committedSeq) doc.committedSeq = delta.seq;
    const bySeq = this.waiters.get(doc.id);
    const list = bySeq?.get(delta.seq);
    if (bySeq !== undefined && list !== undefined) {
      bySeq.delete(delta.seq);
      if (bySeq.size === 0) this.waiters.delete(doc.id);
      this.waiterCount -= list.length;
      for (const w of list) r.toClient(w.to, make('ack', { requestId: w.requestId, seq: delta.seq, outcomeJson: delta.outcomeJson, duplicate: w.duplicate }));
    }
    const view = this.views.get(doc.id);
    if (view === undefined || delta.seq <= view.speculation.confirmedSeq) return;
    const redo = parseObject(delta.redoJson) as JsonObject;
    const outcome = JSON.parse(delta.outcomeJson) as Outcome;
    const transition = view.speculation.confirm(delta.seq, { redo, outcome });
    const confirmed = view.confirmed.advance(view.speculation.confirmed);
    const speculative = view.speculative.advance(view.speculation.speculative);
    if (speculative.size > 0 || !r.bugs.has('skip-confirmed-view')) this.publish(doc.id, view, confirmed, 'confirmed', delta.seq);
    const kind: ViewKind = transition.dropped.length > 0 || transition.rebased ? 'rollback' : 'speculative';
    this.publish(doc.id, view, speculative, kind, lastSeqOf(doc));
  }

  /**
   * A state transfer replaced a document at the head up to `seq` (durable now): requests
   * waiting for seqs it covers cannot learn their outcome here (they resend and the dedupe
   * table answers), and every subscriber gets a full view of the new state.
   */
  resetTo(doc: Doc, seq: number): void {
    if (seq > doc.committedSeq) doc.committedSeq = seq;
    const bySeq = this.waiters.get(doc.id);
    if (bySeq !== undefined) {
      for (const [s, list] of bySeq) {
        if (s > seq) continue;
        for (const w of list) this.r.clientFailure(w.to, w.requestId, 'unavailable', 'the chain re-formed; resend the message', true);
        this.waiterCount -= list.length;
        bySeq.delete(s);
      }
      if (bySeq.size === 0) this.waiters.delete(doc.id);
    }
    const old = this.views.get(doc.id);
    if (old === undefined) return;
    this.views.delete(doc.id);
    this.subscriptionCount -= old.subs.size; // each joins the new view again, or fails
    const view = this.createView(doc.id, doc.type, doc);
    if (view === undefined) {
      for (const sub of old.subs.values()) this.r.clientFailure(sub.to, sub.requestId, 'unavailable', 'the chain re-formed; subscribe again', true);
      return;
    }
    this.views.set(doc.id, view);
    for (const sub of old.subs.values()) this.join(doc.id, view, sub);
  }

  // ---------------------------------------------------------------------------------------
  // Subscriptions

  subscribe(to: ClientRef, s: Subscribe, now: number): void {
    const r = this.r;
    const role = r.role;
    if (role !== 'head' && role !== 'single') return r.clientFailure(to, s.requestId, 'not_head', `node ${r.node} is not the head of chain ${r.chain}`, true, r.headAddress);
    const why = r.notServing(now);
    if (why !== undefined) return r.clientFailure(to, s.requestId, 'unavailable', `${why}; retry shortly`, true);
    if (s.chain !== r.chain) return r.clientFailure(to, s.requestId, 'wrong_chain', `this replica serves chain ${r.chain}, not ${s.chain}`);
    if (s.viewer.length === 0 || s.viewer.length > 128) return r.clientFailure(to, s.requestId, 'invalid_viewer', 'a viewer id is 1 to 128 characters');
    if (!idPattern.test(s.doc)) return r.clientFailure(to, s.requestId, 'invalid_doc', `document ids match ${idPattern}`);
    const type = findDocumentType(s.docType);
    if (type === undefined) return r.clientFailure(to, s.requestId, 'unknown_doc_type', `no document type ${JSON.stringify(s.docType)}`);
    const doc = r.docs.get(s.doc);
    if (doc !== undefined && doc.type !== type) return r.clientFailure(to, s.requestId, 'wrong_doc_type', `document ${s.doc} is a ${doc.type.name}, not a ${s.docType}`);
    const key = subKey(to, s.requestId);
    let view = this.views.get(s.doc);
    if (view?.subs.has(key) === true) return r.clientFailure(to, s.requestId, 'duplicate_request', `request ${s.requestId} already subscribed on this connection`);
    if (view !== undefined && view.type !== type) return r.clientFailure(to, s.requestId, 'wrong_doc_type', `document ${s.doc} is watched as a ${view.type.name}`);
    if (this.subscriptionCount >= r.limits.nodeSubscriptionsMax)
      return r.clientFailure(to, s.requestId, 'too_many_subscriptions', `nodeSubscriptionsMax (${r.limits.nodeSubscriptionsMax}) reached on ${r.node}`, true);
    if (view === undefined) {
      view = this.createView(s.doc, type, doc);
      if (view === undefined) return r.clientFailure(to, s.requestId, 'unavailable', `document ${s.doc} is catching up; retry shortly`, true);
      this.views.set(s.doc, view);
    }
    if (view.subs.size >= r.limits.subscriptionsMax) return r.clientFailure(to, s.requestId, 'too_many_subscriptions', `subscriptionsMax (${r.limits.subscriptionsMax}) reached on ${s.doc}`, true);
    this.join(s.doc, view, { to, requestId: s.requestId, viewer: s.viewer }, s);
  }

  /** Adds a subscription to a view and sends its full view (or a typed refusal). */
  private join(docId: string, view: HeadView, sub: Subscription, s?: Subscribe): void {
    let speculative: JsonObject;
    let confirmed: JsonObject;
    try {
      speculative = view.speculative.join(sub.viewer);
      confirmed = view.confirmed.join(sub.viewer);
    } catch (error) {
      if (!(error instanceof LimitError)) throw error;
      view.speculative.leave(sub.viewer);
      if ((view.viewers.get(sub.viewer) ?? 0) === 0 && view.subs.size === 0) this.views.delete(docId);
      this.r.clientFailure(sub.to, sub.requestId, 'too_many_viewers', error.message, true);
      return;
    }
    view.subs.set(subKey(sub.to, sub.requestId), sub);
    view.viewers.set(sub.viewer, (view.viewers.get(sub.viewer) ?? 0) + 1);
    this.subscriptionCount++;
    const update = this.sendView(docId, view, sub, 'full', view.speculation.confirmedSeq, JSON.stringify(speculative), JSON.stringify(confirmed));
    if (s !== undefined) this.r.observer.subscribed?.(s, update);
  }

  unsubscribe(to: ClientRef, requestId: number, docId: string): void {
    const view = this.views.get(docId);
    if (view === undefined) return;
    const sub = view.subs.get(subKey(to, requestId));
    if (sub === undefined) return;
    if (this.r.bugs.has('unsubscribe-by-viewer')) this.removeSubs(docId, view, (x) => x.to === to && x.viewer === sub.viewer);
    else this.removeSubs(docId, view, (x) => x === sub);
  }

  /** A client connection closed: forget its subscriptions and waiters. */
  clientGone(to: ClientRef): void {
    for (const [docId, bySeq] of this.waiters) {
      for (const [seq, list] of bySeq) {
        const rest = list.filter((w) => w.to !== to);
        this.waiterCount -= list.length - rest.length;
        if (rest.length === 0) bySeq.delete(seq);
        else if (rest.length !== list.length) bySeq.set(seq, rest);
      }
      if (bySeq.size === 0) this.waiters.delete(docId);
    }
    for (const [docId, view] of [...this.views]) this.removeSubs(docId, view, (sub) => sub.to === to);
  }

  private removeSubs(docId: string, view: HeadView, match: (sub: Subscription) => boolean): void {
    for (const [key, sub] of view.subs) {
      if (!match(sub)) continue;
      view.subs.delete(key);
      this.subscriptionCount--;
      const left = (view.viewers.get(sub.viewer) ?? 1) - 1;
      if (left > 0) {
        view.viewers.set(sub.viewer, left);
        continue;
      }
      view.viewers.delete(sub.viewer);
      view.confirmed.leave(sub.viewer);
      view.speculative.leave(sub.viewer);
    }
    if (view.subs.size === 0) this.views.delete(docId);
  }

  /** Ends every subscription of a document's view with a failure. */
  private endView(docId: string, code: string, message: string, retryable: boolean): void {
    const view = this.views.get(docId);
    if (view === undefined) return;
    for (const sub of view.subs.values()) this.r.clientFailure(sub.to, sub.requestId, code, message, retryable);
    this.subscriptionCount -= view.subs.size;
    this.views.delete(docId);
  }

  /**
   * A view of a document from its committed state: the applied state with the undo of what is
   * applied but not committed yet, those deltas and the queue then speculated on top. Undefined
   * when the log no longer holds the undo it needs (the caller retries).
   */
  private createView(docId: string, type: DocumentType, doc: Doc | undefined): HeadView | undefined {
    const r = this.r;
    const bound = 2 * r.limits.docQueueDepthMax + 2;
    // Read when a message runs: a view of a document that does not exist yet has no entropy
    // until its first message creates the document (submit, before it speculates).
    const entropy = (): Uint8Array => {
      const current = r.docs.get(docId);
      assert(current !== undefined, () => `Head: speculating on ${docId}, which does not exist`);
      return current.entropy;
    };
    let speculation: Speculation;
    if (doc === undefined) {
      speculation = new Speculation(type, deepFreeze(type.createState()), 0, entropy, bound);
    } else {
      const from = r.bugs.has('undurable-reads') ? doc.appliedSeq : Math.min(doc.committedSeq, doc.appliedSeq);
      if (from < doc.appliedSeq && from + 1 < doc.logFrom) return undefined;
      const base = cloneJson(doc.state);
      for (let seq = doc.appliedSeq; seq > from; seq--) applyInPlace(parseObject((doc.log[seq - doc.logFrom] as WireDelta).undoJson) as JsonObject, base);
      speculation = new Speculation(type, deepFreeze(base), from, entropy, bound);
      for (let seq = from + 1; seq <= doc.appliedSeq; seq++) {
        const d = doc.log[seq - doc.logFrom] as WireDelta;
        speculation.pushApplied(seq, { redo: parseObject(d.redoJson) as JsonObject, undo: parseObject(d.undoJson) as JsonObject, outcome: JSON.parse(d.outcomeJson) as Outcome });
      }
      for (const entry of doc.queue) speculation.push(engineEnvelope(entry));
    }
    return {
      type,
      speculation,
      confirmed: new Audience(type, speculation.confirmed, r.limits.viewersMax),
      speculative: new Audience(type, speculation.speculative, r.limits.viewersMax),
      subs: new Map(),
      viewers: new Map(),
    };
  }

  private publish(docId: string, view: HeadView, deltas: Map<string, Json>, kind: ViewKind, seq: number): void {
    if (deltas.size === 0) return;
    const texts = new Map<string, string>();
    for (const sub of view.subs.values()) {
      const delta = deltas.get(sub.viewer);
      if (delta === undefined) continue;
      let json = texts.get(sub.viewer);
      if (kind === 'speculative' && this.r.bugs.has('unfiltered-speculation')) json = JSON.stringify({ ...view.speculation.speculative, ...(delta as JsonObject) });
      if (json === undefined) texts.set(sub.viewer, (json = JSON.stringify(delta)));
      this.sendView(docId, view, sub, kind, seq, json, '');
    }
  }

  private sendView(docId: string, view: HeadView, sub: Subscription, kind: ViewKind, seq: number, json: string, confirmedJson: string): ViewUpdate {
    const update: ViewUpdate = { requestId: sub.requestId, doc: docId, viewer: sub.viewer, kind, seq, json, confirmedJson };
    this.r.observer.viewFrame?.(update, view.type.name, { speculative: view.speculation.speculative, confirmed: view.speculation.confirmed });
    this.r.toClient(sub.to, make('viewUpdate', update));
    return update;
  }

  // ---------------------------------------------------------------------------------------
  // Losing the role or the lease

  /** Fails every waiter and ends every subscription (the node stopped being head, or lost its lease). */
  leave(code: string, message: string): void {
    const hint = this.r.headAddress;
    for (const bySeq of this.waiters.values()) {
      for (const list of bySeq.values()) for (const w of list) this.r.clientFailure(w.to, w.requestId, code === 'not_head' ? 'not_head' : 'unavailable', message, true, hint);
    }
    this.waiters.clear();
    this.waiterCount = 0;
    for (const view of this.views.values()) {
      for (const sub of view.subs.values()) this.r.clientFailure(sub.to, sub.requestId, code, message, true, hint);
    }
    this.views.clear();
    this.subscriptionCount = 0;
  }

  tick(now: number): void {
    if (this.waiterCount === 0 && this.subscriptionCount === 0) return;
    const r = this.r;
    if ((r.role === 'head' || r.role === 'single') && !r.leaseHolds(now) && !r.bugs.has('zombie-head')) {
      this.leave('lease_expired', `node ${r.node} lost its lease on chain ${r.chain} (its successors did not answer within ${r.limits.leaseMs} ms); resend and subscribe again`);
    }
  }
}

/** Distinct clients a new one would make, with the queued messages of clients not yet remembered. */
function newClients(doc: Doc, clientId: string): number {
  if (doc.queue.length === 0) return 1;
  const fresh = new Set<string>([clientId]);
  for (const e of doc.queue) if (e.clientId !== '' && !doc.dedupe.has(e.clientId)) fresh.add(e.clientId);
  return fresh.size;
}

function engineEnvelope(envelope: WireEnvelope): Envelope {
  return {
    doc: envelope.doc,
    seq: envelope.seq,
    timestamp: envelope.timestamp,
    viewer: envelope.viewer,
    channel: envelope.channel,
    // The head checked its own messages; a queue inherited from a predecessor is a peer's.
    payload: parseJson(envelope.payloadJson),
  };
}
