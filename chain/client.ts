// Node clients for a chain node:
// - ChainClient: one authenticated connection to one node (the head API: submit, subscribe).
// - AdminClient: configure a node, read its status.
// - ChainSession: submits to whichever node is the head, following failovers. It resends a
//   message with the same (clientId, clientSeq) until it is acknowledged, so the node's durable
//   dedupe makes every message apply exactly once.

import { randomBytes } from 'node:crypto';
import { assert } from '../engine/assert.ts';
import type { Outcome } from '../engine/execute.ts';
import { Connection, ConnectionError } from './connection.ts';
import type { ChainConfig } from './store.ts';
import { make, type Failure, type Frame, type ViewUpdate } from './wire.ts';

export interface ClientOptions {
  cluster: string;
  secret: string;
  /** Shown to the node as this connection's name. */
  name?: string;
  frameBytesMax?: number;
  /** A request with no answer after this long fails with `timeout` (outcome unknown). */
  requestTimeoutMs?: number;
  /** Requests waiting for an answer on one connection. */
  requestsInflightMax?: number;
  connectTimeoutMs?: number;
}

/** A typed error from a node (or from the connection). */
export class ChainError extends Error {
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

interface Pending {
  resolve: (frame: Frame) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

class RequestConnection {
  protected readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private closeHandlers: ((error: Error | undefined) => void)[] = [];

  protected constructor(
    protected readonly connection: Connection,
    protected readonly options: ClientOptions,
  ) {
    connection.onFrame((frame) => this.receive(frame));
    connection.onClose((error) => {
      const lost = new ChainError('connection_lost', error?.message ?? 'the node closed the connection', true);
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(lost);
      }
      this.pending.clear();
      for (const handler of this.closeHandlers) handler(error);
    });
  }

  get isOpen(): boolean {
    return this.connection.isOpen;
  }

  get address(): string {
    return `${this.connection.socket.remoteAddress}:${this.connection.socket.remotePort}`;
  }

  onClose(handler: (error: Error | undefined) => void): void {
    this.closeHandlers.push(handler);
  }

  close(): void {
    this.connection.close();
  }

  protected request(build: (requestId: number) => Frame): Promise<Frame> {
    const max = this.options.requestsInflightMax ?? 10_000;
    if (this.pending.size >= max) return Promise.reject(new ChainError('too_many_requests', `requestsInflightMax (${max}) reached on this connection`, true));
    if (!this.connection.isOpen) return Promise.reject(new ChainError('connection_lost', 'the connection is closed', true));
    const requestId = this.nextRequestId++;
    return new Promise<Frame>((resolve, reject) => {
      const timeoutMs = this.options.requestTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ChainError('timeout', `no answer within ${timeoutMs} ms; the outcome is unknown`, true));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.connection.send(build(requestId));
    });
  }

  protected receive(frame: Frame): void {
    const requestId =
      frame.kind === 'ack' ? frame.ack.requestId : frame.kind === 'failure' ? frame.failure.requestId : frame.kind === 'status' ? frame.status.requestId : frame.kind === 'viewUpdate' ? frame.viewUpdate.requestId : 0;
    this.answer(requestId, frame);
  }

  protected answer(requestId: number, frame: Frame): boolean {
    const p = this.pending.get(requestId);
    if (p === undefined) return false;
    this.pending.delete(requestId);
    clearTimeout(p.timer);
    if (frame.kind === 'failure') p.reject(ChainError.from(frame.failure));
    else p.resolve(frame);
    return true;
  }
}

export class ChainClient extends RequestConnection {
  private readonly subscriptions = new Map<number, { doc: string; viewer: string; onUpdate: (update: ViewUpdate) => void }>();

  static async connect(address: string, options: ClientOptions): Promise<ChainClient> {
    const connection = await Connection.dial(address, {
      cluster: options.cluster,
      secret: options.secret,
      node: options.name ?? `client-${randomBytes(4).toString('hex')}`,
      role: 'client',
      frameBytesMax: options.frameBytesMax,
      connectTimeoutMs: options.connectTimeoutMs,
    });
    return new ChainClient(connection, options);
  }

  async submit(r: SubmitRequest): Promise<SubmitResult> {
    const payloadJson = JSON.stringify(r.payload);
    assert(payloadJson !== undefined, 'submit: payload is not JSON');
    const frame = await this.request((requestId) =>
      make('submit', { requestId, chain: r.chain, doc: r.doc, docType: r.docType, channel: r.channel, payloadJson, clientId: r.clientId, clientSeq: r.clientSeq, viewer: r.viewer }),
    );
    assert(frame.kind === 'ack', () => `submit: unexpected ${frame.kind}`);
    return { seq: frame.ack.seq, outcome: JSON.parse(frame.ack.outcomeJson) as Outcome, duplicate: frame.ack.duplicate };
  }

  /** Resolves with the first (full) view; later frames go to `onUpdate`. */
  async subscribe(r: { chain: string; doc: string; docType: string; viewer: string }, onUpdate: (update: ViewUpdate) => void): Promise<ViewUpdate> {
    let id = 0;
    const frame = await this.request((requestId) => {
      id = requestId;
      this.subscriptions.set(requestId, { doc: r.doc, viewer: r.viewer, onUpdate });
      return make('subscribe', { requestId, chain: r.chain, doc: r.doc, docType: r.docType, viewer: r.viewer });
    }).catch((error: unknown) => {
      this.subscriptions.delete(id);
      throw error;
    });
    assert(frame.kind === 'viewUpdate' && frame.viewUpdate.kind === 'full', 'subscribe: the first frame must be a full view');
    return frame.viewUpdate;
  }

  unsubscribe(doc: string, viewer: string): void {
    for (const [id, sub] of this.subscriptions) if (sub.doc === doc && sub.viewer === viewer) this.subscriptions.delete(id);
    this.connection.send(make('unsubscribe', { doc, viewer }));
  }

  protected override receive(frame: Frame): void {
    if (frame.kind === 'viewUpdate' && !this.pending.has(frame.viewUpdate.requestId)) {
      this.subscriptions.get(frame.viewUpdate.requestId)?.onUpdate(frame.viewUpdate);
      return;
    }
    if (frame.kind === 'failure' && this.subscriptions.has(frame.failure.requestId) && !this.pending.has(frame.failure.requestId)) {
      // A subscription ended (e.g. not_head after a failover): tell its handler.
      const handler = this.subscriptions.get(frame.failure.requestId);
      this.subscriptions.delete(frame.failure.requestId);
      handler?.onUpdate({ requestId: frame.failure.requestId, doc: '', viewer: '', kind: 'rollback', seq: 0, json: '', confirmedJson: JSON.stringify({ error: frame.failure.code }) });
      return;
    }
    super.receive(frame);
  }
}

export class AdminClient extends RequestConnection {
  static async connect(address: string, options: ClientOptions): Promise<AdminClient> {
    const connection = await Connection.dial(address, {
      cluster: options.cluster,
      secret: options.secret,
      node: options.name ?? 'admin',
      role: 'admin',
      frameBytesMax: options.frameBytesMax,
      connectTimeoutMs: options.connectTimeoutMs,
    });
    return new AdminClient(connection, options);
  }

  async configure(config: ChainConfig): Promise<NodeStatus> {
    const frame = await this.request((requestId) => make('configure', { chain: config.chain, epoch: config.epoch, members: [...config.members], requestId }));
    assert(frame.kind === 'status', 'configure: expected a status');
    return JSON.parse(frame.status.json) as NodeStatus;
  }

  /** Sets runtime knobs (forwardDelayMs: -1 leaves it); returns the node's status. */
  async control(forwardDelayMs: number): Promise<NodeStatus> {
    const frame = await this.request((requestId) => make('control', { requestId, forwardDelayMs }));
    assert(frame.kind === 'status', 'control: expected a status');
    return JSON.parse(frame.status.json) as NodeStatus;
  }

  async status(includeState = false): Promise<NodeStatus> {
    const frame = await this.request((requestId) => make('statusRequest', { requestId, includeState }));
    assert(frame.kind === 'status', 'status: expected a status');
    return JSON.parse(frame.status.json) as NodeStatus;
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
  stateDigest: string;
  dedupeDigest: string;
  lastDeltaDigest: string;
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
  docs: DocStatus[];
}
export interface NodeStatus {
  node: string;
  address: string;
  pid: number;
  batchesWritten: number;
  opsWritten: number;
  /** Open connections (peers, clients, admins), this status request's own included. */
  connections: number;
  /** This node's failure-detector view of the other members (empty without gossip). */
  membership: { node: string; address: string; state: 'alive' | 'suspect' | 'dead'; incarnation: number }[];
  chains: ChainStatus[];
}

export interface SessionOptions extends ClientOptions {
  /** Every node's address; the session finds the head among them. */
  addresses: string[];
  chain: string;
  clientId: string;
  /** Give up on one message after this long (its outcome is then unknown). */
  submitTimeoutMs?: number;
  retryDelayMsMin?: number;
  retryDelayMsMax?: number;
}

/** Submits through the current head, following failovers; resends until acknowledged. */
export class ChainSession {
  private client: ChainClient | undefined;
  private connecting: Promise<ChainClient> | undefined;
  private target = 0;
  private clientSeq = 0;
  private closed = false;
  /** Resends made (for reports). */
  resends = 0;

  constructor(readonly options: SessionOptions) {
    assert(options.addresses.length > 0, 'ChainSession: no addresses');
  }

  /** The next clientSeq; a caller that wants to resend by itself keeps the number. */
  nextClientSeq(): number {
    return ++this.clientSeq;
  }

  async submit(r: Omit<SubmitRequest, 'chain' | 'clientId' | 'clientSeq'> & { clientSeq?: number }): Promise<SubmitResult & { attempts: number }> {
    const clientSeq = r.clientSeq ?? this.nextClientSeq();
    const deadline = Date.now() + (this.options.submitTimeoutMs ?? 30_000);
    let delay = this.options.retryDelayMsMin ?? 10;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new ChainError('closed', 'the session was closed', false);
      try {
        const client = await this.connect();
        const result = await client.submit({ ...r, chain: this.options.chain, clientId: this.options.clientId, clientSeq });
        return { ...result, attempts: attempt };
      } catch (error) {
        const e = error instanceof ChainError ? error : error instanceof ConnectionError ? new ChainError(error.code, error.message, true) : undefined;
        // A node that serves other chains (placement spreads chains over nodes): try the next one.
        const elsewhere = e?.code === 'unknown_chain';
        if (e === undefined || (!e.retryable && !elsewhere)) throw error;
        if (attempt > 1) this.resends++;
        if (e.code === 'not_head' && e.hint !== '') this.retarget(e.hint);
        else if (elsewhere || e.code === 'connection_lost' || e.code === 'connect_failed' || e.code === 'connect_timeout' || e.code === 'not_member' || e.code === 'not_head') this.retarget(undefined);
        if (Date.now() + delay > deadline) throw new ChainError('timeout', `no acknowledgement within ${this.options.submitTimeoutMs ?? 30_000} ms (last error ${e.code}); the outcome is unknown`, false);
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, this.options.retryDelayMsMax ?? 200);
      }
    }
  }

  private retarget(address: string | undefined): void {
    const index = address === undefined ? -1 : this.options.addresses.indexOf(address);
    this.target = index >= 0 ? index : (this.target + 1) % this.options.addresses.length;
    this.client?.close();
    this.client = undefined;
  }

  private connect(): Promise<ChainClient> {
    if (this.client?.isOpen) return Promise.resolve(this.client);
    if (this.connecting !== undefined) return this.connecting;
    const address = this.options.addresses[this.target] as string;
    this.connecting = ChainClient.connect(address, { ...this.options, connectTimeoutMs: this.options.connectTimeoutMs ?? 1_000 }).then(
      (client) => {
        this.connecting = undefined;
        this.client = client;
        return client;
      },
      (error: unknown) => {
        this.connecting = undefined;
        throw error;
      },
    );
    return this.connecting;
  }

  close(): void {
    this.closed = true;
    this.client?.close();
  }
}
