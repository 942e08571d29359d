// Routing from the proxy to chain heads: documents map to chains by rendezvous hashing, each
// chain's head is found from the nodes' status and remembered, and there is one pooled TCP
// connection per head. Submissions retry through failovers with the same (clientId,
// clientSeq), so the chain's dedupe makes a resend exactly-once; the browser sees a delay.

import { ChainClient, ChainError, type ClientOptions, type SubmitResult } from '../chain/client.ts';
import { chainIds, chainOf, lookupHead } from '../chain/placement.ts';
import type { ViewUpdate } from '../chain/wire.ts';

export interface RouterOptions extends ClientOptions {
  /** Every node's address (any reachable one answers lookups). */
  readonly nodes: readonly string[];
  readonly chains: number;
  /** Give up on one message after this long (its outcome is then unknown). */
  readonly submitTimeoutMs?: number;
  readonly retryDelayMsMax?: number;
}

export class Router {
  private readonly pool = new Map<string, Promise<ChainClient>>();
  private readonly heads = new Map<string, string>();
  /** Per pooled connection, what its subscriptions do when it closes. */
  private readonly lostHandlers = new Map<ChainClient, Set<() => void>>();
  private readonly chainList: string[];
  private closed = false;

  constructor(readonly options: RouterOptions) {
    this.chainList = chainIds(options.chains);
  }

  chainOf(doc: string): string {
    return chainOf(doc, this.chainList);
  }

  /** The head's address for `chain`, looked up when unknown or after a failure. */
  private async head(chain: string, doc: string, refresh: boolean): Promise<string> {
    const known = this.heads.get(chain);
    if (known !== undefined && !refresh) return known;
    const found = await lookupHead(doc, this.options.chains, this.options.nodes, this.options);
    this.heads.set(chain, found.address);
    return found.address;
  }

  private client(address: string): Promise<ChainClient> {
    let p = this.pool.get(address);
    if (p === undefined) {
      p = ChainClient.connect(address, { ...this.options, name: 'proxy', connectTimeoutMs: 1_000 });
      this.pool.set(address, p);
      p.then(
        (c) =>
          // One close handler per pooled connection: it tells the subscriptions that used it.
          c.onClose(() => {
            if (this.pool.get(address) === p) this.pool.delete(address);
            const lost = this.lostHandlers.get(c);
            this.lostHandlers.delete(c);
            for (const run of lost ?? []) run();
          }),
        () => this.pool.get(address) === p && this.pool.delete(address),
      );
    }
    return p;
  }

  /** Runs `attempt` against the chain's head, following failovers until it succeeds, fails for good, or times out. */
  private async withHead<T>(chain: string, doc: string, attempt: (client: ChainClient) => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.options.submitTimeoutMs ?? 30_000);
    let delay = 10;
    let refresh = false;
    for (;;) {
      if (this.closed) throw new ChainError('closed', 'the proxy is shutting down', true);
      let lastCode = 'unavailable';
      try {
        const address = await this.head(chain, doc, refresh);
        return await attempt(await this.client(address));
      } catch (error) {
        const e = error instanceof ChainError ? error : new ChainError('connection_lost', (error as Error).message, true);
        lastCode = e.code;
        if (!e.retryable && e.code !== 'unknown_chain') throw e;
        if (e.code === 'not_head' && e.hint !== '') this.heads.set(chain, e.hint);
        else refresh = true;
      }
      if (Date.now() + delay > deadline) throw new ChainError('timeout', `no answer from chain ${chain} within ${this.options.submitTimeoutMs ?? 30_000} ms (last error ${lastCode}); the outcome is unknown`, true);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, this.options.retryDelayMsMax ?? 200);
    }
  }

  submit(r: { doc: string; docType: string; channel: string; payload: unknown; clientId: string; clientSeq: number; viewer: string }): Promise<SubmitResult> {
    const chain = this.chainOf(r.doc);
    return this.withHead(chain, r.doc, (client) => client.submit({ ...r, chain }));
  }

  /**
   * Subscribes `viewer` to `doc` at its head. `onUpdate` gets every view frame, the first one
   * full; when the subscription ends at the chain (a failover), it resubscribes and the next
   * frame is full again. Returns a function that ends the subscription.
   */
  subscribe(doc: string, docType: string, viewer: string, onUpdate: (update: ViewUpdate) => void, onError: (error: ChainError) => void): () => void {
    const chain = this.chainOf(doc);
    let active = true;
    let current: ChainClient | undefined;
    const lost = (): void => {
      current = undefined;
      if (active) setTimeout(start, 20);
    };
    const use = (client: ChainClient | undefined): void => {
      if (current !== undefined) this.lostHandlers.get(current)?.delete(lost);
      current = client;
      if (client === undefined) return;
      const set = this.lostHandlers.get(client) ?? new Set<() => void>();
      set.add(lost);
      this.lostHandlers.set(client, set);
    };
    const start = (): void => {
      if (!active) return;
      this.withHead(chain, doc, async (client) => {
        const first = await client.subscribe({ chain, doc, docType, viewer }, (u) => {
          if (!active) return;
          if (u.doc === '' && u.json === '') {
            // The chain ended it (the head changed): subscribe again at the new head.
            this.heads.delete(chain);
            setTimeout(start, 20);
            return;
          }
          onUpdate(u);
        });
        use(client);
        return first;
      }).then(
        (first) => active && onUpdate(first),
        (error: unknown) => active && onError(error instanceof ChainError ? error : new ChainError('unavailable', String(error), true)),
      );
    };
    start();
    return () => {
      active = false;
      current?.unsubscribe(doc, viewer);
      use(undefined);
    };
  }

  close(): void {
    this.closed = true;
    for (const p of this.pool.values()) p.then((c) => c.close(), () => {});
    this.pool.clear();
  }
}
