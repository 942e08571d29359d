// The small interfaces the product's runtime is written against. Real processes implement
// them with TCP (tcp-net.ts), LevelDB (level-disk.ts), UDP and timers (system.ts); the
// simulator with a virtual network, disks and clock with seeded faults. The driver, the
// manager loop, the client session and the proxy router use nothing else, so the simulator
// runs them as they are.
//
// Everything is callback-based and single-threaded: a callback runs as one event, so in the
// simulator a run is a pure function of its seed.

import type { Frame, Role } from '../core/frames.ts';
import type { Op } from '../core/store.ts';

export interface LinkError {
  readonly code: string;
  readonly message: string;
}

/** One authenticated connection. */
export interface Link {
  /** The other end: for an accepted link the authenticated dialer, for a dialed one the listener. */
  readonly remote: { readonly node: string; readonly role: Role };
  readonly isOpen: boolean;
  send(frame: Frame): void;
  /** Sends a typed, fatal failure, then closes. */
  fail(code: string, message: string, retryable: boolean): void;
  close(): void;
  /** Frames that arrived before a handler was set are delivered when it is. */
  onFrame(handler: (frame: Frame) => void): void;
  /** Runs once when the link closes, whichever side or the network closed it (also after close()). */
  onClose(handler: (error: LinkError | undefined) => void): void;
}

export interface DialOptions {
  readonly role: 'peer' | 'client' | 'admin';
  /** This end's name, authenticated to the listener. */
  readonly name: string;
  readonly epoch?: number;
  readonly timeoutMs?: number;
}

export interface Net {
  /** Connects and authenticates; `done` runs once, with the link or why it failed. */
  dial(address: string, options: DialOptions, done: (result: Link | LinkError) => void): void;
}

export const isLink = (result: Link | LinkError): result is Link => 'send' in result;

/**
 * A link's receiving end: frames that arrive before a handler is set wait, in order, and are
 * delivered when it is (a peer may send right after the handshake). Both worlds' links use it.
 */
export class Inbox {
  private handler: ((frame: Frame) => void) | undefined;
  private early: Frame[] = [];
  closed = false;

  set(handler: (frame: Frame) => void): void {
    this.handler = handler;
    const early = this.early;
    this.early = [];
    for (const f of early) {
      if (this.closed) break;
      handler(f);
    }
  }

  deliver(frame: Frame): void {
    if (this.closed) return;
    if (this.handler === undefined) this.early.push(frame);
    else this.handler(frame);
  }

  close(): void {
    this.closed = true;
    this.early = [];
  }
}

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds (wall clock in real processes, virtual time in the simulator). */
  now(): number;
  /** A background timer (ticks) does not keep a real process alive by itself. */
  after(ms: number, run: () => void, background?: boolean): Timer;
  /** Runs `run` after the current event, before timers that are due later. */
  soon(run: () => void): void;
}

export interface Disk {
  /** Writes one batch atomically (synced, if this disk syncs), then calls `done`; an error is fatal. */
  write(ops: readonly Op[], done: (error: Error | undefined) => void): void;
}

/** Unreliable datagrams (UDP): the failure detector's transport. */
export interface Datagrams {
  send(address: string, bytes: Uint8Array): void;
  onReceive(handler: (bytes: Uint8Array) => void): void;
}
