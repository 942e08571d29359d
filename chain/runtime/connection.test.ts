import test from 'ava';
import type net from 'node:net';
import { Connection } from './connection.ts';
import { deriveKeyring } from './credentials.ts';
import { listenConnections } from './tcp-net.ts';
import { make, type Frame } from './wire.ts';

const keys = deriveKeyring('connection-test-secret-0123456789', 'ct');

async function pair(frameBytesMax: number): Promise<{ server: net.Server; listener: Connection; dialer: Connection }> {
  let accepted: (c: Connection) => void = () => {};
  const got = new Promise<Connection>((resolve) => (accepted = resolve));
  const server = await listenConnections('127.0.0.1', 0, { cluster: 'ct', keys, node: 'l', frameBytesMax }, ['client'], accepted, () => {});
  const dialer = await Connection.dial(`127.0.0.1:${(server.address() as net.AddressInfo).port}`, { cluster: 'ct', keys: { client: keys.client }, node: 'd', role: 'client' });
  return { server, listener: await got, dialer };
}

test('an answer over frameBytesMax fails that request alone; the connection keeps serving', async (t) => {
  const { server, listener, dialer } = await pair(1_024);
  const frames: Frame[] = [];
  const arrived = new Promise<void>((resolve) =>
    dialer.onFrame((f) => {
      frames.push(f);
      if (frames.length === 2) resolve();
    }),
  );
  listener.send(make('status', { requestId: 5, json: 'x'.repeat(4_000) }));
  listener.send(make('status', { requestId: 6, json: '{}' }));
  await arrived;
  t.deepEqual(
    frames.map((f) => (f.kind === 'failure' ? `${f.failure.code}@${f.failure.requestId}` : `${f.kind}@${f.kind === 'status' ? f.status.requestId : ''}`)),
    ['frame_too_large@5', 'status@6'],
  );
  t.true(listener.isOpen && dialer.isOpen);
  dialer.close();
  server.close();
});

test('TLS: a listener without the role key is refused by the dialer, and a dialer without it by the listener', async (t) => {
  const other = deriveKeyring('another-secret-entirely-0123456789', 'ct');
  const server = await listenConnections(
    '127.0.0.1',
    0,
    { cluster: 'ct', keys: other, node: 'impostor' },
    ['client'],
    () => t.fail('accepted a dialer with another key'),
    () => {},
  );
  const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const error = await t.throwsAsync(Connection.dial(address, { cluster: 'ct', keys: { client: keys.client }, node: 'd', role: 'client' }));
  t.is((error as { code?: string } | undefined)?.code, 'bad_auth');
  server.close();
});
