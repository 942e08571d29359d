// adama-chain command line: `npm run chain -- <command> [options]`, `--help` on each.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { chainInfo, nodeStatus, type ClientOptions, type NodeStatus } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import type { ChainInfo } from '../core/frames.ts';
import { ClusterManager } from '../control/cluster-manager.ts';
import type { ConfigStore } from '../control/config-store.ts';
import { nodeConfigStore, openConfigStore } from '../control/open-store.ts';
import { reconfigureThroughStore } from '../control/operator.ts';
import { systemClock } from '../runtime/system.ts';
import { TcpNet } from '../runtime/tcp-net.ts';
import { addTail, catchingUp, initialConfig, removeNode } from '../control/decisions.ts';
import {
  CredentialError,
  checkClusterSecret,
  deriveKeyring,
  devClusterSecret,
  devSecretWarning,
  envName,
  type Keyring,
  type KeyRole,
  keyRoles,
  keysFromEnv,
  type Transport,
} from '../runtime/credentials.ts';
import { ChainNode } from '../runtime/node.ts';
import { freeUdpPort, spawnManager, spawnNode, type ManagerProcess, type NodeProcess } from './processes.ts';
import { pushConfig } from './reconfigure.ts';

const usage = `adama-chain: chain replication over LevelDB

usage: npm run chain -- <command> [options]    (or: tsx chain/tools/cli.ts <command> ...)

commands:
  node         start one node process
  manager      start one chain manager process (several may run on etcd: one leads)
  local        start a local chain of k nodes as child processes and configure it
  cluster      start N nodes with C chains, failure detection and the automatic manager(s)
  reconfigure  remove a node from a chain, or add one at its tail
  status       print the status of nodes
  keys         print the role keys derived from a cluster secret

Every command takes --help.

Credentials: one key per role (peer: node to node; admin: managers and operator tools; client:
proxies and clients; gossip: failure detection), from ADAMA_PEER_KEY, ADAMA_ADMIN_KEY,
ADAMA_CLIENT_KEY and ADAMA_GOSSIP_KEY, or all derived from one ADAMA_CLUSTER_SECRET (or
--secret). A node needs all four, a manager admin and gossip, status and reconfigure admin.
"keys" prints the keys of a cluster secret, one per role, to hand out. Without credentials a
command refuses to start; --dev runs on the public development secret, with a warning.
Node connections are TLS 1.3 with the role key as pre-shared key (--transport plain: no TLS,
for measuring its cost only).`;

const common = {
  cluster: { type: 'string', default: 'local' },
  secret: { type: 'string' },
  dev: { type: 'boolean', default: false },
  transport: { type: 'string', default: 'tls' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

type Values = Record<string, string | boolean | undefined>;

function transportOf(o: Values): Transport {
  if (o.transport !== 'tls' && o.transport !== 'plain') fail(`--transport is tls or plain, not ${JSON.stringify(o.transport)}`);
  return o.transport;
}

/** The credentials of a process that needs the keys of `roles` (from the environment, --secret, or --dev). */
function credentialsOf(o: Values, roles: readonly KeyRole[]): { cluster: string; keys: Keyring; transport: Transport } {
  const cluster = o.cluster as string;
  try {
    const keys = keysFromEnv(process.env, cluster, roles, { dev: o.dev === true, secret: o.secret as string | undefined, warn: (line) => console.error(line) });
    return { cluster, keys, transport: transportOf(o) };
  } catch (error) {
    if (error instanceof CredentialError) fail(error.message);
    throw error;
  }
}

/** The cluster secret of a command that starts nodes and managers itself (it hands each its own keys). */
function clusterSecretOf(o: Values): string {
  const secret = (o.secret as string | undefined) ?? process.env.ADAMA_CLUSTER_SECRET;
  if (secret === undefined || secret === '') {
    if (o.dev !== true)
      fail('this command starts nodes itself and needs the cluster secret: set ADAMA_CLUSTER_SECRET (for example: export ADAMA_CLUSTER_SECRET=$(openssl rand -base64 32)), or pass --dev');
    console.error(devSecretWarning);
    return devClusterSecret;
  }
  try {
    checkClusterSecret(secret, o.dev === true);
  } catch (error) {
    fail((error as Error).message);
  }
  return secret;
}

function fail(message: string): never {
  console.error(`error: ${message}`);
  process.exit(2);
}

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, help: string): Record<string, string | boolean | undefined> {
  let parsed: { values: Record<string, unknown> };
  try {
    parsed = parseArgs({ args: argv, options: { ...common, ...options }, allowPositionals: false, strict: true });
  } catch (error) {
    fail(`${(error as Error).message}\n\n${help}`);
  }
  if (parsed.values.help === true) {
    console.log(help);
    process.exit(0);
  }
  return parsed.values as Record<string, string | boolean | undefined>;
}

const intOf = (value: string | boolean | undefined, name: string, min = 0): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, not ${JSON.stringify(value)}`);
  return n;
};

// ---------------------------------------------------------------------------------------------

const nodeHelp = `usage: npm run chain -- node --id ID --data DIR [--port P] [--host H] [--cluster C] [--no-sync] [--forward-delay-ms MS] [--gossip-seeds LIST]

Starts one node. It recovers its LevelDB contents from DIR and waits for configurations from a
chain manager (the "local" and "reconfigure" commands). Its first stdout line is JSON:
{"event":"listening","node":ID,"address":"host:port"}. SIGTERM or SIGINT stop it cleanly.

  --id ID               node id ([A-Za-z0-9._:-], unique in the cluster)
  --data DIR            LevelDB directory (created if missing)
  --port P              TCP port (default 0: any free port)
  --host H              address to listen on (default 127.0.0.1)
  --cluster C           cluster id (default "local")
  --no-sync             write batches without fsync (benchmarks only: not durable)
  --forward-delay-ms MS delay every forward to the successor (to make the chain's latency visible)
  --gossip-seeds LIST   run the SWIM failure detector over UDP (same port number), starting from
                        these members: ID=HOST:PORT,ID=HOST:PORT (e.g. the cluster manager)
  --config-store URL    etcd://HOST:PORT[/PREFIX]: accept a pushed configuration only as etcd holds
                        it (default: trust the authenticated manager, as with the embedded store)`;

function seedsOf(list: string): { node: string; address: string }[] {
  return list.split(',').map((entry) => {
    const [node, address] = entry.trim().split('=');
    if (node === undefined || address === undefined || !/^[^:]+:\d+$/.test(address)) fail(`--gossip-seeds takes ID=HOST:PORT,..., not ${JSON.stringify(entry)}`);
    return { node, address };
  });
}

async function runNode(argv: string[]): Promise<void> {
  const o = parse(
    argv,
    {
      id: { type: 'string' },
      data: { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'no-sync': { type: 'boolean', default: false },
      'forward-delay-ms': { type: 'string', default: '0' },
      'gossip-seeds': { type: 'string' },
      'config-store': { type: 'string' },
    },
    nodeHelp,
  );
  if (typeof o.id !== 'string') fail(`--id is required\n\n${nodeHelp}`);
  if (typeof o.data !== 'string') fail(`--data is required\n\n${nodeHelp}`);
  mkdirSync(o.data, { recursive: true });
  const limits = process.env.ADAMA_LIMITS === undefined ? undefined : (JSON.parse(process.env.ADAMA_LIMITS) as Record<string, number>);
  const node = await ChainNode.start({
    node: o.id,
    ...credentialsOf(o, typeof o['gossip-seeds'] === 'string' ? ['peer', 'admin', 'client', 'gossip'] : ['peer', 'admin', 'client']),
    dataDir: o.data,
    host: o.host as string,
    port: intOf(o.port, 'port'),
    syncWrites: o['no-sync'] !== true,
    forwardDelayMs: intOf(o['forward-delay-ms'], 'forward-delay-ms'),
    limits,
    log: (line) => console.error(`[${o.id}] ${line}`),
    gossip: typeof o['gossip-seeds'] === 'string' ? { seeds: seedsOf(o['gossip-seeds']) } : undefined,
    configStore: storeOrFail(() => nodeConfigStore(o['config-store'] as string | undefined, { cluster: o.cluster as string, log: (line) => console.error(`[${o.id}] ${line}`) })),
  });
  console.log(JSON.stringify({ event: 'listening', node: o.id, address: node.address, pid: process.pid }));
  const stop = (): void => {
    void node.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function storeOrFail<T>(open: () => T): T {
  try {
    return open();
  } catch (error) {
    fail((error as Error).message);
  }
}

// ---------------------------------------------------------------------------------------------

const managerHelp = `usage: npm run chain -- manager --nodes ID=HOST:PORT,... [--config-store URL] [--name NAME] [--chains C] [--k K] [--port P] [--data DIR]

Runs one chain manager: the SWIM failure detector (UDP port P) and the manager loop over the
configuration store. On etcd several managers may run: one leads (etcd election), the others
stand by and take over within about a second of the leader's death. Prints its UDP address
as JSON ({"event":"listening",...}), then one JSON line per leadership change and
configuration. SIGTERM resigns the leadership and stops.

  --nodes LIST        the managed nodes, ID=HOST:PORT (their TCP addresses; SWIM uses the same ports)
  --config-store URL  embedded (default: DIR/manager/config-store.json, one manager only) or
                      etcd://HOST:PORT[,HOST:PORT][/PREFIX]
  --name NAME         this manager's name (default "manager"; unique among managers)
  --chains C          chains (default: one per node)
  --k K               chain length (default 3)
  --port P            UDP port of its failure detector (default 0: any)
  --data DIR          data directory of the embedded store (default ./data)`;

async function runManager(argv: string[]): Promise<void> {
  const o = parse(
    argv,
    {
      nodes: { type: 'string' },
      'config-store': { type: 'string', default: 'embedded' },
      name: { type: 'string', default: 'manager' },
      chains: { type: 'string' },
      k: { type: 'string', default: '3' },
      port: { type: 'string', default: '0' },
      data: { type: 'string', default: './data' },
    },
    managerHelp,
  );
  if (typeof o.nodes !== 'string') fail(`--nodes is required\n\n${managerHelp}`);
  const nodes = seedsOf(o.nodes);
  const cluster = o.cluster as string;
  const name = o.name as string;
  const store = storeOrFail(() => openConfigStore(o['config-store'] as string, { cluster, dataDir: path.resolve(o.data as string), log: (line) => console.error(`[${name}] ${line}`) }));
  const manager = await ClusterManager.bind({
    ...credentialsOf(o, ['admin', 'gossip']),
    store,
    name,
    chains: o.chains === undefined ? nodes.length : intOf(o.chains, 'chains', 1),
    k: intOf(o.k, 'k', 1),
    port: intOf(o.port, 'port'),
    log: (line) => console.error(`[${name}] ${line}`),
    onEvent: (e) =>
      console.log(
        JSON.stringify(
          e.kind === 'configured' ? { event: 'configured', at: e.at, chain: e.config.chain, epoch: e.config.epoch, members: e.config.members.map((m) => m.node), why: e.why } : { event: e.kind, ...e },
        ),
      ),
  });
  console.log(JSON.stringify({ event: 'listening', manager: name, address: manager.address, pid: process.pid, store: store.kind }));
  const stop = (): void => {
    void manager.stop().then(() => {
      store.close();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await manager.start(nodes);
}

// ---------------------------------------------------------------------------------------------

const localHelp = `usage: npm run chain -- local [--nodes K] [--chain ID] [--data DIR] [--base-port P] [--cluster C]

Starts K node processes (data in DIR/n1, DIR/n2, ...) and configures them as one chain, head
first. If the nodes already hold a configuration (a restart), it is re-issued with the next
epoch. Prints the nodes' addresses, then waits; Ctrl-C stops every node.

  --nodes K       chain length (default 3)
  --chain ID      chain id (default c1)
  --data DIR      data directory (default ./data)
  --base-port P   node i listens on P+i-1 (default 0: any free ports)`;

async function runLocal(argv: string[]): Promise<void> {
  const o = parse(
    argv,
    { nodes: { type: 'string', default: '3' }, chain: { type: 'string', default: 'c1' }, data: { type: 'string', default: './data' }, 'base-port': { type: 'string', default: '0' } },
    localHelp,
  );
  const k = intOf(o.nodes, 'nodes', 1);
  const basePort = intOf(o['base-port'], 'base-port');
  const secret = clusterSecretOf(o);
  const transport = transportOf(o);
  const cluster = o.cluster as string;
  const chain = o.chain as string;
  const processes: NodeProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(processes.map((p) => p.kill('SIGTERM')));
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  for (let i = 1; i <= k; i++) {
    const id = `n${i}`;
    processes.push(await spawnNode({ id, dataDir: path.resolve(o.data as string, id), cluster, secret, transport, port: basePort === 0 ? 0 : basePort + i - 1, onLog: (line) => console.error(line) }));
  }
  const options: ClientOptions = { cluster, secret, transport };
  const config = await startOrResume(
    chain,
    processes.map((p) => ({ node: p.id, address: p.address })),
    options,
  );
  const result = await pushConfig(config, [], options);
  if (result.missing.length > 0) fail(`configuring failed: ${result.missing.join(', ')} did not acknowledge epoch ${config.epoch}`);
  console.log(`chain ${chain} epoch ${config.epoch}: ${config.members.map((m) => `${m.node}@${m.address}`).join(' -> ')}`);
  console.log(JSON.stringify({ event: 'ready', chain, epoch: config.epoch, nodes: processes.map((p) => ({ node: p.id, address: p.address, pid: p.child.pid })) }));
  await Promise.race(processes.map((p) => p.exited));
  console.error('a node exited; stopping the others');
  await stopAll();
  process.exit(1);
}

/** A fresh configuration, or the stored one (new addresses, next epoch) after a restart. */
async function startOrResume(chain: string, nodes: { node: string; address: string }[], options: ClientOptions): Promise<ChainConfig> {
  const infos = await Promise.all(nodes.map((n) => chainInfo(n.address, chain, options).catch(() => undefined)));
  const stored = latestConfig(infos, chain);
  if (stored === undefined) return initialConfig(chain, nodes);
  const address = new Map(nodes.map((n) => [n.node, n.address]));
  const members = stored.members.filter((m) => address.has(m.node)).map((m) => ({ ...m, address: address.get(m.node) as string }));
  const epoch = stored.epoch + 1;
  for (const n of nodes) if (!members.some((m) => m.node === n.node)) members.push({ node: n.node, address: n.address, sinceEpoch: epoch });
  return { chain, epoch, members };
}

export function latestConfig(infos: readonly (ChainInfo | { chain: string; epoch: number; members: ChainInfo['members'] } | undefined)[], chain: string): ChainConfig | undefined {
  let best: ChainConfig | undefined;
  for (const c of infos) {
    if (c === undefined || c.chain !== chain || c.epoch === 0) continue;
    if (best === undefined || c.epoch > best.epoch) best = { chain, epoch: c.epoch, members: c.members };
  }
  return best;
}

// ---------------------------------------------------------------------------------------------

const reconfigureHelp = `usage: npm run chain -- reconfigure (--config-store etcd://... | --nodes ADDR,ADDR,...) (--remove ID | --add ID=ADDR) [--chain ID]

With --config-store: reads the chain's configuration from the store, makes the next one
(removing a node, or adding one at the tail, which then catches up by state transfer), writes it
with compare-and-swap on the epoch it read (so it cannot race a manager or another operator
into two configurations of one epoch), then pushes it to every member and to a removed node.
Without it (a chain run by \`local\`, no store): reads the newest configuration from the
reachable nodes in --nodes and pushes the next one.

  --config-store URL  etcd://HOST:PORT[/PREFIX] (the embedded store belongs to its manager process:
                      stop the manager, or let it decide)
  --nodes LIST    comma-separated addresses of current members (unreachable ones are skipped)
  --remove ID     remove node ID (head, middle or tail)
  --add ID=ADDR   add node ID, listening at ADDR, at the tail
  --chain ID      chain id (default c1)`;

async function runReconfigure(argv: string[]): Promise<void> {
  const o = parse(
    argv,
    { nodes: { type: 'string' }, remove: { type: 'string' }, add: { type: 'string' }, chain: { type: 'string', default: 'c1' }, 'config-store': { type: 'string' } },
    reconfigureHelp,
  );
  if ((o.remove === undefined) === (o.add === undefined)) fail(`give exactly one of --remove and --add\n\n${reconfigureHelp}`);
  if (typeof o['config-store'] === 'string') return reconfigureInStore(o);
  if (typeof o.nodes !== 'string') fail(`--nodes or --config-store is required\n\n${reconfigureHelp}`);
  const options: ClientOptions = { ...credentialsOf(o, ['admin']), connectTimeoutMs: 1_000 };
  const infos = (await Promise.all(o.nodes.split(',').map((a) => chainInfo(a.trim(), o.chain as string, options).catch(() => undefined)))).filter((s): s is ChainInfo => s !== undefined);
  const current = latestConfig(infos, o.chain as string);
  if (current === undefined) fail(`none of ${o.nodes} is reachable or holds chain ${o.chain}`);
  const caughtUp = new Map<string, number>();
  for (const c of infos) if (c.epoch === current.epoch) caughtUp.set(c.node, c.caughtUpEpoch);
  const joining = catchingUp(current, caughtUp);
  let next: ChainConfig;
  try {
    if (typeof o.remove === 'string') next = removeNode(current, o.remove, joining);
    else {
      const [id, address] = (o.add as string).split('=');
      if (id === undefined || address === undefined) fail('--add takes ID=HOST:PORT');
      next = addTail(current, { node: id, address }, joining);
    }
  } catch (error) {
    fail((error as Error).message);
  }
  const removed = current.members.filter((m) => !next.members.some((n) => n.node === m.node)).map((m) => ({ node: m.node, address: m.address }));
  const result = await pushConfig(next, removed, options);
  console.log(JSON.stringify({ chain: next.chain, epoch: next.epoch, members: next.members.map((m) => m.node), ...result }));
  if (next.members.some((m) => !result.acked.includes(m.node))) process.exit(1);
}

async function reconfigureInStore(o: Record<string, string | boolean | undefined>): Promise<void> {
  const url = o['config-store'] as string;
  if (!url.startsWith('etcd://')) fail('reconfigure --config-store takes etcd://...: the embedded store belongs to its manager process');
  const cluster = o.cluster as string;
  const store = storeOrFail(() => openConfigStore(url, { cluster, dataDir: '.' }));
  let add: { node: string; address: string } | undefined;
  if (typeof o.add === 'string') {
    const [id, address] = o.add.split('=');
    if (id === undefined || address === undefined) fail('--add takes ID=HOST:PORT');
    add = { node: id, address };
  }
  const request = { chain: o.chain as string, remove: o.remove as string | undefined, add };
  const credentials = credentialsOf(o, ['admin']);
  const options = { cluster, name: 'operator', requestTimeoutMs: 3_000 };
  await new Promise<void>((resolve) => {
    reconfigureThroughStore({ net: new TcpNet(credentials), clock: systemClock, store }, request, options, (error, result) => {
      store.close();
      if (error !== undefined || result === undefined) fail(error?.message ?? 'reconfigure failed');
      console.log(JSON.stringify({ chain: result.config.chain, epoch: result.config.epoch, members: result.config.members.map((m) => m.node), acked: result.acked, missing: result.missing }));
      if (result.missing.some((n) => result.config.members.some((m) => m.node === n))) process.exit(1);
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------------

const statusHelp = `usage: npm run chain -- status --nodes ADDR,ADDR,... [--state]

Prints each node's status as JSON lines: chains, epochs, roles, its failure detector's view of
the other members, and per document the applied seq, queue length and digests of state,
dedupe table and last delta (equal digests = equal replicas). --state includes the documents'
states. A summary (each chain's newest configuration, each node's view of the membership)
goes to stderr.`;

async function runStatus(argv: string[]): Promise<void> {
  const o = parse(argv, { nodes: { type: 'string' }, state: { type: 'boolean', default: false } }, statusHelp);
  if (typeof o.nodes !== 'string') fail(`--nodes is required\n\n${statusHelp}`);
  const options: ClientOptions = { ...credentialsOf(o, ['admin']), connectTimeoutMs: 1_000 };
  let unreachable = 0;
  const statuses: NodeStatus[] = [];
  for (const address of o.nodes.split(',')) {
    try {
      const st = await nodeStatus(address.trim(), options, { includeState: o.state === true, includeDigests: true });
      statuses.push(st);
      console.log(JSON.stringify(st));
    } catch (error) {
      unreachable++;
      console.log(JSON.stringify({ address, error: (error as Error).message }));
    }
  }
  if (statuses.length > 0) {
    // A summary for people: the newest configuration of each chain, and each node's view of the others.
    const chains = [...new Set(statuses.flatMap((st) => st.chains.map((c) => c.chain)))].sort();
    for (const chain of chains) {
      const c = latestConfig(
        statuses.flatMap((st) => st.chains),
        chain,
      );
      if (c !== undefined) console.error(`${chain} epoch ${c.epoch}: ${c.members.map((m) => m.node).join(' > ')}`);
    }
    for (const st of statuses) if (st.membership.length > 0) console.error(`${st.node} sees: ${st.membership.map((m) => `${m.node} ${m.state}`).join(', ')}`);
  }
  if (unreachable > 0) process.exit(1);
}

// ---------------------------------------------------------------------------------------------

const clusterHelp = `usage: npm run chain -- cluster [--nodes N] [--chains C] [--k K] [--data DIR] [--restart-after-ms MS] [--cluster ID]
                              [--config-store URL] [--managers M]

Starts N node processes (data in DIR/n1 ... DIR/nN) and the automatic chain manager. Every node
and the manager run the SWIM failure detector over UDP; the manager places C chains of length K
by rendezvous hashing, removes a node the detector declares dead from its chains (a new epoch),
and adds a node that comes back at the tail of short chains. Configurations live in the
configuration store: by default the embedded one (DIR/manager/config-store.json, fsynced before
any node hears of a configuration; the manager runs in this process), or etcd, where M manager
processes run and one leads. Prints every membership change and configuration; Ctrl-C stops
everything.

  --nodes N              nodes (default 5)
  --chains C             chains (default N)
  --k K                  chain length (default 3)
  --data DIR             data directory (default ./data)
  --restart-after-ms MS  restart a node process that exits, after MS (default 0: leave it down)
  --config-store URL     embedded (default) or etcd://HOST:PORT[,HOST:PORT][/PREFIX]
  --managers M           manager processes (default 1; more than 1 needs etcd)`;

async function runCluster(argv: string[]): Promise<void> {
  const o = parse(
    argv,
    {
      nodes: { type: 'string', default: '5' },
      chains: { type: 'string' },
      k: { type: 'string', default: '3' },
      data: { type: 'string', default: './data' },
      'restart-after-ms': { type: 'string', default: '0' },
      'config-store': { type: 'string', default: 'embedded' },
      managers: { type: 'string', default: '1' },
    },
    clusterHelp,
  );
  const storeUrl = o['config-store'] as string;
  const managerCount = intOf(o.managers, 'managers', 1);
  const etcd = storeUrl.startsWith('etcd://');
  if (!etcd && managerCount > 1) fail('--managers above 1 needs --config-store etcd://...: the embedded store belongs to one manager process');
  const n = intOf(o.nodes, 'nodes', 1);
  const chains = o.chains === undefined ? n : intOf(o.chains, 'chains', 1);
  const k = intOf(o.k, 'k', 1);
  const restartAfterMs = intOf(o['restart-after-ms'], 'restart-after-ms');
  const secret = clusterSecretOf(o);
  const transport = transportOf(o);
  const cluster = o.cluster as string;
  const say = (line: string): void => console.log(`[${new Date().toISOString().slice(11, 23)}] ${line}`);
  const dataDir = path.resolve(o.data as string);
  // With etcd the managers are processes of their own (so one can die alone); their UDP ports are chosen first, as the nodes' gossip seeds.
  let inProcess: { manager: ClusterManager; store: ConfigStore } | undefined;
  const managerSeeds: { node: string; address: string }[] = [];
  if (etcd) {
    for (let i = 1; i <= managerCount; i++) managerSeeds.push({ node: i === 1 ? 'manager' : `manager${i}`, address: `127.0.0.1:${await freeUdpPort()}` });
  } else {
    const store = storeOrFail(() => openConfigStore(storeUrl, { cluster, dataDir }));
    const manager = await ClusterManager.bind({ cluster, secret, transport, store, chains, k, log: say });
    inProcess = { manager, store };
    managerSeeds.push(manager.seed);
  }
  const managers: ManagerProcess[] = [];
  const processes = new Map<string, NodeProcess>();
  let stopping = false;
  const start = async (id: string, port = 0): Promise<NodeProcess> => {
    const p = await spawnNode({
      id,
      dataDir: path.resolve(dataDir, id),
      cluster,
      secret,
      transport,
      port,
      gossipSeeds: managerSeeds,
      configStore: etcd ? storeUrl : undefined,
      onLog: (line) => console.error(line),
    });
    processes.set(id, p);
    void p.exited.then(() => {
      if (stopping || processes.get(id) !== p) return;
      say(`node ${id} (pid ${p.child.pid}) exited`);
      if (restartAfterMs > 0) setTimeout(() => void start(id, Number(p.address.split(':')[1])).then(() => say(`node ${id} restarted`)), restartAfterMs);
    });
    return p;
  };
  for (let i = 1; i <= n; i++) await start(`n${i}`);
  const stopAll = async (): Promise<void> => {
    stopping = true;
    await inProcess?.manager.stop();
    inProcess?.store.close();
    await Promise.all(managers.map((m) => m.kill('SIGTERM')));
    await Promise.all([...processes.values()].map((p) => p.kill('SIGTERM')));
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  const nodes = [...processes.values()].map((p) => ({ node: p.id, address: p.address }));
  if (inProcess !== undefined) await inProcess.manager.start(nodes);
  for (const seed of etcd ? managerSeeds : []) {
    const m = await spawnManager({
      name: seed.node,
      port: Number(seed.address.split(':')[1]),
      nodes,
      cluster,
      secret,
      transport,
      chains,
      k,
      configStore: storeUrl,
      onLog: (line) => console.error(line),
      onEvent: (line) => say(`${seed.node}: ${line}`),
    });
    managers.push(m);
    void m.exited.then((code) => !stopping && say(`${seed.node} (pid ${m.child.pid}) exited with ${code}`));
  }
  console.log(
    JSON.stringify({
      event: 'ready',
      store: etcd ? storeUrl : 'embedded',
      managers: managerSeeds.map((m) => m.address),
      chains,
      k,
      nodes: [...processes.values()].map((p) => ({ node: p.id, address: p.address, pid: p.child.pid })),
    }),
  );
}

const keysHelp = `usage: ADAMA_CLUSTER_SECRET=... npm run chain -- keys [--cluster C] [--role peer|admin|client|gossip]

Prints the role keys derived from the cluster secret (ADAMA_CLUSTER_SECRET or --secret) as
environment lines, ADAMA_<ROLE>_KEY=..., all four or only --role's. Hand each process only
what it needs: a node all four, a manager admin and gossip, a proxy or client the client key.`;

async function runKeys(argv: string[]): Promise<void> {
  const o = parse(argv, { role: { type: 'string' } }, keysHelp);
  const role = o.role as string | undefined;
  if (role !== undefined && !(keyRoles as readonly string[]).includes(role)) fail(`--role is one of ${keyRoles.join(', ')}`);
  const keys = deriveKeyring(clusterSecretOf(o), o.cluster as string);
  for (const r of keyRoles) if (role === undefined || role === r) console.log(`${envName(r)}=${keys[r]}`);
}

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  node: runNode,
  manager: runManager,
  local: runLocal,
  cluster: runCluster,
  reconfigure: runReconfigure,
  status: runStatus,
  keys: runKeys,
};

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname);
if (isMain) {
  const [command, ...rest] = process.argv.slice(2);
  if (command === undefined || command === '--help' || command === '-h') {
    console.log(usage);
    process.exit(command === undefined ? 2 : 0);
  }
  const run = commands[command];
  if (run === undefined) fail(`unknown command ${JSON.stringify(command)}\n\n${usage}`);
  run(rest).catch((error: unknown) => {
    console.error(`error: ${(error as Error).message}`);
    process.exit(1);
  });
}
