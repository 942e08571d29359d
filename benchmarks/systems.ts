// The systems under test, as processes started and stopped by the benchmark (chain nodes, the
// MySQL, PostgreSQL and in-memory baseline hosts, the proxy tier in front of a chain), and the
// load generators that drive them all: through the chain head's client protocol, or, for a
// chain via the proxy, through the proxy's WebSocket protocol (proxy/PROTOCOL.md) as browsers do.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { assert } from '../engine/assert.ts';
import { ChainClient, type ClientOptions, nodeStatus, tcpSession } from '../chain/client/tcp.ts';
import { deriveKeyring, type Transport } from '../chain/runtime/credentials.ts';
import { initialConfig } from '../chain/control/decisions.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { spawnNode, type NodeProcess } from '../chain/tools/processes.ts';
import { pushConfig } from '../chain/tools/reconfigure.ts';
import { documentTypes, findDocumentType } from '../engine/documents/index.ts';
import type { Json } from '../engine/json.ts';
import { concreteOp, moveStream } from '../engine/workloads.ts';
import { type BaselineMode, baselineTable, databaseOf, type PgSync } from './baselines.ts';
import { mintToken } from '../proxy/tokens.ts';
import { ProxySocket } from './proxy-client.ts';

export const benchSecret = randomBytes(12).toString('hex');
export const benchOptions = { cluster: 'bench', secret: benchSecret };
/** The secret the generator signs its viewer tokens with, and the bench's proxy verifies them with. */
export const benchViewerSecret = randomBytes(24).toString('base64url');
const here = path.dirname(fileURLToPath(import.meta.url));
const hostScript = path.join(here, 'baseline-host.ts');
const proxyScript = path.join(here, 'proxy-host.ts');
/** Lifetime of the generator's viewer tokens: longer than any scenario. */
const benchTokenTtlMs = 3_600_000;

export interface Started {
  /** host:port of the chain head protocol, or the proxy's ws:// URL (protocol proxy). */
  readonly address: string;
  /** Every node's address, head first (chain systems: status queries, the proxy's seeds). */
  readonly addresses?: readonly string[];
  /** How the generator reaches it: the chain head protocol (default), or the proxy's WebSocket protocol. */
  readonly protocol?: 'chain' | 'proxy';
  /** Protocol proxy: the secret the generator signs each connection's viewer token with. */
  readonly viewerSecret?: string;
  /** Credentials of its clients (default benchOptions). */
  readonly client?: ClientOptions;
  /** The processes that serve this system (nodes, the host, the proxy, and mariadbd or the postgres processes), for CPU accounting. */
  readonly pids: readonly number[];
  /** A name for each of `pids`, same order (node-n1, host-mysql, mariadbd): their cgroups under --per-node-cpu. */
  readonly names?: readonly string[];
  stop(): Promise<void>;
}

/** The pid of the local MySQL server, when it runs on this machine (for CPU accounting). */
export function localMysqlPid(): number | undefined {
  for (const name of ['mariadbd', 'mysqld']) {
    try {
      const pid = Number(execFileSync('pidof', ['-s', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      if (Number.isInteger(pid) && pid > 0) return pid;
    } catch {
      // not running under this name
    }
  }
  return undefined;
}

/** CPU seconds (user + system) used so far by the processes `pids`, from /proc; NaN where unreadable. */
export function cpuSeconds(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
    } catch {
      return Number.NaN;
    }
  }
  return total;
}
const clockTicksPerSecond = 100;

/**
 * The processes of the local PostgreSQL cluster, for CPU accounting: each postmaster (a
 * `postgres` process whose parent is not one) and its long-lived children (the auxiliary
 * processes and the backends connected now). Transient workers (autovacuum, parallel query)
 * are left out: one that exits would make the whole sum unreadable. Read it once the clients
 * to account for are connected; backends that start later are not in it.
 */
export function localPostgresPids(): number[] {
  const procs = new Map<number, { ppid: number; cmdline: string }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== 'postgres') continue;
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      procs.set(Number(entry), { ppid, cmdline: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ') });
    } catch {
      // exited while listed
    }
  }
  const roots = [...procs].filter(([, p]) => !procs.has(p.ppid)).map(([pid]) => pid);
  const transient = /autovacuum worker|parallel worker|logical replication worker|walsender/;
  return [...procs].filter(([pid, p]) => roots.includes(pid) || (roots.includes(p.ppid) && !transient.test(p.cmdline))).map(([pid]) => pid);
}

export interface HostOptions {
  /** PostgreSQL's synchronous_commit for the pg modes (default on). */
  readonly pgSync?: PgSync;
  /** Default: the mode's own table (baselineTable). */
  readonly table?: string;
}

/** A child that has not said it is listening this long after it was spawned is killed. */
const listeningTimeoutMs = 30_000;

/**
 * Runs `script` (tsx) with `args` and `env` (the parent's ADAMA_ secrets and keys are not
 * passed on); resolves once it printed its {"event":"listening","address":...} line.
 */
async function spawnListening(what: string, script: string, args: readonly string[], env: Record<string, string>): Promise<{ address: string; pid: number; stop(): Promise<void> }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^ADAMA_(.*_)?(SECRET|KEY)$/.test(name)));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script, ...args], { env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not say it was listening within ${listeningTimeoutMs} ms`));
    }, listeningTimeoutMs);
    rl.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}`));
    });
  });
  const { address } = JSON.parse(line) as { address: string };
  return {
    address,
    pid: child.pid as number,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export async function startHost(mode: BaselineMode, o: HostOptions = {}): Promise<Started> {
  const database = databaseOf(mode);
  const args = ['--mode', mode, '--cluster', 'bench', '--table', o.table ?? baselineTable(mode), ...(database === 'pg' ? ['--pg-sync', o.pgSync ?? 'on'] : [])];
  const host = await spawnListening(`baseline host (${mode})`, hostScript, args, { ADAMA_CLUSTER_SECRET: benchSecret });
  // The host opens its PostgreSQL connections before it listens, so their backends are in the list.
  const mysqlPid = database === 'mysql' ? localMysqlPid() : undefined;
  const databasePids = database === 'pg' ? localPostgresPids() : mysqlPid === undefined ? [] : [mysqlPid];
  const databaseNames = database === 'pg' ? databasePids.map((pid) => `postgres-${pid}`) : databasePids.map((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
  return { address: host.address, pids: [host.pid, ...databasePids], names: [`host-${mode}`, ...databaseNames], stop: host.stop };
}

/** k node processes as one chain; transport plain is the comparison without TLS (issue 15's cost of TLS). */
export async function startChain(k: number, syncWrites = true, transport: Transport = 'tls'): Promise<Started & { readonly addresses: readonly string[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-bench-'));
  const nodes: NodeProcess[] = [];
  const options = { ...benchOptions, transport };
  for (let i = 1; i <= k; i++) nodes.push(await spawnNode({ id: `n${i}`, dataDir: path.join(dir, `n${i}`), syncWrites, ...options }));
  const pushed = await pushConfig(
    initialConfig(
      'c1',
      nodes.map((n) => ({ node: n.id, address: n.address })),
    ),
    [],
    options,
  );
  if (pushed.missing.length > 0) throw new Error(`configure failed: ${pushed.missing.join(', ')} did not acknowledge`);
  const session = tcpSession({ ...options, addresses: [nodes[0]?.address as string], chain: 'c1', clientId: 'warm' });
  await session.submit({ doc: 'warm', docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'w' });
  session.close();
  return {
    address: nodes[0]?.address as string,
    addresses: nodes.map((n) => n.address),
    client: options,
    pids: nodes.map((n) => n.child.pid as number),
    names: nodes.map((n) => `node-${n.id}`),
    async stop() {
      await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A k-node chain (startChain) behind the proxy tier, the product's client path: the proxy is
 * its own process (benchmarks/proxy-host.ts, holding the client role key only) that finds the
 * head by asking the nodes, and the generator talks WebSocket to it with signed viewer tokens.
 * `pids` are the nodes' and the proxy's.
 */
export async function startChainViaProxy(k: number): Promise<Started> {
  const chain = await startChain(k);
  let proxy: Awaited<ReturnType<typeof spawnListening>> | undefined;
  try {
    // The proxy gets the client role key only, never the cluster secret.
    const env = { ADAMA_CLIENT_KEY: deriveKeyring(benchSecret, benchOptions.cluster).client, ADAMA_VIEWER_SECRET: benchViewerSecret };
    const p = await spawnListening('proxy host', proxyScript, ['--nodes', chain.addresses.join(','), '--chains', '1', '--cluster', benchOptions.cluster], env);
    proxy = p;
    const started: Started = {
      address: p.address,
      protocol: 'proxy',
      viewerSecret: benchViewerSecret,
      pids: [...chain.pids, p.pid],
      names: [...(chain.names ?? chain.pids.map((_, i) => `node-n${i + 1}`)), 'proxy'],
      async stop() {
        await p.stop();
        await chain.stop();
      },
    };
    // Warm the proxy's path (the head lookup, its pooled link) before anything is measured.
    const warm = await connector(started)('warm');
    try {
      await warm.submit({ doc: 'warm', docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'warm', clientId: 'warm', clientSeq: 1 });
    } finally {
      warm.close();
    }
    return started;
  } catch (error) {
    await proxy?.stop();
    await chain.stop();
    throw error;
  }
}

/** One connection of the load generator, whichever protocol it speaks. */
export interface LoadConnection {
  /** Resolves once the message is committed (acked). Over the proxy, viewer and clientId are the connection's (its token and hello). */
  submit(m: { doc: string; docType: string; channel: string; payload: Json; viewer: string; clientId: string; clientSeq: number }): Promise<unknown>;
  /** Subscribes `viewer` to `doc`; resolves with the first (full) view; `onSpeculative` runs at each speculative frame after it. */
  subscribe(doc: string, docType: string, viewer: string, onSpeculative: () => void): Promise<unknown>;
  close(): void;
}

/**
 * How the generator opens its connections to `target`: `connect(name)` gives one connection;
 * over the proxy, `name` is its viewer (a token is signed for it) and its clientId, so each
 * connection is its own viewer, as one browser tab is. Over the chain protocol the messages
 * carry their own viewer and clientId and `name` is unused.
 */
export function connector(target: string | Started, client?: ClientOptions): (name: string) => Promise<LoadConnection> {
  if (typeof target !== 'string' && target.protocol === 'proxy') {
    const secret = target.viewerSecret;
    assert(secret !== undefined, 'connector: a proxy system needs its viewerSecret');
    return async (name) => {
      const socket = await ProxySocket.connect(target.address, mintToken(secret, name, benchTokenTtlMs), name);
      return {
        submit: (m) => socket.send({ doc: m.doc, docType: m.docType, channel: m.channel, payload: m.payload, clientSeq: m.clientSeq }),
        subscribe: (doc, docType, _viewer, onSpeculative) =>
          socket.subscribe(doc, docType, (v) => {
            if (v.kind === 'speculative') onSpeculative();
          }),
        close: () => socket.close(),
      };
    };
  }
  const address = typeof target === 'string' ? target : target.address;
  const options = client ?? (typeof target === 'string' ? undefined : target.client) ?? benchOptions;
  return async () => {
    const c = await ChainClient.connect(address, options);
    return {
      submit: (m) => c.submit({ chain: 'c1', ...m }),
      subscribe: (doc, docType, viewer, onSpeculative) =>
        c.subscribe({ chain: 'c1', doc, docType, viewer }, (u) => {
          if (u.kind === 'speculative') onSpeculative();
        }),
      close: () => c.close(),
    };
  };
}

export function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

/** Milliseconds at percentile `q` of a histogram of microseconds. */
export function percentileMs(h: hdr.Histogram, q: number): number {
  return Number((h.getValueAtPercentile(q) / 1_000).toFixed(3));
}

/** What the load generator sends: a document type, and either one simple valid message per type or the engine's workload mix. */
export interface Workload {
  readonly docType: string;
  /** simple: counter add, chat say, poll vote, card-table sit. workload: engine/workloads.ts moves (legal and illegal, several channels and viewers). */
  readonly mix: 'simple' | 'workload';
}
export const defaultWorkload: Workload = { docType: 'counter', mix: 'simple' };
export const workloadMixes = ['simple', 'workload'] as const;

const simpleMessages: Readonly<Record<string, (nonce: number) => { channel: string; payload: Json }>> = {
  counter: () => ({ channel: 'add', payload: { by: 1 } }),
  chat: (nonce) => ({ channel: 'say', payload: { text: `m${nonce}` } }),
  poll: (nonce) => ({ channel: 'vote', payload: { choice: nonce % 3 } }),
  'card-table': () => ({ channel: 'sit', payload: {} }),
};

/**
 * The message source for one client: `next(nonce)` gives the next message. The workload mix
 * picks moves against an empty state (the generator does not track the document), so moves
 * that need state (a card from one's hand) come out illegal and are answered with an error
 * outcome, which is still a committed message.
 */
export function messageSource(w: Workload, seed: number, viewer: string): (nonce: number) => { channel: string; payload: Json; viewer: string } {
  if (findDocumentType(w.docType) === undefined) throw new Error(`unknown document type ${w.docType}; one of: ${[...documentTypes.keys()].join(', ')}`);
  if (w.mix === 'simple') {
    const make = simpleMessages[w.docType];
    if (make === undefined) throw new Error(`no simple message for ${w.docType}; use --mix workload`);
    return (nonce) => ({ ...make(nonce), viewer });
  }
  const moves = moveStream(seed);
  return (nonce) => {
    const op = concreteOp(w.docType, {}, moves(), nonce);
    return { channel: op.channel, payload: op.payload, viewer: op.viewer };
  };
}

/** Percentiles at which a CDF is sampled: dense in the tail (up to p99.99). */
export const cdfPercentiles: readonly number[] = [0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 98, 99, 99.5, 99.9, 99.95, 99.99, 100];

/** The histogram's latency distribution as [percentile, milliseconds] points. */
export function cdfPoints(h: hdr.Histogram): [number, number][] {
  return cdfPercentiles.map((q) => [q, percentileMs(h, q === 0 ? 0.0001 : q)]);
}

export interface OpenLoopResult {
  /** Requests sent on schedule. */
  readonly sent: number;
  readonly committed: number;
  /** Requests not sent because outstandingMax were already in flight (the system fell behind). */
  readonly refused: number;
  readonly failed: number;
}

/**
 * Open loop at a fixed rate: request i is due at start + i / rate, whatever happened to earlier
 * ones, spread over `connections` pipelined connections and `docs` documents. Latency is taken
 * from the request's due time (not its send time), so a system that falls behind is charged for
 * the queueing it causes (no coordinated omission). At most `outstandingMax` requests are in
 * flight; a request due beyond that is counted as refused, never queued without bound.
 *
 * Over the proxy the same `connections` WebSockets are pipelined too (PROTOCOL.md allows
 * inflightMax unacknowledged sends per connection; the bench's proxy raises it to the
 * outstanding bound), each its own viewer and clientId; a document's clientSeqs still increase
 * per connection, which is all the chain's dedupe asks.
 */
export async function openLoop(
  target: string | Started,
  o: { rate: number; seconds: number; docs: number; connections: number; prefix: string; outstandingMax?: number; workload?: Workload; client?: ClientOptions },
  h: hdr.Histogram,
): Promise<OpenLoopResult> {
  const workload = o.workload ?? defaultWorkload;
  const sources = Array.from({ length: o.docs }, (_, d) => messageSource(workload, d + 1, 'open'));
  assert(o.rate > 0 && o.connections > 0 && o.docs > 0, 'openLoop: rate, connections and docs must be positive');
  const outstandingMax = o.outstandingMax ?? 4_096;
  const connect = connector(target, o.client);
  const conns = await Promise.all(Array.from({ length: o.connections }, (_, c) => connect(`${o.prefix}-o${c}`)));
  const total = Math.round(o.rate * o.seconds);
  const seqs = new Map<string, number>();
  let sent = 0;
  let committed = 0;
  let refused = 0;
  let failed = 0;
  const inflight = new Set<Promise<void>>();
  const start = performance.now();
  while (sent + refused < total) {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) * o.rate) / 1_000) + 1);
    for (let i = sent + refused; i < due; i++) {
      if (inflight.size >= outstandingMax) {
        refused++;
        continue;
      }
      const dueAt = start + (i * 1_000) / o.rate;
      const doc = `${o.prefix}-${i % o.docs}`;
      const clientId = `${o.prefix}-${doc}`;
      const clientSeq = (seqs.get(clientId) ?? 0) + 1;
      seqs.set(clientId, clientSeq);
      sent++;
      const p = (conns[i % conns.length] as LoadConnection)
        .submit({ doc, docType: workload.docType, ...(sources[i % o.docs] as ReturnType<typeof messageSource>)(i), clientId, clientSeq })
        .then(
          () => {
            h.recordValue(Math.max(1, Math.round((performance.now() - dueAt) * 1_000)));
            committed++;
          },
          () => void failed++,
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inflight);
  for (const c of conns) c.close();
  assert(sent + refused === total && committed + failed === sent, 'openLoop: every due request is sent or refused, and every sent one answered');
  return { sent, committed, refused, failed };
}

/**
 * `clients` closed-loop clients for `seconds`, client i writing to document `prefix-(i % docs)`
 * (counter adds); latencies in microseconds go into `h`. Returns the commit count. Over the
 * proxy each client is one WebSocket with its own viewer token, waiting for each ack; the
 * viewer is then the token's, so the workload mix's several viewers per client become one.
 */
export async function closedLoop(
  target: string | Started,
  o: { clients: number; docs: number; seconds: number; prefix: string; workload?: Workload; client?: ClientOptions },
  h: hdr.Histogram,
): Promise<number> {
  const workload = o.workload ?? defaultWorkload;
  const connect = connector(target, o.client);
  const conns = await Promise.all(Array.from({ length: o.clients }, (_, i) => connect(`${o.prefix}-v${i}`)));
  const deadline = performance.now() + o.seconds * 1_000;
  let commits = 0;
  await Promise.all(
    conns.map(async (c, i) => {
      let seq = 1;
      const next = messageSource(workload, i + 1, `v${i}`);
      while (performance.now() < deadline) {
        const start = performance.now();
        await c.submit({ doc: `${o.prefix}-${i % o.docs}`, docType: workload.docType, ...next(seq), clientId: `${o.prefix}-cl${i}`, clientSeq: seq++ });
        h.recordValue(Math.max(1, Math.round((performance.now() - start) * 1_000)));
        commits++;
      }
    }),
  );
  for (const c of conns) c.close();
  return commits;
}

/** closedLoop against a started system, with the CPU seconds its processes and this process (the load generator) spent meanwhile, and the wall time. */
export async function measuredClosedLoop(
  s: Started,
  o: { clients: number; docs: number; seconds: number; prefix: string; workload?: Workload },
  h: hdr.Histogram,
): Promise<{ commits: number; serverCpuSeconds: number; generatorCpuSeconds: number; wallSeconds: number }> {
  const serverBefore = cpuSeconds(s.pids);
  const generatorBefore = process.cpuUsage();
  const start = performance.now();
  const commits = await closedLoop(s, { ...o, client: s.client }, h);
  const generator = process.cpuUsage(generatorBefore);
  return {
    commits,
    serverCpuSeconds: cpuSeconds(s.pids) - serverBefore,
    generatorCpuSeconds: (generator.user + generator.system) / 1e6,
    // Longer than o.seconds: the connections' handshakes and the answers still in flight at the deadline.
    wallSeconds: (performance.now() - start) / 1_000,
  };
}

/**
 * Like closedLoop, with each client subscribed (as its own viewer) to its own document first:
 * records the time from each submit to the first speculative view frame that follows it (in
 * `speculative`) and to the ack (in `committed`). One client per document, so the frame is
 * unambiguous. Chains only, directly or via the proxy, which forwards speculative frames (the
 * baseline hosts have no views).
 */
export async function closedLoopWithViews(
  target: string | Started,
  o: { clients: number; seconds: number; prefix: string; client?: ClientOptions },
  speculative: hdr.Histogram,
  committed: hdr.Histogram,
): Promise<number> {
  const connect = connector(target, o.client);
  const conns = await Promise.all(Array.from({ length: o.clients }, (_, i) => connect(`${o.prefix}-v${i}`)));
  let commits = 0;
  await Promise.all(
    conns.map(async (c, i) => {
      const doc = `${o.prefix}-${i}`;
      let waiting: ((at: number) => void) | undefined;
      await c.subscribe(doc, 'counter', `v${i}`, () => {
        if (waiting !== undefined) {
          const w = waiting;
          waiting = undefined;
          w(performance.now());
        }
      });
      const deadline = performance.now() + o.seconds * 1_000;
      let seq = 1;
      while (performance.now() < deadline) {
        const start = performance.now();
        const seen = new Promise<number>((resolve) => (waiting = resolve));
        await c.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 1 }, clientId: `${o.prefix}-cl${i}`, clientSeq: seq++, viewer: `v${i}` });
        const acked = performance.now();
        committed.recordValue(Math.max(1, Math.round((acked - start) * 1_000)));
        const at = await Promise.race([seen, new Promise<number>((resolve) => setTimeout(() => resolve(Number.NaN), 1_000))]);
        if (Number.isFinite(at)) speculative.recordValue(Math.max(1, Math.round((at - start) * 1_000)));
        commits++;
      }
    }),
  );
  for (const c of conns) c.close();
  return commits;
}

export interface FailoverTimeline {
  readonly nodes: number;
  readonly k: number;
  readonly clients: number;
  readonly bucketMs: number;
  /** Commits per second in each bucket, by the time the ack arrived (ms since the load began). */
  readonly buckets: { readonly tMs: number; readonly commitsPerSecond: number }[];
  readonly victim: string;
  readonly killAtMs: number;
  readonly detectedAtMs: number;
  readonly reconfiguredAtMs: number;
  /** From the kill to the ack of the first message sent after it. */
  readonly firstCommitAfterKillMs: number;
  readonly commits: number;
  readonly ackedLost: number;
}

/**
 * Throughput over time with the head killed in the middle: a real cluster (`nodes` processes,
 * one chain of k, SWIM and the automatic manager), `clients` closed-loop sessions on their own
 * documents; at seconds / 2 the head is SIGKILLed. Commits are counted per bucket by ack time.
 * At the end every counter must hold at least its acknowledged adds.
 */
export async function failoverTimeline(o: { nodes: number; k: number; clients: number; seconds: number; bucketMs: number; log?: (line: string) => void }): Promise<FailoverTimeline> {
  const cluster = await LocalCluster.start({ nodes: o.nodes, chains: 1, k: o.k, secret: benchSecret, cluster: 'bench-failover' });
  try {
    await cluster.waitHealthy();
    const acks: number[] = [];
    let firstCommitAfterKillMs = -1;
    let killAtMs = Number.POSITIVE_INFINITY;
    const acked = new Map<string, number>();
    let loading = true;
    const start = performance.now();
    const loops = Array.from({ length: o.clients }, async (_, i) => {
      const doc = `tl-${i}`;
      const session = cluster.session(doc, `timeline-${i}`);
      while (loading) {
        try {
          const sentAt = performance.now() - start;
          await session.submit({ doc, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'bench' });
          const at = performance.now() - start;
          if (sentAt > killAtMs && firstCommitAfterKillMs < 0) firstCommitAfterKillMs = Math.round(at - killAtMs);
          acks.push(at);
          acked.set(doc, (acked.get(doc) ?? 0) + 1);
        } catch (error) {
          o.log?.(`${doc}: ${(error as Error).message}`);
        }
      }
      session.close();
    });
    await new Promise((resolve) => setTimeout(resolve, (o.seconds * 1_000) / 2));
    const config = cluster.manager.configs.get('c1');
    assert(config !== undefined, 'failoverTimeline: the manager has no configuration for c1');
    const victim = config.members[0]?.node as string;
    const killWall = Date.now();
    killAtMs = performance.now() - start;
    await cluster.kill(victim);
    o.log?.(`killed the head ${victim} at ${(killAtMs / 1_000).toFixed(1)} s`);
    await new Promise((resolve) => setTimeout(resolve, (o.seconds * 1_000) / 2));
    loading = false;
    await Promise.all(loops);
    const endMs = performance.now() - start;
    const sinceKill = (wall: number | undefined): number => (wall === undefined ? -1 : Math.round(killAtMs + wall - killWall));
    const detectedAtMs = sinceKill(cluster.events.find((e) => e.kind === 'member' && e.node === victim && e.state === 'dead' && e.at >= killWall)?.at);
    const reconfiguredAtMs = sinceKill(cluster.events.find((e) => e.kind === 'configured' && e.at >= killWall && !e.config.members.some((m) => m.node === victim))?.at);
    // Whole buckets only: a last, partial bucket would read as a drop in throughput.
    const bucketsN = Math.floor(endMs / o.bucketMs);
    const counts = new Array<number>(bucketsN).fill(0);
    for (const at of acks) {
      const b = Math.floor(at / o.bucketMs);
      if (b < bucketsN) counts[b] = (counts[b] as number) + 1;
    }
    const buckets = counts.map((n, i) => ({ tMs: i * o.bucketMs, commitsPerSecond: Math.round((n * 1_000) / o.bucketMs) }));
    // No acknowledged message lost: each counter holds at least its acked adds, read at the head.
    const head = cluster.manager.configs.get('c1')?.members[0]?.address as string;
    const st = await nodeStatus(head, cluster.adminOptions, { includeState: true });
    let ackedLost = 0;
    for (const [doc, n] of acked) {
      const value = ((st.chains.find((c) => c.chain === 'c1')?.docs.find((d) => d.doc === doc)?.state ?? {}) as { value?: number }).value ?? 0;
      ackedLost += Math.max(0, n - value);
    }
    return {
      nodes: o.nodes,
      k: o.k,
      clients: o.clients,
      bucketMs: o.bucketMs,
      buckets,
      victim,
      killAtMs: Math.round(killAtMs),
      detectedAtMs,
      reconfiguredAtMs,
      firstCommitAfterKillMs,
      commits: acks.length,
      ackedLost,
    };
  } finally {
    await cluster.stop();
  }
}
