// Encoding and decoding of chain frames (wire.proto) with protobufjs. Decoding never throws
// anything but WireError('malformed_frame'): a peer's garbage closes that connection only.

import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { WireError } from './framing.ts';

const root = protobuf.parse(readFileSync(new URL('./wire.proto', import.meta.url), 'utf8'), { keepCase: false }).root;
const FrameType = root.lookupType('adamachain.Frame');

export interface Hello {
  cluster: string;
  node: string;
  epoch: number;
  role: 'peer' | 'client';
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
export interface Forward {
  epoch: number;
  envelopes: WireEnvelope[];
}
export interface WireDelta {
  doc: string;
  seq: number;
  redoJson: string;
  undoJson: string;
  outcomeJson: string;
}
export interface Back {
  epoch: number;
  deltas: WireDelta[];
}
export interface Failure {
  code: string;
  message: string;
  retryable: boolean;
  fatal: boolean;
}

export type Frame =
  | { kind: 'hello'; hello: Hello }
  | { kind: 'forward'; forward: Forward }
  | { kind: 'back'; back: Back }
  | { kind: 'failure'; failure: Failure };

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
  switch (kind) {
    case 'hello': {
      const hello = object.hello as Hello;
      if (hello.role !== 'peer' && hello.role !== 'client') {
        throw new WireError('malformed_frame', `hello role must be "peer" or "client", not ${JSON.stringify(hello.role)}`);
      }
      return { kind, hello };
    }
    case 'forward':
      return { kind, forward: object.forward as Forward };
    case 'back':
      return { kind, back: object.back as Back };
    case 'failure':
      return { kind, failure: object.failure as Failure };
    default:
      throw new WireError('malformed_frame', 'the frame has no body');
  }
}
