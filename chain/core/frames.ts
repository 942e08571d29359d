// The frames nodes, clients and admins exchange, as plain objects. The core builds and reads
// these; runtime/wire.ts encodes them as protobuf (runtime/wire.proto) for TCP, and the
// simulator encodes every one the same way, so both worlds carry the same bytes.
//
// Who sends what:
//   predecessor -> successor   attach, catchup, forward, lease
//   successor -> predecessor   catchup, sync, back, leaseAck
//   client -> head             submit, subscribe, unsubscribe, lookup
//   head -> client             ack, viewUpdate, chainInfo, failure
//   admin -> node              configure, statusRequest, lookup, control
//   node -> admin              chainInfo (configure's answer), status, failure

export type Role = 'listener' | 'peer' | 'client' | 'admin';
export const roles: readonly Role[] = ['listener', 'peer', 'client', 'admin'];

export interface Hello {
  cluster: string;
  node: string;
  epoch: number;
  role: Role;
  nonce: Uint8Array;
  mac: Uint8Array;
}
/** A client message as sequenced by the head. */
export interface WireEnvelope {
  doc: string;
  docType: string;
  seq: number;
  timestamp: number;
  viewer: string;
  channel: string;
  payloadJson: string;
  clientId: string;
  clientSeq: number;
  /**
   * With seq 1 only (the envelope that creates the document): the document's entropy, 32
   * random bytes made by the head that created it (documents.ts). Absent on every other
   * envelope: the replicas hold it from then on.
   */
  entropy?: Uint8Array;
}
/** The result of executing one message at the tail. */
export interface WireDelta {
  doc: string;
  seq: number;
  redoJson: string;
  undoJson: string;
  outcomeJson: string;
  clientId: string;
  clientSeq: number;
  /** The envelope's timestamp: dedupe eviction decides on it, the same way on every replica. */
  timestamp: number;
}
export interface DocSeq {
  doc: string;
  docType: string;
  /** Applied seq. */
  seq: number;
  /** Last sequenced seq (applied + queued). */
  lastSeq: number;
}
/** State transfer of one document: a snapshot (snapshotSeq > 0), then deltas. */
export interface DocCatchup {
  doc: string;
  docType: string;
  snapshotSeq: number;
  snapshotJson: string;
  dedupeJson: string;
  deltas: WireDelta[];
  /** The document's entropy (32 bytes), in every piece: a receiver without the document creates it with this. */
  entropy: Uint8Array;
}
/** Starts an epoch's sync on a link; `more`: further Attach frames of the same sync follow. */
export interface Attach {
  chain: string;
  epoch: number;
  applied: DocSeq[];
  more: boolean;
}
/** Ends the successor's answer to an Attach; `more`: further Sync frames of the same answer follow. */
export interface Sync {
  chain: string;
  epoch: number;
  applied: DocSeq[];
  envelopes: WireEnvelope[];
  more: boolean;
}
export interface Catchup {
  chain: string;
  epoch: number;
  docs: DocCatchup[];
}
export interface Forward {
  chain: string;
  epoch: number;
  envelopes: WireEnvelope[];
}
export interface Back {
  chain: string;
  epoch: number;
  deltas: WireDelta[];
}
/** The head's lease round: passed down the chain to the tail, answered by LeaseAck back up. */
export interface Lease {
  chain: string;
  epoch: number;
  round: number;
}
export interface LeaseAck {
  chain: string;
  epoch: number;
  round: number;
}
export interface Member {
  node: string;
  address: string;
  /** The epoch at which this node (re)joined the chain. */
  sinceEpoch: number;
}
export interface Configure {
  chain: string;
  epoch: number;
  members: Member[];
  requestId: number;
}
export interface StatusRequest {
  requestId: number;
  /** Include each document's state (tests and tools). */
  includeState: boolean;
  /** Include digests of states, dedupe tables and last deltas (costs a hash of every state). */
  includeDigests: boolean;
  /** Documents after this id, in id order (paging; '' from the start). */
  docsAfter: string;
  /** At most this many documents per answer (0: none, only the summary). */
  docsMax: number;
}
export interface Status {
  requestId: number;
  json: string;
}
/** What one node knows of one chain: the cheap answer to configure and lookup. */
export interface ChainInfo {
  requestId: number;
  node: string;
  chain: string;
  epoch: number;
  role: string;
  members: Member[];
  ready: boolean;
  caughtUpEpoch: number;
}
export interface Lookup {
  requestId: number;
  chain: string;
}
export interface Submit {
  requestId: number;
  chain: string;
  doc: string;
  docType: string;
  channel: string;
  payloadJson: string;
  clientId: string;
  clientSeq: number;
  viewer: string;
}
export interface Ack {
  requestId: number;
  seq: number;
  outcomeJson: string;
  duplicate: boolean;
}
export interface Subscribe {
  requestId: number;
  chain: string;
  doc: string;
  docType: string;
  viewer: string;
}
/** Ends the subscription made by the Subscribe with this requestId on this connection. */
export interface Unsubscribe {
  requestId: number;
  doc: string;
}
export type ViewKind = 'full' | 'speculative' | 'confirmed' | 'rollback';
export const viewKinds: readonly ViewKind[] = ['full', 'speculative', 'confirmed', 'rollback'];
export interface ViewUpdate {
  requestId: number;
  doc: string;
  viewer: string;
  kind: ViewKind;
  seq: number;
  json: string;
  /** With kind "full": the confirmed view (json is the speculative one). */
  confirmedJson: string;
}
export interface Failure {
  code: string;
  message: string;
  retryable: boolean;
  fatal: boolean;
  requestId: number;
  epoch: number;
  /** With not_head: the head's address, when known. */
  hint: string;
}
export interface Control {
  requestId: number;
  /** -1 leaves it unchanged. */
  forwardDelayMs: number;
}
export interface FrameBodies {
  hello: Hello;
  failure: Failure;
  attach: Attach;
  sync: Sync;
  catchup: Catchup;
  forward: Forward;
  back: Back;
  lease: Lease;
  leaseAck: LeaseAck;
  configure: Configure;
  statusRequest: StatusRequest;
  status: Status;
  chainInfo: ChainInfo;
  lookup: Lookup;
  submit: Submit;
  ack: Ack;
  subscribe: Subscribe;
  unsubscribe: Unsubscribe;
  viewUpdate: ViewUpdate;
  control: Control;
}
export type FrameKind = keyof FrameBodies;
export type Frame = { [K in FrameKind]: { kind: K } & { [P in K]: FrameBodies[K] } }[FrameKind];
export const frameKinds: ReadonlySet<string> = new Set<FrameKind>([
  'hello',
  'failure',
  'attach',
  'sync',
  'catchup',
  'forward',
  'back',
  'lease',
  'leaseAck',
  'configure',
  'statusRequest',
  'status',
  'chainInfo',
  'lookup',
  'submit',
  'ack',
  'subscribe',
  'unsubscribe',
  'viewUpdate',
  'control',
]);

/** Builds a frame: `make('ack', {...})`. */
export function make<K extends FrameKind>(kind: K, body: FrameBodies[K]): Frame {
  return { kind, [kind]: body } as unknown as Frame;
}

/** A failure frame with defaults for the optional fields. */
export function failure(code: string, message: string, options: Partial<Omit<Failure, 'code' | 'message'>> = {}): Frame {
  return make('failure', { code, message, retryable: false, fatal: false, requestId: 0, epoch: 0, hint: '', ...options });
}

/** The request id a client-side answer belongs to (0: none). */
export function requestIdOf(frame: Frame): number {
  switch (frame.kind) {
    case 'ack':
      return frame.ack.requestId;
    case 'failure':
      return frame.failure.requestId;
    case 'status':
      return frame.status.requestId;
    case 'viewUpdate':
      return frame.viewUpdate.requestId;
    case 'chainInfo':
      return frame.chainInfo.requestId;
    default:
      return 0;
  }
}
