// Validation of what peers send. A peer's frame is input, not an invariant: every field is
// checked before it is used, and a bad one is a typed rejection (the runtime sends it and
// closes that link; the node keeps serving everything else). Assertions stay for this node's
// own invariants. Checks that would cost a parse are made where the value is parsed anyway
// (a redo at the node that applies it, a payload at the tail that executes it).

import { findDocumentType } from '../../engine/documents/index.ts';
import { isObject, type JsonObject } from '../../engine/json.ts';
import { idPattern } from './config.ts';
import type { DocCatchup, DocSeq, WireDelta, WireEnvelope } from './frames.ts';
import type { DedupeEntry } from './store.ts';

/** A peer broke the protocol or is fenced: the runtime sends this failure and closes that link. */
export interface Rejection {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

export function protocol(message: string): Rejection {
  return { code: 'protocol_error', message, retryable: true };
}

export function invalid(message: string): Rejection {
  return { code: 'invalid_frame', message, retryable: false };
}

/** Bound on one JSON text a peer sends (a payload, a patch, a snapshot is checked by frameBytesMax). */
export const peerJsonBytesMax = 64 * 1024 * 1024;
const viewerBytesMax = 128;
const channelBytesMax = 64;

/** Bytes of a document's entropy (documents.ts makes it; random.ts keys the PRNG with it). */
export const docEntropyBytes = 32;

/** A document's entropy as a peer sent it: exactly docEntropyBytes bytes. */
export const isEntropy = (e: unknown): e is Uint8Array => e instanceof Uint8Array && e.length === docEntropyBytes;

const isSeq = (n: unknown, min: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= min;
const isText = (s: unknown, max: number): s is string => typeof s === 'string' && s.length <= max;

function checkClient(clientId: unknown, clientSeq: unknown, what: string): string | undefined {
  if (typeof clientId !== 'string' || (clientId !== '' && !idPattern.test(clientId))) return `${what}: bad clientId`;
  if (!isSeq(clientSeq, clientId === '' ? 0 : 1)) return `${what}: bad clientSeq`;
  return undefined;
}

export function checkEnvelope(e: WireEnvelope): string | undefined {
  if (!isText(e.doc, 128) || !idPattern.test(e.doc)) return 'envelope: bad doc id';
  if (!isText(e.docType, 128) || findDocumentType(e.docType) === undefined) return `envelope ${e.doc}: unknown document type`;
  if (!isSeq(e.seq, 1)) return `envelope ${e.doc}: bad seq`;
  if (typeof e.timestamp !== 'number' || !Number.isSafeInteger(e.timestamp)) return `envelope ${e.doc}@${e.seq}: bad timestamp`;
  if (!isText(e.viewer, viewerBytesMax) || e.viewer.length === 0) return `envelope ${e.doc}@${e.seq}: bad viewer`;
  if (!isText(e.channel, channelBytesMax) || e.channel.length === 0) return `envelope ${e.doc}@${e.seq}: bad channel`;
  if (!isText(e.payloadJson, peerJsonBytesMax)) return `envelope ${e.doc}@${e.seq}: bad payload`;
  // Seq 1 creates the document on every replica that lacks it: it carries the entropy, and
  // only it does (the protobuf decoder leaves an absent field out).
  if (e.seq === 1) {
    if (!isEntropy(e.entropy)) return `envelope ${e.doc}@1: the envelope that creates the document must carry its entropy of ${docEntropyBytes} bytes`;
  } else if (e.entropy !== undefined && (!(e.entropy instanceof Uint8Array) || e.entropy.length > 0)) {
    return `envelope ${e.doc}@${e.seq}: only the envelope of seq 1 carries the entropy`;
  }
  return checkClient(e.clientId, e.clientSeq, `envelope ${e.doc}@${e.seq}`);
}

export function checkDelta(d: WireDelta): string | undefined {
  if (!isText(d.doc, 128) || !idPattern.test(d.doc)) return 'delta: bad doc id';
  if (!isSeq(d.seq, 1)) return `delta ${d.doc}: bad seq`;
  if (!isText(d.redoJson, peerJsonBytesMax) || !isText(d.undoJson, peerJsonBytesMax) || !isText(d.outcomeJson, 64 * 1024)) return `delta ${d.doc}@${d.seq}: bad JSON fields`;
  if (typeof d.timestamp !== 'number' || !Number.isSafeInteger(d.timestamp)) return `delta ${d.doc}@${d.seq}: bad timestamp`;
  // Every node stores the undo and the outcome and passes them on: check them where they enter.
  if (!isObject(parseJson(d.undoJson))) return `delta ${d.doc}@${d.seq}: the undo is not a JSON object`;
  if (!isOutcome(parseJson(d.outcomeJson))) return `delta ${d.doc}@${d.seq}: the outcome is malformed`;
  return checkClient(d.clientId, d.clientSeq, `delta ${d.doc}@${d.seq}`);
}

/** {ok: true} or {ok: false, code, message}. */
export function isOutcome(value: unknown): boolean {
  if (!isObject(value)) return false;
  if (value.ok === true) return true;
  return value.ok === false && typeof value.code === 'string' && typeof value.message === 'string';
}

export function checkDocSeq(d: DocSeq): string | undefined {
  if (!isText(d.doc, 128) || !idPattern.test(d.doc)) return 'bad doc id';
  if (!isText(d.docType, 128) || findDocumentType(d.docType) === undefined) return `${d.doc}: unknown document type`;
  if (!isSeq(d.seq, 0) || !isSeq(d.lastSeq, 0) || d.lastSeq < d.seq) return `${d.doc}: bad seqs`;
  return undefined;
}

/** A catch-up's fields; its snapshot and dedupe table parsed (undefined without a snapshot). */
export function checkCatchup(c: DocCatchup): { problem: string } | { state: JsonObject | undefined; dedupe: Map<string, DedupeEntry[]> | undefined } {
  if (!isText(c.doc, 128) || !idPattern.test(c.doc)) return { problem: 'catchup: bad doc id' };
  if (!isText(c.docType, 128) || findDocumentType(c.docType) === undefined) return { problem: `catchup ${c.doc}: unknown document type` };
  if (!isSeq(c.snapshotSeq, 0)) return { problem: `catchup ${c.doc}: bad snapshotSeq` };
  if (!isEntropy(c.entropy)) return { problem: `catchup ${c.doc}: the entropy must be ${docEntropyBytes} bytes` };
  let expected = c.snapshotSeq > 0 ? c.snapshotSeq + 1 : 0;
  for (const d of c.deltas) {
    const problem = checkDelta(d);
    if (problem !== undefined) return { problem };
    if (d.doc !== c.doc) return { problem: `catchup ${c.doc}: a delta of ${d.doc}` };
    if (expected !== 0 && d.seq !== expected) return { problem: `catchup ${c.doc}: deltas are not consecutive at ${d.seq}` };
    expected = d.seq + 1;
  }
  if (c.snapshotSeq === 0) return { state: undefined, dedupe: undefined };
  const state = parseJson(c.snapshotJson);
  if (!isObject(state)) return { problem: `catchup ${c.doc}: the snapshot is not an object` };
  const dedupe = parseDedupe(c.dedupeJson);
  if (dedupe === undefined) return { problem: `catchup ${c.doc}: the dedupe table is malformed` };
  return { state, dedupe };
}

function parseDedupe(text: string): Map<string, DedupeEntry[]> | undefined {
  const value = parseJson(text);
  if (!Array.isArray(value)) return undefined;
  const out = new Map<string, DedupeEntry[]>();
  for (const item of value) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || !idPattern.test(item[0]) || !Array.isArray(item[1])) return undefined;
    const window: DedupeEntry[] = [];
    for (const e of item[1] as unknown[]) {
      if (!Array.isArray(e) || !isSeq(e[0], 1) || !isSeq(e[1], 1) || typeof e[2] !== 'string' || typeof e[3] !== 'number' || !Number.isSafeInteger(e[3])) return undefined;
      // The outcome is answered to a resend as is; the window is sorted by clientSeq (dedupe.ts).
      if (!isOutcome(parseJson(e[2])) || (window.length > 0 && (window[window.length - 1] as DedupeEntry)[0] >= e[0])) return undefined;
      window.push([e[0], e[1], e[2], e[3]]);
    }
    out.set(item[0], window);
  }
  return out;
}

/** Parsed JSON text, or undefined (never throws). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
