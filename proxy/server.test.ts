// The proxy against a real cluster (node processes with LevelDB, SWIM and the automatic
// manager), driven by WebSocket clients speaking PROTOCOL.md. Serial: the tests share the
// cluster, and the last one kills a node.

import test from 'ava';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { nodeStatus } from '../chain/client/tcp.ts';
import { LocalCluster } from '../chain/tools/local-cluster.ts';
import { findLeaks } from '../engine/documents/secrets.ts';
import { defaultProxyLimits, ProxyServer } from './server.ts';
import { TestClient } from './test-client.ts';
import { mintToken, verifyToken } from './tokens.ts';

const viewerSecret = 'viewer-secret-for-tests';
let cluster: LocalCluster;
let proxy: ProxyServer;

test.before(async () => {
  cluster = await LocalCluster.start({ nodes: 3, chains: 2, k: 3, secret: randomBytes(12).toString('hex') });
  await cluster.waitHealthy();
  proxy = await ProxyServer.start({ ...cluster.clientOptions, nodes: cluster.addresses, chains: 2, viewerSecret, limits: { frameBytesMax: 4_096, messagesPerSecondMax: 100 } });
});

test.after.always(async () => {
  await proxy?.stop();
  await cluster?.stop();
});

const Client = {
  open: (): Promise<TestClient> => TestClient.open(proxy.port),
  as: (viewer: string, clientId?: string): Promise<TestClient> => TestClient.as(proxy.port, viewer, viewerSecret, { clientId }),
};

test.serial('tokens: a good token verifies; altered, foreign and expired ones do not', (t) => {
  const token = mintToken(viewerSecret, 'alice', 1_000, 1_000_000);
  t.like(verifyToken(viewerSecret, token, 1_000_500), { ok: true, viewer: 'alice' });
  t.like(verifyToken(viewerSecret, token, 1_001_000), { ok: false, code: 'expired_token' });
  t.like(verifyToken('another-secret', token, 1_000_500), { ok: false, code: 'bad_token' });
  const [body, mac] = token.split('.') as [string, string];
  const forged = `${Buffer.from(JSON.stringify({ v: 'bob', exp: 2_000_000 })).toString('base64url')}.${mac}`;
  t.like(verifyToken(viewerSecret, forged, 1_000_500), { ok: false, code: 'bad_token' });
  t.like(verifyToken(viewerSecret, `${body}x.${mac}`, 1_000_500), { ok: false, code: 'bad_token' });
  t.like(verifyToken(viewerSecret, 42, 1_000_500), { ok: false, code: 'bad_token' });
});

test.serial('without a valid token nothing of a document is sent, and the connection closes with a typed error', async (t) => {
  const anonymous = await Client.open();
  anonymous.send({ type: 'subscribe', doc: 'doc-a', docType: 'counter' });
  t.like(await anonymous.wait((m) => m.type === 'error'), { code: 'unauthenticated' });
  t.is((await anonymous.waitClosed()).code, 4401);
  const forged = await Client.open();
  forged.send({ type: 'hello', token: mintToken('not-the-viewer-secret', 'alice', 60_000), clientId: 'x' });
  t.like(await forged.wait((m) => m.type === 'error'), { code: 'bad_token' });
  t.is((await forged.waitClosed()).code, 4401);
  const expired = await Client.open();
  expired.send({ type: 'hello', token: mintToken(viewerSecret, 'alice', -1), clientId: 'x' });
  t.like(await expired.wait((m) => m.type === 'error'), { code: 'expired_token' });
  t.false([...anonymous.messages, ...forged.messages, ...expired.messages].some((m) => m.type === 'view'));
});

test.serial('send is acknowledged with seq and outcome; subscribers get a full view, then deltas', async (t) => {
  const alice = await Client.as('alice');
  alice.send({ type: 'subscribe', doc: 'doc-count', docType: 'counter' });
  const full = await alice.wait((m) => m.type === 'view' && m.kind === 'full');
  t.is(full.doc, 'doc-count');
  alice.send({ type: 'send', doc: 'doc-count', docType: 'counter', channel: 'add', payload: { by: 5 }, clientSeq: 1 });
  const ack = await alice.wait((m) => m.type === 'ack' && m.clientSeq === 1);
  t.like(ack, { doc: 'doc-count', outcome: { ok: true }, duplicate: false });
  t.true(typeof ack.seq === 'number' && ack.seq >= 1);
  await alice.wait((m) => m.type === 'view' && m.kind === 'confirmed');
  // A resend of the same clientSeq (after a reconnect) is answered, not applied again.
  alice.send({ type: 'send', doc: 'doc-count', docType: 'counter', channel: 'add', payload: { by: 5 }, clientSeq: 1 });
  await alice.wait((m) => m.type === 'ack' && m.duplicate === true);
  alice.ws.close();
});

test.serial('bad input gets a typed error and the proxy keeps serving: malformed JSON, unknown type, document type, channel, oversized frame, flood', async (t) => {
  const bob = await Client.as('bob');
  bob.send('{not json');
  t.like(await bob.wait((m) => m.type === 'error' && m.code === 'malformed_json'), { retryable: false });
  bob.send({ type: 'teleport' });
  await bob.wait((m) => m.type === 'error' && m.code === 'unknown_type');
  bob.send({ type: 'subscribe', doc: 'doc-x', docType: 'spreadsheet' });
  await bob.wait((m) => m.type === 'error' && m.code === 'unknown_document_type');
  bob.send({ type: 'send', doc: 'doc-x', docType: 'counter', channel: 'multiply', payload: {}, clientSeq: 1 });
  t.like(await bob.wait((m) => m.type === 'error' && m.clientSeq === 1), { code: 'unknown_channel' });
  // Still serving this connection:
  bob.send({ type: 'ping', t: 7 });
  t.like(await bob.wait((m) => m.type === 'pong'), { t: 7 });

  const big = await Client.as('carol');
  big.send({ type: 'send', doc: 'doc-x', docType: 'counter', channel: 'add', payload: { pad: 'x'.repeat(5_000) }, clientSeq: 1 });
  t.like(await big.wait((m) => m.type === 'error'), { code: 'frame_too_large' });
  t.is((await big.waitClosed()).code, 1009);

  const flood = await Client.as('dave');
  for (let i = 0; i < 250; i++) flood.send({ type: 'ping', t: i });
  await flood.wait((m) => m.type === 'error' && m.code === 'rate_limited');
  t.is((await flood.waitClosed()).code, 4429);

  // Others are unaffected.
  bob.send({ type: 'send', doc: 'doc-x', docType: 'counter', channel: 'add', payload: { by: 1 }, clientSeq: 2 });
  t.like(await bob.wait((m) => m.type === 'ack' && m.clientSeq === 2), { outcome: { ok: true } });
  bob.ws.close();
});

test.serial('fuzz: any message text gets a protocol answer or is ignored, never a crash, and the proxy keeps serving', async (t) => {
  const fuzz = await Client.as('eve');
  const message = fc.oneof(
    fc.string(),
    fc.json(),
    fc
      .record({
        type: fc.constantFrom('hello', 'subscribe', 'unsubscribe', 'send', 'ping', 'x'),
        doc: fc.oneof(fc.string(), fc.constant('doc-f')),
        docType: fc.constantFrom('counter', 'chat', 'nope', ''),
        channel: fc.string(),
        payload: fc.jsonValue(),
        clientSeq: fc.oneof(fc.integer(), fc.double()),
      })
      .map((o) => JSON.stringify(o)),
  );
  const samples = fc.sample(message, { seed: 4, numRuns: 60 });
  for (const text of samples) fuzz.send(text);
  fuzz.send({ type: 'ping', t: 12345 });
  await fuzz.wait((m) => m.type === 'pong' && m.t === 12345);
  t.true(
    fuzz.messages.every((m) => ['error', 'pong', 'ack', 'view', 'welcome'].includes(m.type)),
    JSON.stringify(fuzz.messages.filter((m) => !['error', 'pong', 'ack', 'view', 'welcome'].includes(m.type))),
  );
  const good = await Client.as('frank');
  good.send({ type: 'send', doc: 'doc-f', docType: 'counter', channel: 'add', payload: { by: 1 }, clientSeq: 1 });
  await good.wait((m) => m.type === 'ack');
  good.ws.close();
  fuzz.ws.close();
});

test.serial('two players each see only their own hand, in every frame', async (t) => {
  const doc = 'table-1';
  const alice = await Client.as('alice');
  const bob = await Client.as('bob');
  for (const c of [alice, bob]) c.send({ type: 'subscribe', doc, docType: 'card-table' });
  await alice.wait((m) => m.type === 'view' && m.kind === 'full');
  await bob.wait((m) => m.type === 'view' && m.kind === 'full');
  let seq = 1;
  for (const c of [alice, bob]) {
    const s = seq++;
    c.send({ type: 'send', doc, docType: 'card-table', channel: 'sit', payload: {}, clientSeq: s });
    await c.wait((m) => m.type === 'ack' && m.clientSeq === s);
  }
  alice.send({ type: 'send', doc, docType: 'card-table', channel: 'start', payload: {}, clientSeq: 10 });
  t.like(await alice.wait((m) => m.type === 'ack' && m.clientSeq === 10), { outcome: { ok: true } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const status = await nodeStatus(cluster.manager.headOf(doc).address, cluster.adminOptions, { includeState: true });
  const state = status.chains.flatMap((c) => c.docs).find((d) => d.doc === doc)?.state as { players: Record<string, { hand: string[] }> } | undefined;
  if (state === undefined) return t.fail('the table is not at its head');
  t.is(state.players.alice?.hand.length, 5);
  for (const [viewer, client] of [
    ['alice', alice],
    ['bob', bob],
  ] as const) {
    const other = viewer === 'alice' ? 'bob' : 'alice';
    for (const text of client.raw) for (const card of state.players[other]?.hand ?? []) t.false(text.includes(`"${card}"`), `${viewer} received ${other}'s card ${card}: ${text}`);
    t.deepEqual(findLeaks('card-table', state as never, viewer, client.messages.filter((m) => m.type === 'view').map((m) => m.view ?? m.patch) as never), []);
  }
  alice.ws.close();
  bob.ws.close();
});

test.serial('a consumer whose unsent bytes would pass sendBufferBytesMax is disconnected with slow_consumer; others are served', async (t) => {
  // A second proxy with a tiny send buffer: a view of a few hundred bytes cannot be queued.
  const small = await ProxyServer.start({ ...cluster.clientOptions, nodes: cluster.addresses, chains: 2, viewerSecret, limits: { sendBufferBytesMax: 300 } });
  try {
    const writer = await Client.as('henry');
    writer.send({ type: 'send', doc: 'doc-big', docType: 'chat', channel: 'join', payload: {}, clientSeq: 1 });
    await writer.wait((m) => m.type === 'ack' && m.clientSeq === 1);
    for (let i = 2; i <= 4; i++) {
      writer.send({ type: 'send', doc: 'doc-big', docType: 'chat', channel: 'say', payload: { text: 'x'.repeat(200) }, clientSeq: i });
      await writer.wait((m) => m.type === 'ack' && m.clientSeq === i);
    }
    const ws = new WebSocket(`ws://127.0.0.1:${small.port}/ws`);
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'hello', token: mintToken(viewerSecret, 'ivy', 60_000), clientId: 'ivy1' }));
    ws.send(JSON.stringify({ type: 'subscribe', doc: 'doc-big', docType: 'chat' }));
    const { code, reason } = await closed;
    t.is(code, 4008);
    t.true(reason.startsWith('slow_consumer'), reason);
    // The main proxy still serves.
    writer.send({ type: 'send', doc: 'doc-big', docType: 'chat', channel: 'say', payload: { text: 'still here' }, clientSeq: 5 });
    await writer.wait((m) => m.type === 'ack' && m.clientSeq === 5);
    writer.ws.close();
  } finally {
    await small.stop();
  }
});

test.serial('one viewer may use clientIdsPerViewerMax clientIds in a window; a further new one is refused, known ones still work', async (t) => {
  // Each clientId fills a slot in a document's dedupe table, so a viewer minting one per
  // connection could crowd other clients out; the proxy refuses it with a typed close.
  const ids = Array.from({ length: defaultProxyLimits.clientIdsPerViewerMax }, (_, i) => `quota${i}`);
  for (const id of ids) (await Client.as('quota-viewer', id)).ws.close();
  const extra = await Client.open();
  extra.send({ type: 'hello', token: mintToken(viewerSecret, 'quota-viewer', 60_000), clientId: 'quota-extra' });
  t.like(await extra.wait((m) => m.type === 'error'), { code: 'too_many_client_ids' });
  t.is((await extra.waitClosed()).code, 4429);
  const again = await Client.as('quota-viewer', 'quota3');
  t.like(again.messages[0], { type: 'welcome', viewer: 'quota-viewer' }, 'a clientId the viewer already uses (a reconnect) was refused');
  again.ws.close();
  const other = await Client.as('another-viewer', 'quota-extra');
  t.like(other.messages[0], { type: 'welcome' }, 'the quota is per viewer');
  other.ws.close();
});

test.serial('a head killed mid-stream: the client sees a delay, never an error or a duplicate', async (t) => {
  const doc = 'doc-failover';
  const c = await Client.as('grace');
  c.send({ type: 'subscribe', doc, docType: 'counter' });
  await c.wait((m) => m.type === 'view' && m.kind === 'full');
  const total = 40;
  let killed = false;
  for (let s = 1; s <= total; s++) {
    c.send({ type: 'send', doc, docType: 'counter', channel: 'add', payload: { by: 1 }, clientSeq: s });
    await c.wait((m) => m.type === 'ack' && m.clientSeq === s, 30_000);
    if (s === 10 && !killed) {
      killed = true;
      const head = cluster.manager.headOf(doc);
      await cluster.kill(head.node);
    }
  }
  t.deepEqual(
    c.messages.filter((m) => m.type === 'error'),
    [],
  );
  const acks = c.messages.filter((m) => m.type === 'ack');
  t.is(acks.length, total);
  t.is(new Set(acks.map((a) => a.seq)).size, total, 'two messages got the same seq');
  // The subscription followed the failover: the latest confirmed value reaches the client.
  await c.wait((m) => m.type === 'view' && JSON.stringify(m).includes(`"value":${total}`), 15_000);
  c.ws.close();
});
