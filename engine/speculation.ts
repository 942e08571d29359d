// Speculation at the head: confirmed state plus the queue of messages not yet committed.
//
// The head sequences every message, so it can execute each one at once on top of the queue
// and show clients the result before the chain commits it. Execution is deterministic, so the
// committed delta normally equals the speculated one and confirming it is a pointer move.
// When it differs (or when a failure drops queued messages), the rest of the queue is
// re-executed on the new confirmed state: a rebase.

import { assert, debugAssert } from './assert.ts';
import type { DocumentType } from './document.ts';
import { LimitError } from './errors.ts';
import { isObject, jsonEqual, type JsonObject } from './json.ts';
import { execute, type Envelope, type Execution, type Outcome } from './execute.ts';
import { apply, diff, type Patch } from './patch.ts';
import type { DocumentEntropy } from './random.ts';

export interface Pending {
  readonly seq: number;
  /** The message, or undefined for one already executed elsewhere (its delta is known). */
  readonly envelope: Envelope | undefined;
  /** The speculative execution; its `state` is the speculative state after this message. */
  readonly execution: Execution;
}

/** A committed message's delta, as the chain delivers it back to the head. */
export interface CommittedDelta {
  readonly redo: JsonObject;
  readonly outcome: Outcome;
}

export interface Transition {
  /** Speculative state before and after. */
  readonly before: JsonObject;
  readonly after: JsonObject;
  /** Seqs of queued messages thrown away by this step (never committed). */
  readonly dropped: readonly number[];
  /** True when queued messages had to be re-executed. */
  readonly rebased: boolean;
}

export class Speculation {
  private confirmedState: JsonObject;
  private confirmedSeqValue: number;
  private readonly pending: Pending[] = [];

  constructor(
    readonly type: DocumentType,
    confirmed: JsonObject,
    confirmedSeq: number,
    /**
     * The document's secret key (random.ts), or a function that gives it when a message runs:
     * a head's view may start before its document (and so its entropy) exists.
     */
    readonly entropy: DocumentEntropy | (() => DocumentEntropy),
    /** Bound on messages executed speculatively and not yet committed. */
    readonly queueDepthMax = 1024,
  ) {
    assert(isObject(confirmed), 'Speculation: confirmed state must be an object');
    debugAssert(() => Object.isFrozen(confirmed), 'Speculation: the confirmed state must be persistent, not a mutable copy');
    assert(Number.isSafeInteger(confirmedSeq) && confirmedSeq >= 0, 'Speculation: bad confirmedSeq');
    assert(Number.isInteger(queueDepthMax) && queueDepthMax > 0, 'Speculation: queueDepthMax must be positive');
    this.confirmedState = confirmed;
    this.confirmedSeqValue = confirmedSeq;
  }

  get confirmed(): JsonObject {
    return this.confirmedState;
  }

  get confirmedSeq(): number {
    return this.confirmedSeqValue;
  }

  get speculative(): JsonObject {
    const last = this.pending[this.pending.length - 1];
    return last === undefined ? this.confirmedState : last.execution.state;
  }

  get queue(): readonly Pending[] {
    return this.pending;
  }

  get full(): boolean {
    return this.pending.length >= this.queueDepthMax;
  }

  private get lastSeq(): number {
    const last = this.pending[this.pending.length - 1];
    return last === undefined ? this.confirmedSeqValue : last.seq;
  }

  /** Executes a newly sequenced message on top of the queue. Throws LimitError when full. */
  push(envelope: Envelope): Execution {
    if (this.full) {
      throw new LimitError('queueDepthMax', this.queueDepthMax, `speculation queue of ${envelope.doc} is full`);
    }
    assert(envelope.seq > this.lastSeq, () => `Speculation.push: seq ${envelope.seq} is not after ${this.lastSeq}`);
    const execution = execute(this.type, this.speculative, envelope, this.key());
    this.pending.push({ seq: envelope.seq, envelope, execution });
    return execution;
  }

  /**
   * Adds a message the chain already executed but has not committed yet (its delta is known):
   * a view that starts while deltas are on their way to durability shows them as speculative.
   */
  pushApplied(seq: number, delta: CommittedDelta & { readonly undo: JsonObject }): void {
    if (this.full) throw new LimitError('queueDepthMax', this.queueDepthMax, 'speculation queue is full');
    assert(seq === this.lastSeq + 1, () => `Speculation.pushApplied: seq ${seq} does not follow ${this.lastSeq}`);
    const state = apply(delta.redo, this.speculative);
    assert(isObject(state), 'Speculation.pushApplied: state became a non-object');
    this.pending.push({ seq, envelope: undefined, execution: { redo: delta.redo, undo: delta.undo, outcome: delta.outcome, state } });
  }

  /**
   * The chain committed `seq` with `delta`. Advances the confirmed state; queued messages with
   * a lower seq were never committed and are dropped; the rest of the queue is rebased if the
   * committed delta differs from the speculated one.
   */
  confirm(seq: number, delta: CommittedDelta): Transition {
    assert(seq > this.confirmedSeqValue, () => `Speculation.confirm: seq ${seq} is not after ${this.confirmedSeqValue}`);
    const before = this.speculative;
    const dropped: number[] = [];
    while (this.pending.length > 0 && (this.pending[0] as Pending).seq < seq) {
      dropped.push((this.pending.shift() as Pending).seq);
    }
    const head = this.pending[0];
    const matches = head !== undefined && head.seq === seq && jsonEqual(head.execution.redo, delta.redo) && sameOutcome(head.execution.outcome, delta.outcome);
    if (head !== undefined && head.seq === seq) this.pending.shift();
    this.confirmedSeqValue = seq;
    if (matches && dropped.length === 0) {
      // Keep the speculated object: equal by value, and identity lets views skip it.
      this.confirmedState = head.execution.state;
      return { before, after: this.speculative, dropped, rebased: false };
    }
    const next = apply(delta.redo, this.confirmedState);
    assert(isObject(next), 'Speculation.confirm: committed state is not an object');
    this.confirmedState = next;
    this.reexecuteFrom(0);
    return { before, after: this.speculative, dropped, rebased: true };
  }

  /** A failure lost queued message `seq`: remove it and rebase what follows. */
  drop(seq: number): Transition & { readonly rollback: Patch } {
    const index = this.pending.findIndex((entry) => entry.seq === seq);
    assert(index >= 0, () => `Speculation.drop: seq ${seq} is not queued`);
    const before = this.speculative;
    this.pending.splice(index, 1);
    this.reexecuteFrom(index);
    const after = this.speculative;
    return { before, after, dropped: [seq], rebased: index < this.pending.length, rollback: diff(before, after) };
  }

  /** Drops every queued message (the head lost its role); returns the rollback. */
  dropAll(): Transition & { readonly rollback: Patch } {
    const before = this.speculative;
    const dropped = this.pending.map((entry) => entry.seq);
    this.pending.length = 0;
    return { before, after: this.confirmedState, dropped, rebased: false, rollback: diff(before, this.confirmedState) };
  }

  private key(): DocumentEntropy {
    return typeof this.entropy === 'function' ? this.entropy() : this.entropy;
  }

  private reexecuteFrom(index: number): void {
    let state = index === 0 ? this.confirmedState : (this.pending[index - 1] as Pending).execution.state;
    for (let i = index; i < this.pending.length; i++) {
      const entry = this.pending[i] as Pending;
      let execution: Execution;
      if (entry.envelope !== undefined) {
        execution = execute(this.type, state, entry.envelope, this.key());
      } else {
        // Executed by the chain already: its delta applies as it is on the new base.
        const next = apply(entry.execution.redo, state);
        assert(isObject(next), 'Speculation: a known delta made a non-object');
        execution = { ...entry.execution, state: next };
      }
      this.pending[i] = { seq: entry.seq, envelope: entry.envelope, execution };
      state = execution.state;
    }
    debugAssert(() => this.pending.every((entry, i) => i === 0 || (this.pending[i - 1] as Pending).seq < entry.seq), 'Speculation: queue seqs are not increasing');
  }
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  if (a.ok || b.ok) return a.ok === b.ok;
  return a.code === b.code && a.message === b.message;
}
