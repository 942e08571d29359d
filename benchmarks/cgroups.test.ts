// The per-process CPU quotas of benchmarks/cgroups.ts, against the real cgroup v1 cpu hierarchy
// when this machine has one and runs the tests as root (skipped with the reason otherwise,
// failed under CI=true), plus the parts that need no cgroups.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { available, CpuGroups, cpuCgroupRootDefault, cpuGroupOf, cpuGroupOfPid, removeStaleGroups, threadCpuGroups } from './cgroups.ts';
import { cpuSeconds } from './systems.ts';

const check = available();
const real = check.ok ? test.serial : test.skip;
if (!check.ok) {
  if (process.env.CI === 'true') test('cgroups are available under CI', (t) => t.fail(check.reason));
  else console.error(`cgroups.test.ts: skipping the real-cgroup tests: ${check.reason}`);
}

test('the reason names a missing mount path and says what to do', (t) => {
  const r = available('/nonexistent/adama-cgroup-root');
  t.false(r.ok);
  const reason = r.ok ? '' : r.reason;
  t.regex(reason, /^\/nonexistent\/adama-cgroup-root does not exist: no cgroup v1 cpu controller is mounted there/);
  t.regex(reason, /mount -t cgroup -o cpu cgroup \/nonexistent\/adama-cgroup-root/);
  t.regex(reason, /run without --per-node-cpu/);
});

test('a directory that is not a cgroup mount point is refused', (t) => {
  const r = available('/tmp');
  t.false(r.ok);
  t.regex(r.ok ? '' : r.reason, /^\/tmp is not the mount point of a cgroup v1 cpu controller/);
});

test('the cpu group is the line whose controllers include cpu, not cpuacct or cpuset', (t) => {
  t.is(cpuGroupOf('3:cpuset:/a\n2:cpuacct:/b\n1:cpu:/c\n0::/d\n'), '/c');
  t.is(cpuGroupOf('4:cpu,cpuacct:/system.slice/mariadb.service\n'), '/system.slice/mariadb.service');
  t.is(cpuGroupOf('2:cpuacct:/b\n0::/\n'), undefined);
});

/** CPUs (utime + stime per wall second) `pid` uses over `ms`. */
async function cpusUsed(pid: number, ms: number): Promise<number> {
  const before = cpuSeconds([pid]);
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (cpuSeconds([pid]) - before) / ((performance.now() - start) / 1_000);
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

real('a busy loop in a 0.2-CPU group uses about 0.2 CPU, with all its threads moved', async (t) => {
  const groups = new CpuGroups();
  const child = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
  try {
    await once(child, 'spawn');
    const pid = child.pid as number;
    // Wait for node's threads (V8 platform workers, libuv), so the move has more than one to carry.
    for (const until = performance.now() + 5_000; readdirSync(`/proc/${pid}/task`).length < 4 && performance.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 20));
    groups.confine('busy', pid, 0.2);
    const group = `/${path.relative(cpuCgroupRootDefault, groups.parent)}/busy`;
    t.is(cpuGroupOfPid(pid), group);
    const threads = threadCpuGroups(pid);
    t.true(threads.length > 1, `node has several threads, got ${threads.length}`);
    t.deepEqual(new Set(threads), new Set([group]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const cpus = await cpusUsed(pid, 1_000);
    t.log(`used ${cpus.toFixed(3)} CPUs`);
    t.true(cpus > 0.1 && cpus < 0.3, `used ${cpus.toFixed(3)} CPUs`);
    const th = groups.throttling(pid);
    t.true(th.periods >= 10 && th.throttledPeriods / th.periods > 0.5, `throttled in ${th.throttledPeriods} of ${th.periods} periods`);
  } finally {
    groups.restore();
    await kill(child);
  }
  t.false(existsSync(groups.parent));
});

real('restore moves a shared server back to its original group and removes every group; twice is harmless', async (t) => {
  // The "shared server" starts in a group of its own, so "back where it was" is not just the root.
  const originalDir = path.join(cpuCgroupRootDefault, `adama-test-original-${process.pid}`);
  mkdirSync(originalDir);
  const server = spawn('sleep', ['30'], { stdio: 'ignore' });
  const groups = new CpuGroups();
  try {
    await once(server, 'spawn');
    const pid = server.pid as number;
    writeFileSync(path.join(originalDir, 'cgroup.procs'), String(pid));
    const original = cpuGroupOfPid(pid);
    t.is(original, `/adama-test-original-${process.pid}`);
    groups.confine('mariadbd', pid, 0.5);
    t.not(cpuGroupOfPid(pid), original);
    t.true(existsSync(path.join(groups.parent, 'mariadbd')));
    groups.restore();
    groups.restore();
    t.is(cpuGroupOfPid(pid), original);
    t.false(existsSync(groups.parent));
  } finally {
    groups.restore();
    await kill(server);
    rmdirSync(originalDir);
  }
});

real('the groups of a run that is gone are removed, their processes moved to the root', async (t) => {
  // A pid that is not alive: a child that has exited.
  const gone = spawn('true');
  await once(gone, 'exit');
  const staleDir = path.join(cpuCgroupRootDefault, `adama-bench-${gone.pid}`);
  mkdirSync(path.join(staleDir, 'node-n1'), { recursive: true });
  const orphan = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    await once(orphan, 'spawn');
    writeFileSync(path.join(staleDir, 'node-n1', 'cgroup.procs'), String(orphan.pid));
    t.deepEqual(removeStaleGroups(), [`adama-bench-${gone.pid}`]);
    t.false(existsSync(staleDir));
    t.is(cpuGroupOfPid(orphan.pid as number), '/');
    t.false(readdirSync(cpuCgroupRootDefault).includes(`adama-bench-${process.pid}`), 'a live run keeps its groups; this one has none');
  } finally {
    await kill(orphan);
  }
});
