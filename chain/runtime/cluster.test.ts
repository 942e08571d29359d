// Real node processes on loopback, real LevelDB in temp dirs (removed afterwards).

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChainSession } from '../client/session.ts';
import { AdminClient, ChainClient, ChainError, nodeStatus, tcpSession, type ChainStatus } from '../client/tcp.ts';
import type { ChainConfig } from '../core/config.ts';
import { initialConfig } from '../control/decisions.ts';
import type { ManagerLoop } from '../control/manager-loop.ts';
import { spawnNode, type NodeProcess } from '../tools/processes.ts';
import { rawClient } from '../tools/test-node.ts';
import { pushConfig, toolManager, waitFor } from '../tools/reconfigure.ts';
import { Connection } from './connection.ts';
import { connectionOptions } from './tcp-net.ts';
import { frame } from './framing.ts';
import { encodeFrame, make, type Frame } from './wire.ts';

const cluster = 'test';
const secret = randomBytes(12).toString('hex');
const opts = { cluster, secret };

interface Cluster {
  dir: string;
  nodes: Map<string, NodeProcess>;
  manager: ManagerLoop;
  config(): ChainConfig;
  /** Waits until every member named acknowledged the current configuration. */
  acked(members?: string[]): Promise<boolean>;
  logs: string[];
  start(id: string, env?: Record<string, string>): Promise<NodeProcess>;
  stop(): Promise<void>;
}

async function startCluster(k: number, env: Record<string, string> = {}): Promise<Cluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-chain-test-'));
  const nodes = new Map<string, NodeProcess>();
  const logs: string[] = [];
  const start = async (id: string, extra: Record<string, string> = {}): Promise<NodeProcess> => {
    const p = await spawnNode({ id, dataDir: path.join(dir, id), cluster, secret, env: { ...env, ...extra }, onLog: (line) => logs.push(line) });
    nodes.set(id, p);
    return p;
  };
  for (let i = 1; i <= k; i++) await start(`n${i}`);
  const addresses = [...nodes.values()].map((p) => ({ node: p.id, address: p.address }));
  const manager = toolManager([initialConfig('c1', addresses)], { ...opts, k: 3, nodes: addresses });
  const config = (): ChainConfig => manager.configs.get('c1') as ChainConfig;
  const acked = (members = config().members.map((m) => m.node)): Promise<boolean> => waitFor(() => manager.unacked('c1').every((n) => !members.includes(n)), 10_000);
  if (!(await acked())) throw new Error(`configure failed: ${manager.unacked('c1').join(', ')} did not acknowledge`);
  return {
    dir,
    nodes,
    manager,
    config,
    acked,
    logs,
    start,
    async stop() {
      manager.stop();
      await Promise.all([...nodes.values()].map((p) => p.kill('SIGKILL')));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function session(c: Cluster, clientId: string): ChainSession {
  return tcpSession({ ...opts, addresses: [...c.nodes.values()].map((p) => p.address), chain: 'c1', clientId, submitTimeoutMs: 30_000 });
}

async function chainStatus(address: string): Promise<ChainStatus> {
  const status = await nodeStatus(address, opts, { includeState: true, includeDigests: true });
  return status.chains[0] as ChainStatus;
}

/** Waits until every member reports the same applied seqs with empty queues; returns their docs. */
async function quiescent(c: Cluster, members: string[]): Promise<ChainStatus[]> {
  let last: ChainStatus[] = [];
  for (let i = 0; i < 100; i++) {
    last = await Promise.all(members.map((id) => chainStatus((c.nodes.get(id) as NodeProcess).address)));
    const key = (s: ChainStatus): string => JSON.stringify(s.docs.map((d) => [d.doc, d.appliedSeq, d.queue]));
    if (last.every((s) => key(s) === key(last[0] as ChainStatus) && s.docs.every((d) => d.queue === 0))) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return last;
}

const agreement = (statuses: ChainStatus[]): string[] => statuses.map((s) => JSON.stringify(s.docs.map((d) => [d.doc, d.appliedSeq, d.stateDigest, d.dedupeDigest, d.lastDeltaDigest])));

/** `clients` sessions each adding 1 to a doc, `count` times; returns acks per client. */
async function load(c: Cluster, clients: number, count: number, prefix: string, during?: (done: number) => Promise<void>): Promise<Map<string, number>> {
  const acked = new Map<string, number>();
  let done = 0;
  let fired = false;
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const clientId = `${prefix}${i}`;
      const s = session(c, clientId);
      for (let j = 0; j < count; j++) {
        const result = await s.submit({ doc: `doc-${i % 4}`, docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: clientId });
        if (!result.outcome.ok) throw new Error(`add failed: ${JSON.stringify(result.outcome)}`);
        acked.set(clientId, (acked.get(clientId) ?? 0) + 1);
        done++;
        if (!fired && during !== undefined && done >= (clients * count) / 3) {
          fired = true;
          await during(done);
        }
      }
      s.close();
    }),
  );
  return acked;
}

/** Every acknowledged add is in the state exactly once: contributions per client = its acks. */
function contributions(status: ChainStatus): Record<string, number> {
  const out = new Map<string, number>();
  for (const d of status.docs) {
    const state = d.state as { contributions: Record<string, number> };
    for (const [viewer, amount] of Object.entries(state.contributions)) out.set(viewer, (out.get(viewer) ?? 0) + amount);
  }
  return sorted(out);
}

const sorted = (map: Map<string, number>): Record<string, number> => Object.fromEntries([...map].sort((a, b) => (a[0] < b[0] ? -1 : 1)));

for (const k of [1, 2, 3]) {
  test.serial(`k=${k}: commits from 16 concurrent clients are acknowledged, applied once, and replicas agree`, async (t) => {
    const c = await startCluster(k);
    try {
      const acked = await load(c, 16, 10, 'k');
      t.is(
        [...acked.values()].reduce((a, b) => a + b, 0),
        160,
      );
      const statuses = await quiescent(c, [...c.nodes.keys()]);
      const agreed = agreement(statuses);
      for (const a of agreed) t.is(a, agreed[0] as string);
      t.deepEqual(contributions(statuses[0] as ChainStatus), sorted(acked));
    } finally {
      await c.stop();
    }
  });
}

test.serial('restart recovery: a SIGKILLed node recovers its state and dedupe table from LevelDB', async (t) => {
  const c = await startCluster(1);
  try {
    const s = session(c, 'r1');
    for (let i = 0; i < 30; i++) await s.submit({ doc: 'doc-r', docType: 'counter', channel: 'add', payload: { by: 2 }, viewer: 'r1' });
    const before = await chainStatus((c.nodes.get('n1') as NodeProcess).address);
    await (c.nodes.get('n1') as NodeProcess).kill('SIGKILL');
    const restarted = await c.start('n1');
    // Straight after recovery, before any new configuration, it serves as the head it was.
    const watcher = await ChainClient.connect(restarted.address, opts);
    const full = await watcher.subscribe({ chain: 'c1', doc: 'doc-r', docType: 'counter', viewer: 'r1' }, () => {});
    t.deepEqual([full.seq, JSON.parse(full.confirmedJson).value], [30, 60]);
    watcher.close();
    // The new process has a new port: re-issue the configuration with it (next epoch).
    const config = c.config();
    const pushed = await pushConfig({ ...config, epoch: config.epoch + 1, members: config.members.map((m) => ({ ...m, address: restarted.address })) }, [], opts);
    t.deepEqual(pushed.missing, []);
    const after = await chainStatus(restarted.address);
    t.deepEqual(
      after.docs.map((d) => [d.appliedSeq, d.stateDigest, d.dedupeDigest]),
      before.docs.map((d) => [d.appliedSeq, d.stateDigest, d.dedupeDigest]),
    );
    const client = await ChainClient.connect(restarted.address, opts);
    const again = await client.submit({ chain: 'c1', doc: 'doc-r', docType: 'counter', channel: 'add', payload: { by: 2 }, clientId: 'r1', clientSeq: 30, viewer: 'r1' });
    t.deepEqual([again.seq, again.duplicate], [30, true], 'a resend after the restart is answered from the durable dedupe table');
    client.close();
    s.close();
  } finally {
    await c.stop();
  }
});

for (const [position, victim] of [
  ['head', 'n1'],
  ['middle', 'n2'],
  ['tail', 'n3'],
] as const) {
  test.serial(`SIGKILL of the ${position} under load loses no acknowledged message and applies none twice`, async (t) => {
    const c = await startCluster(3);
    try {
      const acked = await load(c, 8, 25, 'x', async () => {
        await (c.nodes.get(victim) as NodeProcess).kill('SIGKILL');
        t.true(c.manager.remove('c1', victim));
        t.true(await c.acked(), 'the remaining members acknowledged the new configuration');
      });
      t.is(
        [...acked.values()].reduce((a, b) => a + b, 0),
        200,
      );
      const live = ['n1', 'n2', 'n3'].filter((n) => n !== victim);
      const statuses = await quiescent(c, live);
      const agreed = agreement(statuses);
      t.is(agreed[0], agreed[1]);
      t.deepEqual(contributions(statuses[0] as ChainStatus), sorted(acked));
    } finally {
      await c.stop();
    }
  });
}

test.serial('a node joins at the tail by state transfer (snapshot once the log was compacted), then serves as tail', async (t) => {
  const c = await startCluster(2, { ADAMA_LIMITS: JSON.stringify({ deltaLogEntriesMax: 16, deltaLogKeepEntries: 8, docQueueDepthMax: 8 }) });
  try {
    await load(c, 4, 20, 'j');
    const _joiner = await c.start('n3');
    const manager = toolManager([c.config()], { ...opts, k: 3, nodes: [...c.nodes.values()].map((p) => ({ node: p.id, address: p.address })) });
    c.manager.stop();
    try {
      t.true(manager.add('c1', 'n3'));
      t.true(await waitFor(() => manager.acked('c1'), 10_000));
    } finally {
      manager.stop();
    }
    const acked = await load(c, 4, 10, 'j2');
    t.is(
      [...acked.values()].reduce((a, b) => a + b, 0),
      40,
    );
    const statuses = await quiescent(c, ['n1', 'n2', 'n3']);
    const agreed = agreement(statuses);
    t.is(agreed[2], agreed[0]);
    t.true(
      (statuses[2] as ChainStatus).docs.some((d) => d.snapshotSeq > 0),
      'the joiner received at least one snapshot',
    );
    t.is((statuses[2] as ChainStatus).role, 'tail');
  } finally {
    await c.stop();
  }
});

test.serial('stale epochs are refused: an old configuration, and a peer speaking an old epoch', async (t) => {
  const c = await startCluster(2);
  try {
    const old = c.config();
    const again = await pushConfig(old, [], opts); // same epoch again: idempotent
    t.deepEqual(again.missing, []);
    const n2 = c.nodes.get('n2') as NodeProcess;
    t.true(c.manager.remove('c1', 'n2'));
    t.true(await c.acked(['n1', 'n2']), 'the member and the removed node acknowledged');
    const admin = await AdminClient.connect(n2.address, opts);
    const error = await t.throwsAsync(admin.configure(old), { instanceOf: ChainError });
    t.is(error?.code, 'stale_epoch');
    admin.close();
    // n1 (epoch 2) gets an Attach for epoch 1 from "n0": refused with stale_epoch, then closed.
    const peer = await Connection.dial((c.nodes.get('n1') as NodeProcess).address, { ...connectionOptions(opts, 'n0'), role: 'peer' });
    const reply = new Promise<Frame>((resolve) => peer.onFrame(resolve));
    peer.send(make('attach', { chain: 'c1', epoch: old.epoch, applied: [], more: false }));
    const f = await reply;
    t.is(f.kind === 'failure' ? f.failure.code : f.kind, 'stale_epoch');
  } finally {
    await c.stop();
  }
});

test.serial('a node fenced from a chain it never held keeps that epoch: an older configuration pushed later is refused (a new leader fences every node)', async (t) => {
  const c = await startCluster(2);
  try {
    const n1 = { node: 'n1', address: (c.nodes.get('n1') as NodeProcess).address, sinceEpoch: 1 };
    const n2 = c.nodes.get('n2') as NodeProcess;
    const admin = await AdminClient.connect(n2.address, opts);
    const fenced = await admin.configure({ chain: 'c9', epoch: 4, members: [n1] });
    t.is(fenced.epoch, 4);
    t.is(fenced.role, 'none');
    const error = await t.throwsAsync(admin.configure({ chain: 'c9', epoch: 3, members: [n1, { node: 'n2', address: n2.address, sinceEpoch: 1 }] }), { instanceOf: ChainError });
    t.is(error?.code, 'stale_epoch');
    admin.close();
  } finally {
    await c.stop();
  }
});

test.serial('a wrong cluster secret cannot submit, join or configure', async (t) => {
  const c = await startCluster(1);
  try {
    const address = (c.nodes.get('n1') as NodeProcess).address;
    const bad = { cluster, secret: 'not-the-secret-of-this-cluster' };
    // TLS with a pre-shared key: the connection itself is refused, for either role.
    const error = await t.throwsAsync(ChainClient.connect(address, bad), { instanceOf: ChainError });
    t.is(error?.code, 'bad_auth');
    const adminError = await t.throwsAsync(AdminClient.connect(address, bad), { instanceOf: ChainError });
    t.is(adminError?.code, 'bad_auth');
    t.true(
      c.logs.some((line) => line.includes('bad_auth')),
      'the node logs the refused handshakes',
    );
    const status = await chainStatus(address);
    t.is(status.epoch, 1, 'nothing changed');
    t.deepEqual(status.docs, []);
  } finally {
    await c.stop();
  }
});

test.serial('garbage, truncated and oversized frames close only that connection, with a typed error', async (t) => {
  const c = await startCluster(1);
  try {
    const address = (c.nodes.get('n1') as NodeProcess).address;
    const s = session(c, 'good');
    await s.submit({ doc: 'doc-g', docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'good' });

    const garbage = await rawClient({ address, secret, transport: 'tls' }, 'raw', cluster);
    garbage.socket.write(frame(Buffer.from('this is not a protobuf frame at all \xff\xff\xff')));
    const oversized = await rawClient({ address, secret, transport: 'tls' }, 'raw', cluster);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(512 * 1024 * 1024);
    oversized.socket.write(header);
    const truncated = await rawClient({ address, secret, transport: 'tls' }, 'raw', cluster);
    const whole = frame(
      encodeFrame(make('submit', { requestId: 1, chain: 'c1', doc: 'doc-g', docType: 'counter', channel: 'add', payloadJson: '{"by":1}', clientId: 'raw', clientSeq: 1, viewer: 'raw' })),
    );
    truncated.socket.end(whole.subarray(0, whole.length - 3));

    const codes = async (p: Promise<Frame[]>): Promise<string[]> => (await p).map((f) => (f.kind === 'failure' ? f.failure.code : f.kind));
    t.deepEqual(await codes(garbage.closed), ['malformed_frame']);
    t.deepEqual(await codes(oversized.closed), ['frame_too_large']);
    await truncated.closed; // closed by the node after the half frame
    // The node still serves the good client, and the truncated submit was never applied.
    for (let i = 0; i < 5; i++) await s.submit({ doc: 'doc-g', docType: 'counter', channel: 'add', payload: { by: 1 }, viewer: 'good' });
    const status = await chainStatus(address);
    t.deepEqual((status.docs[0]?.state as { contributions: Record<string, number> } | undefined)?.contributions, { good: 6 });
    s.close();
    // Closed connections are forgotten (connectionsMax counts open ones): once the manager's
    // pooled admin link closes too, only this status request's own remains.
    c.manager.stop();
    let open = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 100 && open > 1; i++) {
      open = (await nodeStatus(address, opts)).connections;
      if (open > 1) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    t.is(open, 1);
  } finally {
    await c.stop();
  }
});
