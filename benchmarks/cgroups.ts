// One CPU quota per process, to emulate "one machine per node" on a small box (issue 16): a
// cgroup v1 `cpu` group per system process (a chain node, a baseline host, mariadbd) under
// /sys/fs/cgroup/cpu/adama-bench-<pid>/, each with cpu.cfs_quota_us = quota × period, so k
// nodes get k × quota CPUs between them however many cores the machine has. The load
// generator (the bench process) stays outside. Every process moved in is remembered with its
// original cpu group and moved back on release; restore() removes everything this process
// created, and the next run removes the groups of a run that died without restoring.

import { existsSync, readdirSync, readFileSync, realpathSync, rmdirSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { alive } from '../chain/control/embedded-store.ts';

export const cpuCgroupRootDefault = '/sys/fs/cgroup/cpu';
/** The CFS period of every group (the kernel's default). */
export const cfsPeriodUs = 100_000;
/** The smallest quota the kernel takes is 1 ms per period. */
export const quotaCpusMin = 0.01;
const groupPrefix = 'adama-bench-';
const ownedGroup = /^adama-bench-(?:probe-)?(\d+)$/;

export type Availability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const howToSkip = 'or run without --per-node-cpu (under CI=true, also with --equal-cpu 0)';

/**
 * Whether per-process CPU quotas can be set here: `root` must be the mount point of a cgroup v1
 * hierarchy with the cpu controller, and this process root, able to create a group in it.
 */
export function available(root = cpuCgroupRootDefault, mounts = '/proc/mounts'): Availability {
  if (!existsSync(root))
    return {
      ok: false,
      reason: `${root} does not exist: no cgroup v1 cpu controller is mounted there (a cgroup v2-only system?). Mount one as root (mkdir -p ${root} && mount -t cgroup -o cpu cgroup ${root}), ${howToSkip}`,
    };
  let real: string;
  try {
    real = realpathSync(root);
  } catch (error) {
    return { ok: false, reason: `${root} cannot be resolved (${(error as Error).message}); ${howToSkip}` };
  }
  const mount = readMounts(mounts).find((m) => m.dir === real);
  if (mount === undefined || mount.type !== 'cgroup' || !mount.options.includes('cpu'))
    return {
      ok: false,
      reason: `${root} is not the mount point of a cgroup v1 cpu controller (${mount === undefined ? 'nothing is mounted there' : `it is ${mount.type} with ${mount.options.join(',')}`}). Mount one as root (mount -t cgroup -o cpu cgroup ${root}), ${howToSkip}`,
    };
  const uid = process.getuid?.();
  if (uid !== 0) return { ok: false, reason: `not root (uid ${uid}): creating cgroups and moving processes into them needs root; run the benchmark as root, ${howToSkip}` };
  const probe = path.join(root, `${groupPrefix}probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
  } catch (error) {
    return { ok: false, reason: `${root} is not writable (${(error as Error).message}); in a container it must be mounted read-write (docker --privileged or --cgroupns=host), ${howToSkip}` };
  }
  return { ok: true };
}

function readMounts(file: string): { dir: string; type: string; options: string[] }[] {
  // /proc/mounts escapes spaces in paths as \040.
  const unescaped = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const [, dir = '', type = '', options = ''] = line.split(' ');
      return { dir: unescaped(dir), type, options: options.split(',') };
    });
}

/** The cpu group in a /proc/<pid>/cgroup text: the v1 line whose controllers include `cpu` (not cpuacct, cpuset). */
export function cpuGroupOf(procCgroup: string): string | undefined {
  for (const line of procCgroup.split('\n')) {
    const [, controllers, group] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers?.split(',').includes('cpu')) return group;
  }
  return undefined;
}

/** The cpu group of a process (e.g. `/` or `/adama-bench-42/node-n1`); undefined if it is gone. */
export function cpuGroupOfPid(pid: number): string | undefined {
  try {
    return cpuGroupOf(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The cpu group of every thread of `pid` (cgroup.procs in v1 moves them all). */
export function threadCpuGroups(pid: number): string[] {
  const groups: string[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const g = cpuGroupOf(readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'utf8'));
      if (g !== undefined) groups.push(g);
    } catch {
      // the thread exited meanwhile
    }
  }
  return groups;
}

function procs(dir: string, file: 'cgroup.procs' | 'tasks' = 'cgroup.procs'): number[] {
  try {
    return readFileSync(path.join(dir, file), 'utf8')
      .split('\n')
      .filter((s) => s.length > 0)
      .map(Number);
  } catch {
    return [];
  }
}

/** Writes `pid` to the group's cgroup.procs; false if the process is gone. */
function moveTo(dir: string, pid: number): boolean {
  try {
    writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** How long an emptied group may stay busy (a thread that was exiting during the move is left behind until it is gone). */
const emptyWaitMs = 2_000;

/** Moves what is left in `dir` (processes, then single threads) to the hierarchy root and removes it, retrying while it is busy. */
function removeGroup(root: string, dir: string): void {
  const until = Date.now() + emptyWaitMs;
  for (;;) {
    for (const pid of procs(dir)) moveTo(root, pid);
    for (const tid of procs(dir, 'tasks')) {
      try {
        writeFileSync(path.join(root, 'tasks'), String(tid));
      } catch {
        // exiting or gone
      }
    }
    try {
      rmdirSync(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > until) throw error;
      // Synchronous on purpose (restore runs in signal and exit handlers).
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/** Empties `dir` and its subgroups (their processes go to the hierarchy root) and removes them, deepest first. */
function removeTree(root: string, dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeTree(root, path.join(dir, entry.name));
  removeGroup(root, dir);
}

/** Removes the adama-bench-<pid> groups of runs that are no longer alive; returns their names. */
export function removeStaleGroups(root = cpuCgroupRootDefault): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(root)) {
    const m = ownedGroup.exec(name);
    if (m === null || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    removeTree(root, path.join(root, name));
    removed.push(name);
  }
  return removed;
}

/**
 * The groups of one run: confine() puts a process in a group of its own with a CPU quota,
 * release() moves it back to where it was and removes the group, restore() does that for all
 * and removes the parent. restore() is idempotent and synchronous (it runs in signal handlers).
 */
export class CpuGroups {
  readonly parent: string;
  private readonly confined = new Map<number, { dir: string; original: string }>();

  constructor(readonly root = cpuCgroupRootDefault) {
    this.parent = path.join(root, `${groupPrefix}${process.pid}`);
  }

  /** Creates the group `name` (made unique) with `quotaCpus` CPUs and moves `pid`, all its threads, into it. */
  confine(name: string, pid: number, quotaCpus: number): void {
    if (!(quotaCpus >= quotaCpusMin)) throw new Error(`a CPU quota must be at least ${quotaCpusMin} CPUs, not ${quotaCpus}`);
    if (this.confined.has(pid)) throw new Error(`process ${pid} is already confined (in ${this.confined.get(pid)?.dir})`);
    const original = cpuGroupOfPid(pid);
    if (original === undefined) throw new Error(`process ${pid} (${name}) is gone or has no cpu cgroup; cannot confine it`);
    if (!existsSync(this.parent)) {
      removeStaleGroups(this.root);
      mkdirSync(this.parent);
    }
    const base = name.replace(/[^A-Za-z0-9_.-]/g, '-');
    const dir = path.join(this.parent, existsSync(path.join(this.parent, base)) ? `${base}-${pid}` : base);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(cfsPeriodUs));
    writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round(quotaCpus * cfsPeriodUs)));
    this.confined.set(pid, { dir, original });
    if (!moveTo(dir, pid)) {
      this.release(pid);
      throw new Error(`process ${pid} (${name}) exited before it could be confined`);
    }
    const group = `/${path.relative(this.root, dir)}`;
    const strays = threadCpuGroups(pid).filter((g) => g !== group);
    if (strays.length > 0) throw new Error(`process ${pid} (${name}): ${strays.length} threads not moved to ${group} (${strays.join(', ')})`);
  }

  /** Moves `pid` back to its original group (if it still runs), any other process in its group to the root, and removes the group. */
  release(pid: number): void {
    const c = this.confined.get(pid);
    if (c === undefined) return;
    this.confined.delete(pid);
    if (!existsSync(c.dir)) return;
    const back = path.join(this.root, c.original);
    if (existsSync(back)) moveTo(back, pid);
    removeGroup(this.root, c.dir);
  }

  /**
   * The group's CFS periods so far in which it had work (cpu.stat nr_periods) and those in which
   * it hit its quota and was held back (nr_throttled); zeros if `pid` is not confined.
   */
  throttling(pid: number): { periods: number; throttledPeriods: number } {
    const c = this.confined.get(pid);
    try {
      const stat = c === undefined ? '' : readFileSync(path.join(c.dir, 'cpu.stat'), 'utf8');
      const field = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(stat)?.[1] ?? 0);
      return { periods: field('nr_periods'), throttledPeriods: field('nr_throttled') };
    } catch {
      return { periods: 0, throttledPeriods: 0 };
    }
  }

  /** Releases every process and removes every group this run created, trying all before it throws. Idempotent. */
  restore(): void {
    const errors: string[] = [];
    for (const pid of [...this.confined.keys()]) {
      try {
        this.release(pid);
      } catch (error) {
        errors.push(`process ${pid}: ${(error as Error).message}`);
      }
    }
    try {
      if (existsSync(this.parent)) removeTree(this.root, this.parent);
    } catch (error) {
      errors.push(`${this.parent}: ${(error as Error).message}`);
    }
    if (errors.length > 0) throw new Error(`restoring the cpu cgroups failed; remove ${this.parent} by hand (move its cgroup.procs to ${this.root}/cgroup.procs, then rmdir): ${errors.join('; ')}`);
  }
}
