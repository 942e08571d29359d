// The clients as promises over real TCP, for tools, tests and benchmarks: ChainClient (the
// head API on one connection), AdminClient (configure, status, control), sessions, and the
// one-request helpers. Each is a thin wrapper of the callback classes the simulator runs.

import { randomBytes } from 'node:crypto';
import type { ChainConfig } from '../core/config.ts';
import type { ChainInfo, ViewUpdate } from '../core/frames.ts';
import { isLink, type Link } from '../runtime/io.ts';
import { systemClock } from '../runtime/system.ts';
import type { Credentials } from '../runtime/credentials.ts';
import { TcpNet } from '../runtime/tcp-net.ts';
import { chainIds, chainOf } from '../control/placement.ts';
import { findHead, LinkPool } from './pool.ts';
import { ChainError, AdminLink, HeadLink, type NodeStatus, type SubmitRequest, type SubmitResult, type SubscribeRequest } from './requests.ts';
import { ChainSession, type SessionOptions } from './session.ts';

export { ChainError } from './requests.ts';
export type { ChainStatus, DocStatus, NodeStatus, SubmitRequest, SubmitResult } from './requests.ts';

/** Credentials (a cluster secret, or the role keys; a client needs the client key, an admin the admin key) and bounds. */
export interface ClientOptions extends Credentials {
  /** Shown to the node as this connection's name. */
  name?: string;
  frameBytesMax?: number;
  /** A request with no answer after this long fails with `timeout` (outcome unknown). */
  requestTimeoutMs?: number;
  /** Requests waiting for an answer on one connection. */
  requestsInflightMax?: number;
  connectTimeoutMs?: number;
}

export function tcpNet(options: ClientOptions): TcpNet {
  return new TcpNet({ cluster: options.cluster, secret: options.secret, keys: options.keys, transport: options.transport, frameBytesMax: options.frameBytesMax });
}

function dial(address: string, role: 'client' | 'admin', options: ClientOptions): Promise<Link> {
  return new Promise((resolve, reject) => {
    tcpNet(options).dial(address, { role, name: options.name ?? `${role}-${randomBytes(4).toString('hex')}`, timeoutMs: options.connectTimeoutMs }, (result) => {
      if (isLink(result)) resolve(result);
      else reject(new ChainError(result.code, result.message, true));
    });
  });
}

const settle =
  <T>(resolve: (value: T) => void, reject: (error: Error) => void) =>
  (error: ChainError | undefined, value?: T) =>
    error !== undefined ? reject(error) : resolve(value as T);

/** The head API on one connection. */
export class ChainClient {
  private constructor(readonly head: HeadLink) {}

  static async connect(address: string, options: ClientOptions): Promise<ChainClient> {
    const link = await dial(address, 'client', options);
    return new ChainClient(new HeadLink(link, systemClock, options));
  }

  get isOpen(): boolean {
    return this.head.isOpen;
  }

  onClose(handler: () => void): void {
    this.head.onClose(handler);
  }

  close(): void {
    this.head.close();
  }

  submit(r: SubmitRequest): Promise<SubmitResult> {
    return new Promise((resolve, reject) => this.head.submit(r, settle(resolve, reject)));
  }

  /** Resolves with the first (full) view; later frames go to `onUpdate`, and the end (if any) to `onEnd`. */
  subscribe(r: SubscribeRequest, onUpdate: (update: ViewUpdate) => void, onEnd: (error: ChainError) => void = () => {}): Promise<ViewUpdate & { subscription: number }> {
    return new Promise((resolve, reject) => {
      let first = true;
      const id = this.head.subscribe(
        r,
        (update) => {
          if (first) {
            first = false;
            resolve({ ...update, subscription: id });
          } else onUpdate(update);
        },
        (error) => (first ? reject(error) : onEnd(error)),
      );
    });
  }

  unsubscribe(subscription: number, doc: string): void {
    this.head.unsubscribe(subscription, doc);
  }

  lookup(chain: string): Promise<ChainInfo> {
    return new Promise((resolve, reject) => this.head.lookup(chain, settle(resolve, reject)));
  }
}

/** The admin API on one connection. */
export class AdminClient {
  private constructor(private readonly admin: AdminLink) {}

  static async connect(address: string, options: ClientOptions): Promise<AdminClient> {
    const link = await dial(address, 'admin', { ...options, name: options.name ?? 'admin' });
    return new AdminClient(new AdminLink(link, systemClock, options));
  }

  close(): void {
    this.admin.close();
  }

  configure(config: ChainConfig): Promise<ChainInfo> {
    return new Promise((resolve, reject) => this.admin.configure(config, settle(resolve, reject)));
  }

  lookup(chain: string): Promise<ChainInfo> {
    return new Promise((resolve, reject) => this.admin.lookup(chain, settle(resolve, reject)));
  }

  /** One page of the status (docsMax documents after docsAfter; 0: the summary only). */
  status(query: { includeState?: boolean; includeDigests?: boolean; docsAfter?: string; docsMax?: number } = {}): Promise<NodeStatus> {
    return new Promise((resolve, reject) => this.admin.status(query, settle(resolve, reject)));
  }

  /** The whole status: every document of every chain, page by page. */
  async fullStatus(query: { includeState?: boolean; includeDigests?: boolean } = {}): Promise<NodeStatus> {
    const first = await this.status({ ...query, docsMax: query.includeState === true ? 100 : 1_000 });
    for (const chain of first.chains) {
      let page = chain;
      while (page.more && page.docs.length > 0) {
        const next = await this.status({ ...query, docsAfter: (page.docs[page.docs.length - 1] as { doc: string }).doc, docsMax: query.includeState === true ? 100 : 1_000 });
        const again = next.chains.find((c) => c.chain === chain.chain);
        if (again === undefined) break;
        chain.docs.push(...again.docs);
        page = again;
      }
      chain.more = false;
    }
    return first;
  }

  /** Sets runtime knobs (forwardDelayMs: -1 leaves it); returns the node's status. */
  control(forwardDelayMs: number): Promise<NodeStatus> {
    return new Promise((resolve, reject) => this.admin.control(forwardDelayMs, settle(resolve, reject)));
  }
}

/** One Configure over a fresh admin connection. */
export async function configureNode(address: string, config: ChainConfig, options: ClientOptions): Promise<ChainInfo> {
  const admin = await AdminClient.connect(address, options);
  try {
    return await admin.configure(config);
  } finally {
    admin.close();
  }
}

/** A node's whole status over a fresh admin connection (digests and states only when asked). */
export async function nodeStatus(address: string, options: ClientOptions, query: { includeState?: boolean; includeDigests?: boolean } = {}): Promise<NodeStatus> {
  const admin = await AdminClient.connect(address, options);
  try {
    return await admin.fullStatus(query);
  } finally {
    admin.close();
  }
}

/** What one node knows of one chain, over a fresh admin connection. */
export async function chainInfo(address: string, chain: string, options: ClientOptions): Promise<ChainInfo> {
  const admin = await AdminClient.connect(address, options);
  try {
    return await admin.lookup(chain);
  } finally {
    admin.close();
  }
}

/** A session over TCP with the system clock. */
export function tcpSession(options: ClientOptions & SessionOptions): ChainSession {
  return new ChainSession({ net: tcpNet(options), clock: systemClock }, { ...options, name: options.name ?? options.clientId });
}

/** Where `doc` lives, for any client: its chain, and that chain's head in the newest configuration a reachable node reports. */
export function lookupHead(doc: string, chains: number, addresses: readonly string[], options: ClientOptions): Promise<{ chain: string; node: string; address: string; epoch: number }> {
  const chain = chainOf(doc, chainIds(chains));
  const pool = new LinkPool(
    { net: tcpNet(options), clock: systemClock },
    { name: options.name ?? 'lookup', requestTimeoutMs: options.requestTimeoutMs ?? 1_000, connectTimeoutMs: options.connectTimeoutMs ?? 500 },
  );
  return new Promise((resolve, reject) =>
    findHead(pool, systemClock, addresses, chain, options.requestTimeoutMs ?? 1_000, (error, found) => {
      pool.close();
      if (error !== undefined || found === undefined) reject(error ?? new ChainError('unavailable', 'no head', true));
      else resolve({ chain, ...found });
    }),
  );
}
