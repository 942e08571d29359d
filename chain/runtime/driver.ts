// The driver: everything around the replicas of one node process, written once against Net,
// Disk and Clock (io.ts). It routes frames between links and replicas, runs the group-commit
// write loop, keeps successor links up (dialing, redialing with backoff), ticks the
// replicas, runs the failure detector over datagrams, and applies the fatal-error policy.
// node.ts runs it in a real process (TCP, LevelDB, timers); the simulator runs the same class
// on its virtual network, disks and clock. All protocol decisions are the replicas'.

import { randomBytes } from 'node:crypto';
import { assert } from '../../engine/assert.ts';
import { idPattern, sameMembers, type ChainConfig } from '../core/config.ts';
import { failure, make, type Frame } from '../core/frames.ts';
import { noBugs, type Bugs } from '../core/planted.ts';
import { Replica, type ClientRef, type ReplicaLimits, type ReplicaObserver, type StatusQuery } from '../core/replica.ts';
import type { Batch, RecoveredChain } from '../core/store.ts';
import type { ConfigStore } from '../control/config-store.ts';
import { Swim, type SwimOptions } from '../control/swim.ts';
import { isLink, type Clock, type Datagrams, type Disk, type Link, type Net, type Timer } from './io.ts';
import { decodeGossip, encodeGossip } from './wire.ts';

/** Bound on the demo's forward delay (ms). */
export const forwardDelayMsMax = 10_000;

export interface DriverOptions {
  readonly node: string;
  /** Where this node listens (host:port): its peers dial it there; its gossip goes there. */
  readonly address: string;
  /** The cluster id: the gossip namespace (public: every connection's Hello names it; no document's randomness depends on it). */
  readonly cluster: string;
  /** Signs gossip datagrams. */
  readonly secret: string;
  readonly limits?: Partial<ReplicaLimits>;
  /** Bound on concurrent links (peers, clients, admins). */
  readonly connectionsMax?: number;
  /** Bound on chains one node holds replicas of. */
  readonly chainsMax?: number;
  /** Redial backoff for successor links: doubles from retryDelayMsMin up to retryDelayMsMax. */
  readonly retryDelayMsMin?: number;
  readonly retryDelayMsMax?: number;
  readonly tickMs?: number;
  /** Extra delay on every forward to the successor (the demo's latency control). */
  readonly forwardDelayMs?: number;
  /** Failure detection: a SWIM member over datagrams, starting from these seeds. Off when undefined. */
  readonly gossip?: { readonly seeds: readonly { node: string; address: string }[]; readonly swim?: Partial<SwimOptions>; readonly tickMs?: number };
  /** Uniform in [0, 1) (the failure detector's choices). */
  readonly random: () => number;
  /** n random bytes: each new document's secret entropy (default node:crypto randomBytes; the simulator's are seeded). */
  readonly randomBytes?: (n: number) => Uint8Array;
  readonly bugs?: Bugs;
  /** The configuration store it checks pushed configurations against (etcd); absent: it trusts its authenticated manager (the embedded store). */
  readonly configStore?: Pick<ConfigStore, 'get'>;
  /** Observation only, per chain (the simulator's checks). */
  readonly observe?: (chain: string) => ReplicaObserver | undefined;
  readonly log?: (line: string) => void;
  /**
   * This node's own invariant broke (an assertion, not bad input: that is a typed rejection).
   * A real process logs it and exits (its store is crash-safe; recovery takes over); the
   * simulator reports it. The driver stops either way.
   */
  readonly onFatal: (error: Error) => void;
  /** Extra fields for the status report (the process id, for example). */
  readonly statusExtra?: () => Record<string, unknown>;
}

export interface DriverIo {
  readonly net: Net;
  readonly disk: Disk;
  readonly clock: Clock;
  readonly datagrams?: Datagrams;
}

interface SuccLink {
  readonly node: string;
  readonly address: string;
  link: Link | undefined;
  retryMs: number;
  timer: Timer | undefined;
  /** When the last delayed forward leaves (clock ms). */
  forwardAt: number;
}

export class Driver {
  private readonly replicas = new Map<string, Replica>();
  private readonly predLinks = new Map<string, Link>();
  private readonly succLinks = new Map<string, SuccLink>();
  private readonly clients = new Map<ClientRef, Link>();
  private readonly links = new Set<Link>();
  private nextClientRef = 1;
  private writing = false;
  private pumpScheduled = false;
  private stopped = false;
  private tickTimer: Timer | undefined;
  private gossipTimer: Timer | undefined;
  private swim: Swim | undefined;
  /** Runs after everything written so far is durable (configuration acks). */
  private whenDurable: (() => void)[] = [];
  private forwardDelayMs: number;
  private readonly bugs: Bugs;
  batchesWritten = 0;
  opsWritten = 0;

  constructor(
    private readonly io: DriverIo,
    recovered: ReadonlyMap<string, RecoveredChain>,
    readonly options: DriverOptions,
  ) {
    assert(idPattern.test(options.node), `node id ${JSON.stringify(options.node)} must match ${idPattern}`);
    this.forwardDelayMs = options.forwardDelayMs ?? 0;
    this.bugs = options.bugs ?? noBugs;
    for (const [chain, r] of recovered) this.replicas.set(chain, this.newReplica(chain, r));
  }

  private newReplica(chain: string, recovered: RecoveredChain | undefined): Replica {
    return new Replica(this.options.node, chain, recovered, {
      limits: this.options.limits,
      bugs: this.bugs,
      now: this.io.clock.now(),
      observer: this.options.observe?.(chain),
      randomBytes: this.options.randomBytes ?? randomBytes,
    });
  }

  /** Starts ticking, dials successors and joins the failure detector. */
  start(): void {
    const tickMs = this.options.tickMs ?? 100;
    const tick = (): void => {
      if (this.stopped) return;
      const now = this.io.clock.now();
      for (const replica of this.replicas.values()) this.guard(() => replica.tick(now));
      this.schedulePump();
      this.tickTimer = this.io.clock.after(tickMs, tick, true);
    };
    this.tickTimer = this.io.clock.after(tickMs, tick, true);
    for (const chain of this.replicas.keys()) this.reconcileSucc(chain);
    if (this.options.gossip !== undefined) this.startGossip(this.options.gossip);
  }

  get address(): string {
    return this.options.address;
  }

  replica(chain: string): Replica | undefined {
    return this.replicas.get(chain);
  }

  chains(): IterableIterator<[string, Replica]> {
    return this.replicas.entries();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Nothing waits for the disk, nothing to pump. */
  get idle(): boolean {
    return !this.writing && this.whenDurable.length === 0 && !this.pumpScheduled;
  }

  membership(): { node: string; address: string; state: string; incarnation: number }[] {
    return this.swim?.members().map((m) => ({ node: m.node, address: m.address, state: m.state, incarnation: m.incarnation })) ?? [];
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private startGossip(gossip: NonNullable<DriverOptions['gossip']>): void {
    const datagrams = this.io.datagrams;
    assert(datagrams !== undefined, 'Driver: gossip needs datagrams');
    const { cluster, secret } = this.options;
    const swim = new Swim(this.options.node, this.address, gossip.seeds, this.options.random, gossip.swim);
    swim.onChange = (c) => this.log(`membership: ${c.node} is ${c.state} (incarnation ${c.incarnation}${c.local ? ', decided here' : ''})`);
    datagrams.onReceive((bytes) => {
      const message = decodeGossip(cluster, secret, bytes);
      if (message === undefined || this.stopped) return;
      swim.receive(message, this.io.clock.now());
      this.flushGossip();
    });
    this.swim = swim;
    const every = gossip.tickMs ?? 5;
    const tick = (): void => {
      if (this.stopped) return;
      swim.tick(this.io.clock.now());
      this.flushGossip();
      this.gossipTimer = this.io.clock.after(every, tick, true);
    };
    this.gossipTimer = this.io.clock.after(every, tick, true);
  }

  private flushGossip(): void {
    const { swim } = this;
    const datagrams = this.io.datagrams;
    if (swim === undefined || datagrams === undefined) return;
    for (const d of swim.drain()) datagrams.send(d.address, encodeGossip(this.options.cluster, this.options.secret, d.message));
  }

  // -------------------------------------------------------------------------------------
  // Accepted links

  accept(link: Link): void {
    if (this.stopped) {
      link.close();
      return;
    }
    const connectionsMax = this.options.connectionsMax ?? 4_096;
    if (this.links.size >= connectionsMax) {
      link.fail('too_many_connections', `node ${this.options.node} serves at most ${connectionsMax} connections (connectionsMax); retry later`, true);
      return;
    }
    this.links.add(link);
    link.onClose(() => this.links.delete(link));
    switch (link.remote.role) {
      case 'peer':
        return this.servePeer(link);
      case 'client':
        return this.serveClient(link);
      case 'admin':
        return this.serveAdmin(link);
      default:
        link.fail('protocol_error', `role ${link.remote.role} is not accepted here`, false);
    }
  }

  // Predecessors dial us.
  private servePeer(link: Link): void {
    let chain: string | undefined;
    link.onFrame((frame) => {
      if (this.stopped) return;
      if (chain === undefined) {
        if (frame.kind !== 'attach') {
          link.fail('protocol_error', `a peer link starts with attach, not ${frame.kind}`, false);
          return;
        }
        chain = frame.attach.chain;
        const old = this.predLinks.get(chain);
        if (old !== undefined && old !== link) {
          this.predLinks.delete(chain);
          old.close();
          this.replicas.get(chain)?.linkDown('pred');
        }
        this.predLinks.set(chain, link);
      }
      const replica = this.replicas.get(chain);
      if (replica === undefined) {
        link.fail('not_member', `node ${this.options.node} has no configuration for chain ${chain}`, true);
        return;
      }
      const rejection = this.guard(() => replica.fromPred(frame, link.remote.node, this.io.clock.now()));
      if (rejection !== undefined) {
        this.log(`closing the link from ${link.remote.node} on ${chain}: ${rejection.code} ${rejection.message}`);
        link.fail(rejection.code, rejection.message, rejection.retryable);
      }
      this.schedulePump();
    });
    link.onClose(() => {
      if (chain !== undefined && this.predLinks.get(chain) === link) {
        this.predLinks.delete(chain);
        this.replicas.get(chain)?.linkDown('pred');
        this.schedulePump();
      }
    });
  }

  private serveClient(link: Link): void {
    const ref = this.nextClientRef++;
    this.clients.set(ref, link);
    link.onFrame((frame) => {
      if (this.stopped) return;
      const now = this.io.clock.now();
      switch (frame.kind) {
        case 'submit': {
          const replica = this.replicas.get(frame.submit.chain);
          if (replica === undefined) link.send(this.unknownChain(frame.submit.chain, frame.submit.requestId));
          else this.guard(() => replica.submit(ref, frame.submit, now));
          break;
        }
        case 'subscribe': {
          const replica = this.replicas.get(frame.subscribe.chain);
          if (replica === undefined) link.send(this.unknownChain(frame.subscribe.chain, frame.subscribe.requestId));
          else this.guard(() => replica.subscribe(ref, frame.subscribe, now));
          break;
        }
        case 'unsubscribe':
          for (const replica of this.replicas.values()) this.guard(() => replica.unsubscribe(ref, frame.unsubscribe.requestId, frame.unsubscribe.doc));
          break;
        case 'lookup':
          link.send(this.lookup(frame.lookup.chain, frame.lookup.requestId));
          return;
        default:
          link.fail('protocol_error', `a client may not send ${frame.kind}`, false);
          return;
      }
      this.schedulePump();
    });
    link.onClose(() => {
      this.clients.delete(ref);
      for (const replica of this.replicas.values()) this.guard(() => replica.clientGone(ref));
      this.schedulePump();
    });
  }

  private unknownChain(chain: string, requestId: number): Frame {
    return failure('unknown_chain', `node ${this.options.node} serves no chain ${JSON.stringify(chain)}`, { requestId, retryable: true });
  }

  private lookup(chain: string, requestId: number): Frame {
    // A lookup of no chain is a keepalive: the answer says only that this node runs.
    if (chain === '') return make('chainInfo', { requestId, node: this.options.node, chain: '', epoch: 0, role: 'none', members: [], ready: false, caughtUpEpoch: 0 });
    const replica = this.replicas.get(chain);
    if (replica === undefined) return this.unknownChain(chain, requestId);
    const info = replica.info();
    return make('chainInfo', { requestId, node: info.node, chain: info.chain, epoch: info.epoch, role: info.role, members: [...info.members], ready: info.ready, caughtUpEpoch: info.caughtUpEpoch });
  }

  /** Runs a configuration from the chain manager (checked against the store, when there is one); answers once it is durable. */
  private configure(link: Link, requestId: number, config: ChainConfig): void {
    let replica = this.replicas.get(config.chain);
    if (replica === undefined) {
      const chainsMax = this.options.chainsMax ?? 1_024;
      if (this.replicas.size >= chainsMax) {
        link.send(failure('too_many_chains', `node ${this.options.node} holds at most ${chainsMax} chains (chainsMax)`, { requestId: requestId }));
        return;
      }
      replica = this.newReplica(config.chain, undefined);
      this.replicas.set(config.chain, replica);
    }
    const r = replica;
    const rejection = this.guard(() => r.configure(config, this.io.clock.now()));
    if (rejection !== undefined) {
      link.send(failure(rejection.code, rejection.message, { requestId: requestId, epoch: r.epoch }));
    } else {
      this.log(`chain ${config.chain} epoch ${config.epoch}: ${config.members.map((m) => m.node).join(' -> ')} (this node: ${r.role})`);
      this.reconcileSucc(config.chain);
      // Answer once the configuration is durable.
      this.whenDurable.push(() => link.send(this.lookup(config.chain, requestId)));
    }
    this.schedulePump();
  }

  private serveAdmin(link: Link): void {
    link.onFrame((frame) => {
      if (this.stopped) return;
      switch (frame.kind) {
        case 'configure': {
          const c = frame.configure;
          const config: ChainConfig = { chain: c.chain, epoch: c.epoch, members: c.members };
          if (!idPattern.test(c.chain)) {
            link.send(failure('invalid_config', `chain ids match ${idPattern}`, { requestId: c.requestId }));
            return;
          }
          const store = this.options.configStore;
          if (store === undefined || this.bugs.has('node-trusts-pushes')) {
            this.configure(link, c.requestId, config);
            return;
          }
          // Accept a configuration only as the store holds it: a push is a hint to read the
          // store, which may hold a newer one (then that is what this node runs).
          store.get(c.chain, (error, stored) => {
            if (this.stopped || !link.isOpen) return;
            if (error !== undefined) {
              link.send(
                failure('store_unreachable', `node ${this.options.node} cannot read chain ${c.chain} from the configuration store (${error.message}); retry`, {
                  requestId: c.requestId,
                  retryable: true,
                }),
              );
              return;
            }
            if (stored === undefined || stored.epoch < config.epoch || (stored.epoch === config.epoch && !sameMembers(stored.members, config.members))) {
              const holds = stored === undefined ? 'none' : `epoch ${stored.epoch}`;
              this.log(`refused epoch ${config.epoch} of ${c.chain}: the configuration store holds ${holds}`);
              link.send(failure('not_in_store', `the configuration store does not hold epoch ${config.epoch} of chain ${c.chain} as pushed (it holds ${holds})`, { requestId: c.requestId }));
              return;
            }
            this.configure(link, c.requestId, stored);
          });
          return;
        }
        case 'lookup':
          link.send(this.lookup(frame.lookup.chain, frame.lookup.requestId));
          return;
        case 'control': {
          const ms = frame.control.forwardDelayMs;
          if (ms >= 0) {
            if (!Number.isSafeInteger(ms) || ms > forwardDelayMsMax) {
              link.send(failure('invalid_control', `forwardDelayMs is at most ${forwardDelayMsMax}`, { requestId: frame.control.requestId }));
              return;
            }
            this.forwardDelayMs = ms;
            this.log(`forward delay set to ${ms} ms`);
          }
          link.send(make('status', { requestId: frame.control.requestId, json: JSON.stringify(this.status({})) }));
          return;
        }
        case 'statusRequest': {
          const q = frame.statusRequest;
          link.send(
            make('status', {
              requestId: q.requestId,
              json: this.statusText({ includeState: q.includeState, includeDigests: q.includeDigests, docsAfter: q.docsAfter, docsMax: Math.min(q.docsMax, 1_000) }),
            }),
          );
          return;
        }
        default:
          link.fail('protocol_error', `an admin may not send ${frame.kind}`, false);
      }
    });
  }

  status(query: StatusQuery): Record<string, unknown> {
    return {
      node: this.options.node,
      address: this.address,
      batchesWritten: this.batchesWritten,
      opsWritten: this.opsWritten,
      forwardDelayMs: this.forwardDelayMs,
      connections: this.links.size,
      membership: this.membership(),
      chains: [...this.replicas.values()].map((r) => r.status(query)),
      ...this.options.statusExtra?.(),
    };
  }

  /** The status as JSON text under a quarter of frameBytesTarget: fewer documents per page when needed. */
  private statusText(query: StatusQuery): string {
    const bound = Math.max(64 * 1024, (this.replicas.values().next().value?.limits.frameBytesTarget ?? 1024 * 1024) / 4);
    let docsMax = query.docsMax ?? 0;
    for (;;) {
      const text = JSON.stringify(this.status({ ...query, docsMax }));
      if (text.length <= bound || docsMax <= 1) return text;
      docsMax = Math.floor(docsMax / 2);
    }
  }

  // -------------------------------------------------------------------------------------
  // We dial successors.

  private reconcileSucc(chain: string): void {
    const replica = this.replicas.get(chain) as Replica;
    const want = this.stopped ? undefined : replica.successor;
    const have = this.succLinks.get(chain);
    if (have !== undefined && (want === undefined || want.node !== have.node || want.address !== have.address)) {
      this.succLinks.delete(chain);
      have.timer?.cancel();
      have.link?.close();
    }
    if (want === undefined || this.succLinks.has(chain)) return;
    const link: SuccLink = { node: want.node, address: want.address, link: undefined, retryMs: this.options.retryDelayMsMin ?? 20, timer: undefined, forwardAt: 0 };
    this.succLinks.set(chain, link);
    this.dial(chain, link);
  }

  private dial(chain: string, succ: SuccLink): void {
    if (this.stopped || this.succLinks.get(chain) !== succ) return;
    const replica = this.replicas.get(chain) as Replica;
    this.io.net.dial(succ.address, { role: 'peer', name: this.options.node, epoch: replica.epoch, timeoutMs: 1_000 }, (result) => {
      if (!isLink(result)) {
        this.redialLater(chain, succ);
        return;
      }
      const link = result;
      if (this.stopped || this.succLinks.get(chain) !== succ) {
        link.close();
        return;
      }
      succ.link = link;
      succ.retryMs = this.options.retryDelayMsMin ?? 20;
      link.onFrame((frame) => {
        if (this.stopped) return;
        const current = this.replicas.get(chain) as Replica;
        if (frame.kind === 'failure') {
          this.log(`successor ${succ.node} on ${chain} refused us: ${frame.failure.code} ${frame.failure.message}`);
          this.guard(() => current.fromSucc(frame, succ.node, this.io.clock.now()));
          link.close();
          this.schedulePump();
          return;
        }
        const rejection = this.guard(() => current.fromSucc(frame, succ.node, this.io.clock.now()));
        if (rejection !== undefined) {
          this.log(`closing the link to ${succ.node} on ${chain}: ${rejection.code} ${rejection.message}`);
          link.fail(rejection.code, rejection.message, rejection.retryable);
        }
        this.schedulePump();
      });
      link.onClose(() => {
        if (succ.link !== link) return;
        succ.link = undefined;
        if (this.succLinks.get(chain) === succ && !this.stopped) {
          (this.replicas.get(chain) as Replica).linkDown('succ');
          this.redialLater(chain, succ);
        }
        this.schedulePump();
      });
      this.guard(() => replica.linkUp(this.io.clock.now()));
      this.schedulePump();
    });
  }

  private redialLater(chain: string, succ: SuccLink): void {
    if (this.stopped || this.succLinks.get(chain) !== succ || succ.timer !== undefined) return;
    succ.timer = this.io.clock.after(succ.retryMs, () => {
      succ.timer = undefined;
      this.dial(chain, succ);
    });
    succ.retryMs = Math.min(succ.retryMs * 2, this.options.retryDelayMsMax ?? 500);
  }

  // -------------------------------------------------------------------------------------
  // The fatal-error policy

  private guard<T>(run: () => T): T {
    try {
      return run();
    } catch (error) {
      this.fatal(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
  }

  private fatal(error: Error): void {
    if (this.stopped) return;
    this.log(`FATAL: ${error.stack ?? error.message}`);
    this.halt();
    this.options.onFatal(error);
  }

  // -------------------------------------------------------------------------------------
  // Pumping outboxes, the write loop.

  private schedulePump(): void {
    if (this.pumpScheduled || this.stopped) return;
    this.pumpScheduled = true;
    this.io.clock.soon(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.stopped) return;
    for (const [chain, replica] of this.replicas) {
      const out = replica.drain();
      const pred = this.predLinks.get(chain);
      if (pred !== undefined && pred.remote.node === replica.predecessor?.node) for (const f of out.pred) pred.send(f);
      const succ = this.succLinks.get(chain);
      const link = succ?.link;
      if (succ !== undefined && link !== undefined && succ.node === replica.successor?.node) this.toSuccessor(succ, link, out.succ);
      for (const { to, frame } of out.clients) this.clients.get(to)?.send(frame);
      if (out.resetSucc) link?.close();
      this.reconcileSucc(chain);
    }
    this.writeLoop();
  }

  /** Frames to the successor; with a forward delay they wait, in order (lease rounds do not: they carry no data). */
  private toSuccessor(succ: SuccLink, link: Link, frames: readonly Frame[]): void {
    if (frames.length === 0) return;
    const now = this.io.clock.now();
    const at = Math.max(now + this.forwardDelayMs, succ.forwardAt);
    if (at <= now) {
      for (const f of frames) link.send(f);
      return;
    }
    const delayed = frames.filter((f) => f.kind !== 'lease');
    for (const f of frames) if (f.kind === 'lease') link.send(f);
    if (delayed.length === 0) return;
    succ.forwardAt = at;
    this.io.clock.after(at - now, () => {
      for (const f of delayed) link.send(f);
    });
  }

  private writeLoop(): void {
    if (this.writing || this.stopped) return;
    const batches: [Replica, Batch][] = [];
    for (const replica of this.replicas.values()) {
      const batch = replica.takeBatch();
      if (batch !== undefined) batches.push([replica, batch]);
    }
    const waiting = this.whenDurable;
    this.whenDurable = [];
    if (batches.length === 0) {
      for (const run of waiting) run();
      return;
    }
    this.writing = true;
    const ops = batches.length === 1 ? (batches[0] as [Replica, Batch])[1].ops : batches.flatMap(([, b]) => b.ops);
    this.io.disk.write(ops, (error) => {
      this.writing = false;
      if (this.stopped) return;
      if (error !== undefined) {
        this.fatal(new Error(`write failed: ${error.message}`));
        return;
      }
      this.batchesWritten++;
      this.opsWritten += ops.length;
      for (const [replica, batch] of batches) this.guard(() => replica.durable(batch.id));
      for (const run of waiting) run();
      this.pump();
    });
  }

  /** Stops everything at once: timers, links; writes in flight are abandoned (the process stops or crashed). */
  private halt(): void {
    this.stopped = true;
    this.tickTimer?.cancel();
    this.gossipTimer?.cancel();
    for (const succ of this.succLinks.values()) {
      succ.timer?.cancel();
      succ.link?.close();
    }
    for (const link of [...this.links]) link.close();
  }

  /**
   * A graceful stop (SIGTERM): no more input, every link closed, and everything the replicas
   * wrote so far reaches the disk (a joiner's last catch-up included) before `done`.
   */
  shutdown(done: () => void): void {
    if (!this.stopped) this.halt();
    const flush = (): void => {
      if (this.writing) {
        this.io.clock.after(5, flush);
        return;
      }
      const ops = [...this.replicas.values()].flatMap((r) => r.takeBatch()?.ops ?? []);
      if (ops.length === 0) return done();
      this.writing = true;
      this.io.disk.write(ops, (error) => {
        this.writing = false;
        if (error !== undefined) {
          this.log(`shutdown: a write failed: ${error.message}`);
          return done();
        }
        flush();
      });
    };
    flush();
  }

  /** A write is in flight. */
  get busyWriting(): boolean {
    return this.writing;
  }
}
