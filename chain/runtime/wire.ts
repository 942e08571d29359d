// Encoding and decoding of chain frames (core/frames.ts, as wire.proto) with protobufjs.
// Decoding never throws anything but WireError('malformed_frame'): a peer's garbage closes
// that connection only. Both worlds use it: the simulator encodes every frame it carries.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { idPattern } from '../core/config.ts';
import { frameKinds, roles, type Frame, type Hello } from '../core/frames.ts';
import type { SwimMessage } from '../control/swim.ts';
import { WireError } from './framing.ts';

const root = protobuf.parse(readFileSync(new URL('./wire.proto', import.meta.url), 'utf8'), { keepCase: false }).root;
const FrameType = root.lookupType('adamachain.Frame');

export * from '../core/frames.ts';

export function encodeFrame(frame: Frame): Uint8Array {
  const body = { [frame.kind]: (frame as unknown as Record<string, unknown>)[frame.kind] };
  const error = FrameType.verify(body);
  if (error !== null) throw new Error(`encodeFrame: ${error}`);
  // A verified plain object encodes as is (fromObject would only copy it: a fifth of the cost).
  return FrameType.encode(body).finish();
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
  if (typeof kind !== 'string' || !frameKinds.has(kind)) throw new WireError('malformed_frame', 'the frame has no body');
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

/** Bound on membership updates one datagram may carry. */
export const gossipUpdatesMax = 64;

/** host:port with a port in range and a host that is an IP address or a DNS name. */
export function isGossipAddress(address: string): boolean {
  const at = address.lastIndexOf(':');
  const port = Number(address.slice(at + 1));
  return at > 0 && at < 254 && Number.isInteger(port) && port > 0 && port < 65536 && /^[A-Za-z0-9.-]+$/.test(address.slice(0, at));
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
    // Signed input is still input: ids and addresses must have their shape before SWIM keeps them.
    if (!idPattern.test(o.from) || !isGossipAddress(o.fromAddress) || !Number.isSafeInteger(o.seq) || o.seq < 0) return undefined;
    if (o.target !== '' && !idPattern.test(o.target)) return undefined;
    if (o.updates.length > gossipUpdatesMax) return undefined;
    if (o.updates.some((u) => !['alive', 'suspect', 'dead'].includes(u.state) || !idPattern.test(u.node) || !isGossipAddress(u.address) || !Number.isSafeInteger(u.incarnation) || u.incarnation < 0))
      return undefined;
    return { kind: o.kind, from: o.from, fromAddress: o.fromAddress, seq: o.seq, target: o.target, updates: o.updates };
  } catch {
    return undefined;
  }
}
