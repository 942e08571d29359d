// The automatic chain manager of a cluster as a real process: the manager loop
// (manager-loop.ts) on TCP admin links, wall-clock timers, a UDP socket for its failure
// detector, and a configuration store (config-store.ts: the embedded file, or etcd with
// several managers of which one leads). The store says where each chain stands; for a chain
// it does not hold yet, the manager starts from the newest configuration the nodes hold (a
// cluster that ran before the store existed), or places the chain by rendezvous hashing.

import { chainInfo, type ClientOptions } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import type { ConfigStore } from './config-store.ts';
import { systemClock, UdpDatagrams } from '../runtime/system.ts';
import { type Credentials, keyFor, keyringOf, onlyRoles } from '../runtime/credentials.ts';
import { TcpNet } from '../runtime/tcp-net.ts';
import type { NodeAddress } from './decisions.ts';
import { managerId, ManagerLoop, type ManagerEvent } from './manager-loop.ts';
import { chainIds, initialPlacement } from './placement.ts';
import type { MemberState, SwimOptions } from './swim.ts';

export { managerId } from './manager-loop.ts';
export type ClusterEvent = ManagerEvent;

/** Credentials: a cluster secret, or the admin and gossip keys. */
export interface ClusterManagerOptions extends Credentials {
  /** Where configurations live; the manager writes through its compare-and-swap. */
  readonly store: ConfigStore;
  /** Its name among the managers (SWIM member id and election candidate; default "manager"). */
  readonly name?: string;
  readonly chains: number;
  readonly k: number;
  readonly host?: string;
  /** UDP port of the manager's SWIM member (0: any). */
  readonly port?: number;
  readonly swim?: Partial<SwimOptions>;
  /** How often decisions are made (ms). */
  readonly decideEveryMs?: number;
  /** Bound on one configuration push or lookup (ms). */
  readonly requestTimeoutMs?: number;
  /** How long start() waits for every chain's configuration (ms; default 15,000). */
  readonly startTimeoutMs?: number;
  readonly log?: (line: string) => void;
  readonly onEvent?: (event: ClusterEvent) => void;
}

export class ClusterManager {
  private loop: ManagerLoop | undefined;

  private constructor(
    readonly options: ClusterManagerOptions,
    private readonly udp: UdpDatagrams,
    readonly address: string,
  ) {}

  /** Binds the manager's UDP socket; nodes are started with it as their gossip seed. */
  static async bind(options: ClusterManagerOptions): Promise<ClusterManager> {
    const host = options.host ?? '127.0.0.1';
    const udp = await UdpDatagrams.bind(host, options.port ?? 0, (line) => options.log?.(line));
    return new ClusterManager(options, udp, `${host}:${udp.port}`);
  }

  get seed(): { node: string; address: string } {
    return { node: this.options.name ?? managerId, address: this.address };
  }

  /** It leads the managers and has read the store (it decides and pushes). */
  get acting(): boolean {
    return this.loop?.acting === true;
  }

  get configs(): ReadonlyMap<string, ChainConfig> {
    return this.loop?.configs ?? new Map();
  }

  private get clientOptions(): ClientOptions {
    const timeout = this.options.requestTimeoutMs ?? 1_000;
    return {
      cluster: this.options.cluster,
      keys: onlyRoles(keyringOf(this.options), ['admin']),
      transport: this.options.transport,
      requestTimeoutMs: timeout,
      connectTimeoutMs: timeout,
      name: managerId,
    };
  }

  /** Starts managing `nodes`: adopts the configurations they hold (a restart) or places the chains, then decides on every change. */
  async start(nodes: readonly NodeAddress[]): Promise<void> {
    if (this.loop !== undefined) throw new Error('ClusterManager.start: already started');
    const placed = initialPlacement(nodes, this.options.chains, this.options.k);
    const address = new Map(nodes.map((n) => [n.node, n.address]));
    const configs: ChainConfig[] = [];
    for (const chain of chainIds(this.options.chains)) {
      const infos = await Promise.all(nodes.map((n) => chainInfo(n.address, chain, this.clientOptions).catch(() => undefined)));
      let best: ChainConfig | undefined;
      for (const info of infos) if (info !== undefined && info.epoch > 0 && (best === undefined || info.epoch > best.epoch)) best = { chain, epoch: info.epoch, members: info.members };
      // After a restart of the whole cluster the nodes may listen elsewhere: same members, new addresses, next epoch.
      if (best?.members.some((m) => address.has(m.node) && address.get(m.node) !== m.address)) {
        best = { chain, epoch: best.epoch + 1, members: best.members.map((m) => ({ ...m, address: address.get(m.node) ?? m.address })) };
      }
      configs.push(best ?? (placed.find((p) => p.chain === chain) as ChainConfig));
    }
    const loop = new ManagerLoop(
      {
        net: new TcpNet({ cluster: this.options.cluster, keys: onlyRoles(keyringOf(this.options), ['admin']), transport: this.options.transport }),
        clock: systemClock,
        datagrams: this.udp,
        store: this.options.store,
      },
      configs,
      {
        name: this.options.name,
        k: this.options.k,
        nodes,
        membership: 'swim',
        cluster: this.options.cluster,
        secret: keyFor(keyringOf(this.options), 'gossip'),
        address: this.address,
        swim: this.options.swim,
        random: Math.random,
        decideEveryMs: this.options.decideEveryMs,
        requestTimeoutMs: this.options.requestTimeoutMs,
        log: this.options.log,
        onEvent: this.options.onEvent,
      },
    );
    this.loop = loop;
    loop.start();
    // Ready once every chain's configuration is known here (read from the store, or written by
    // this manager as the leader): headOf() can answer. Bounded: a standby whose leader has not
    // written yet goes on without.
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 15_000);
    while (loop.configs.size < this.options.chains && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** The detector's view of every managed node. */
  membership(): { node: string; address: string; state: MemberState }[] {
    return this.loop?.membership() ?? [];
  }

  /** Where a document lives: its chain and that chain's head. */
  headOf(doc: string): { chain: string; node: string; address: string } {
    if (this.loop === undefined) throw new Error('ClusterManager: not started');
    return this.loop.headOf(doc);
  }

  joining(chain: string): Set<string> {
    return this.loop?.joining(chain) ?? new Set();
  }

  /** Stops deciding and resigns the leadership (a standby takes over at once); the store stays open (its owner closes it). */
  async stop(): Promise<void> {
    this.loop?.stop();
    await this.udp.close();
  }
}
