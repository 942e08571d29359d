// A cluster of real processes on a real etcd, for the manager-failover test, the chaos
// runner's --config-store etcd mode and the manager-failover benchmark: an etcd started on
// loopback with a temporary data dir, node processes that check pushed configurations against
// it, and several manager processes of which one leads. It records what each node says it
// runs (every "chain C epoch E: ..." line) and every leadership change, so callers can check
// that the configurations nodes accepted form one sequence of epochs and time a failover.

import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { nodeStatus, type ClientOptions } from '../client/tcp.ts';
import { deriveKeyring, onlyRoles } from '../runtime/credentials.ts';
import { type EtcdServer, startEtcd } from './etcd-server.ts';
import { freeUdpPort, type ManagerProcess, type NodeProcess, spawnManager, spawnNode } from './processes.ts';

export interface EtcdClusterOptions {
  readonly nodes: number;
  readonly managers: number;
  readonly chains: number;
  readonly k: number;
  readonly secret: string;
  readonly cluster?: string;
  readonly log?: (line: string) => void;
}

export interface Accepted {
  readonly at: number;
  readonly node: string;
  readonly chain: string;
  readonly epoch: number;
  readonly members: string;
}

export interface LeadershipChange {
  readonly at: number;
  readonly manager: string;
  readonly leading: boolean;
}

const acceptedLine = /\] chain (\S+) epoch (\d+): (.*) \(this node: \w+\)$/;

export class EtcdCluster {
  readonly nodes = new Map<string, NodeProcess>();
  readonly managers = new Map<string, ManagerProcess>();
  readonly accepted: Accepted[] = [];
  readonly leadership: LeadershipChange[] = [];
  private readonly seeds: { node: string; address: string }[] = [];
  private readonly nodePorts = new Map<string, number>();
  private stopping = false;

  private constructor(
    readonly options: EtcdClusterOptions,
    readonly etcd: EtcdServer,
    readonly dir: string,
  ) {}

  static async start(options: EtcdClusterOptions): Promise<EtcdCluster> {
    const etcd = await startEtcd({ log: options.log });
    const c = new EtcdCluster(options, etcd, mkdtempSync(path.join(tmpdir(), 'adama-etcd-cluster-')));
    try {
      for (let i = 1; i <= options.managers; i++) c.seeds.push({ node: `manager${i}`, address: `127.0.0.1:${await freeUdpPort()}` });
      for (let i = 1; i <= options.nodes; i++) await c.startNode(`n${i}`);
      for (const seed of c.seeds) await c.startManager(seed.node);
    } catch (error) {
      await c.stop();
      throw error;
    }
    return c;
  }

  get cluster(): string {
    return this.options.cluster ?? 'local';
  }

  /** Credentials of the client role only. */
  get clientOptions(): ClientOptions {
    return { cluster: this.cluster, keys: onlyRoles(deriveKeyring(this.options.secret, this.cluster), ['client']) };
  }

  /** Credentials of the admin role only (status). */
  get adminOptions(): ClientOptions {
    return { cluster: this.cluster, keys: onlyRoles(deriveKeyring(this.options.secret, this.cluster), ['admin']) };
  }

  get addresses(): string[] {
    return [...this.nodes.values()].map((p) => p.address);
  }

  /** Starts (or restarts, on its old port and data) node `id`. */
  async startNode(id: string): Promise<NodeProcess> {
    const p = await spawnNode({
      id,
      dataDir: path.join(this.dir, id),
      cluster: this.cluster,
      secret: this.options.secret,
      port: this.nodePorts.get(id) ?? 0,
      gossipSeeds: this.seeds,
      configStore: this.etcd.url,
      onLog: (line) => {
        const m = acceptedLine.exec(line);
        if (m !== null) this.accepted.push({ at: Date.now(), node: id, chain: m[1] as string, epoch: Number(m[2]), members: m[3] as string });
        this.options.log?.(line);
      },
    });
    this.nodePorts.set(id, Number(p.address.split(':')[1]));
    this.nodes.set(id, p);
    return p;
  }

  /** Starts (or restarts, with no memory) manager `name`. */
  async startManager(name: string): Promise<ManagerProcess> {
    const seed = this.seeds.find((s) => s.node === name);
    if (seed === undefined) throw new Error(`no manager ${name}`);
    const m = await spawnManager({
      name,
      port: Number(seed.address.split(':')[1]),
      nodes: [...this.nodes.values()].map((p) => ({ node: p.id, address: p.address })),
      cluster: this.cluster,
      secret: this.options.secret,
      chains: this.options.chains,
      k: this.options.k,
      configStore: this.etcd.url,
      onLog: (line) => this.options.log?.(line),
      onEvent: (line) => {
        try {
          const e = JSON.parse(line) as { event?: string; at?: number; manager?: string; leading?: boolean };
          if (e.event === 'leadership') this.leadership.push({ at: e.at as number, manager: e.manager as string, leading: e.leading === true });
        } catch {
          // not an event
        }
        this.options.log?.(`${name}: ${line}`);
      },
    });
    this.managers.set(name, m);
    // A restarted manager starts as a standby (its old incarnation's leadership is gone).
    this.leadership.push({ at: Date.now(), manager: name, leading: false });
    return m;
  }

  /** The manager that said last that it leads and still runs. */
  leader(): string | undefined {
    const state = new Map<string, boolean>();
    for (const l of this.leadership) state.set(l.manager, l.leading);
    for (const [name, leading] of state) {
      const m = this.managers.get(name);
      if (leading && m !== undefined && m.child.exitCode === null && m.child.signalCode === null) return name;
    }
    return undefined;
  }

  /** Waits until a manager other than `not` says it leads; when it said so (its clock), or undefined after `timeoutMs`. */
  async waitForLeader(timeoutMs: number, not?: string, since = 0): Promise<{ manager: string; at: number } | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = this.leadership.find((e) => e.leading && e.manager !== not && e.at >= since && this.managers.get(e.manager)?.child.exitCode === null);
      if (l !== undefined) return { manager: l.manager, at: l.at };
      if (Date.now() > deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Every chain has k members that all run its newest epoch (as the nodes report it). */
  async healthy(): Promise<boolean> {
    const statuses = (await Promise.all(this.addresses.map((a) => nodeStatus(a, this.adminOptions).catch(() => undefined)))).filter((s) => s !== undefined);
    const newest = new Map<string, { epoch: number; members: string[] }>();
    for (const st of statuses) for (const c of st.chains) if (c.epoch > (newest.get(c.chain)?.epoch ?? 0)) newest.set(c.chain, { epoch: c.epoch, members: c.members.map((m) => m.node) });
    if (newest.size < this.options.chains) return false;
    for (const [chain, { epoch, members }] of newest) {
      if (members.length < Math.min(this.options.k, this.nodes.size)) return false;
      for (const m of members) {
        const c = statuses.find((s) => s.node === m)?.chains.find((x) => x.chain === chain);
        if (c === undefined || c.epoch !== epoch || !c.synced) return false;
      }
    }
    return true;
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await this.healthy())) {
      if (Date.now() > deadline) throw new Error(`the cluster did not become healthy within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * The configurations nodes accepted, checked: per chain and epoch one member list. Returns
   * the conflicts found (empty: one sequence of epochs).
   */
  conflicts(): string[] {
    const seen = new Map<string, Accepted>();
    const out: string[] = [];
    for (const a of this.accepted) {
      const key = `${a.chain}@${a.epoch}`;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, a);
      else if (first.members !== a.members) out.push(`${a.node} ran epoch ${a.epoch} of ${a.chain} = ${a.members}, but ${first.node} ran it as ${first.members}`);
    }
    return out;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await Promise.all([...this.managers.values()].map((m) => m.kill('SIGKILL')));
    await Promise.all([...this.nodes.values()].map((p) => p.kill('SIGKILL')));
    await this.etcd.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
