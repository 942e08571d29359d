// The runtime around the replicas of one node process: a TCP listener, LevelDB, the group
// commit write loop, successor links with redial, and timers. All protocol decisions are the
// replica's (replica.ts); this file only moves bytes and completions.

import dgram from 'node:dgram';
import net from 'node:net';
import { Level } from 'level';
import { assert } from '../engine/assert.ts';
import { Connection, type ConnectionOptions } from './connection.ts';
import { Replica, type ClientRef, type ReplicaLimits } from './replica.ts';
import { idPattern, recover, writeBatch, type Batch, type ChainConfig, type Store } from './store.ts';
import { Swim, type SwimOptions } from './swim.ts';
import { decodeGossip, encodeGossip, failure, make, type Role } from './wire.ts';

/** Bound on the demo's forward delay (ms). */
export const forwardDelayMsMax = 10_000;

export interface NodeOptions {
  node: string;
  cluster: string;
  secret: string;
  dataDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** false: batches are written without fsync (the benchmark's no-sync mode). */
  syncWrites?: boolean;
  limits?: Partial<ReplicaLimits>;
  frameBytesMax?: number;
  /** Bound on concurrent connections (peers, clients, admins). */
  connectionsMax?: number;
  /** Redial backoff for successor links: doubles from retryDelayMsMin up to retryDelayMsMax. */
  retryDelayMsMin?: number;
  retryDelayMsMax?: number;
  tickMs?: number;
  /** Extra delay on every forward to the successor (the demo's latency control). */
  forwardDelayMs?: number;
  log?: (line: string) => void;
  /**
   * Failure detection: run a SWIM member over UDP on the same port number as TCP, starting
   * from these seeds (the chain manager, or any member). Off when undefined.
   */
  gossip?: { seeds: { node: string; address: string }[]; swim?: Partial<SwimOptions>; tickMs?: number };
}

interface SuccLink {
  readonly node: string;
  readonly address: string;
  connection: Connection | undefined;
  dialing: boolean;
  retryMs: number;
  timer: NodeJS.Timeout | undefined;
  /** When the last delayed forward leaves (ms since epoch). */
  forwardAt: number;
}

export class ChainNode {
  private readonly replicas = new Map<string, Replica>();
  private readonly predLinks = new Map<string, Connection>();
  private readonly succLinks = new Map<string, SuccLink>();
  private readonly clients = new Map<ClientRef, Connection>();
  private readonly connections = new Set<Connection>();
  private nextClientRef = 1;
  private writing = false;
  private pumpScheduled = false;
  private stopped = false;
  private tickTimer: NodeJS.Timeout | undefined;
  private server: net.Server | undefined;
  private portValue = 0;
  private readonly connectionOptions: ConnectionOptions;
  /** Batches written, for the status report. */
  private swim: Swim | undefined;
  private udp: dgram.Socket | undefined;
  private gossipTimer: NodeJS.Timeout | undefined;
  /** Delay added to every forward (the demo's latency control); set at start and by admin Control. */
  private forwardDelayMs = 0;
  private batchesWritten = 0;
  private opsWritten = 0;

  private constructor(
    readonly options: NodeOptions,
    private readonly db: Store,
  ) {
    this.connectionOptions = { cluster: options.cluster, secret: options.secret, node: options.node, frameBytesMax: options.frameBytesMax };
  }

  static async start(options: NodeOptions): Promise<ChainNode> {
    assert(idPattern.test(options.node), `node id ${JSON.stringify(options.node)} must match ${idPattern}`);
    assert(options.secret.length >= 8, 'the cluster secret must be at least 8 characters');
    const db = new Level<string, string>(options.dataDir, { valueEncoding: 'utf8' }) as unknown as Store;
    await db.open();
    const node = new ChainNode(options, db);
    node.forwardDelayMs = options.forwardDelayMs ?? 0;
    for (const [chain, recovered] of await recover(db)) {
      node.replicas.set(chain, new Replica(options.node, chain, options.cluster, recovered, options.limits));
    }
    await node.listen();
    node.tickTimer = setInterval(() => node.tick(), options.tickMs ?? 100);
    node.tickTimer.unref();
    for (const chain of node.replicas.keys()) node.reconcileSucc(chain);
    if (options.gossip !== undefined) await node.startGossip(options.gossip);
    node.log(`node ${options.node} listening on ${node.address} (data ${options.dataDir}, chains: ${[...node.replicas.keys()].join(', ') || 'none yet'})`);
    return node;
  }

  get address(): string {
    return `${this.options.host ?? '127.0.0.1'}:${this.portValue}`;
  }

  get port(): number {
    return this.portValue;
  }

  private async startGossip(gossip: NonNullable<NodeOptions['gossip']>): Promise<void> {
    const { cluster, secret } = this.options;
    const swim = new Swim(this.options.node, this.address, gossip.seeds, Math.random, gossip.swim);
    swim.onChange = (c) => this.log(`membership: ${c.node} is ${c.state} (incarnation ${c.incarnation}${c.local ? ', decided here' : ''})`);
    const udp = dgram.createSocket('udp4');
    udp.on('message', (datagram) => {
      const message = decodeGossip(cluster, secret, datagram);
      if (message === undefined || this.stopped) return;
      swim.receive(message, Date.now());
      this.flushGossip();
    });
    udp.on('error', (error) => this.log(`gossip socket: ${error.message}`));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(this.portValue, this.options.host ?? '127.0.0.1', () => resolve());
    });
    this.swim = swim;
    this.udp = udp;
    this.gossipTimer = setInterval(() => {
      swim.tick(Date.now());
      this.flushGossip();
    }, gossip.tickMs ?? 5);
    this.gossipTimer.unref();
  }

  private flushGossip(): void {
    const { swim, udp } = this;
    if (swim === undefined || udp === undefined) return;
    for (const d of swim.drain()) {
      const at = d.address.lastIndexOf(':');
      udp.send(encodeGossip(this.options.cluster, this.options.secret, d.message), Number(d.address.slice(at + 1)), d.address.slice(0, at));
    }
  }

  replica(chain: string): Replica | undefined {
    return this.replicas.get(chain);
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => {
        this.portValue = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(socket: net.Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    const connectionsMax = this.options.connectionsMax ?? 4_096;
    if (this.connections.size >= connectionsMax) {
      socket.end();
      return;
    }
    const roles: Role[] = ['peer', 'client', 'admin'];
    Connection.accept(socket, this.connectionOptions, roles).then(
      (connection) => {
        this.connections.add(connection);
        connection.onClose(() => this.connections.delete(connection));
        if (connection.peer.role === 'peer') this.servePeer(connection);
        else if (connection.peer.role === 'client') this.serveClient(connection);
        else this.serveAdmin(connection);
      },
      (error: Error) => this.log(`rejected a connection: ${error.message}`),
    );
  }

  // -------------------------------------------------------------------------------------
  // Predecessors dial us.

  private servePeer(connection: Connection): void {
    let chain: string | undefined;
    connection.onFrame((frame) => {
      if (chain === undefined) {
        if (frame.kind !== 'attach') {
          connection.fail('protocol_error', `a peer link starts with attach, not ${frame.kind}`);
          return;
        }
        chain = frame.attach.chain;
        const old = this.predLinks.get(chain);
        if (old !== undefined && old !== connection) {
          this.predLinks.delete(chain);
          old.close();
          this.replicas.get(chain)?.linkDown('pred');
        }
        this.predLinks.set(chain, connection);
      }
      const replica = this.replicas.get(chain);
      if (replica === undefined) {
        connection.fail('not_member', `node ${this.options.node} has no configuration for chain ${chain}`, true);
        return;
      }
      const rejection = this.guard(() => replica.fromPred(frame, connection.peer.node));
      if (rejection !== undefined) {
        this.log(`closing the link from ${connection.peer.node} on ${chain}: ${rejection.code} ${rejection.message}`);
        connection.fail(rejection.code, rejection.message, rejection.retryable);
      }
      this.schedulePump();
    });
    connection.onClose(() => {
      if (chain !== undefined && this.predLinks.get(chain) === connection) {
        this.predLinks.delete(chain);
        this.replicas.get(chain)?.linkDown('pred');
        this.schedulePump();
      }
    });
  }

  // -------------------------------------------------------------------------------------
  // We dial successors.

  private reconcileSucc(chain: string): void {
    const replica = this.replicas.get(chain) as Replica;
    const want = this.stopped ? undefined : replica.successor;
    const have = this.succLinks.get(chain);
    if (have !== undefined && (want === undefined || want.node !== have.node || want.address !== have.address)) {
      this.succLinks.delete(chain);
      if (have.timer !== undefined) clearTimeout(have.timer);
      have.connection?.close();
    }
    if (want === undefined || this.succLinks.has(chain)) return;
    const link: SuccLink = { node: want.node, address: want.address, connection: undefined, dialing: false, retryMs: this.options.retryDelayMsMin ?? 20, timer: undefined, forwardAt: 0 };
    this.succLinks.set(chain, link);
    this.dial(chain, link);
  }

  private dial(chain: string, link: SuccLink): void {
    if (this.stopped || this.succLinks.get(chain) !== link) return;
    link.dialing = true;
    const replica = this.replicas.get(chain) as Replica;
    Connection.dial(link.address, { ...this.connectionOptions, role: 'peer', epoch: replica.epoch, sendBufferBytesMax: 256 * 1024 * 1024 }).then(
      (connection) => {
        link.dialing = false;
        if (this.stopped || this.succLinks.get(chain) !== link) {
          connection.close();
          return;
        }
        link.connection = connection;
        link.retryMs = this.options.retryDelayMsMin ?? 20;
        connection.onFrame((frame) => {
          const current = this.replicas.get(chain) as Replica;
          if (frame.kind === 'failure') {
            this.log(`successor ${link.node} on ${chain} refused us: ${frame.failure.code} ${frame.failure.message}`);
            current.fromSucc(frame, link.node);
            connection.close();
            this.schedulePump();
            return;
          }
          const rejection = this.guard(() => current.fromSucc(frame, link.node));
          if (rejection !== undefined) {
            this.log(`closing the link to ${link.node} on ${chain}: ${rejection.code} ${rejection.message}`);
            connection.fail(rejection.code, rejection.message, rejection.retryable);
          }
          this.schedulePump();
        });
        connection.onClose(() => {
          if (link.connection !== connection) return;
          link.connection = undefined;
          if (this.succLinks.get(chain) === link) {
            (this.replicas.get(chain) as Replica).linkDown('succ');
            this.redialLater(chain, link);
          }
          this.schedulePump();
        });
        replica.linkUp();
        this.schedulePump();
      },
      () => {
        link.dialing = false;
        this.redialLater(chain, link);
      },
    );
  }

  private redialLater(chain: string, link: SuccLink): void {
    if (this.stopped || this.succLinks.get(chain) !== link || link.timer !== undefined) return;
    link.timer = setTimeout(() => {
      link.timer = undefined;
      this.dial(chain, link);
    }, link.retryMs);
    link.retryMs = Math.min(link.retryMs * 2, this.options.retryDelayMsMax ?? 500);
  }

  // -------------------------------------------------------------------------------------
  // Clients and admins.

  private serveClient(connection: Connection): void {
    const ref = this.nextClientRef++;
    this.clients.set(ref, connection);
    connection.onFrame((frame) => {
      switch (frame.kind) {
        case 'submit': {
          const replica = this.replicas.get(frame.submit.chain);
          if (replica === undefined) connection.send(failure('unknown_chain', `node ${this.options.node} serves no chain ${JSON.stringify(frame.submit.chain)}`, { requestId: frame.submit.requestId }));
          else this.guard(() => replica.submit(ref, frame.submit, Date.now()));
          break;
        }
        case 'subscribe': {
          const replica = this.replicas.get(frame.subscribe.chain);
          if (replica === undefined) connection.send(failure('unknown_chain', `node ${this.options.node} serves no chain ${JSON.stringify(frame.subscribe.chain)}`, { requestId: frame.subscribe.requestId }));
          else this.guard(() => replica.subscribe(ref, frame.subscribe));
          break;
        }
        case 'unsubscribe':
          for (const replica of this.replicas.values()) replica.unsubscribe(ref, frame.unsubscribe.doc, frame.unsubscribe.viewer);
          break;
        default:
          connection.fail('protocol_error', `a client may not send ${frame.kind}`);
          return;
      }
      this.schedulePump();
    });
    connection.onClose(() => {
      this.clients.delete(ref);
      for (const replica of this.replicas.values()) replica.clientGone(ref);
    });
  }

  private serveAdmin(connection: Connection): void {
    connection.onFrame((frame) => {
      if (frame.kind === 'configure') {
        const c = frame.configure;
        const config: ChainConfig = { chain: c.chain, epoch: c.epoch, members: c.members };
        if (!idPattern.test(c.chain)) {
          connection.send(failure('invalid_config', `chain ids match ${idPattern}`, { requestId: c.requestId }));
          return;
        }
        let replica = this.replicas.get(c.chain);
        if (replica === undefined) {
          replica = new Replica(this.options.node, c.chain, this.options.cluster, undefined, this.options.limits);
          this.replicas.set(c.chain, replica);
        }
        const r = replica;
        const rejection = this.guard(() => r.configure(config));
        if (rejection !== undefined) {
          connection.send(failure(rejection.code, rejection.message, { requestId: c.requestId, epoch: r.epoch }));
        } else {
          this.log(`chain ${c.chain} epoch ${c.epoch}: ${c.members.map((m) => m.node).join(' -> ')} (this node: ${r.role})`);
          this.reconcileSucc(c.chain);
          // Answer once the configuration is durable.
          this.whenWritten(() => connection.send(make('status', { requestId: c.requestId, json: JSON.stringify(this.status(false)) })));
        }
        this.schedulePump();
        return;
      }
      if (frame.kind === 'control') {
        const ms = frame.control.forwardDelayMs;
        if (ms >= 0) {
          if (ms > forwardDelayMsMax) {
            connection.send(failure('invalid_control', `forwardDelayMs is at most ${forwardDelayMsMax}`, { requestId: frame.control.requestId }));
            return;
          }
          this.forwardDelayMs = ms;
          this.log(`forward delay set to ${ms} ms`);
        }
        connection.send(make('status', { requestId: frame.control.requestId, json: JSON.stringify(this.status(false)) }));
        return;
      }
      if (frame.kind === 'statusRequest') {
        connection.send(make('status', { requestId: frame.statusRequest.requestId, json: JSON.stringify(this.status(frame.statusRequest.includeState)) }));
        return;
      }
      connection.fail('protocol_error', `an admin may not send ${frame.kind}`);
    });
  }

  status(includeState: boolean): object {
    return {
      node: this.options.node,
      address: this.address,
      pid: process.pid,
      batchesWritten: this.batchesWritten,
      opsWritten: this.opsWritten,
      forwardDelayMs: this.forwardDelayMs,
      connections: this.connections.size,
      membership: this.swim?.members().map((m) => ({ node: m.node, address: m.address, state: m.state, incarnation: m.incarnation })) ?? [],
      chains: [...this.replicas.values()].map((r) => r.status(includeState)),
    };
  }

  /** Runs `run` after everything written so far is durable. */
  private whenWritten(run: () => void): void {
    this.waiters.push(run);
    this.schedulePump();
  }
  private waiters: (() => void)[] = [];

  /**
   * A replica assertion failure is a bug: log it and exit at once with code 70 (the store is
   * crash-safe; recovery takes over), rather than run on with a broken invariant.
   */
  private guard<T>(run: () => T): T {
    try {
      return run();
    } catch (error) {
      this.log(`FATAL: ${(error as Error).stack ?? String(error)}`);
      process.exit(70);
    }
  }

  // -------------------------------------------------------------------------------------
  // Pumping outboxes, the write loop, ticks.

  private schedulePump(): void {
    if (this.pumpScheduled || this.stopped) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    for (const [chain, replica] of this.replicas) {
      const out = replica.drain();
      const pred = this.predLinks.get(chain);
      if (pred !== undefined && pred.peer.node === replica.predecessor?.node) for (const f of out.pred) pred.send(f);
      const succ = this.succLinks.get(chain);
      if (succ?.connection !== undefined && succ.node === replica.successor?.node) {
        const connection = succ.connection;
        // Delayed forwards keep their order even when the delay changes: each waits for the previous.
        const now = Date.now();
        const at = Math.max(now + this.forwardDelayMs, succ.forwardAt);
        if (at > now && out.succ.length > 0) {
          succ.forwardAt = at;
          setTimeout(() => out.succ.forEach((f) => connection.send(f)), at - now);
        } else for (const f of out.succ) connection.send(f);
      }
      for (const { to, frame } of out.clients) this.clients.get(to)?.send(frame);
      if (out.resetSucc) succ?.connection?.close();
      this.reconcileSucc(chain);
    }
    void this.writeLoop();
  }

  private async writeLoop(): Promise<void> {
    if (this.writing || this.stopped) return;
    const batches: [Replica, Batch][] = [];
    for (const replica of this.replicas.values()) {
      const batch = replica.takeBatch();
      if (batch !== undefined) batches.push([replica, batch]);
    }
    const waiters = this.waiters;
    if (batches.length === 0) {
      if (waiters.length > 0) {
        this.waiters = [];
        for (const run of waiters) run();
      }
      return;
    }
    this.waiters = [];
    this.writing = true;
    const ops = batches.flatMap(([, b]) => b.ops);
    try {
      await writeBatch(this.db, { id: 0, ops }, this.options.syncWrites ?? true);
    } catch (error) {
      this.log(`FATAL: write failed: ${(error as Error).message}`);
      process.exitCode = 74;
      await this.stop();
      process.exit(74);
    }
    this.batchesWritten++;
    this.opsWritten += ops.length;
    this.writing = false;
    if (this.stopped) return;
    for (const [replica, batch] of batches) this.guard(() => replica.durable(batch.id));
    for (const run of waiters) run();
    this.pump();
  }

  private tick(): void {
    const now = Date.now();
    for (const replica of this.replicas.values()) replica.tick(now);
    this.schedulePump();
  }

  /** Closes every connection and the store. Writes in flight finish first. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    if (this.gossipTimer !== undefined) clearInterval(this.gossipTimer);
    this.udp?.close();
    for (const link of this.succLinks.values()) {
      if (link.timer !== undefined) clearTimeout(link.timer);
      link.connection?.close();
    }
    for (const connection of this.connections) connection.destroy();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
    while (this.writing) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.db.close();
  }
}
