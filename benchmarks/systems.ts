// The systems under test, as processes started and stopped by the benchmark (chain nodes, the
// MySQL and in-memory baseline hosts), and the closed-loop load generator that drives them all
// through the chain head's client protocol.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { ChainClient, ChainSession } from '../chain/client.ts';
import { ChainManager, initialConfig } from '../chain/manager.ts';
import { spawnNode, type NodeProcess } from '../chain/processes.ts';

export const benchSecret = randomBytes(12).toString('hex');
export const benchOptions = { cluster: 'bench', secret: benchSecret };
const hostScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'baseline-host.ts');

export interface Started {
  readonly address: string;
  stop(): Promise<void>;
}

export async function startHost(mode: 'mysql' | 'memory'): Promise<Started> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', hostScript, '--mode', mode, '--cluster', 'bench'], { env: { ...process.env, ADAMA_CLUSTER_SECRET: benchSecret }, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`baseline host (${mode}) exited with ${code}`)));
  });
  const { address } = JSON.parse(line) as { address: string };
  return {
    address,
    stop: () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGTERM')))),
  };
}

export async function startChain(k: number, syncWrites = true): Promise<Started> {
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-bench-'));
  const nodes: NodeProcess[] = [];
  for (let i = 1; i <= k; i++) nodes.push(await spawnNode({ id: `n${i}`, dataDir: path.join(dir, `n${i}`), syncWrites, ...benchOptions }));
  const manager = new ChainManager(initialConfig('c1', nodes.map((n) => ({ node: n.id, address: n.address }))), benchOptions);
  await manager.push();
  const session = new ChainSession({ ...benchOptions, addresses: [nodes[0]?.address as string], chain: 'c1', clientId: 'warm' });
  await session.submit({ doc: 'warm', docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'w' });
  session.close();
  return {
    address: nodes[0]?.address as string,
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

/**
 * `clients` closed-loop clients for `seconds`, client i writing to document `prefix-(i % docs)`
 * (counter adds); latencies in microseconds go into `h`. Returns the commit count.
 */
export async function closedLoop(address: string, o: { clients: number; docs: number; seconds: number; prefix: string }, h: hdr.Histogram): Promise<number> {
  const conns = await Promise.all(Array.from({ length: o.clients }, () => ChainClient.connect(address, benchOptions)));
  const deadline = performance.now() + o.seconds * 1_000;
  let commits = 0;
  await Promise.all(
    conns.map(async (c, i) => {
      let seq = 1;
      while (performance.now() < deadline) {
        const start = performance.now();
        await c.submit({ chain: 'c1', doc: `${o.prefix}-${i % o.docs}`, docType: 'counter', channel: 'add', payload: { by: 1 }, clientId: `${o.prefix}-cl${i}`, clientSeq: seq++, viewer: `v${i}` });
        h.recordValue(Math.max(1, Math.round((performance.now() - start) * 1_000)));
        commits++;
      }
    }),
  );
  for (const c of conns) c.close();
  return commits;
}

/**
 * Like closedLoop, with each client subscribed (as its own viewer) to its own document first:
 * records the time from each submit to the first speculative view frame that follows it (in
 * `speculative`) and to the ack (in `committed`). One client per document, so the frame is
 * unambiguous. Chain heads only (the baseline hosts have no views).
 */
export async function closedLoopWithViews(address: string, o: { clients: number; seconds: number; prefix: string }, speculative: hdr.Histogram, committed: hdr.Histogram): Promise<number> {
  const conns = await Promise.all(Array.from({ length: o.clients }, () => ChainClient.connect(address, benchOptions)));
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
