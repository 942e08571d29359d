// The chain manager (the chain-replication paper's master): the only source of new
// configurations. Its decisions are pure functions of the current configuration, so the
// simulator can drive them; ChainManager pushes the result to the nodes over admin links.
//
// Every change makes a new epoch. Nodes refuse frames from lower epochs, which fences a
// removed node that is still running.

import { assert } from '../engine/assert.ts';
import { AdminClient, type ClientOptions, type NodeStatus } from './client.ts';
import { checkConfig } from './replica.ts';
import type { ChainConfig } from './store.ts';
import type { Member } from './wire.ts';

export interface NodeAddress {
  readonly node: string;
  readonly address: string;
}

export function initialConfig(chain: string, nodes: readonly NodeAddress[]): ChainConfig {
  const config: ChainConfig = { chain, epoch: 1, members: nodes.map((n) => ({ node: n.node, address: n.address, sinceEpoch: 1 })) };
  const problem = checkConfig(config);
  assert(problem === undefined, () => `initialConfig: ${problem}`);
  return config;
}

/**
 * Members that joined after the chain was created and have not yet reported holding their
 * predecessor's state (status `caughtUpEpoch` below their `sinceEpoch`). Such a member may lack
 * committed messages, so it must not be left as the only holder of the chain's state.
 */
export function catchingUp(config: ChainConfig, caughtUpEpochs: ReadonlyMap<string, number>): Set<string> {
  const out = new Set<string>();
  for (const m of config.members) if (m.sinceEpoch > 1 && (caughtUpEpochs.get(m.node) ?? 0) < m.sinceEpoch) out.add(m.node);
  return out;
}

/** Removes a node (head, middle or tail). The chain keeps at least one member that holds the committed state. */
export function removeNode(config: ChainConfig, node: string, joining: ReadonlySet<string> = new Set()): ChainConfig {
  if (!config.members.some((m) => m.node === node)) throw new Error(`node ${node} is not in chain ${config.chain} (epoch ${config.epoch})`);
  if (config.members.length === 1) throw new Error(`cannot remove ${node}: it is the last member of chain ${config.chain}`);
  const rest = config.members.filter((m) => m.node !== node);
  if (rest.every((m) => joining.has(m.node))) {
    throw new Error(`cannot remove ${node} from chain ${config.chain}: ${rest.map((m) => m.node).join(', ')} ha${rest.length === 1 ? 's' : 've'} not caught up yet; retry once they have (see status caughtUpEpoch)`);
  }
  return { chain: config.chain, epoch: config.epoch + 1, members: rest };
}

/** Adds a node at the tail; it catches up by state transfer from the current tail. One joiner at a time. */
export function addTail(config: ChainConfig, node: NodeAddress, joining: ReadonlySet<string> = new Set()): ChainConfig {
  if (config.members.some((m) => m.node === node.node)) throw new Error(`node ${node.node} is already in chain ${config.chain}`);
  const pending = config.members.find((m) => joining.has(m.node));
  if (pending !== undefined) throw new Error(`cannot add ${node.node} to chain ${config.chain}: ${pending.node} is still catching up; add one node at a time`);
  const epoch = config.epoch + 1;
  const member: Member = { node: node.node, address: node.address, sinceEpoch: epoch };
  const next = { chain: config.chain, epoch, members: [...config.members, member] };
  const problem = checkConfig(next);
  if (problem !== undefined) throw new Error(problem);
  return next;
}

export interface PushResult {
  readonly acked: string[];
  readonly failed: { node: string; error: string }[];
}

/** Holds the configuration of one chain and pushes each new one to its nodes. */
export class ChainManager {
  private current: ChainConfig;

  constructor(
    config: ChainConfig,
    private readonly options: ClientOptions & { pushTimeoutMs?: number },
  ) {
    this.current = config;
  }

  get config(): ChainConfig {
    return this.current;
  }

  /** Sends the current configuration to its members and to `extra` nodes (removed ones, to fence them). */
  async push(extra: readonly NodeAddress[] = []): Promise<PushResult> {
    const config = this.current;
    const targets = [...config.members.map((m) => ({ node: m.node, address: m.address })), ...extra];
    const acked: string[] = [];
    const failed: { node: string; error: string }[] = [];
    await Promise.all(
      targets.map(async (target) => {
        try {
          await configureNode(target.address, config, { ...this.options, requestTimeoutMs: this.options.pushTimeoutMs ?? 3_000, connectTimeoutMs: 1_000 });
          acked.push(target.node);
        } catch (error) {
          failed.push({ node: target.node, error: (error as Error).message });
        }
      }),
    );
    return { acked, failed };
  }

  /** Members still catching up, from their status (an unreachable joiner counts as catching up). */
  async joining(): Promise<Set<string>> {
    const config = this.current;
    const caughtUp = new Map<string, number>();
    await Promise.all(
      config.members.map(async (m) => {
        try {
          const status = await nodeStatus(m.address, { ...this.options, requestTimeoutMs: this.options.pushTimeoutMs ?? 3_000, connectTimeoutMs: 1_000 });
          const chain = status.chains.find((c) => c.chain === config.chain);
          if (chain !== undefined) caughtUp.set(m.node, chain.caughtUpEpoch);
        } catch {
          // unreachable: not known to be caught up
        }
      }),
    );
    return catchingUp(config, caughtUp);
  }

  /** Removes `node`; refuses (throws) when that would leave only members still catching up. */
  async remove(node: string): Promise<PushResult> {
    const removed = this.current.members.find((m) => m.node === node);
    this.current = removeNode(this.current, node, await this.joining());
    return this.push(removed === undefined ? [] : [{ node: removed.node, address: removed.address }]);
  }

  async add(node: NodeAddress): Promise<PushResult> {
    this.current = addTail(this.current, node, await this.joining());
    return this.push();
  }
}

/** One Configure over a fresh admin connection. */
export async function configureNode(address: string, config: ChainConfig, options: ClientOptions): Promise<NodeStatus> {
  const admin = await AdminClient.connect(address, options);
  try {
    return await admin.configure(config);
  } finally {
    admin.close();
  }
}

export async function nodeStatus(address: string, options: ClientOptions, includeState = false): Promise<NodeStatus> {
  const admin = await AdminClient.connect(address, options);
  try {
    return await admin.status(includeState);
  } finally {
    admin.close();
  }
}
