// Deterministic execution of one message against a document state.
//
// execute(type, state, envelope, entropy) -> { redo, undo, outcome, state }
// - entropy is the document's secret key (random.ts): ctx.random draws from
//   HMAC-SHA256(entropy, doc | seq), computed only when the handler first draws.
// - The same state (by value) and envelope always give byte-identical redo and undo.
// - Bad input (unknown channel, invalid or oversized payload) and handler failures give a
//   typed error outcome with empty redo and undo: the state is unchanged.
// - While a handler runs, Math.random, Date.now, argument-less `new Date()`, performance.now
//   and crypto's random sources are replaced by traps. A handler that touches one fails with
//   `nondeterministic_call`, even if it catches the trap's exception.

import { assert, debugAssert, debugChecks } from './assert.ts';
import { AnswerError } from './errors.ts';
import type { ChannelContext, DocumentType, Viewer } from './document.ts';
import { canonicalize, cloneJson, deepFreeze, isObject, isPlainJson, jsonEqual, JsonError, utf8Length, type Json, type JsonObject } from './json.ts';
import { apply, applyInPlace, change } from './patch.ts';
import { documentRandom, type DocumentEntropy, type Random } from './random.ts';
import { sealGlobals } from './seal.ts';
import { ValidationError } from './validate.ts';

export interface Envelope {
  readonly doc: string;
  /** Per-document sequence number assigned by the head, from 1. */
  readonly seq: number;
  /** Milliseconds since the epoch, assigned by the head; the handler's `ctx.now`. */
  readonly timestamp: number;
  /** Who sent the message. */
  readonly viewer: Viewer;
  readonly channel: string;
  readonly payload: unknown;
}

export type Outcome = OkOutcome | ErrorOutcome;
export interface OkOutcome {
  readonly ok: true;
}
export interface ErrorOutcome {
  readonly ok: false;
  readonly code: string;
  readonly message: string;
}

export interface ExecuteOptions {
  /**
   * Apply the redo by mutating `state` and return that same object, costing the size of the
   * patch instead of a copy of every changed object (for a tail or middle replica, which keeps
   * no older state). `state` must be the caller's own mutable copy (`DocumentType.createState`).
   */
  readonly inPlace?: boolean;
}

export interface Execution {
  readonly redo: JsonObject;
  readonly undo: JsonObject;
  readonly outcome: Outcome;
  /** The state after the message: apply(redo, state). */
  readonly state: JsonObject;
}

const OK: OkOutcome = Object.freeze({ ok: true });
const EMPTY: JsonObject = Object.freeze({}) as JsonObject;

/** A handler's refusal: control flow inside execute, caught there. */
class Rejection extends AnswerError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function execute(type: DocumentType, state: JsonObject, envelope: Envelope, entropy: DocumentEntropy, options: ExecuteOptions = {}): Execution {
  assert(isObject(state), 'execute: state must be an object');
  assert(Number.isSafeInteger(envelope.seq) && envelope.seq >= 1, () => `execute: bad seq ${envelope.seq}`);
  assert(Number.isSafeInteger(envelope.timestamp), () => `execute: bad timestamp ${envelope.timestamp}`);
  assert(typeof envelope.doc === 'string' && envelope.doc.length > 0, 'execute: empty doc id');
  assert(typeof envelope.viewer === 'string' && envelope.viewer.length > 0, 'execute: empty viewer');
  debugAssert(() => isPlainJson(state, true), 'execute: state is not plain, null-free JSON');

  const failed = (code: string, message: string): Execution => ({
    redo: EMPTY,
    undo: EMPTY,
    outcome: Object.freeze({ ok: false, code, message }),
    state,
  });

  const channel = type.findChannel(envelope.channel);
  if (channel === undefined) {
    return failed('unknown_channel', `document type ${type.name} has no channel ${JSON.stringify(envelope.channel)}`);
  }

  // Copy the payload once (a getter or Proxy is read exactly once, and nesting is bounded),
  // then measure the copy.
  const { payloadBytesMax, payloadDepthMax, patchDepthMax } = type.limits;
  let payload: Json;
  try {
    payload = canonicalize(envelope.payload, { depthMax: payloadDepthMax });
  } catch (error) {
    if (error instanceof JsonError && error.message.startsWith('nesting too deep')) {
      return failed('payload_too_large', `payload nests deeper than ${payloadDepthMax} levels (or is cyclic)`);
    }
    return failed('invalid_payload', error instanceof JsonError ? error.message : 'payload is not a JSON value');
  }
  const bytes = utf8Length(JSON.stringify(payload));
  if (bytes > payloadBytesMax) {
    return failed('payload_too_large', `payload is ${bytes} bytes; the limit is ${payloadBytesMax}`);
  }
  try {
    channel.validator.check(payload, '');
  } catch (error) {
    if (error instanceof ValidationError) return failed('invalid_payload', error.message);
    throw error;
  }

  let random: Random | undefined;
  let rejection: Rejection | undefined;
  const ctx: ChannelContext<string> = {
    doc: envelope.doc,
    seq: envelope.seq,
    now: envelope.timestamp,
    viewer: envelope.viewer,
    random: () => (random ??= documentRandom(envelope.doc, envelope.seq, entropy)).next(),
    randomInt: (bound) => (random ??= documentRandom(envelope.doc, envelope.seq, entropy)).int(bound),
    reject: (code, message) => {
      rejection ??= new Rejection(String(typeof code === 'string' ? code : ''), typeof message === 'string' ? message : '');
      throw rejection;
    },
  };

  // Everything that runs document code stays inside the seal: the handler, and reading what it
  // returned (a getter, a Proxy or a thenable's `then` is document code too). In debug runs an
  // in-place state is handed over as a frozen copy, so a handler that mutates its input fails
  // the same way on a tail as on a head.
  const input = options.inPlace === true && debugChecks ? deepFreeze(cloneJson(state)) : state;
  let patch: Json | undefined;
  let failure: [code: string, message: string] | undefined;
  const violations = sealGlobals();
  try {
    const returned: unknown = channel.handler(input, payload, ctx);
    if (returned !== undefined && returned !== null && typeof (returned as { then?: unknown }).then === 'function') {
      failure = ['handler_failed', `handler ${channel.name} returned a promise; handlers must be synchronous`];
      Promise.resolve(returned).then(undefined, () => undefined); // no unhandled rejection
    } else if (returned !== undefined) {
      if (!isObject(returned as Json)) {
        failure = ['invalid_patch', `handler ${channel.name} must return a merge patch object or nothing`];
      } else {
        try {
          patch = canonicalize(returned, { depthMax: patchDepthMax });
        } catch (error) {
          if (!(error instanceof JsonError)) throw error;
          failure = ['invalid_patch', `handler ${channel.name} returned a patch that is not JSON: ${error.message}`];
        }
      }
    }
  } catch (error) {
    failure = ['handler_failed', `handler ${channel.name} threw: ${describe(error)}`];
  } finally {
    violations.restore();
  }

  if (violations.names.length > 0) {
    return failed('nondeterministic_call', `handler ${channel.name} called ${violations.names.join(', ')}; use ctx.random() and ctx.now instead`);
  }
  if (rejection !== undefined) {
    if (!type.errors.has(rejection.code)) {
      return failed('handler_failed', `handler ${channel.name} rejected with undeclared code ${JSON.stringify(rejection.code)}`);
    }
    return failed(rejection.code, rejection.message);
  }
  if (failure !== undefined) return failed(failure[0], failure[1]);
  if (patch === undefined) return { redo: EMPTY, undo: EMPTY, outcome: OK, state };
  assert(isObject(patch), 'execute: canonical patch of an object is an object');
  const { redo, undo } = change(patch, state);
  let next: JsonObject;
  if (options.inPlace === true) {
    const before = debugChecks ? cloneJson(state) : undefined;
    applyInPlace(redo, state);
    next = state;
    debugAssert(() => jsonEqual(apply(undo, next), before as JsonObject), 'execute: undo does not restore the state');
  } else {
    const applied = apply(redo, state);
    assert(isObject(applied), 'execute: the state after a patch is an object');
    next = applied;
    debugAssert(() => jsonEqual(apply(undo, next), state), 'execute: undo does not restore the state');
  }
  debugAssert(() => isPlainJson(next, true), 'execute: next state is not plain, null-free JSON');
  return { redo, undo, outcome: OK, state: next };
}

/** A message for anything thrown, without trusting it (it may be a null-prototype object). */
function describe(thrown: unknown): string {
  try {
    return thrown instanceof Error ? thrown.message : String(thrown);
  } catch {
    return Object.prototype.toString.call(thrown);
  }
}
