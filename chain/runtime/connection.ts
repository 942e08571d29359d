// An authenticated, framed TCP connection: length-prefixed protobuf frames (framing.ts,
// wire.ts) after an HMAC challenge-response handshake.
//
// Handshake: the listener speaks first with Hello{role: "listener", nonce: Nl}. The dialer
// answers Hello{role, node, epoch, nonce: Nd, mac}, mac = HMAC-SHA256(secret, "adama-chain/1" |
// cluster | node | epoch | role | Nl | Nd). The listener checks the cluster id and the mac in
// constant time; a process without the secret cannot produce it, and a recorded answer does
// not fit a fresh Nl. On failure the listener sends Failure{bad_auth, fatal} and closes.
//
// Every bad input closes only this connection, with a typed Failure first when possible:
// garbage or truncated frames (malformed_frame, truncated_frame), oversized ones
// (frame_too_large), a silent peer (handshake_timeout), a reader too slow for its bounded
// send buffer (slow_consumer).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { assert } from '../../engine/assert.ts';
import { frame, frameBytesMaxDefault, FrameReader, WireError } from './framing.ts';
import { Inbox } from './io.ts';
import { decodeFrame, encodeFrame, failure, make, type Frame, type Hello, type Role } from './wire.ts';

export interface ConnectionOptions {
  cluster: string;
  secret: string;
  /** This process's node id (or client name). */
  node: string;
  frameBytesMax?: number;
  /** Bytes queued for sending before the peer counts as too slow and is disconnected. */
  sendBufferBytesMax?: number;
  handshakeTimeoutMs?: number;
}

export const sendBufferBytesMaxDefault = 64 * 1024 * 1024;
export const handshakeTimeoutMsDefault = 3_000;
const nonceBytes = 16;

export class ConnectionError extends Error {
  override name = 'ConnectionError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export function helloMac(secret: string, hello: Omit<Hello, 'mac'>, listenerNonce: Uint8Array): Buffer {
  const mac = createHmac('sha256', secret);
  mac.update(`adama-chain/1|${hello.cluster}|${hello.node}|${hello.epoch}|${hello.role}|`);
  mac.update(listenerNonce);
  mac.update('|');
  mac.update(hello.nonce);
  return mac.digest();
}

type FrameHandler = (frame: Frame) => void;
type CloseHandler = (error: Error | undefined) => void;

/** One open, authenticated connection. */
export class Connection {
  /** Frames received before a handler was set (they arrived with the handshake) wait here. */
  private readonly inbox = new Inbox();
  private readonly closeHandlers: CloseHandler[] = [];
  private closed = false;
  private corked = false;
  private readonly reader: FrameReader;
  private readonly frameBytesMax: number;
  private readonly sendBufferBytesMax: number;

  private constructor(
    readonly socket: net.Socket,
    /** The other side's Hello (for an accepted connection: the dialer's, authenticated). */
    readonly peer: Hello,
    reader: FrameReader,
    options: ConnectionOptions,
    pending: Buffer[],
  ) {
    this.reader = reader;
    this.frameBytesMax = options.frameBytesMax ?? frameBytesMaxDefault;
    this.sendBufferBytesMax = options.sendBufferBytesMax ?? sendBufferBytesMaxDefault;
    socket.removeAllListeners('data');
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => {
      try {
        this.reader.end();
        this.teardown(undefined);
      } catch (error) {
        this.teardown(error as Error);
      }
    });
    socket.on('close', () => this.teardown(undefined));
    socket.on('error', (error) => this.teardown(error));
    // Frames that arrived with the handshake are delivered once a handler is set.
    for (const body of pending) this.deliver(body);
  }

  onFrame(handler: FrameHandler): this {
    this.inbox.set(handler);
    return this;
  }

  /** Adds a handler for the close (handlers run in the order they were added). */
  onClose(handler: CloseHandler): this {
    this.closeHandlers.push(handler);
    if (this.closed) queueMicrotask(() => handler(undefined));
    return this;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  send(f: Frame): void {
    if (this.closed) return;
    let bytes: Buffer;
    try {
      bytes = frame(encodeFrame(f), this.frameBytesMax);
    } catch (error) {
      // Our own frame is too large: a bug or an unbounded input upstream; fail loudly here.
      this.fail('frame_too_large', (error as Error).message);
      return;
    }
    // Frames sent in one turn of the event loop leave in one writev (per-connection batching).
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
    if (this.socket.writableLength > this.sendBufferBytesMax) {
      this.destroy(new ConnectionError('slow_consumer', `more than ${this.sendBufferBytesMax} bytes (sendBufferBytesMax) waiting to be sent`));
    }
  }

  /** Sends a fatal Failure, then closes. */
  fail(code: string, message: string, retryable = false, requestId = 0): void {
    if (this.closed) return;
    try {
      this.socket.write(frame(encodeFrame(failure(code, message, { fatal: true, retryable, requestId })), this.frameBytesMax));
    } catch {
      // The failure itself did not fit: close anyway.
    }
    this.socket.end();
    this.teardown(new ConnectionError(code, message));
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  close(): void {
    if (this.closed) return;
    this.socket.end();
    this.teardown(undefined);
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  destroy(error?: Error): void {
    this.socket.destroy();
    this.teardown(error);
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    let bodies: Buffer[];
    try {
      bodies = this.reader.push(chunk);
    } catch (error) {
      this.failWith(error);
      return;
    }
    for (const body of bodies) {
      if (this.closed) return;
      this.deliver(body);
    }
  }

  private deliver(body: Buffer): void {
    let decoded: Frame;
    try {
      decoded = decodeFrame(body);
    } catch (error) {
      this.failWith(error);
      return;
    }
    if (decoded.kind === 'hello') {
      this.fail('protocol_error', 'hello after the handshake');
      return;
    }
    // Bounded by the socket: a peer can only get frames waiting before the accept promise settles.
    this.inbox.deliver(decoded);
  }

  private failWith(error: unknown): void {
    if (error instanceof WireError) this.fail(error.code, error.message);
    else this.fail('internal_error', (error as Error).message);
  }

  private teardown(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.inbox.close();
    for (const handler of this.closeHandlers) handler(error);
  }

  /** Runs the listener side of the handshake on an accepted socket. */
  static accept(socket: net.Socket, options: ConnectionOptions, allowed: readonly Role[]): Promise<Connection> {
    const frameBytesMax = options.frameBytesMax ?? frameBytesMaxDefault;
    const nonce = randomBytes(nonceBytes);
    socket.setNoDelay(true);
    socket.write(frame(encodeFrame(make('hello', { cluster: options.cluster, node: options.node, epoch: 0, role: 'listener', nonce, mac: new Uint8Array() })), frameBytesMax));
    return handshake(socket, options, (first, reader, rest) => {
      if (first.kind !== 'hello') throw new ConnectionError('protocol_error', `the first frame must be hello, not ${first.kind}`);
      const hello = first.hello;
      if (!allowed.includes(hello.role)) throw new ConnectionError('protocol_error', `role ${hello.role} is not accepted here`);
      if (hello.cluster !== options.cluster) throw new ConnectionError('bad_auth', `this node is in cluster ${options.cluster}, not ${hello.cluster}`);
      const expected = helloMac(options.secret, hello, nonce);
      const got = Buffer.from(hello.mac);
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        throw new ConnectionError('bad_auth', 'the handshake mac does not verify: wrong cluster secret');
      }
      return new Connection(socket, hello, reader, options, rest);
    });
  }

  /** Dials and runs the dialer side of the handshake. */
  static dial(address: string, options: ConnectionOptions & { role: Exclude<Role, 'listener'>; epoch?: number; connectTimeoutMs?: number }): Promise<Connection> {
    const { host, port } = parseAddress(address);
    const frameBytesMax = options.frameBytesMax ?? frameBytesMaxDefault;
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionError('connect_timeout', `no connection to ${address} within ${options.connectTimeoutMs ?? handshakeTimeoutMsDefault} ms`));
      }, options.connectTimeoutMs ?? handshakeTimeoutMsDefault);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(new ConnectionError('connect_failed', `${address}: ${error.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        handshake(socket, options, (first, reader, rest) => {
          if (first.kind === 'failure') throw new ConnectionError(first.failure.code, first.failure.message);
          if (first.kind !== 'hello' || first.hello.role !== 'listener') throw new ConnectionError('protocol_error', 'the listener did not send its hello');
          const hello = { cluster: options.cluster, node: options.node, epoch: options.epoch ?? 0, role: options.role, nonce: randomBytes(nonceBytes) };
          const mac = helloMac(options.secret, hello, first.hello.nonce);
          socket.write(frame(encodeFrame(make('hello', { ...hello, mac })), frameBytesMax));
          return new Connection(socket, first.hello, reader, options, rest);
        }).then(resolve, reject);
      });
    });
  }
}

/** Reads frames until the first one, then hands over to `done`; bounded in time and size. */
function handshake(socket: net.Socket, options: ConnectionOptions, done: (first: Frame, reader: FrameReader, rest: Buffer[]) => Connection): Promise<Connection> {
  const reader = new FrameReader(options.frameBytesMax ?? frameBytesMaxDefault);
  return new Promise((resolve, reject) => {
    let finished = false;
    const finish = (error: Error | undefined, connection?: Connection): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (error !== undefined) {
        const code = error instanceof ConnectionError || error instanceof WireError ? error.code : 'protocol_error';
        try {
          socket.write(frame(encodeFrame(failure(code, error.message, { fatal: true }))));
        } catch {
          // ignore
        }
        socket.end();
        setTimeout(() => socket.destroy(), 500).unref();
        reject(error);
      } else resolve(connection as Connection);
    };
    const timer = setTimeout(
      () => finish(new ConnectionError('handshake_timeout', `no hello within ${options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault} ms`)),
      options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault,
    );
    const onError = (error: Error): void => finish(new ConnectionError('connection_lost', error.message));
    const onClose = (): void => finish(new ConnectionError('connection_lost', 'closed during the handshake'));
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('data', (chunk: Buffer) => {
      if (finished) return;
      try {
        const bodies = reader.push(chunk);
        if (bodies.length === 0) return;
        const first = decodeFrame(bodies[0] as Buffer);
        finish(undefined, done(first, reader, bodies.slice(1)));
      } catch (error) {
        finish(error as Error);
      }
    });
  });
}

export function parseAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at);
  const port = Number(address.slice(at + 1));
  assert(at > 0 && Number.isInteger(port) && port > 0 && port < 65536, `bad address ${JSON.stringify(address)} (expected host:port)`);
  return { host, port };
}
