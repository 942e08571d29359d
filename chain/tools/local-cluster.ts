// A cluster of real node processes with failure detection and the automatic manager, for the
// failover benchmark and tests: start, load, kill, restart, and wait until healthy again.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChainSession } from '../client/session.ts';
import { AdminClient, chainInfo, tcpSession, type ClientOptions } from '../client/tcp.ts';
import { ClusterManager, type ClusterEvent } from '../control/cluster-manager.ts';
import { EmbeddedConfigStore } from '../control/embedded-store.ts';
import { catchingUp } from '../control/decisions.ts';
import { chainIds, chainOf } from '../control/placement.ts';
import { deriveKeyring, onlyRoles, type Transport } from '../runtime/credentials.ts';
import { spawnNode, type NodeProcess } from './processes.ts';

export interface LocalClusterOptions {
  readonly nodes: number;
  readonly chains: number;
  readonly k: number;
  /** The cluster secret: each process started gets only the role keys it needs, derived from it. */
  readonly secret: string;
  readonly transport?: Transport;
  readonly cluster?: string;
  readonly log?: (line: string) => void;
  /** Keep data here (kept after stop) instead of a temporary directory (removed after stop). */
  readonly dataDir?: string;
}

export class LocalCluster {
  readonly processes = new Map<string, NodeProcess>();
  private readonly ports = new Map<string, number>();

  private constructor(
    readonly options: LocalClusterOptions,
    readonly manager: ClusterManager,
    readonly dir: string,
    /** The manager's membership changes and configurations, in order. */
    readonly events: ClusterEvent[],
    private readonly store: EmbeddedConfigStore,
  ) {}

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const events: ClusterEvent[] = [];
    const cluster = options.cluster ?? 'local';
    const dir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'adama-cluster-'));
    // The embedded configuration store, in the data directory: a restart (SIGKILL included) continues at the next epoch.
    const store = EmbeddedConfigStore.open(path.join(dir, 'manager', 'config-store.json'));
    const manager = await ClusterManager.bind({
      cluster,
      secret: options.secret,
      transport: options.transport,
      store,
      chains: options.chains,
      k: options.k,
      log: options.log,
      onEvent: (e) => events.push(e),
    });
    const c = new LocalCluster(options, manager, dir, events, store);
    for (let i = 1; i <= options.nodes; i++) await c.startNode(`n${i}`);
    await manager.start([...c.processes.values()].map((p) => ({ node: p.id, address: p.address })));
    return c;
  }

  /** Credentials of the client role only (a proxy, a load generator): no configure, no full state. */
  get clientOptions(): ClientOptions {
    return this.roleOptions('client');
  }

  /** Credentials of the admin role only (status with states, the forward delay). */
  get adminOptions(): ClientOptions {
    return this.roleOptions('admin');
  }

  private roleOptions(role: 'client' | 'admin'): ClientOptions {
    const cluster = this.options.cluster ?? 'local';
    return { cluster, keys: onlyRoles(deriveKeyring(this.options.secret, cluster), [role]), transport: this.options.transport };
  }

  get addresses(): string[] {
    return [...this.processes.values()].map((p) => p.address);
  }

  /** Starts (or restarts, on its old port and data) node `id`. */
  async startNode(id: string): Promise<NodeProcess> {
    const p = await spawnNode({
      id,
      dataDir: path.join(this.dir, id),
      cluster: this.options.cluster ?? 'local',
      secret: this.options.secret,
      transport: this.options.transport,
      port: this.ports.get(id) ?? 0,
      gossipSeeds: [this.manager.seed],
      onLog: (line) => this.options.log?.(line),
    });
    this.ports.set(id, Number(p.address.split(':')[1]));
    this.processes.set(id, p);
    return p;
  }

  /** Sets every live node's forward delay (the demo's latency control). */
  async setForwardDelay(ms: number): Promise<void> {
    await Promise.all(
      this.addresses.map(async (address) => {
        const admin = await AdminClient.connect(address, { ...this.adminOptions, connectTimeoutMs: 500 }).catch(() => undefined);
        try {
          await admin?.control(ms);
        } finally {
          admin?.close();
        }
      }),
    );
  }

  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.processes.get(id)?.kill(signal);
  }

  /** A document name that lives on `chain`. */
  docOn(chain: string, prefix = 'doc'): string {
    const chains = chainIds(this.options.chains);
    for (let i = 0; ; i++) if (chainOf(`${prefix}-${i}`, chains) === chain) return `${prefix}-${i}`;
  }

  session(doc: string, clientId: string): ChainSession {
    return tcpSession({ ...this.clientOptions, addresses: this.addresses, chain: chainOf(doc, chainIds(this.options.chains)), clientId, submitTimeoutMs: 30_000 });
  }

  /**
   * Every chain has k members, all alive to the detector and at the manager's epoch, none
   * still catching up, and each head ready.
   */
  async healthy(): Promise<boolean> {
    const states = new Map(this.manager.membership().map((m) => [m.node, m.state]));
    for (const config of this.manager.configs.values()) {
      if (config.members.length < Math.min(this.options.k, this.options.nodes)) return false;
      if (config.members.some((m) => states.get(m.node) !== 'alive')) return false;
    }
    for (const config of this.manager.configs.values()) {
      const infos = await Promise.all(config.members.map((m) => chainInfo(m.address, config.chain, { ...this.adminOptions, connectTimeoutMs: 500, requestTimeoutMs: 1_000 }).catch(() => undefined)));
      const caughtUp = new Map<string, number>();
      for (const [i, m] of config.members.entries()) {
        const info = infos[i];
        if (info === undefined || info.epoch !== config.epoch || (i === 0 && !info.ready)) return false;
        caughtUp.set(m.node, info.caughtUpEpoch);
      }
      if (catchingUp(config, caughtUp).size > 0) return false;
    }
    return true;
  }

  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await this.healthy())) {
      if (Date.now() > deadline)
        throw new Error(
          `the cluster did not become healthy within ${timeoutMs} ms: ${JSON.stringify([...this.manager.configs.values()].map((c) => [c.chain, c.epoch, c.members.map((m) => m.node)]))} ${JSON.stringify(this.manager.membership())}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    await this.manager.stop();
    this.store.close();
    await Promise.all([...this.processes.values()].map((p) => p.kill('SIGKILL')));
    if (this.options.dataDir === undefined) rmSync(this.dir, { recursive: true, force: true });
  }
}
