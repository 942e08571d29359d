// The automatic chain manager of a cluster: a SWIM member itself (over UDP), it turns the
// failure detector's view into configurations with plan() (placement.ts), pushes them to the
// nodes, and polls joiners until they have caught up. One process, as the chain-replication
// paper's master; replicating it (Raft) is future work.

import dgram from 'node:dgram';
import { assert } from '../engine/assert.ts';
import type { ClientOptions, NodeStatus } from './client.ts';
import { configureNode, nodeStatus, type NodeAddress } from './manager.ts';
import { chainIds, chainOf, initialPlacement, plan } from './placement.ts';
import type { ChainConfig } from './store.ts';
import { Swim, type MemberState, type SwimOptions } from './swim.ts';
import { decodeGossip, encodeGossip } from './wire.ts';

export interface ClusterManagerOptions {
  readonly cluster: string;
  readonly secret: string;
  readonly chains: number;
  readonly k: number;
  readonly host?: string;
  /** UDP port of the manager's SWIM member (0: any). */
  readonly port?: number;
  readonly swim?: Partial<SwimOptions>;
  /** How often decisions are made (ms). */
  readonly decideEveryMs?: number;
  /** Bound on one configuration push or status request (ms). */
  readonly requestTimeoutMs?: number;
  readonly log?: (line: string) => void;
  readonly onEvent?: (event: ClusterEvent) => void;
}

export type ClusterEvent =
  | { readonly kind: 'member'; readonly at: number; readonly node: string; readonly state: MemberState; readonly local: boolean }
  | { readonly kind: 'configured'; readonly at: number; readonly config: ChainConfig; readonly why: string };

export const managerId = 'manager';

export class ClusterManager {
  readonly configs = new Map<string, ChainConfig>();
  private nodes: NodeAddress[] = [];
  private swim: Swim | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly caughtUp = new Map<string, Map<string, number>>();
  private readonly acked = new Map<string, Set<string>>();
  private readonly pushing = new Set<string>();
  private polling = false;
  private lastRetry = 0;
  private stopped = false;

  private constructor(
    readonly options: ClusterManagerOptions,
    private readonly udp: dgram.Socket,
    readonly address: string,
  ) {}

  /** Binds the manager's UDP socket; nodes are started with it as their gossip seed. */
  static async bind(options: ClusterManagerOptions): Promise<ClusterManager> {
    const udp = dgram.createSocket('udp4');
    const host = options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(options.port ?? 0, host, () => resolve());
    });
    return new ClusterManager(options, udp, `${host}:${udp.address().port}`);
  }

  get seed(): { node: string; address: string } {
    return { node: managerId, address: this.address };
  }

  private get clientOptions(): ClientOptions & { requestTimeoutMs: number; connectTimeoutMs: number } {
    const timeout = this.options.requestTimeoutMs ?? 1_000;
    return { cluster: this.options.cluster, secret: this.options.secret, requestTimeoutMs: timeout, connectTimeoutMs: timeout };
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  /** Starts managing `nodes`: adopts the configurations they hold (a restart) or places the chains, then decides on every change. */
  async start(nodes: readonly NodeAddress[]): Promise<void> {
    assert(this.swim === undefined, 'ClusterManager.start: already started');
    this.nodes = [...nodes];
    const statuses = (await Promise.all(nodes.map((n) => nodeStatus(n.address, this.clientOptions).catch(() => undefined)))).filter((s): s is NodeStatus => s !== undefined);
    const placed = initialPlacement(nodes, this.options.chains, this.options.k);
    for (const chain of chainIds(this.options.chains)) {
      let best: ChainConfig | undefined;
      for (const st of statuses) for (const c of st.chains) if (c.chain === chain && c.epoch > 0 && (best === undefined || c.epoch > best.epoch)) best = { chain, epoch: c.epoch, members: c.members };
      // After a restart of the whole cluster the nodes may listen elsewhere: same members, new addresses, next epoch.
      const address = new Map(nodes.map((n) => [n.node, n.address]));
      if (best !== undefined && best.members.some((m) => address.has(m.node) && address.get(m.node) !== m.address)) {
        best = { chain, epoch: best.epoch + 1, members: best.members.map((m) => ({ ...m, address: address.get(m.node) ?? m.address })) };
      }
      this.configs.set(chain, best ?? (placed.find((p) => p.chain === chain) as ChainConfig));
      this.acked.set(chain, new Set());
    }
    const swim = new Swim(managerId, this.address, nodes, Math.random, this.options.swim);
    swim.onChange = (c) => {
      this.log(`membership: ${c.node} is ${c.state}${c.local ? ' (decided here)' : ''}`);
      this.options.onEvent?.({ kind: 'member', at: Date.now(), node: c.node, state: c.state, local: c.local });
      this.decide();
    };
    this.udp.on('message', (datagram) => {
      const message = decodeGossip(this.options.cluster, this.options.secret, datagram);
      if (message === undefined || this.stopped) return;
      swim.receive(message, Date.now());
      this.flush();
    });
    this.swim = swim;
    for (const chain of this.configs.keys()) void this.push(chain);
    this.timer = setInterval(() => {
      swim.tick(Date.now());
      this.flush();
      this.decide();
    }, this.options.decideEveryMs ?? 5);
  }

  private flush(): void {
    for (const d of this.swim?.drain() ?? []) {
      const at = d.address.lastIndexOf(':');
      this.udp.send(encodeGossip(this.options.cluster, this.options.secret, d.message), Number(d.address.slice(at + 1)), d.address.slice(0, at));
    }
  }

  /** The detector's view of every managed node. */
  membership(): { node: string; address: string; state: MemberState }[] {
    return this.nodes.map((n) => ({ ...n, state: this.swim?.state(n.node) ?? 'alive' }));
  }

  /** Where a document lives: its chain and that chain's head. */
  headOf(doc: string): { chain: string; node: string; address: string } {
    const chain = chainOf(doc, [...this.configs.keys()]);
    const head = (this.configs.get(chain) as ChainConfig).members[0];
    assert(head !== undefined, `chain ${chain} has no members`);
    return { chain, node: head.node, address: head.address };
  }

  private decide(): void {
    if (this.stopped || this.swim === undefined) return;
    const states = this.membership();
    const dead = new Set(states.filter((m) => m.state === 'dead').map((m) => m.node));
    const live = states.filter((m) => m.state !== 'dead').map((m) => ({ node: m.node, address: m.address }));
    const decisions = plan([...this.configs.values()].filter((c) => !this.pushing.has(c.chain)), { live, dead }, this.options.k, this.caughtUp);
    for (const { config, why } of decisions) {
      const old = this.configs.get(config.chain) as ChainConfig;
      this.configs.set(config.chain, config);
      this.acked.set(config.chain, new Set());
      this.log(`${config.chain} epoch ${config.epoch}: ${config.members.map((m) => m.node).join(' > ')} (${why})`);
      this.options.onEvent?.({ kind: 'configured', at: Date.now(), config, why });
      const removed = old.members.filter((m) => !config.members.some((n) => n.node === m.node) && !dead.has(m.node));
      void this.push(config.chain, removed);
    }
    const now = Date.now();
    if (now - this.lastRetry > 300) {
      this.lastRetry = now;
      for (const [chain, config] of this.configs) {
        const acked = this.acked.get(chain) ?? new Set<string>();
        if (!this.pushing.has(chain) && config.members.some((m) => !acked.has(m.node) && !dead.has(m.node))) void this.push(chain);
      }
      void this.pollJoiners();
    }
  }

  /** Pushes a chain's configuration to its live members (and to removed nodes, to fence them). */
  private async push(chain: string, extra: readonly NodeAddress[] = []): Promise<void> {
    if (this.pushing.has(chain)) return;
    this.pushing.add(chain);
    try {
      const config = this.configs.get(chain) as ChainConfig;
      const acked = this.acked.get(chain) as Set<string>;
      const targets = [...config.members.filter((m) => !acked.has(m.node) && this.swim?.state(m.node) !== 'dead'), ...extra];
      await Promise.all(
        targets.map(async (t) => {
          try {
            await configureNode(t.address, config, this.clientOptions);
            if (this.configs.get(chain)?.epoch === config.epoch) acked.add(t.node);
          } catch (error) {
            this.log(`push of ${chain} epoch ${config.epoch} to ${t.node} failed: ${(error as Error).message}`);
          }
        }),
      );
    } finally {
      this.pushing.delete(chain);
    }
  }

  /** Asks members that joined for their caughtUpEpoch. */
  private async pollJoiners(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const asks: Promise<void>[] = [];
      for (const [chain, config] of this.configs) {
        for (const m of config.members) {
          if (m.sinceEpoch <= 1 || (this.caughtUp.get(chain)?.get(m.node) ?? 0) >= m.sinceEpoch || this.swim?.state(m.node) === 'dead') continue;
          asks.push(
            nodeStatus(m.address, this.clientOptions).then(
              (st) => {
                const c = st.chains.find((x) => x.chain === chain);
                if (c === undefined) return;
                const map = this.caughtUp.get(chain) ?? new Map<string, number>();
                map.set(m.node, Math.max(map.get(m.node) ?? 0, c.caughtUpEpoch));
                this.caughtUp.set(chain, map);
              },
              () => {},
            ),
          );
        }
      }
      await Promise.all(asks);
    } finally {
      this.polling = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await new Promise<void>((resolve) => this.udp.close(() => resolve()));
  }
}
