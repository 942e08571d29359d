import test from 'ava';
import { cdfPercentiles, cdfPoints, closedLoop, cpuSeconds, histogram, messageSource, openLoop, startHost } from './systems.ts';

test('cpuSeconds reads this process from /proc and grows with work; an unknown pid is NaN', (t) => {
  const before = cpuSeconds([process.pid]);
  // Work until this process has used 0.2 s of CPU by its own count (wall time varies with load).
  const start = process.cpuUsage();
  const until = performance.now() + 10_000;
  let x = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 10_000; i++) x += Math.sqrt(x + 1);
    const used = process.cpuUsage(start);
    if (used.user + used.system >= 200_000) break;
  }
  t.true(x > 0);
  const after = cpuSeconds([process.pid]);
  t.true(Number.isFinite(before) && after - before >= 0.1, `${before} -> ${after}`);
  t.true(Number.isNaN(cpuSeconds([2 ** 22 + 7])));
});

test('the open loop sends on schedule, measures every answer, and refuses beyond outstandingMax', async (t) => {
  const host = await startHost('memory');
  try {
    const h = histogram();
    const r = await openLoop(host.address, { rate: 500, seconds: 0.5, docs: 4, connections: 2, prefix: 'ol' }, h);
    t.deepEqual(r, { sent: 250, committed: 250, refused: 0, failed: 0 });
    t.is(h.totalCount, 250);
    // One request allowed in flight at 20,000/s: most due requests find it busy and are refused,
    // counted rather than queued.
    const tight = await openLoop(host.address, { rate: 20_000, seconds: 0.2, docs: 1, connections: 1, prefix: 'tight', outstandingMax: 1 }, histogram());
    t.is(tight.sent + tight.refused, 4_000);
    t.true(tight.refused > 0 && tight.committed === tight.sent, JSON.stringify(tight));
  } finally {
    await host.stop();
  }
});

test('CDF points are monotone over the fixed percentiles', (t) => {
  const h = histogram();
  for (let i = 1; i <= 1_000; i++) h.recordValue(i * 10);
  const points = cdfPoints(h);
  t.deepEqual(
    points.map(([q]) => q),
    [...cdfPercentiles],
  );
  for (let i = 1; i < points.length; i++) t.true((points[i] as [number, number])[1] >= (points[i - 1] as [number, number])[1]);
  t.true(Math.abs((points.at(-1) as [number, number])[1] - 10) < 0.02, "p100 is the largest value, 10 ms, within the histogram's 3 digits");
});

test('message sources: one simple message per type, the engine mix over several channels, clear errors', (t) => {
  const simple = messageSource({ docType: 'chat', mix: 'simple' }, 1, 'v1');
  t.deepEqual(simple(7), { channel: 'say', payload: { text: 'm7' }, viewer: 'v1' });
  const mixed = messageSource({ docType: 'chat', mix: 'workload' }, 1, 'v1');
  const channels = new Set(Array.from({ length: 200 }, (_, i) => mixed(i).channel));
  t.true(channels.has('say') && channels.has('dm') && channels.has('join'), [...channels].join(','));
  t.throws(() => messageSource({ docType: 'ledger', mix: 'simple' }, 1, 'v'), { message: /unknown document type ledger; one of: .*counter/ });
});

test('the closed loop drives another document type with the engine mix', async (t) => {
  const host = await startHost('memory');
  try {
    const h = histogram();
    const n = await closedLoop(host.address, { clients: 4, docs: 2, seconds: 0.3, prefix: 'mix', workload: { docType: 'card-table', mix: 'workload' } }, h);
    t.true(n > 0 && h.totalCount === n, `${n} commits, ${h.totalCount} recorded`);
  } finally {
    await host.stop();
  }
});
