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
import type { Credentials } from '../chain/runtime/credentials.ts';
import { TcpNet } from '../chain/runtime/tcp-net.ts';
import { findDocumentType } from '../engine/documents/index.ts';
import { Router, type RouterOptions } from './router.ts';
import { keyIdPattern, keyringOf, knownViewerSecrets, tokenLifetimeMsMaxDefault, type ViewerKeyring, verifyToken, viewerSecretCharsMin } from './tokens.ts';
import { parseMessage } from './validate.ts';

export interface ProxyLimits {
  /** Largest client message (bytes of UTF-8 JSON). */
  frameBytesMax: number;
  /** Largest message before `welcome` (bytes): a hello with its token fits, nothing much more. */
  unauthenticatedFrameBytesMax: number;
  /** A connection that has not been welcomed (a valid hello) this long after it opened is closed (4408 hello_timeout); pings do not extend it. */
  helloTimeoutMs: number;
  /** Connections that have not sent a valid hello yet, per proxy; past it a new connection is closed (1013 too_many_unauthenticated). */
  unauthenticatedMax: number;
  /** Deepest nesting of arrays and objects in a payload, checked on the text before it is parsed. */
  payloadDepthMax: number;
  /** Values (and keys) in one message, all levels together. */
  messageValuesMax: number;
  /** A token expiring further out than this is refused (bad_token), however well signed. */
  tokenLifetimeMsMax: number;
  /** Bytes queued to one client before it is disconnected as a slow consumer. */
  sendBufferBytesMax: number;
  /** Messages sent and not yet acknowledged, per connection. */
  inflightMax: number;
  /** Messages per second per connection; above it, messages are refused (and twice above it, the connection closes). */
  messagesPerSecondMax: number;
  /** Messages per second of one viewer, all its connections together; above it, messages are refused (rate_limited). */
  viewerMessagesPerSecondMax: number;
  /** Subscriptions per connection. */
  subscriptionsMax: number;
  /** Subscriptions of one viewer, all its connections together. */
  viewerSubscriptionsMax: number;
  /** Open connections of one viewer; a further hello is refused (4429 too_many_connections). */
  viewerConnectionsMax: number;
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
  unauthenticatedFrameBytesMax: 2_048,
  helloTimeoutMs: 5_000,
  unauthenticatedMax: 256,
  payloadDepthMax: 32,
  messageValuesMax: 4_096,
  tokenLifetimeMsMax: tokenLifetimeMsMaxDefault,
  sendBufferBytesMax: 4 * 1024 * 1024,
  inflightMax: 64,
  messagesPerSecondMax: 200,
  viewerMessagesPerSecondMax: 400,
  subscriptionsMax: 32,
  viewerSubscriptionsMax: 128,
  viewerConnectionsMax: 32,
  heartbeatTimeoutMs: 30_000,
  connectionsMax: 10_000,
  clientIdsPerViewerMax: 16,
  clientIdWindowMs: 600_000,
  viewersTrackedMax: 100_000,
});

/**
 * The proxy's chain credentials are the client role's only (`keys: {client}`, as
 * LocalCluster.clientOptions gives): it can submit and subscribe, not configure a chain or
 * read a document's full state. Tests may pass a cluster `secret` instead.
 */
export interface ProxyOptions extends RouterOptions, Credentials {
  readonly frameBytesMax?: number;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  /** One viewer secret (key id k0); see viewerSecrets for several. */
  readonly viewerSecret?: string;
  /** Viewer secrets by key id (key rotation: tokens of every key here verify). */
  readonly viewerSecrets?: ViewerKeyring;
  /** Development mode: accept the published development viewer secret (with a loud warning). Never in production. */
  readonly dev?: boolean;
  readonly limits?: Partial<ProxyLimits>;
  /** Extra HTTP routes (the demo page); return true when handled. */
  readonly http?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  readonly log?: (line: string) => void;
}

const clientIdPattern = /^[A-Za-z0-9_-]{1,40}$/;
/** setTimeout's longest delay; longer waits are re-armed. */
const timerMsMax = 2 ** 31 - 1;

/** A short, printable description of an untrusted value for an error message. */
function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : value === null ? 'null' : typeof value;
}

/** The keyring a proxy accepts, checked: refuses published or short secrets outside development mode. */
export function proxyKeyring(options: Pick<ProxyOptions, 'viewerSecret' | 'viewerSecrets' | 'dev' | 'log'>): ViewerKeyring {
  const keyring: Record<string, string> = { ...(options.viewerSecret !== undefined ? keyringOf(options.viewerSecret) : {}), ...options.viewerSecrets };
  const ids = Object.keys(keyring);
  if (ids.length === 0) throw new Error('the proxy needs a viewer secret (viewerSecret or viewerSecrets; ADAMA_VIEWER_SECRET)');
  for (const id of ids) {
    if (!keyIdPattern.test(id)) throw new Error(`viewer key ids match ${keyIdPattern}, not ${JSON.stringify(id)}`);
    const secret = keyring[id] as string;
    const weak = knownViewerSecrets.includes(secret) ? 'is the published development secret' : secret.length < viewerSecretCharsMin ? `is shorter than ${viewerSecretCharsMin} characters` : undefined;
    if (weak === undefined) continue;
    if (options.dev !== true)
      throw new Error(`refusing to start: viewer secret ${id} ${weak}; anyone can sign tokens with it. Set a random ADAMA_VIEWER_SECRET, or run in development mode (dev: true, npm start -- --dev)`);
    const warn = options.log ?? console.error;
    warn(`WARNING: DEVELOPMENT MODE: viewer secret ${id} ${weak}; anyone can sign tokens for any viewer. Never expose this proxy.`);
  }
  return Object.freeze(keyring);
}

interface ViewerUse {
  connections: number;
  subscriptions: number;
  windowStart: number;
  windowCount: number;
}

/** An HTTP request's headers must arrive within this, the whole request within the next. */
export const httpHeadersTimeoutMs = 10_000;
export const httpRequestTimeoutMs = 30_000;

export class ProxyServer {
  readonly limits: ProxyLimits;
  private readonly keyring: ViewerKeyring;
  private readonly router: Router;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private connections = 0;
  private unauthenticated = 0;
  /** viewer -> clientId -> when it last said hello (least recently seen viewer first). */
  private readonly clientIds = new Map<string, Map<string, number>>();
  /** Viewers with open connections: their use across connections. */
  private readonly viewers = new Map<string, ViewerUse>();

  private constructor(readonly options: ProxyOptions) {
    this.limits = Object.freeze({ ...defaultProxyLimits, ...options.limits });
    this.keyring = proxyKeyring(options);
    const log = (line: string): void => options.log?.(line);
    this.router = new Router(
      { net: new TcpNet({ cluster: options.cluster, secret: options.secret, keys: options.keys, transport: options.transport, frameBytesMax: options.frameBytesMax }), clock: systemClock },
      options,
    );
    this.server = http.createServer((req, res) => {
      req.on('error', (e) => log(`http request: ${e.message}`));
      res.on('error', (e) => log(`http response: ${e.message}`));
      try {
        if (req.url === '/health') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, connections: this.connections }));
          return;
        }
        if (options.http?.(req, res) === true) return;
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; the WebSocket endpoint is /ws\n');
      } catch (e) {
        log(`http handler: ${(e as Error).stack ?? String(e)}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'internal_error' }));
        else res.destroy();
      }
    });
    // Bytes that are not HTTP: a 400 if nothing was answered on this socket yet, else just close it.
    this.server.on('clientError', (e: NodeJS.ErrnoException, socket) => {
      log(`http client: ${e.code ?? ''} ${e.message}`);
      const answering = (socket as unknown as { _httpMessage?: http.ServerResponse })._httpMessage;
      if (!socket.writable || answering?.headersSent === true || e.code === 'HPE_CLOSED_CONNECTION' || e.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const status = e.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      const body = JSON.stringify({ error: 'bad_request', message: 'the request is not HTTP/1.1 this server understands' });
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    });
    // A hard ceiling well above frameBytesMax: up to it, an oversized message gets a typed error first.
    this.wss = new WebSocketServer({ server: this.server, path: '/ws', maxPayload: this.limits.frameBytesMax * 4 });
    // HTTP before the upgrade is bounded too: slow headers and bodies time out, connections are capped.
    this.server.headersTimeout = httpHeadersTimeoutMs;
    this.server.requestTimeout = httpRequestTimeoutMs;
    this.server.maxConnections = this.limits.connectionsMax + this.limits.unauthenticatedMax;
    this.wss.on('error', (e) => log(`websocket server: ${e.message}`));
    this.wss.on('connection', (ws) => this.serve(ws));
  }

  static async start(options: ProxyOptions): Promise<ProxyServer> {
    const proxy = new ProxyServer(options);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
    proxy.server.on('error', (e) => options.log?.(`http server: ${e.message}`));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  get url(): string {
    return `http://${this.options.host ?? '127.0.0.1'}:${this.port}`;
  }

  /** Open connections, and those of them not yet welcomed (for tests and reports). */
  get counts(): { connections: number; unauthenticated: number; viewers: number } {
    return { connections: this.connections, unauthenticated: this.unauthenticated, viewers: this.viewers.size };
  }

  private serve(ws: WebSocket): void {
    // First, before anything can fail: a socket error must never be unhandled.
    ws.on('error', (e) => this.options.log?.(`websocket: ${e.message}`));
    const limits = this.limits;
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
      // A client that never answers the close frame would keep the socket (and its messages
      // would keep arriving, see onMessage) for ws's close timeout: cut it after 2 s.
      setTimeout(() => ws.terminate(), 2_000).unref();
    };
    if (this.connections >= limits.connectionsMax) {
      ws.close(1013, 'too many connections; retry later');
      return;
    }
    if (this.unauthenticated >= limits.unauthenticatedMax) {
      fatal(1013, 'too_many_unauthenticated', `more than ${limits.unauthenticatedMax} connections are waiting to say hello (unauthenticatedMax); retry later`);
      return;
    }
    this.connections++;
    this.unauthenticated++;
    let waitingForHello = true;
    const welcomed = (): void => {
      if (!waitingForHello) return;
      waitingForHello = false;
      this.unauthenticated--;
      clearTimeout(helloTimer);
    };
    const helloTimer = setTimeout(() => {
      if (waitingForHello) fatal(4408, 'hello_timeout', `no valid hello within ${limits.helloTimeoutMs} ms (helloTimeoutMs)`);
    }, limits.helloTimeoutMs);
    helloTimer.unref();

    let viewer: string | undefined;
    let use: ViewerUse | undefined;
    let clientId = '';
    let inflight = 0;
    let expiresAt = 0;
    let expiryTimer: NodeJS.Timeout | undefined;
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
    /** The token's expiry closes the connection, unless a reauth moved it first. Pings do not. */
    const armExpiry = (): void => {
      clearTimeout(expiryTimer);
      const left = expiresAt - Date.now();
      if (left <= 0) return fatal(4401, 'token_expired', 'the token expired; send reauth with a fresh token before it does (PROTOCOL.md)');
      expiryTimer = setTimeout(armExpiry, Math.min(left, timerMsMax));
      expiryTimer.unref();
    };
    const endSubscription = (doc: string): void => {
      const cancel = subs.get(doc);
      if (cancel === undefined) return;
      subs.delete(doc);
      if (use !== undefined) use.subscriptions--;
      cancel();
    };

    const onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => {
      // After a fatal close (an expired token, a flood) nothing more is served on this connection.
      if (ws.readyState !== ws.OPEN) return;
      lastHeard = Date.now();
      const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
      if (bytes > limits.frameBytesMax) return fatal(1009, 'frame_too_large', `messages are at most ${limits.frameBytesMax} bytes; this one was ${bytes}`);
      if (viewer === undefined && bytes > limits.unauthenticatedFrameBytesMax)
        return fatal(1009, 'frame_too_large', `before welcome, messages are at most ${limits.unauthenticatedFrameBytesMax} bytes (unauthenticatedFrameBytesMax); this one was ${bytes}`);
      const now = Date.now();
      if (now - windowStart >= 1_000) {
        windowStart = now;
        windowCount = 0;
      }
      windowCount++;
      if (windowCount > limits.messagesPerSecondMax * 2) return fatal(4429, 'flood', `more than ${limits.messagesPerSecondMax * 2} messages in a second`);
      if (windowCount > limits.messagesPerSecondMax) return error('rate_limited', `at most ${limits.messagesPerSecondMax} messages per second; this one was dropped`, true);
      if (use !== undefined) {
        if (now - use.windowStart >= 1_000) {
          use.windowStart = now;
          use.windowCount = 0;
        }
        if (++use.windowCount > limits.viewerMessagesPerSecondMax)
          return error('rate_limited', `viewer ${viewer} sends at most ${limits.viewerMessagesPerSecondMax} messages per second over all its connections; this one was dropped`, true);
      }
      if (isBinary) return error('malformed_json', 'messages are JSON text frames, not binary', false);
      const text = Array.isArray(data) ? Buffer.concat(data).toString() : Buffer.from(data as ArrayBuffer).toString();
      const parsed = parseMessage(text, limits);
      if (!parsed.ok) return error(parsed.code, parsed.message, false);
      const m = parsed.value;
      if (m === null || typeof m !== 'object' || Array.isArray(m)) return error('invalid_message', 'a message is a JSON object with a "type"', false);
      const msg = m as Record<string, unknown>;
      if (msg.type === 'ping') return send({ type: 'pong', t: typeof msg.t === 'number' ? msg.t : 0 });
      if (msg.type === 'hello') {
        if (viewer !== undefined) return error('already_authenticated', `this connection is already ${viewer}; to renew its token send reauth`, false);
        const check = verifyToken(this.keyring, msg.token, { lifetimeMsMax: limits.tokenLifetimeMsMax });
        if (!check.ok) return fatal(4401, check.code, check.message);
        if (typeof msg.clientId !== 'string' || !clientIdPattern.test(msg.clientId))
          return fatal(4400, 'invalid_message', `hello needs a clientId matching ${clientIdPattern} (keep it across reconnects)`);
        const current = this.viewers.get(check.viewer);
        if ((current?.connections ?? 0) >= limits.viewerConnectionsMax)
          return fatal(4429, 'too_many_connections', `viewer ${check.viewer} has ${limits.viewerConnectionsMax} connections open (viewerConnectionsMax); close one first`);
        if (!this.admitClientId(check.viewer, msg.clientId)) {
          return fatal(
            4429,
            'too_many_client_ids',
            `viewer ${check.viewer} used more than ${limits.clientIdsPerViewerMax} clientIds in ${limits.clientIdWindowMs} ms; keep one clientId per tab across reconnects`,
          );
        }
        viewer = check.viewer;
        use = current ?? { connections: 0, subscriptions: 0, windowStart: now, windowCount: 0 };
        use.connections++;
        this.viewers.set(viewer, use);
        welcomed();
        clientId = `${viewer}.${msg.clientId}`;
        expiresAt = check.expiresAt;
        armExpiry();
        return send({ type: 'welcome', viewer, clientId: msg.clientId, expiresAt, expiresInMs: expiresAt - now, limits });
      }
      if (viewer === undefined || use === undefined) return fatal(4401, 'unauthenticated', 'send hello with a token first');
      const who = viewer;
      const viewerUse = use;
      if (msg.type === 'reauth') {
        const check = verifyToken(this.keyring, msg.token, { lifetimeMsMax: limits.tokenLifetimeMsMax });
        if (!check.ok) return error(check.code, `${check.message}; this connection keeps its current token, which expires at ${new Date(expiresAt).toISOString()}`, false);
        if (check.viewer !== who) return error('viewer_mismatch', `this connection is ${who}; a reauth token must be for the same viewer, not ${check.viewer}`, false);
        expiresAt = Math.max(expiresAt, check.expiresAt);
        armExpiry();
        return send({ type: 'reauthed', viewer: who, expiresAt, expiresInMs: expiresAt - now });
      }
      const doc = msg.doc;
      if (msg.type !== 'subscribe' && msg.type !== 'unsubscribe' && msg.type !== 'send') return error('unknown_type', `unknown message type ${describe(msg.type)}; see PROTOCOL.md`, false);
      if (typeof doc !== 'string' || !idPattern.test(doc)) return error('invalid_message', `doc must match ${idPattern}`, false, { doc: typeof doc === 'string' ? doc.slice(0, 128) : null });
      if (msg.type === 'unsubscribe') return endSubscription(doc);
      const docType = msg.docType;
      if (typeof docType !== 'string' || findDocumentType(docType) === undefined) return error('unknown_document_type', `no document type ${describe(docType)}`, false, { doc });
      if (msg.type === 'subscribe') {
        if (subs.has(doc)) return error('already_subscribed', `already subscribed to ${doc}`, false, { doc });
        if (subs.size >= limits.subscriptionsMax) return error('too_many_subscriptions', `at most ${limits.subscriptionsMax} per connection`, true, { doc });
        if (viewerUse.subscriptions >= limits.viewerSubscriptionsMax)
          return error('too_many_subscriptions', `viewer ${who} holds ${limits.viewerSubscriptionsMax} subscriptions over all its connections (viewerSubscriptionsMax)`, true, { doc });
        viewerUse.subscriptions++;
        const cancel = this.router.subscribe(
          doc,
          docType,
          who,
          (u) => sendText(viewText(u)),
          (e) => {
            if (subs.delete(doc)) viewerUse.subscriptions--;
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
    };

    ws.on('message', (data, isBinary) => {
      try {
        onMessage(data, isBinary);
      } catch (e) {
        // A bug, not the input's fault; still, it ends this connection only.
        this.options.log?.(`websocket message: ${(e as Error).stack ?? String(e)}`);
        try {
          fatal(1011, 'internal_error', 'the proxy failed on this message');
        } catch {
          ws.terminate();
        }
      }
    });
    ws.on('close', () => {
      this.connections--;
      welcomed();
      clearInterval(heartbeat);
      clearTimeout(expiryTimer);
      for (const doc of [...subs.keys()]) endSubscription(doc);
      if (use !== undefined && viewer !== undefined) {
        use.connections--;
        if (use.connections <= 0 && this.viewers.get(viewer) === use) this.viewers.delete(viewer);
      }
    });
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
