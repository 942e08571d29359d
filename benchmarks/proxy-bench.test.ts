// The bench's proxy path with real processes: a chain of one node behind the proxy host
// (benchmarks/proxy-host.ts), driven by the WebSocket generators. Every ack is a committed add
// (the counters read back through the proxy hold exactly the acked adds), the proxy's pid is
// among the system's for CPU accounting, and the proxy host refuses to start without a viewer
// secret.

import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintToken } from '../proxy/tokens.ts';
import { ProxySocket } from './proxy-client.ts';
import { closedLoop, closedLoopWithViews, cpuSeconds, histogram, openLoop, startChainViaProxy } from './systems.ts';

const proxyScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'proxy-host.ts');

test.serial('a chain via the proxy: WebSocket clients with tokens commit, the counters hold the acked adds, the proxy is a process of the system', async (t) => {
  const s = await startChainViaProxy(1);
  try {
    t.is(s.protocol, 'proxy');
    t.regex(s.address, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    t.is(s.pids.length, 2, 'the node and the proxy');
    const proxyPid = s.pids.at(-1) as number;
    t.true(readFileSync(`/proc/${proxyPid}/cmdline`, 'utf8').includes('proxy-host.ts'), 'the last pid is the proxy host');
    t.true(Number.isFinite(cpuSeconds(s.pids)));

    const h = histogram();
    const commits = await closedLoop(s, { clients: 4, docs: 2, seconds: 1, prefix: 'pb' }, h);
    t.true(commits > 0, `${commits} commits`);
    t.is(h.totalCount, commits);

    // Read back through the proxy, as a browser would: each document's confirmed view.
    const secret = s.viewerSecret as string;
    const reader = await ProxySocket.connect(s.address, mintToken(secret, 'reader', 60_000), 'reader');
    try {
      let total = 0;
      for (const doc of ['pb-0', 'pb-1']) {
        const full = await reader.subscribe(doc, 'counter', () => {});
        total += (full.confirmed as { value: number }).value;
      }
      t.is(total, commits, 'every acked add, and nothing else, is in the counters');
    } finally {
      reader.close();
    }

    // The engine's mix (several channels and viewers, illegal moves answered with an error outcome) passes the proxy too.
    const mixed = histogram();
    const moves = await closedLoop(s, { clients: 2, docs: 2, seconds: 0.5, prefix: 'pbm', workload: { docType: 'chat', mix: 'workload' } }, mixed);
    t.true(moves > 0 && mixed.totalCount === moves, `${moves} chat moves`);

    const open = await openLoop(s, { rate: 200, seconds: 0.5, docs: 4, connections: 2, prefix: 'pbo' }, histogram());
    t.deepEqual(open, { sent: 100, committed: 100, refused: 0, failed: 0 });

    const speculative = histogram();
    const committed = histogram();
    const n = await closedLoopWithViews(s, { clients: 2, seconds: 0.5, prefix: 'pbv' }, speculative, committed);
    t.true(n > 0 && committed.totalCount === n, `${n} commits`);
    t.true(speculative.totalCount > 0, 'the proxy forwards speculative views');
  } finally {
    await s.stop();
  }
  t.throws(() => process.kill(s.pids.at(-1) as number, 0), { code: 'ESRCH' }, 'the proxy stopped');
});

test('the proxy host refuses to start without a viewer secret, and says which variable to set', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', proxyScript, '--nodes', '127.0.0.1:1'], {
    env: { PATH: process.env.PATH, ADAMA_CLIENT_KEY: 'k'.repeat(43) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const [code] = await once(child, 'exit');
  t.is(code, 2);
  t.regex(stderr, /ADAMA_VIEWER_SECRET/);
});
