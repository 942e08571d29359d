// Test support for the hostile-input tests: one real node process (k=1 chain c1), raw
// connections that speak the node's handshake by hand, and the checks every such test ends
// with (the process lives, a legitimate client commits, committed data is unchanged).

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { ChainClient, nodeStatus, type ChainStatus, type ClientOptions } from '../client/tcp.ts';
import { initialConfig } from '../control/decisions.ts';
import { spawnNode, type NodeProcess } from './processes.ts';
import { pushConfig } from './reconfigure.ts';
import { deriveKeyring, type Transport } from '../runtime/credentials.ts';
import { frame, FrameReader } from '../runtime/framing.ts';
import { decodeFrame, encodeFrame, make, type Frame } from '../runtime/wire.ts';

export const testCluster = 'hostile';

export interface TestNode {
  readonly process: NodeProcess;
  readonly address: string;
  readonly secret: string;
  readonly transport: Transport;
  readonly logs: string[];
  /** Master-secret options (every role). */
  readonly options: ClientOptions;
  alive(): boolean;
  /** Resident memory of the node process (bytes). */
  rssBytes(): number;
  stop(): Promise<void>;
}

export async function startTestNode(o: { transport?: Transport; gossip?: boolean } = {}): Promise<TestNode> {
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-hostile-'));
  const secret = randomBytes(16).toString('hex');
  const transport = o.transport ?? 'tls';
  const logs: string[] = [];
  const p = await spawnNode({
    id: 'n1',
    dataDir: path.join(dir, 'n1'),
    cluster: testCluster,
    secret,
    transport,
    // A seed that is not there: the node runs its failure detector and listens for gossip.
    gossipSeeds: o.gossip === true ? [{ node: 'nobody', address: '127.0.0.1:9' }] : undefined,
    onLog: (line) => logs.push(line),
  });
  const options: ClientOptions = { cluster: testCluster, secret, transport };
  const result = await pushConfig(initialConfig('c1', [{ node: 'n1', address: p.address }]), [], options);
  if (result.missing.length > 0) throw new Error('the test node did not take its configuration');
  return {
    process: p,
    address: p.address,
    secret,
    transport,
    logs,
    options,
    alive: () => p.child.exitCode === null && p.child.signalCode === null,
    rssBytes: () => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'));
      return Number(m?.[1] ?? 0) * 1024;
    },
    async stop() {
      await p.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Submits `by` to counter document `doc` as a legitimate client; resolves with the seq. */
export async function commit(node: TestNode, doc: string, clientId: string, clientSeq: number, by = 1): Promise<number> {
  const client = await ChainClient.connect(node.address, { ...node.options, connectTimeoutMs: 2_000, requestTimeoutMs: 5_000 });
  try {
    const r = await client.submit({ chain: 'c1', doc, docType: 'counter', channel: 'add', payload: { by }, clientId, clientSeq, viewer: clientId });
    return r.seq;
  } finally {
    client.close();
  }
}

/** Committed documents, as the node's admin status reports them. */
export async function committed(node: TestNode): Promise<ChainStatus['docs']> {
  const st = await nodeStatus(node.address, node.options, { includeState: true, includeDigests: true });
  return (st.chains[0] as ChainStatus).docs;
}

/** A raw connection that completed the handshake as `client` (TLS PSK or plain mac, as the node). */
export async function rawClient(
  node: Pick<TestNode, 'address' | 'secret' | 'transport'>,
  name = 'raw',
  cluster = testCluster,
): Promise<{ socket: net.Socket; frames: Frame[]; closed: Promise<Frame[]> }> {
  const [host, port] = node.address.split(':') as [string, string];
  const key = deriveKeyring(node.secret, cluster).client;
  const socket =
    node.transport === 'tls'
      ? tls.connect({
          host,
          port: Number(port),
          minVersion: 'TLSv1.3',
          ciphers: 'TLS_AES_128_GCM_SHA256',
          pskCallback: () => ({ psk: Buffer.from(key, 'base64url'), identity: `client/${name}` }),
          checkServerIdentity: () => undefined,
        })
      : net.connect({ host, port: Number(port) });
  socket.on('error', () => {});
  const reader = new FrameReader();
  const frames: Frame[] = [];
  let helloDone: (hello: Frame) => void = () => {};
  const hello = new Promise<Frame>((resolve) => (helloDone = resolve));
  socket.on('data', (chunk) => {
    try {
      for (const body of reader.push(chunk)) {
        const f = decodeFrame(body);
        if (f.kind === 'hello') helloDone(f);
        else frames.push(f);
      }
    } catch {
      socket.destroy();
    }
  });
  const closed = new Promise<Frame[]>((resolve) => socket.on('close', () => resolve(frames)));
  const listener = await hello;
  if (listener.kind !== 'hello') throw new Error('no hello');
  const mine = { cluster, node: name, epoch: 0, role: 'client' as const, nonce: randomBytes(16) };
  const { helloMac } = await import('../runtime/connection.ts');
  const mac = node.transport === 'plain' ? helloMac(key, mine, listener.hello.nonce) : new Uint8Array();
  socket.write(frame(encodeFrame(make('hello', { ...mine, mac }))));
  return { socket, frames, closed };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
