// The manager loop for tools (the CLI's local and reconfigure commands, the chaos runner, the
// benchmarks): external membership, TCP admin links, the system clock. Decisions and pushes
// are the loop's, the same code the cluster manager and the simulator run.

import type { ClientOptions } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import type { NodeAddress } from '../control/decisions.ts';
import { ManagerLoop } from '../control/manager-loop.ts';
import { systemClock } from '../runtime/system.ts';
import { TcpNet } from '../runtime/tcp-net.ts';

export interface ToolManagerOptions extends ClientOptions {
  readonly k: number;
  readonly nodes: readonly NodeAddress[];
  readonly caughtUp?: ReadonlyMap<string, ReadonlyMap<string, number>>;
  readonly log?: (line: string) => void;
}

/** A started manager loop that decides only when asked (remove, add) and pushes until acknowledged. */
export function toolManager(configs: readonly ChainConfig[], options: ToolManagerOptions): ManagerLoop {
  const loop = new ManagerLoop({ net: new TcpNet({ cluster: options.cluster, secret: options.secret, keys: options.keys, transport: options.transport }), clock: systemClock }, configs, {
    k: options.k,
    nodes: options.nodes,
    membership: 'external',
    cluster: options.cluster,
    // A tool loop does not gossip.
    secret: '',
    address: '',
    random: Math.random,
    requestTimeoutMs: options.requestTimeoutMs ?? 3_000,
    caughtUp: options.caughtUp,
    log: options.log,
  });
  loop.start();
  return loop;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()` holds; false after `timeoutMs`. */
export async function waitFor(done: () => boolean, timeoutMs: number, stepMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

/** Pushes one configuration (and fences `removed`) until every node acknowledged it or `timeoutMs` passed. */
export async function pushConfig(config: ChainConfig, removed: readonly NodeAddress[], options: ClientOptions, timeoutMs = 10_000): Promise<{ acked: string[]; missing: string[] }> {
  const nodes = [...config.members.map((m) => ({ node: m.node, address: m.address })), ...removed];
  const loop = toolManager([], { ...options, k: config.members.length, nodes });
  try {
    loop.install(config, 'pushed by a tool', removed);
    await waitFor(() => loop.acked(config.chain), timeoutMs);
    const missing = loop.unacked(config.chain);
    return { acked: nodes.map((n) => n.node).filter((n) => !missing.includes(n)), missing };
  } finally {
    loop.stop();
  }
}
