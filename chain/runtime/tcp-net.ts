// Net over TCP: authenticated, framed connections (connection.ts) as Links, and a listener.

import net from 'node:net';
import type { Frame, Role } from '../core/frames.ts';
import { Connection, ConnectionError, type ConnectionOptions } from './connection.ts';
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

export type TcpOptions = Omit<ConnectionOptions, 'node'>;

export class TcpNet implements Net {
  constructor(private readonly options: TcpOptions) {}

  dial(address: string, options: DialOptions, done: (result: Link | LinkError) => void): void {
    Connection.dial(address, { ...this.options, node: options.name, role: options.role, epoch: options.epoch, connectTimeoutMs: options.timeoutMs }).then(
      (connection) => done(new TcpLink(connection)),
      (error: Error) => done({ code: error instanceof ConnectionError ? error.code : 'connect_failed', message: error.message }),
    );
  }
}

/** Listens on host:port; every connection that completes the handshake in one of `roles` goes to `accept`. */
export function listenTcp(host: string, port: number, options: ConnectionOptions, roles: readonly Role[], accept: (link: Link) => void, log: (line: string) => void): Promise<net.Server> {
  const server = net.createServer((socket) => {
    Connection.accept(socket, options, roles).then(
      (connection) => accept(new TcpLink(connection)),
      (error: Error) => log(`rejected a connection: ${error.message}`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
