// ChainSession: submits to whichever node is the head of one chain, following failovers. It
// resends a message with the same (clientId, clientSeq) until it is acknowledged, so the
// head's durable dedupe makes every message apply exactly once. Written against Net and Clock,
// so the simulator runs it; `submit` is the promise form for real processes.
//
// A node that answers not_head with a hint is left for the hinted one; a refused or lost
// connection, a node without the chain, and a request that timed out (a hung head) move the
// session to the next address.

import type { Bugs } from '../core/planted.ts';
import { noBugs } from '../core/planted.ts';
import type { Clock, Net } from '../runtime/io.ts';
import { LinkPool } from './pool.ts';
import { ChainError, type Done, type HeadLink, type SubmitRequest, type SubmitResult } from './requests.ts';

export interface SessionOptions {
  /** Every node's address; the session finds the head among them. */
  readonly addresses: readonly string[];
  readonly chain: string;
  readonly clientId: string;
  /** Shown to the nodes as this connection's name. */
  readonly name?: string;
  /** Give up on one message after this long (its outcome is then unknown). */
  readonly submitTimeoutMs?: number;
  /** One attempt without an answer after this long moves to the next node. */
  readonly requestTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly retryDelayMsMin?: number;
  readonly retryDelayMsMax?: number;
  readonly bugs?: Bugs;
}

export type SessionSubmit = Omit<SubmitRequest, 'chain' | 'clientId' | 'clientSeq'> & { clientSeq?: number };
export type SessionResult = SubmitResult & { attempts: number };

/** A stable small hash of a string (FNV-1a). */
function spread(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const movesOn = new Set(['connection_lost', 'connect_failed', 'connect_timeout', 'not_member', 'not_head', 'unknown_chain', 'timeout']);

export class ChainSession {
  private readonly pool: LinkPool;
  private target = 0;
  private clientSeq = 0;
  private closed = false;
  private readonly bugs: Bugs;
  /** Resends made (for reports). */
  resends = 0;

  constructor(
    private readonly io: { readonly net: Net; readonly clock: Clock },
    readonly options: SessionOptions,
  ) {
    if (options.addresses.length === 0) throw new Error('ChainSession: no addresses');
    this.bugs = options.bugs ?? noBugs;
    // Sessions of different clients start at different nodes (the first answer points to the head).
    this.target = spread(options.clientId) % options.addresses.length;
    // Planted: no timeout of any kind (a request's, the keepalive's, a dial's) moves the session on.
    const stays = this.bugs.has('session-stays-on-timeout');
    this.pool = new LinkPool(io, {
      name: options.name ?? options.clientId,
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 1_000,
      keepaliveMs: stays ? 0 : undefined,
    });
  }

  /** The next clientSeq; a caller that wants to resend by itself keeps the number. */
  nextClientSeq(): number {
    return ++this.clientSeq;
  }

  /** Submits and calls `done` with the acknowledgement or a final error. Returns the clientSeq used. */
  send(r: SessionSubmit, done: Done<SessionResult>): number {
    const clientSeq = r.clientSeq ?? this.nextClientSeq();
    const clock = this.io.clock;
    const timeoutMs = this.options.submitTimeoutMs ?? 30_000;
    const deadline = clock.now() + timeoutMs;
    let delay = this.options.retryDelayMsMin ?? 10;
    const request: SubmitRequest = { doc: r.doc, docType: r.docType, channel: r.channel, payload: r.payload, viewer: r.viewer, chain: this.options.chain, clientId: this.options.clientId, clientSeq };
    const attempt = (n: number): void => {
      if (this.closed) return done(new ChainError('closed', 'the session was closed', false));
      const address = this.options.addresses[this.target] as string;
      this.pool.get(address, (error, link) => {
        if (error !== undefined || link === undefined) return retry(n, address, undefined, error ?? new ChainError('connect_failed', address, true));
        link.submit(request, (e, result) => {
          if (e !== undefined || result === undefined) return retry(n, address, link, e ?? new ChainError('protocol_error', 'no result', true));
          // It answered: it is the head. Other sends that moved on in the meantime come back.
          this.target = this.options.addresses.indexOf(address);
          done(undefined, { ...result, attempts: n });
        });
      });
    };
    const retry = (n: number, address: string, link: HeadLink | undefined, e: ChainError): void => {
      if (this.closed) return done(new ChainError('closed', 'the session was closed', false));
      if (!e.retryable && e.code !== 'unknown_chain') return done(e);
      this.resends++;
      // A failure of a connection the pool already replaced (or a dial that failed while another
      // succeeded) says nothing about the node now.
      const current = this.pool.current(address) === link;
      if (e.code === 'not_head' && e.hint !== '') this.retarget(address, e.hint);
      else if (current && movesOn.has(e.code) && !(this.bugs.has('session-stays-on-timeout') && e.code.includes('timeout'))) this.retarget(address, undefined);
      if (clock.now() + delay > deadline) return done(new ChainError('timeout', `no acknowledgement within ${timeoutMs} ms (last error ${e.code}); the outcome is unknown`, false));
      clock.after(delay, () => attempt(n + 1));
      delay = Math.min(delay * 2, this.options.retryDelayMsMax ?? 200);
    };
    attempt(1);
    return clientSeq;
  }

  /** The promise form of `send`. */
  submit(r: SessionSubmit): Promise<SessionResult> {
    return new Promise((resolve, reject) => this.send(r, (error, result) => (error !== undefined ? reject(error) : resolve(result as SessionResult))));
  }

  /** Moves to the hinted address, or to the next one (only once per failed address: parallel sends share the move). */
  private retarget(failed: string, hint: string | undefined): void {
    const addresses = this.options.addresses;
    if (addresses[this.target] !== failed) return;
    const index = hint === undefined ? -1 : addresses.indexOf(hint);
    this.target = index >= 0 ? index : (this.target + 1) % addresses.length;
    this.pool.drop(failed);
  }

  close(): void {
    this.closed = true;
    this.pool.close();
  }
}
