// Length-prefixed frames on a byte stream: a 4-byte big-endian length, then that many bytes.
// Every frame is bounded by `frameBytesMax`; a reader rejects an oversized frame as soon as
// its header arrives, so it never buffers more than 4 + frameBytesMax bytes.

import { assert } from '../../engine/assert.ts';

/** Default bound on one frame's body. */
export const frameBytesMaxDefault = 4 * 1024 * 1024;
const headerBytes = 4;

export type WireErrorCode = 'frame_too_large' | 'truncated_frame' | 'malformed_frame';

/** A connection-level error: the peer sent bytes that cannot be a frame. Close that connection. */
export class WireError extends Error {
  override name = 'WireError';
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** The bytes to write for one frame body. */
export function frame(body: Uint8Array, frameBytesMax = frameBytesMaxDefault): Buffer {
  if (body.length > frameBytesMax) {
    throw new WireError('frame_too_large', `a ${body.length}-byte frame exceeds frameBytesMax (${frameBytesMax})`);
  }
  const out = Buffer.allocUnsafe(headerBytes + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, headerBytes);
  return out;
}

/** Splits a byte stream into frame bodies. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(readonly frameBytesMax = frameBytesMaxDefault) {
    assert(Number.isInteger(frameBytesMax) && frameBytesMax > 0 && frameBytesMax < 2 ** 32, 'FrameReader: bad frameBytesMax');
  }

  /** Bytes received but not yet returned as frames (at most 4 + frameBytesMax). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Adds received bytes; returns every frame body completed by them, in order. */
  push(chunk: Uint8Array): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const frames: Buffer[] = [];
    for (;;) {
      if (this.buffered < headerBytes) break;
      const length = this.peekLength();
      if (length > this.frameBytesMax) {
        throw new WireError('frame_too_large', `the peer announced a ${length}-byte frame; frameBytesMax is ${this.frameBytesMax}`);
      }
      if (this.buffered < headerBytes + length) break;
      const whole = this.take(headerBytes + length);
      frames.push(whole.subarray(headerBytes));
    }
    assert(this.buffered <= headerBytes + this.frameBytesMax, 'FrameReader: buffered past its bound');
    return frames;
  }

  /** The stream ended: any partial frame is an error. */
  end(): void {
    if (this.buffered > 0) {
      throw new WireError('truncated_frame', `the stream ended inside a frame (${this.buffered} bytes pending)`);
    }
  }

  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= headerBytes) return first.readUInt32BE(0);
    return Buffer.concat(this.chunks).readUInt32BE(0);
  }

  private take(count: number): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const taken = all.subarray(0, count);
    const rest = all.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}
