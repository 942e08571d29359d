// Clock and datagrams of a real process: wall-clock time, Node timers, a UDP socket.

import dgram from 'node:dgram';
import net from 'node:net';
import type { Clock, Datagrams, Timer } from './io.ts';

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms: number, run: () => void, background = false): Timer {
    const timer = setTimeout(run, Math.max(0, ms));
    if (background) timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
  soon(run: () => void): void {
    setImmediate(run);
  },
};

export class UdpDatagrams implements Datagrams {
  private handler: ((bytes: Uint8Array) => void) | undefined;

  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (bytes) => this.handler?.(bytes));
  }

  /** Binds a UDP socket (port 0: any). */
  static async bind(host: string, port: number, log: (line: string) => void): Promise<UdpDatagrams> {
    const socket = dgram.createSocket('udp4');
    socket.on('error', (error) => log(`gossip socket: ${error.message}`));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => resolve());
    });
    return new UdpDatagrams(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Sends one datagram; an address that is not host:port (a peer's gossip may carry anything) is dropped, never thrown. */
  send(address: string, bytes: Uint8Array): void {
    const at = address.lastIndexOf(':');
    const port = Number(address.slice(at + 1));
    const host = address.slice(0, at);
    if (at <= 0 || !Number.isInteger(port) || port <= 0 || port >= 65536 || (net.isIP(host) === 0 && !/^[A-Za-z0-9.-]{1,253}$/.test(host))) {
      this.dropped++;
      return;
    }
    this.socket.send(bytes, port, host, (error) => {
      // A send that failed (an unreachable or unresolvable address) is a lost datagram, as UDP allows.
      if (error) this.dropped++;
    });
  }

  /** Datagrams not sent: an address that was not host:port, or a send that failed. */
  dropped = 0;

  onReceive(handler: (bytes: Uint8Array) => void): void {
    this.handler = handler;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
