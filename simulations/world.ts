// The simulated world: a virtual clock and a seeded PRNG, the network and the disks, node
// processes running the product's driver, the manager running the product's manager loop,
// proxies running the product's router, programs running client sessions, and the
// browser-side clients. One event runs at a time, so a run is a pure function of its settings.

import { Prng } from '../engine/random.ts';
import type { Move } from '../engine/workloads.ts';
import type { ChainConfig } from '../chain/core/config.ts';
import type { Frame, Subscribe, ViewUpdate, WireEnvelope } from '../chain/core/frames.ts';
import type { Bugs } from '../chain/core/planted.ts';
import type { ReplicaLimits, ReplicaObserver } from '../chain/core/replica.ts';
import type { ManagerEvent } from '../chain/control/manager-loop.ts';
import { chainIds, chainOf } from '../chain/control/placement.ts';
import { Player, type ClientSpec, type Tab } from './clients.ts';
import { EventQueue, type Task } from './events.ts';
import { SimNetwork } from './network.ts';
import { addressOf, ManagerProcess, NodeProcess, ProxyProcess, SessionProcess, SimProcess } from './processes.ts';
import { SimStore } from './store.ts';
import type { NodeAddress } from '../chain/control/decisions.ts';

export interface WorldSettings {
  readonly seed: number;
  readonly nodes: number;
  /** Chains and their initial members (node indexes, head first); documents map to chains by rendezvous hashing. */
  readonly chains: readonly { readonly id: string; readonly members: readonly number[] }[];
  /** Target chain length; the manager refills chains up to it. */
  readonly k: number;
  readonly docs: readonly { readonly id: string; readonly type: string }[];
  readonly clients: readonly ClientSpec[];
  readonly proxies: number;
  readonly latencyMs: { readonly min: number; readonly max: number };
  readonly diskMs: { readonly min: number; readonly max: number };
  readonly tickMs: number;
  readonly limits?: Partial<ReplicaLimits>;
  readonly frameBytesMax: number;
  /** The resend window of routers and sessions (must stay below the nodes' dedupeIdleMsMin). */
  readonly submitTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Nodes and the manager run SWIM; the manager reconfigures on its own with plan(). */
  readonly autopilot?: boolean;
  /** Manager processes (one leads at a time, through the store); default 1. */
  readonly managers?: number;
  /** Nodes accept a pushed configuration only as the store holds it (as with etcd); else they trust the manager (the embedded store). */
  readonly nodesCheckStore?: boolean;
}

export const defaultNetwork = { latencyMs: { min: 0.05, max: 1.5 }, diskMs: { min: 0.1, max: 2.5 }, tickMs: 100 };

/** What the world tells the invariant checker as it runs. */
export interface Observer {
  replicaObserver(node: string, chain: string): ReplicaObserver;
  tabOpened(tab: Tab): void;
  tabClosed(tab: Tab): void;
  tabFrame(tab: Tab, update: ViewUpdate): void;
  acked(doc: string, seq: number): void;
  /** A node answered a Configure: it holds that epoch durably. */
  configAcked(node: string, chain: string, epoch: number): void;
  afterEvent(world: World): void;
}

export type { Frame, Move, Subscribe, WireEnvelope };

const traceLinesMax = Number(process.env.SIM_TRACE_LINES ?? 400);
/** SIM_TRACE=1 adds the product's log lines to a run's trace (slow; for reading one failing run). */
const traceLogsDefault = process.env.SIM_TRACE === '1';

export class World {
  now = 0;
  events = 0;
  readonly rng: Prng;
  /** The nodes' source of document entropy: seeded, so a run replays, and apart from rng, so faults and schedules do not move with it. */
  private readonly entropyRng: Prng;
  readonly net: SimNetwork;
  readonly nodes: NodeProcess[] = [];
  readonly proxies: ProxyProcess[] = [];
  readonly clients: Player[] = [];
  readonly managers: ManagerProcess[] = [];
  readonly store: SimStore;
  /** Where operators' tools (and writers that go around the store) run. */
  readonly operator: SimProcess;
  /** External membership as the operator last set it, applied to every manager incarnation. */
  membership: { live: NodeAddress[]; dead: Set<string> } | undefined;
  planning = false;
  private readonly queue = new EventQueue();
  private readonly procs = new Map<string, SimProcess>();
  private readonly byName = new Map<string, NodeProcess>();
  /** A short log of what happened, for a failing run's report. */
  readonly trace: string[] = [];
  readonly traceLogs: boolean;
  /** The corrupted frame being delivered, if any (a fatal error then is a validation failure). */
  delivering: Frame | undefined;
  /** The process the current event ran in, if it ran in exactly one (the per-event checks look only there). */
  ran: SimProcess | 'several' | undefined;
  private readonly chainList: string[];
  /** doc -> chain (chainOf hashes once per chain per call; the checks ask often). */
  private readonly docChains = new Map<string, string>();

  constructor(
    readonly settings: WorldSettings,
    readonly observer: Observer,
    readonly bugs: Bugs,
  ) {
    this.rng = new Prng(settings.seed);
    this.entropyRng = new Prng(settings.seed ^ 0x2545f491);
    this.chainList = chainIds(settings.chains.length);
    this.traceLogs = traceLogsDefault;
    this.net = new SimNetwork(this, settings.frameBytesMax);
    for (let i = 0; i < settings.nodes; i++) {
      const node = new NodeProcess(this, this.nodeName(i));
      this.nodes.push(node);
      this.byName.set(node.name, node);
      this.add(node);
    }
    const initial: ChainConfig[] = settings.chains.map((c) => ({
      chain: c.id,
      epoch: 1,
      members: c.members.map((i) => ({ node: this.nodeName(i), address: addressOf(this.nodeName(i)), sinceEpoch: 1 })),
    }));
    this.store = new SimStore(this);
    this.add(this.store);
    this.operator = new SimProcess(this, 'operator', addressOf('operator'));
    this.add(this.operator);
    for (let i = 0; i < (settings.managers ?? 1); i++) {
      const manager = new ManagerProcess(this, i === 0 ? 'manager' : `manager${i + 1}`, initial);
      this.managers.push(manager);
      this.add(manager);
    }
    for (let i = 0; i < settings.proxies; i++) {
      const proxy = new ProxyProcess(this, `proxy${i + 1}`);
      this.proxies.push(proxy);
      this.add(proxy);
    }
    settings.clients.forEach((spec, i) => {
      const name = `cl${i + 1}`;
      let host: ProxyProcess | SessionProcess;
      if (spec.via === 'proxy' && this.proxies.length > 0) host = this.proxies[spec.proxy % this.proxies.length] as ProxyProcess;
      else {
        host = new SessionProcess(this, `${name}-app`, addressOf(`${name}-app`));
        this.add(host);
      }
      this.clients.push(new Player(this, name, spec, host));
    });
  }

  private add(proc: SimProcess): void {
    this.procs.set(proc.address, proc);
  }

  nodeName(index: number): string {
    return `n${(index % this.settings.nodes) + 1}`;
  }

  node(name: string): NodeProcess | undefined {
    return this.byName.get(name);
  }

  procAt(address: string): SimProcess | undefined {
    return this.procs.get(address);
  }

  /** Every process. */
  processes(): IterableIterator<SimProcess> {
    return this.procs.values();
  }

  at(time: number, task: Task): void {
    if (time < this.now) throw new Error(`World.at: ${time} is in the past (now ${this.now})`);
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

  /** `n` bytes for a node's randomBytes (each new document's entropy). */
  randomBytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.entropyRng.int(256);
    return out;
  }

  /** Notes that the current event runs code of `proc`. */
  ranIn(proc: SimProcess): void {
    this.ran = this.ran === undefined || this.ran === proc ? proc : 'several';
  }

  chainOfDoc(doc: string): string {
    let chain = this.docChains.get(doc);
    if (chain === undefined) this.docChains.set(doc, (chain = chainOf(doc, this.chainList)));
    return chain;
  }

  managerEvent(name: string, e: ManagerEvent): void {
    if (e.kind === 'leadership') this.note(`${name}: ${e.leading ? 'leads' : `stopped leading (${e.why})`}`);
    if (e.kind !== 'configured') return;
    this.note(`${name}: ${e.config.chain} epoch ${e.config.epoch} = ${e.config.members.map((m) => m.node).join('>')} (${e.why})`);
  }

  /** The manager that leads and has read the store, if one does. */
  leader(): ManagerProcess | undefined {
    return this.managers.find((m) => m.alive && m.loop.acting && m.loop.leading);
  }

  /** The leader, or (for observers) the first running manager. */
  get manager(): ManagerProcess {
    return this.leader() ?? this.managers.find((m) => m.alive) ?? (this.managers[0] as ManagerProcess);
  }

  /** The operator's view of who is live, for every manager (now and after restarts). */
  setMembership(live: readonly NodeAddress[], dead: ReadonlySet<string>): void {
    this.membership = { live: [...live], dead: new Set(dead) };
    for (const m of this.managers) m.loop.setMembership(live, dead);
  }

  setPlanning(on: boolean): void {
    this.planning = on;
    for (const m of this.managers) m.loop.planning = on;
  }

  start(): void {
    for (const node of this.nodes) node.start();
    for (const manager of this.managers) manager.start();
    for (const client of this.clients) client.start();
  }

  /** Runs events until `until` (virtual ms) or until `stop()` holds (checked every 20 virtual ms). */
  run(until: number, stop?: () => boolean): void {
    let nextCheck = this.now;
    while (this.queue.size > 0 && this.queue.peekTime() <= until) {
      const time = this.queue.peekTime();
      const task = this.queue.pop();
      this.now = time;
      this.ran = undefined;
      if (task() === false) continue; // a cancelled timer
      this.events++;
      this.observer.afterEvent(this);
      if (stop !== undefined && this.now >= nextCheck) {
        nextCheck = this.now + 20;
        if (stop()) return;
      }
    }
    this.now = Math.max(this.now, until);
  }
}
