// Placement by rendezvous (highest-random-weight) hashing, and the chain manager's automatic
// decisions as a pure function of (membership, current configurations).
//
// - A cluster has C chains (c1..cC) of length k over N nodes. Chain c's preferred members are
//   the k nodes with the highest weight(c, node), head first, so each node sits in several
//   chains at different positions (as in FAWN-KV) and heads and tails spread over the nodes.
// - A document lives on the chain with the highest weight(doc, chain). The chain count is
//   fixed, so documents never move; membership changes move only the chains of the node that
//   changed.

import { createHash } from 'node:crypto';
import type { ChainConfig } from '../core/config.ts';
import { addTail, catchingUp, initialConfig, removeNode, type NodeAddress } from './decisions.ts';

/** A 52-bit weight for (key, node): the first bytes of sha256(key \0 node). */
export function weight(key: string, node: string): number {
  const digest = createHash('sha256').update(key).update('\0').update(node).digest();
  return digest.readUIntBE(0, 6) * 16 + (digest[6] as number) / 16;
}

export function chainIds(chains: number): string[] {
  return Array.from({ length: chains }, (_, i) => `c${i + 1}`);
}

/** The chain that holds `doc`. */
export function chainOf(doc: string, chains: readonly string[]): string {
  let best = chains[0] as string;
  let bestWeight = -1;
  for (const chain of chains) {
    const w = weight(doc, chain);
    if (w > bestWeight) {
      best = chain;
      bestWeight = w;
    }
  }
  return best;
}

/** The nodes ranked for `chain`, highest weight first. */
export function ranked(chain: string, nodes: readonly string[]): string[] {
  return [...nodes].sort((a, b) => weight(chain, b) - weight(chain, a));
}

/** The k preferred members of `chain` among `nodes`, head first. */
export function preferred(chain: string, nodes: readonly string[], k: number): string[] {
  return ranked(chain, nodes).slice(0, k);
}

/** The initial configurations of a cluster: each chain's preferred members, epoch 1. */
export function initialPlacement(nodes: readonly NodeAddress[], chains: number, k: number): ChainConfig[] {
  const names = nodes.map((n) => n.node);
  const address = new Map(nodes.map((n) => [n.node, n.address]));
  return chainIds(chains).map((chain) =>
    initialConfig(
      chain,
      preferred(chain, names, Math.min(k, names.length)).map((node) => ({ node, address: address.get(node) as string })),
    ),
  );
}

export interface Membership {
  /** Nodes the failure detector does not hold dead, with their addresses. */
  readonly live: readonly NodeAddress[];
  /** Nodes the failure detector holds dead. */
  readonly dead: ReadonlySet<string>;
}

export interface Decision {
  readonly config: ChainConfig;
  readonly why: string;
}

/**
 * The manager's next configurations: for each chain, remove members held dead (never the last
 * member that holds the committed state), then, when the chain is shorter than k and nobody is
 * catching up, add the live non-member with the highest weight at the tail. Chains that need
 * nothing are left out. Pure: the simulator and the runtime call the same function.
 */
export function plan(configs: readonly ChainConfig[], membership: Membership, k: number, caughtUp: ReadonlyMap<string, ReadonlyMap<string, number>>): Decision[] {
  const decisions: Decision[] = [];
  const liveNames = membership.live.map((n) => n.node);
  for (const start of configs) {
    let config = start;
    const why: string[] = [];
    const joining = (c: ChainConfig): Set<string> => catchingUp(c, caughtUp.get(c.chain) ?? new Map());
    for (const member of start.members) {
      if (!membership.dead.has(member.node) || config.members.length <= 1) continue;
      const rest = config.members.filter((m) => m.node !== member.node);
      const j = joining(config);
      if (rest.every((m) => j.has(m.node))) continue; // only joiners would remain: wait for the dead one
      config = removeNode(config, member.node, j);
      why.push(`remove ${member.node} (dead)`);
    }
    if (config.members.length < k && joining(config).size === 0) {
      const candidate = ranked(config.chain, liveNames).find((node) => !config.members.some((m) => m.node === node));
      const address = membership.live.find((n) => n.node === candidate)?.address;
      if (candidate !== undefined && address !== undefined) {
        config = addTail(config, { node: candidate, address });
        why.push(`add ${candidate} at the tail`);
      }
    }
    if (config !== start) decisions.push({ config, why: why.join(', ') });
  }
  return decisions;
}
