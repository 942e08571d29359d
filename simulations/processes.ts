// Simulated processes: each runs product code (the node driver, the manager loop, the proxy
// router, client sessions) on a per-incarnation virtual clock, network and disk. A process
// can be paused (SIGSTOP: everything that reaches it waits), hung (stopped for good), crashed
// or powered off, and restarted; a dead incarnation's timers, frames and completions vanish.

import { ChainSession } from '../chain/client/session.ts';
import type { ChainConfig } from '../chain/core/config.ts';
import { ManagerLoop } from '../chain/control/manager-loop.ts';
import { Driver } from '../chain/runtime/driver.ts';
import type { Clock, Datagrams, Link } from '../chain/runtime/io.ts';
import { Router } from '../proxy/router.ts';
import { SimDisk } from './disk.ts';
import { ViolationError } from './events.ts';
import type { SimConn } from './network.ts';
import type { World } from './world.ts';

export const simCluster = 'sim-cluster';
export const simSecret = 'sim-cluster-secret';
export const addressOf = (name: string): string => `${name}.sim:7000`;
/** How often failure detectors tick (virtual ms). */
export const gossipTickMs = 10;

class SimTimer {
  cancelled = false;
  cancel(): void {
    this.cancelled = true;
  }
}

export class SimProcess {
  alive = true;
  incarnation = 1;
  /** A paused process (SIGSTOP) does nothing until then; what reaches it waits. */
  pausedUntil = 0;
  /** Stopped for good: nothing reaches it any more, and it never heals. */
  hung = false;
  /** Until when a fault cut this process off or slowed it (partition, isolation, slowness, a long pause). */
  disturbedUntil = 0;
  /** When it last resumed from a pause (the lease check counts from there). */
  resumedAt = 0;
  readonly conns = new Set<SimConn>();
  private datagramHandler: ((bytes: Uint8Array) => void) | undefined;

  constructor(
    readonly world: World,
    readonly name: string,
    readonly address: string,
  ) {}

  /** What reached it while it was paused, in arrival order (a stopped process's sockets keep their order). */
  private heldTasks: { incarnation: number; task: () => void }[] = [];
  private flushing = false;

  /** Runs `task` in this process: now, or once it is no longer paused, after what reached it first; never for another incarnation. */
  run(incarnation: number, task: () => void): void {
    if (!this.alive || this.incarnation !== incarnation || this.hung) return;
    if (this.pausedUntil > this.world.now || (this.heldTasks.length > 0 && !this.flushing)) {
      if (this.heldTasks.length === 0) this.world.at(Math.max(this.pausedUntil, this.world.now), () => this.flush());
      this.heldTasks.push({ incarnation, task });
      return;
    }
    this.world.ranIn(this);
    task();
  }

  /** Runs what was held, in order; a pause that was extended (or began again) holds the rest. */
  private flush(): void {
    if (this.pausedUntil > this.world.now) {
      this.world.at(this.pausedUntil, () => this.flush());
      return;
    }
    const held = this.heldTasks;
    this.heldTasks = [];
    this.flushing = true;
    for (let i = 0; i < held.length; i++) {
      if (this.pausedUntil > this.world.now) {
        this.heldTasks = [...held.slice(i), ...this.heldTasks];
        this.world.at(this.pausedUntil, () => this.flush());
        break;
      }
      const h = held[i] as { incarnation: number; task: () => void };
      this.run(h.incarnation, h.task);
    }
    this.flushing = false;
  }

  get running(): boolean {
    return this.alive && !this.hung && this.pausedUntil <= this.world.now;
  }

  /** The product's Clock for the current incarnation. */
  clock(): Clock {
    const world = this.world;
    const incarnation = this.incarnation;
    return {
      now: () => world.now,
      after: (ms, run) => {
        const timer = new SimTimer();
        world.after(ms, () => {
          if (timer.cancelled) return false;
          this.run(incarnation, run);
          return true;
        });
        return timer;
      },
      soon: (run) => world.after(0, () => this.run(incarnation, run)),
    };
  }

  /** The product's Datagrams for the current incarnation. */
  datagrams(): Datagrams {
    return {
      send: (address, bytes) => this.world.net.datagram(this, address, bytes),
      onReceive: (handler) => void (this.datagramHandler = handler),
    };
  }

  receiveDatagram(bytes: Uint8Array): void {
    this.datagramHandler?.(bytes);
  }

  accept(link: Link): void {
    link.close();
  }
}

/** A chain node: the product's driver on a simulated disk that outlives its processes. */
export class NodeProcess extends SimProcess {
  readonly disk: SimDisk;
  driver: Driver | undefined;
  crashes = 0;

  constructor(world: World, name: string) {
    super(world, name, addressOf(name));
    this.alive = false;
    this.incarnation = 0;
    this.disk = new SimDisk(world, this);
  }

  start(): void {
    if (this.alive) throw new Error(`NodeProcess.start: ${this.name} is running`);
    this.incarnation++;
    this.alive = true;
    this.pausedUntil = 0;
    const world = this.world;
    const settings = world.settings;
    const name = this.name;
    const driver = new Driver({ net: world.net.netFor(this), disk: this.disk.forIncarnation(), clock: this.clock(), datagrams: this.datagrams() }, this.disk.recover(), {
      node: name,
      address: this.address,
      cluster: simCluster,
      secret: simSecret,
      limits: settings.limits,
      tickMs: settings.tickMs,
      gossip: settings.autopilot
        ? { seeds: [...world.nodes.map((n) => ({ node: n.name, address: n.address })), ...world.managers.map((m) => ({ node: m.name, address: m.address }))], tickMs: gossipTickMs }
        : undefined,
      configStore: settings.nodesCheckStore === true ? world.store.clientFor(this) : undefined,
      random: () => world.rng.next(),
      randomBytes: (n) => world.randomBytes(n),
      bugs: world.bugs,
      observe: (chain) => world.observer.replicaObserver(name, chain),
      log: world.traceLogs ? (line) => world.note(`${name}: ${line}`) : undefined,
      // In production the process exits; here it is a finding: bad input reached an assertion
      // (validation) or an invariant of the node broke (assertion).
      onFatal: (error) => {
        if (error instanceof ViolationError) throw error; // a check of the simulator's own, raised inside the node
        throw new ViolationError(world.delivering !== undefined ? 'validation' : 'assertion', `node ${name}: ${error.message}`);
      },
    });
    this.driver = driver;
    driver.start();
  }

  override accept(link: Link): void {
    if (this.driver === undefined) link.close();
    else this.driver.accept(link);
  }

  /** Process crash (the OS keeps the write in flight) or power loss (it is lost). */
  crash(powerLoss: boolean): void {
    if (!this.alive) return;
    this.alive = false;
    this.pausedUntil = 0; // the next process starts unpaused
    this.hung = false;
    this.crashes++;
    this.driver = undefined;
    this.disk.crash(powerLoss);
    this.world.net.processDied(this, powerLoss ? 300 : 1, powerLoss ? 1_000 : 5);
  }

  /** Nothing in flight to the disk, nothing waiting to be pumped. */
  get idle(): boolean {
    return !this.disk.writing && (this.driver?.idle ?? true);
  }
}

/**
 * A chain manager: the product's manager loop on the simulated store. Several may run; one
 * leads. A crash loses its memory: the next incarnation is a new loop that reads the store.
 */
export class ManagerProcess extends SimProcess {
  loop: ManagerLoop;
  crashes = 0;

  constructor(
    world: World,
    name: string,
    private readonly initial: readonly ChainConfig[],
  ) {
    super(world, name, addressOf(name));
    this.loop = this.newLoop();
  }

  private newLoop(): ManagerLoop {
    const world = this.world;
    const settings = world.settings;
    const loop = new ManagerLoop({ net: world.net.netFor(this), clock: this.clock(), datagrams: this.datagrams(), store: world.store.clientFor(this) }, this.initial, {
      name: this.name,
      k: settings.k,
      nodes: world.nodes.map((n) => ({ node: n.name, address: n.address })),
      membership: settings.autopilot ? 'swim' : 'external',
      cluster: simCluster,
      secret: simSecret,
      address: this.address,
      random: () => world.rng.next(),
      decideEveryMs: gossipTickMs,
      requestTimeoutMs: 1_000,
      pushRetryMsMin: 20,
      pushRetryMsMax: 500,
      pollEveryMs: 250,
      bugs: world.bugs,
      log: world.traceLogs ? (line) => world.note(`${this.name}: ${line}`) : undefined,
      onEvent: (e) => world.managerEvent(this.name, e),
    });
    if (world.membership !== undefined) loop.setMembership(world.membership.live, world.membership.dead);
    loop.planning = world.planning;
    return loop;
  }

  start(): void {
    this.loop.start();
  }

  /** A crash: its memory (configurations, acks, catch-up reports) is gone; the store keeps what it wrote. */
  crash(): void {
    if (!this.alive) return;
    this.alive = false;
    this.pausedUntil = 0;
    this.crashes++;
    // No clean stop (it would resign): its timers and answers die with the incarnation.
    this.world.net.processDied(this, 1, 5);
  }

  restart(): void {
    if (this.alive) return;
    this.incarnation++;
    this.alive = true;
    this.loop = this.newLoop();
    this.loop.start();
  }
}

/** A proxy: the product's router, shared by the browser-side clients attached to it. */
export class ProxyProcess extends SimProcess {
  readonly router: Router;

  constructor(world: World, name: string) {
    super(world, name, addressOf(name));
    const settings = world.settings;
    this.router = new Router(
      { net: world.net.netFor(this), clock: this.clock() },
      {
        nodes: world.nodes.map((n) => n.address),
        chains: settings.chains.length,
        name,
        submitTimeoutMs: settings.submitTimeoutMs,
        requestTimeoutMs: settings.requestTimeoutMs,
        lookupTimeoutMs: 500,
        bugs: world.bugs,
      },
    );
  }
}

/** A program using client sessions (like the chaos runner's clients), one per chain. */
export class SessionProcess extends SimProcess {
  private readonly sessions = new Map<string, ChainSession>();

  session(chain: string, clientId: string): ChainSession {
    let s = this.sessions.get(chain);
    if (s === undefined) {
      const settings = this.world.settings;
      s = new ChainSession(
        { net: this.world.net.netFor(this), clock: this.clock() },
        {
          addresses: this.world.nodes.map((n) => n.address),
          chain,
          clientId,
          name: this.name,
          submitTimeoutMs: settings.submitTimeoutMs,
          requestTimeoutMs: settings.requestTimeoutMs,
          bugs: this.world.bugs,
        },
      );
      this.sessions.set(chain, s);
    }
    return s;
  }
}
