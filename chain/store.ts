// A replica's durable contents in a LevelDB-style ordered key-value store.
//
// The replica (replica.ts) never reads the store while it runs: it keeps everything in
// memory, and every change it makes is a list of puts and deletes that it hands out as one
// atomic batch (group commit: one `sync: true` batch for everything since the last write).
// The store is read once, at startup, by `recover`. The runtime opens a LevelDB directory
// (`level`); the simulator opens `memory-level`. Both use this file.
//
// Key layout (all keys and values UTF-8; chain, doc and client ids use [A-Za-z0-9._:-] only,
// so "!" separates fields; seqs are 16-digit zero-padded decimals so they sort numerically):
//
//   c!{chain}!config                  {chain, epoch, members: [{node, address, sinceEpoch}]}
//   c!{chain}!d!{doc}!meta            {docType, appliedSeq, snapshotSeq, logFrom}
//   c!{chain}!d!{doc}!q!{seq}         queued envelope (sequenced, not yet applied here)
//   c!{chain}!d!{doc}!l!{seq}         delta log entry {seq, redoJson, undoJson, outcomeJson, clientId, clientSeq}
//   c!{chain}!d!{doc}!s               snapshot {seq, stateJson}: the state after applying seq
//   c!{chain}!d!{doc}!k!{clientId}!{clientSeq}   dedupe entry [seq, outcomeJson] (the last
//                                     dedupeWindowMax per client; one key each, so a commit writes O(1))
//
// Invariants (checked by `recover`, the disk-side half of the replica's paired checks):
// - the state at appliedSeq is the snapshot (or the type's initial state when snapshotSeq is 0)
//   with the log entries snapshotSeq+1..appliedSeq applied in order;
// - the log holds every seq from logFrom to appliedSeq (logFrom <= snapshotSeq + 1);
// - queue entries are appliedSeq+1, appliedSeq+2, ... with no gap.

import type { AbstractLevel } from 'abstract-level';
import { assert } from '../engine/assert.ts';
import type { DocumentType } from '../engine/document.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { cloneJson, isObject, type JsonObject } from '../engine/json.ts';
import { applyInPlace } from '../engine/patch.ts';
import type { Member, WireDelta, WireEnvelope } from './wire.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Store = AbstractLevel<any, string, string>;

export type Op = { readonly type: 'put'; readonly key: string; readonly value: string } | { readonly type: 'del'; readonly key: string };

/** One atomic write. Ids increase by one per batch; completions arrive in id order. */
export interface Batch {
  readonly id: number;
  readonly ops: readonly Op[];
}

export interface ChainConfig {
  readonly chain: string;
  readonly epoch: number;
  /** Head first, tail last. */
  readonly members: readonly Member[];
}

export interface DocMeta {
  docType: string;
  appliedSeq: number;
  snapshotSeq: number;
  logFrom: number;
}

export type DedupeEntry = readonly [clientSeq: number, seq: number, outcomeJson: string];

export interface RecoveredDoc {
  readonly doc: string;
  readonly type: DocumentType;
  readonly meta: DocMeta;
  /** Mutable state at meta.appliedSeq. */
  readonly state: JsonObject;
  /** Log entries logFrom..appliedSeq, in order. */
  readonly log: WireDelta[];
  readonly queue: WireEnvelope[];
  /** Least recently used client first. */
  readonly dedupe: Map<string, DedupeEntry[]>;
}

export interface RecoveredChain {
  readonly chain: string;
  readonly config: ChainConfig | undefined;
  readonly docs: Map<string, RecoveredDoc>;
}

/** Ids that may appear in keys: chains, documents and clients. */
export const idPattern = /^[A-Za-z0-9._:-]{1,128}$/;

const seqDigits = 16;
export const seqKey = (seq: number): string => String(seq).padStart(seqDigits, '0');

export const keys = {
  config: (chain: string) => `c!${chain}!config`,
  meta: (chain: string, doc: string) => `c!${chain}!d!${doc}!meta`,
  queue: (chain: string, doc: string, seq: number) => `c!${chain}!d!${doc}!q!${seqKey(seq)}`,
  log: (chain: string, doc: string, seq: number) => `c!${chain}!d!${doc}!l!${seqKey(seq)}`,
  snapshot: (chain: string, doc: string) => `c!${chain}!d!${doc}!s`,
  dedupe: (chain: string, doc: string, client: string, clientSeq: number) => `c!${chain}!d!${doc}!k!${client}!${seqKey(clientSeq)}`,
};

/** Writes one batch atomically; `sync` waits until it is on disk. */
export async function writeBatch(store: Store, batch: Batch, sync: boolean): Promise<void> {
  if (batch.ops.length === 0) return;
  // A chained batch: cheaper per op than the array form, which clones every operation.
  const chained = store.batch();
  for (const op of batch.ops) {
    if (op.type === 'put') chained.put(op.key, op.value);
    else chained.del(op.key);
  }
  await chained.write({ sync } as never);
}

class CorruptStore extends Error {
  override name = 'CorruptStore';
}

/** Reads every chain's contents back into memory and checks the layout's invariants. */
export async function recover(store: Store): Promise<Map<string, RecoveredChain>> {
  type Raw = { meta?: DocMeta; snapshot?: { seq: number; stateJson: string }; log: WireDelta[]; queue: WireEnvelope[]; dedupe: Map<string, DedupeEntry[]> };
  const configs = new Map<string, ChainConfig>();
  const raw = new Map<string, Map<string, Raw>>();
  const docOf = (chain: string, doc: string): Raw => {
    let docs = raw.get(chain);
    if (docs === undefined) raw.set(chain, (docs = new Map()));
    let entry = docs.get(doc);
    if (entry === undefined) docs.set(doc, (entry = { log: [], queue: [], dedupe: new Map() }));
    return entry;
  };
  for await (const [key, value] of store.iterator({ gte: 'c!', lt: 'c"' })) {
    const parts = key.split('!');
    const chain = parts[1] as string;
    const parsed = JSON.parse(value) as unknown;
    if (parts.length === 3 && parts[2] === 'config') {
      configs.set(chain, parsed as ChainConfig);
      continue;
    }
    if (parts[2] !== 'd' || parts.length < 5) throw new CorruptStore(`unknown key ${key}`);
    const entry = docOf(chain, parts[3] as string);
    switch (parts[4]) {
      case 'meta':
        entry.meta = parsed as DocMeta;
        break;
      case 's':
        entry.snapshot = parsed as { seq: number; stateJson: string };
        break;
      case 'l':
        entry.log.push(parsed as WireDelta);
        break;
      case 'q':
        entry.queue.push(parsed as WireEnvelope);
        break;
      case 'k': {
        const client = parts[5] as string;
        const [seq, outcomeJson] = parsed as [number, string];
        const window = entry.dedupe.get(client);
        const item: DedupeEntry = [Number(parts[6]), seq, outcomeJson];
        if (window === undefined) entry.dedupe.set(client, [item]);
        else window.push(item); // keys sort by clientSeq within a client
        break;
      }
      default:
        throw new CorruptStore(`unknown key ${key}`);
    }
  }
  const chains = new Map<string, RecoveredChain>();
  for (const chain of new Set([...configs.keys(), ...raw.keys()])) {
    const docs = new Map<string, RecoveredDoc>();
    for (const [doc, entry] of raw.get(chain) ?? []) {
      const where = `chain ${chain} doc ${doc}`;
      const meta = entry.meta;
      if (meta === undefined) throw new CorruptStore(`${where}: entries without meta`);
      const type = findDocumentType(meta.docType);
      if (type === undefined) throw new CorruptStore(`${where}: unknown document type ${meta.docType}`);
      let state: JsonObject;
      if (meta.snapshotSeq > 0) {
        const snapshot = entry.snapshot;
        if (snapshot === undefined || snapshot.seq !== meta.snapshotSeq) throw new CorruptStore(`${where}: snapshot ${snapshot?.seq} does not match meta ${meta.snapshotSeq}`);
        const parsed = JSON.parse(snapshot.stateJson) as unknown;
        if (!isObject(parsed)) throw new CorruptStore(`${where}: snapshot is not an object`);
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
        const redo = JSON.parse(delta.redoJson) as unknown;
        assert(isObject(redo), `${where}: redo of ${delta.seq} is not an object`);
        applyInPlace(redo, state);
      }
      const queue = entry.queue;
      for (let i = 0; i < queue.length; i++) {
        if ((queue[i] as WireEnvelope).seq !== meta.appliedSeq + 1 + i) throw new CorruptStore(`${where}: queue gap at ${meta.appliedSeq + 1 + i}`);
      }
      // Least recently used first: order clients by the seq of their last entry.
      const dedupe = new Map([...entry.dedupe].sort((a, b) => lastSeqOf(a[1]) - lastSeqOf(b[1])));
      docs.set(doc, { doc, type, meta, state: cloneJson(state), log, queue, dedupe });
    }
    chains.set(chain, { chain, config: configs.get(chain), docs });
  }
  return chains;
}

function lastSeqOf(window: readonly DedupeEntry[]): number {
  const last = window[window.length - 1];
  return last === undefined ? 0 : last[1];
}
