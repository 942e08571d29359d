// Chaos runner: a real chain of node processes under closed-loop client load, with SIGKILLs,
// failovers and rejoins, recording a Jepsen-style history and checking it against what the
// replicas hold at the end (history.ts has the checks).
//
//   npm run chaos -- [--nodes 3] [--seconds 30] [--kill-every 3] [--history FILE] ...
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
import { ChainClient, ChainError, nodeStatus, tcpSession, type ChainStatus, type ClientOptions, type DocStatus } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import { initialConfig } from '../control/decisions.ts';
import type { ManagerLoop } from '../control/manager-loop.ts';
import { readStore } from '../runtime/level-disk.ts';
import { checkExactlyOnce, checkReads, checkReplicaLogs, checkValues, pairOps, tally, Violations, type FinalDoc, type HistoryEvent, type Op } from './history.ts';
import { spawnNode, type NodeProcess } from './processes.ts';
import { toolManager, waitFor } from './reconfigure.ts';

const usage = `usage: npm run chaos -- [options]     (or: tsx chain/tools/chaos.ts [options])

Starts a chain of real node processes, runs closed-loop clients against counter documents,
SIGKILLs a random node every few seconds (failover: it is removed from the chain, restarted on
its port and data dir, and added back at the tail by state transfer), records a history of
every operation, and checks at the end: replicas agree (status digests and recovered LevelDB
logs), every acknowledged add is applied exactly once, nothing un-invoked or failed is applied,
final values match the logged amounts, reads lie within the counter's linearizable bounds.

  --nodes K        chain length (default 3)
  --seconds S      load duration (default 30)
  --kill-every S   seconds between faults (default 3; 0: no faults)
  --history FILE   JSON-lines history (default: a new file under the OS temp dir)
  --clients C      concurrent clients (default 16)
  --docs D         counter documents chaos-d1..chaos-dD (default 8)
  --seed N         seed for the runner's choices (default random; printed)
  --keep           keep the nodes' data dirs (and their log) instead of removing them
  -h, --help       this text

The last stdout line is a JSON summary. Exit status: 0 no violation, 1 violations (or a crash of
the runner), 2 bad arguments.`;

// Bounds.
const nodesMax = 16;
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
const historyFile = path.resolve(typeof values.history === 'string' ? values.history : path.join(tmpdir(), `chaos-history-${process.pid}-${Date.now()}.jsonl`));

// ---------------------------------------------------------------------------------------------
// State shared by the phases (module scope, so the exit handlers can clean up).

const secret = randomBytes(16).toString('hex');
const opts: ClientOptions = { cluster, secret };
const env = { ADAMA_LIMITS: JSON.stringify({ deltaLogEntriesMax: 10_000_000, deltaLogKeepEntries: 10_000_000 }) };
const nodeIds = Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`);
/** The current process of each node. */
const processes = new Map<string, NodeProcess>();
/** Every node process this runner started (registered as soon as it listens). */
const children = new Set<NodeProcess>();
/** Nodes this runner stopped on purpose (a later exit is not a crash). */
const stopping = new Set<NodeProcess>();
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

/** Node starts in progress: their processes are not in `processes` until they listen. */
const spawning = new Set<Promise<unknown>>();
/** How long an abort waits for node starts in progress, to kill those nodes too. */
const abortWaitMs = 3_000;
let aborting = false;

/** Stops every node (including ones still starting), removes the data, exits with `code`. */
function abort(code: number, why: string): void {
  say(why);
  if (aborting) return;
  aborting = true;
  killAllNow();
  const pending = [...spawning];
  void Promise.race([Promise.allSettled(pending), sleep(abortWaitMs)]).then(() => {
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

function onNodeLog(line: string): void {
  nodeLog.write(`${elapsedS().toFixed(3)} ${line}\n`);
  if (/FATAL|diverged|protocol_error|ahead on/.test(line)) {
    nodeProblemCount++;
    if (nodeProblems.length < nodeProblemLinesMax) nodeProblems.push(line);
    say(`node log: ${line}`);
  }
}

let ports: number[] = [];
const addressOf = (id: string): string => `127.0.0.1:${ports[nodeIds.indexOf(id)] as number}`;

async function startNode(id: string): Promise<NodeProcess> {
  const port = ports[nodeIds.indexOf(id)] as number;
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= restartAttemptsMax; attempt++) {
    if (aborting) throw new Error('the runner is stopping');
    try {
      // Registered in the same step that settles `starting`, so an abort waiting for it kills it.
      const starting = spawnNode({ id, dataDir: path.join(dataRoot, id), cluster, secret, port, env, onLog: onNodeLog, startTimeoutMs: 20_000 }).then((child) => {
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
      if (p.address !== addressOf(id)) throw new Error(`node ${id} listens on ${p.address}, not ${addressOf(id)}`);
      processes.set(id, p);
      void p.exited.then((code) => {
        if (stopping.has(p)) return;
        violations.add('node-crash', `node ${id} (pid ${p.child.pid}) exited on its own with code ${code} signal ${p.child.signalCode}`);
        say(`node ${id} exited on its own (code ${code})`);
      });
      return p;
    } catch (error) {
      lastError = error as Error;
      say(`starting ${id} on port ${port} failed (attempt ${attempt}): ${lastError.message}`);
      await sleep(200 * attempt);
    }
  }
  throw new Error(`could not start node ${id}: ${lastError?.message}`);
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

let manager: ManagerLoop;
let kills = 0;
let failovers = 0;
let rejoins = 0;
const config = (): ChainConfig => manager.configs.get(chain) as ChainConfig;

/** Waits (bounded) until every live member acknowledged the current configuration; the manager loop pushes and retries. */
async function untilAcked(what: string): Promise<void> {
  const missing = (): string[] => manager.unacked(chain).filter((node) => isLive(node) && config().members.some((m) => m.node === node));
  if (await waitFor(() => missing().length === 0, pushTimeoutMs)) return;
  violations.add('reconfigure', `${what}: epoch ${config().epoch} not acknowledged by ${missing().join(', ')} within ${pushTimeoutMs} ms`);
}

let faultsEnabled = true;

async function faultCycle(rng: Random): Promise<void> {
  const members = config().members;
  if (members.length !== nodeCount || !nodeIds.every(isLive)) return;
  // A rejoined node must hold the committed state before another member may fail over.
  if (manager.joining(chain).size > 0) return;
  const victim = nodeIds[rng.int(nodeIds.length)] as string;
  const role = members.length === 1 ? 'single' : members[0]?.node === victim ? 'head' : members[members.length - 1]?.node === victim ? 'tail' : 'middle';
  say(`fault: SIGKILL ${victim} (${role}, epoch ${config().epoch})`);
  const p = processes.get(victim) as NodeProcess;
  stopping.add(p);
  await p.kill('SIGKILL');
  kills++;
  if (nodeCount > 1) {
    if (!manager.remove(chain, victim)) {
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
  let restarted: NodeProcess;
  try {
    restarted = await startNode(victim);
  } catch (error) {
    violations.add('restart', (error as Error).message);
    faultsEnabled = false;
    return;
  }
  if (nodeCount > 1) {
    if (restarted.address !== addressOf(victim)) violations.add('restart', `${victim} came back at ${restarted.address}`);
    if (!(await waitFor(() => manager.add(chain, victim), pushTimeoutMs, 50))) {
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

async function faultLoop(until: number, isDone: () => boolean): Promise<void> {
  if (killEvery <= 0) return;
  const rng = seededRandom('chaos-faults', 1, String(seed));
  let next = elapsedS() + killEvery;
  while (!isDone() && faultsEnabled) {
    const waitMs = (next - elapsedS()) * 1000;
    if (waitMs > 0) await sleep(Math.min(waitMs, 200));
    if (isDone() || elapsedS() >= until) return;
    if (elapsedS() < next) continue;
    await faultCycle(rng);
    next = Math.max(next + killEvery, elapsedS() + 0.1);
  }
}

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
      const fields = (['appliedSeq', 'stateDigest', 'dedupeDigest', 'lastDeltaDigest'] as const).filter((f) => a[f] !== b[f]);
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
  say(`seed ${seed}; ${nodeCount} nodes, ${clientCount} clients, ${docCount} docs, ${seconds} s, kill every ${killEvery || 'never'} s`);
  say(`history ${historyFile}; data ${dataRoot}${keep ? ' (kept)' : ''}`);
  history = createWriteStream(historyFile);
  await new Promise<void>((resolve, reject) => {
    history.once('open', () => resolve());
    history.once('error', reject);
  });
  historyOpen = true;

  ports = await freePorts(nodeCount);
  await Promise.all(nodeIds.map((id) => startNode(id)));
  const nodes = nodeIds.map((id) => ({ node: id, address: addressOf(id) }));
  manager = toolManager([initialConfig(chain, nodes)], { ...opts, k: nodeCount, nodes, log: (line) => nodeLog.write(`${elapsedS().toFixed(3)} manager: ${line}\n`) });
  await untilAcked('initial configuration');
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
    say(`acked ${counts.ok} failed ${counts.fail} unknown ${counts.info} in flight ${inflight.size} kills ${kills} failovers ${failovers} ${rate} ops/s`);
  }, 1_000);

  let faultsDone = false;
  const faults = faultLoop(until, () => faultsDone || elapsedS() >= until);
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

  // Replicas: converged and agreeing.
  const members = config()
    .members.map((m) => m.node)
    .filter(isLive);
  say(`waiting for ${members.join(', ')} to converge (epoch ${config().epoch})`);
  const statuses = await waitQuiescent(members);
  if (statuses !== undefined) checkAgreement(statuses);

  // Stop the manager and the nodes, and read their stores back.
  manager.stop();
  await Promise.all(nodeIds.map((id) => stopNode(id, 'SIGTERM', stopTimeoutMs)));
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
