// Pooled client links, one per node address, dialed on first use; concurrent users of an
// address share one dial. Both the client session and the proxy router use it; the lookup of
// a chain's head (`findHead`) asks every node over the pool.

import type { ChainInfo } from '../core/frames.ts';
import { isLink, type Clock, type Net } from '../runtime/io.ts';
import { ChainError, HeadLink, type Done, type RequestOptions } from './requests.ts';

export interface PoolOptions extends RequestOptions {
  /** This client's name, authenticated to the nodes. */
  readonly name: string;
  readonly connectTimeoutMs?: number;
  /**
   * A pooled link asks its node something cheap this often; without an answer in
   * requestTimeoutMs the link is closed (a stopped process keeps its TCP connections open, so
   * only this ends subscriptions and requests that wait on it). 0: none.
   */
  readonly keepaliveMs?: number;
}

export class LinkPool {
  private readonly links = new Map<string, HeadLink>();
  private readonly dialing = new Map<string, Done<HeadLink>[]>();
  private closed = false;
  /** Runs when a pooled link closes (the router resubscribes what used it). */
  onLost: ((address: string, link: HeadLink) => void) | undefined;

  constructor(
    private readonly io: { readonly net: Net; readonly clock: Clock },
    private readonly options: PoolOptions,
  ) {}

  get(address: string, done: Done<HeadLink>): void {
    if (this.closed) {
      this.io.clock.soon(() => done(new ChainError('closed', 'the client was closed', false)));
      return;
    }
    const open = this.links.get(address);
    if (open?.isOpen === true) {
      done(undefined, open);
      return;
    }
    const waiting = this.dialing.get(address);
    if (waiting !== undefined) {
      waiting.push(done);
      return;
    }
    this.dialing.set(address, [done]);
    this.io.net.dial(address, { role: 'client', name: this.options.name, timeoutMs: this.options.connectTimeoutMs ?? 1_000 }, (result) => {
      const callers = this.dialing.get(address) ?? [];
      this.dialing.delete(address);
      if (!isLink(result)) {
        const error = new ChainError(result.code === 'connect_timeout' || result.code === 'connect_failed' ? result.code : 'connect_failed', `${address}: ${result.message}`, true);
        for (const c of callers) c(error);
        return;
      }
      if (this.closed) {
        result.close();
        for (const c of callers) c(new ChainError('closed', 'the client was closed', false));
        return;
      }
      const link = new HeadLink(result, this.io.clock, this.options);
      this.links.set(address, link);
      this.keepalive(link);
      link.onClose(() => {
        if (this.links.get(address) === link) this.links.delete(address);
        this.onLost?.(address, link);
      });
      for (const c of callers) c(undefined, link);
    });
  }

  private keepalive(link: HeadLink): void {
    const every = this.options.keepaliveMs ?? 1_000;
    if (every <= 0) return;
    const ping = (): void => {
      if (!link.isOpen || this.closed) return;
      link.lookup('', (error) => {
        if (error?.code === 'timeout') link.close();
        else this.io.clock.after(every, ping, true);
      });
    };
    this.io.clock.after(every, ping, true);
  }

  /** The pooled link to `address`, if one is open. */
  current(address: string): HeadLink | undefined {
    const link = this.links.get(address);
    return link?.isOpen === true ? link : undefined;
  }

  /** Closes the link to `address` (the node is not the head after all, or hung). */
  drop(address: string): void {
    const link = this.links.get(address);
    this.links.delete(address);
    link?.close();
  }

  close(): void {
    this.closed = true;
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }
}

/**
 * The head of `chain` in the newest configuration any reachable node reports: every node is
 * asked (a cheap lookup, no status), and the answer with the highest epoch wins.
 */
export function findHead(pool: LinkPool, clock: Clock, addresses: readonly string[], chain: string, timeoutMs: number, done: Done<{ node: string; address: string; epoch: number }>): void {
  let best: ChainInfo | undefined;
  let waiting = addresses.length;
  let finished = false;
  let lastError = 'no node answered';
  const finish = (): void => {
    if (finished) return;
    finished = true;
    timer.cancel();
    const head = best?.members[0];
    if (best === undefined || head === undefined)
      done(new ChainError('unavailable', `no reachable node knows chain ${chain} (${lastError}); check the addresses and that the cluster is running`, true));
    else done(undefined, { node: head.node, address: head.address, epoch: best.epoch });
  };
  const timer = clock.after(timeoutMs, finish);
  if (waiting === 0) finish();
  for (const address of addresses) {
    pool.get(address, (error, link) => {
      if (finished) return;
      if (error !== undefined || link === undefined) {
        lastError = error?.message ?? lastError;
        if (--waiting === 0) finish();
        return;
      }
      link.lookup(
        chain,
        (e, info) => {
          if (finished) return;
          if (e !== undefined) lastError = e.message;
          else if (info !== undefined && info.members.length > 0 && (best === undefined || info.epoch > best.epoch)) best = info;
          if (--waiting === 0) finish();
        },
        timeoutMs,
      );
    });
  }
}
