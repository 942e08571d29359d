// The design brief's seven invariants, checked against a simulated world.
//
//   continuous (every event)      3. Update Propagation: a synced successor's history is a prefix
//                                    of its predecessor's (its last seq is no higher); and no replica
//                                    goes back to an epoch older than one it acknowledged
//   continuous (every frame)      5. privacy: no view frame, speculative ones included, holds a
//                                    value its viewer may not see (engine/documents/secrets.ts)
//   at the end                    1. no acknowledged message is lost
//                                 2. exactly once (and a message refused for good is never applied)
//                                 4. determinism: every logged delta is the execution of a message
//                                    the head sequenced, and the state is the replay of the log
//   at quiescence                 3. replica agreement: identical state, appliedSeq and log
//                                 6. convergence: speculative = confirmed = view(final state)
//   after healing                 7. liveness: every message finishes within a bounded time

import { canonicalize, canonicalJson, type Json, type JsonObject } from '../engine/json.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { findLeaks } from '../engine/documents/secrets.ts';
import { execute, type Envelope } from '../engine/execute.ts';
import { view } from '../engine/view.ts';
import type { Replica } from '../chain/replica.ts';
import type { ViewUpdate, WireDelta, WireEnvelope } from '../chain/wire.ts';
import { ViolationError, type Observer, type World } from './world.ts';

export const invariantNames = ['no-acked-lost', 'exactly-once', 'agreement', 'determinism', 'privacy', 'convergence', 'liveness'] as const;
export type InvariantName = (typeof invariantNames)[number] | 'assertion';

const identity = (doc: string, seq: number, clientId: string, clientSeq: number): string => `${doc}\n${seq}\n${clientId}\n${clientSeq}`;

export class Checker implements Observer {
  /** Every envelope a head sequenced, by (doc, seq, clientId, clientSeq). A seq can be sequenced again after a head fails. */
  private readonly sequencedAs = new Map<string, WireEnvelope[]>();
  viewFramesChecked = 0;

  sequenced(_node: string, _chain: string, envelope: WireEnvelope): void {
    const key = identity(envelope.doc, envelope.seq, envelope.clientId, envelope.clientSeq);
    const list = this.sequencedAs.get(key);
    const copy = { ...envelope };
    if (list === undefined) this.sequencedAs.set(key, [copy]);
    else if (!list.some((e) => e.timestamp === copy.timestamp && e.payloadJson === copy.payloadJson)) list.push(copy);
  }

  viewFrame(node: string, update: ViewUpdate, docType: string, basis: { readonly speculative: JsonObject; readonly confirmed: JsonObject }): void {
    this.viewFramesChecked++;
    const type = findDocumentType(docType);
    const check = (json: string, state: JsonObject, what: string): void => {
      if (json === '' || type === undefined) return;
      const frame = JSON.parse(json) as Json;
      // The independent oracle (secrets.ts), then the engine's own view: every value a frame
      // carries must be a value of the viewer's view of the state it was computed from.
      const leaks = findLeaks(docType, state, update.viewer, frame);
      const outside = leaks.length > 0 ? undefined : outsideView(frame, view(type, state, update.viewer), '');
      if (outside !== undefined) leaks.push(`${outside}, which is not in ${update.viewer}'s view`);
      if (leaks.length > 0) throw new ViolationError('privacy', `${node} sent ${update.viewer} a ${what} frame of ${update.doc} at seq ${update.seq} with ${leaks.join('; ')}`);
    };
    if (update.kind === 'confirmed') check(update.json, basis.confirmed, 'confirmed');
    else check(update.json, basis.speculative, update.kind);
    if (update.kind === 'full') check(update.confirmedJson, basis.confirmed, 'full (confirmed part)');
  }

  /** Update Propagation, after every event: a synced successor never has seqs its predecessor lacks. */
  afterEvent(world: World): void {
    for (const node of world.nodes) {
      if (!node.alive) continue;
      for (const [chain, pred] of node.replicas) {
        // Epochs only move forward: a replica never runs a configuration older than one it acknowledged.
        const acked = node.ackedEpochs.get(chain) ?? 0;
        if (pred.epoch < acked) {
          throw new ViolationError('agreement', `${node.name} runs epoch ${pred.epoch} of ${chain} after acknowledging epoch ${acked}: it no longer agrees with the chain on its members`);
        }
        if (!pred.succSynced) continue;
        const succNode = world.node(pred.successor?.node ?? '');
        const succ = succNode?.alive ? succNode.replicas.get(chain) : undefined;
        if (succ === undefined || succ.epoch !== pred.epoch) continue;
        const mine = pred.seqs();
        for (const [doc, theirs] of succ.seqs()) {
          const last = mine.get(doc)?.last ?? 0;
          if (theirs.last > last) {
            throw new ViolationError('agreement', `Update Propagation broken on ${chain} epoch ${pred.epoch}: successor ${succ.node} has ${doc} up to seq ${theirs.last}, its synced predecessor ${pred.node} only to ${last}`);
          }
        }
      }
    }
  }

  /** The end-of-run checks. `quiescent`: everything settled after healing; otherwise liveness failed. */
  final(world: World, quiescent: boolean, pending: string): void {
    for (const [chain, config] of world.manager.configs) {
      const members = config.members.map((m) => world.node(m.node)).filter((n) => n.alive && n.replicas.has(chain));
      const replicas = members.map((n) => n.replicas.get(chain) as Replica);
      if (replicas.length === 0) continue;
      // Without quiescence only the most advanced replica is judged (the others may still be catching up).
      const judged = quiescent ? replicas : [bestOf(replicas)];
      for (const replica of judged) {
        this.checkOnce(world, chain, replica);
        this.checkAcked(world, chain, replica);
        this.checkDeterminism(replica);
      }
      if (quiescent) this.checkAgreement(chain, replicas);
    }
    if (!quiescent) throw new ViolationError('liveness', `not settled 30 s (virtual) after the faults healed: ${pending}`);
    this.checkConvergence(world);
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

  private checkAcked(world: World, chain: string, replica: Replica): void {
    for (const client of world.clients) {
      for (const record of client.records) {
        if (record.status !== 'acked' || world.settings.docs.find((d) => d.id === record.doc)?.chain !== chain) continue;
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
  }

  private checkDeterminism(replica: Replica): void {
    for (const doc of replica.documents()) {
      const peek = replica.peek(doc);
      if (peek === undefined || peek.logFrom !== 1) continue; // replay needs the whole log
      let state: JsonObject = peek.type.initial;
      for (const delta of peek.log) {
        const candidates = this.sequencedAs.get(identity(doc, delta.seq, delta.clientId, delta.clientSeq)) ?? [];
        let next: JsonObject | undefined;
        for (const envelope of candidates) {
          const execution = execute(peek.type, state, engineEnvelope(envelope), 'sim-cluster');
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
      if (canonicalJson(state) !== canonicalJson(peek.state)) {
        throw new ViolationError('determinism', `${replica.node}'s state of ${doc} differs from the replay of its log`);
      }
    }
  }

  private checkAgreement(chain: string, replicas: Replica[]): void {
    // A document that a refused request created (nothing applied, nothing queued) is the same as none.
    const used = (r: Replica): string[] => r.documents().filter((doc) => (r.seqs().get(doc)?.last ?? 0) > 0).sort();
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
        const sa = first.seqs().get(doc);
        const sb = other.seqs().get(doc);
        if (a === undefined || b === undefined || sa === undefined || sb === undefined) continue;
        if (sa.applied !== sb.applied) fail(`${doc} applied ${sa.applied} vs ${sb.applied}`);
        if (canonicalJson(a.state) !== canonicalJson(b.state)) fail(`${doc} states differ at seq ${sa.applied}`);
        // Each replica compacts on its own schedule: compare the log entries both still hold.
        for (let seq = Math.max(a.logFrom, b.logFrom); seq <= sa.applied; seq++) {
          const da = a.log[seq - a.logFrom];
          const db = b.log[seq - b.logFrom];
          if (da === undefined || db === undefined || deltaKey(da) !== deltaKey(db)) fail(`${doc} log entries at seq ${seq} differ`);
        }
      }
    }
  }

  private checkConvergence(world: World): void {
    for (const client of world.clients) {
      for (const sub of client.subs.values()) {
        const docInfo = world.settings.docs.find((d) => d.id === sub.doc);
        const config = world.manager.configs.get(docInfo?.chain ?? '');
        const head = world.node(config?.members[0]?.node ?? '');
        const peek = head?.replicas.get(docInfo?.chain ?? '')?.peek(sub.doc);
        const type = findDocumentType(docInfo?.type ?? '');
        if (type === undefined || head === undefined) continue;
        const state = peek?.state ?? type.initial;
        // A view's hidden members are null; a merge patch deletes them: null and absent are the same view.
        const expected = viewText(view(type, state, client.viewer));
        if (sub.state !== 'active') throw new ViolationError('convergence', `${client.name}'s subscription to ${sub.doc} is ${sub.state} at quiescence`);
        for (const [what, got] of [['confirmed', sub.confirmed], ['speculative', sub.speculative]] as const) {
          const text = viewText(got ?? {});
          if (text !== expected) throw new ViolationError('convergence', `${client.name} (${client.viewer}) ${what} view of ${sub.doc} from ${sub.node} differs from the view of the final state: ${truncate(text)} vs ${truncate(expected)}`);
        }
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
    for (const s of r.seqs().values()) sum += s.applied;
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
