// Chain configurations (the chain-replication paper's: which nodes, in which order, at which
// epoch) and the ids that appear in keys.

import type { Member } from './frames.ts';

/** Ids that may appear in keys: chains, documents, nodes and clients. */
export const idPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** host:port, as nodes dial each other. */
const addressPattern = /^[A-Za-z0-9._:[\]-]{1,200}:\d{1,5}$/;

export interface ChainConfig {
  readonly chain: string;
  readonly epoch: number;
  /** Head first, tail last. */
  readonly members: readonly Member[];
}

/** A configuration's own consistency: non-empty, distinct nodes, valid ids, addresses and epochs. */
export function checkConfig(config: ChainConfig): string | undefined {
  if (typeof config.chain !== 'string' || !idPattern.test(config.chain)) return `chain id ${JSON.stringify(config.chain)} does not match ${idPattern}`;
  if (!Number.isSafeInteger(config.epoch) || config.epoch < 1) return 'epoch must be a positive integer';
  if (!Array.isArray(config.members) || config.members.length === 0) return 'a chain needs at least one member';
  if (config.members.length > membersMax) return `a chain has at most ${membersMax} members`;
  const nodes = new Set<string>();
  for (const m of config.members) {
    if (typeof m.node !== 'string' || !idPattern.test(m.node)) return `node id ${JSON.stringify(m.node)} does not match ${idPattern}`;
    if (nodes.has(m.node)) return `node ${m.node} appears twice`;
    nodes.add(m.node);
    if (typeof m.address !== 'string' || !addressPattern.test(m.address)) return `member ${m.node} has a bad address ${JSON.stringify(m.address)} (host:port)`;
    if (!Number.isSafeInteger(m.sinceEpoch) || m.sinceEpoch < 1 || m.sinceEpoch > config.epoch) return `member ${m.node} has a bad sinceEpoch`;
  }
  return undefined;
}

/** Bound on a chain's length. */
export const membersMax = 16;

export function sameMembers(a: readonly Member[], b: readonly Member[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as Member;
    const y = b[i] as Member;
    if (x.node !== y.node || x.address !== y.address || x.sinceEpoch !== y.sinceEpoch) return false;
  }
  return true;
}
