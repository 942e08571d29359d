// An authenticated, framed TCP connection: length-prefixed protobuf frames (framing.ts,
// wire.ts), over TLS 1.3 with a pre-shared key per role (credentials.ts).
//
// TLS (the default): the dialer offers the PSK identity "<role>/<node>" and the key of that
// role; the listener looks the role up and answers with the same key, so each end proves it
// holds it (a process without the key can neither accept nor dial), and TLS protects every
// frame after the handshake (a changed byte closes the connection). Inside, the listener
// sends Hello{role: "listener"} first and the dialer answers Hello{role, node, epoch}; the
// role and node must be the ones its TLS identity named.
//
// plain (the benchmark's comparison only): no TLS; the dialer's Hello carries mac =
// HMAC-SHA256(role key, "adama-chain/1" | cluster | node | epoch | role | Nl | Nd) over the
// listener's nonce Nl. Only the dialer is authenticated and frames are not protected.
//
// Every bad input closes only this connection, with a typed Failure first when possible:
// garbage or truncated frames (malformed_frame, truncated_frame), oversized ones
// (frame_too_large; before the handshake is done, a frame is at most helloBytesMax), a
// silent peer (handshake_timeout), a reader too slow for its bounded send buffer
// (slow_consumer). A socket keeps an error handler for its whole life: a peer that resets,
// or vanishes while this process was stalled, never becomes an uncaught exception.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { assert } from '../../engine/assert.ts';
import { type Keyring, keyFor, type KeyRole, type Transport } from './credentials.ts';
import { frame, frameBytesMaxDefault, FrameReader, WireError } from './framing.ts';
import { Inbox } from './io.ts';
import { decodeFrame, encodeFrame, failure, make, type Frame, type Hello, type Role } from './wire.ts';

export interface ConnectionOptions {
  cluster: string;
  /** The role keys this process holds (a listener needs the key of every role it accepts). */
  keys: Keyring;
  /** Default tls. */
  transport?: Transport;
  /** This process's node id (or client name). */
  node: string;
  frameBytesMax?: number;
  /** Bytes queued for sending before the peer counts as too slow and is disconnected. */
  sendBufferBytesMax?: number;
  /** The whole handshake (TLS and hellos) must finish within this. */
  handshakeTimeoutMs?: number;
}

export const sendBufferBytesMaxDefault = 64 * 1024 * 1024;
export const handshakeTimeoutMsDefault = 3_000;
/** Bound on a frame before the handshake is done (a Hello is about 100 bytes). */
export const helloBytesMax = 1_024;
const nonceBytes = 16;
/** TLS 1.3 suites whose hash fits a SHA-256 PSK. */
const tlsCiphers = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
const tlsVersions = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
const ignore = (): void => {};

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

/** The PSK identity a dialer offers: its role and name. */
export function pskIdentity(role: KeyRole, node: string): string {
  return `${role}/${node}`;
}

export function parsePskIdentity(identity: string): { role: Exclude<KeyRole, 'gossip'>; node: string } | undefined {
  const slash = identity.indexOf('/');
  const role = identity.slice(0, slash);
  if (slash <= 0 || (role !== 'peer' && role !== 'admin' && role !== 'client')) return undefined;
  return { role, node: identity.slice(slash + 1) };
}

/** Server-side TLS options: the PSK of each role in `allowed` that this process holds. */
export function tlsServerOptions(keys: Keyring, allowed: readonly Role[], handshakeTimeoutMs: number): tls.TlsOptions {
  return {
    ...tlsVersions,
    ciphers: tlsCiphers,
    handshakeTimeout: handshakeTimeoutMs,
    pskCallback: (socket: tls.TLSSocket, identity: string) => {
      const id = parsePskIdentity(identity);
      if (id === undefined || !allowed.includes(id.role)) return null;
      const key = keys[id.role];
      if (key === undefined) return null;
      (socket as TaggedSocket).pskIdentity = id;
      return Buffer.from(key, 'base64url');
    },
  };
}

/** What this process's connections did (the status report's batching figures): frames and system writes, reads. */
export const counters = { framesSent: 0, writes: 0, reads: 0 };

type TaggedSocket = tls.TLSSocket & { pskIdentity?: { role: Exclude<KeyRole, 'gossip'>; node: string } };

type FrameHandler = (frame: Frame) => void;
type CloseHandler = (error: Error | undefined) => void;

/** One open, authenticated connection. */
export class Connection {
  /** Frames received before a handler was set (they arrived with the handshake) wait here. */
  private readonly inbox = new Inbox();
  private readonly closeHandlers: CloseHandler[] = [];
  private closed = false;
  /** Frames sent in this turn of the event loop, written together when it ends. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly reader: FrameReader;
  private readonly frameBytesMax: number;
  private readonly sendBufferBytesMax: number;

  private constructor(
    readonly socket: net.Socket,
    /** The other side's Hello (for an accepted connection: the dialer's, authenticated). */
    readonly peer: Hello,
    options: Pick<ConnectionOptions, 'frameBytesMax' | 'sendBufferBytesMax'>,
    rest: Buffer,
  ) {
    this.frameBytesMax = options.frameBytesMax ?? frameBytesMaxDefault;
    this.reader = new FrameReader(this.frameBytesMax);
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
    if (rest.length > 0) this.receive(rest);
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
      // Our own frame is too large. An answer to one request (or one subscription's update)
      // fails that request alone: a shared connection (the proxy's pool) serves others too.
      const requestId = (f as unknown as Record<string, { requestId?: unknown } | undefined>)[f.kind]?.requestId;
      if (typeof requestId === 'number' && requestId > 0 && f.kind !== 'failure') {
        this.send(failure('frame_too_large', `the answer to request ${requestId} is over frameBytesMax (${this.frameBytesMax}): ${(error as Error).message}`, { requestId, retryable: false }));
        return;
      }
      this.fail('frame_too_large', (error as Error).message);
      return;
    }
    // Frames sent in one turn of the event loop leave in one write (per-connection batching):
    // on loopback, each write is a system call that also wakes the reader, the largest cost
    // per frame (issue 16's profile), so one per turn, however many frames.
    counters.framesSent++;
    if (this.pending.length === 0) process.nextTick(this.flush);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.socket.writableLength + this.pendingBytes > this.sendBufferBytesMax) {
      this.destroy(new ConnectionError('slow_consumer', `more than ${this.sendBufferBytesMax} bytes (sendBufferBytesMax) waiting to be sent`));
    }
  }

  private readonly flush = (): void => {
    const pending = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.closed || pending.length === 0) return;
    counters.writes++;
    this.socket.write(pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending));
  };

  /** Sends a fatal Failure, then closes. */
  fail(code: string, message: string, retryable = false, requestId = 0): void {
    if (this.closed) return;
    this.flush();
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
    this.flush();
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
    counters.reads++;
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

  /**
   * Runs the listener side of the hello exchange on an accepted socket: a TLS socket whose
   * PSK identity the server's pskCallback checked (tlsServerOptions), or a plain one.
   */
  static accept(socket: net.Socket, options: ConnectionOptions, allowed: readonly Role[]): Promise<Connection> {
    socket.on('error', ignore);
    const transport = options.transport ?? 'tls';
    const identity = (socket as TaggedSocket).pskIdentity;
    const nonce = randomBytes(nonceBytes);
    socket.setNoDelay(true);
    try {
      socket.write(frame(encodeFrame(make('hello', { cluster: options.cluster, node: options.node, epoch: 0, role: 'listener', nonce, mac: new Uint8Array() }))));
    } catch {
      // the socket is gone; the handshake below ends on its close
    }
    return handshake(socket, options, (first, rest) => {
      if (first.kind !== 'hello') throw new ConnectionError('protocol_error', `the first frame must be hello, not ${first.kind}`);
      const hello = first.hello;
      if (!allowed.includes(hello.role)) throw new ConnectionError('protocol_error', `role ${hello.role} is not accepted here`);
      if (hello.cluster !== options.cluster) throw new ConnectionError('bad_auth', `this node is in cluster ${options.cluster}, not ${hello.cluster}`);
      if (transport === 'tls') {
        if (identity === undefined || identity.role !== hello.role || identity.node !== hello.node) {
          throw new ConnectionError('bad_auth', `the hello (${hello.role}/${hello.node}) is not the TLS identity it authenticated as`);
        }
      } else {
        const key = options.keys[hello.role as KeyRole];
        const expected = key === undefined ? undefined : helloMac(key, hello, nonce);
        const got = Buffer.from(hello.mac);
        if (expected === undefined || got.length !== expected.length || !timingSafeEqual(got, expected)) {
          throw new ConnectionError('bad_auth', `the handshake mac does not verify: wrong ${hello.role} key`);
        }
      }
      return new Connection(socket, hello, options, rest);
    });
  }

  /** Dials and runs the dialer side: TLS with the role's key (or plain), then the hellos. */
  static dial(address: string, options: ConnectionOptions & { role: Exclude<Role, 'listener'>; epoch?: number; connectTimeoutMs?: number }): Promise<Connection> {
    const { host, port } = parseAddress(address);
    const transport = options.transport ?? 'tls';
    const timeoutMs = options.connectTimeoutMs ?? handshakeTimeoutMsDefault;
    let key: string;
    try {
      key = keyFor(options.keys, options.role);
    } catch (error) {
      return Promise.reject(new ConnectionError('no_credentials', (error as Error).message));
    }
    return new Promise((resolve, reject) => {
      const socket: net.Socket =
        transport === 'tls'
          ? tls.connect({
              host,
              port,
              ...tlsVersions,
              ciphers: tlsCiphers,
              pskCallback: () => ({ psk: Buffer.from(key, 'base64url'), identity: pskIdentity(options.role, options.node) }),
              // Only the pre-shared key authenticates a node: a listener that answers with a
              // certificate instead (TLS 1.3 lets a server ignore the PSK), whoever signed it,
              // is refused. The PSK path never consults this.
              rejectUnauthorized: true,
              checkServerIdentity: () => new Error('a node authenticates with the pre-shared key of its role, never with a certificate'),
            })
          : net.connect({ host, port });
      socket.on('error', ignore);
      socket.setNoDelay(true);
      let settled = false;
      const settle = (error: Error | undefined, connection?: Connection): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error === undefined) resolve(connection as Connection);
        else {
          socket.destroy();
          reject(error);
        }
      };
      const timer = setTimeout(() => settle(new ConnectionError('connect_timeout', `no connection to ${address} within ${timeoutMs} ms`)), timeoutMs);
      const onError = (error: Error & { code?: string }): void => {
        // OpenSSL's refusals, and a listener that offered a certificate instead of our key (no code, or a certificate error).
        const tlsFailure = transport === 'tls' && (typeof error.code !== 'string' || error.code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED/.test(error.code));
        settle(
          tlsFailure
            ? new ConnectionError('bad_auth', `${address} did not complete TLS with our ${options.role} key (${error.code}): it holds another key, or is not a node of this cluster`)
            : new ConnectionError('connect_failed', `${address}: ${error.message}`),
        );
      };
      socket.once('error', onError);
      socket.once(transport === 'tls' ? 'secureConnect' : 'connect', () => {
        socket.removeListener('error', onError);
        if (transport === 'tls') {
          const tlsSocket = socket as tls.TLSSocket;
          const certificate = tlsSocket.getPeerCertificate();
          if (!tlsSocket.isSessionReused() || (certificate !== null && Object.keys(certificate).length > 0)) {
            settle(new ConnectionError('bad_auth', `${address} completed TLS without our ${options.role} key (a certificate instead): not a node of this cluster`));
            return;
          }
        }
        handshake(socket, { ...options, handshakeTimeoutMs: timeoutMs }, (first, rest) => {
          if (first.kind === 'failure') throw new ConnectionError(first.failure.code, first.failure.message);
          if (first.kind !== 'hello' || first.hello.role !== 'listener') throw new ConnectionError('protocol_error', 'the listener did not send its hello');
          if (first.hello.cluster !== options.cluster) throw new ConnectionError('bad_auth', `${address} is in cluster ${first.hello.cluster}, not ${options.cluster}`);
          const hello = { cluster: options.cluster, node: options.node, epoch: options.epoch ?? 0, role: options.role, nonce: randomBytes(nonceBytes) };
          const mac = transport === 'plain' ? helloMac(key, hello, first.hello.nonce) : new Uint8Array();
          socket.write(frame(encodeFrame(make('hello', { ...hello, mac }))));
          return new Connection(socket, first.hello, options, rest);
        }).then(
          (c) => settle(undefined, c),
          (e: Error) => settle(e),
        );
      });
    });
  }
}

/**
 * Reads the first frame (at most helloBytesMax), then hands over to `done` with the bytes
 * after it; bounded in time and size. A failure is answered with a typed Failure and closes.
 */
function handshake(socket: net.Socket, options: ConnectionOptions, done: (first: Frame, rest: Buffer) => Connection): Promise<Connection> {
  let buffered: Buffer = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    let finished = false;
    const finish = (error: Error | undefined, connection?: Connection): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.removeListener('close', onClose);
      if (error !== undefined) {
        const code = error instanceof ConnectionError || error instanceof WireError ? error.code : 'protocol_error';
        if (!socket.destroyed) {
          try {
            socket.write(frame(encodeFrame(failure(code, error.message.slice(0, 512), { fatal: true }))));
            socket.end();
          } catch {
            // the socket is gone
          }
          setTimeout(() => socket.destroy(), 500).unref();
        }
        reject(error);
      } else resolve(connection as Connection);
    };
    const timeoutMs = options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault;
    const timer = setTimeout(() => finish(new ConnectionError('handshake_timeout', `no hello within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    const onClose = (): void => finish(new ConnectionError('connection_lost', 'closed during the handshake'));
    socket.on('close', onClose);
    socket.on('data', (chunk: Buffer) => {
      if (finished) return;
      try {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        if (buffered.length < 4) return;
        const length = buffered.readUInt32BE(0);
        if (length > helloBytesMax) throw new WireError('frame_too_large', `a ${length}-byte frame before the handshake is done; at most ${helloBytesMax} (helloBytesMax)`);
        if (buffered.length < 4 + length) return;
        const first = decodeFrame(buffered.subarray(4, 4 + length));
        finish(undefined, done(first, buffered.subarray(4 + length)));
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
