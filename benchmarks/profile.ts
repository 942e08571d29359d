// npm run profile: where a chain's CPU goes. Runs k node processes with V8's sampling profiler
// (--cpu-prof), drives them with closed-loop clients over many documents, stops them cleanly
// (the profiles are written at exit), and sums each node's self time by category: socket
// writes, TLS, LevelDB, protobuf, JSON, the replica, the runtime, the engine, GC, startup.
// Prints a table and writes benchmarks/results/profile-k<K>[-plain].json.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initialConfig } from '../chain/control/decisions.ts';
import type { Transport } from '../chain/runtime/credentials.ts';
import { spawnNode, type NodeProcess } from '../chain/tools/processes.ts';
import { pushConfig } from '../chain/tools/reconfigure.ts';
import { type CpuProfile, categorize } from './cpu-profile.ts';
import { parseArgs, printTable, writeResults } from './report.ts';
import { benchOptions, closedLoop, histogram, percentileMs } from './systems.ts';

const usage = `usage: npm run profile -- [--k K] [--clients N] [--seconds S] [--transport tls|plain]

Profiles a chain of K node processes (default 3) under N closed-loop clients (default 64), one
document each, for S seconds (default 10) after a 2 s warm-up, with V8's CPU profiler in every
node. Prints each node's busy time by category (self time; "other" is itemised in the JSON);
writes benchmarks/results/profile-k<K>.json (-plain with --transport plain). The shares say
where the time goes; how much (CPU per commit) is npm run bench's serverCpuUs.`;

const a = parseArgs(process.argv.slice(2), usage, { k: 'number', clients: 'number', seconds: 'number', transport: 'string' });
const k = (a.k as number | undefined) ?? 3;
const clients = (a.clients as number | undefined) ?? 64;
const seconds = (a.seconds as number | undefined) ?? 10;
const transport = ((a.transport as string | undefined) ?? 'tls') as Transport;
if (transport !== 'tls' && transport !== 'plain') {
  console.error(`--transport is tls or plain\n\n${usage}`);
  process.exit(2);
}

const root = mkdtempSync(path.join(tmpdir(), 'adama-profile-'));
const options = { ...benchOptions, transport };
const nodes: NodeProcess[] = [];
try {
  for (let i = 1; i <= k; i++) {
    const profDir = path.join(root, `prof-n${i}`);
    mkdirSync(profDir, { recursive: true });
    nodes.push(await spawnNode({ id: `n${i}`, dataDir: path.join(root, `n${i}`), ...options, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] }));
  }
  const pushed = await pushConfig(
    initialConfig(
      'c1',
      nodes.map((n) => ({ node: n.id, address: n.address })),
    ),
    [],
    options,
  );
  if (pushed.missing.length > 0) throw new Error(`configure failed: ${pushed.missing.join(', ')}`);
  const head = nodes[0]?.address as string;
  console.error(`[profile] k=${k} (${transport}), ${clients} clients: warm-up 2 s, then ${seconds} s`);
  const warm = await closedLoop(head, { clients, docs: clients, seconds: 2, prefix: 'warm', client: options }, histogram());
  const h = histogram();
  const commits = await closedLoop(head, { clients, docs: clients, seconds, prefix: 'load', client: options }, h);
  await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
  const rows: Record<string, string | number>[] = [];
  const perNode: Record<string, unknown>[] = [];
  for (const n of nodes) {
    const dir = path.join(root, `prof-${n.id}`);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error(`${n.id} wrote no profile`);
    const { categories: cats, other } = categorize(JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile);
    const startup = cats.get('startup (tsx, module loading)') ?? 0;
    const busy = [...cats].filter(([c]) => c !== 'idle').reduce((s, [, us]) => s + us, 0) - startup;
    const shares = Object.fromEntries(
      [...cats]
        .filter(([c]) => c !== 'idle' && c !== 'startup (tsx, module loading)')
        .sort((x, y) => y[1] - x[1])
        .map(([c, us]) => [c, Number(((100 * us) / busy).toFixed(1))]),
    );
    const otherTop = Object.fromEntries(
      [...other]
        .sort((x, y) => y[1] - x[1])
        .slice(0, 8)
        .map(([f, us]) => [f, Number(((100 * us) / busy).toFixed(1))]),
    );
    perNode.push({ node: n.id, busyMs: Math.round(busy / 1_000), startupMs: Math.round(startup / 1_000), sharePercent: shares, otherTopPercent: otherTop });
    for (const [c, share] of Object.entries(shares)) rows.push({ node: n.id, category: c, 'share %': share as number });
  }
  printTable(rows);
  // The profiles cover each process's whole life (startup, warm-up, the stop) and carry the
  // profiler's own overhead: their shares say where the time goes, npm run bench says how much.
  console.log(
    `\n${commits} commits in ${seconds} s (p50 ${percentileMs(h, 50)} ms; ${warm} more in the warm-up); shares are of each node's busy time without startup. CPU per commit: npm run bench (serverCpuUs).`,
  );
  const out = writeResults(`profile-k${k}${transport === 'plain' ? '-plain' : ''}`, {
    settings: { k, clients, seconds, transport },
    commits,
    warmupCommits: warm,
    note: 'shares of each node busy time (self time, startup excluded), from V8 CPU profiles of the whole process life; not a CPU-per-commit measurement',
    p50Ms: percentileMs(h, 50),
    nodes: perNode,
  });
  console.log(`wrote ${out}`);
} finally {
  await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
  rmSync(root, { recursive: true, force: true });
}
