// A chain node as a real process: the driver (driver.ts) on TCP (tcp-net.ts), LevelDB
// (level-disk.ts), wall-clock timers and a UDP socket for gossip (system.ts). Everything
// between the sockets and the disk is the driver's, the same code the simulator runs.

import type { ConfigStore } from '../control/config-store.ts';
import type net from 'node:net';
import { assert } from '../../engine/assert.ts';
import { idPattern } from '../core/config.ts';
import type { ReplicaLimits } from '../core/replica.ts';
import type { SwimOptions } from '../control/swim.ts';
import { type Keyring, type KeyRole, keyFor, keyringOf, type Transport } from './credentials.ts';
import { Driver } from './driver.ts';
import { LevelDisk } from './level-disk.ts';
import { systemClock, UdpDatagrams } from './system.ts';
import { listenTcp, TcpNet } from './tcp-net.ts';
import { counters } from './connection.ts';

export { forwardDelayMsMax } from './driver.ts';

export interface NodeOptions {
  node: string;
  cluster: string;
  /** A cluster secret to derive every role key from (tests, tools), or the role keys: a node needs peer, admin, client (and gossip with gossip on). */
  secret?: string;
  keys?: Keyring;
  /** Default tls. */
  transport?: Transport;
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
  retryDelayMsMin?: number;
  retryDelayMsMax?: number;
  tickMs?: number;
  /** Extra delay on every forward to the successor (the demo's latency control). */
  forwardDelayMs?: number;
  log?: (line: string) => void;
  /** Failure detection over UDP on the same port number as TCP, starting from these seeds. Off when undefined. */
  gossip?: { seeds: { node: string; address: string }[]; swim?: Partial<SwimOptions>; tickMs?: number };
  /** The configuration store pushed configurations are checked against (etcd); absent: the node trusts its authenticated manager. */
  configStore?: ConfigStore;
}

export class ChainNode {
  private constructor(
    readonly driver: Driver,
    private readonly disk: LevelDisk,
    private readonly server: net.Server,
    private readonly udp: UdpDatagrams | undefined,
    private readonly configStore: ConfigStore | undefined,
  ) {}

  static async start(options: NodeOptions): Promise<ChainNode> {
    assert(idPattern.test(options.node), `node id ${JSON.stringify(options.node)} must match ${idPattern}`);
    const log = (line: string): void => options.log?.(line);
    const credentials = { cluster: options.cluster, secret: options.secret, keys: options.keys, transport: options.transport };
    const keys = keyringOf(credentials);
    // Fail before anything opens when a key this node needs is missing.
    const needed: KeyRole[] = options.gossip === undefined ? ['peer', 'admin', 'client'] : ['peer', 'admin', 'client', 'gossip'];
    for (const role of needed) keyFor(keys, role);
    const { disk, recovered } = await LevelDisk.open(options.dataDir, { sync: options.syncWrites ?? true });
    const host = options.host ?? '127.0.0.1';
    const connection = { cluster: options.cluster, keys, transport: options.transport, node: options.node, frameBytesMax: options.frameBytesMax };
    let driver: Driver | undefined;
    const early: Parameters<Driver['accept']>[0][] = [];
    const server = await listenTcp(host, options.port ?? 0, connection, ['peer', 'client', 'admin'], (link) => (driver === undefined ? early.push(link) : driver.accept(link)), log);
    const port = (server.address() as net.AddressInfo).port;
    const udp = options.gossip === undefined ? undefined : await UdpDatagrams.bind(host, port, log);
    driver = new Driver({ net: new TcpNet({ ...credentials, frameBytesMax: options.frameBytesMax, sendBufferBytesMax: 256 * 1024 * 1024 }), disk, clock: systemClock, datagrams: udp }, recovered, {
      node: options.node,
      address: `${host}:${port}`,
      cluster: options.cluster,
      secret: keys.gossip ?? '',
      limits: options.limits,
      connectionsMax: options.connectionsMax,
      retryDelayMsMin: options.retryDelayMsMin,
      retryDelayMsMax: options.retryDelayMsMax,
      tickMs: options.tickMs,
      forwardDelayMs: options.forwardDelayMs,
      gossip: options.gossip,
      configStore: options.configStore,
      random: Math.random,
      log,
      // An invariant of this node broke: exit at once with code 70 (the store is crash-safe;
      // recovery takes over) rather than run on with a broken invariant.
      onFatal: () => process.exit(70),
      statusExtra: () => ({ pid: process.pid, io: { ...counters } }),
    });
    driver.start();
    for (const link of early.splice(0)) driver.accept(link);
    log(`node ${options.node} listening on ${driver.address} (data ${options.dataDir}, chains: ${[...recovered.keys()].join(', ') || 'none yet'})`);
    return new ChainNode(driver, disk, server, udp, options.configStore);
  }

  get address(): string {
    return this.driver.address;
  }

  /** Closes every connection, writes what is pending, and closes the store. */
  async stop(): Promise<void> {
    if (this.stopping !== undefined) return this.stopping;
    this.stopping = (async () => {
      await new Promise<void>((resolve) => this.driver.shutdown(resolve));
      await this.udp?.close();
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
      await this.disk.close();
      this.configStore?.close();
    })();
    return this.stopping;
  }
  private stopping: Promise<void> | undefined;
}
