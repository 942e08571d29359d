// Chain nodes as real child processes (`tsx chain/tools/cli.ts node ...`), for the local-chain
// command, the chaos runner and the process tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cli.ts');
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface NodeProcessOptions {
  id: string;
  dataDir: string;
  cluster: string;
  secret: string;
  /** 0: any free port (the address is read from the child's first line). */
  port?: number;
  syncWrites?: boolean;
  forwardDelayMs?: number;
  /** Run the failure detector, starting from these members. */
  gossipSeeds?: { node: string; address: string }[];
  /** Extra environment (e.g. limits for tests). */
  env?: Record<string, string>;
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
  const args = [cli, 'node', '--id', options.id, '--data', options.dataDir, '--cluster', options.cluster, '--port', String(options.port ?? 0)];
  if (options.syncWrites === false) args.push('--no-sync');
  if (options.forwardDelayMs !== undefined) args.push('--forward-delay-ms', String(options.forwardDelayMs));
  if (options.gossipSeeds !== undefined) args.push('--gossip-seeds', options.gossipSeeds.map((s) => `${s.node}=${s.address}`).join(','));
  // One process per node (node --import tsx), so SIGKILL really kills the node.
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: root,
    env: { ...process.env, ...options.env, ADAMA_CLUSTER_SECRET: options.secret },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const errors = createInterface({ input: child.stderr as NodeJS.ReadableStream });
  errors.on('line', (line) => options.onLog?.(`${options.id}! ${line}`));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node ${options.id} did not start within ${options.startTimeoutMs ?? 20_000} ms`));
    }, options.startTimeoutMs ?? 20_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node ${options.id} exited with ${code} before listening`));
    });
    lines.on('line', (line) => {
      options.onLog?.(`${options.id}: ${line}`);
      if (line.startsWith('{')) {
        try {
          const event = JSON.parse(line) as { event?: string; address?: string };
          if (event.event === 'listening' && event.address !== undefined) {
            clearTimeout(timer);
            resolve(event.address);
          }
        } catch {
          // a log line that only looks like JSON
        }
      }
    });
  });
  return {
    id: options.id,
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
