// A throwaway single-member etcd for tests and local runs: /usr/bin/etcd (or $ETCD_BIN) on free
// loopback ports with a temporary data directory, fast heartbeats (50 ms, election 500 ms, so
// etcd's minimum lease TTL is 1 s), ready once /health answers true. The child is killed when
// this process exits, so a failed test run leaves no etcd behind.

import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const etcdMissing = 'etcd is not installed: apt-get install -y etcd-server (gives /usr/bin/etcd), or set ETCD_BIN';

export interface EtcdServer {
  /** "127.0.0.1:PORT" (the client port). */
  readonly endpoint: string;
  /** "etcd://127.0.0.1:PORT", as --config-store takes it. */
  readonly url: string;
  readonly pid: number;
  readonly dataDir: string;
  /** Sends `signal` (SIGKILL by default); waits for the exit unless the signal only pauses or resumes (SIGSTOP, SIGCONT, SIGTSTP). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, waits for the exit (SIGKILL after 5 s), removes the data directory if startEtcd made it. */
  stop(): Promise<void>;
}

export interface EtcdOptions {
  /** Default: a new temporary directory, removed by stop(). */
  dataDir?: string;
  heartbeatMs?: number;
  electionMs?: number;
  /** etcd's log lines (stderr and stdout). */
  log?: (line: string) => void;
}

/** The etcd binary to run, or undefined when it is not installed. */
export function etcdBinary(): string | undefined {
  const bin = process.env.ETCD_BIN !== undefined && process.env.ETCD_BIN !== '' ? process.env.ETCD_BIN : '/usr/bin/etcd';
  try {
    accessSync(bin, constants.X_OK);
    return bin;
  } catch {
    return undefined;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

const pausing = new Set<NodeJS.Signals>(['SIGSTOP', 'SIGCONT', 'SIGTSTP']);
const healthTimeoutMs = 10_000;
const tailLines = 20;

export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  const bin = etcdBinary();
  if (bin === undefined) throw new Error(etcdMissing);
  const madeDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'adama-etcd-'));
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    ...['--name', 'default', '--data-dir', dataDir, '--logger', 'zap', '--log-outputs', 'stderr'],
    ...['--listen-client-urls', client, '--advertise-client-urls', client],
    ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `default=${peer}`, '--initial-cluster-state', 'new'],
    ...['--heartbeat-interval', String(options.heartbeatMs ?? 50), '--election-timeout', String(options.electionMs ?? 500)],
  ];
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const onLine = (line: string): void => {
    tail.push(line);
    if (tail.length > tailLines) tail.shift();
    options.log?.(line);
  };
  if (child.stdout !== null) createInterface({ input: child.stdout }).on('line', onLine);
  if (child.stderr !== null) createInterface({ input: child.stderr }).on('line', onLine);
  let exitedCode: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedCode = signal ?? String(code);
      resolve();
    });
  });
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  const killOnExit = (): void => {
    child.kill('SIGKILL');
    if (madeDir) rmSync(dataDir, { recursive: true, force: true });
  };
  process.on('exit', killOnExit);
  const cleanup = (): void => {
    process.removeListener('exit', killOnExit);
    if (madeDir) rmSync(dataDir, { recursive: true, force: true });
  };
  const failure = async (why: string): Promise<Error> => {
    if (exitedCode === undefined && spawnError === undefined) {
      child.kill('SIGKILL');
      await exited;
    }
    cleanup();
    return new Error(`etcd (${bin}) ${why}${spawnError !== undefined ? `: ${spawnError.message}` : ''}; its last lines:\n${tail.join('\n')}`);
  };

  const deadline = Date.now() + healthTimeoutMs;
  for (;;) {
    if (spawnError !== undefined) throw await failure('could not be started');
    if (exitedCode !== undefined) throw await failure(`exited (${exitedCode}) before it was healthy`);
    if (Date.now() > deadline) throw await failure(`was not healthy within ${healthTimeoutMs} ms`);
    try {
      const response = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await response.json()) as { health?: unknown };
      if (body.health === 'true') break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  const endpoint = `127.0.0.1:${clientPort}`;
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (exitedCode !== undefined) return;
    child.kill(signal);
    if (!pausing.has(signal)) await exited;
  };
  return {
    endpoint,
    url: `etcd://${endpoint}`,
    pid: child.pid as number,
    dataDir,
    kill,
    async stop(): Promise<void> {
      if (exitedCode === undefined) {
        child.kill('SIGCONT'); // a paused etcd cannot handle SIGTERM
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      cleanup();
    },
  };
}
