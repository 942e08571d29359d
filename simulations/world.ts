// The simulated world: a virtual clock, a seeded PRNG, an event queue, a network of FIFO
// connections with faults, disks with crash semantics, node processes that crash and restart,
// the chain manager and clients that retry. Everything runs in one thread; one event runs at a
// time, so a run is a pure function of its scenario.
//
// The nodes run the production Replica (chain/replica.ts), store code (chain/store.ts over
// memory-level, with writeBatch and recover), wire encoding (every peer and client frame is
// encoded and decoded with protobufjs), manager decisions (chain/manager.ts) and engine. Only
// the runtime around them is simulated; SimNode mirrors ChainNode (chain/node.ts) line for
// line where it routes frames, runs the group-commit write loop and redials successors.

import { MemoryLevel } from 'memory-level';
import { assert } from '../engine/assert.ts';
import { Prng } from '../engine/random.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import type { JsonObject } from '../engine/json.ts';
import { apply } from '../engine/patch.ts';
import { concreteOp, viewers, type Move } from '../engine/workloads.ts';
import { addTail, catchingUp, removeNode } from '../chain/manager.ts';
import { plan } from '../chain/placement.ts';
import { Swim, type SwimMessage } from '../chain/swim.ts';
import { Replica, type ClientRef, type ReplicaLimits } from '../chain/replica.ts';
import { recover, writeBatch, type Batch, type ChainConfig, type Store } from '../chain/store.ts';
import { decodeFrame, decodeGossip, encodeFrame, encodeGossip, failure, make, type Frame, type ViewUpdate, type WireEnvelope } from '../chain/wire.ts';

// -----------------------------------------------------------------------------------------
// Time

type Task = () => unknown;

/** A binary heap of tasks ordered by (time, insertion order). */
class EventQueue {
  private times: number[] = [];
  private orders: number[] = [];
  private tasks: Task[] = [];
  private counter = 0;

  get size(): number {
    return this.tasks.length;
  }

  push(time: number, task: Task): void {
    let i = this.tasks.length;
    const order = this.counter++;
    this.times.push(time);
    this.orders.push(order);
    this.tasks.push(task);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  peekTime(): number {
    return this.times[0] as number;
  }

  pop(): Task {
    const top = this.tasks[0] as Task;
    const last = this.tasks.length - 1;
    this.swap(0, last);
    this.times.pop();
    this.orders.pop();
    this.tasks.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.tasks.length && this.less(l, m)) m = l;
      if (r < this.tasks.length && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const ta = this.times[a] as number;
    const tb = this.times[b] as number;
    return ta < tb || (ta === tb && (this.orders[a] as number) < (this.orders[b] as number));
  }

  private swap(a: number, b: number): void {
    [this.times[a], this.times[b]] = [this.times[b] as number, this.times[a] as number];
    [this.orders[a], this.orders[b]] = [this.orders[b] as number, this.orders[a] as number];
    [this.tasks[a], this.tasks[b]] = [this.tasks[b] as Task, this.tasks[a] as Task];
  }
}

// -----------------------------------------------------------------------------------------
// Settings

export interface WorldSettings {
  readonly seed: number;
  readonly nodes: number;
  /** Chains and their initial members (node indexes, head first). */
  readonly chains: readonly { readonly id: string; readonly members: readonly number[] }[];
  /** Target chain length; the manager re-adds nodes up to it when healing. */
  readonly k: number;
  readonly docs: readonly { readonly id: string; readonly type: string; readonly chain: string }[];
  /** One entry per client: its viewer index and its messages. */
  readonly clients: readonly { readonly viewer: number; readonly ops: readonly { readonly atMs: number; readonly doc: number; readonly move: Move }[] }[];
  readonly latencyMs: { readonly min: number; readonly max: number };
  readonly diskMs: { readonly min: number; readonly max: number };
  readonly tickMs: number;
  readonly limits?: Partial<ReplicaLimits>;
  /** Nodes and the manager run SWIM; the manager reconfigures on its own with plan(). */
  readonly autopilot?: boolean;
}

export const defaultNetwork = { latencyMs: { min: 0.05, max: 1.5 }, diskMs: { min: 0.1, max: 2.5 }, tickMs: 100 };

/** A violation found while the world ran; the run stops at the first one. */
export class ViolationError extends Error {
  constructor(
    readonly invariant: string,
    readonly detail: string,
  ) {
    super(`${invariant}: ${detail}`);
  }
}

/** What the world tells the invariant checker as it runs. */
export interface Observer {
  sequenced(node: string, chain: string, envelope: WireEnvelope): void;
  viewFrame(node: string, update: ViewUpdate, docType: string, basis: { readonly speculative: JsonObject; readonly confirmed: JsonObject }): void;
  afterEvent(world: World): void;
}

// -----------------------------------------------------------------------------------------
// Network

interface ConnSide {
  readonly proc: Proc;
  readonly incarnation: number;
  closed: boolean;
  onFrame: (frame: Frame) => void;
  onClose: () => void;
}

export class Conn {
  /** False once broken or closed by either side: nothing more is sent. */
  open = true;
  readonly lastArrival: [number, number] = [0, 0];
  constructor(readonly sides: [ConnSide, ConnSide]) {}
  side(proc: Proc): 0 | 1 {
    return this.sides[0].proc === proc ? 0 : 1;
  }
  peer(proc: Proc): Proc {
    return this.sides[1 - this.side(proc)]?.proc as Proc;
  }
}

export interface Proc {
  readonly name: string;
  alive: boolean;
  incarnation: number;
  readonly conns: Set<Conn>;
  /** Runs `run` now, or when the process is no longer paused (a paused process does nothing). */
  whenRunning?(run: () => unknown): unknown;
}

const running = (proc: Proc | undefined, run: () => unknown): unknown => (proc?.whenRunning === undefined ? run() : proc.whenRunning(run));

export class Network {
  /** Directed blocks "a>b": frames from a to b are lost (and their connection breaks). */
  readonly blocked = new Set<string>();
  readonly slow = new Map<string, number>();
  dropRate = 0;
  /**
   * Until when some member was cut off or slowed (a partition, isolation, slowness, frame
   * loss or a long pause). A member cut off declares others dead, and that news spreads.
   */
  cutOffUntil = 0;
  framesInFlight = 0;
  framesSent = 0;

  constructor(private readonly world: World) {}

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

  /** Opens a connection from `from` to node `to` after a handshake, or reports failure. */
  dial(from: Proc, toName: string, accept: (conn: Conn) => void, connected: (conn: Conn) => void, failed: () => void): void {
    const world = this.world;
    const to = world.proc(toName);
    const rtt = this.latency(from.name, toName) + this.latency(toName, from.name);
    const fromInc = from.incarnation;
    world.after(rtt, () => {
      if (!from.alive || from.incarnation !== fromInc) return;
      if (to === undefined || !to.alive || this.isBlocked(from.name, toName) || this.isBlocked(toName, from.name)) {
        // Refused at once by a dead process's host; a partition times out.
        world.after(to !== undefined && !to.alive ? 1 : 200, () => from.alive && from.incarnation === fromInc && failed());
        return;
      }
      const noop = (): void => {};
      const conn = new Conn([
        { proc: from, incarnation: from.incarnation, closed: false, onFrame: noop, onClose: noop },
        { proc: to, incarnation: to.incarnation, closed: false, onFrame: noop, onClose: noop },
      ]);
      from.conns.add(conn);
      to.conns.add(conn);
      running(to, () => {
        // The target died (or restarted) while paused: the handshake never completed.
        if (!conn.open || !to.alive || to.incarnation !== conn.sides[1].incarnation) {
          from.conns.delete(conn);
          if (from.alive && from.incarnation === fromInc) failed();
          return;
        }
        accept(conn);
        connected(conn);
      });
    });
  }

  send(conn: Conn, from: Proc, frame: Frame): void {
    if (!conn.open) return;
    const s = conn.side(from);
    const toSide = conn.sides[1 - s] as ConnSide;
    const to = toSide.proc;
    const world = this.world;
    if (this.isBlocked(from.name, to.name)) {
      // The frame never arrives; TCP gives up on the connection after a while.
      this.breakConn(conn, 150, 400);
      return;
    }
    if (this.dropRate > 0 && world.rng.chance(this.dropRate)) {
      this.breakConn(conn, 1, 20);
      return;
    }
    const arrival = Math.max(world.now + this.latency(from.name, to.name), conn.lastArrival[s]);
    conn.lastArrival[s] = arrival;
    const bytes = encodeFrame(frame);
    this.framesInFlight++;
    this.framesSent++;
    world.at(arrival, () => {
      this.framesInFlight--;
      return running(to, () => {
        if (toSide.closed || !to.alive || to.incarnation !== toSide.incarnation) return;
        toSide.onFrame(decodeFrame(bytes));
      });
    });
  }

  /** An unreliable datagram (UDP): lost under a partition or a lossy spell, never breaks anything. */
  datagram(from: Proc, to: string, deliver: () => unknown): void {
    if (!from.alive || this.isBlocked(from.name, to) || (this.dropRate > 0 && this.world.rng.chance(this.dropRate))) return;
    this.datagramsSent++;
    this.world.after(this.latency(from.name, to), () => running(this.world.proc(to), deliver));
  }
  datagramsSent = 0;

  /** A graceful close by `by`: its side closes now, the other after the frames already sent. */
  close(conn: Conn, by: Proc): void {
    const s = conn.side(by);
    const mine = conn.sides[s] as ConnSide;
    conn.open = false;
    if (!mine.closed) {
      mine.closed = true;
      this.world.after(0, () => mine.proc.alive && mine.proc.incarnation === mine.incarnation && mine.onClose());
    }
    this.notifyClose(conn.sides[1 - s] as ConnSide, Math.max(conn.lastArrival[s], this.world.now) - this.world.now + this.latency(by.name, (conn.sides[1 - s] as ConnSide).proc.name));
  }

  /** The connection breaks: each side learns of it after its own delay. */
  breakConn(conn: Conn, minMs: number, maxMs: number): void {
    if (!conn.open && conn.sides.every((x) => x.closed)) return;
    conn.open = false;
    for (const side of conn.sides) this.notifyClose(side, this.world.rng.range(minMs, maxMs));
  }

  private notifyClose(side: ConnSide, delayMs: number): void {
    if (side.closed) return;
    this.world.after(delayMs, () =>
      running(side.proc, () => {
        if (side.closed) return;
        side.closed = true;
        side.proc.conns.forEach((c) => c.sides.includes(side) && side.proc.conns.delete(c));
        if (side.proc.alive && side.proc.incarnation === side.incarnation) side.onClose();
      }),
    );
  }

  /** A process died: its sides close silently; peers notice after `minMs..maxMs`. */
  processDied(proc: Proc, minMs: number, maxMs: number): void {
    for (const conn of proc.conns) {
      conn.open = false;
      const s = conn.side(proc);
      (conn.sides[s] as ConnSide).closed = true;
      this.notifyClose(conn.sides[1 - s] as ConnSide, this.world.rng.range(minMs, maxMs));
    }
    proc.conns.clear();
  }
}

// -----------------------------------------------------------------------------------------
// Nodes

interface SuccLink {
  readonly node: string;
  conn: Conn | undefined;
  retryMs: number;
  timer: boolean;
}

interface Write {
  readonly batches: [Replica, Batch][];
  readonly ops: Batch['ops'];
  readonly waiters: (() => void)[];
}

export const addressOf = (node: string): string => `${node}.sim:7000`;
const managerId = 'manager';
const simCluster = 'sim-cluster';
const simSecret = 'sim-cluster-secret';
/** Bound on one frame's or datagram's travel time (virtual ms). */
const latencyMsMax = 1_000;
/** How often detectors tick (virtual ms). */
const gossipTickMs = 10;
/** SIM_TRACE=1 adds every peer frame to the run's trace (slow; for reading one failing run). */
const traceFrames = process.env.SIM_TRACE === '1';
const nodeOfAddress = (address: string): string => address.replace(/\.sim:7000$/, '');

export class SimNode implements Proc {
  alive = false;
  incarnation = 0;
  readonly conns = new Set<Conn>();
  replicas = new Map<string, Replica>();
  private predLinks = new Map<string, Conn>();
  private succLinks = new Map<string, SuccLink>();
  private clients = new Map<ClientRef, Conn>();
  private nextClientRef = 1;
  private writing: Write | undefined;
  private waiters: (() => void)[] = [];
  private pumpScheduled = false;
  /** The disk: what is durable. A power loss keeps exactly this. */
  readonly store: Store;
  crashes = 0;
  /** A paused process (SIGSTOP) does nothing until then; what reaches it waits. */
  pausedUntil = 0;
  /** Until when a fault cut this node off or slowed it (partition, isolation, slowness, a long pause). */
  disturbedUntil = 0;
  swim: Swim | undefined;
  /** Per chain, the highest epoch this node acknowledged as durable (kept across restarts: it is on disk). */
  readonly ackedEpochs = new Map<string, number>();

  constructor(
    readonly name: string,
    private readonly world: World,
  ) {
    this.store = new MemoryLevel<string, string>({ valueEncoding: 'utf8' }) as unknown as Store;
  }

  whenRunning(run: () => unknown): unknown {
    if (this.pausedUntil > this.world.now) {
      this.world.at(this.pausedUntil, () => this.whenRunning(run));
      return undefined;
    }
    return run();
  }

  /** The failure detector's datagrams, protobuf-encoded and signed as in production. */
  private flushGossip(): void {
    const swim = this.swim;
    if (swim === undefined) return;
    for (const d of swim.drain()) this.world.sendGossip(this, d.to, d.message);
  }

  receiveGossip(bytes: Buffer): void {
    if (!this.alive || this.swim === undefined) return;
    const message = decodeGossip(simCluster, simSecret, bytes);
    if (message === undefined) return;
    this.swim.receive(message, this.world.now);
    this.flushGossip();
  }

  async start(): Promise<void> {
    assert(!this.alive, `SimNode.start: ${this.name} is running`);
    if (this.store.status !== 'open') await this.store.open();
    this.incarnation++;
    this.alive = true;
    this.replicas = new Map();
    this.predLinks = new Map();
    this.succLinks = new Map();
    this.clients = new Map();
    this.writing = undefined;
    this.waiters = [];
    this.pumpScheduled = false;
    for (const [chain, recovered] of await recover(this.store)) this.addReplica(chain, new Replica(this.name, chain, 'sim-cluster', recovered, this.world.settings.limits));
    const inc = this.incarnation;
    const tick = (): void => {
      if (!this.alive || this.incarnation !== inc) return;
      if (this.pausedUntil <= this.world.now) {
        for (const replica of this.replicas.values()) replica.tick(this.world.now);
        this.schedulePump();
      }
      this.world.after(this.world.settings.tickMs, tick);
    };
    this.world.after(this.world.rng.range(0, this.world.settings.tickMs), tick);
    for (const chain of this.replicas.keys()) this.reconcileSucc(chain);
    this.swim = undefined;
    if (this.world.settings.autopilot === true) {
      const seeds = [...this.world.nodes.map((n) => n.name), managerId].map((node) => ({ node, address: node }));
      const swim = new Swim(this.name, this.name, seeds, () => this.world.rng.next());
      this.swim = swim;
      const gossipTick = (): void => {
        if (!this.alive || this.incarnation !== inc) return;
        if (this.pausedUntil <= this.world.now) {
          swim.tick(this.world.now);
          this.flushGossip();
        }
        this.world.after(gossipTickMs, gossipTick);
      };
      this.world.after(this.world.rng.range(0, gossipTickMs), gossipTick);
    }
  }

  private addReplica(chain: string, replica: Replica): void {
    const observer = this.world.observer;
    replica.onSequenced = (envelope) => observer.sequenced(this.name, chain, envelope);
    replica.onViewFrame = (update, docType, basis) => observer.viewFrame(this.name, update, docType, basis);
    this.replicas.set(chain, replica);
  }

  /** Process crash (the OS keeps the write in flight) or power loss (it is lost). */
  async crash(powerLoss: boolean): Promise<void> {
    if (!this.alive) return;
    this.alive = false;
    this.pausedUntil = 0; // the next process starts unpaused
    this.crashes++;
    const write = this.writing;
    this.writing = undefined;
    if (write !== undefined && !powerLoss) await writeBatch(this.store, { id: 0, ops: write.ops }, true);
    this.world.net.processDied(this, powerLoss ? 300 : 1, powerLoss ? 1_000 : 5);
  }

  accept(conn: Conn): void {
    const side = conn.sides[conn.side(this)];
    let role: 'unknown' | 'peer' | 'client' = 'unknown';
    let chain: string | undefined;
    let ref = 0;
    side.onFrame = (frame) => {
      if (role === 'unknown') role = frame.kind === 'attach' ? 'peer' : 'client';
      if (role === 'peer') {
        if (chain === undefined) {
          if (frame.kind !== 'attach') return this.fail(conn, 'protocol_error', `a peer link starts with attach, not ${frame.kind}`, false);
          chain = frame.attach.chain;
          const old = this.predLinks.get(chain);
          if (old !== undefined && old !== conn) {
            this.predLinks.delete(chain);
            this.world.net.close(old, this);
            this.replicas.get(chain)?.linkDown('pred');
          }
          this.predLinks.set(chain, conn);
        }
        const replica = this.replicas.get(chain);
        if (replica === undefined) return this.fail(conn, 'not_member', `node ${this.name} has no configuration for chain ${chain}`, true);
        if (traceFrames) this.world.note(`${this.name} <- pred ${conn.peer(this).name} ${chain} ${frame.kind} ${JSON.stringify(frame).slice(0, 200)}`);
        const rejection = this.guard(() => replica.fromPred(frame, conn.peer(this).name));
        if (rejection !== undefined) this.fail(conn, rejection.code, rejection.message, rejection.retryable);
        this.schedulePump();
        return;
      }
      if (ref === 0) {
        ref = this.nextClientRef++;
        this.clients.set(ref, conn);
      }
      this.serveClient(conn, ref, frame);
    };
    side.onClose = () => {
      if (chain !== undefined && this.predLinks.get(chain) === conn) {
        this.predLinks.delete(chain);
        this.replicas.get(chain)?.linkDown('pred');
        this.schedulePump();
      }
      if (ref !== 0) {
        this.clients.delete(ref);
        for (const replica of this.replicas.values()) replica.clientGone(ref);
        this.schedulePump();
      }
    };
  }

  private fail(conn: Conn, code: string, message: string, retryable: boolean): void {
    this.world.note(`${this.name} closes its link with ${conn.peer(this).name}: ${code} ${message}`);
    this.world.net.send(conn, this, failure(code, message, { retryable, fatal: true }));
    this.world.net.close(conn, this);
  }

  private serveClient(conn: Conn, ref: ClientRef, frame: Frame): void {
    switch (frame.kind) {
      case 'submit': {
        const replica = this.replicas.get(frame.submit.chain);
        if (replica === undefined) this.world.net.send(conn, this, failure('unknown_chain', `node ${this.name} serves no chain ${frame.submit.chain}`, { requestId: frame.submit.requestId }));
        else this.guard(() => replica.submit(ref, frame.submit, this.world.now));
        break;
      }
      case 'subscribe': {
        const replica = this.replicas.get(frame.subscribe.chain);
        if (replica === undefined) this.world.net.send(conn, this, failure('unknown_chain', `node ${this.name} serves no chain ${frame.subscribe.chain}`, { requestId: frame.subscribe.requestId }));
        else this.guard(() => replica.subscribe(ref, frame.subscribe));
        break;
      }
      default:
        return this.fail(conn, 'protocol_error', `a client may not send ${frame.kind}`, false);
    }
    this.schedulePump();
  }

  /** The manager's Configure (an admin request). Calls `answer` once the configuration is durable. */
  configure(config: ChainConfig, answer: (ok: boolean, code: string) => void): void {
    if (!this.alive) return;
    let replica = this.replicas.get(config.chain);
    if (replica === undefined) {
      replica = new Replica(this.name, config.chain, 'sim-cluster', undefined, this.world.settings.limits);
      this.addReplica(config.chain, replica);
    }
    const r = replica;
    const rejection = this.guard(() => r.configure(config));
    if (rejection !== undefined) {
      answer(false, rejection.code);
    } else {
      this.reconcileSucc(config.chain);
      const inc = this.incarnation;
      this.waiters.push(() => {
        if (this.incarnation !== inc) return;
        this.ackedEpochs.set(config.chain, Math.max(this.ackedEpochs.get(config.chain) ?? 0, config.epoch));
        answer(true, '');
      });
    }
    this.schedulePump();
  }

  private reconcileSucc(chain: string): void {
    const replica = this.replicas.get(chain) as Replica;
    const want = this.alive ? replica.successor : undefined;
    const have = this.succLinks.get(chain);
    if (have !== undefined && (want === undefined || want.node !== have.node)) {
      this.succLinks.delete(chain);
      if (have.conn !== undefined) this.world.net.close(have.conn, this);
    }
    if (want === undefined || this.succLinks.has(chain)) return;
    const link: SuccLink = { node: want.node, conn: undefined, retryMs: 20, timer: false };
    this.succLinks.set(chain, link);
    this.dial(chain, link);
  }

  private dial(chain: string, link: SuccLink): void {
    if (!this.alive || this.succLinks.get(chain) !== link) return;
    const inc = this.incarnation;
    const world = this.world;
    world.net.dial(
      this,
      link.node,
      (conn) => world.proc(link.node)?.accept?.(conn),
      (conn) => {
        if (!this.alive || this.incarnation !== inc || this.succLinks.get(chain) !== link) {
          world.net.close(conn, this);
          return;
        }
        link.conn = conn;
        link.retryMs = 20;
        const side = conn.sides[conn.side(this)];
        side.onFrame = (frame) => {
          const current = this.replicas.get(chain) as Replica;
          if (frame.kind === 'failure') {
            world.note(`${this.name}: successor ${link.node} on ${chain} refused: ${frame.failure.code} ${frame.failure.message}`);
            current.fromSucc(frame, link.node);
            world.net.close(conn, this);
            this.schedulePump();
            return;
          }
          if (traceFrames) world.note(`${this.name} <- succ ${link.node} ${chain} ${frame.kind} ${JSON.stringify(frame).slice(0, 200)}`);
          const rejection = this.guard(() => current.fromSucc(frame, link.node));
          if (rejection !== undefined) this.fail(conn, rejection.code, rejection.message, rejection.retryable);
          this.schedulePump();
        };
        side.onClose = () => {
          if (link.conn !== conn) return;
          link.conn = undefined;
          if (this.succLinks.get(chain) === link) {
            (this.replicas.get(chain) as Replica).linkDown('succ');
            this.redialLater(chain, link);
          }
          this.schedulePump();
        };
        (this.replicas.get(chain) as Replica).linkUp();
        this.schedulePump();
      },
      () => this.redialLater(chain, link),
    );
  }

  private redialLater(chain: string, link: SuccLink): void {
    if (!this.alive || this.succLinks.get(chain) !== link || link.timer) return;
    link.timer = true;
    const inc = this.incarnation;
    this.world.after(link.retryMs, () => {
      if (this.incarnation !== inc) return;
      link.timer = false;
      this.dial(chain, link);
    });
    link.retryMs = Math.min(link.retryMs * 2, 500);
  }

  /** A replica assertion is a bug: in production the process exits (code 70). */
  private guard<T>(run: () => T): T {
    try {
      return run();
    } catch (error) {
      if (error instanceof ViolationError) throw error;
      throw new ViolationError('assertion', `node ${this.name}: ${(error as Error).message}`);
    }
  }

  schedulePump(): void {
    if (this.pumpScheduled || !this.alive) return;
    this.pumpScheduled = true;
    const inc = this.incarnation;
    this.world.after(0, () =>
      this.whenRunning(() => {
        if (this.incarnation !== inc) return;
        this.pumpScheduled = false;
        this.pump();
      }),
    );
  }

  private pump(): void {
    if (!this.alive) return;
    const net = this.world.net;
    for (const [chain, replica] of this.replicas) {
      const out = replica.drain();
      const pred = this.predLinks.get(chain);
      if (pred !== undefined && pred.peer(this).name === replica.predecessor?.node) for (const f of out.pred) net.send(pred, this, f);
      const succ = this.succLinks.get(chain);
      if (succ?.conn !== undefined && succ.node === replica.successor?.node) for (const f of out.succ) net.send(succ.conn, this, f);
      for (const { to, frame } of out.clients) {
        const conn = this.clients.get(to);
        if (conn !== undefined) net.send(conn, this, frame);
      }
      if (out.resetSucc && succ?.conn !== undefined) net.close(succ.conn, this);
      this.reconcileSucc(chain);
    }
    this.writeLoop();
  }

  private writeLoop(): void {
    if (this.writing !== undefined || !this.alive) return;
    const batches: [Replica, Batch][] = [];
    for (const replica of this.replicas.values()) {
      const batch = replica.takeBatch();
      if (batch !== undefined) batches.push([replica, batch]);
    }
    const waiters = this.waiters;
    this.waiters = [];
    if (batches.length === 0) {
      for (const run of waiters) run();
      return;
    }
    const write: Write = { batches, ops: batches.flatMap(([, b]) => b.ops), waiters };
    this.writing = write;
    if (this.writeWatchers.length > 0) for (const run of this.writeWatchers.splice(0)) run();
    const { min, max } = this.world.settings.diskMs;
    const inc = this.incarnation;
    this.world.after(this.world.rng.range(min, max) * this.world.net.slowness(this.name), () => this.whenRunning(async () => {
      if (this.incarnation !== inc || this.writing !== write || !this.alive) return; // crashed meanwhile
      await writeBatch(this.store, { id: 0, ops: write.ops }, true);
      this.writing = undefined;
      for (const [replica, batch] of write.batches) this.guard(() => replica.durable(batch.id));
      for (const run of write.waiters) run();
      this.pump();
    }));
  }

  private writeWatchers: (() => void)[] = [];

  /** Calls `run` when this node next hands a write to its disk (once). */
  onNextWrite(run: () => void): void {
    this.writeWatchers.push(run);
  }

  /** The ops of the write in flight (handed to the OS, not yet synced). */
  get inFlight(): readonly Batch['ops'][number][] {
    return this.writing?.ops ?? [];
  }

  /** Nothing in flight to the disk. */
  get idle(): boolean {
    return this.writing === undefined && this.waiters.length === 0 && !this.pumpScheduled;
  }
}

// -----------------------------------------------------------------------------------------
// The chain manager: production decisions (removeNode, addTail), simulated pushes.

export class SimManager {
  readonly configs = new Map<string, ChainConfig>();
  /** Per chain: every node that was ever a member (removed ones are fenced with the new epoch too). */
  private readonly everMembers = new Map<string, Set<string>>();
  private readonly acked = new Map<string, Set<string>>();
  /** Per chain: each node's caughtUpEpoch, as its status last reported it. */
  private readonly caughtUp = new Map<string, Map<string, number>>();
  /** After healing: add running nodes to short chains (one joiner at a time). */
  refill = false;
  reconfigurations = 0;
  refusals = 0;

  /** Autopilot: the manager's own failure detector; plan() acts on it. */
  readonly swim: Swim | undefined;
  /**
   * Nodes this detector declared dead while their process was running: after their own crash
   * or while some member was cut off or slowed in the last 2 s (expected: SWIM spreads the
   * deaths a cut-off member declares), and otherwise (false positives: nothing but timing, or
   * pauses of at most 300 ms).
   */
  deathsWhileCutOff = 0;
  falsePositives = 0;

  constructor(private readonly world: World) {
    if (world.settings.autopilot === true) {
      const seeds = world.settings.chains.length === 0 ? [] : Array.from({ length: world.settings.nodes }, (_, i) => ({ node: world.nodeName(i), address: world.nodeName(i) }));
      const swim = new Swim(managerId, managerId, seeds, () => world.rng.next());
      swim.onChange = (c) => {
        if (c.state !== 'dead') return;
        const node = world.node(c.node);
        if (node?.alive !== true) return;
        const explained = Math.max(node.disturbedUntil, world.net.cutOffUntil) > world.now - 2_000;
        if (explained) this.deathsWhileCutOff++;
        else this.falsePositives++;
        world.note(`manager: ${c.node} declared dead while running (${explained ? 'cut off or slowed' : 'FALSE POSITIVE'})`);
      };
      this.swim = swim;
    }
    for (const c of world.settings.chains) {
      const members = c.members.map((i) => world.nodeName(i));
      this.configs.set(c.id, { chain: c.id, epoch: 1, members: members.map((node) => ({ node, address: addressOf(node), sinceEpoch: 1 })) });
      this.everMembers.set(c.id, new Set(members));
    }
  }

  receiveGossip(bytes: Buffer): void {
    const message = decodeGossip(simCluster, simSecret, bytes);
    if (message === undefined || this.swim === undefined) return;
    this.swim.receive(message, this.world.now);
    for (const d of this.swim.drain()) this.world.sendGossip(this.world.managerProc, d.to, d.message);
  }

  /** Autopilot: the production decision function on the detector's view. */
  private autopilot(): void {
    const swim = this.swim;
    if (swim === undefined) return;
    const live: { node: string; address: string }[] = [];
    const dead = new Set<string>();
    for (const n of this.world.nodes) {
      if (swim.state(n.name) === 'dead') dead.add(n.name);
      else live.push({ node: n.name, address: addressOf(n.name) });
    }
    for (const { config } of plan([...this.configs.values()], { live, dead }, this.world.settings.k, this.caughtUp)) this.set(config);
  }

  start(): void {
    for (const chain of this.configs.keys()) this.push(chain);
    const swim = this.swim;
    if (swim !== undefined) {
      const gossipTick = (): void => {
        swim.tick(this.world.now);
        for (const d of swim.drain()) this.world.sendGossip(this.world.managerProc, d.to, d.message);
        this.autopilot();
        this.world.after(gossipTickMs, gossipTick);
      };
      this.world.after(gossipTickMs, gossipTick);
    }
    const retry = (): void => {
      for (const chain of this.configs.keys()) {
        this.push(chain);
        this.poll(chain);
        if (this.refill) for (const node of this.world.nodes) if (node.alive) this.add(chain, node.name);
      }
      this.world.after(250, retry);
    };
    this.world.after(250, retry);
  }

  joining(chain: string): Set<string> {
    return catchingUp(this.configs.get(chain) as ChainConfig, this.caughtUp.get(chain) ?? new Map());
  }

  /** Removes `node` from `chain` when the manager's rules allow it. Returns whether it changed anything. */
  remove(chain: string, node: string): boolean {
    const config = this.configs.get(chain) as ChainConfig;
    if (config.members.length <= 1 || !config.members.some((m) => m.node === node)) return false;
    return this.decide(() => removeNode(config, node, this.joining(chain)));
  }

  /** Adds `node` at the tail of `chain` when it is running, missing and the chain is short. */
  add(chain: string, node: string): boolean {
    const config = this.configs.get(chain) as ChainConfig;
    if (config.members.length >= this.world.settings.k || config.members.some((m) => m.node === node) || !this.world.node(node).alive) return false;
    return this.decide(() => addTail(config, { node, address: addressOf(node) }, this.joining(chain)));
  }

  /** The production decision functions refuse unsafe changes by throwing. */
  private decide(next: () => ChainConfig): boolean {
    let config: ChainConfig;
    try {
      config = next();
    } catch {
      this.refusals++;
      return false;
    }
    this.set(config);
    return true;
  }

  /** Asks joiners for their status (caughtUpEpoch), over the simulated network. */
  private poll(chain: string): void {
    const net = this.world.net;
    const known = this.caughtUp.get(chain) ?? new Map<string, number>();
    this.caughtUp.set(chain, known);
    for (const node of this.joining(chain)) {
      const target = this.world.node(node);
      this.world.after(net.latency('manager', node), () => running(target, () => {
        if (!target.alive || net.isBlocked('manager', node)) return;
        const epoch = target.replicas.get(chain)?.caughtUpEpoch ?? 0;
        this.world.after(net.latency(node, 'manager'), () => {
          if (!net.isBlocked(node, 'manager')) known.set(node, Math.max(known.get(node) ?? 0, epoch));
        });
      }));
    }
  }

  /** A configuration from `back` epochs ago reaches `node` late (a delayed or replayed admin request). */
  replay(chain: string, node: string, back: number): boolean {
    const history = this.history.get(chain) ?? [];
    const old = history[history.length - 1 - back];
    const target = this.world.node(node);
    if (old === undefined || !target.alive) return false;
    target.configure(old, () => {});
    return true;
  }
  private readonly history = new Map<string, ChainConfig[]>();

  private set(config: ChainConfig): void {
    this.history.set(config.chain, [...(this.history.get(config.chain) ?? [this.configs.get(config.chain) as ChainConfig]), config]);
    this.configs.set(config.chain, config);
    for (const m of config.members) this.everMembers.get(config.chain)?.add(m.node);
    this.acked.set(config.chain, new Set());
    this.reconfigurations++;
    this.world.note(`manager: ${config.chain} epoch ${config.epoch} = ${config.members.map((m) => m.node).join('>')}`);
    this.push(config.chain);
  }

  /** Pushes the current configuration to every node that has not acknowledged it. Each push is its own admin request, so pushes reorder and repeat. */
  private push(chain: string): void {
    const config = this.configs.get(chain) as ChainConfig;
    const acked = this.acked.get(chain) ?? new Set<string>();
    this.acked.set(chain, acked);
    const net = this.world.net;
    for (const node of this.everMembers.get(chain) ?? []) {
      if (acked.has(node)) continue;
      const target = this.world.node(node);
      this.world.after(net.latency('manager', node), () => running(target, () => {
        if (!target.alive || net.isBlocked('manager', node)) return;
        target.configure(config, (ok, code) => {
          this.world.after(net.latency(node, 'manager'), () => {
            if (net.isBlocked(node, 'manager') || this.configs.get(chain)?.epoch !== config.epoch) return;
            if (ok || code === 'stale_epoch') acked.add(node);
          });
        });
      }));
    }
  }

  allAcked(): boolean {
    for (const [chain, nodes] of this.everMembers) {
      const acked = this.acked.get(chain);
      for (const node of nodes) if (!acked?.has(node)) return false;
    }
    return true;
  }
}

// -----------------------------------------------------------------------------------------
// Clients: one message at a time, resent with the same clientSeq until acknowledged.

export interface ClientRecord {
  readonly client: string;
  readonly doc: string;
  readonly clientSeq: number;
  status: 'pending' | 'acked' | 'failed';
  seq: number;
  code: string;
}

interface SimSubscription {
  readonly doc: string;
  state: 'idle' | 'pending' | 'active';
  requestId: number;
  node: string;
  speculative: JsonObject | undefined;
  confirmed: JsonObject | undefined;
  /** The connection the subscription was sent on. */
  conn: Conn | undefined;
}

export class SimClient implements Proc {
  alive = true;
  incarnation = 1;
  readonly conns = new Set<Conn>();
  readonly viewer: string;
  readonly records: ClientRecord[] = [];
  readonly subs = new Map<string, SimSubscription>();
  private readonly links = new Map<string, Conn>();
  private readonly linking = new Map<string, (() => void)[]>();
  private readonly head = new Map<string, string>();
  private nextRequest = 1;
  private opIndex = 0;
  private current: { record: ClientRecord; channel: string; payloadJson: string; requestIds: Set<number>; attempt: number } | undefined;

  constructor(
    readonly name: string,
    private readonly world: World,
    viewerIndex: number,
    private readonly ops: WorldSettings['clients'][number]['ops'],
  ) {
    this.viewer = viewers[viewerIndex % viewers.length] as string;
  }

  /** The subscription is active at `node`'s current incarnation over an open connection. */
  subscriptionLive(docId: string, node: string): boolean {
    const sub = this.subs.get(docId);
    const conn = sub?.conn;
    if (sub === undefined || sub.state !== 'active' || sub.node !== node || conn === undefined || !conn.open) return false;
    const remote = conn.sides[1 - conn.side(this)];
    return remote !== undefined && remote.proc.alive && remote.proc.incarnation === remote.incarnation;
  }

  get done(): boolean {
    return this.opIndex >= this.ops.length && this.current === undefined;
  }

  start(): void {
    const docs = new Set(this.ops.map((o) => o.doc));
    for (const d of docs) {
      const doc = this.world.settings.docs[d % this.world.settings.docs.length] as WorldSettings['docs'][number];
      this.subs.set(doc.id, { doc: doc.id, state: 'idle', requestId: 0, node: '', speculative: undefined, confirmed: undefined, conn: undefined });
      this.subscribe(doc.id);
    }
    this.next();
  }

  private docInfo(docId: string): WorldSettings['docs'][number] {
    return this.world.settings.docs.find((d) => d.id === docId) as WorldSettings['docs'][number];
  }

  private headOf(chain: string): string {
    return this.head.get(chain) ?? (this.world.manager.configs.get(chain) as ChainConfig).members[0]?.node ?? this.world.nodeName(0);
  }

  /** After a failure: the hinted head, else mostly the manager's head (a placement lookup), sometimes any node. */
  private reroute(chain: string, hint: string): void {
    const world = this.world;
    const node =
      hint !== '' ? nodeOfAddress(hint) : world.rng.chance(0.75) ? ((world.manager.configs.get(chain) as ChainConfig).members[0]?.node ?? world.nodeName(0)) : world.nodeName(world.rng.int(world.settings.nodes));
    this.head.set(chain, node);
  }

  private withLink(node: string, run: (conn: Conn) => void): void {
    const conn = this.links.get(node);
    if (conn !== undefined && conn.open) return run(conn);
    if (conn !== undefined) this.linkClosed(node, conn); // broken before we heard: same as a close
    const waiting = this.linking.get(node);
    if (waiting !== undefined) {
      waiting.push(() => {
        const c = this.links.get(node);
        if (c !== undefined) run(c);
      });
      return;
    }
    this.linking.set(node, [() => run(this.links.get(node) as Conn)]);
    this.world.net.dial(
      this,
      node,
      (conn) => this.world.proc(node)?.accept?.(conn),
      (conn) => {
        this.links.set(node, conn);
        const side = conn.sides[conn.side(this)];
        side.onFrame = (frame) => this.onFrame(node, frame);
        side.onClose = () => this.linkClosed(node, conn);
        const waiters = this.linking.get(node) ?? [];
        this.linking.delete(node);
        for (const w of waiters) w();
      },
      () => {
        this.linking.delete(node);
        this.linkFailed(node);
      },
    );
  }

  private linkClosed(node: string, conn: Conn): void {
    if (this.links.get(node) === conn) this.links.delete(node);
    this.linkFailed(node);
  }

  private linkFailed(node: string): void {
    const cur = this.current;
    if (cur !== undefined && cur.requestIds.size > 0 && this.sentTo === node) this.retry(cur.attempt, '', 'connection lost');
    for (const sub of this.subs.values()) {
      if (sub.node === node && sub.state !== 'idle') {
        sub.state = 'idle';
        this.reroute(this.docInfo(sub.doc).chain, '');
        this.world.after(this.backoff(2), () => this.subscribe(sub.doc));
      }
    }
  }

  private sentTo = '';

  private backoff(attempt: number): number {
    return Math.min(20 * 2 ** Math.min(attempt, 5), 500) * this.world.rng.range(0.5, 1);
  }

  private next(): void {
    if (this.current !== undefined || this.opIndex >= this.ops.length) return;
    const op = this.ops[this.opIndex] as WorldSettings['clients'][number]['ops'][number];
    if (op.atMs > this.world.now) {
      this.world.at(op.atMs, () => this.next());
      return;
    }
    this.opIndex++;
    const doc = this.world.settings.docs[op.doc % this.world.settings.docs.length] as WorldSettings['docs'][number];
    const type = findDocumentType(doc.type);
    assert(type !== undefined, `unknown document type ${doc.type}`);
    const basis = this.subs.get(doc.id)?.speculative ?? type.initial;
    const concrete = concreteOp(doc.type, basis, { ...op.move, viewer: viewers.indexOf(this.viewer as (typeof viewers)[number]) }, this.records.length + 1);
    const record: ClientRecord = { client: this.name, doc: doc.id, clientSeq: this.records.length + 1, status: 'pending', seq: 0, code: '' };
    this.records.push(record);
    this.current = { record, channel: concrete.channel, payloadJson: JSON.stringify(concrete.payload), requestIds: new Set(), attempt: 0 };
    this.send();
  }

  private send(): void {
    const cur = this.current;
    if (cur === undefined) return;
    const attempt = ++cur.attempt;
    const docInfo = this.docInfo(cur.record.doc);
    const node = this.headOf(docInfo.chain);
    const requestId = this.nextRequest++;
    cur.requestIds.add(requestId);
    this.sentTo = node;
    this.withLink(node, (conn) => {
      if (this.current !== cur || cur.attempt !== attempt) return;
      this.world.net.send(
        conn,
        this,
        make('submit', {
          requestId,
          chain: docInfo.chain,
          doc: docInfo.id,
          docType: docInfo.type,
          channel: cur.channel,
          payloadJson: cur.payloadJson,
          clientId: this.name,
          clientSeq: cur.record.clientSeq,
          viewer: this.viewer,
        }),
      );
    });
    // A request without an answer is resent (the dedupe table makes this safe).
    this.world.after(1_000, () => this.retry(attempt, '', 'timeout'));
  }

  private retry(attempt: number, hint: string, _why: string): void {
    const cur = this.current;
    if (cur === undefined || cur.attempt !== attempt) return;
    const token = ++cur.attempt; // this attempt's timers and answers no longer count
    this.reroute(this.docInfo(cur.record.doc).chain, hint);
    this.world.after(this.backoff(token / 2), () => this.current === cur && cur.attempt === token && this.send());
  }

  private onFrame(node: string, frame: Frame): void {
    const cur = this.current;
    if (frame.kind === 'ack') {
      if (cur !== undefined && cur.requestIds.has(frame.ack.requestId)) {
        cur.record.status = 'acked';
        cur.record.seq = frame.ack.seq;
        this.world.note(`${this.name}#${cur.record.clientSeq} acked at ${cur.record.doc}@${frame.ack.seq} by ${node}${frame.ack.duplicate ? ' (duplicate)' : ''}`);
        this.current = undefined;
        this.world.after(this.world.rng.range(0, 5), () => this.next());
      }
      return;
    }
    if (frame.kind === 'viewUpdate') {
      this.onView(node, frame.viewUpdate);
      return;
    }
    if (frame.kind !== 'failure') return;
    const f = frame.failure;
    for (const sub of this.subs.values()) {
      if (sub.requestId === f.requestId && sub.state !== 'idle') {
        sub.state = 'idle';
        this.reroute(this.docInfo(sub.doc).chain, f.hint);
        this.world.after(this.backoff(3), () => this.subscribe(sub.doc));
        return;
      }
    }
    if (cur === undefined || !cur.requestIds.has(f.requestId)) return;
    if (f.retryable || f.code === 'unknown_chain') {
      this.retry(cur.attempt, f.hint, f.code);
      return;
    }
    cur.record.status = 'failed';
    cur.record.code = f.code;
    this.current = undefined;
    this.world.after(this.world.rng.range(0, 5), () => this.next());
  }

  private subscribe(docId: string): void {
    const sub = this.subs.get(docId) as SimSubscription;
    if (sub.state !== 'idle') return;
    const docInfo = this.docInfo(docId);
    const node = this.headOf(docInfo.chain);
    const requestId = this.nextRequest++;
    sub.state = 'pending';
    sub.requestId = requestId;
    sub.node = node;
    this.withLink(node, (conn) => {
      if (sub.requestId !== requestId) return;
      sub.conn = conn;
      this.world.net.send(conn, this, make('subscribe', { requestId, chain: docInfo.chain, doc: docId, docType: docInfo.type, viewer: this.viewer }));
    });
    this.world.after(2_000, () => {
      if (sub.requestId === requestId && sub.state === 'pending') {
        sub.state = 'idle';
        this.reroute(docInfo.chain, '');
        this.subscribe(docId);
      }
    });
  }

  private onView(node: string, u: ViewUpdate): void {
    const sub = this.subs.get(u.doc);
    if (sub === undefined || sub.requestId !== u.requestId || sub.node !== node) return;
    switch (u.kind) {
      case 'full':
        sub.state = 'active';
        sub.speculative = JSON.parse(u.json) as JsonObject;
        sub.confirmed = JSON.parse(u.confirmedJson) as JsonObject;
        break;
      case 'speculative':
      case 'rollback':
        sub.speculative = apply(JSON.parse(u.json), sub.speculative) as JsonObject;
        break;
      case 'confirmed':
        sub.confirmed = apply(JSON.parse(u.json), sub.confirmed) as JsonObject;
        break;
    }
  }
}

// -----------------------------------------------------------------------------------------
// The world

const traceLinesMax = 400;

export class World {
  now = 0;
  events = 0;
  readonly rng: Prng;
  readonly net: Network;
  readonly nodes: SimNode[] = [];
  readonly clients: SimClient[] = [];
  readonly manager: SimManager;
  private readonly queue = new EventQueue();
  private readonly procs = new Map<string, Proc & { accept?: (conn: Conn) => void }>();
  /** A short log of what happened, for a failing run's report. */
  readonly trace: string[] = [];

  constructor(
    readonly settings: WorldSettings,
    readonly observer: Observer,
  ) {
    this.rng = new Prng(settings.seed);
    this.net = new Network(this);
    for (let i = 0; i < settings.nodes; i++) {
      const node = new SimNode(this.nodeName(i), this);
      this.nodes.push(node);
      this.procs.set(node.name, node);
    }
    this.manager = new SimManager(this);
    settings.clients.forEach((c, i) => {
      const client = new SimClient(`cl${i + 1}`, this, c.viewer, c.ops);
      this.clients.push(client);
      this.procs.set(client.name, client);
    });
  }

  /** The manager as a process (it never crashes; partitions and isolation reach it). */
  readonly managerProc: Proc = { name: managerId, alive: true, incarnation: 1, conns: new Set() };

  sendGossip(from: Proc, to: string, message: SwimMessage): void {
    const bytes = encodeGossip(simCluster, simSecret, message);
    this.net.datagram(from, to, () => (to === managerId ? this.manager.receiveGossip(bytes) : this.node(to)?.receiveGossip(bytes)));
  }

  nodeName(index: number): string {
    return `n${(index % this.settings.nodes) + 1}`;
  }

  node(name: string): SimNode {
    return this.procs.get(name) as SimNode;
  }

  proc(name: string): (Proc & { accept?: (conn: Conn) => void }) | undefined {
    return this.procs.get(name);
  }

  at(time: number, task: Task): void {
    assert(time >= this.now, () => `World.at: ${time} is in the past (now ${this.now})`);
    this.queue.push(time, task);
  }

  after(delayMs: number, task: Task): void {
    this.queue.push(this.now + Math.max(0, delayMs), task);
  }

  /** Keeps the last `traceLinesMax` lines. */
  note(line: string): void {
    this.trace.push(`${this.now.toFixed(1)}ms ${line}`);
    if (this.trace.length > traceLinesMax) this.trace.splice(0, this.trace.length - traceLinesMax);
  }

  async start(): Promise<void> {
    for (const node of this.nodes) await node.start();
    this.manager.start();
    for (const client of this.clients) client.start();
  }

  /** Runs events until `until` (virtual ms) or until `stop()` holds (checked every `everyMs`). */
  async run(until: number, stop?: () => boolean): Promise<void> {
    let nextCheck = this.now;
    while (this.queue.size > 0 && this.queue.peekTime() <= until) {
      const time = this.queue.peekTime();
      const task = this.queue.pop();
      this.now = time;
      this.events++;
      const result = task();
      if (result instanceof Promise) await result;
      this.observer.afterEvent(this);
      if (stop !== undefined && this.now >= nextCheck) {
        nextCheck = this.now + 20;
        if (stop()) return;
      }
    }
    this.now = Math.max(this.now, until);
  }
}
