// Net over TCP: authenticated, framed connections (connection.ts) as Links, and a listener.

import net from 'node:net';
import tls from 'node:tls';
import type { Frame, Role } from '../core/frames.ts';
import { Connection, ConnectionError, type ConnectionOptions, handshakeTimeoutMsDefault, tlsServerOptions } from './connection.ts';
import { type Credentials, keyringOf } from './credentials.ts';
import type { DialOptions, Link, LinkError, Net } from './io.ts';

export class TcpLink implements Link {
  constructor(readonly connection: Connection) {}

  get remote(): { node: string; role: Role } {
    return { node: this.connection.peer.node, role: this.connection.peer.role };
  }

  get isOpen(): boolean {
    return this.connection.isOpen;
  }

  send(frame: Frame): void {
    this.connection.send(frame);
  }

  fail(code: string, message: string, retryable: boolean): void {
    this.connection.fail(code, message, retryable);
  }

  close(): void {
    this.connection.close();
  }

  onFrame(handler: (frame: Frame) => void): void {
    this.connection.onFrame(handler);
  }

  onClose(handler: (error: LinkError | undefined) => void): void {
    this.connection.onClose((error) => handler(error === undefined ? undefined : { code: error instanceof ConnectionError ? error.code : 'connection_lost', message: error.message }));
  }
}

/** Credentials (a cluster secret or role keys, and the transport) and the connection bounds. */
export type TcpOptions = Credentials & Omit<ConnectionOptions, 'node' | 'cluster' | 'keys' | 'transport'>;

/** What a connection needs of TcpOptions (the keys resolved). */
export function connectionOptions(options: TcpOptions, node: string): ConnectionOptions {
  const { secret: _secret, keys: _keys, ...rest } = options;
  return { ...rest, keys: keyringOf(options), node };
}

export class TcpNet implements Net {
  /** The options with the keys resolved once (deriving them from a secret is four HKDFs). */
  private readonly options: TcpOptions;

  constructor(options: TcpOptions) {
    if (options.transport === 'plain') warnPlain();
    const { secret: _secret, ...rest } = options;
    this.options = { ...rest, keys: keyringOf(options) };
  }

  dial(address: string, options: DialOptions, done: (result: Link | LinkError) => void): void {
    Connection.dial(address, { ...connectionOptions(this.options, options.name), role: options.role, epoch: options.epoch, connectTimeoutMs: options.timeoutMs }).then(
      (connection) => done(new TcpLink(connection)),
      (error: Error) => done({ code: error instanceof ConnectionError ? error.code : 'connect_failed', message: error.message }),
    );
  }
}

let warnedPlain = false;
function warnPlain(): void {
  if (warnedPlain) return;
  warnedPlain = true;
  console.error('WARNING: transport "plain": node connections are not encrypted and frames are not protected (only for measuring what TLS costs)');
}

/** Bound on accepted connections still in their handshake (TLS and hellos). */
export const handshakesMaxDefault = 128;

export interface ListenOptions extends ConnectionOptions {
  handshakesMax?: number;
}

/**
 * Listens on host:port; every connection that completes the handshake in one of `roles` goes
 * to `accept`. Connections in the handshake are bounded (handshakesMax: more are closed at
 * once) and have handshakeTimeoutMs to finish; nothing a socket does before then can throw.
 */
export function listenTcp(host: string, port: number, options: ListenOptions, roles: readonly Role[], accept: (link: Link) => void, log: (line: string) => void): Promise<net.Server> {
  return listenConnections(host, port, options, roles, (connection) => accept(new TcpLink(connection)), log);
}

/** listenTcp's listener, handing over the Connection itself (the benchmark's baseline hosts). */
export function listenConnections(
  host: string,
  port: number,
  options: ListenOptions,
  roles: readonly Role[],
  accept: (connection: Connection) => void,
  log: (line: string) => void,
): Promise<net.Server> {
  const transport = options.transport ?? 'tls';
  if (transport === 'plain') warnPlain();
  const handshakesMax = options.handshakesMax ?? handshakesMaxDefault;
  const timeoutMs = options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault;
  // Refusals are logged at most logLinesPerSecondMax a second (a flood must not flood the log).
  const limited = rateLimitedLog(log);
  /** Sockets in their handshake, by remote address (a TLS socket has the same one as its raw socket). */
  const handshaking = new Map<string, () => void>();
  let refused = 0;
  const remoteOf = (socket: net.Socket): string => `${socket.remoteAddress}:${socket.remotePort}`;
  const admit = (raw: net.Socket): boolean => {
    raw.on('error', () => {});
    if (handshaking.size >= handshakesMax) {
      refused++;
      limited(`refused a connection: ${handshakesMax} connections are in their handshake (handshakesMax); ${refused} refused so far`);
      raw.destroy();
      return false;
    }
    const remote = remoteOf(raw);
    // The deadline covers TLS and the hellos (a socket that never sends a byte included).
    const deadline = setTimeout(() => {
      limited(`rejected a connection: handshake_timeout: no completed handshake within ${timeoutMs} ms`);
      raw.destroy();
    }, timeoutMs);
    deadline.unref();
    const release = (): void => {
      clearTimeout(deadline);
      if (handshaking.get(remote) === release) handshaking.delete(remote);
    };
    handshaking.set(remote, release);
    raw.once('close', release);
    return true;
  };
  const serve = (socket: net.Socket): void => {
    Connection.accept(socket, options, roles).then(
      (connection) => {
        handshaking.get(remoteOf(socket))?.();
        accept(connection);
      },
      (error: Error) => limited(`rejected a connection: ${error.message}`),
    );
  };
  let server: net.Server;
  if (transport === 'tls') {
    const tlsServer = tls.createServer(tlsServerOptions(options.keys, roles, timeoutMs));
    tlsServer.on('connection', (raw: net.Socket) => {
      admit(raw);
    });
    tlsServer.on('secureConnection', (socket: tls.TLSSocket) => serve(socket));
    tlsServer.on('tlsClientError', (error: Error & { code?: string }) =>
      limited(`rejected a connection: bad_auth: TLS handshake failed (${error.code ?? error.message.split('\n')[0]}): the peer does not hold the key of the role it claims, or is not TLS`),
    );
    server = tlsServer;
  } else {
    server = net.createServer((socket) => {
      if (admit(socket)) serve(socket);
    });
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      server.on('error', (error) => log(`listener: ${error.message}`));
      resolve(server);
    });
  });
}

/** Lines of refusals a listener logs per second; the rest are counted in the next line. */
export const logLinesPerSecondMax = 10;

function rateLimitedLog(log: (line: string) => void): (line: string) => void {
  let windowStart = 0;
  let lines = 0;
  let suppressed = 0;
  return (line) => {
    const now = Date.now();
    if (now - windowStart >= 1_000) {
      if (suppressed > 0) log(`(${suppressed} more refusals in the last second not logged)`);
      windowStart = now;
      lines = 0;
      suppressed = 0;
    }
    if (lines++ < logLinesPerSecondMax) log(line);
    else suppressed++;
  };
}
