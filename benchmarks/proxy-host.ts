// The proxy tier as its own process, for the benchmark (`chain k=3 via proxy`): a ProxyServer
// routing to the chain whose nodes are given, with the client role key only (as a production
// proxy holds it) and a viewer secret for the tokens the load generator signs. Its own process,
// so its CPU is counted apart from the nodes' and the generator's (and can get its own cgroup).
//
//   tsx benchmarks/proxy-host.ts --nodes HOST:PORT[,HOST:PORT...] [--chains N] [--cluster C] [--port P] [--transport tls|plain]
//
// Credentials from the environment: ADAMA_CLIENT_KEY (or ADAMA_CLUSTER_SECRET to derive it)
// and ADAMA_VIEWER_SECRET ("secret" or "kid:secret,..."). The first stdout line is JSON:
// {"event":"listening","address":"ws://127.0.0.1:PORT/ws","pid":PID}. SIGTERM stops it.

import { keysFromEnv } from '../chain/runtime/credentials.ts';
import { ProxyServer, type ProxyLimits } from '../proxy/server.ts';
import { parseViewerSecrets } from '../proxy/tokens.ts';
import { parseArgs } from './report.ts';

/**
 * The benchmark's limits, raised through the proxy's own options and for this process only:
 * one closed-loop client acknowledged in about a millisecond sends some 1,000 messages a
 * second, over the default messagesPerSecondMax (200), and the open loop pipelines up to its
 * outstanding bound (4,096) over 8 connections, over the default inflightMax (64). The
 * generator's clients are well behaved; these bounds are for hostile ones, which a benchmark
 * has none of. Everything else (frame sizes, tokens, clientIds per viewer) stays the default.
 */
export const benchProxyLimits: Partial<ProxyLimits> = Object.freeze({
  messagesPerSecondMax: 1_000_000,
  viewerMessagesPerSecondMax: 1_000_000,
  inflightMax: 4_096,
});

const help = `usage: tsx benchmarks/proxy-host.ts --nodes HOST:PORT[,HOST:PORT...] [--chains N] [--cluster C] [--port P] [--transport tls|plain]

Starts the proxy (proxy/server.ts) with the benchmark's limits against the chain nodes given
(any reachable node answers the head lookup). Needs ADAMA_CLIENT_KEY or ADAMA_CLUSTER_SECRET,
and ADAMA_VIEWER_SECRET. Prints {"event":"listening","address":"ws://...","pid":...}.`;
const addressPattern = /^[A-Za-z0-9.-]{1,253}:\d{1,5}$/;
/** Bound on --chains (as many as the placement would ever be asked for in a benchmark). */
const chainsMax = 1_024;

function fail(message: string): never {
  console.error(`proxy-host: ${message}\n\n${help}`);
  process.exit(2);
}

// The benchmarks' own argument parser (report.ts): --help, unknown arguments and missing values.
const given = parseArgs(process.argv.slice(2), help, { nodes: 'string', chains: 'string', cluster: 'string', port: 'string', transport: 'string' });
const values: Record<string, string | number | boolean | undefined> = { chains: '1', cluster: 'bench', port: '0', transport: 'tls', ...given };
const nodes = String(values.nodes ?? '')
  .split(',')
  .filter((a) => a !== '');
if (nodes.length === 0 || !nodes.every((a) => addressPattern.test(a))) fail('--nodes is a comma-separated list of HOST:PORT');
const chains = Number(values.chains);
if (!Number.isInteger(chains) || chains < 1 || chains > chainsMax) fail(`--chains is an integer from 1 to ${chainsMax}`);
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65_535) fail('--port is an integer from 0 to 65535');
const transport = values.transport;
if (transport !== 'tls' && transport !== 'plain') fail('--transport is tls or plain');
const cluster = String(values.cluster);

let proxy: ProxyServer;
try {
  const keys = keysFromEnv(process.env, cluster, ['client'], { dev: false, warn: (line) => console.error(`proxy-host: ${line}`) });
  const viewerText = process.env.ADAMA_VIEWER_SECRET;
  if (viewerText === undefined || viewerText === '') fail('set ADAMA_VIEWER_SECRET (the secret the tokens are signed with)');
  proxy = await ProxyServer.start({
    cluster,
    keys,
    transport,
    nodes,
    chains,
    name: 'bench-proxy',
    viewerSecrets: parseViewerSecrets(viewerText).keyring,
    port,
    limits: benchProxyLimits,
    log: (line) => console.error(`proxy-host: ${line}`),
  });
} catch (error) {
  fail((error as Error).message);
}
console.log(JSON.stringify({ event: 'listening', address: `ws://127.0.0.1:${proxy.port}/ws`, pid: process.pid }));
const stop = (): void => void proxy.stop().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
