// Encoding and decoding of chain frames (wire.proto) with protobufjs. Decoding never throws
// anything but WireError('malformed_frame'): a peer's garbage closes that connection only.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { WireError } from './framing.ts';
import type { SwimMessage } from './swim.ts';

const root = protobuf.parse(readFileSync(new URL('./wire.proto', import.meta.url), 'utf8'), { keepCase: false }).root;
const FrameType = root.lookupType('adamachain.Frame');

export type Role = 'listener' | 'peer' | 'client' | 'admin';
const roles: readonly string[] = ['listener', 'peer', 'client', 'admin'];

export interface Hello {
  cluster: string;
  node: string;
  epoch: number;
  role: Role;
  nonce: Uint8Array;
  mac: Uint8Array;
}
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
}
export interface WireDelta {
  doc: string;
  seq: number;
  redoJson: string;
  undoJson: string;
  outcomeJson: string;
  clientId: string;
  clientSeq: number;
}
export interface DocSeq {
  doc: string;
  docType: string;
  seq: number;
  lastSeq: number;
}
export interface DocCatchup {
  doc: string;
  docType: string;
  snapshotSeq: number;
  snapshotJson: string;
  dedupeJson: string;
  deltas: WireDelta[];
}
export interface Attach {
  chain: string;
  epoch: number;
  applied: DocSeq[];
}
export interface Sync {
  chain: string;
  epoch: number;
  applied: DocSeq[];
  envelopes: WireEnvelope[];
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
export interface Member {
  node: string;
  address: string;
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
  includeState: boolean;
}
export interface Status {
  requestId: number;
  json: string;
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
export interface Unsubscribe {
  doc: string;
  viewer: string;
}
export type ViewKind = 'full' | 'speculative' | 'confirmed' | 'rollback';
export interface ViewUpdate {
  requestId: number;
  doc: string;
  viewer: string;
  kind: ViewKind;
  seq: number;
  json: string;
  confirmedJson: string;
}
export interface Failure {
  code: string;
  message: string;
  retryable: boolean;
  fatal: boolean;
  requestId: number;
  epoch: number;
  hint: string;
}

export interface Control {
  requestId: number;
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
  configure: Configure;
  statusRequest: StatusRequest;
  status: Status;
  submit: Submit;
  ack: Ack;
  subscribe: Subscribe;
  unsubscribe: Unsubscribe;
  viewUpdate: ViewUpdate;
  control: Control;
}
export type FrameKind = keyof FrameBodies;
export type Frame = { [K in FrameKind]: { kind: K } & { [P in K]: FrameBodies[K] } }[FrameKind];
const kinds: ReadonlySet<string> = new Set<FrameKind>([
  'hello', 'failure', 'attach', 'sync', 'catchup', 'forward', 'back', 'configure',
  'statusRequest', 'status', 'submit', 'ack', 'subscribe', 'unsubscribe', 'viewUpdate', 'control',
]);

/** Builds a frame: `make('ack', {...})`. */
export function make<K extends FrameKind>(kind: K, body: FrameBodies[K]): Frame {
  return { kind, [kind]: body } as unknown as Frame;
}

/** A failure frame with defaults for the optional fields. */
export function failure(code: string, message: string, options: Partial<Omit<Failure, 'code' | 'message'>> = {}): Frame {
  return make('failure', { code, message, retryable: false, fatal: false, requestId: 0, epoch: 0, hint: '', ...options });
}

export function encodeFrame(frame: Frame): Uint8Array {
  const body = { [frame.kind]: (frame as unknown as Record<string, unknown>)[frame.kind] };
  const error = FrameType.verify(body);
  if (error !== null) throw new Error(`encodeFrame: ${error}`);
  return FrameType.encode(FrameType.fromObject(body)).finish();
}

export function decodeFrame(bytes: Uint8Array): Frame {
  let object: Record<string, unknown>;
  try {
    object = FrameType.toObject(FrameType.decode(bytes), {
      longs: Number,
      bytes: Uint8Array as unknown as typeof String,
      defaults: true,
      arrays: true,
      oneofs: true,
    }) as Record<string, unknown>;
  } catch (error) {
    throw new WireError('malformed_frame', `not a protobuf Frame: ${(error as Error).message}`);
  }
  const kind = object.body;
  if (typeof kind !== 'string' || !kinds.has(kind)) throw new WireError('malformed_frame', 'the frame has no body');
  if (kind === 'hello') {
    const role = (object.hello as Hello).role;
    if (!roles.includes(role)) {
      throw new WireError('malformed_frame', `hello role must be one of ${roles.join(', ')}, not ${JSON.stringify(role)}`);
    }
  }
  return { kind, [kind]: object[kind] } as unknown as Frame;
}

// -----------------------------------------------------------------------------------------
// Gossip datagrams (SWIM)

const GossipType = root.lookupType('adamachain.Gossip');
const gossipMacBytes = 16;
/** A datagram is at most this large (it must fit one UDP datagram on loopback and most paths). */
export const gossipBytesMax = 8_192;

function gossipMac(secret: string, body: Uint8Array): Buffer {
  return createHmac('sha256', secret).update('adama-chain/gossip|').update(body).digest().subarray(0, gossipMacBytes);
}

export function encodeGossip(cluster: string, secret: string, message: SwimMessage): Buffer {
  const body = GossipType.encode(GossipType.fromObject({ ...message, cluster })).finish();
  const out = Buffer.concat([body, gossipMac(secret, body)]);
  if (out.length > gossipBytesMax) throw new WireError('frame_too_large', `a gossip datagram of ${out.length} bytes is over gossipBytesMax (${gossipBytesMax})`);
  return out;
}

/** The message, or undefined for anything that is not an authentic gossip datagram of `cluster`. */
export function decodeGossip(cluster: string, secret: string, datagram: Uint8Array): SwimMessage | undefined {
  if (datagram.length <= gossipMacBytes || datagram.length > gossipBytesMax) return undefined;
  const body = datagram.subarray(0, datagram.length - gossipMacBytes);
  const mac = datagram.subarray(datagram.length - gossipMacBytes);
  if (!timingSafeEqual(mac, gossipMac(secret, body))) return undefined;
  try {
    const o = GossipType.toObject(GossipType.decode(body), { longs: Number, defaults: true, arrays: true }) as SwimMessage & { cluster: string };
    if (o.cluster !== cluster || !['ping', 'ack', 'ping-req'].includes(o.kind)) return undefined;
    if (o.updates.some((u) => !['alive', 'suspect', 'dead'].includes(u.state))) return undefined;
    return { kind: o.kind, from: o.from, fromAddress: o.fromAddress, seq: o.seq, target: o.target, updates: o.updates };
  } catch {
    return undefined;
  }
}
