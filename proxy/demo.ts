// npm start: the local cluster (node processes with LevelDB under ./data, SWIM and the
// automatic manager), the proxy, and the demo page of optimistic updates.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { wellFormed } from '../chain/client/requests.ts';
import { chainIds, chainOf } from '../chain/control/placement.ts';
import { checkClusterSecret, devClusterSecret, devSecretWarning } from '../chain/runtime/credentials.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { ProxyServer } from './server.ts';
import { devViewerSecret, mintToken, parseViewerSecrets, tokenLifetimeMsMaxDefault, type ViewerKey } from './tokens.ts';
import { inspectJson, jsonDepth } from './validate.ts';

const publicDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');
const files: Record<string, string> = { '/': 'index.html', '/index.html': 'index.html', '/adama-client.js': 'adama-client.js', '/demo.js': 'demo.js' };
const types: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

export interface DemoOptions {
  readonly nodes: number;
  readonly chains: number;
  readonly k: number;
  readonly port: number;
  readonly dataDir?: string;
  readonly restartAfterMs: number;
  readonly log?: (line: string) => void;
  /** Development mode: the published development secrets when none is given (the proxy then warns). */
  readonly dev?: boolean;
  /** The cluster's secret; default ADAMA_CLUSTER_SECRET, else a fresh random one (dev: the development secret). */
  readonly clusterSecret?: string;
  /** The viewer secret(s), `secret` or `kid:secret,...`; default ADAMA_VIEWER_SECRET, else a fresh random one (dev: the development secret). */
  readonly viewerSecret?: string;
  /** The admin capability; default a fresh random key. */
  readonly adminKey?: string;
  /** Lifetime of the tokens the demo mints for its panes (default demoTokenTtlMsDefault). */
  readonly tokenTtlMs?: number;
}

/** Where a secret came from, for the startup line. */
export type SecretSource = 'option' | 'environment' | 'generated' | 'development';

export interface Demo {
  /** The page without the admin key (it can show nothing but the page). */
  readonly url: string;
  /** The page with the admin key in its fragment: what to open. */
  readonly adminUrl: string;
  readonly adminKey: string;
  readonly secrets: { readonly cluster: SecretSource; readonly viewer: SecretSource };
  readonly cluster: LocalCluster;
  readonly proxy: ProxyServer;
  stop(): Promise<void>;
}

/** The only viewers the demo mints tokens for: its three panes. */
export const demoViewers: readonly string[] = Object.freeze(['alice', 'bob', 'carol']);
/** Default lifetime of a pane's token; the page renews it (reauth) before it runs out. */
export const demoTokenTtlMsDefault = 10 * 60_000;
/** The header carrying the admin capability. */
export const adminKeyHeader = 'x-adama-admin-key';
/** Largest admin request body (bytes). */
export const requestBytesMax = 4_096;
/** Deepest nesting of an admin request body (its objects and arrays). */
export const requestDepthMax = 4;
const requestValuesMax = 64;

/** A typed refusal of an HTTP request. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function json(res: http.ServerResponse, status: number, value: unknown): boolean {
  if (res.headersSent || res.destroyed) return true;
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(value));
  return true;
}

function refuse(res: http.ServerResponse, e: HttpError, extra: Record<string, string> = {}): boolean {
  if (res.headersSent || res.destroyed) return true;
  res.writeHead(e.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra }).end(JSON.stringify({ error: e.code, message: e.message }));
  return true;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Whether the request may use the admin API: same origin, with the admin key (compared in constant time). Throws an HttpError if not. */
export function checkAdmin(req: http.IncomingMessage, adminKey: string): void {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') throw new HttpError(403, 'cross_origin', `admin requests come from the demo page itself (Sec-Fetch-Site ${JSON.stringify(site)})`);
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) throw new HttpError(403, 'cross_origin', 'admin requests come from the demo page itself (Origin does not match)');
  const given = req.headers[adminKeyHeader];
  if (typeof given !== 'string' || !timingSafeEqual(digest(given), digest(adminKey)))
    throw new HttpError(401, 'unauthorized', `admin requests need the ${adminKeyHeader} header with the key printed at startup`);
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpError(415, 'unsupported_media_type', 'admin requests are JSON (content-type: application/json)');
}

/** Reads a small JSON object body: bounded in bytes and depth before it is parsed, UTF-8 and well-formed. */
export async function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    bytes += b.length;
    if (bytes > requestBytesMax) throw new HttpError(413, 'body_too_large', `request bodies are at most ${requestBytesMax} bytes`);
    chunks.push(b);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, 'invalid_body', 'the body is not UTF-8');
  }
  if (jsonDepth(text, requestDepthMax) > requestDepthMax) throw new HttpError(400, 'invalid_body', `the body nests at most ${requestDepthMax} deep`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'invalid_body', 'the body is not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new HttpError(400, 'invalid_body', 'the body is a JSON object');
  const problem = inspectJson(parsed, requestDepthMax, requestValuesMax);
  if (problem !== undefined) throw new HttpError(400, 'invalid_body', problem.message);
  return parsed as Record<string, unknown>;
}

export interface DemoRoutes {
  readonly cluster: LocalCluster;
  readonly chains: number;
  readonly adminKey: string;
  readonly signingKey: ViewerKey;
  readonly tokenTtlMs: number;
  readonly restartAfterMs: number;
  readonly log?: (line: string) => void;
}

/** The demo's HTTP routes (ProxyOptions.http): the page, its read-only cluster view, and the admin API. */
export function demoRoutes(o: DemoRoutes): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const { cluster } = o;
  const state = { forwardDelayMs: 0 };
  const post: Record<string, (b: Record<string, unknown>) => Promise<unknown>> = {
    '/api/token': async (b) => {
      const viewer = b.viewer;
      if (typeof viewer !== 'string' || !demoViewers.includes(viewer)) throw new HttpError(400, 'invalid_body', `viewer is one of ${demoViewers.join(', ')}`);
      const now = Date.now();
      return { token: mintToken(o.signingKey, viewer, o.tokenTtlMs, now), expiresAt: now + o.tokenTtlMs, expiresInMs: o.tokenTtlMs };
    },
    '/api/latency': async (b) => {
      const ms = b.ms;
      if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > 2_000) throw new HttpError(400, 'invalid_body', 'ms is an integer from 0 to 2000');
      state.forwardDelayMs = ms;
      await cluster.setForwardDelay(ms);
      return { forwardDelayMs: ms };
    },
    '/api/kill': async (b) => {
      const node = b.node;
      if (typeof node !== 'string') throw new HttpError(400, 'invalid_body', 'node is a string (a node id, as /api/cluster lists them)');
      if (!cluster.processes.has(node)) throw new HttpError(404, 'unknown_node', `no node ${node.slice(0, 64)}`);
      await cluster.kill(node);
      o.log?.(`demo: SIGKILLed ${node}; restarting it in ${o.restartAfterMs} ms`);
      setTimeout(() => {
        cluster.startNode(node).then(
          () => cluster.setForwardDelay(state.forwardDelayMs).catch((e: Error) => o.log?.(`demo: forward delay after restart: ${e.message}`)),
          (e: Error) => o.log?.(`demo: restarting ${node} failed: ${e.message}`),
        );
      }, o.restartAfterMs).unref();
      return { killed: node };
    },
  };
  const clusterView = (url: URL): unknown => {
    const doc = url.searchParams.get('doc');
    const chain = doc === null || !wellFormed(doc) ? undefined : chainOf(doc, chainIds(o.chains));
    const time = (at: number): string => new Date(at).toISOString().slice(11, 23);
    return {
      membership: cluster.manager.membership().map((m) => ({ ...m, pid: cluster.processes.get(m.node)?.child.pid, running: cluster.processes.get(m.node)?.child.exitCode === null })),
      chains: [...cluster.manager.configs.values()].map((c) => ({ chain: c.chain, epoch: c.epoch, members: c.members.map((m) => m.node) })),
      docChain: chain,
      forwardDelayMs: state.forwardDelayMs,
      events: cluster.events
        .slice(-12)
        .map((e) =>
          e.kind === 'member'
            ? `${time(e.at)} ${e.node} ${e.state}`
            : e.kind === 'leadership'
              ? `${time(e.at)} ${e.manager} ${e.leading ? 'leads' : 'stopped leading'} (${e.why})`
              : `${time(e.at)} ${e.config.chain} epoch ${e.config.epoch}: ${e.config.members.map((m) => m.node).join(' > ')} (${e.why})`,
        ),
    };
  };
  return (req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://demo');
    } catch {
      return refuse(res, new HttpError(400, 'bad_url', 'the request target is not a URL path'));
    }
    const file = files[url.pathname];
    if (file !== undefined) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, new HttpError(405, 'method_not_allowed', 'GET only'), { allow: 'GET, HEAD' });
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'text/plain', 'cache-control': 'no-store' }).end(readFileSync(path.join(publicDir, file)));
      return true;
    }
    if (url.pathname === '/api/cluster') {
      if (req.method !== 'GET') return refuse(res, new HttpError(405, 'method_not_allowed', 'GET only'), { allow: 'GET' });
      return json(res, 200, clusterView(url));
    }
    const handler = Object.hasOwn(post, url.pathname) ? post[url.pathname] : undefined;
    if (handler === undefined) return false;
    if (req.method !== 'POST') return refuse(res, new HttpError(405, 'method_not_allowed', `${url.pathname} takes a POST with a JSON body and the admin key`), { allow: 'POST' });
    try {
      checkAdmin(req, o.adminKey);
    } catch (e) {
      // Do not read what an unauthorized client sends; close after the answer.
      res.setHeader('connection', 'close');
      return refuse(res, e as HttpError);
    }
    readBody(req)
      .then(handler)
      .then(
        (value) => json(res, 200, value),
        (e: unknown) => {
          if (e instanceof HttpError) {
            if (e.status === 413) res.setHeader('connection', 'close');
            return refuse(res, e);
          }
          o.log?.(`demo: ${url.pathname}: ${(e as Error).stack ?? String(e)}`);
          return json(res, 500, { error: 'internal_error', message: (e as Error).message });
        },
      )
      .catch((e: Error) => o.log?.(`demo: answering ${url.pathname}: ${e.message}`));
    return true;
  };
}

function secretFrom(given: string | undefined, env: string | undefined, dev: boolean, devValue: string): { value: string; source: SecretSource } {
  if (given !== undefined) return { value: given, source: 'option' };
  if (env !== undefined && env !== '') return { value: env, source: 'environment' };
  if (dev) return { value: devValue, source: 'development' };
  return { value: randomBytes(24).toString('base64url'), source: 'generated' };
}

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const dev = options.dev === true;
  const clusterSecret = secretFrom(options.clusterSecret, process.env.ADAMA_CLUSTER_SECRET, dev, devClusterSecret);
  const viewerSecret = secretFrom(options.viewerSecret, process.env.ADAMA_VIEWER_SECRET, dev, devViewerSecret);
  checkClusterSecret(clusterSecret.value, dev);
  if (clusterSecret.value === devClusterSecret) options.log?.(devSecretWarning);
  const viewerKeys = parseViewerSecrets(viewerSecret.value);
  const adminKey = options.adminKey ?? randomBytes(24).toString('base64url');
  const tokenTtlMs = options.tokenTtlMs ?? demoTokenTtlMsDefault;
  const cluster = await LocalCluster.start({ nodes: options.nodes, chains: options.chains, k: options.k, secret: clusterSecret.value, dataDir: options.dataDir, log: options.log });
  let proxy: ProxyServer;
  try {
    await cluster.waitHealthy();
    const http = demoRoutes({ cluster, chains: options.chains, adminKey, signingKey: viewerKeys.signing, tokenTtlMs, restartAfterMs: options.restartAfterMs, log: options.log });
    proxy = await ProxyServer.start({
      ...cluster.clientOptions,
      nodes: cluster.addresses,
      chains: options.chains,
      viewerSecrets: viewerKeys.keyring,
      dev,
      port: options.port,
      http,
      log: options.log,
    });
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return {
    url: proxy.url,
    adminUrl: `${proxy.url}/#key=${adminKey}`,
    adminKey,
    secrets: { cluster: clusterSecret.source, viewer: viewerSecret.source },
    cluster,
    proxy,
    async stop() {
      await proxy.stop();
      await cluster.stop();
    },
  };
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const help = `usage: npm start -- [--nodes N] [--chains C] [--k K] [--port P] [--data DIR] [--restart-after-ms MS] [--token-ttl-s S] [--dev]

Starts a local cluster of N node processes (LevelDB under DIR, default ./data) with failure
detection and the automatic manager, the proxy, and the demo page; prints its URL, which
carries this run's admin key (#key=...): only a page opened with it can mint the panes'
tokens, kill nodes or set the forward delay. Ctrl-C stops everything.

Secrets: ADAMA_CLUSTER_SECRET (the nodes') and ADAMA_VIEWER_SECRET (tokens; "secret" or
"kid:secret,kid:secret") when set, else fresh random ones for this run. --dev uses the
published development secrets instead (so \`npm run token -- --dev\` tokens work), with a warning.`;
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      options: {
        nodes: { type: 'string', default: '3' },
        chains: { type: 'string', default: '3' },
        k: { type: 'string', default: '3' },
        port: { type: 'string', default: '8080' },
        data: { type: 'string', default: './data' },
        'restart-after-ms': { type: 'string', default: '3000' },
        'token-ttl-s': { type: 'string', default: String(demoTokenTtlMsDefault / 1_000) },
        dev: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${help}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(help);
    process.exit(0);
  }
  const tokenTtlS = Number(values['token-ttl-s']);
  if (!Number.isFinite(tokenTtlS) || tokenTtlS <= 0 || tokenTtlS * 1_000 > tokenLifetimeMsMaxDefault) {
    console.error(`--token-ttl-s takes a positive number of seconds, at most ${tokenLifetimeMsMaxDefault / 1_000}\n\n${help}`);
    process.exit(2);
  }
  const demo = await startDemo({
    nodes: Number(values.nodes),
    chains: Number(values.chains),
    k: Number(values.k),
    port: Number(values.port),
    dataDir: path.resolve(values.data as string),
    restartAfterMs: Number(values['restart-after-ms']),
    tokenTtlMs: tokenTtlS * 1_000,
    dev: values.dev === true,
    log: (line) => console.error(line),
  }).catch((error: Error) => {
    console.error(`error: ${error.message}`);
    process.exit(2);
  });
  const said: Record<SecretSource, string> = { option: 'given', environment: 'from the environment', generated: 'generated for this run', development: 'THE PUBLISHED DEVELOPMENT SECRET' };
  console.log(`secrets: cluster ${said[demo.secrets.cluster]} (ADAMA_CLUSTER_SECRET), viewer ${said[demo.secrets.viewer]} (ADAMA_VIEWER_SECRET)`);
  console.log(`adama-chain demo: ${demo.adminUrl}  (${values.nodes} nodes, data in ${path.resolve(values.data as string)}; the #key is this run's admin key; Ctrl-C stops)`);
  const stop = (): void => void demo.stop().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
