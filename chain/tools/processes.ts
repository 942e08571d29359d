// Chain nodes and managers as real child processes (`tsx chain/tools/cli.ts node|manager ...`),
// for the local-chain and cluster commands, the chaos runner and the process tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { deriveKeyring, keyEnv, onlyRoles, type Transport } from '../runtime/credentials.ts';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cli.ts');
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface NodeProcessOptions {
  id: string;
  dataDir: string;
  cluster: string;
  /** The cluster secret: the node gets its four role keys, derived from it, not the secret. */
  secret: string;
  transport?: Transport;
  /** 0: any free port (the address is read from the child's first line). */
  port?: number;
  syncWrites?: boolean;
  forwardDelayMs?: number;
  /** Run the failure detector, starting from these members. */
  gossipSeeds?: { node: string; address: string }[];
  /** The configuration store URL the node checks pushed configurations against (etcd://...). */
  configStore?: string;
  /** Extra environment (e.g. limits for tests). */
  env?: Record<string, string>;
  /** Extra arguments to node itself (the profiler: --cpu-prof is not allowed in NODE_OPTIONS). */
  nodeArgs?: string[];
  /** Lines the child logs, prefixed with its id. */
  onLog?: (line: string) => void;
  startTimeoutMs?: number;
}

export interface NodeProcess {
  readonly id: string;
  readonly address: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function spawnNode(options: NodeProcessOptions): Promise<NodeProcess> {
  const args = [cli, 'node', '--id', options.id, '--data', options.dataDir, '--cluster', options.cluster, '--port', String(options.port ?? 0), '--transport', options.transport ?? 'tls'];
  if (options.syncWrites === false) args.push('--no-sync');
  if (options.forwardDelayMs !== undefined) args.push('--forward-delay-ms', String(options.forwardDelayMs));
  if (options.gossipSeeds !== undefined) args.push('--gossip-seeds', options.gossipSeeds.map((s) => `${s.node}=${s.address}`).join(','));
  if (options.configStore !== undefined) args.push('--config-store', options.configStore);
  const p = await spawnCli(`node ${options.id}`, [...(options.nodeArgs ?? []), ...args], { ...options.env, ...keyEnv(deriveKeyring(options.secret, options.cluster)) }, options.startTimeoutMs, {
    stderr: (line) => options.onLog?.(`${options.id}! ${line}`),
    stdout: (line) => options.onLog?.(`${options.id}: ${line}`),
  });
  return { id: options.id, ...p };
}

/**
 * One process per node or manager (node --import tsx), so SIGKILL really kills it. Resolves
 * with its address once it printed {"event":"listening","address":...} as a line of stdout.
 */
async function spawnCli(
  what: string,
  args: string[],
  env: Record<string, string>,
  startTimeoutMs = 20_000,
  on: { stderr: (line: string) => void; stdout: (line: string, listening: boolean) => void },
): Promise<{ address: string; child: ChildProcess; exited: Promise<number | null>; kill(signal?: NodeJS.Signals): Promise<void> }> {
  // A child gets only the credentials given here, never the parent's (nor the viewer secret).
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^ADAMA_(.*_)?(SECRET|KEY)$/.test(name)));
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', on.stderr);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  let listening = false;
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${startTimeoutMs} ms`));
    }, startTimeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      if (!listening) reject(new Error(`${what} exited with ${code} before listening`));
    });
    lines.on('line', (line) => {
      on.stdout(line, listening);
      if (listening || !line.startsWith('{')) return;
      try {
        const event = JSON.parse(line) as { event?: string; address?: string };
        if (event.event === 'listening' && event.address !== undefined) {
          listening = true;
          clearTimeout(timer);
          resolve(event.address);
        }
      } catch {
        // a log line that only looks like JSON
      }
    });
  });
  return {
    address,
    child,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

/** A free UDP port on loopback (bound and released: the caller binds it next). */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

export interface ManagerProcessOptions {
  name: string;
  nodes: readonly { node: string; address: string }[];
  cluster: string;
  /** The cluster secret: the manager gets the admin and gossip keys derived from it, not the secret. */
  secret: string;
  transport?: Transport;
  chains: number;
  k: number;
  configStore: string;
  /** UDP port of its failure detector (0: any). */
  port?: number;
  dataDir?: string;
  onLog?: (line: string) => void;
  /** Each JSON line it prints after listening (leadership changes, configurations). */
  onEvent?: (line: string) => void;
  startTimeoutMs?: number;
}

export interface ManagerProcess {
  readonly name: string;
  readonly address: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `chain manager` as a child process (so a test or the chaos runner can SIGKILL it alone). */
export async function spawnManager(options: ManagerProcessOptions): Promise<ManagerProcess> {
  const args = [
    cli,
    'manager',
    '--name',
    options.name,
    '--cluster',
    options.cluster,
    '--nodes',
    options.nodes.map((n) => `${n.node}=${n.address}`).join(','),
    '--chains',
    String(options.chains),
    '--k',
    String(options.k),
    '--config-store',
    options.configStore,
    '--port',
    String(options.port ?? 0),
    '--transport',
    options.transport ?? 'tls',
  ];
  if (options.dataDir !== undefined) args.push('--data', options.dataDir);
  const p = await spawnCli(`manager ${options.name}`, args, keyEnv(onlyRoles(deriveKeyring(options.secret, options.cluster), ['admin', 'gossip'])), options.startTimeoutMs, {
    stderr: (line) => options.onLog?.(`${options.name}! ${line}`),
    // After its listening line, each line is an event (leadership, configurations).
    stdout: (line, listening) => (listening ? options.onEvent?.(line) : options.onLog?.(`${options.name}: ${line}`)),
  });
  return { name: options.name, ...p };
}
