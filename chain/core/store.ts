// A replica's durable contents in an ordered key-value store (LevelDB in real processes, an
// ordered map in the simulator: runtime/level-disk.ts and simulations/disk.ts).
//
// The replica never reads the store while it runs: it keeps everything in memory, and every
// change it makes is a list of puts and deletes that it hands out as one atomic batch (group
// commit: one synced batch for everything since the last write). The store is read once, at
// startup: the runtime feeds every entry, in key order, to `Recovery`.
//
// Key layout (all keys and values UTF-8; chain, doc and client ids use [A-Za-z0-9._:-] only,
// so "!" separates fields; seqs are 16-digit zero-padded decimals so they sort numerically):
//
//   c!{chain}!config                  {chain, epoch, members: [{node, address, sinceEpoch}], caughtUpEpoch, servingFrom}
//   c!{chain}!d!{doc}!e               "hex": the document's entropy (32 bytes), written once, with its first meta
//   c!{chain}!d!{doc}!meta            {docType, appliedSeq, snapshotSeq, logFrom}, written when the
//                                     document is created, compacted or transferred; appliedSeq
//                                     there is a lower bound: the log's last entry is the truth
//   c!{chain}!d!{doc}!l!{seq}         the seq's one key: first its queued envelope (sequenced, not
//                                     yet applied here; the entropy of seq 1 is not repeated
//                                     there: recovery puts it back), then, overwriting it in the
//                                     batch that applies it, its delta log entry {seq, redoJson,
//                                     undoJson, outcomeJson, clientId, clientSeq, timestamp}
//   c!{chain}!d!{doc}!q!{seq}         a queued envelope as the layout before issue 16 kept it
//                                     (read, and moved to its l key, at startup)
//   c!{chain}!d!{doc}!s               snapshot {seq, stateJson}: the state after applying seq
//   c!{chain}!d!{doc}!k!{clientId}!{clientSeq}   dedupe entry [seq, outcomeJson, timestamp]: the
//                                     table at logFrom - 1 (written when compaction moves logFrom;
//                                     the replica rebuilds the table at appliedSeq by remembering
//                                     the log's deltas in order, with its own dedupe limits:
//                                     they must not change across restarts, as they must be the
//                                     same on every replica); in stores without meta.layout
//                                     (before issue 16), the table at appliedSeq (converted at
//                                     startup in the first batch: a snapshot and an empty log
//                                     per document, one large batch for a large store)
//
// Invariants (checked by `Recovery`, the disk-side half of the replica's paired checks):
// - the state at appliedSeq is the snapshot (or the type's initial state when snapshotSeq is 0)
//   with the log entries snapshotSeq+1..appliedSeq applied in order;
// - the log holds every seq from logFrom to appliedSeq (logFrom <= snapshotSeq + 1), and
//   appliedSeq is the larger of meta's and the last delta's;
// - queue entries are appliedSeq+1, appliedSeq+2, ... with no gap (no delta after one);
// - every document has its entropy (the entropy key and its first meta go in one batch). A
//   document without one was written by a version before per-document entropy: recovery
//   refuses the store (OldStore) rather than let each replica make a different one up.
// What the store holds is the node's own past output, but a file can be damaged: recovery
// validates and reports a CorruptStore naming the key, rather than asserting.

import type { DocumentType } from '../../engine/document.ts';
import { findDocumentType } from '../../engine/documents/index.ts';
import { isObject, type JsonObject } from '../../engine/json.ts';
import { applyInPlace } from '../../engine/patch.ts';
import { checkConfig, type ChainConfig } from './config.ts';
import type { WireDelta, WireEnvelope } from './frames.ts';
import { docEntropyBytes } from './validate.ts';

export type Op = { readonly type: 'put'; readonly key: string; readonly value: string } | { readonly type: 'del'; readonly key: string };

/** One atomic write. Ids increase by one per batch; completions arrive in id order. */
export interface Batch {
  readonly id: number;
  readonly ops: readonly Op[];
}

export interface DocMeta {
  docType: string;
  appliedSeq: number;
  snapshotSeq: number;
  logFrom: number;
  /** storeLayout for this layout; absent in a store of an earlier one (its dedupe keys hold the table at appliedSeq). */
  layout?: number;
}

/**
 * The layout of issue 16: one key per seq (queued envelope, then delta), appliedSeq read off
 * the log, and dedupe keys that hold the table at logFrom - 1 (recovery replays the log onto it).
 */
export const storeLayout = 2;

/** One remembered message of one client: its clientSeq, the seq it got, its outcome, and when the head sequenced it. */
export type DedupeEntry = readonly [clientSeq: number, seq: number, outcomeJson: string, timestamp: number];

export interface RecoveredDoc {
  readonly doc: string;
  readonly type: DocumentType;
  readonly meta: DocMeta;
  /** The document's secret entropy (docEntropyBytes bytes): its PRNG key. */
  readonly entropy: Uint8Array;
  /** Mutable state at meta.appliedSeq. */
  readonly state: JsonObject;
  /** Log entries logFrom..appliedSeq, in order. */
  readonly log: WireDelta[];
  readonly queue: WireEnvelope[];
  /** Seqs of queue entries stored under the old layout's queue keys (to be moved). */
  readonly legacyQueueSeqs: number[];
  /** Least recently used client first (ordered by the seq of each client's latest entry). */
  readonly dedupe: Map<string, DedupeEntry[]>;
}

export interface RecoveredChain {
  readonly chain: string;
  readonly config: ChainConfig | undefined;
  /** The latest epoch in which this node was caught up (see Replica.caughtUpEpoch). */
  readonly caughtUpEpoch: number;
  /** The earliest time (this node's clock, ms) at which it may serve as head (see Replica, leases). */
  readonly servingFrom: number;
  readonly docs: Map<string, RecoveredDoc>;
}

/** The config record: a configuration with this node's caughtUpEpoch and servingFrom, written together. */
export interface ConfigRecord extends ChainConfig {
  readonly caughtUpEpoch: number;
  readonly servingFrom: number;
}

const seqDigits = 16;
export const seqKey = (seq: number): string => String(seq).padStart(seqDigits, '0');

export const keys = {
  config: (chain: string) => `c!${chain}!config`,
  meta: (chain: string, doc: string) => `c!${chain}!d!${doc}!meta`,
  entropy: (chain: string, doc: string) => `c!${chain}!d!${doc}!e`,
  /** The layout before issue 16 only (queued envelopes now live at keys.log). */
  queue: (chain: string, doc: string, seq: number) => `c!${chain}!d!${doc}!q!${seqKey(seq)}`,
  log: (chain: string, doc: string, seq: number) => `c!${chain}!d!${doc}!l!${seqKey(seq)}`,
  snapshot: (chain: string, doc: string) => `c!${chain}!d!${doc}!s`,
  dedupe: (chain: string, doc: string, client: string, clientSeq: number) => `c!${chain}!d!${doc}!k!${client}!${seqKey(clientSeq)}`,
};

/** Every key of the layout starts in this range. */
export const keyRange = { gte: 'c!', lt: 'c"' } as const;

export class CorruptStore extends Error {
  override name = 'CorruptStore';
}

/** A store written by an earlier version, in a format this one cannot take over safely. */
export class OldStore extends CorruptStore {
  override name = 'OldStore';
}

/** The stored form of an entropy (the value of keys.entropy). */
export const entropyRecord = (entropy: Uint8Array): string => JSON.stringify(Buffer.from(entropy.buffer, entropy.byteOffset, entropy.byteLength).toString('hex'));

type Raw = {
  meta?: DocMeta;
  entropy?: Uint8Array;
  snapshot?: { seq: number; stateJson: string };
  log: WireDelta[];
  queue: WireEnvelope[];
  legacyQueueSeqs: number[];
  dedupe: Map<string, DedupeEntry[]>;
};

/** Reads a store back: `add` every entry in key order, then `finish`. */
export class Recovery {
  private readonly configs = new Map<string, ConfigRecord>();
  private readonly raw = new Map<string, Map<string, Raw>>();
  private lastKey = '';

  add(key: string, value: string): void {
    if (key <= this.lastKey) throw new CorruptStore(`keys out of order at ${key}`);
    this.lastKey = key;
    const parts = key.split('!');
    const chain = parts[1] as string;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      throw new CorruptStore(`${key}: the value is not JSON`);
    }
    if (parts.length === 3 && parts[2] === 'config') {
      const record = parsed as ConfigRecord;
      const problem = isObject(parsed) ? checkConfig(record) : 'not an object';
      if (problem !== undefined) throw new CorruptStore(`${key}: ${problem}`);
      const count = (n: unknown): number => (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0);
      this.configs.set(chain, { chain: record.chain, epoch: record.epoch, members: record.members, caughtUpEpoch: count(record.caughtUpEpoch), servingFrom: count(record.servingFrom) });
      return;
    }
    if (parts[2] !== 'd' || parts.length < 5) throw new CorruptStore(`unknown key ${key}`);
    const entry = this.docOf(chain, parts[3] as string);
    switch (parts[4]) {
      case 'meta':
        entry.meta = parsed as DocMeta;
        break;
      case 'e':
        if (typeof parsed !== 'string' || !/^[0-9a-f]*$/.test(parsed) || parsed.length !== 2 * docEntropyBytes) {
          throw new CorruptStore(`${key}: the entropy is not ${docEntropyBytes} bytes of hex`);
        }
        entry.entropy = new Uint8Array(Buffer.from(parsed, 'hex'));
        break;
      case 's':
        entry.snapshot = parsed as { seq: number; stateJson: string };
        break;
      case 'l':
        // A delta (it has a redo) or a queued envelope; no delta after an envelope.
        if (!isObject(parsed)) throw new CorruptStore(`${key}: a log entry is an object`);
        if ('redoJson' in parsed) {
          if (entry.queue.length > 0) throw new CorruptStore(`${key}: a delta after a queued envelope`);
          entry.log.push(parsed as unknown as WireDelta);
        } else entry.queue.push(parsed as unknown as WireEnvelope);
        break;
      case 'q':
        entry.queue.push(parsed as WireEnvelope);
        entry.legacyQueueSeqs.push((parsed as WireEnvelope).seq);
        break;
      case 'k': {
        const client = parts[5] as string;
        if (!Array.isArray(parsed)) throw new CorruptStore(`${key}: a dedupe entry is an array`);
        const [seq, outcomeJson, timestamp] = parsed as [number, string, number];
        const item: DedupeEntry = [Number(parts[6]), seq, outcomeJson, timestamp ?? 0];
        const window = entry.dedupe.get(client);
        if (window === undefined) entry.dedupe.set(client, [item]);
        else window.push(item); // keys sort by clientSeq within a client
        break;
      }
      default:
        throw new CorruptStore(`unknown key ${key}`);
    }
  }

  finish(): Map<string, RecoveredChain> {
    const chains = new Map<string, RecoveredChain>();
    for (const chain of new Set([...this.configs.keys(), ...this.raw.keys()])) {
      const docs = new Map<string, RecoveredDoc>();
      for (const [doc, entry] of this.raw.get(chain) ?? []) docs.set(doc, recoverDoc(chain, doc, entry));
      const config = this.configs.get(chain);
      chains.set(chain, {
        chain,
        config: config === undefined ? undefined : { chain: config.chain, epoch: config.epoch, members: config.members },
        caughtUpEpoch: config?.caughtUpEpoch ?? 0,
        servingFrom: config?.servingFrom ?? 0,
        docs,
      });
    }
    return chains;
  }

  private docOf(chain: string, doc: string): Raw {
    let docs = this.raw.get(chain);
    if (docs === undefined) this.raw.set(chain, (docs = new Map()));
    let entry = docs.get(doc);
    if (entry === undefined) docs.set(doc, (entry = { log: [], queue: [], legacyQueueSeqs: [], dedupe: new Map() }));
    return entry;
  }
}

function recoverDoc(chain: string, doc: string, entry: Raw): RecoveredDoc {
  const where = `chain ${chain} doc ${doc}`;
  const stored = entry.meta;
  if (stored === undefined) throw new CorruptStore(`${where}: entries without meta`);
  if (typeof stored.layout === 'number' && stored.layout > storeLayout) {
    throw new CorruptStore(`${where}: written by a newer version of adama-chain (store layout ${stored.layout}; this version reads up to ${storeLayout}); run that version`);
  }
  // Meta's appliedSeq is from its last write; every delta logged since is applied too. (So a
  // lost tail of the log, damage a crash cannot cause since batches are atomic, reads as an
  // earlier appliedSeq rather than as corruption.)
  const lastDelta = entry.log[entry.log.length - 1];
  const meta: DocMeta = { ...stored, appliedSeq: lastDelta === undefined ? stored.appliedSeq : Math.max(stored.appliedSeq, lastDelta.seq) };
  const type = findDocumentType(meta.docType);
  if (type === undefined) throw new CorruptStore(`${where}: unknown document type ${meta.docType}`);
  const entropy = entry.entropy;
  if (entropy === undefined) {
    // Making one up here would give each replica a different one (and other shuffles after a
    // failover); the chain's copy is lost with the old format.
    throw new OldStore(
      `${where}: the document has no entropy, so this data directory was written by an earlier version of adama-chain (before per-document entropy), which this one cannot take over safely. ` +
        'Delete the data directory and start the node again: it rejoins its chain and gets each document, with its entropy, by state transfer from a replica written by this version. ' +
        "If every replica's directory is that old, the documents cannot be kept: delete them all and start a new cluster.",
    );
  }
  let state: JsonObject;
  if (meta.snapshotSeq > 0) {
    const snapshot = entry.snapshot;
    if (snapshot === undefined || snapshot.seq !== meta.snapshotSeq) throw new CorruptStore(`${where}: snapshot ${snapshot?.seq} does not match meta ${meta.snapshotSeq}`);
    const parsed = parseObject(snapshot.stateJson);
    if (parsed === undefined) throw new CorruptStore(`${where}: snapshot is not an object`);
    state = parsed;
  } else {
    state = type.createState();
  }
  // Entries sort by seq within a doc (zero-padded keys).
  const log = entry.log;
  for (let i = 0; i < log.length; i++) {
    if ((log[i] as WireDelta).seq !== meta.logFrom + i) throw new CorruptStore(`${where}: log gap at ${meta.logFrom + i}`);
  }
  const lastLogged = log.length === 0 ? meta.logFrom - 1 : (log[log.length - 1] as WireDelta).seq;
  if (meta.appliedSeq > meta.snapshotSeq && (meta.logFrom > meta.snapshotSeq + 1 || lastLogged !== meta.appliedSeq)) {
    throw new CorruptStore(`${where}: log ${meta.logFrom}..${lastLogged} cannot rebuild ${meta.snapshotSeq}..${meta.appliedSeq}`);
  }
  for (const delta of log) {
    if (delta.seq <= meta.snapshotSeq) continue;
    const redo = parseObject(delta.redoJson);
    if (redo === undefined) throw new CorruptStore(`${where}: redo of ${delta.seq} is not an object`);
    applyInPlace(redo, state);
    if (!Number.isSafeInteger(delta.timestamp)) (delta as { timestamp: number }).timestamp = 0;
  }
  const queue = entry.queue;
  for (let i = 0; i < queue.length; i++) {
    if ((queue[i] as WireEnvelope).seq !== meta.appliedSeq + 1 + i) throw new CorruptStore(`${where}: queue gap at ${meta.appliedSeq + 1 + i}`);
  }
  // The envelope that creates the document carries its entropy (documents.ts stores it once).
  const first = queue[0];
  if (first !== undefined && first.seq === 1) first.entropy = entropy;
  // Least recently used first: by the seq of each client's latest entry, as the replica keeps them.
  const dedupe = new Map([...entry.dedupe].sort((a, b) => latestSeq(a[1]) - latestSeq(b[1])));
  return { doc, type, meta, entropy, state, log, queue, legacyQueueSeqs: entry.legacyQueueSeqs, dedupe };
}

/** The seq of a client's most recent entry: its place in the LRU order. */
export function latestSeq(window: readonly DedupeEntry[]): number {
  let seq = 0;
  for (const e of window) if (e[1] > seq) seq = e[1];
  return seq;
}

/** JSON text that parses to an object, or undefined (never throws). */
export function parseObject(text: string): JsonObject | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
