// npm start: the local cluster (node processes with LevelDB under ./data, SWIM and the
// automatic manager), the proxy, and the demo page of optimistic updates.

import { readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chainIds, chainOf } from '../chain/control/placement.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { ProxyServer } from './server.ts';
import { devViewerSecret, mintToken, viewerPattern } from './tokens.ts';

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
}

export interface Demo {
  readonly url: string;
  readonly cluster: LocalCluster;
  readonly proxy: ProxyServer;
  stop(): Promise<void>;
}

const requestBytesMax = 4_096;

async function body(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > requestBytesMax) throw new Error(`request bodies are at most ${requestBytesMax} bytes`);
  }
  const parsed = JSON.parse(text || '{}') as unknown;
  return parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
}

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const secret = process.env.ADAMA_CLUSTER_SECRET || 'adama-local-dev-secret';
  const viewerSecret = process.env.ADAMA_VIEWER_SECRET || devViewerSecret;
  const cluster = await LocalCluster.start({ nodes: options.nodes, chains: options.chains, k: options.k, secret, dataDir: options.dataDir, log: options.log });
  await cluster.waitHealthy();
  const json = (res: http.ServerResponse, status: number, value: unknown): boolean => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    return true;
  };
  const api = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const url = new URL(req.url ?? '/', 'http://demo');
    const file = files[url.pathname];
    if (file !== undefined && req.method === 'GET') {
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'text/plain' }).end(readFileSync(path.join(publicDir, file)));
      return true;
    }
    if (url.pathname === '/api/token' && req.method === 'GET') {
      const viewer = url.searchParams.get('viewer') ?? '';
      if (!viewerPattern.test(viewer)) return json(res, 400, { error: `viewer names match ${viewerPattern}` });
      return json(res, 200, { token: mintToken(viewerSecret, viewer, 24 * 3_600_000) });
    }
    if (url.pathname === '/api/cluster' && req.method === 'GET') {
      const doc = url.searchParams.get('doc');
      const chain = doc === null ? undefined : chainOf(doc, chainIds(options.chains));
      return json(res, 200, {
        membership: cluster.manager.membership().map((m) => ({ ...m, pid: cluster.processes.get(m.node)?.child.pid, running: cluster.processes.get(m.node)?.child.exitCode === null })),
        chains: [...cluster.manager.configs.values()].map((c) => ({ chain: c.chain, epoch: c.epoch, members: c.members.map((m) => m.node) })),
        docChain: chain,
        forwardDelayMs: demoState.forwardDelayMs,
        events: cluster.events
          .slice(-12)
          .map((e) =>
            e.kind === 'member'
              ? `${new Date(e.at).toISOString().slice(11, 23)} ${e.node} ${e.state}`
              : e.kind === 'leadership'
                ? `${new Date(e.at).toISOString().slice(11, 23)} ${e.manager} ${e.leading ? 'leads' : 'stopped leading'} (${e.why})`
                : `${new Date(e.at).toISOString().slice(11, 23)} ${e.config.chain} epoch ${e.config.epoch}: ${e.config.members.map((m) => m.node).join(' > ')} (${e.why})`,
          ),
      });
    }
    if (url.pathname === '/api/latency' && req.method === 'POST') {
      void body(req).then(
        async (b) => {
          const ms = Number(b.ms);
          if (!Number.isInteger(ms) || ms < 0 || ms > 2_000) return json(res, 400, { error: 'ms is an integer from 0 to 2000' });
          demoState.forwardDelayMs = ms;
          await cluster.setForwardDelay(ms);
          return json(res, 200, { forwardDelayMs: ms });
        },
        (e: Error) => json(res, 400, { error: e.message }),
      );
      return true;
    }
    if (url.pathname === '/api/kill' && req.method === 'POST') {
      void body(req).then(
        async (b) => {
          const node = String(b.node);
          if (!cluster.processes.has(node)) return json(res, 404, { error: `no node ${node}` });
          await cluster.kill(node);
          options.log?.(`demo: SIGKILLed ${node}; restarting it in ${options.restartAfterMs} ms`);
          setTimeout(() => {
            void cluster.startNode(node).then(
              () => cluster.setForwardDelay(demoState.forwardDelayMs),
              (e: Error) => options.log?.(`demo: restarting ${node} failed: ${e.message}`),
            );
          }, options.restartAfterMs);
          return json(res, 200, { killed: node });
        },
        (e: Error) => json(res, 400, { error: e.message }),
      );
      return true;
    }
    return false;
  };
  const demoState = { forwardDelayMs: 0 };
  const proxy = await ProxyServer.start({ ...cluster.clientOptions, nodes: cluster.addresses, chains: options.chains, viewerSecret, port: options.port, http: api, log: options.log });
  return {
    url: proxy.url,
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
  const help = `usage: npm start -- [--nodes N] [--chains C] [--k K] [--port P] [--data DIR] [--restart-after-ms MS]

Starts a local cluster of N node processes (LevelDB under DIR, default ./data) with failure
detection and the automatic manager, the proxy, and the demo page; prints its URL. Ctrl-C
stops everything.`;
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
  const demo = await startDemo({
    nodes: Number(values.nodes),
    chains: Number(values.chains),
    k: Number(values.k),
    port: Number(values.port),
    dataDir: path.resolve(values.data as string),
    restartAfterMs: Number(values['restart-after-ms']),
    log: (line) => console.error(line),
  });
  console.log(`adama-chain demo: ${demo.url}  (${values.nodes} nodes, data in ${path.resolve(values.data as string)}; Ctrl-C stops)`);
  const stop = (): void => void demo.stop().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
