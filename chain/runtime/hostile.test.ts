// Issue 15, findings 1, 5 and 6, against real node processes over the documented TCP wire:
// no input kills a node; connections still in their handshake are bounded; both ends of a
// connection authenticate, each credential grants one role, and frames are protected.

import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { AdminClient, ChainClient, ChainError, lookupHead } from '../client/tcp.ts';
import { commit, committed, rawClient, sleep, startTestNode, testCluster, type TestNode } from '../tools/test-node.ts';
import { deriveKeyring } from './credentials.ts';
import { frame } from './framing.ts';
import { handshakesMaxDefault, TcpNet } from './tcp-net.ts';
import { encodeFrame, make } from './wire.ts';

const contributions = (docs: Awaited<ReturnType<typeof committed>>, doc: string): unknown => (docs.find((d) => d.doc === doc)?.state as { contributions?: unknown } | undefined)?.contributions;

async function stillServes(t: import('ava').ExecutionContext, node: TestNode, clientSeq: number): Promise<void> {
  t.true(node.alive(), `the node process is alive (logs: ${node.logs.slice(-5).join(' | ')})`);
  t.is(await commit(node, 'probe', 'prober', clientSeq), clientSeq, 'a legitimate client commits');
}

test.serial('finding 1: 64 random bytes and a reset before the hello, 300 times, do not kill a node', async (t) => {
  const node = await startTestNode();
  try {
    await stillServes(t, node, 1);
    const [host, port] = node.address.split(':') as [string, string];
    for (let i = 0; i < 300; i++) {
      const socket = net.connect({ host, port: Number(port) });
      socket.on('error', () => {});
      await new Promise<void>((resolve) => {
        socket.once('connect', () => {
          socket.write(randomBytes(64));
          // Close at once, without reading the node's answer: half of them with a reset.
          if (i % 2 === 0) socket.resetAndDestroy();
          else socket.destroy();
          resolve();
        });
        socket.once('error', () => resolve());
      });
    }
    await sleep(500);
    await stillServes(t, node, 2);
  } finally {
    await node.stop();
  }
});

test.serial('finding 1: a node stalled longer than its clients connect timeout survives when it resumes (3 tries)', async (t) => {
  const node = await startTestNode();
  try {
    for (let attempt = 1; attempt <= 3; attempt++) {
      node.process.child.kill('SIGSTOP');
      // Clients give up while the node is stopped: their connects time out and reset.
      const tries = Array.from({ length: 16 }, () =>
        ChainClient.connect(node.address, { ...node.options, connectTimeoutMs: 300 }).then(
          (c) => c.close(),
          () => undefined,
        ),
      );
      const [host, port] = node.address.split(':') as [string, string];
      for (let i = 0; i < 16; i++) {
        const s = net.connect({ host, port: Number(port) });
        s.on('error', () => {});
        s.once('connect', () => {
          s.write(randomBytes(512));
          setTimeout(() => s.resetAndDestroy(), 100);
        });
      }
      await Promise.all(tries);
      await sleep(1_200);
      node.process.child.kill('SIGCONT');
      await sleep(1_000);
      await stillServes(t, node, attempt);
    }
  } finally {
    node.process.child.kill('SIGCONT');
    await node.stop();
  }
});

test.serial('finding 5: connections in the handshake are bounded in number, time and buffered bytes', async (t) => {
  const node = await startTestNode();
  try {
    await stillServes(t, node, 1);
    const [host, port] = node.address.split(':') as [string, string];
    const before = node.rssBytes();
    // 48 connections each sending a 4 MiB partial frame before any handshake.
    const big = Buffer.alloc(4 * 1024 * 1024, 7);
    big.writeUInt32BE(big.length + 16, 0);
    const closedAt = await Promise.all(
      Array.from(
        { length: 48 },
        () =>
          new Promise<number>((resolve) => {
            const started = Date.now();
            const s = net.connect({ host, port: Number(port) });
            s.on('error', () => {});
            s.once('connect', () => s.write(big));
            s.once('close', () => resolve(Date.now() - started));
          }),
      ),
    );
    const grown = node.rssBytes() - before;
    t.true(grown < 16 * 1024 * 1024, `memory grew by ${Math.round(grown / 1e6)} MB (48 x 4 MiB would be 201 MB)`);
    t.true(Math.max(...closedAt) < 1_500, `every such connection was closed by the node at once, not at a deadline (slowest ${Math.max(...closedAt)} ms)`);

    // More idle connections than handshakesMax: the excess is closed at once, the rest at the handshake deadline.
    const idle = handshakesMaxDefault + 40;
    const closes: number[] = [];
    const sockets = Array.from({ length: idle }, () => {
      const started = Date.now();
      const s = net.connect({ host, port: Number(port) });
      s.on('error', () => {});
      s.once('close', () => closes.push(Date.now() - started));
      return s;
    });
    await sleep(1_000);
    t.true(closes.length >= 40, `${closes.length} of ${idle} idle connections closed within 1 s (at most ${handshakesMaxDefault} wait in the handshake)`);
    await sleep(3_500);
    t.is(closes.length, idle, 'every silent connection was closed by its handshake deadline');
    for (const s of sockets) s.destroy();
    await stillServes(t, node, 2);
  } finally {
    await node.stop();
  }
});

test.serial('finding 5 (plain transport): before the handshake a frame is at most helloBytesMax', async (t) => {
  const node = await startTestNode({ transport: 'plain' });
  try {
    const [host, port] = node.address.split(':') as [string, string];
    const s = net.connect({ host, port: Number(port) });
    s.on('error', () => {});
    const received: Buffer[] = [];
    s.on('data', (d) => received.push(d));
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(4 * 1024 * 1024);
    s.once('connect', () => s.write(Buffer.concat([header, Buffer.alloc(64 * 1024)])));
    const started = Date.now();
    await closed;
    t.true(Date.now() - started < 2_000, 'closed at once, not at the deadline');
    t.true(Buffer.concat(received).includes(Buffer.from('frame_too_large')), 'with a typed failure');
    await stillServes(t, node, 1);
  } finally {
    await node.stop();
  }
});

test.serial('finding 6: a process answering at a node address without the keys is not believed', async (t) => {
  const node = await startTestNode();
  // An impostor speaking TLS with a key of its own, and one speaking the old plain hello with a forged answer.
  const impostorTls = tls.createServer({ minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256', pskCallback: () => randomBytes(32) }, (s) => s.on('error', () => {}));
  impostorTls.on('tlsClientError', () => {});
  const impostorPlain = net.createServer((s) => {
    s.on('error', () => {});
    s.write(frame(encodeFrame(make('hello', { cluster: testCluster, node: 'n1', epoch: 0, role: 'listener', nonce: randomBytes(16), mac: new Uint8Array() }))));
    s.on('data', () =>
      s.write(
        frame(
          encodeFrame(
            make('chainInfo', { requestId: 1, node: 'n1', chain: 'c1', epoch: 999, role: 'head', members: [{ node: 'n1', address: '127.0.0.1:1', sinceEpoch: 1 }], ready: true, caughtUpEpoch: 0 }),
          ),
        ),
      ),
    );
  });
  try {
    const addresses: string[] = [];
    for (const server of [impostorTls, impostorPlain]) {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      addresses.push(`127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    }
    for (const address of addresses) {
      const error = await t.throwsAsync(ChainClient.connect(address, { ...node.options, connectTimeoutMs: 1_000 }), { instanceOf: ChainError });
      t.is(error?.code, 'bad_auth', `${address}: ${error?.message}`);
    }
    // A forged status (epoch 999, head elsewhere) does not steer the lookup: the real head wins.
    const found = await lookupHead('probe', 1, [...addresses, node.address], { ...node.options, connectTimeoutMs: 1_000 });
    t.is(found.address, node.address);
    t.is(found.epoch, 1);
    await stillServes(t, node, 1);
  } finally {
    impostorTls.close();
    impostorPlain.close();
    await node.stop();
  }
});

test.serial('finding 6: a listener with a CA-signed certificate instead of the role key is refused', async (t) => {
  // TLS 1.3 lets a server ignore the offered PSK and present a certificate. Here the impostor's
  // certificate is even trusted (NODE_EXTRA_CA_CERTS, standing in for a public CA).
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-impostor-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=attacker.example', '-days', '1', '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  const impostor = tls.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile), minVersion: 'TLSv1.3' }, (s) => {
    s.on('error', () => {});
    s.write(frame(encodeFrame(make('hello', { cluster: testCluster, node: 'n2', epoch: 0, role: 'listener', nonce: randomBytes(16), mac: new Uint8Array() }))));
  });
  impostor.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', () => resolve()));
  try {
    const address = `127.0.0.1:${(impostor.address() as net.AddressInfo).port}`;
    const connection = new URL('./connection.ts', import.meta.url).pathname;
    const script = `const { Connection } = await import(${JSON.stringify(connection)});
Connection.dial(${JSON.stringify(address)}, { cluster: ${JSON.stringify(testCluster)}, keys: { peer: 'k'.repeat(43) }, node: 'n1', role: 'peer' }).then(
  (c) => { console.log('accepted ' + c.peer.node); process.exit(0); },
  (e) => { console.log(e.code); process.exit(0); });`;
    // Asynchronously: the impostor lives in this process and must answer meanwhile.
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile },
      encoding: 'utf8',
    });
    t.is(stdout.trim(), 'bad_auth');
  } finally {
    impostor.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('finding 6: each credential grants one role (a client key cannot configure, read full state or join)', async (t) => {
  const node = await startTestNode();
  try {
    await stillServes(t, node, 1);
    const keys = deriveKeyring(node.secret, testCluster);
    const clientOnly = { cluster: testCluster, keys: { client: keys.client } };
    // It has no admin key to offer ...
    const noKey = await t.throwsAsync(AdminClient.connect(node.address, clientOnly), { instanceOf: ChainError });
    t.is(noKey?.code, 'no_credentials');
    // ... and its client key does not open the admin or the peer role.
    for (const keysUsed of [{ admin: keys.client }, { peer: keys.client }]) {
      const role = Object.keys(keysUsed)[0] as 'admin' | 'peer';
      const e = await t.throwsAsync(
        new Promise((resolve, reject) => {
          new TcpNet({ cluster: testCluster, keys: keysUsed }).dial(node.address, { role, name: 'proxy' }, (r) => ('code' in r ? reject(new ChainError(r.code, r.message, false)) : resolve(r)));
        }),
      );
      t.is((e as ChainError | undefined)?.code, 'bad_auth', `the client key as the ${role} key`);
    }
    // On a client connection, admin frames are refused and close that connection.
    const raw = await rawClient(node, 'proxy');
    raw.socket.write(frame(encodeFrame(make('statusRequest', { requestId: 7, includeState: true, includeDigests: true, docsAfter: '', docsMax: 100 }))));
    const frames = await raw.closed;
    t.deepEqual(
      frames.map((f) => (f.kind === 'failure' ? f.failure.code : f.kind)),
      ['protocol_error'],
      'no status with states for a client',
    );
    const raw2 = await rawClient(node, 'proxy');
    raw2.socket.write(frame(encodeFrame(make('configure', { requestId: 8, chain: 'c1', epoch: 50, members: [{ node: 'evil', address: '127.0.0.1:1', sinceEpoch: 50 }] }))));
    t.deepEqual(
      (await raw2.closed).map((f) => (f.kind === 'failure' ? f.failure.code : f.kind)),
      ['protocol_error'],
      'no configure for a client',
    );
    const st = await committed(node);
    t.deepEqual(contributions(st, 'probe'), { prober: 1 });
    await stillServes(t, node, 2);
  } finally {
    await node.stop();
  }
});

/** A TCP relay in front of `target` that can change one byte of the next client-to-node chunk. */
async function relay(target: string, change: (chunk: Buffer) => Buffer | undefined): Promise<{ address: string; armed: { on: boolean }; close(): void }> {
  const [host, port] = target.split(':') as [string, string];
  const armed = { on: false };
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host, port: Number(port) });
    for (const s of [inbound, outbound]) s.on('error', () => {});
    inbound.on('data', (chunk: Buffer) => {
      if (armed.on) {
        const changed = change(chunk);
        if (changed !== undefined) {
          armed.on = false;
          chunk = changed;
        }
      }
      outbound.write(chunk);
    });
    outbound.on('data', (chunk) => inbound.write(chunk));
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, armed, close: () => server.close() };
}

for (const transport of ['tls', 'plain'] as const) {
  test.serial(
    `finding 6: a byte changed in transit after the handshake (${transport}) ${transport === 'tls' ? 'closes the connection, nothing changed is committed' : 'goes through: why TLS is the default'}`,
    async (t) => {
      const node = await startTestNode({ transport });
      // The attacker turns {"by":1} into {"by":9}; under TLS it can only flip a byte of the record.
      const r = await relay(node.address, (chunk) => {
        const at = chunk.indexOf('{"by":1}');
        if (transport === 'plain') {
          if (at < 0) return undefined;
          const c = Buffer.from(chunk);
          c[at + 6] = '9'.charCodeAt(0);
          return c;
        }
        if (chunk.length < 40) return undefined;
        const c = Buffer.from(chunk);
        c[c.length - 20] = (c[c.length - 20] as number) ^ 0x04;
        return c;
      });
      try {
        const client = await ChainClient.connect(r.address, { ...node.options, connectTimeoutMs: 2_000, requestTimeoutMs: 3_000 });
        r.armed.on = true;
        const outcome = await client.submit({ chain: 'c1', doc: 'wire', docType: 'counter', channel: 'add', payload: { by: 1 }, clientId: 'alice', clientSeq: 1, viewer: 'alice' }).then(
          () => 'acknowledged',
          (e: ChainError) => e.code,
        );
        client.close();
        await sleep(200);
        const state = contributions(await committed(node), 'wire');
        if (transport === 'tls') {
          t.not(outcome, 'acknowledged');
          t.is(state, undefined, 'nothing was committed');
        } else {
          t.is(outcome, 'acknowledged');
          t.deepEqual(state, { alice: 9 }, 'without TLS the changed payload is committed');
        }
        await stillServes(t, node, 1);
      } finally {
        r.close();
        await node.stop();
      }
    },
  );
}
