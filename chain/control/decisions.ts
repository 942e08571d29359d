// The chain manager's decisions (the chain-replication paper's master): pure functions of
// the current configuration. The manager loop (manager-loop.ts) and every tool that
// reconfigures a chain call these, in real processes and in the simulator.
//
// Every change makes a new epoch. Nodes refuse frames from lower epochs, which fences a
// removed node that is still running.

import { assert } from '../../engine/assert.ts';
import { checkConfig, type ChainConfig } from '../core/config.ts';
import type { Member } from '../core/frames.ts';

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
    throw new Error(
      `cannot remove ${node} from chain ${config.chain}: ${rest.map((m) => m.node).join(', ')} ha${rest.length === 1 ? 's' : 've'} not caught up yet; retry once they have (see status caughtUpEpoch)`,
    );
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
