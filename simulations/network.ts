// The simulated network: FIFO connections between processes, implementing the product's
// Net and Link (chain/runtime/io.ts), with every frame encoded and decoded by the product's
// protobuf wire code; datagrams for the failure detector. Faults: one-way and two-way
// partitions (frames are lost and the connection breaks after a TCP-like timeout), lossy
// spells, slow processes, resets, frames bigger than frameBytesMax (the sender's link
// fails, as Connection.send does), and corrupted peer frames (a field is set to a value that
// validation must refuse; the world remembers which frames it corrupted).

import type { Frame, Role, WireDelta } from '../chain/core/frames.ts';
import { Inbox, type DialOptions, type Link, type LinkError, type Net } from '../chain/runtime/io.ts';
import { decodeFrame, encodeFrame, failure } from '../chain/runtime/wire.ts';
import type { SimProcess } from './processes.ts';
import type { World } from './world.ts';
import { ViolationError } from './events.ts';

/** Bound on one frame's or datagram's travel time (virtual ms). */
export const latencyMsMax = 1_000;

interface Side {
  readonly proc: SimProcess;
  readonly incarnation: number;
  readonly role: Role;
  closed: boolean;
  readonly inbox: Inbox;
  readonly closeHandlers: ((error: LinkError | undefined) => void)[];
}

export class SimConn {
  /** False once broken or closed by either side: nothing more is sent. */
  open = true;
  readonly lastArrival: [number, number] = [0, 0];
  readonly links: [SimLink, SimLink];
  /** requestIds of Configure frames delivered over this connection (their answers are acknowledgements). */
  readonly configures = new Set<number>();
  constructor(
    readonly net: SimNetwork,
    readonly sides: [Side, Side],
    /** A link between two nodes (predecessor and successor): the kind the corrupt fault touches. */
    readonly peer: boolean,
  ) {
    this.links = [new SimLink(this, 0), new SimLink(this, 1)];
  }
}

export class SimLink implements Link {
  constructor(
    readonly conn: SimConn,
    readonly side: 0 | 1,
  ) {}

  private get mine(): Side {
    return this.conn.sides[this.side];
  }

  private get theirs(): Side {
    return this.conn.sides[1 - this.side] as Side;
  }

  get remote(): { node: string; role: Role } {
    return { node: this.theirs.proc.name, role: this.theirs.role };
  }

  /** What this end knows: a connection that broke looks open until the end hears of it (as a socket does). */
  get isOpen(): boolean {
    return !this.mine.closed;
  }

  /** The process at the other end. */
  get peerProc(): SimProcess {
    return this.theirs.proc;
  }

  send(frame: Frame): void {
    this.conn.net.send(this.conn, this.side, frame);
  }

  fail(code: string, message: string, retryable: boolean): void {
    if (!this.isOpen) return;
    this.conn.net.world.note(`${this.mine.proc.name} closes its link with ${this.theirs.proc.name}: ${code} ${message}`);
    this.send(failure(code, message, { retryable, fatal: true }));
    this.close();
  }

  close(): void {
    this.conn.net.close(this.conn, this.side);
  }

  onFrame(handler: (frame: Frame) => void): void {
    this.mine.inbox.set(handler);
  }

  onClose(handler: (error: LinkError | undefined) => void): void {
    const side = this.mine;
    if (side.closed) {
      const world = this.conn.net.world;
      world.after(0, () => side.proc.run(side.incarnation, () => handler(undefined)));
      return;
    }
    side.closeHandlers.push(handler);
  }
}

export class SimNetwork {
  /** Directed blocks "a>b": frames from a to b are lost (and their connection breaks). */
  readonly blocked = new Set<string>();
  readonly slow = new Map<string, number>();
  dropRate = 0;
  /** Share of peer frames corrupted (the corrupt fault). */
  corruptRate = 0;
  /** Until when some member was cut off or slowed (a partition, isolation, slowness, frame loss or a long pause). */
  cutOffUntil = 0;
  framesInFlight = 0;
  framesSent = 0;
  datagramsSent = 0;
  /** Frames the corrupt fault changed (their decoded objects). */
  readonly corrupted = new WeakSet<object>();
  /** When each decoded Subscribe was sent (the linearizable-read check needs the start of a read). */
  readonly sentAt = new WeakMap<object, number>();

  constructor(
    readonly world: World,
    readonly frameBytesMax: number,
  ) {}

  isBlocked(from: string, to: string): boolean {
    return this.blocked.size > 0 && this.blocked.has(`${from}>${to}`);
  }

  slowness(proc: string): number {
    return this.slow.size === 0 ? 1 : (this.slow.get(proc) ?? 1);
  }

  latency(from: string, to: string): number {
    const { min, max } = this.world.settings.latencyMs;
    const rng = this.world.rng;
    let ms = rng.range(min, max);
    if (rng.chance(0.02)) ms += rng.range(5, 40); // a spike
    // The slower end sets the pace (two slow ends do not multiply); a frame takes at most a second.
    return Math.min(ms * Math.max(this.slowness(from), this.slowness(to)), latencyMsMax);
  }

  /** The product's Net, for one incarnation of `proc`. */
  netFor(proc: SimProcess): Net {
    const incarnation = proc.incarnation;
    return {
      dial: (address: string, options: DialOptions, done: (result: Link | LinkError) => void): void => this.dial(proc, incarnation, address, options, done),
    };
  }

  private dial(from: SimProcess, fromInc: number, address: string, options: DialOptions, done: (result: Link | LinkError) => void): void {
    const world = this.world;
    const to = world.procAt(address);
    let settled = false;
    const settle = (result: Link | LinkError): void => {
      if (settled) return;
      settled = true;
      from.run(fromInc, () => done(result));
    };
    // A dial that does not complete in time (a stopped or hung target) fails, as a connect timeout.
    world.after(options.timeoutMs ?? 3_000, () => settle({ code: 'connect_timeout', message: `no connection to ${address} in time` }));
    const rtt = this.latency(from.name, to?.name ?? address) + this.latency(to?.name ?? address, from.name);
    world.after(rtt, () => {
      if (settled || !from.alive || from.incarnation !== fromInc) return;
      if (to === undefined || !to.alive || this.isBlocked(from.name, to.name) || this.isBlocked(to.name, from.name)) {
        // Refused at once by a dead process's host; a partition times out.
        const why = to === undefined || !to.alive ? { code: 'connect_failed', message: `${address}: connection refused` } : { code: 'connect_timeout', message: `${address}: unreachable` };
        world.after(to !== undefined && !to.alive ? 1 : 200, () => settle(why));
        return;
      }
      const side = (proc: SimProcess, role: Role): Side => ({ proc, incarnation: proc.incarnation, role, closed: false, inbox: new Inbox(), closeHandlers: [] });
      const conn = new SimConn(this, [side(from, options.role), side(to, 'listener')], options.role === 'peer');
      from.conns.add(conn);
      to.conns.add(conn);
      const toInc = to.incarnation;
      to.run(toInc, () => {
        if (settled || !conn.open) {
          this.breakConn(conn, 0, 1);
          return;
        }
        to.accept(conn.links[1]);
        settle(conn.links[0]);
      });
    });
  }

  send(conn: SimConn, s: 0 | 1, frame: Frame): void {
    if (!conn.open || conn.sides[s].closed) return;
    const from = conn.sides[s];
    const toSide = conn.sides[1 - s] as Side;
    const to = toSide.proc;
    const world = this.world;
    if (this.isBlocked(from.proc.name, to.name)) {
      // The frame never arrives; TCP gives up on the connection after a while.
      this.breakConn(conn, 150, 400);
      return;
    }
    if (this.dropRate > 0 && world.rng.chance(this.dropRate)) {
      this.breakConn(conn, 1, 20);
      return;
    }
    if (frame.kind === 'chainInfo' && conn.configures.delete(frame.chainInfo.requestId)) world.observer.configAcked(from.proc.name, frame.chainInfo.chain, frame.chainInfo.epoch);
    const bytes = encodeFrame(frame);
    if (bytes.length > this.frameBytesMax) {
      // Connection.send refuses its own oversized frame and fails the link.
      world.note(`${from.proc.name} -> ${to.name}: a ${bytes.length}-byte ${frame.kind} frame is over frameBytesMax (${this.frameBytesMax}); the link fails`);
      this.breakConn(conn, 0, 1);
      return;
    }
    const arrival = Math.max(world.now + this.latency(from.proc.name, to.name), conn.lastArrival[s]);
    conn.lastArrival[s] = arrival;
    const sentAt = world.now;
    const corrupt = conn.peer && this.corruptRate > 0 && world.rng.chance(this.corruptRate);
    this.framesInFlight++;
    this.framesSent++;
    world.at(arrival, () => {
      this.framesInFlight--;
      to.run(toSide.incarnation, () => {
        if (toSide.closed) return;
        const decoded = decodeFrame(bytes);
        if (decoded.kind === 'subscribe') this.sentAt.set(decoded.subscribe, sentAt);
        else if (decoded.kind === 'configure') conn.configures.add(decoded.configure.requestId);
        const damage = corrupt ? corruptFrame(decoded, world.rng.int(corruptions)) : undefined;
        if (damage !== undefined) {
          this.corrupted.add(decoded);
          world.note(`corrupted a ${decoded.kind} frame ${from.proc.name} -> ${to.name}: ${damage.field}`);
        }
        world.delivering = damage === undefined ? undefined : decoded;
        try {
          toSide.inbox.deliver(decoded);
        } finally {
          world.delivering = undefined;
        }
        // A field checked before anything else is used must get the frame refused: a typed
        // rejection closes the link. (A redo or a snapshot may go unread, in a duplicate.)
        if (damage?.refused === true && conn.open) {
          throw new ViolationError('validation', `${to.name} accepted a ${decoded.kind} frame from ${from.proc.name} with ${damage.field}`);
        }
      });
    });
  }

  /** An unreliable datagram (UDP): lost under a partition or a lossy spell, never breaks anything. */
  datagram(from: SimProcess, address: string, bytes: Uint8Array): void {
    const to = this.world.procAt(address);
    if (to === undefined || !from.alive || this.isBlocked(from.name, to.name) || (this.dropRate > 0 && this.world.rng.chance(this.dropRate))) return;
    this.datagramsSent++;
    const inc = to.incarnation;
    this.world.after(this.latency(from.name, to.name), () => to.run(inc, () => to.receiveDatagram(bytes)));
  }

  /** A graceful close by side `s`: its side closes now, the other after the frames already sent. */
  close(conn: SimConn, s: 0 | 1): void {
    const mine = conn.sides[s];
    conn.open = false;
    this.closeSide(mine, 0);
    const theirs = conn.sides[1 - s] as Side;
    this.closeSide(theirs, Math.max(conn.lastArrival[s], this.world.now) - this.world.now + this.latency(mine.proc.name, theirs.proc.name));
  }

  /** The connection breaks: each side learns of it after its own delay. */
  breakConn(conn: SimConn, minMs: number, maxMs: number): void {
    if (!conn.open && conn.sides.every((x) => x.closed)) return;
    conn.open = false;
    for (const side of conn.sides) this.closeSide(side, this.world.rng.range(minMs, maxMs), { code: 'connection_lost', message: 'the connection broke' });
  }

  private closeSide(side: Side, delayMs: number, error?: LinkError): void {
    if (side.closed) return;
    const deliver = (): void => {
      if (side.closed) return;
      side.closed = true;
      side.inbox.close();
      for (const c of side.proc.conns) if (c.sides.includes(side)) side.proc.conns.delete(c);
      const handlers = side.closeHandlers.splice(0);
      for (const h of handlers) h(error);
    };
    this.world.after(delayMs, () => side.proc.run(side.incarnation, deliver));
  }

  /** A connection end that its running process has not noticed yet (a quiescent world has none). */
  unnoticedClose(): string | undefined {
    for (const proc of this.world.processes()) {
      if (!proc.alive || proc.hung) continue;
      for (const conn of proc.conns) {
        if (conn.open) continue;
        for (const side of conn.sides)
          if (side.proc === proc && side.incarnation === proc.incarnation && !side.closed)
            return `${proc.name} has not noticed that its connection to ${conn.sides[0] === side ? conn.sides[1].proc.name : conn.sides[0].proc.name} ended`;
      }
    }
    return undefined;
  }

  /** A process died: its sides close silently; peers notice after `minMs..maxMs`. */
  processDied(proc: SimProcess, minMs: number, maxMs: number): void {
    for (const conn of proc.conns) {
      conn.open = false;
      for (const side of conn.sides) {
        if (side.proc === proc) side.closed = true;
        else this.closeSide(side, this.world.rng.range(minMs, maxMs), { code: 'connection_lost', message: `${proc.name} went away` });
      }
    }
    proc.conns.clear();
  }
}

/** How many ways corruptFrame has to damage a frame. */
const corruptions = 8;

/**
 * Sets one field of a peer frame (`which` of `corruptions`) to a value validation must refuse
 * (never one it would pass: a valid-looking wrong value would be silent damage, which TCP's
 * checksums exclude). `refused`: the field is checked before the frame is used, so the frame
 * must be refused. Undefined when the frame has no such field.
 */
function corruptFrame(frame: Frame, which: number): { field: string; refused: boolean } | undefined {
  switch (frame.kind) {
    case 'back': {
      const d = frame.back.deltas[0];
      return d === undefined ? undefined : corruptDelta(d, which);
    }
    case 'catchup': {
      const c = frame.catchup.docs[0];
      if (c === undefined) return undefined;
      const d = c.deltas[0];
      if (which === 7) {
        c.entropy = c.entropy.subarray(0, 16);
        return { field: 'an entropy of 16 bytes', refused: true };
      }
      if (which === 0 && c.snapshotSeq > 0) {
        c.dedupeJson = '[["cl1",[[1,1,"{}",0]]]]';
        return { field: 'a dedupe entry whose outcome is not an outcome', refused: true };
      }
      if (d !== undefined) return corruptDelta(d, which);
      if (c.snapshotSeq > 0) {
        c.snapshotJson = '[{';
        return { field: 'a snapshot that is not JSON', refused: true };
      }
      return undefined;
    }
    case 'forward': {
      const e = frame.forward.envelopes[0];
      if (e === undefined) return undefined;
      if (e.seq === 1 && which >= 6) {
        // The envelope that creates the document: without its entropy, or with a short one.
        if (which === 6) delete e.entropy;
        else e.entropy = (e.entropy ?? new Uint8Array(32)).subarray(0, 31);
        return { field: which === 6 ? 'no entropy on seq 1' : 'an entropy of 31 bytes', refused: true };
      }
      switch (which % 4) {
        case 0:
          e.docType = 'no-such-type';
          return { field: 'an unknown document type', refused: true };
        case 1:
          e.seq = 0;
          return { field: 'seq 0', refused: true };
        case 2:
          e.clientId = 'not an id!';
          return { field: 'a malformed clientId', refused: true };
        default:
          e.viewer = '';
          return { field: 'an empty viewer', refused: true };
      }
    }
    default:
      return undefined;
  }
}

function corruptDelta(d: WireDelta, which: number): { field: string; refused: boolean } {
  switch (which % 6) {
    case 0:
    case 1:
      d.redoJson = '{"not json';
      return { field: 'a redo that is not JSON', refused: false };
    case 2:
      d.undoJson = '[]';
      return { field: 'an undo that is not an object', refused: true };
    case 3:
      d.outcomeJson = '{"ok":"yes"}';
      return { field: 'a malformed outcome', refused: true };
    case 4:
      d.clientId = 'not an id!';
      return { field: 'a malformed clientId', refused: true };
    default:
      d.doc = 'bad doc!';
      return { field: 'a malformed document id', refused: true };
  }
}
