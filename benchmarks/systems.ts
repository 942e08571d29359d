// The systems under test, as processes started and stopped by the benchmark (chain nodes, the
// MySQL and in-memory baseline hosts), and the closed-loop load generator that drives them all
// through the chain head's client protocol.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { assert } from '../engine/assert.ts';
import { ChainClient, type ClientOptions, nodeStatus, tcpSession } from '../chain/client/tcp.ts';
import type { Transport } from '../chain/runtime/credentials.ts';
import { initialConfig } from '../chain/control/decisions.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { spawnNode, type NodeProcess } from '../chain/tools/processes.ts';
import { pushConfig } from '../chain/tools/reconfigure.ts';
import { documentTypes, findDocumentType } from '../engine/documents/index.ts';
import type { Json } from '../engine/json.ts';
import { concreteOp, moveStream } from '../engine/workloads.ts';

export const benchSecret = randomBytes(12).toString('hex');
export const benchOptions = { cluster: 'bench', secret: benchSecret };
const hostScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'baseline-host.ts');

export interface Started {
  readonly address: string;
  /** Credentials of its clients (default benchOptions). */
  readonly client?: ClientOptions;
  /** The processes that serve this system (nodes, the host, and mariadbd for MySQL), for CPU accounting. */
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

export async function startHost(mode: 'mysql' | 'memory'): Promise<Started> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', hostScript, '--mode', mode, '--cluster', 'bench'], {
    env: { ...process.env, ADAMA_CLUSTER_SECRET: benchSecret },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`baseline host (${mode}) exited with ${code}`)));
  });
  const { address } = JSON.parse(line) as { address: string };
  const mysqlPid = mode === 'mysql' ? localMysqlPid() : undefined;
  return {
    address,
    pids: [child.pid as number, ...(mysqlPid === undefined ? [] : [mysqlPid])],
    names: [`host-${mode}`, ...(mysqlPid === undefined ? [] : [readFileSync(`/proc/${mysqlPid}/comm`, 'utf8').trim()])],
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** k node processes as one chain; transport plain is the comparison without TLS (issue 15's cost of TLS). */
export async function startChain(k: number, syncWrites = true, transport: Transport = 'tls'): Promise<Started> {
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
    client: options,
    pids: nodes.map((n) => n.child.pid as number),
    names: nodes.map((n) => `node-${n.id}`),
    async stop() {
      await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
      rmSync(dir, { recursive: true, force: true });
    },
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
 */
export async function openLoop(
  address: string,
  o: { rate: number; seconds: number; docs: number; connections: number; prefix: string; outstandingMax?: number; workload?: Workload; client?: ClientOptions },
  h: hdr.Histogram,
): Promise<OpenLoopResult> {
  const workload = o.workload ?? defaultWorkload;
  const sources = Array.from({ length: o.docs }, (_, d) => messageSource(workload, d + 1, 'open'));
  assert(o.rate > 0 && o.connections > 0 && o.docs > 0, 'openLoop: rate, connections and docs must be positive');
  const outstandingMax = o.outstandingMax ?? 4_096;
  const conns = await Promise.all(Array.from({ length: o.connections }, () => ChainClient.connect(address, o.client ?? benchOptions)));
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
      const p = (conns[i % conns.length] as ChainClient)
        .submit({ chain: 'c1', doc, docType: workload.docType, ...(sources[i % o.docs] as ReturnType<typeof messageSource>)(i), clientId, clientSeq })
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
 * (counter adds); latencies in microseconds go into `h`. Returns the commit count.
 */
export async function closedLoop(
  address: string,
  o: { clients: number; docs: number; seconds: number; prefix: string; workload?: Workload; client?: ClientOptions },
  h: hdr.Histogram,
): Promise<number> {
  const workload = o.workload ?? defaultWorkload;
  const conns = await Promise.all(Array.from({ length: o.clients }, () => ChainClient.connect(address, o.client ?? benchOptions)));
  const deadline = performance.now() + o.seconds * 1_000;
  let commits = 0;
  await Promise.all(
    conns.map(async (c, i) => {
      let seq = 1;
      const next = messageSource(workload, i + 1, `v${i}`);
      while (performance.now() < deadline) {
        const start = performance.now();
        await c.submit({ chain: 'c1', doc: `${o.prefix}-${i % o.docs}`, docType: workload.docType, ...next(seq), clientId: `${o.prefix}-cl${i}`, clientSeq: seq++ });
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
  const commits = await closedLoop(s.address, { ...o, client: s.client }, h);
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
 * unambiguous. Chain heads only (the baseline hosts have no views).
 */
export async function closedLoopWithViews(
  address: string,
  o: { clients: number; seconds: number; prefix: string; client?: ClientOptions },
  speculative: hdr.Histogram,
  committed: hdr.Histogram,
): Promise<number> {
  const conns = await Promise.all(Array.from({ length: o.clients }, () => ChainClient.connect(address, o.client ?? benchOptions)));
  let commits = 0;
  await Promise.all(
    conns.map(async (c, i) => {
      const doc = `${o.prefix}-${i}`;
      let waiting: ((at: number) => void) | undefined;
      await c.subscribe({ chain: 'c1', doc, docType: 'counter', viewer: `v${i}` }, (u) => {
        if (u.kind === 'speculative' && waiting !== undefined) {
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
        await c.submit({ chain: 'c1', doc, docType: 'counter', channel: 'add', payload: { by: 1 }, clientId: `${o.prefix}-cl${i}`, clientSeq: seq++, viewer: `v${i}` });
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
