// Routing from the proxy to chain heads, written against Net and Clock so the simulator runs
// it: documents map to chains by rendezvous hashing, each chain's head is found with a cheap
// lookup (every node is asked; the newest epoch wins) and remembered, and there is one pooled
// connection per head. Submissions retry through failovers with the same (clientId,
// clientSeq), so the chain's dedupe makes a resend exactly-once; the browser sees a delay.
//
// Subscriptions: each browser subscription is its own subscription at the head (tabs of one
// viewer never share one), so ending one ends nothing else. Its frames reach the browser in
// the order the head sent them, the full view first; when it ends at the head (a failover, a
// lost lease) the router subscribes again and the browser's next frame is a fresh full view.
// Cancelling ends it at the head at once, even before its full view arrived.

import { findHead, LinkPool } from '../chain/client/pool.ts';
import { ChainError, inputErrorCodes, type Done, type HeadLink, type RequestOptions, type SubmitRequest, type SubmitResult } from '../chain/client/requests.ts';
import type { ViewUpdate } from '../chain/core/frames.ts';
import { noBugs, type Bugs } from '../chain/core/planted.ts';
import { chainIds, chainOf } from '../chain/control/placement.ts';
import type { Clock, Net } from '../chain/runtime/io.ts';

export interface RouterOptions extends RequestOptions {
  /** Every node's address (any reachable one answers lookups). */
  readonly nodes: readonly string[];
  readonly chains: number;
  /** The proxy's name at the nodes. */
  readonly name?: string;
  /** Give up on one message after this long (its outcome is then unknown). */
  readonly submitTimeoutMs?: number;
  readonly retryDelayMsMax?: number;
  readonly lookupTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly bugs?: Bugs;
}

/** A submission as the proxy makes it: the router adds the chain. */
export type RouterSubmit = Omit<SubmitRequest, 'chain'>;

/**
 * Whether retrying `e` may help. Errors caused by the request itself (inputErrorCodes: a payload
 * that cannot be encoded, a lone surrogate, an oversized payload) are never retried, whatever
 * they say: resending the same input fails the same way, and must not churn the links.
 */
function worthRetrying(e: ChainError): boolean {
  if (inputErrorCodes.has(e.code)) return false;
  return e.retryable || e.code === 'unknown_chain';
}

/** Errors after which the head may have moved: look it up again. */
const rerouting = new Set(['connection_lost', 'connect_failed', 'connect_timeout', 'not_member', 'not_head', 'unknown_chain', 'unavailable', 'lease_expired', 'timeout']);

export class Router {
  private readonly pool: LinkPool;
  private readonly heads = new Map<string, string>();
  private readonly lookups = new Map<string, Done<string>[]>();
  private readonly chainList: string[];
  private readonly bugs: Bugs;
  private closed = false;
  /** Subscriptions open at heads, for reports and checks. */
  subscriptions = 0;
  /** Subscriptions the browser holds that have no live subscription at a head right now (being made again). */
  private readonly unsettled = new Set<object>();

  constructor(
    private readonly io: { readonly net: Net; readonly clock: Clock },
    readonly options: RouterOptions,
  ) {
    this.chainList = chainIds(options.chains);
    this.bugs = options.bugs ?? noBugs;
    this.pool = new LinkPool(io, {
      name: options.name ?? 'proxy',
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      requestsInflightMax: options.requestsInflightMax,
      connectTimeoutMs: options.connectTimeoutMs ?? 1_000,
    });
  }

  chainOf(doc: string): string {
    return chainOf(doc, this.chainList);
  }

  /** The head's address for `chain`, looked up when unknown or after a failure (concurrent lookups share one). */
  private head(chain: string, refresh: boolean, done: Done<string>): void {
    const known = this.heads.get(chain);
    if (known !== undefined && !refresh) return done(undefined, known);
    const waiting = this.lookups.get(chain);
    if (waiting !== undefined) {
      waiting.push(done);
      return;
    }
    this.lookups.set(chain, [done]);
    findHead(this.pool, this.io.clock, this.options.nodes, chain, this.options.lookupTimeoutMs ?? 1_000, (error, found) => {
      const callers = this.lookups.get(chain) ?? [];
      this.lookups.delete(chain);
      if (found !== undefined) this.heads.set(chain, found.address);
      for (const c of callers) c(error, found?.address);
    });
  }

  /** After a failure: where to go next. Returns whether to look the head up again. */
  private reroute(chain: string, e: ChainError): boolean {
    if (e.code === 'not_head' && e.hint !== '') {
      this.heads.set(chain, e.hint);
      return false;
    }
    return rerouting.has(e.code);
  }

  submit(r: RouterSubmit, done: Done<SubmitResult>): void {
    const chain = this.chainOf(r.doc);
    const clock = this.io.clock;
    const timeoutMs = this.options.submitTimeoutMs ?? 30_000;
    const deadline = clock.now() + timeoutMs;
    let delay = 10;
    let refresh = false;
    const attempt = (): void => {
      if (this.closed) return done(new ChainError('closed', 'the proxy is shutting down', true));
      this.head(chain, refresh, (error, address) => {
        if (error !== undefined || address === undefined) return retry(error ?? new ChainError('unavailable', 'no head', true));
        this.pool.get(address, (e, link) => {
          if (e !== undefined || link === undefined) return retry(e ?? new ChainError('connect_failed', address, true));
          link.submit({ ...r, chain }, (e2, result) => (e2 !== undefined ? retry(e2) : done(undefined, result)));
        });
      });
    };
    const retry = (e: ChainError): void => {
      if (!worthRetrying(e)) return done(e);
      refresh = this.reroute(chain, e);
      if (clock.now() + delay > deadline) return done(new ChainError('timeout', `no answer from chain ${chain} within ${timeoutMs} ms (last error ${e.code}); the outcome is unknown`, true));
      clock.after(delay, attempt);
      delay = Math.min(delay * 2, this.options.retryDelayMsMax ?? 200);
    };
    attempt();
  }

  /**
   * Subscribes `viewer` to `doc` at its head. `onUpdate` gets every view frame, the first one
   * full; after a failover it subscribes again and the next frame is full again. A refusal
   * that retrying cannot cure goes to `onError` (the subscription is then over). Returns a
   * function that ends the subscription.
   */
  subscribe(doc: string, docType: string, viewer: string, onUpdate: (update: ViewUpdate) => void, onError: (error: ChainError) => void): () => void {
    const chain = this.chainOf(doc);
    const clock = this.io.clock;
    const token = {};
    this.unsettled.add(token);
    let active = true;
    let current: { link: HeadLink; requestId: number; full: boolean } | undefined;
    let delay = 20;
    let refresh = false;
    const start = (): void => {
      if (!active || this.closed) return;
      this.head(chain, refresh, (error, address) => {
        if (!active) return;
        if (error !== undefined || address === undefined) return later(error ?? new ChainError('unavailable', 'no head', true));
        this.pool.get(address, (e, link) => {
          if (!active) return;
          if (e !== undefined || link === undefined) return later(e ?? new ChainError('connect_failed', address, true));
          const sub = { link, requestId: 0, full: false };
          current = sub;
          this.subscriptions++;
          sub.requestId = link.subscribe(
            { chain, doc, docType, viewer },
            (u) => {
              if (!active || current !== sub) return;
              if (u.kind === 'full') {
                sub.full = true;
                delay = 20;
                refresh = false;
                this.unsettled.delete(token);
                // Planted: the full view reaches the browser after the patches that follow it.
                if (this.bugs.has('router-early-patches')) {
                  clock.soon(() => active && current === sub && onUpdate(u));
                  return;
                }
              }
              onUpdate(u);
            },
            (end) => {
              if (current !== sub) return;
              current = undefined;
              this.subscriptions--;
              if (active) {
                this.unsettled.add(token);
                later(end);
              }
            },
          );
        });
      });
    };
    const later = (e: ChainError): void => {
      if (!active) return;
      if (!worthRetrying(e)) {
        active = false;
        this.unsettled.delete(token);
        onError(e);
        return;
      }
      refresh = this.reroute(chain, e);
      clock.after(delay, start);
      delay = Math.min(delay * 2, 500);
    };
    start();
    return () => {
      if (!active) return;
      active = false;
      this.unsettled.delete(token);
      const sub = current;
      current = undefined;
      if (sub === undefined) return;
      this.subscriptions--;
      // Planted: a subscription whose full view has not arrived is left at the head.
      if (sub.full || !this.bugs.has('subscription-leak')) sub.link.unsubscribe(sub.requestId, doc);
    };
  }

  /** Subscriptions being made again (after a failover or a lost link): their browsers wait for a fresh full view. */
  get resubscribing(): number {
    return this.unsettled.size;
  }

  close(): void {
    this.closed = true;
    this.pool.close();
  }
}
