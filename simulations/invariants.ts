// The design brief's invariants, checked against a simulated world.
//
//   every event       3. Update Propagation: a synced successor's history is a prefix of its
//                        predecessor's; no replica runs an epoch older than one it acknowledged
//                     lease: a head without a lease holds no waiter and no subscription once it
//                        has run for a tick (a removed head stops serving within its lease)
//   every frame       5. privacy: no frame a browser tab receives, speculative ones included,
//                        holds a value its viewer may not see (engine/documents/secrets.ts),
//                        nor its document's entropy (hex or base64)
//                     8. durable reads: a confirmed view (full or patch) shows only a seq durable
//                        on every caught-up live member; linearizable reads: a full view shows at
//                        least every seq acknowledged before its subscribe was sent
//   at the end        agreement on entropy: every replica holds each document with an entropy
//                        a head made for it (the one its envelope of seq 1 carried)
//                     1. no acknowledged message is lost
//                     2. exactly once (and a message refused for good is never applied)
//                     4. determinism: every logged delta is the execution of a message the head
//                        sequenced, and the state is the replay of the log
//   at quiescence     3. replica agreement: identical entropy, state, appliedSeq and log
//                     subscriptions: the heads hold exactly one subscription per open tab
//                     6. convergence: each open tab's speculative = confirmed = view(final state)
//   after healing     7. liveness: everything settles within a bounded time; no message sent
//                        with a long resend window ends without an answer
//   any time          validation: no corrupted peer frame makes a node exit (it is refused)
//                     configurations: for each chain, the configurations nodes accept form one
//                        sequence of epochs (no two accepted ones share an epoch with different
//                        members), and each is one the configuration store held

import { canonicalize, canonicalJson, type Json, type JsonObject } from '../engine/json.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { findLeaks } from '../engine/documents/secrets.ts';
import { execute, type Envelope } from '../engine/execute.ts';
import { view } from '../engine/view.ts';
import type { ViewUpdate, WireDelta, WireEnvelope } from '../chain/core/frames.ts';
import type { Replica, ReplicaObserver } from '../chain/core/replica.ts';
import { encodeStoredConfig } from '../chain/control/config-store.ts';
import type { ClientRecord, Tab } from './clients.ts';
import { ViolationError } from './events.ts';
import type { NodeProcess } from './processes.ts';
import type { Observer, World } from './world.ts';

/** What pendingWork says when only the subscriptions have not settled (then that invariant is the one broken). */
export const subscriptionsPending = 'subscriptions: ';

export const invariantNames = [
  'no-acked-lost',
  'exactly-once',
  'agreement',
  'determinism',
  'privacy',
  'convergence',
  'liveness',
  'durable-reads',
  'linearizable-reads',
  'lease',
  'subscriptions',
  'validation',
  'configurations',
] as const;
export type InvariantName = (typeof invariantNames)[number] | 'assertion';

const identity = (doc: string, seq: number, clientId: string, clientSeq: number): string => `${doc}\n${seq}\n${clientId}\n${clientSeq}`;
const frameKey = (u: ViewUpdate): string => `${u.doc}\n${u.viewer}\n${u.kind}\n${u.seq}\n${u.json}\n${u.confirmedJson}`;

interface Watch {
  readonly key: string;
  /** Since when it holds waiters or subscriptions without a lease (-1: it does not). */
  leaselessSince: number;
  /** Update Propagation: the successor and the versions this pair was last checked at. */
  succ: Replica | undefined;
  predVersion: number;
  succVersion: number;
  /** The epoch whose configuration was last checked against the store. */
  epochSeen: number;
}

interface Basis {
  readonly node: string;
  readonly docType: string;
  readonly speculative: JsonObject;
  readonly confirmed: JsonObject;
}

export class Checker implements Observer {
  /** The first configuration seen run per (chain, epoch). */
  private readonly acceptedConfigs = new Map<string, { node: string; encoded: string; names: string }>();
  /** Every envelope a head sequenced, by (doc, seq, clientId, clientSeq). A seq can be sequenced again after a head fails. */
  private readonly sequencedAs = new Map<string, WireEnvelope[]>();
  /** Per document: the entropies heads created it with (hex; more than one when a head failed before its seq 1 reached anyone). */
  private readonly entropies = new Map<string, Set<string>>();
  /** The same, as the texts a leak would show them in (hex and base64). */
  private readonly entropyTexts = new Map<string, string[]>();
  /** What each view frame was computed from, by its content. */
  private readonly bases = new Map<string, Basis>();
  /** Per document: acknowledgements in time order, with the highest seq so far. */
  private readonly acks = new Map<string, { times: number[]; highest: number[] }>();
  /** Per (node, chain): the highest epoch it acknowledged (durable, so it survives restarts). */
  readonly ackedEpochs = new Map<string, number>();
  /** Per replica: what the every-event checks remember. */
  private readonly watches = new WeakMap<Replica, Watch>();
  readonly openTabs = new Set<Tab>();
  viewFramesChecked = 0;

  constructor(private readonly world: () => World) {}

  replicaObserver(node: string, chain: string): ReplicaObserver {
    return {
      sequenced: (envelope) => this.sequenced(envelope),
      viewFrame: (update, docType, basis) => this.viewFrame(node, chain, update, docType, basis),
      subscribed: (subscribe, full) => {
        const started = this.world().net.sentAt.get(subscribe);
        if (started === undefined) return;
        const before = this.highestAckBefore(full.doc, started);
        if (full.seq < before) {
          throw new ViolationError(
            'linearizable-reads',
            `${node} answered a subscription to ${full.doc} sent at ${started.toFixed(1)}ms with a full view at seq ${full.seq}, but seq ${before} was acknowledged before that`,
          );
        }
      },
    };
  }

  private sequenced(envelope: WireEnvelope): void {
    if (envelope.seq === 1 && envelope.entropy !== undefined) {
      const bytes = Buffer.from(envelope.entropy);
      const hex = bytes.toString('hex');
      let set = this.entropies.get(envelope.doc);
      if (set === undefined) this.entropies.set(envelope.doc, (set = new Set()));
      if (!set.has(hex)) {
        set.add(hex);
        const texts = this.entropyTexts.get(envelope.doc) ?? [];
        texts.push(hex, hex.toUpperCase(), bytes.toString('base64').replace(/=+$/, ''), bytes.toString('base64url'));
        this.entropyTexts.set(envelope.doc, texts);
      }
    }
    const key = identity(envelope.doc, envelope.seq, envelope.clientId, envelope.clientSeq);
    const list = this.sequencedAs.get(key);
    const copy = { ...envelope };
    if (list === undefined) this.sequencedAs.set(key, [copy]);
    else if (!list.some((e) => e.timestamp === copy.timestamp && e.payloadJson === copy.payloadJson)) list.push(copy);
  }

  /** At the head, as it emits a view frame: remember its basis; a confirmed view must be durable everywhere. */
  private viewFrame(node: string, chain: string, update: ViewUpdate, docType: string, basis: { readonly speculative: JsonObject; readonly confirmed: JsonObject }): void {
    this.bases.set(frameKey(update), { node, docType, speculative: basis.speculative, confirmed: basis.confirmed });
    if (update.kind !== 'confirmed' && update.kind !== 'full') return;
    if (update.seq === 0) return;
    const world = this.world();
    const replica = world.node(node)?.driver?.replica(chain);
    if (replica === undefined) return;
    for (const m of replica.members) {
      const member = world.node(m.node);
      if (member === undefined || !member.alive || member.hung) continue;
      const r = member.driver?.replica(chain);
      if (r === undefined) continue;
      // By the newer of its own configuration and the head's: a member that rejoined since (or
      // is rejoining in the head's) is a joiner catching up, and forgot what it held.
      const since = r.epoch > replica.epoch ? r.members.find((x) => x.node === m.node)?.sinceEpoch : m.sinceEpoch;
      if (since === undefined || (since > 1 && r.caughtUpEpoch < since)) continue;
      const durable = member.disk.durableSeq(chain, update.doc);
      if (durable < update.seq) {
        throw new ViolationError(
          'durable-reads',
          `${node} sent ${update.viewer} a ${update.kind} view of ${update.doc} at seq ${update.seq}, but ${m.node} (a member of epoch ${replica.epoch}) holds it durably only up to seq ${durable}`,
        );
      }
    }
  }

  tabOpened(tab: Tab): void {
    this.openTabs.add(tab);
  }

  tabClosed(tab: Tab): void {
    this.openTabs.delete(tab);
  }

  /** Privacy, on what the browser tab receives: every value must be in the tab's viewer's view of the frame's basis. */
  tabFrame(tab: Tab, update: ViewUpdate): void {
    this.viewFramesChecked++;
    for (const text of this.entropyTexts.get(update.doc) ?? []) {
      if (update.json.includes(text) || update.confirmedJson.includes(text)) {
        throw new ViolationError('privacy', `${tab.name} (${tab.viewer}) received a ${update.kind} frame of ${update.doc} at seq ${update.seq} that shows the document's secret entropy`);
      }
    }
    const basis = this.bases.get(frameKey(update));
    if (basis === undefined) throw new ViolationError('privacy', `${tab.name} (${tab.viewer}) received a ${update.kind} frame of ${update.doc} that no head sent to ${update.viewer}`);
    const type = findDocumentType(basis.docType);
    const check = (json: string, state: JsonObject, what: string): void => {
      if (json === '' || type === undefined) return;
      const frame = JSON.parse(json) as Json;
      // The independent oracle (secrets.ts), then the engine's own view: every value a frame
      // carries must be a value of the viewer's view of the state it was computed from.
      const leaks = findLeaks(basis.docType, state, tab.viewer, frame);
      const outside = leaks.length > 0 ? undefined : outsideView(frame, view(type, state, tab.viewer), '');
      if (outside !== undefined) leaks.push(`${outside}, which is not in ${tab.viewer}'s view`);
      if (leaks.length > 0)
        throw new ViolationError('privacy', `${tab.name} (${tab.viewer}) received from ${basis.node} a ${what} frame of ${update.doc} at seq ${update.seq} with ${leaks.join('; ')}`);
    };
    if (update.kind === 'confirmed') check(update.json, basis.confirmed, 'confirmed');
    else check(update.json, basis.speculative, update.kind);
    if (update.kind === 'full') check(update.confirmedJson, basis.confirmed, 'full (confirmed part)');
  }

  acked(doc: string, seq: number): void {
    let a = this.acks.get(doc);
    if (a === undefined) this.acks.set(doc, (a = { times: [], highest: [] }));
    a.times.push(this.world().now);
    a.highest.push(Math.max(seq, a.highest[a.highest.length - 1] ?? 0));
  }

  private highestAckBefore(doc: string, time: number): number {
    const a = this.acks.get(doc);
    if (a === undefined) return 0;
    let lo = 0;
    let hi = a.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((a.times[mid] as number) < time) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : (a.highest[lo - 1] as number);
  }

  configAcked(node: string, chain: string, epoch: number): void {
    const key = `${node}\n${chain}`;
    this.ackedEpochs.set(key, Math.max(this.ackedEpochs.get(key) ?? 0, epoch));
  }

  /**
   * The checks after each event. Epochs and leases are checked on every node (a lease runs out
   * with time, in whatever process the event ran). Update Propagation compares a predecessor
   * with its successor, whose states change only in their own events: after an event in a
   * node, only that node's pairs are compared (as predecessor and as successor); after an
   * event in a proxy, a session or the manager, none; after any other event (a fault, a
   * restart) or one that ran code of several processes, every pair.
   */
  afterEvent(world: World): void {
    const ran = world.ran;
    const allPairs = ran === undefined || ran === 'several';
    for (const node of world.nodes) this.checkNode(world, node, allPairs ? 'succ' : node === ran ? 'both' : 'none');
  }

  private checkNode(world: World, node: NodeProcess, pairs: 'none' | 'succ' | 'both'): void {
    const driver = node.driver;
    if (driver === undefined || !node.alive) return;
    const now = world.now;
    for (const [chain, replica] of driver.chains()) {
      const watch = this.watchOf(node.name, chain, replica);
      // Epochs only move forward: a replica never runs a configuration older than one it acknowledged.
      const acked = this.ackedEpochs.get(watch.key) ?? 0;
      if (replica.epoch < acked) {
        throw new ViolationError('agreement', `${node.name} runs epoch ${replica.epoch} of ${chain} after acknowledging epoch ${acked}: it no longer agrees with the chain on its members`);
      }
      this.checkLease(node, chain, replica, watch, now, world.settings.tickMs);
      if (replica.epoch !== watch.epochSeen) this.checkAccepted(world, node.name, chain, replica, watch);
      if (pairs === 'none') continue;
      const succNode = world.node(replica.successor?.node ?? '');
      const succ = succNode?.alive === true ? succNode.driver?.replica(chain) : undefined;
      if (succ !== undefined) this.checkPair(chain, replica, watch, succ);
      if (pairs === 'succ') continue; // every node's turn comes: its predecessor is checked as one
      const predNode = world.node(replica.predecessor?.node ?? '');
      const pred = predNode?.alive === true ? predNode.driver?.replica(chain) : undefined;
      if (predNode !== undefined && pred !== undefined && pred.successor?.node === node.name) this.checkPair(chain, pred, this.watchOf(predNode.name, chain, pred), replica);
    }
  }

  /** Update Propagation: a synced successor never holds more of a document than its predecessor. */
  private checkPair(chain: string, pred: Replica, watch: Watch, succ: Replica): void {
    if (!pred.succSynced || succ.epoch !== pred.epoch) return;
    // Unchanged since the last check of this pair: nothing new to compare.
    if (watch.succ === succ && watch.predVersion === pred.docs.version && watch.succVersion === succ.docs.version) return;
    watch.succ = succ;
    watch.predVersion = pred.docs.version;
    watch.succVersion = succ.docs.version;
    for (const theirs of succ.docs.values()) {
      const last = theirs.appliedSeq + theirs.queue.length;
      if (last === 0) continue;
      const mine = pred.docs.get(theirs.id);
      const mineLast = mine === undefined ? 0 : mine.appliedSeq + mine.queue.length;
      if (last > mineLast) {
        throw new ViolationError(
          'agreement',
          `Update Propagation broken on ${chain} epoch ${pred.epoch}: successor ${succ.node} has ${theirs.id} up to seq ${last}, its synced predecessor ${pred.node} only to ${mineLast}`,
        );
      }
    }
  }

  /** A configuration a node runs: the store held it, and no node runs another with its epoch. */
  private checkAccepted(world: World, node: string, chain: string, replica: Replica, watch: Watch): void {
    watch.epochSeen = replica.epoch;
    if (replica.epoch === 0) return;
    const config = { chain, epoch: replica.epoch, members: replica.members };
    const encoded = encodeStoredConfig(config);
    const names = config.members.map((m) => m.node).join('>');
    const key = `${chain}\n${replica.epoch}`;
    const prior = this.acceptedConfigs.get(key);
    if (prior !== undefined && prior.encoded !== encoded) {
      throw new ViolationError(
        'configurations',
        `${node} runs epoch ${replica.epoch} of ${chain} = ${names}, but ${prior.node} ran epoch ${replica.epoch} = ${prior.names}: two configurations share an epoch`,
      );
    }
    if (prior === undefined) this.acceptedConfigs.set(key, { node, encoded, names });
    if (!world.store.held(config)) throw new ViolationError('configurations', `${node} runs epoch ${replica.epoch} of ${chain} = ${names}, which the configuration store never held`);
  }

  private watchOf(node: string, chain: string, replica: Replica): Watch {
    let w = this.watches.get(replica);
    if (w === undefined) this.watches.set(replica, (w = { key: `${node}\n${chain}`, leaselessSince: -1, succ: undefined, predVersion: -1, succVersion: -1, epochSeen: 0 }));
    return w;
  }

  /** A head that lost its lease ends its waiters and subscriptions within a tick of running. */
  private checkLease(node: NodeProcess, chain: string, replica: Replica, watch: Watch, now: number, tickMs: number): void {
    const role = replica.role;
    const holding = replica.head.waiterCount + replica.head.subscriptionCount > 0;
    if (!holding || (role !== 'head' && role !== 'single') || replica.leaseHolds(now) || !node.running) {
      watch.leaselessSince = -1;
      return;
    }
    if (watch.leaselessSince < 0) {
      watch.leaselessSince = now;
      return;
    }
    if (now > Math.max(watch.leaselessSince, node.resumedAt) + tickMs + 1) {
      throw new ViolationError(
        'lease',
        `${node.name} has had no lease on ${chain} since ${watch.leaselessSince.toFixed(1)}ms but still holds ${replica.head.waiterCount} waiters and ${replica.head.subscriptionCount} subscriptions: its clients wait on a head that cannot serve them`,
      );
    }
  }

  /** The end-of-run checks. `quiescent`: everything settled after healing; otherwise liveness failed. */
  final(world: World, quiescent: boolean, pending: string, longResends: boolean): void {
    for (const config of world.store.chains()) {
      const chain = config.chain;
      const replicas = config.members
        .map((m) => world.node(m.node))
        .filter((n): n is NodeProcess => n?.alive === true && !n.hung && n.driver?.replica(chain) !== undefined)
        .map((n) => n.driver?.replica(chain) as Replica);
      if (replicas.length === 0) continue;
      // Without quiescence only the most advanced replica is judged (the others may still be catching up).
      const judged = quiescent ? replicas : [bestOf(replicas)];
      const acked = ackedRecords(world, chain);
      const replayed = new Map<string, Replayed>();
      for (const replica of judged) {
        this.checkEntropy(chain, replica);
        this.checkOnce(world, chain, replica);
        this.checkAcked(acked, replica);
        this.checkDeterminism(replica, replayed);
      }
      if (quiescent) this.checkAgreement(chain, replicas);
    }
    if (!quiescent && pending.startsWith(subscriptionsPending)) this.checkSubscriptions(world);
    if (!quiescent) throw new ViolationError('liveness', `not settled 30 s (virtual) after the faults healed: ${pending}`);
    if (longResends) {
      for (const client of world.clients) {
        const lost = client.records.find((r) => r.status === 'unknown');
        if (lost !== undefined) throw new ViolationError('liveness', `${client.name}#${lost.clientSeq} on ${lost.doc} ended without an answer (${lost.code}) although the chain could commit it`);
      }
    }
    this.checkSubscriptions(world);
    this.checkConvergence(world);
  }

  /** Agreement on entropy: each document's is one a head created it with (a replica that made up its own would shuffle differently once it executes). */
  checkEntropy(chain: string, replica: Replica): void {
    for (const doc of replica.docs.values()) {
      const hex = Buffer.from(doc.entropy).toString('hex');
      const made = this.entropies.get(doc.id);
      if (made?.has(hex) !== true) {
        throw new ViolationError(
          'agreement',
          `${replica.node} holds ${doc.id} (chain ${chain}) with an entropy no head created it with (${made === undefined ? 'no head sequenced its seq 1' : `heads made ${made.size}`}): it does not agree with the chain on the document's randomness`,
        );
      }
    }
  }

  private checkOnce(world: World, chain: string, replica: Replica): void {
    for (const doc of replica.documents()) {
      const peek = replica.peek(doc);
      if (peek === undefined) continue;
      const seen = new Map<string, number>();
      for (const delta of peek.log) {
        const key = `${delta.clientId}#${delta.clientSeq}`;
        const earlier = seen.get(key);
        if (earlier !== undefined) throw new ViolationError('exactly-once', `${replica.node} applied ${key} on ${doc} twice, at seqs ${earlier} and ${delta.seq} (chain ${chain})`);
        seen.set(key, delta.seq);
      }
      for (const client of world.clients) {
        for (const record of client.records) {
          if (record.doc !== doc || record.status !== 'failed') continue;
          const at = seen.get(`${record.client}#${record.clientSeq}`);
          if (at !== undefined) throw new ViolationError('exactly-once', `${record.client}#${record.clientSeq} was refused (${record.code}) but ${replica.node} applied it at ${doc}@${at}`);
        }
      }
    }
  }

  private checkAcked(acked: readonly ClientRecord[], replica: Replica): void {
    for (const record of acked) {
      const peek = replica.peek(record.doc);
      const logFrom = peek?.logFrom ?? 1;
      if (record.seq < logFrom) continue; // compacted into a snapshot: not checkable here
      const delta = peek?.log[record.seq - logFrom];
      if (delta === undefined || delta.clientId !== record.client || delta.clientSeq !== record.clientSeq) {
        const found = delta === undefined ? 'nothing' : `${delta.clientId}#${delta.clientSeq}`;
        throw new ViolationError('no-acked-lost', `${record.client}#${record.clientSeq} was acknowledged at ${record.doc}@${record.seq}, but ${replica.node}'s log has ${found} there`);
      }
    }
  }

  /** Replays each log from the messages the heads sequenced; a log equal to one replayed already (another replica's) needs only its state compared. */
  private checkDeterminism(replica: Replica, replayed: Map<string, Replayed>): void {
    for (const doc of replica.documents()) {
      const peek = replica.peek(doc);
      const entropy = replica.docs.get(doc)?.entropy; // one a head made (checkEntropy ran first)
      if (peek === undefined || entropy === undefined || peek.logFrom !== 1) continue; // replay needs the whole log
      const earlier = replayed.get(doc);
      if (earlier !== undefined && sameDeltas(earlier.log, peek.log)) {
        if (canonicalJson(peek.state) !== earlier.stateJson) throw new ViolationError('determinism', `${replica.node}'s state of ${doc} differs from the replay of its log`);
        continue;
      }
      let state: JsonObject = peek.type.initial;
      for (const delta of peek.log) {
        const candidates = this.sequencedAs.get(identity(doc, delta.seq, delta.clientId, delta.clientSeq)) ?? [];
        let next: JsonObject | undefined;
        for (const envelope of candidates) {
          const execution = execute(peek.type, state, engineEnvelope(envelope), entropy);
          if (JSON.stringify(execution.redo) === delta.redoJson && JSON.stringify(execution.outcome) === delta.outcomeJson) {
            next = execution.state;
            break;
          }
        }
        if (next === undefined) {
          throw new ViolationError(
            'determinism',
            `${replica.node}'s delta ${doc}@${delta.seq} (${delta.clientId}#${delta.clientSeq}) is not the execution of ${candidates.length === 0 ? 'any message a head sequenced there' : `the message sequenced there (${candidates.map((c) => c.payloadJson).join(' | ')})`}; redo ${truncate(delta.redoJson)}`,
          );
        }
        state = next;
      }
      const stateJson = canonicalJson(state);
      if (stateJson !== canonicalJson(peek.state)) {
        throw new ViolationError('determinism', `${replica.node}'s state of ${doc} differs from the replay of its log`);
      }
      replayed.set(doc, { log: peek.log, stateJson });
    }
  }

  private checkAgreement(chain: string, replicas: Replica[]): void {
    const used = (r: Replica): string[] => r.documents().sort();
    const [first, ...rest] = replicas as [Replica, ...Replica[]];
    const docs = used(first);
    for (const other of rest) {
      const fail = (what: string): never => {
        throw new ViolationError('agreement', `replicas ${first.node} and ${other.node} of ${chain} differ at quiescence: ${what}`);
      };
      if (JSON.stringify(used(other)) !== JSON.stringify(docs)) fail(`documents ${docs.join(',')} vs ${used(other).join(',')}`);
      for (const doc of docs) {
        const a = first.peek(doc);
        const b = other.peek(doc);
        const sa = first.docs.get(doc);
        const sb = other.docs.get(doc);
        if (a === undefined || b === undefined || sa === undefined || sb === undefined) continue;
        if (Buffer.compare(sa.entropy, sb.entropy) !== 0) fail(`${doc} has another entropy on each`);
        if (sa.appliedSeq !== sb.appliedSeq) fail(`${doc} applied ${sa.appliedSeq} vs ${sb.appliedSeq}`);
        if (canonicalJson(a.state) !== canonicalJson(b.state)) fail(`${doc} states differ at seq ${sa.appliedSeq}`);
        // Each replica compacts on its own schedule: compare the log entries both still hold.
        for (let seq = Math.max(a.logFrom, b.logFrom); seq <= sa.appliedSeq; seq++) {
          const da = a.log[seq - a.logFrom];
          const db = b.log[seq - b.logFrom];
          if (da === undefined || db === undefined || deltaKey(da) !== deltaKey(db)) fail(`${doc} log entries at seq ${seq} differ`);
        }
      }
    }
  }

  /** Every open tab has exactly one subscription at its document's head; nothing else holds one. */
  checkSubscriptions(world: World): void {
    const want = new Map<string, number>();
    for (const tab of this.openTabs) if (tab.state === 'open') want.set(`${tab.doc}\n${tab.viewer}`, (want.get(`${tab.doc}\n${tab.viewer}`) ?? 0) + 1);
    const have = new Map<string, number>();
    for (const node of world.nodes) {
      if (!node.alive || node.hung) continue;
      for (const [chain, replica] of node.driver?.chains() ?? []) {
        const config = world.store.current(chain);
        const held = replica.head.subscriptions();
        let total = 0;
        for (const subs of held.values()) total += subs.length;
        // The counter nodeSubscriptionsMax is enforced on.
        if (replica.head.subscriptionCount !== total) {
          throw new ViolationError(
            'subscriptions',
            `${node.name} counts ${replica.head.subscriptionCount} subscriptions on ${chain} but holds ${total}: nodeSubscriptionsMax would refuse too early or too late`,
          );
        }
        for (const [doc, subs] of held) {
          if (subs.length === 0) continue;
          if (config?.members[0]?.node !== node.name) {
            throw new ViolationError('subscriptions', `${node.name} is not the head of ${chain} but holds ${subs.length} subscription(s) to ${doc} at quiescence`);
          }
          for (const s of subs) have.set(`${doc}\n${s.viewer}`, (have.get(`${doc}\n${s.viewer}`) ?? 0) + 1);
        }
      }
    }
    for (const key of new Set([...want.keys(), ...have.keys()])) {
      const [doc, viewer] = key.split('\n');
      const w = want.get(key) ?? 0;
      const h = have.get(key) ?? 0;
      if (w !== h) throw new ViolationError('subscriptions', `${w} open tab(s) of ${viewer} watch ${doc}, but the heads hold ${h} subscription(s) for them at quiescence`);
    }
  }

  private checkConvergence(world: World): void {
    for (const tab of this.openTabs) {
      if (tab.state === 'failed') throw new ViolationError('convergence', `${tab.name}'s subscription to ${tab.doc} ended with ${tab.error}`);
      if (tab.state !== 'open') continue;
      const chain = world.chainOfDoc(tab.doc);
      const config = world.store.current(chain);
      const head = world.node(config?.members[0]?.node ?? '');
      const type = findDocumentType(tab.docType);
      if (type === undefined || head === undefined) continue;
      const state = head.driver?.replica(chain)?.peek(tab.doc)?.state ?? type.initial;
      // A view's hidden members are null; a merge patch deletes them: null and absent are the same view.
      const expected = viewText(view(type, state, tab.viewer));
      for (const [what, got] of [
        ['confirmed', tab.confirmed],
        ['speculative', tab.speculative],
      ] as const) {
        if (got === undefined) throw new ViolationError('convergence', `${tab.name} (${tab.viewer}) has no ${what} view of ${tab.doc} at quiescence`);
        const text = viewText(got);
        if (text !== expected)
          throw new ViolationError('convergence', `${tab.name} (${tab.viewer}) ${what} view of ${tab.doc} differs from the view of the final state: ${truncate(text)} vs ${truncate(expected)}`);
      }
    }
  }
}

/** The first path where `frame` (a full view or a merge patch) carries a value that `allowed` does not hold. */
function outsideView(frame: Json, allowed: Json | undefined, path: string): string | undefined {
  if (frame === null) return undefined; // a deletion reveals nothing
  if (typeof frame === 'object' && !Array.isArray(frame)) {
    const scope = allowed !== null && typeof allowed === 'object' && !Array.isArray(allowed) ? allowed : undefined;
    for (const [key, value] of Object.entries(frame)) {
      const found = outsideView(value, scope?.[key], `${path}/${key}`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  return allowed !== undefined && JSON.stringify(frame) === JSON.stringify(allowed) ? undefined : `${path || '/'} = ${truncate(JSON.stringify(frame))}`;
}

function bestOf(replicas: Replica[]): Replica {
  let best = replicas[0] as Replica;
  let bestSum = -1;
  for (const r of replicas) {
    let sum = 0;
    for (const d of r.docs.values()) sum += d.appliedSeq;
    if (sum > bestSum) {
      best = r;
      bestSum = sum;
    }
  }
  return best;
}

function deltaKey(d: WireDelta): string {
  return `${d.seq}:${d.clientId}#${d.clientSeq}:${d.redoJson.length}`;
}

function engineEnvelope(e: WireEnvelope): Envelope {
  return { doc: e.doc, seq: e.seq, timestamp: e.timestamp, viewer: e.viewer, channel: e.channel, payload: JSON.parse(e.payloadJson) as unknown };
}

function viewText(v: Json): string {
  return JSON.stringify(canonicalize(v, { dropNulls: true }));
}

function truncate(text: string): string {
  return text.length > 400 ? `${text.slice(0, 400)}...` : text;
}

/** A document's log that replayed correctly, and the state it replays to. */
interface Replayed {
  readonly log: readonly WireDelta[];
  readonly stateJson: string;
}

function sameDeltas(a: readonly WireDelta[], b: readonly WireDelta[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as WireDelta;
    const y = b[i] as WireDelta;
    if (x.seq !== y.seq || x.redoJson !== y.redoJson || x.outcomeJson !== y.outcomeJson || x.clientId !== y.clientId || x.clientSeq !== y.clientSeq) return false;
  }
  return true;
}

/** The acknowledged messages of `chain`'s documents. */
function ackedRecords(world: World, chain: string): ClientRecord[] {
  const out: ClientRecord[] = [];
  for (const client of world.clients) for (const record of client.records) if (record.status === 'acked' && world.chainOfDoc(record.doc) === chain) out.push(record);
  return out;
}
