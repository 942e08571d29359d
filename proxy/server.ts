// The proxy tier: an HTTP server with a WebSocket endpoint (/ws) speaking the JSON client
// protocol of PROTOCOL.md. It authenticates viewers by signed token, routes each document to
// its chain's head (router.ts), keeps retries and resubscription after failovers to itself,
// and bounds everything a client can make it hold.

import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { ChainError } from '../chain/client/requests.ts';
import { idPattern } from '../chain/core/config.ts';
import type { ViewUpdate } from '../chain/core/frames.ts';
import { systemClock } from '../chain/runtime/system.ts';
import { TcpNet } from '../chain/runtime/tcp-net.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { Router, type RouterOptions } from './router.ts';
import { verifyToken } from './tokens.ts';

export interface ProxyLimits {
  /** Largest client message (bytes of UTF-8 JSON). */
  frameBytesMax: number;
  /** Bytes queued to one client before it is disconnected as a slow consumer. */
  sendBufferBytesMax: number;
  /** Messages sent and not yet acknowledged, per connection. */
  inflightMax: number;
  /** Messages per second per connection; above it, messages are refused (and twice above it, the connection closes). */
  messagesPerSecondMax: number;
  /** Subscriptions per connection. */
  subscriptionsMax: number;
  /** A connection that sends nothing (not even a ping) this long is closed. */
  heartbeatTimeoutMs: number;
  /** Connections per proxy. */
  connectionsMax: number;
  /** Distinct clientIds one viewer may use within clientIdWindowMs (each fills a document's dedupe table). */
  clientIdsPerViewerMax: number;
  clientIdWindowMs: number;
  /** Viewers whose clientIds the proxy tracks (the oldest is forgotten past it). */
  viewersTrackedMax: number;
}

export const defaultProxyLimits: ProxyLimits = Object.freeze({
  frameBytesMax: 64 * 1024,
  sendBufferBytesMax: 4 * 1024 * 1024,
  inflightMax: 64,
  messagesPerSecondMax: 200,
  subscriptionsMax: 32,
  heartbeatTimeoutMs: 30_000,
  connectionsMax: 10_000,
  clientIdsPerViewerMax: 16,
  clientIdWindowMs: 600_000,
  viewersTrackedMax: 100_000,
});

export interface ProxyOptions extends RouterOptions {
  readonly cluster: string;
  readonly secret: string;
  readonly frameBytesMax?: number;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly viewerSecret: string;
  readonly limits?: Partial<ProxyLimits>;
  /** Extra HTTP routes (the demo page); return true when handled. */
  readonly http?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  readonly log?: (line: string) => void;
}

const clientIdPattern = /^[A-Za-z0-9_-]{1,40}$/;

export class ProxyServer {
  readonly limits: ProxyLimits;
  private readonly router: Router;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private connections = 0;
  /** viewer -> clientId -> when it last said hello (least recently seen viewer first). */
  private readonly clientIds = new Map<string, Map<string, number>>();

  private constructor(readonly options: ProxyOptions) {
    this.limits = Object.freeze({ ...defaultProxyLimits, ...options.limits });
    this.router = new Router({ net: new TcpNet({ cluster: options.cluster, secret: options.secret, frameBytesMax: options.frameBytesMax }), clock: systemClock }, options);
    this.server = http.createServer((req, res) => {
      if (req.url === '/health') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, connections: this.connections }));
        return;
      }
      if (options.http?.(req, res) === true) return;
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; the WebSocket endpoint is /ws\n');
    });
    // A hard ceiling well above frameBytesMax: up to it, an oversized message gets a typed error first.
    this.wss = new WebSocketServer({ server: this.server, path: '/ws', maxPayload: this.limits.frameBytesMax * 4 });
    this.wss.on('connection', (ws) => this.serve(ws));
  }

  static async start(options: ProxyOptions): Promise<ProxyServer> {
    const proxy = new ProxyServer(options);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  get url(): string {
    return `http://${this.options.host ?? '127.0.0.1'}:${this.port}`;
  }

  private serve(ws: WebSocket): void {
    if (this.connections >= this.limits.connectionsMax) {
      ws.close(1013, 'too many connections; retry later');
      return;
    }
    this.connections++;
    const limits = this.limits;
    let viewer: string | undefined;
    let clientId = '';
    let inflight = 0;
    const subs = new Map<string, () => void>();
    let windowStart = Date.now();
    let windowCount = 0;
    let lastHeard = Date.now();
    const heartbeat = setInterval(
      () => {
        if (Date.now() - lastHeard > limits.heartbeatTimeoutMs) ws.close(4000, `no message for ${limits.heartbeatTimeoutMs} ms (send a ping)`);
      },
      Math.min(limits.heartbeatTimeoutMs, 5_000),
    );
    heartbeat.unref();

    const sendText = (text: string): void => {
      if (ws.readyState !== ws.OPEN) return;
      if (ws.bufferedAmount + text.length > limits.sendBufferBytesMax) {
        ws.close(4008, `slow_consumer: more than ${limits.sendBufferBytesMax} bytes waiting to reach this client`);
        return;
      }
      ws.send(text);
    };
    const send = (message: Record<string, unknown>): void => sendText(JSON.stringify(message));
    const error = (code: string, message: string, retryable: boolean, ref: Record<string, unknown> = {}): void => send({ type: 'error', code, message, retryable, ...ref });
    const fatal = (closeCode: number, code: string, message: string): void => {
      error(code, message, false);
      ws.close(closeCode, code);
    };

    ws.on('message', (data, isBinary) => {
      lastHeard = Date.now();
      const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength;
      if (bytes > limits.frameBytesMax) return fatal(1009, 'frame_too_large', `messages are at most ${limits.frameBytesMax} bytes; this one was ${bytes}`);
      const now = Date.now();
      if (now - windowStart >= 1_000) {
        windowStart = now;
        windowCount = 0;
      }
      windowCount++;
      if (windowCount > limits.messagesPerSecondMax * 2) return fatal(4429, 'flood', `more than ${limits.messagesPerSecondMax * 2} messages in a second`);
      if (windowCount > limits.messagesPerSecondMax) return error('rate_limited', `at most ${limits.messagesPerSecondMax} messages per second; this one was dropped`, true);
      if (isBinary) return error('malformed_json', 'messages are JSON text frames, not binary', false);
      let m: unknown;
      try {
        m = JSON.parse(data.toString());
      } catch {
        return error('malformed_json', 'the message is not JSON text', false);
      }
      if (m === null || typeof m !== 'object' || Array.isArray(m)) return error('invalid_message', 'a message is a JSON object with a "type"', false);
      const msg = m as Record<string, unknown>;
      if (msg.type === 'ping') return send({ type: 'pong', t: typeof msg.t === 'number' ? msg.t : 0 });
      if (msg.type === 'hello') {
        if (viewer !== undefined) return error('already_authenticated', `this connection is already ${viewer}`, false);
        const check = verifyToken(this.options.viewerSecret, msg.token);
        if (!check.ok) return fatal(4401, check.code, check.message);
        if (typeof msg.clientId !== 'string' || !clientIdPattern.test(msg.clientId))
          return fatal(4400, 'invalid_message', `hello needs a clientId matching ${clientIdPattern} (keep it across reconnects)`);
        if (!this.admitClientId(check.viewer, msg.clientId)) {
          return fatal(
            4429,
            'too_many_client_ids',
            `viewer ${check.viewer} used more than ${limits.clientIdsPerViewerMax} clientIds in ${limits.clientIdWindowMs} ms; keep one clientId per tab across reconnects`,
          );
        }
        viewer = check.viewer;
        clientId = `${viewer}.${msg.clientId}`;
        return send({ type: 'welcome', viewer, clientId: msg.clientId, limits });
      }
      if (viewer === undefined) return fatal(4401, 'unauthenticated', 'send hello with a token first');
      const who = viewer;
      const doc = msg.doc;
      if (msg.type !== 'subscribe' && msg.type !== 'unsubscribe' && msg.type !== 'send') return error('unknown_type', `unknown message type ${JSON.stringify(msg.type)}; see PROTOCOL.md`, false);
      if (typeof doc !== 'string' || !idPattern.test(doc)) return error('invalid_message', `doc must match ${idPattern}`, false, { doc: typeof doc === 'string' ? doc.slice(0, 128) : null });
      if (msg.type === 'unsubscribe') {
        subs.get(doc)?.();
        subs.delete(doc);
        return;
      }
      const docType = msg.docType;
      if (typeof docType !== 'string' || findDocumentType(docType) === undefined) return error('unknown_document_type', `no document type ${JSON.stringify(docType)}`, false, { doc });
      if (msg.type === 'subscribe') {
        if (subs.has(doc)) return error('already_subscribed', `already subscribed to ${doc}`, false, { doc });
        if (subs.size >= limits.subscriptionsMax) return error('too_many_subscriptions', `at most ${limits.subscriptionsMax} per connection`, true, { doc });
        const cancel = this.router.subscribe(
          doc,
          docType,
          who,
          (u) => sendText(viewText(u)),
          (e) => {
            subs.delete(doc);
            error(e.code, e.message, e.retryable, { doc });
          },
        );
        subs.set(doc, cancel);
        return;
      }
      // send
      const clientSeq = msg.clientSeq;
      if (typeof clientSeq !== 'number' || !Number.isSafeInteger(clientSeq) || clientSeq < 1)
        return error('invalid_message', 'clientSeq is a positive integer, increasing per clientId', false, { doc });
      if (typeof msg.channel !== 'string' || msg.channel.length === 0 || msg.channel.length > 64)
        return error('invalid_message', 'channel is a string of 1 to 64 characters', false, { doc, clientSeq });
      if (!('payload' in msg)) return error('invalid_message', 'send needs a payload (any JSON value)', false, { doc, clientSeq });
      if (inflight >= limits.inflightMax) return error('too_many_inflight', `at most ${limits.inflightMax} messages awaiting acknowledgement; wait for acks`, true, { doc, clientSeq });
      inflight++;
      this.router.submit({ doc, docType, channel: msg.channel, payload: msg.payload, clientId, clientSeq, viewer: who }, (e, r) => {
        inflight--;
        if (e !== undefined || r === undefined) {
          const c = e ?? new ChainError('internal_error', 'no result', true);
          return error(c.code, c.message, c.retryable, { doc, clientSeq });
        }
        send({ type: 'ack', doc, clientSeq, seq: r.seq, outcome: r.outcome, duplicate: r.duplicate });
      });
    });
    ws.on('close', () => {
      this.connections--;
      clearInterval(heartbeat);
      for (const cancel of subs.values()) cancel();
      subs.clear();
    });
    ws.on('error', (e) => this.options.log?.(`websocket: ${e.message}`));
  }

  /** A viewer's clientIds are bounded: each one fills a slot of a document's dedupe table. */
  private admitClientId(viewer: string, clientId: string): boolean {
    const limits = this.limits;
    const now = Date.now();
    let seen = this.clientIds.get(viewer);
    if (seen === undefined) {
      if (this.clientIds.size >= limits.viewersTrackedMax) this.clientIds.delete(this.clientIds.keys().next().value as string);
      seen = new Map();
    }
    this.clientIds.delete(viewer);
    this.clientIds.set(viewer, seen);
    for (const [id, at] of seen) if (now - at > limits.clientIdWindowMs) seen.delete(id);
    if (!seen.has(clientId) && seen.size >= limits.clientIdsPerViewerMax) return false;
    seen.set(clientId, now);
    return true;
  }

  async stop(): Promise<void> {
    this.router.close();
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A view frame as protocol text; the chain's JSON passes through unparsed. */
function viewText(u: ViewUpdate): string {
  const head = `{"type":"view","doc":${JSON.stringify(u.doc)},"kind":${JSON.stringify(u.kind)},"seq":${u.seq}`;
  return u.kind === 'full' ? `${head},"view":${u.json},"confirmed":${u.confirmedJson}}` : `${head},"patch":${u.json}}`;
}
