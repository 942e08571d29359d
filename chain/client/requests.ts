// Requests over one link, written against Link and Clock (runtime/io.ts) so the simulator
// runs them: a request gets a fresh requestId, its answer (or a typed failure, or a timeout)
// reaches its callback once. HeadLink speaks the head API (submit, subscribe, unsubscribe,
// lookup); AdminLink the admin API (configure, lookup, status, control). Frames of one link
// are handled in arrival order, so a subscription's full view always reaches its handler
// before the patches that follow it.

import { AnswerError } from '../../engine/errors.ts';
import type { Outcome } from '../../engine/execute.ts';
import type { ChainConfig } from '../core/config.ts';
import { make, requestIdOf, type ChainInfo, type Failure, type Frame, type ViewUpdate } from '../core/frames.ts';
import type { Clock, Link, LinkError, Timer } from '../runtime/io.ts';

/** A typed error from a node, or from the connection. */
export class ChainError extends AnswerError {
  override name = 'ChainError';
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    readonly hint = '',
  ) {
    super(`${code}: ${message}`);
  }

  static from(f: Failure): ChainError {
    return new ChainError(f.code, f.message, f.retryable, f.hint);
  }

  static lost(error: LinkError | undefined): ChainError {
    return new ChainError('connection_lost', error?.message ?? 'the node closed the connection', true);
  }
}

export interface RequestOptions {
  /** A request with no answer after this long fails with `timeout` (outcome unknown). */
  readonly requestTimeoutMs?: number;
  /** Requests waiting for an answer on one link. */
  readonly requestsInflightMax?: number;
  /** Largest payload of one submit (bytes of UTF-8 JSON); a larger one is refused before it is sent. */
  readonly payloadBytesMax?: number;
}

/** Default payloadBytesMax: well inside a node's frame bound (4 MiB), so one request can never make the shared link fail. */
export const payloadBytesMaxDefault = 1024 * 1024;

/** Errors the request itself caused: resending it cannot succeed, and it says nothing about the link or the node. */
export const inputErrorCodes: ReadonlySet<string> = new Set(['invalid_request', 'invalid_payload', 'payload_too_large', 'encode_failed']);

/** Whether `text` is well-formed UTF-16 (no lone surrogate): a node refuses a frame holding one, and closes the whole link. */
export function wellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** The first string field of a frame's body that is not well-formed, if any (iterative; frames are shallow). */
function illFormedField(frame: Frame): string | undefined {
  const stack: [string, unknown][] = [[frame.kind, (frame as unknown as Record<string, unknown>)[frame.kind]]];
  let visited = 0;
  while (stack.length > 0) {
    const [path, value] = stack.pop() as [string, unknown];
    if (++visited > 10_000) return `${path} (too many fields)`;
    if (typeof value === 'string') {
      if (!wellFormed(value)) return path;
    } else if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
      for (const [key, item] of Object.entries(value)) stack.push([`${path}.${key}`, item]);
    }
  }
  return undefined;
}

export interface SubmitRequest {
  chain: string;
  doc: string;
  docType: string;
  channel: string;
  payload: unknown;
  clientId: string;
  clientSeq: number;
  viewer: string;
}

export interface SubmitResult {
  seq: number;
  outcome: Outcome;
  duplicate: boolean;
}

export type Done<T> = (error: ChainError | undefined, value?: T) => void;

interface Pending {
  readonly done: (frame: Frame | ChainError) => void;
  readonly timer: Timer;
}

class RequestLink {
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private readonly closeHandlers: ((error: LinkError | undefined) => void)[] = [];
  private closed = false;

  constructor(
    readonly link: Link,
    protected readonly clock: Clock,
    protected readonly options: RequestOptions,
  ) {
    link.onFrame((frame) => this.receive(frame));
    link.onClose((error) => {
      if (this.closed) return;
      this.closed = true;
      const lost = ChainError.lost(error);
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const p of pending) {
        p.timer.cancel();
        p.done(lost);
      }
      this.closedWith(error);
      for (const handler of this.closeHandlers) handler(error);
    });
  }

  get isOpen(): boolean {
    return !this.closed && this.link.isOpen;
  }

  onClose(handler: (error: LinkError | undefined) => void): void {
    if (this.closed) this.clock.soon(() => handler(undefined));
    else this.closeHandlers.push(handler);
  }

  close(): void {
    this.link.close();
  }

  /** Hook for subclasses: the link closed. */
  protected closedWith(_error: LinkError | undefined): void {}

  /** Sends the frame `build` makes for a fresh requestId; `done` gets the answer. Returns the requestId (0 if refused at once). */
  protected request(build: (requestId: number) => Frame, done: (frame: Frame | ChainError) => void, timeoutMs = this.options.requestTimeoutMs ?? 10_000): number {
    const max = this.options.requestsInflightMax ?? 10_000;
    if (this.pending.size >= max) {
      this.clock.soon(() => done(new ChainError('too_many_requests', `requestsInflightMax (${max}) reached on this connection`, true)));
      return 0;
    }
    if (!this.isOpen) {
      this.clock.soon(() => done(new ChainError('connection_lost', 'the connection is closed', true)));
      return 0;
    }
    const requestId = this.nextRequestId++;
    // One request's bad input must fail that request alone, never the link every other request shares.
    let frame: Frame;
    try {
      frame = build(requestId);
    } catch (error) {
      this.clock.soon(() => done(new ChainError('encode_failed', `the request could not be encoded: ${(error as Error).message}`, false)));
      return 0;
    }
    const bad = illFormedField(frame);
    if (bad !== undefined) {
      this.clock.soon(() => done(new ChainError('invalid_request', `${bad} is not a well-formed string (a lone surrogate); the request was not sent`, false)));
      return 0;
    }
    const timer = this.clock.after(timeoutMs, () => {
      if (!this.pending.delete(requestId)) return;
      this.timedOut(requestId);
      done(new ChainError('timeout', `no answer within ${timeoutMs} ms; the outcome is unknown`, true));
    });
    this.pending.set(requestId, { done, timer });
    this.link.send(frame);
    return requestId;
  }

  /** What the node knows of `chain` (the chain '' asks only whether the node runs: a keepalive). */
  lookup(chain: string, done: Done<ChainInfo>, timeoutMs?: number): void {
    this.request(
      (requestId) => make('lookup', { requestId, chain }),
      (answer) => {
        if (answer instanceof ChainError) return done(answer);
        if (answer.kind !== 'chainInfo') return done(new ChainError('protocol_error', `lookup answered with ${answer.kind}`, true));
        done(undefined, answer.chainInfo);
      },
      timeoutMs,
    );
  }

  /** Hook for subclasses: a request got no answer in time. */
  protected timedOut(_requestId: number): void {}

  protected receive(frame: Frame): void {
    this.answer(requestIdOf(frame), frame);
  }

  protected answer(requestId: number, frame: Frame): boolean {
    const p = this.pending.get(requestId);
    if (p === undefined) return false;
    this.pending.delete(requestId);
    p.timer.cancel();
    p.done(frame.kind === 'failure' ? ChainError.from(frame.failure) : frame);
    return true;
  }

  protected isPending(requestId: number): boolean {
    return this.pending.has(requestId);
  }
}

export interface SubscribeRequest {
  chain: string;
  doc: string;
  docType: string;
  viewer: string;
}

interface StreamHandlers {
  readonly doc: string;
  readonly onView: (update: ViewUpdate) => void;
  readonly onEnd: (error: ChainError) => void;
}

/** The head API over one link (a client connection). */
export class HeadLink extends RequestLink {
  /** Subscriptions whose full view arrived, by requestId. */
  private readonly streams = new Map<number, StreamHandlers>();
  /** Subscriptions waiting for their full view: requestId -> doc. */
  private readonly starting = new Map<number, string>();

  submit(r: SubmitRequest, done: Done<SubmitResult>): void {
    const refuse = (code: string, message: string): void => this.clock.soon(() => done(new ChainError(code, message, false)));
    let payloadJson: string | undefined;
    try {
      payloadJson = JSON.stringify(r.payload);
    } catch (error) {
      // Too deep for the stack, a cycle, a BigInt: the payload's fault, not the link's.
      return refuse('invalid_payload', `the payload cannot be encoded as JSON: ${(error as Error).message}`);
    }
    if (payloadJson === undefined) return refuse('invalid_payload', 'the payload is not JSON');
    const payloadBytesMax = this.options.payloadBytesMax ?? payloadBytesMaxDefault;
    if (payloadJson.length > payloadBytesMax || Buffer.byteLength(payloadJson) > payloadBytesMax)
      return refuse('payload_too_large', `payloads are at most ${payloadBytesMax} bytes of JSON (payloadBytesMax)`);
    this.request(
      (requestId) => make('submit', { requestId, chain: r.chain, doc: r.doc, docType: r.docType, channel: r.channel, payloadJson, clientId: r.clientId, clientSeq: r.clientSeq, viewer: r.viewer }),
      (answer) => {
        if (answer instanceof ChainError) return done(answer);
        if (answer.kind !== 'ack') return done(new ChainError('protocol_error', `submit answered with ${answer.kind}`, true));
        let outcome: Outcome;
        try {
          outcome = JSON.parse(answer.ack.outcomeJson) as Outcome;
        } catch {
          return done(new ChainError('protocol_error', 'the ack carries no outcome', true));
        }
        done(undefined, { seq: answer.ack.seq, outcome, duplicate: answer.ack.duplicate });
      },
    );
  }

  /**
   * Subscribes; every frame of the subscription reaches `onView` in order, the full view first.
   * `onEnd` runs once if the subscription ends (refused, timed out before its full view, ended
   * by the head, or the link closed). Returns the subscription's requestId (for unsubscribe).
   */
  subscribe(r: SubscribeRequest, onView: (update: ViewUpdate) => void, onEnd: (error: ChainError) => void): number {
    let id = 0;
    this.request(
      (requestId) => {
        id = requestId;
        this.starting.set(requestId, r.doc);
        return make('subscribe', { requestId, chain: r.chain, doc: r.doc, docType: r.docType, viewer: r.viewer });
      },
      (answer) => {
        this.starting.delete(id);
        if (answer instanceof ChainError) return onEnd(answer);
        if (answer.kind !== 'viewUpdate' || answer.viewUpdate.kind !== 'full') {
          onEnd(new ChainError('protocol_error', 'a subscription must start with a full view', true));
          return;
        }
        this.streams.set(id, { doc: r.doc, onView, onEnd });
        onView(answer.viewUpdate);
      },
    );
    return id;
  }

  /** Ends the subscription made with `requestId` (also one whose full view has not arrived yet). */
  unsubscribe(requestId: number, doc: string): void {
    this.streams.delete(requestId);
    this.answer(requestId, make('failure', { code: 'unsubscribed', message: 'unsubscribed', retryable: false, fatal: false, requestId, epoch: 0, hint: '' }));
    if (this.isOpen && wellFormed(doc)) this.link.send(make('unsubscribe', { requestId, doc }));
  }

  protected override receive(frame: Frame): void {
    if (frame.kind === 'viewUpdate' && !this.isPending(frame.viewUpdate.requestId)) {
      this.streams.get(frame.viewUpdate.requestId)?.onView(frame.viewUpdate);
      return;
    }
    if (frame.kind === 'failure' && !this.isPending(frame.failure.requestId)) {
      // A subscription ended at the head (it lost its role or its lease, for example).
      const stream = this.streams.get(frame.failure.requestId);
      if (stream !== undefined) {
        this.streams.delete(frame.failure.requestId);
        stream.onEnd(ChainError.from(frame.failure));
      }
      return;
    }
    super.receive(frame);
  }

  protected override timedOut(requestId: number): void {
    // A subscribe without its full view in time may still be made at the head: end it there.
    const doc = this.starting.get(requestId);
    if (doc !== undefined && this.isOpen) this.link.send(make('unsubscribe', { requestId, doc }));
  }

  protected override closedWith(error: LinkError | undefined): void {
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) s.onEnd(ChainError.lost(error));
  }
}

/** The admin API over one link. */
export class AdminLink extends RequestLink {
  configure(config: ChainConfig, done: Done<ChainInfo>): void {
    this.request(
      (requestId) => make('configure', { chain: config.chain, epoch: config.epoch, members: config.members.map((m) => ({ ...m })), requestId }),
      (answer) => {
        if (answer instanceof ChainError) return done(answer);
        if (answer.kind !== 'chainInfo') return done(new ChainError('protocol_error', `configure answered with ${answer.kind}`, true));
        done(undefined, answer.chainInfo);
      },
    );
  }

  status(query: { includeState?: boolean; includeDigests?: boolean; docsAfter?: string; docsMax?: number }, done: Done<NodeStatus>): void {
    this.request(
      (requestId) =>
        make('statusRequest', { requestId, includeState: query.includeState ?? false, includeDigests: query.includeDigests ?? false, docsAfter: query.docsAfter ?? '', docsMax: query.docsMax ?? 0 }),
      (answer) => this.statusAnswer(answer, done),
    );
  }

  /** Sets runtime knobs (forwardDelayMs: -1 leaves it); answers with the node's status. */
  control(forwardDelayMs: number, done: Done<NodeStatus>): void {
    this.request(
      (requestId) => make('control', { requestId, forwardDelayMs }),
      (answer) => this.statusAnswer(answer, done),
    );
  }

  private statusAnswer(answer: Frame | ChainError, done: Done<NodeStatus>): void {
    if (answer instanceof ChainError) return done(answer);
    if (answer.kind !== 'status') return done(new ChainError('protocol_error', `expected a status, got ${answer.kind}`, true));
    try {
      done(undefined, JSON.parse(answer.status.json) as NodeStatus);
    } catch {
      done(new ChainError('protocol_error', 'the status is not JSON', true));
    }
  }
}

export interface DocStatus {
  doc: string;
  docType: string;
  appliedSeq: number;
  lastSeq: number;
  queue: number;
  snapshotSeq: number;
  logFrom: number;
  stateDigest?: string;
  dedupeDigest?: string;
  lastDeltaDigest?: string;
  /** A truncated hash of the document's secret entropy (equal on every replica; the entropy itself goes only to peers, never to clients or admins). */
  entropyDigest?: string;
  state?: unknown;
}
export interface ChainStatus {
  node: string;
  chain: string;
  epoch: number;
  role: string;
  members: { node: string; address: string; sinceEpoch: number }[];
  synced: boolean;
  ready: boolean;
  /** See Replica.caughtUpEpoch: a member since epoch e holds the committed state once this is >= e. */
  caughtUpEpoch: number;
  queued: number;
  documents: number;
  subscriptions: number;
  /** This page of documents (see StatusRequest.docsMax). */
  docs: DocStatus[];
  /** More documents follow the last of this page. */
  more: boolean;
}
export interface NodeStatus {
  node: string;
  address: string;
  pid?: number;
  batchesWritten: number;
  opsWritten: number;
  forwardDelayMs: number;
  /** Open connections (peers, clients, admins), this status request's own included. */
  connections: number;
  /** This node's failure-detector view of the other members (empty without gossip). */
  membership: { node: string; address: string; state: 'alive' | 'suspect' | 'dead'; incarnation: number }[];
  chains: ChainStatus[];
}
