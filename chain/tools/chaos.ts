// Chaos runner: a real chain of node processes under closed-loop client load, with SIGKILLs,
// failovers and rejoins, recording a Jepsen-style history and checking it against what the
// replicas hold at the end (history.ts has the checks).
//
//   npm run chaos -- [--nodes 3] [--seconds 30] [--kill-every 3] [--history FILE] ...
//
// With --config-store etcd the runner decides nothing: it starts a real etcd and several
// manager processes; the leading manager's failure detector removes a killed node and adds it
// back, the runner reads chain c1's configuration from etcd and can SIGKILL the leading manager.
//
// The last stdout line is a JSON summary; the exit code is 1 when a check found a violation.

import { randomBytes, randomInt } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { seededRandom, type Random } from '../../engine/random.ts';
import type { ChainSession } from '../client/session.ts';
import { ChainClient, ChainError, chainInfo, nodeStatus, tcpSession, type ChainStatus, type ClientOptions, type DocStatus } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import { parseStoreUrl } from '../control/config-store.ts';
import { initialConfig, type NodeAddress } from '../control/decisions.ts';
import { EtcdConfigStore } from '../control/etcd-store.ts';
import type { ManagerLoop } from '../control/manager-loop.ts';
import { readStore } from '../runtime/level-disk.ts';
import { type EtcdServer, etcdBinary, etcdMissing, startEtcd } from './etcd-server.ts';
import { checkExactlyOnce, checkReads, checkReplicaLogs, checkValues, pairOps, tally, Violations, type FinalDoc, type HistoryEvent, type Op } from './history.ts';
import { freeUdpPort, type ManagerProcess, spawnManager, spawnNode, type NodeProcess } from './processes.ts';
import { toolManager, waitFor } from './reconfigure.ts';

const usage = `usage: npm run chaos -- [options]     (or: tsx chain/tools/chaos.ts [options])

Starts a chain of real node processes, runs closed-loop clients against counter documents,
SIGKILLs a random node every few seconds (failover: it is removed from the chain, restarted on
its port and data dir, and added back at the tail by state transfer), records a history of
every operation, and checks at the end: replicas agree (status digests and recovered LevelDB
logs), every acknowledged add is applied exactly once, nothing un-invoked or failed is applied,
final values match the logged amounts, reads lie within the counter's linearizable bounds,
no two nodes ran the same epoch with different members (one sequence of epochs).

By default the runner's own manager removes and adds the killed node. With --config-store etcd
it starts etcd (/usr/bin/etcd or $ETCD_BIN, loopback, a temporary data dir) and M manager
processes (chain manager, --chains 1 --k K) on it: the nodes accept only configurations etcd
holds, the leading manager's failure detector removes a killed node and adds it back once it is
alive, and the runner only reads the chain's configuration from etcd. A node is killed only
while every member runs etcd's epoch and has caught up.

  --nodes K                chain length (default 3)
  --seconds S              load duration (default 30)
  --kill-every S           seconds between node faults (default 3; 0: no faults)
  --history FILE           JSON-lines history (default: a new file under the OS temp dir)
  --clients C              concurrent clients (default 16)
  --docs D                 counter documents chaos-d1..chaos-dD (default 8)
  --seed N                 seed for the runner's choices (default random; printed)
  --keep                   keep the nodes' data dirs (and their log) instead of removing them
  --config-store etcd      run on etcd with manager processes (the only value; default: none)
  --managers M             etcd mode: manager processes, one leads (default 2; 1 to 5)
  --kill-manager-every S   etcd mode: seconds between SIGKILLs of the leading manager (default 0:
                           never; needs 2 managers or more); another manager must lead within
                           5 s, and the killed one restarts 1 s after its kill with no memory
  -h, --help               this text

The last stdout line is a JSON summary. Exit status: 0 no violation, 1 violations (or a crash of
the runner), 2 bad arguments.`;

// Bounds.
const nodesMax = 16;
const managersMax = 5;
const clientsMax = 1_024;
const docsMax = 10_000;
const secondsMax = 24 * 3600;
/** History events kept in memory for the checks; past it the load stops early. */
const historyEventsMax = 5_000_000;
const submitTimeoutMs = 20_000;
/** One attempt of a submit: a hung head is left after this long. */
const requestTimeoutMs = 2_000;
const readTimeoutMs = 3_000;
const graceMs = 5_000;
const quiescenceTimeoutMs = 15_000;
const stopTimeoutMs = 10_000;
const pushTimeoutMs = 10_000;
const restartAttemptsMax = 5;
/** etcd mode: bound on the chain's return to health after a fault (and at the start and end). */
const healthyTimeoutMs = 20_000;
/** etcd mode: bound on the managers' initial placement of the chain in etcd. */
const placementTimeoutMs = 30_000;
/** etcd mode: a standby must lead within this long of the leader's SIGKILL... */
const takeoverMaxMs = 5_000;
/** ...and one slower than that is still measured up to this long. */
const takeoverWaitMs = 15_000;
/** etcd mode: a killed manager restarts this long after its kill (and not before a takeover). */
const managerRestartDelayMs = 1_000;
const etcdStopWaitMs = 7_000;
/** Node log lines that look like problems, kept for the summary. */
const nodeProblemLinesMax = 50;

const chain = 'c1';
const cluster = 'chaos';
const docType = 'counter';

// ---------------------------------------------------------------------------------------------
// Arguments

function die(message: string): never {
  console.error(`error: ${message}\n\n${usage}`);
  process.exit(2);
}

let values: Record<string, string | boolean | undefined>;
try {
  values = parseArgs({
    args: process.argv.slice(2),
    options: {
      nodes: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '30' },
      'kill-every': { type: 'string', default: '3' },
      history: { type: 'string' },
      clients: { type: 'string', default: '16' },
      docs: { type: 'string', default: '8' },
      seed: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'config-store': { type: 'string' },
      managers: { type: 'string' },
      'kill-manager-every': { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
    strict: true,
  }).values;
} catch (error) {
  die((error as Error).message);
}
if (values.help === true) {
  console.log(usage);
  process.exit(0);
}

function num(name: string, min: number, max: number, integer: boolean): number {
  const raw = values[name];
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    die(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, not ${JSON.stringify(raw)}`);
  }
  return n;
}

const nodeCount = num('nodes', 1, nodesMax, true);
const seconds = num('seconds', 0.1, secondsMax, false);
const killEvery = num('kill-every', 0, secondsMax, false);
const clientCount = num('clients', 1, clientsMax, true);
const docCount = num('docs', 1, docsMax, true);
const seed = values.seed === undefined ? randomInt(0, 2 ** 31) : num('seed', 0, Number.MAX_SAFE_INTEGER, true);
const keep = values.keep === true;
const storeKind = values['config-store'];
if (storeKind !== undefined && storeKind !== 'etcd') die(`--config-store takes only etcd (without it the runner's own manager decides), not ${JSON.stringify(storeKind)}`);
const etcdMode = storeKind === 'etcd';
if (!etcdMode && values.managers !== undefined) die('--managers needs --config-store etcd');
values.managers ??= '2';
const managerCount = num('managers', 1, managersMax, true);
const killManagerEvery = num('kill-manager-every', 0, secondsMax, false);
if (!etcdMode && killManagerEvery > 0) die('--kill-manager-every needs --config-store etcd');
if (killManagerEvery > 0 && managerCount < 2) die('--kill-manager-every needs --managers 2 or more (a standby takes over)');
if (etcdMode && etcdBinary() === undefined) {
  console.error(`error: ${etcdMissing}`);
  process.exit(2);
}
const historyFile = path.resolve(typeof values.history === 'string' ? values.history : path.join(tmpdir(), `chaos-history-${process.pid}-${Date.now()}.jsonl`));

// ---------------------------------------------------------------------------------------------
// State shared by the phases (module scope, so the exit handlers can clean up).

const secret = randomBytes(16).toString('hex');
const opts: ClientOptions = { cluster, secret };
const env = { ADAMA_LIMITS: JSON.stringify({ deltaLogEntriesMax: 10_000_000, deltaLogKeepEntries: 10_000_000 }) };
const nodeIds = Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`);
/** A node or manager process. */
type Child = Pick<NodeProcess, 'child' | 'exited' | 'kill'>;
/** The current process of each node. */
const processes = new Map<string, NodeProcess>();
/** Every node and manager process this runner started (registered as soon as it listens). */
const children = new Set<Child>();
/** Processes this runner stopped on purpose (a later exit is not a crash). */
const stopping = new Set<Child>();
const violations = new Violations();
const nodeProblems: string[] = [];
let nodeProblemCount = 0;
let cleanedUp = false;
let dataRoot = '';

const hrNs = (): bigint => process.hrtime.bigint();
const t0 = hrNs();
const nowNs = (): number => Number(hrNs() - t0);
const elapsedS = (): number => nowNs() / 1e9;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line: string): void => void process.stderr.write(`[chaos ${elapsedS().toFixed(1)}s] ${line}\n`);

function killAllNow(): void {
  for (const p of children) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      stopping.add(p);
      p.child.kill('SIGKILL');
    }
  }
}

function cleanupNow(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  killAllNow();
  if (!keep && dataRoot !== '') rmSync(dataRoot, { recursive: true, force: true });
}

/** Node, manager and etcd starts in progress: their processes are not in `children` until they listen. */
const spawning = new Set<Promise<unknown>>();
/** How long an abort waits for starts in progress, to kill those processes too. */
const abortWaitMs = 3_000;
let aborting = false;

/** Stops every node and manager (including ones still starting) and etcd, removes the data, exits with `code`. */
function abort(code: number, why: string): void {
  say(why);
  if (aborting) return;
  aborting = true;
  killAllNow();
  const pending = [...spawning];
  void Promise.race([Promise.allSettled(pending), sleep(abortWaitMs)])
    .then(() => {
      killAllNow();
      return stopEtcd();
    })
    .finally(() => {
      cleanupNow();
      process.exit(code);
    });
}

process.on('exit', cleanupNow);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => abort(130, `${signal}: stopping the nodes`));
process.on('uncaughtException', (error) => abort(1, `runner crashed: ${error.stack ?? String(error)}`));
process.on('unhandledRejection', (error) => abort(1, `runner crashed (unhandled rejection): ${(error as Error)?.stack ?? String(error)}`));

// Created once the exit handlers that remove it are in place.
dataRoot = mkdtempSync(path.join(tmpdir(), 'adama-chaos-'));
const nodeLog = createWriteStream(path.join(dataRoot, 'nodes.log'));

// ---------------------------------------------------------------------------------------------
// Nodes

/** Free loopback ports, all held open until each is known so none repeats. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/** "[n1] chain c1 epoch 3: n2 -> n3 -> n1 (this node: tail)": a configuration a node runs. */
const ranLine = /\] chain (\S+) epoch (\d+): (.*) \(this node: \w+\)$/;
/** Every configuration of the chain a node said it runs, in the order the lines came. */
const ran: { node: string; epoch: number; members: string }[] = [];
const memberList = (config: ChainConfig): string => config.members.map((m) => m.node).join(' -> ');

function onNodeLog(line: string, id?: string): void {
  const m = id === undefined ? null : ranLine.exec(line);
  if (m !== null && m[1] === chain) ran.push({ node: id as string, epoch: Number(m[2]), members: m[3] as string });
  nodeLog.write(`${elapsedS().toFixed(3)} ${line}\n`);
  if (/FATAL|diverged|protocol_error|ahead on/.test(line)) {
    nodeProblemCount++;
    if (nodeProblems.length < nodeProblemLinesMax) nodeProblems.push(line);
    say(`node log: ${line}`);
  }
}

let ports: number[] = [];
const addressOf = (id: string): string => `127.0.0.1:${ports[nodeIds.indexOf(id)] as number}`;

/**
 * Starts a node or manager process (retrying), registered in `children` as soon as it listens
 * so that every abort path kills it; `accept` may refuse it by throwing (a retry follows).
 * A later exit that the runner did not cause is a `crash` violation.
 */
async function startChild<T extends Child>(what: string, spawn: () => Promise<T>, accept: (p: T) => void, crash: string): Promise<T> {
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= restartAttemptsMax; attempt++) {
    if (aborting) throw new Error('the runner is stopping');
    try {
      // Registered in the same step that settles `starting`, so an abort waiting for it kills it.
      const starting = spawn().then((child) => {
        children.add(child);
        return child;
      });
      spawning.add(starting);
      const p = await starting.finally(() => spawning.delete(starting));
      if (aborting) {
        stopping.add(p);
        p.child.kill('SIGKILL');
        throw new Error('the runner is stopping');
      }
      accept(p);
      void p.exited.then((code) => {
        if (stopping.has(p)) return;
        violations.add(crash, `${what} (pid ${p.child.pid}) exited on its own with code ${code} signal ${p.child.signalCode}`);
        say(`${what} exited on its own (code ${code})`);
      });
      return p;
    } catch (error) {
      lastError = error as Error;
      say(`starting ${what} failed (attempt ${attempt}): ${lastError.message}`);
      await sleep(200 * attempt);
    }
  }
  throw new Error(`could not start ${what}: ${lastError?.message}`);
}

async function startNode(id: string): Promise<NodeProcess> {
  const port = ports[nodeIds.indexOf(id)] as number;
  // etcd mode: the node accepts only configurations etcd holds, and its failure detector gossips with the managers'.
  const onEtcd = etcd === undefined ? {} : { configStore: etcd.url, gossipSeeds: managerSeeds };
  return startChild(
    `node ${id} on port ${port}`,
    () => spawnNode({ id, dataDir: path.join(dataRoot, id), cluster, secret, port, env, ...onEtcd, onLog: (line) => onNodeLog(line, id), startTimeoutMs: 20_000 }),
    (p) => {
      if (p.address !== addressOf(id)) throw new Error(`node ${id} listens on ${p.address}, not ${addressOf(id)}`);
      processes.set(id, p);
    },
    'node-crash',
  );
}

const isLive = (id: string): boolean => {
  const p = processes.get(id);
  return p !== undefined && !stopping.has(p) && p.child.exitCode === null && p.child.signalCode === null;
};

async function stopNode(id: string, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  const p = processes.get(id);
  if (p === undefined) return;
  stopping.add(p);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([p.kill(signal).then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)))]);
  clearTimeout(timer);
  if (timedOut) {
    violations.add('node-stop', `node ${id} did not exit within ${timeoutMs} ms of ${signal}; killed`);
    await p.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Chain manager and faults

/** Default mode: the runner's own manager loop (it decides remove and add). */
let manager: ManagerLoop | undefined;
let kills = 0;
let failovers = 0;
let rejoins = 0;
/** The chain's current configuration: the runner's manager's, or (etcd mode) the newest etcd was seen to hold. */
const config = (): ChainConfig => (etcdMode ? storeConfig : manager?.configs.get(chain)) as ChainConfig;

/** Waits (bounded) until every live member acknowledged the current configuration; the manager loop pushes and retries. */
async function untilAcked(what: string): Promise<void> {
  const loop = manager as ManagerLoop;
  const missing = (): string[] => loop.unacked(chain).filter((node) => isLive(node) && config().members.some((m) => m.node === node));
  if (await waitFor(() => missing().length === 0, pushTimeoutMs)) return;
  violations.add('reconfigure', `${what}: epoch ${config().epoch} not acknowledged by ${missing().join(', ')} within ${pushTimeoutMs} ms`);
}

let faultsEnabled = true;

/** SIGKILLs a random node; returns it. */
async function killVictim(rng: Random): Promise<string> {
  const members = config().members;
  const victim = nodeIds[rng.int(nodeIds.length)] as string;
  const role = members.length === 1 ? 'single' : members[0]?.node === victim ? 'head' : members[members.length - 1]?.node === victim ? 'tail' : 'middle';
  say(`fault: SIGKILL ${victim} (${role}, epoch ${config().epoch})`);
  const p = processes.get(victim) as NodeProcess;
  stopping.add(p);
  await p.kill('SIGKILL');
  kills++;
  return victim;
}

/** Restarts a killed node on its port and data dir; undefined (a violation, no more faults) when it cannot. */
async function restartVictim(victim: string): Promise<NodeProcess | undefined> {
  try {
    return await startNode(victim);
  } catch (error) {
    violations.add('restart', (error as Error).message);
    faultsEnabled = false;
    return undefined;
  }
}

async function faultCycle(rng: Random): Promise<void> {
  const loop = manager as ManagerLoop;
  if (config().members.length !== nodeCount || !nodeIds.every(isLive)) return;
  // A rejoined node must hold the committed state before another member may fail over.
  if (loop.joining(chain).size > 0) return;
  const victim = await killVictim(rng);
  if (nodeCount > 1) {
    if (!loop.remove(chain, victim)) {
      violations.add('reconfigure', `the manager refused to remove ${victim} from ${chain} at epoch ${config().epoch}`);
      faultsEnabled = false;
      return;
    }
    failovers++;
    say(
      `failover: epoch ${config().epoch} ${config()
        .members.map((m) => m.node)
        .join(' -> ')}`,
    );
    await untilAcked(`removing ${victim}`);
  }
  await sleep(300 + rng.int(501));
  const restarted = await restartVictim(victim);
  if (restarted === undefined) return;
  if (nodeCount > 1) {
    if (restarted.address !== addressOf(victim)) violations.add('restart', `${victim} came back at ${restarted.address}`);
    if (!(await waitFor(() => loop.add(chain, victim), pushTimeoutMs, 50))) {
      violations.add('reconfigure', `the manager refused to add ${victim} back to ${chain} at epoch ${config().epoch}`);
      faultsEnabled = false;
      return;
    }
    rejoins++;
    say(
      `rejoin: epoch ${config().epoch} ${config()
        .members.map((m) => m.node)
        .join(' -> ')}`,
    );
    await untilAcked(`adding ${victim}`);
  } else {
    say(`restarted ${victim} (a single node recovers its configuration from disk)`);
  }
}

/** Runs `cycle` every `every` seconds (0: never) until `isDone()` or `enabled()` turns false; a cycle in progress is finished. */
async function periodically(every: number, isDone: () => boolean, enabled: () => boolean, cycle: () => Promise<void>): Promise<void> {
  if (every <= 0) return;
  let next = elapsedS() + every;
  while (!isDone() && enabled()) {
    const waitMs = (next - elapsedS()) * 1000;
    if (waitMs > 0) await sleep(Math.min(waitMs, 200));
    if (isDone()) return;
    if (elapsedS() < next) continue;
    await cycle();
    next = Math.max(next + every, elapsedS() + 0.1);
  }
}

function faultLoop(isDone: () => boolean): Promise<void> {
  const rng = seededRandom('chaos-faults', 1, String(seed));
  return periodically(
    killEvery,
    isDone,
    () => faultsEnabled,
    () => (etcdMode ? etcdFaultCycle(rng) : faultCycle(rng)),
  );
}

// ---------------------------------------------------------------------------------------------
// etcd mode: etcd, manager processes, the chain's configuration read from etcd

let etcd: EtcdServer | undefined;
let store: EtcdConfigStore | undefined;
let storeWatch: { cancel(): void } | undefined;
/** The newest configuration of the chain etcd was seen to hold (watch and reads). */
let storeConfig: ChainConfig | undefined;
/** Every epoch of the chain etcd was seen to hold, as nodes log its members. */
const storeEpochs = new Map<number, string>();
/** The managers' failure detector addresses, chosen before the nodes start (their gossip seeds). */
const managerSeeds: NodeAddress[] = [];
/** The current process of each manager. */
const managers = new Map<string, ManagerProcess>();
/** Leadership changes as the managers announced them (`at`: their Date.now()); a (re)start is a standby. */
const leadership: { at: number; manager: string; leading: boolean }[] = [];
/** Killed nodes whose removal from the chain counts as a failover. */
const awaitingFailover = new Set<string>();
let managerKills = 0;
const takeoverMs: number[] = [];
let managerFaultsEnabled = true;

const etcdLog = (what: string) => (line: string) => void nodeLog.write(`${elapsedS().toFixed(3)} ${what}: ${line}\n`);

/** A configuration etcd holds (from the watch or a read): the newest one becomes config(); failovers and rejoins are counted from the changes. */
function onStoreConfig(next: ChainConfig): void {
  if (next.chain !== chain) return;
  storeEpochs.set(next.epoch, memberList(next));
  const previous = storeConfig;
  if (previous !== undefined && next.epoch <= previous.epoch) return;
  storeConfig = next;
  if (previous === undefined) return say(`etcd: ${chain} epoch ${next.epoch}: ${memberList(next)}`);
  const removed = previous.members.filter((m) => !next.members.some((n) => n.node === m.node)).map((m) => m.node);
  const added = next.members.filter((m) => !previous.members.some((n) => n.node === m.node)).map((m) => m.node);
  for (const node of removed) if (awaitingFailover.delete(node)) failovers++;
  rejoins += added.length;
  const change = [...removed.map((n) => `removed ${n}`), ...added.map((n) => `added ${n}`)].join(', ');
  say(`etcd: ${chain} epoch ${next.epoch}: ${memberList(next)}${change === '' ? '' : ` (${change})`}`);
}

function storeGet(): Promise<ChainConfig | undefined> {
  const s = store as EtcdConfigStore;
  return new Promise((resolve, reject) => s.get(chain, (error, config) => (error === undefined ? resolve(config) : reject(new Error(error.message)))));
}

/** Reads the chain's configuration from etcd into config(); false when the read failed. */
async function readStoreConfig(): Promise<boolean> {
  try {
    const current = await storeGet();
    if (current !== undefined) onStoreConfig(current);
    return true;
  } catch (error) {
    say(`reading ${chain} from etcd failed: ${(error as Error).message}`);
    return false;
  }
}

/** Why the chain is not healthy (undefined: it is): every node runs and is a member, each reports etcd's epoch, joiners caught up. */
async function unhealthy(): Promise<string | undefined> {
  const c = config();
  if (c === undefined) return `etcd holds no configuration of ${chain}`;
  const down = nodeIds.filter((id) => !isLive(id));
  if (down.length > 0) return `${down.join(', ')} not running`;
  if (c.members.length !== nodeCount) return `epoch ${c.epoch} has ${c.members.length} of ${nodeCount} members (${memberList(c)})`;
  const infos = await Promise.all(
    c.members.map((m) => chainInfo(m.address, chain, { ...opts, name: 'chaos-health', connectTimeoutMs: 1_000, requestTimeoutMs: 1_000 }).catch((error: Error) => error)),
  );
  const behind = c.members.flatMap((m, i) => {
    const info = infos[i];
    if (info instanceof Error || info === undefined) return [`${m.node}: ${info?.message ?? 'no answer'}`];
    if (info.epoch !== c.epoch) return [`${m.node} runs epoch ${info.epoch}`];
    if (m.sinceEpoch > 1 && info.caughtUpEpoch < m.sinceEpoch) return [`${m.node} caught up to epoch ${info.caughtUpEpoch} of ${m.sinceEpoch}`];
    return [];
  });
  return behind.length === 0 ? undefined : `epoch ${c.epoch} (${memberList(c)}): ${behind.join('; ')}`;
}

/** Waits (bounded) until the chain is healthy again; false (a violation) when it is not. */
async function untilHealthy(what: string): Promise<boolean> {
  const deadline = Date.now() + healthyTimeoutMs;
  for (;;) {
    const why = await unhealthy();
    if (why === undefined) return true;
    if (Date.now() > deadline) {
      violations.add('reconfigure', `${what}: the chain was not healthy within ${healthyTimeoutMs} ms: ${why}`);
      return false;
    }
    await sleep(100);
  }
}

/** A node fault in etcd mode: kill, restart; the managers remove it and add it back, the runner only waits for the chain's health. */
async function etcdFaultCycle(rng: Random): Promise<void> {
  if ((await unhealthy()) !== undefined) return;
  const victim = await killVictim(rng);
  awaitingFailover.add(victim);
  await sleep(300 + rng.int(501));
  if ((await restartVictim(victim)) === undefined) return;
  if (!(await untilHealthy(`after the SIGKILL of ${victim}`))) faultsEnabled = false;
  awaitingFailover.delete(victim);
}

function onManagerEvent(name: string, line: string): void {
  nodeLog.write(`${elapsedS().toFixed(3)} ${name}: ${line}\n`);
  let e: { event?: unknown; at?: unknown; manager?: unknown; leading?: unknown };
  try {
    e = JSON.parse(line) as typeof e;
  } catch {
    return;
  }
  if (e.event !== 'leadership' || typeof e.at !== 'number') return;
  const who = typeof e.manager === 'string' ? e.manager : name;
  leadership.push({ at: e.at, manager: who, leading: e.leading === true });
  say(`${who} ${e.leading === true ? 'leads' : 'no longer leads'} the managers`);
}

/** Starts (or restarts, with no memory) a manager on its failure detector's port. */
function startManager(name: string): Promise<ManagerProcess> {
  const seed = managerSeeds.find((s) => s.node === name) as NodeAddress;
  // A restarted manager is a standby until it says otherwise (its old incarnation's leadership is gone).
  leadership.push({ at: Date.now(), manager: name, leading: false });
  return startChild(
    `manager ${name}`,
    () =>
      spawnManager({
        name,
        port: Number(seed.address.split(':')[1]),
        nodes: nodeIds.map((id) => ({ node: id, address: addressOf(id) })),
        cluster,
        secret,
        chains: 1,
        k: nodeCount,
        configStore: (etcd as EtcdServer).url,
        onLog: onNodeLog,
        onEvent: (line) => onManagerEvent(name, line),
        startTimeoutMs: 20_000,
      }),
    (m) => void managers.set(name, m),
    'manager-crash',
  );
}

const runs = (p: Child | undefined): boolean => p !== undefined && !stopping.has(p) && p.child.exitCode === null && p.child.signalCode === null;

/** The running manager that said last that it leads. */
function leadingManager(): string | undefined {
  const state = new Map<string, { at: number; leading: boolean }>();
  for (const l of leadership) state.set(l.manager, l);
  let leader: { name: string; at: number } | undefined;
  for (const [name, l] of state) if (l.leading && runs(managers.get(name)) && (leader === undefined || l.at > leader.at)) leader = { name, at: l.at };
  return leader?.name;
}

/** The first leadership another running manager announced at or after `since` (its clock); undefined after `timeoutMs`. */
async function takeover(not: string, since: number, timeoutMs: number): Promise<{ manager: string; at: number } | undefined> {
  const found = (): { manager: string; at: number } | undefined => leadership.find((l) => l.leading && l.manager !== not && l.at >= since && runs(managers.get(l.manager)));
  await waitFor(() => found() !== undefined, timeoutMs);
  return found();
}

/** SIGKILLs the leading manager, times the takeover, restarts it with no memory. */
async function managerFaultCycle(): Promise<void> {
  const leader = leadingManager();
  if (leader === undefined) return say('manager fault skipped: no manager leads');
  const m = managers.get(leader) as ManagerProcess;
  say(`fault: SIGKILL manager ${leader} (it leads)`);
  const killedAt = Date.now();
  stopping.add(m);
  await m.kill('SIGKILL');
  managerKills++;
  const next = await takeover(leader, killedAt, takeoverWaitMs);
  if (next === undefined) {
    violations.add('manager-failover', `no other manager led within ${takeoverWaitMs} ms of the SIGKILL of ${leader}`);
  } else {
    const ms = next.at - killedAt;
    takeoverMs.push(ms);
    say(`takeover: ${next.manager} leads ${ms} ms after the SIGKILL of ${leader}`);
    if (ms > takeoverMaxMs) violations.add('manager-failover', `${next.manager} led ${ms} ms after the SIGKILL of ${leader} (bound ${takeoverMaxMs} ms)`);
  }
  await sleep(killedAt + managerRestartDelayMs - Date.now());
  try {
    await startManager(leader);
  } catch (error) {
    violations.add('restart', (error as Error).message);
    managerFaultsEnabled = false;
  }
}

function managerFaultLoop(isDone: () => boolean): Promise<void> {
  return periodically(killManagerEvery, isDone, () => managerFaultsEnabled, managerFaultCycle);
}

/** etcd, then the nodes (their gossip seeds: the managers), then the managers; ready once the chain they placed is healthy. */
async function startEtcdCluster(): Promise<void> {
  const starting = startEtcd({ log: etcdLog('etcd') }).then((server) => (etcd = server));
  spawning.add(starting);
  const server = await starting.finally(() => spawning.delete(starting));
  say(`etcd ${server.url} (pid ${server.pid}); ${managerCount} managers; ${killManagerEvery > 0 ? `kill the leading manager every ${killManagerEvery} s` : 'no manager faults'}`);
  const url = parseStoreUrl(server.url);
  if (typeof url === 'string' || url.kind !== 'etcd') throw new Error(`etcd's URL ${server.url}: ${typeof url === 'string' ? url : 'not etcd'}`);
  store = EtcdConfigStore.connect({ endpoints: url.endpoints, prefix: url.prefix, cluster, log: etcdLog('store') });
  storeWatch = store.watch(onStoreConfig);
  while (managerSeeds.length < managerCount) {
    const address = `127.0.0.1:${await freeUdpPort()}`;
    // Nodes gossip on their TCP port's number: keep clear of those.
    if (!nodeIds.some((id) => addressOf(id) === address) && !managerSeeds.some((s) => s.address === address)) managerSeeds.push({ node: `manager${managerSeeds.length + 1}`, address });
  }
  await Promise.all(nodeIds.map((id) => startNode(id)));
  await Promise.all(managerSeeds.map((s) => startManager(s.node)));
  // The leading manager places the chain and writes it to etcd: the runner reads it there.
  const deadline = Date.now() + placementTimeoutMs;
  while ((await readStoreConfig()) === false || storeConfig === undefined) {
    if (Date.now() > deadline) throw new Error(`the managers placed no configuration of ${chain} in etcd within ${placementTimeoutMs} ms`);
    await sleep(200);
  }
  await untilHealthy('the initial configuration');
}

/**
 * The end of an etcd run: the chain healthy again, then every manager SIGKILLed at once (so
 * none reconfigures while the nodes stop), then etcd's final configuration of the chain.
 */
async function stopManagers(): Promise<void> {
  if (faultsEnabled) await untilHealthy('at the end of the run');
  await Promise.all(
    [...managers.values()].map((m) => {
      stopping.add(m);
      return m.kill('SIGKILL');
    }),
  );
  if (!(await readStoreConfig())) violations.add('store', `the final configuration of ${chain} could not be read from etcd; using the last one watched (epoch ${config().epoch})`);
}

/** Closes the store client, stops etcd and removes its data dir (bounded; etcd-server.ts kills it on exit otherwise). */
async function stopEtcd(): Promise<void> {
  storeWatch?.cancel();
  store?.close();
  store = undefined;
  const server = etcd;
  etcd = undefined;
  if (server !== undefined) await Promise.race([server.stop(), sleep(etcdStopWaitMs)]);
}

/** One sequence of epochs: no two nodes ran the same epoch with different members, nor other members than etcd held. */
function checkConfigurations(): void {
  const first = new Map<number, { node: string; members: string }>();
  const found = new Set<string>();
  for (const r of ran) {
    const seen = first.get(r.epoch);
    if (seen === undefined) first.set(r.epoch, r);
    else if (seen.members !== r.members) found.add(`${r.node} ran epoch ${r.epoch} of ${chain} as ${r.members}, but ${seen.node} ran it as ${seen.members}`);
    const stored = storeEpochs.get(r.epoch);
    if (stored !== undefined && stored !== r.members) found.add(`${r.node} ran epoch ${r.epoch} of ${chain} as ${r.members}, but etcd held ${stored}`);
  }
  for (const message of found) violations.add('configurations', message);
}

const median = (xs: readonly number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : Math.round(((s[mid - 1] as number) + (s[mid] as number)) / 2);
};

// ---------------------------------------------------------------------------------------------
// History

const events: HistoryEvent[] = [];
let history: WriteStream;
let historyOpen = false;

function record(e: HistoryEvent): void {
  if (!historyOpen) return;
  events.push(e);
  history.write(`${JSON.stringify(e)}\n`);
}

interface Pending {
  readonly process: number;
  readonly f: string;
  readonly key: string;
  readonly value: number | null;
  readonly extra: Partial<HistoryEvent>;
  done: boolean;
}
const inflight = new Set<Pending>();
const counts = { ok: 0, fail: 0, info: 0, invoked: 0 };

function invoke(process: number, f: string, key: string, value: number | null, extra: Partial<HistoryEvent> = {}): Pending {
  const p: Pending = { process, f, key, value, extra, done: false };
  inflight.add(p);
  counts.invoked++;
  record({ process, type: 'invoke', f, key, value, time: nowNs(), ...extra });
  return p;
}

function complete(p: Pending, type: 'ok' | 'fail' | 'info', value: number | null, extra: Partial<HistoryEvent> = {}): void {
  if (p.done) return;
  p.done = true;
  inflight.delete(p);
  counts[type]++;
  record({ process: p.process, type, f: p.f, key: p.key, value, time: nowNs(), ...p.extra, ...extra });
}

// ---------------------------------------------------------------------------------------------
// Load

const sessions = new Set<ChainSession>();
const readClients = new Set<ChainClient>();
let loadStopped = false;

function newSession(processId: number): ChainSession {
  const session = tcpSession({ ...opts, addresses: nodeIds.map(addressOf), chain, clientId: `p${processId}`, submitTimeoutMs, requestTimeoutMs, name: `p${processId}` });
  sessions.add(session);
  return session;
}

/** Returns the outcome type; 'info' retires the process. */
async function doAdd(session: ChainSession, processId: number, doc: string, amount: number): Promise<'ok' | 'fail' | 'info'> {
  const clientSeq = session.nextClientSeq();
  const clientId = `p${processId}`;
  const p = invoke(processId, 'add', doc, amount, { clientId, clientSeq });
  try {
    const result = await session.submit({ doc, docType, channel: 'add', payload: { by: amount }, viewer: clientId, clientSeq });
    const extra: Partial<HistoryEvent> = { seq: result.seq };
    if (!result.outcome.ok) extra.rejected = result.outcome.code;
    complete(p, 'ok', amount, extra);
    return 'ok';
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof ChainError && !error.retryable && error.code !== 'timeout' && error.code !== 'closed') {
      complete(p, 'fail', amount, { error: message });
      return 'fail';
    }
    // Timeout, the session was closed at the end, or an unexpected error: the outcome is unknown.
    complete(p, 'info', amount, { error: message });
    return 'info';
  }
}

async function readValue(doc: string, viewer: string): Promise<number> {
  const head = config().members[0]?.address ?? addressOf(nodeIds[0] as string);
  const client = await ChainClient.connect(head, { ...opts, name: `${viewer}-r`, connectTimeoutMs: 1_000, requestTimeoutMs: readTimeoutMs });
  readClients.add(client);
  try {
    const view = await client.subscribe({ chain, doc, docType, viewer }, () => {});
    client.unsubscribe(view.subscription, doc);
    const confirmed = JSON.parse(view.confirmedJson) as { value?: unknown };
    if (typeof confirmed.value !== 'number') throw new Error(`the confirmed view has no numeric value: ${view.confirmedJson}`);
    return confirmed.value;
  } finally {
    readClients.delete(client);
    client.close();
  }
}

async function doRead(processId: number, doc: string): Promise<'ok' | 'fail'> {
  const p = invoke(processId, 'read', doc, null);
  try {
    const value = await readValue(doc, `p${processId}`);
    complete(p, 'ok', value);
    return 'ok';
  } catch (error) {
    // A read changes nothing: any error is a definite fail.
    complete(p, 'fail', null, { error: error instanceof Error ? error.message : String(error) });
    return 'fail';
  }
}

async function clientLoop(slot: number, until: number): Promise<void> {
  const rng = seededRandom('chaos-client', slot, String(seed));
  let processId = slot;
  let session = newSession(processId);
  try {
    while (!loadStopped && elapsedS() < until) {
      if (events.length >= historyEventsMax) {
        if (!loadStopped) say(`historyEventsMax (${historyEventsMax}) reached: stopping the load early`);
        loadStopped = true;
        break;
      }
      const doc = `chaos-d${1 + rng.int(docCount)}`;
      let outcome: 'ok' | 'fail' | 'info';
      if (rng.next() < 0.9) outcome = await doAdd(session, processId, doc, 1 + rng.int(5));
      else outcome = await doRead(processId, doc);
      if (outcome === 'info') {
        // Jepsen's convention: a process with an unknown outcome is retired; a new one takes over.
        session.close();
        sessions.delete(session);
        processId += clientCount;
        session = newSession(processId);
      } else if (outcome === 'fail') {
        await sleep(20 + rng.int(30));
      }
    }
  } finally {
    session.close();
    sessions.delete(session);
  }
}

// ---------------------------------------------------------------------------------------------
// End checks

async function chainStatusOf(id: string): Promise<ChainStatus | undefined> {
  const status = await nodeStatus(addressOf(id), { ...opts, connectTimeoutMs: 1_000, requestTimeoutMs: 3_000 }, { includeDigests: true });
  return status.chains.find((c) => c.chain === chain);
}

const liveDocs = (s: ChainStatus): DocStatus[] => s.docs.filter((d) => d.appliedSeq > 0 || d.queue > 0);

async function waitQuiescent(members: string[]): Promise<Map<string, ChainStatus> | undefined> {
  if (members.length === 0) {
    violations.add('quiescence', `no member of epoch ${config().epoch} is running`);
    return undefined;
  }
  const deadline = Date.now() + quiescenceTimeoutMs;
  let last = '';
  for (;;) {
    try {
      const statuses = new Map<string, ChainStatus>();
      for (const id of members) {
        const s = await chainStatusOf(id);
        if (s !== undefined) statuses.set(id, s);
      }
      const key = (s: ChainStatus): string => JSON.stringify(liveDocs(s).map((d) => [d.doc, d.appliedSeq]));
      const all = [...statuses.values()];
      const first = all[0];
      last = members
        .map(
          (id) =>
            `${id}: ${statuses.get(id) === undefined ? 'no chain' : `epoch ${statuses.get(id)?.epoch} ${statuses.get(id)?.role} ${key(statuses.get(id) as ChainStatus)} queued ${statuses.get(id)?.queued}`}`,
        )
        .join('; ');
      if (first !== undefined && all.length === members.length && all.every((s) => key(s) === key(first) && s.docs.every((d) => d.queue === 0) && s.queued === 0)) return statuses;
    } catch (error) {
      last = `status failed: ${(error as Error).message}`;
    }
    if (Date.now() >= deadline) {
      violations.add('quiescence', `members did not converge within ${quiescenceTimeoutMs} ms: ${last}`);
      return undefined;
    }
    await sleep(100);
  }
}

function checkAgreement(statuses: Map<string, ChainStatus>): void {
  const entries = [...statuses];
  const [refId, ref] = entries[0] ?? [];
  if (ref === undefined || refId === undefined) return;
  const refDocs = new Map(liveDocs(ref).map((d) => [d.doc, d]));
  for (const [id, s] of entries.slice(1)) {
    const docs = new Map(liveDocs(s).map((d) => [d.doc, d]));
    for (const doc of new Set([...refDocs.keys(), ...docs.keys()])) {
      const a = refDocs.get(doc);
      const b = docs.get(doc);
      if (a === undefined || b === undefined) {
        violations.add('agreement', `${a === undefined ? refId : id} lacks ${doc}`, doc);
        continue;
      }
      const fields = (['appliedSeq', 'stateDigest', 'dedupeDigest', 'lastDeltaDigest', 'entropyDigest'] as const).filter((f) => a[f] !== b[f]);
      if (fields.length > 0) {
        violations.add('agreement', `${refId} and ${id} differ in ${fields.map((f) => `${f} (${a[f]} vs ${b[f]})`).join(', ')}`, doc);
      }
    }
  }
}

async function recoverNode(id: string): Promise<Map<string, FinalDoc>> {
  {
    const chains = await readStore(path.join(dataRoot, id));
    const out = new Map<string, FinalDoc>();
    for (const r of chains.get(chain)?.docs.values() ?? []) {
      out.set(r.doc, {
        doc: r.doc,
        appliedSeq: r.meta.appliedSeq,
        snapshotSeq: r.meta.snapshotSeq,
        logFrom: r.meta.logFrom,
        log: r.log.map((d) => ({ seq: d.seq, redoJson: d.redoJson, outcomeJson: d.outcomeJson, clientId: d.clientId, clientSeq: d.clientSeq })),
        state: r.state,
      });
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  say(`seed ${seed}; ${nodeCount} nodes, ${clientCount} clients, ${docCount} docs, ${seconds} s, kill every ${killEvery || 'never'} s${etcdMode ? '; on etcd' : ''}`);
  say(`history ${historyFile}; data ${dataRoot}${keep ? ' (kept)' : ''}`);
  history = createWriteStream(historyFile);
  await new Promise<void>((resolve, reject) => {
    history.once('open', () => resolve());
    history.once('error', reject);
  });
  historyOpen = true;

  ports = await freePorts(nodeCount);
  if (etcdMode) {
    await startEtcdCluster();
  } else {
    await Promise.all(nodeIds.map((id) => startNode(id)));
    const nodes = nodeIds.map((id) => ({ node: id, address: addressOf(id) }));
    manager = toolManager([initialConfig(chain, nodes)], { ...opts, k: nodeCount, nodes, log: (line) => nodeLog.write(`${elapsedS().toFixed(3)} manager: ${line}\n`) });
    await untilAcked('initial configuration');
  }
  say(
    `chain ${chain} epoch ${config().epoch}: ${config()
      .members.map((m) => `${m.node}@${m.address}`)
      .join(' -> ')}`,
  );

  const loadStart = elapsedS();
  const until = loadStart + seconds;
  let lastOk = 0;
  const progress = setInterval(() => {
    const rate = counts.ok - lastOk;
    lastOk = counts.ok;
    say(
      `acked ${counts.ok} failed ${counts.fail} unknown ${counts.info} in flight ${inflight.size} kills ${kills} failovers ${failovers}${etcdMode ? ` manager kills ${managerKills}` : ''} ${rate} ops/s`,
    );
  }, 1_000);

  let faultsDone = false;
  const isDone = (): boolean => faultsDone || elapsedS() >= until;
  const faults = Promise.all([faultLoop(isDone), etcdMode ? managerFaultLoop(isDone) : undefined]);
  const clients = Array.from({ length: clientCount }, (_, slot) => clientLoop(slot, until));
  const allClients = Promise.all(clients);

  // Run until the deadline (or the history bound stops the load).
  while (elapsedS() < until && !loadStopped) await sleep(100);
  loadStopped = true;
  faultsDone = true;
  say('load stopped; finishing the fault cycle in progress and in-flight operations');
  await faults;
  const settled = await Promise.race([allClients.then(() => true), sleep(graceMs).then(() => false)]);
  if (!settled) {
    say(`${inflight.size} operations still in flight after ${graceMs} ms: closing the sessions (they become info)`);
    for (const s of sessions) s.close();
    for (const c of readClients) c.close();
    await Promise.race([allClients, sleep(2_000)]);
  }
  for (const p of [...inflight]) complete(p, 'info', p.f === 'add' ? p.value : null, { error: 'the run ended while it was in flight' });
  clearInterval(progress);
  historyOpen = false;
  const flushed = new Promise<void>((resolve, reject) => {
    history.once('error', reject);
    history.end(() => resolve());
  });
  await flushed;

  // etcd mode: the managers stop first; the checks run on etcd's final configuration.
  if (etcdMode) await stopManagers();

  // Replicas: converged and agreeing.
  const members = config()
    .members.map((m) => m.node)
    .filter(isLive);
  say(`waiting for ${members.join(', ')} to converge (epoch ${config().epoch})`);
  const statuses = await waitQuiescent(members);
  if (statuses !== undefined) checkAgreement(statuses);

  // Stop the manager and the nodes, and read their stores back.
  manager?.stop();
  await Promise.all(nodeIds.map((id) => stopNode(id, 'SIGTERM', stopTimeoutMs)));
  await stopEtcd();
  checkConfigurations();
  const byNode = new Map<string, Map<string, FinalDoc>>();
  for (const id of members) {
    try {
      byNode.set(id, await recoverNode(id));
    } catch (error) {
      violations.add('recover', `recovering ${id}: ${(error as Error).message}`);
    }
  }

  // History against the stores.
  const ops: Op[] = pairOps(events, violations);
  checkReplicaLogs(byNode, violations);
  const reference = byNode.values().next().value as Map<string, FinalDoc> | undefined;
  if (reference !== undefined) {
    checkExactlyOnce(ops, reference, violations);
    checkValues(ops, reference, violations);
  } else {
    violations.add('recover', 'no member store could be read');
  }
  checkReads(ops, violations);

  const all = tally(ops);
  const summary = {
    acked: all.ok,
    failed: all.fail,
    unknown: all.info,
    kills,
    failovers,
    rejoins,
    ...(etcdMode ? { configStore: 'etcd', managers: managerCount, managerKills, takeoverMs, takeoverMsMedian: median(takeoverMs) } : {}),
    violations: violations.result(),
    ops: ops.length,
    adds: tally(ops, 'add'),
    reads: tally(ops, 'read'),
    nodeProblemLines: nodeProblemCount,
    seconds: Number((elapsedS() - loadStart).toFixed(3)),
    seed,
    history: historyFile,
    ...(keep ? { data: dataRoot } : {}),
  };
  if (nodeProblems.length > 0) say(`node log lines that look like problems (${nodeProblemCount}):\n  ${nodeProblems.join('\n  ')}`);
  for (const v of summary.violations) say(`VIOLATION ${v.check}${v.key === undefined ? '' : ` ${v.key}`}: ${v.message}`);
  await new Promise<void>((resolve) => nodeLog.end(() => resolve()));
  await new Promise<void>((resolve) => process.stdout.write(`${JSON.stringify(summary)}\n`, () => resolve()));
  return violations.size > 0 ? 1 : 0;
}

main().then(
  (code) => {
    cleanupNow();
    process.exit(code);
  },
  (error: unknown) => abort(1, `runner failed: ${(error as Error)?.stack ?? String(error)}`),
);
