// The load generator's WebSocket client of the proxy (proxy/PROTOCOL.md): one connection, one
// viewer token, one clientId; sends are pipelined (each answered by its ack, matched by doc and
// clientSeq) and subscriptions report their view frames. Unlike proxy/test-client.ts, which
// keeps every message for assertions and polls, this one resolves a promise per answer, so the
// latency measured is the protocol's and not a poll interval's.

import WebSocket from 'ws';

/** A connection that has not been welcomed this long after it opened is given up. */
export const welcomeTimeoutMs = 10_000;
/** Pings this often (PROTOCOL.md asks for one at least every heartbeatTimeoutMs / 2, 15 s). */
export const pingIntervalMs = 10_000;

export interface ProxySend {
  readonly doc: string;
  readonly docType: string;
  readonly channel: string;
  readonly payload: unknown;
  readonly clientSeq: number;
}

export interface ProxyAck {
  readonly doc: string;
  readonly clientSeq: number;
  readonly seq: number;
  readonly outcome: unknown;
  readonly duplicate: boolean;
}

/** A view frame as the proxy sends it (`view` and `confirmed` on full frames, `patch` on the others). */
export interface ProxyView {
  readonly doc: string;
  readonly kind: 'full' | 'speculative' | 'confirmed' | 'rollback';
  readonly seq: number;
  readonly view?: unknown;
  readonly confirmed?: unknown;
  readonly patch?: unknown;
}

/** An `error` message of the proxy, or the connection's end. */
export class ProxyError extends Error {
  override name = 'ProxyError';
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(`${code}: ${message}`);
  }
}

interface Pending<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

const viewKinds: ReadonlySet<string> = new Set(['full', 'speculative', 'confirmed', 'rollback']);
const key = (doc: string, clientSeq: number): string => `${doc}\n${clientSeq}`;

export class ProxySocket {
  private readonly sends = new Map<string, Pending<ProxyAck>>();
  private readonly subscriptions = new Map<string, { first?: Pending<ProxyView>; onView: (v: ProxyView) => void }>();
  private welcome: Pending<void> | undefined;
  private ended: ProxyError | undefined;
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => this.receive(isBinary ? '' : data.toString()));
    ws.on('error', () => {}); // the close that follows ends everything pending
    ws.on('close', (code, reason) => this.end(new ProxyError('closed', `the proxy closed the connection (${code} ${reason.toString()})`, true)));
    this.heartbeat = setInterval(() => this.write({ type: 'ping', t: 0 }), pingIntervalMs);
    this.heartbeat.unref();
  }

  /** Opens `url`, says hello with `token` and `clientId`, and resolves once welcomed. */
  static async connect(url: string, token: string, clientId: string): Promise<ProxySocket> {
    const ws = new WebSocket(url);
    const socket = new ProxySocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const welcomed = new Promise<void>((resolve, reject) => (socket.welcome = { resolve, reject }));
    const timer = setTimeout(() => socket.end(new ProxyError('welcome_timeout', `no welcome within ${welcomeTimeoutMs} ms`, true)), welcomeTimeoutMs);
    socket.write({ type: 'hello', token, clientId });
    try {
      await welcomed;
    } catch (error) {
      socket.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return socket;
  }

  /** Sends a message; resolves with its ack (committed), rejects with the proxy's error for it. */
  send(m: ProxySend): Promise<ProxyAck> {
    return new Promise((resolve, reject) => {
      if (this.ended !== undefined) return reject(this.ended);
      const k = key(m.doc, m.clientSeq);
      if (this.sends.has(k)) return reject(new Error(`clientSeq ${m.clientSeq} of ${m.doc} is already awaiting its ack on this connection`));
      this.sends.set(k, { resolve, reject });
      this.write({ type: 'send', ...m });
    });
  }

  /** Subscribes to `doc`; resolves with the first (full) view, and gives every later frame to `onView`. */
  subscribe(doc: string, docType: string, onView: (v: ProxyView) => void): Promise<ProxyView> {
    return new Promise((resolve, reject) => {
      if (this.ended !== undefined) return reject(this.ended);
      if (this.subscriptions.has(doc)) return reject(new Error(`already subscribed to ${doc} on this connection`));
      this.subscriptions.set(doc, { first: { resolve, reject }, onView });
      this.write({ type: 'subscribe', doc, docType });
    });
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.ws.close();
  }

  private write(m: Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  /** Everything pending fails with `error`; nothing is sent after it. */
  private end(error: ProxyError): void {
    if (this.ended !== undefined) return;
    this.ended = error;
    clearInterval(this.heartbeat);
    this.welcome?.reject(error);
    for (const p of this.sends.values()) p.reject(error);
    this.sends.clear();
    for (const s of this.subscriptions.values()) s.first?.reject(error);
    this.subscriptions.clear();
    this.ws.terminate();
  }

  /** One message of the proxy; anything malformed ends the connection (the proxy broke the protocol). */
  private receive(text: string): void {
    let m: Record<string, unknown>;
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      m = parsed as Record<string, unknown>;
    } catch {
      return this.end(new ProxyError('protocol_error', `the proxy sent something other than a JSON object: ${text.slice(0, 80)}`, false));
    }
    switch (m.type) {
      case 'welcome': {
        const w = this.welcome;
        this.welcome = undefined;
        return w?.resolve();
      }
      case 'ack': {
        if (typeof m.doc !== 'string' || typeof m.clientSeq !== 'number' || typeof m.seq !== 'number')
          return this.end(new ProxyError('protocol_error', 'an ack without doc, clientSeq and seq', false));
        const k = key(m.doc, m.clientSeq);
        const p = this.sends.get(k);
        this.sends.delete(k);
        return p?.resolve({ doc: m.doc, clientSeq: m.clientSeq, seq: m.seq, outcome: m.outcome, duplicate: m.duplicate === true });
      }
      case 'view': {
        if (typeof m.doc !== 'string' || typeof m.kind !== 'string' || !viewKinds.has(m.kind) || typeof m.seq !== 'number')
          return this.end(new ProxyError('protocol_error', 'a view without doc, a known kind and seq', false));
        const s = this.subscriptions.get(m.doc);
        if (s === undefined) return;
        const v = m as unknown as ProxyView;
        const first = s.first;
        if (first !== undefined && v.kind === 'full') {
          s.first = undefined;
          return first.resolve(v);
        }
        return s.onView(v);
      }
      case 'error': {
        const error = new ProxyError(typeof m.code === 'string' ? m.code : 'error', typeof m.message === 'string' ? m.message : '', m.retryable === true);
        if (this.welcome !== undefined) return this.end(error);
        if (typeof m.doc === 'string' && typeof m.clientSeq === 'number') {
          const k = key(m.doc, m.clientSeq);
          const p = this.sends.get(k);
          this.sends.delete(k);
          return p?.reject(error);
        }
        if (typeof m.doc === 'string') {
          const s = this.subscriptions.get(m.doc);
          this.subscriptions.delete(m.doc);
          return s?.first?.reject(error);
        }
        // An error about no request in particular (rate_limited, a malformed message): the generator sent something wrong.
        return this.end(error);
      }
      case 'pong':
      case 'reauthed':
        return;
      default:
        return this.end(new ProxyError('protocol_error', `unknown message type ${JSON.stringify(m.type)}`, false));
    }
  }
}
