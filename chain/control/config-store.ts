// The configuration store: the one authority that orders each chain's configurations (the
// chain-replication paper's master, replicated). Managers write through compare-and-swap on
// (chain, epoch), so of two managers that decide from the same epoch only one succeeds, and a
// restarted manager reads where the chain stands instead of guessing from whichever nodes it
// reaches. Nodes that can reach the store accept a pushed configuration only as the store
// holds it (driver.ts), so a push that went around the store (a deposed leader, an old tool)
// changes nothing.
//
// Written once, callback-based, like Net and Clock, with three implementations:
//   etcd-store.ts      etcd (a real consensus service): one key per chain under a cluster
//                      prefix, every change a transaction; leadership by etcd's election API;
//   embedded-store.ts  the default for one machine: a file owned by the single manager
//                      process, fsynced before a configuration is announced;
//   simulations/       a linearizable in-memory store with faults (slow, unreachable, an
//                      answer lost after the write committed).

import { checkConfig, type ChainConfig } from '../core/config.ts';

export interface StoreError {
  /** store_unreachable, store_timeout (the outcome of a write is unknown), store_error. */
  readonly code: string;
  readonly message: string;
  /** A write may or may not have committed: re-read before deciding again. */
  readonly unknownOutcome: boolean;
}

export interface SwapResult {
  /** False: the stored configuration was not the expected one (or this writer no longer leads). */
  readonly swapped: boolean;
  /** What the store holds for the chain after the call. */
  readonly current: ChainConfig | undefined;
}

export type Done<T> = (error: StoreError | undefined, value: T | undefined) => void;

export interface LeadershipEvents {
  /** This candidate leads now: it may write (its writes are fenced by its leadership). */
  elected(): void;
  /** It no longer leads (its lease ended, it resigned, the store told it): it must stop acting. */
  deposed(why: string): void;
}

export interface Leadership {
  readonly leading: boolean;
  /** Gives the leadership up at once (a clean stop), so a standby takes over without waiting for the lease. */
  resign(): void;
}

export interface ConfigStore {
  /** For logs and status: "etcd", "embedded" or "simulated". */
  readonly kind: string;
  /** Every chain's configuration, as of one linearizable read. */
  list(done: Done<ChainConfig[]>): void;
  /** One chain's configuration (linearizable); undefined when none is stored. */
  get(chain: string, done: Done<ChainConfig | undefined>): void;
  /**
   * Writes `next` only if the chain's stored configuration is `expected` (undefined: none is
   * stored) and, for a store client that campaigned, only while it leads. `next.epoch` must be
   * above `expected.epoch`. An error with unknownOutcome means the write may have committed.
   */
  swap(expected: ChainConfig | undefined, next: ChainConfig, done: Done<SwapResult>): void;
  /**
   * An unconditional write. The product never calls it: it exists so that the simulator's
   * planted bug write-without-cas can show what compare-and-swap prevents.
   */
  put(next: ChainConfig, done: Done<ChainConfig>): void;
  /** Calls `onChange` with every configuration written from now on (at least once each, in order per chain). */
  watch(onChange: (config: ChainConfig) => void): { cancel(): void };
  /** Campaigns for the leadership of this cluster's managers (one leader at a time). */
  campaign(candidate: string, events: LeadershipEvents): Leadership;
  close(): void;
}

/** The bytes a configuration is stored as: fixed key order, so equal configurations are equal bytes. */
export function encodeStoredConfig(config: ChainConfig): string {
  return JSON.stringify({
    chain: config.chain,
    epoch: config.epoch,
    members: config.members.map((m) => ({ node: m.node, address: m.address, sinceEpoch: m.sinceEpoch })),
  });
}

/** Reads a stored configuration back; the store is another process's input, so it is validated. */
export function decodeStoredConfig(text: string, chain?: string): ChainConfig | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `a stored configuration is not JSON: ${(error as Error).message}`;
  }
  if (typeof value !== 'object' || value === null) return 'a stored configuration is not an object';
  const v = value as { chain?: unknown; epoch?: unknown; members?: unknown };
  if (!Array.isArray(v.members)) return 'a stored configuration has no members array';
  const config: ChainConfig = {
    chain: v.chain as string,
    epoch: v.epoch as number,
    members: (v.members as { node?: unknown; address?: unknown; sinceEpoch?: unknown }[]).map((m) => ({
      node: m?.node as string,
      address: m?.address as string,
      sinceEpoch: m?.sinceEpoch as number,
    })),
  };
  const problem = checkConfig(config);
  if (problem !== undefined) return `a stored configuration is invalid: ${problem}`;
  if (chain !== undefined && config.chain !== chain) return `the configuration stored for chain ${chain} names chain ${config.chain}`;
  return config;
}

/** Same chain, epoch and members (in order, with addresses and sinceEpoch). */
export function sameConfig(a: ChainConfig | undefined, b: ChainConfig | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return encodeStoredConfig(a) === encodeStoredConfig(b);
}

export const storeError = (code: string, message: string, unknownOutcome = false): StoreError => ({ code, message, unknownOutcome });

/** Parses --config-store: "embedded" (default), "embedded:PATH" or "etcd://HOST:PORT[,HOST:PORT...][/PREFIX]". */
export function parseStoreUrl(url: string): { kind: 'embedded'; path?: string } | { kind: 'etcd'; endpoints: string[]; prefix: string } | string {
  if (url === 'embedded') return { kind: 'embedded' };
  if (url.startsWith('embedded:')) return { kind: 'embedded', path: url.slice('embedded:'.length) };
  const m = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (m === null) return `--config-store takes embedded, embedded:PATH or etcd://HOST:PORT[,HOST:PORT][/PREFIX], not ${JSON.stringify(url)}`;
  const endpoints = (m[1] as string).split(',').map((e) => e.trim());
  for (const e of endpoints) if (!/^[A-Za-z0-9.[\]:-]+:\d{1,5}$/.test(e)) return `etcd endpoint ${JSON.stringify(e)} is not HOST:PORT`;
  const prefix = m[2] === undefined || m[2] === '/' ? '/adama-chain' : (m[2] as string).replace(/\/$/, '');
  return { kind: 'etcd', endpoints: endpoints.map((e) => `http://${e}`), prefix };
}
