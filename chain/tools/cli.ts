// adama-chain command line: `npm run chain -- <command> [options]`, `--help` on each.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { chainInfo, nodeStatus, type ClientOptions, type NodeStatus } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import type { ChainInfo } from '../core/frames.ts';
import { ClusterManager } from '../control/cluster-manager.ts';
import { addTail, catchingUp, initialConfig, removeNode } from '../control/decisions.ts';
import { ChainNode } from '../runtime/node.ts';
import { spawnNode, type NodeProcess } from './processes.ts';
import { pushConfig } from './reconfigure.ts';

const devSecret = 'adama-local-dev-secret';

const usage = `adama-chain: chain replication over LevelDB

usage: npm run chain -- <command> [options]    (or: tsx chain/tools/cli.ts <command> ...)

commands:
  node         start one node process
  local        start a local chain of k nodes as child processes and configure it
  cluster      start N nodes with C chains, failure detection and the automatic manager
  reconfigure  remove a node from a chain, or add one at its tail
  status       print the status of nodes

Every command takes --help. The cluster secret comes from ADAMA_CLUSTER_SECRET (or --secret);
without either, a fixed development secret is used and a warning is printed.`;

const common = {
  cluster: { type: 'string', default: 'local' },
  secret: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function secretOf(value: string | undefined): string {
  const secret = value ?? process.env.ADAMA_CLUSTER_SECRET;
  if (secret !== undefined && secret !== '') return secret;
  console.error('warning: no ADAMA_CLUSTER_SECRET set; using the development secret (anyone who has this code can join)');
  return devSecret;
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
                        these members: ID=HOST:PORT,ID=HOST:PORT (e.g. the cluster manager)`;

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
    },
    nodeHelp,
  );
  if (typeof o.id !== 'string') fail(`--id is required\n\n${nodeHelp}`);
  if (typeof o.data !== 'string') fail(`--data is required\n\n${nodeHelp}`);
  mkdirSync(o.data, { recursive: true });
  const limits = process.env.ADAMA_LIMITS === undefined ? undefined : (JSON.parse(process.env.ADAMA_LIMITS) as Record<string, number>);
  const node = await ChainNode.start({
    node: o.id,
    cluster: o.cluster as string,
    secret: secretOf(o.secret as string | undefined),
    dataDir: o.data,
    host: o.host as string,
    port: intOf(o.port, 'port'),
    syncWrites: o['no-sync'] !== true,
    forwardDelayMs: intOf(o['forward-delay-ms'], 'forward-delay-ms'),
    limits,
    log: (line) => console.error(`[${o.id}] ${line}`),
    gossip: typeof o['gossip-seeds'] === 'string' ? { seeds: seedsOf(o['gossip-seeds']) } : undefined,
  });
  console.log(JSON.stringify({ event: 'listening', node: o.id, address: node.address, pid: process.pid }));
  const stop = (): void => {
    void node.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
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
  const secret = secretOf(o.secret as string | undefined);
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
    processes.push(await spawnNode({ id, dataDir: path.resolve(o.data as string, id), cluster, secret, port: basePort === 0 ? 0 : basePort + i - 1, onLog: (line) => console.error(line) }));
  }
  const options: ClientOptions = { cluster, secret };
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

const reconfigureHelp = `usage: npm run chain -- reconfigure --nodes ADDR,ADDR,... (--remove ID | --add ID=ADDR) [--chain ID]

Reads the chain's newest configuration from the reachable nodes in --nodes, makes the next one
(removing a node, or adding one at the tail, which then catches up by state transfer) and pushes
it to every member (and to a removed node, to fence it).

  --nodes LIST    comma-separated addresses of current members (unreachable ones are skipped)
  --remove ID     remove node ID (head, middle or tail)
  --add ID=ADDR   add node ID, listening at ADDR, at the tail
  --chain ID      chain id (default c1)`;

async function runReconfigure(argv: string[]): Promise<void> {
  const o = parse(argv, { nodes: { type: 'string' }, remove: { type: 'string' }, add: { type: 'string' }, chain: { type: 'string', default: 'c1' } }, reconfigureHelp);
  if (typeof o.nodes !== 'string') fail(`--nodes is required\n\n${reconfigureHelp}`);
  if ((o.remove === undefined) === (o.add === undefined)) fail(`give exactly one of --remove and --add\n\n${reconfigureHelp}`);
  const options: ClientOptions = { cluster: o.cluster as string, secret: secretOf(o.secret as string | undefined), connectTimeoutMs: 1_000 };
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
  const options: ClientOptions = { cluster: o.cluster as string, secret: secretOf(o.secret as string | undefined), connectTimeoutMs: 1_000 };
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

Starts N node processes (data in DIR/n1 ... DIR/nN) and the automatic chain manager in this
process. Every node and the manager run the SWIM failure detector over UDP; the manager places
C chains of length K by rendezvous hashing, removes a node the detector declares dead from its
chains (a new epoch), and adds a node that comes back at the tail of short chains. Prints every
membership change and configuration; Ctrl-C stops everything.

  --nodes N              nodes (default 5)
  --chains C             chains (default N)
  --k K                  chain length (default 3)
  --data DIR             data directory (default ./data)
  --restart-after-ms MS  restart a node process that exits, after MS (default 0: leave it down)`;

async function runCluster(argv: string[]): Promise<void> {
  const o = parse(
    argv,
    {
      nodes: { type: 'string', default: '5' },
      chains: { type: 'string' },
      k: { type: 'string', default: '3' },
      data: { type: 'string', default: './data' },
      'restart-after-ms': { type: 'string', default: '0' },
    },
    clusterHelp,
  );
  const n = intOf(o.nodes, 'nodes', 1);
  const chains = o.chains === undefined ? n : intOf(o.chains, 'chains', 1);
  const k = intOf(o.k, 'k', 1);
  const restartAfterMs = intOf(o['restart-after-ms'], 'restart-after-ms');
  const secret = secretOf(o.secret as string | undefined);
  const cluster = o.cluster as string;
  const say = (line: string): void => console.log(`[${new Date().toISOString().slice(11, 23)}] ${line}`);
  const manager = await ClusterManager.bind({ cluster, secret, chains, k, log: say });
  const processes = new Map<string, NodeProcess>();
  let stopping = false;
  const start = async (id: string, port = 0): Promise<NodeProcess> => {
    const p = await spawnNode({ id, dataDir: path.resolve(o.data as string, id), cluster, secret, port, gossipSeeds: [manager.seed], onLog: (line) => console.error(line) });
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
    await manager.stop();
    await Promise.all([...processes.values()].map((p) => p.kill('SIGTERM')));
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  await manager.start([...processes.values()].map((p) => ({ node: p.id, address: p.address })));
  for (const c of manager.configs.values()) say(`${c.chain} epoch ${c.epoch}: ${c.members.map((m) => m.node).join(' > ')}`);
  console.log(JSON.stringify({ event: 'ready', manager: manager.address, chains, k, nodes: [...processes.values()].map((p) => ({ node: p.id, address: p.address, pid: p.child.pid })) }));
}

const commands: Record<string, (argv: string[]) => Promise<void>> = { node: runNode, local: runLocal, cluster: runCluster, reconfigure: runReconfigure, status: runStatus };

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
