// The etcd configuration store against a real etcd (one per test file run, on loopback ports):
// compare-and-swap, linearizable reads, watches, the managers' election and its fence.

import test, { type ExecutionContext } from 'ava';
import { Etcd3 } from 'etcd3';
import type { ChainConfig } from '../core/config.ts';
import { type EtcdServer, etcdBinary, etcdMissing, startEtcd } from '../tools/etcd-server.ts';
import { type Done, encodeStoredConfig, type Leadership, type StoreError, type SwapResult } from './config-store.ts';
import { EtcdConfigStore } from './etcd-store.ts';

const prefix = '/adama-test';
let etcd: EtcdServer;
let clusters = 0;

const config = (chain: string, epoch: number, nodes = ['n1', 'n2', 'n3']): ChainConfig => ({
  chain,
  epoch,
  members: nodes.map((node, i) => ({ node, address: `127.0.0.1:${7001 + i}`, sinceEpoch: 1 })),
});

interface Client {
  store: EtcdConfigStore;
  lines: string[];
  waitLine(pattern: RegExp, ms?: number): Promise<void>;
}

function connect(cluster: string, options: { requestTimeoutMs?: number; endpoint?: string } = {}): Client {
  const lines: string[] = [];
  const waiting = new Set<{ pattern: RegExp; resolve: () => void }>();
  const store = EtcdConfigStore.connect({
    endpoints: [`http://${options.endpoint ?? etcd.endpoint}`],
    prefix,
    cluster,
    requestTimeoutMs: options.requestTimeoutMs ?? 2000,
    log: (line) => {
      lines.push(line);
      for (const w of waiting) if (w.pattern.test(line)) w.resolve();
    },
  });
  const waitLine = (pattern: RegExp, ms = 3000): Promise<void> =>
    lines.some((line) => pattern.test(line)) ? Promise.resolve() : within(ms, new Promise<void>((resolve) => waiting.add({ pattern, resolve })), `log line ${pattern}`);
  return { store, lines, waitLine };
}

/** Two store clients on a fresh cluster id, closed when the test ends. */
function twoClients(t: ExecutionContext): { cluster: string; a: Client; b: Client } {
  const cluster = newCluster();
  const a = connect(cluster);
  const b = connect(cluster);
  t.teardown(() => {
    a.store.close();
    b.store.close();
  });
  return { cluster, a, b };
}

function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A store call as a promise of { error, value }. */
function call<T>(f: (done: Done<T>) => void): Promise<{ error: StoreError | undefined; value: T | undefined }> {
  return new Promise((resolve) => f((error, value) => resolve({ error, value })));
}

async function ok<T>(f: (done: Done<T>) => void): Promise<T> {
  const { error, value } = await call(f);
  if (error !== undefined) throw new Error(`${error.code}: ${error.message}`);
  return value as T;
}

interface Candidate {
  leadership: Leadership;
  elected: Promise<number>;
  deposed: Promise<string>;
  events: string[];
}

function candidate(client: Client, name: string): Candidate {
  const events: string[] = [];
  let onElected: (at: number) => void = () => {};
  let onDeposed: (why: string) => void = () => {};
  const elected = new Promise<number>((resolve) => (onElected = resolve));
  const deposed = new Promise<string>((resolve) => (onDeposed = resolve));
  const leadership = client.store.campaign(name, {
    elected: () => {
      events.push('elected');
      onElected(Date.now());
    },
    deposed: (why) => {
      events.push(`deposed: ${why}`);
      onDeposed(why);
    },
  });
  return { leadership, elected, deposed, events };
}

/** The first of several candidates elected, and the others. */
async function firstElected(candidates: Candidate[], ms: number): Promise<{ leader: Candidate; others: Candidate[] }> {
  const leader = await within(ms, Promise.race(candidates.map((c) => c.elected.then(() => c))), 'an election');
  return { leader, others: candidates.filter((c) => c !== leader) };
}

/** The campaign keys of a cluster's managers, oldest (the leader's) first, read with a plain etcd3 client. */
async function campaignKeys(raw: Etcd3, cluster: string): Promise<string[]> {
  return raw.getAll().prefix(`election/${prefix}/${cluster}/managers/`).sort('Create', 'Ascend').keys();
}

function newCluster(): string {
  clusters += 1;
  return `c${clusters}`;
}

function defineTests(): void {
  let raw: Etcd3;
  test.before(async () => {
    etcd = await startEtcd();
    raw = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  });
  test.after.always(async () => {
    raw?.close();
    await etcd?.stop();
  });

  test('a swap on an absent chain creates it', async (t) => {
    const a = connect(newCluster());
    t.teardown(() => a.store.close());
    const first = config('ch1', 1);
    t.is(await ok<ChainConfig | undefined>((done) => a.store.get('ch1', done)), undefined);
    const result = await ok<SwapResult>((done) => a.store.swap(undefined, first, done));
    t.deepEqual(result, { swapped: true, current: first });
    t.deepEqual(await ok<ChainConfig | undefined>((done) => a.store.get('ch1', done)), first);
    // A second create from "absent" finds it there.
    const again = await ok<SwapResult>((done) => a.store.swap(undefined, config('ch1', 2), done));
    t.deepEqual(again, { swapped: false, current: first });
  });

  test('a swap from a stale expected configuration returns swapped false and the current one', async (t) => {
    const a = connect(newCluster());
    t.teardown(() => a.store.close());
    const e1 = config('ch', 1);
    const e2 = config('ch', 2, ['n1', 'n2']);
    t.true((await ok<SwapResult>((done) => a.store.swap(undefined, e1, done))).swapped);
    t.true((await ok<SwapResult>((done) => a.store.swap(e1, e2, done))).swapped);
    const stale = await ok<SwapResult>((done) => a.store.swap(e1, config('ch', 3, ['n1']), done));
    t.deepEqual(stale, { swapped: false, current: e2 });
    t.deepEqual(await ok<ChainConfig | undefined>((done) => a.store.get('ch', done)), e2);
  });

  test('two clients swapping from the same expected configuration at once: exactly one wins, 20 times', async (t) => {
    const { a, b } = twoClients(t);
    let current = config('race', 1);
    t.true((await ok<SwapResult>((done) => a.store.swap(undefined, current, done))).swapped);
    for (let round = 0; round < 20; round++) {
      const fromA = config('race', current.epoch + 1, ['n1', 'n2', 'a']);
      const fromB = config('race', current.epoch + 1, ['n1', 'n2', 'b']);
      const [ra, rb] = await Promise.all([ok<SwapResult>((done) => a.store.swap(current, fromA, done)), ok<SwapResult>((done) => b.store.swap(current, fromB, done))]);
      t.is(Number(ra.swapped) + Number(rb.swapped), 1, `round ${round}: exactly one swap succeeds`);
      const winner = ra.swapped ? fromA : fromB;
      t.deepEqual(ra.current, winner);
      t.deepEqual(rb.current, winner);
      t.deepEqual(await ok<ChainConfig | undefined>((done) => b.store.get('race', done)), winner);
      current = winner;
    }
  });

  test('list returns every chain', async (t) => {
    const a = connect(newCluster());
    t.teardown(() => a.store.close());
    const configs = ['x1', 'x2', 'x3', 'x4'].map((chain, i) => config(chain, i + 1));
    for (const c of configs) t.true((await ok<SwapResult>((done) => a.store.swap(undefined, c, done))).swapped);
    const listed = await ok<ChainConfig[]>((done) => a.store.list(done));
    t.deepEqual(
      [...listed].sort((x, y) => x.chain.localeCompare(y.chain)),
      configs,
    );
    // Another cluster's chains are not listed.
    const other = connect(newCluster());
    t.teardown(() => other.store.close());
    t.deepEqual(await ok<ChainConfig[]>((done) => other.store.list(done)), []);
  });

  test('a watch sees a write made by another client', async (t) => {
    const cluster = newCluster();
    const watching = connect(cluster);
    const writer = connect(cluster);
    t.teardown(() => {
      watching.store.close();
      writer.store.close();
    });
    const seen: ChainConfig[] = [];
    let onSeen: () => void = () => {};
    const secondSeen = new Promise<void>((resolve) => (onSeen = resolve));
    const watch = watching.store.watch((c) => {
      seen.push(c);
      if (seen.length === 3) onSeen();
    });
    await watching.waitLine(/watching/);
    const e1 = config('w', 1);
    const e2 = config('w', 2, ['n2', 'n3']);
    t.true((await ok<SwapResult>((done) => writer.store.swap(undefined, e1, done))).swapped);
    await raw.put(`${prefix}/${cluster}/chains/w`).value('not a configuration'); // skipped (logged)
    await raw.put(`${prefix}/${cluster}/chains/w`).value(encodeStoredConfig(e1));
    t.true((await ok<SwapResult>((done) => writer.store.swap(e1, e2, done))).swapped);
    await within(3000, secondSeen, 'the watch');
    t.deepEqual(seen, [e1, e1, e2]);
    t.true(
      watching.lines.some((line) => /watch skipped a value: .*chains\/w/.test(line)),
      watching.lines.join('\n'),
    );
    watch.cancel();
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.true((await ok<SwapResult>((done) => writer.store.swap(e2, config('w', 3), done))).swapped);
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.is(seen.length, 3, 'a cancelled watch sees nothing more');
  });

  test('two candidates campaign: exactly one is elected', async (t) => {
    const { cluster, a, b } = twoClients(t);
    const ca = candidate(a, 'manager-a');
    const cb = candidate(b, 'manager-b');
    const { leader, others } = await firstElected([ca, cb], 3000);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // past a lease TTL: the leader keeps its lease
    t.true(leader.leadership.leading);
    t.deepEqual(leader.events, ['elected']);
    t.false(others[0]?.leadership.leading);
    t.deepEqual(others[0]?.events, []);
    t.is((await campaignKeys(raw, cluster)).length, 2);
    leader.leadership.resign();
    others[0]?.leadership.resign();
  });

  test('after the leader resigns, the other candidate is elected within 2 s', async (t) => {
    const { a, b } = twoClients(t);
    const { leader, others } = await firstElected([candidate(a, 'manager-a'), candidate(b, 'manager-b')], 3000);
    const standby = others[0] as Candidate;
    await new Promise((resolve) => setTimeout(resolve, 200)); // let the standby queue behind the leader
    const resignedAt = Date.now();
    leader.leadership.resign();
    t.false(leader.leadership.leading);
    const electedAt = await within(2000, standby.elected, 'the standby election');
    t.log(`standby elected ${electedAt - resignedAt} ms after the leader resigned`);
    t.true(standby.leadership.leading);
    t.deepEqual(leader.events, ['elected'], 'resign does not call deposed');
    standby.leadership.resign();
  });

  test('after the leader crashes (its client closed without resigning), the other candidate is elected within 3 s', async (t) => {
    const { cluster, a, b } = twoClients(t);
    const ca = candidate(a, 'manager-a');
    const cb = candidate(b, 'manager-b');
    const { leader, others } = await firstElected([ca, cb], 3000);
    const standby = others[0] as Candidate;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const crashedAt = Date.now();
    (leader === ca ? a : b).store.close();
    const electedAt = await within(3000, standby.elected, 'the standby election');
    t.log(`standby elected ${electedAt - crashedAt} ms after the leader's client closed (lease TTL 1 s)`);
    t.true(standby.leadership.leading);
    t.is((await campaignKeys(raw, cluster)).length, 1, "the crashed leader's campaign key expired with its lease");
    standby.leadership.resign();
  });

  test("a deposed leader's swap is fenced off inside etcd even while it still believes it leads", async (t) => {
    const { cluster, a, b } = twoClients(t);
    const e1 = config('fenced', 1);
    t.true((await ok<SwapResult>((done) => a.store.swap(undefined, e1, done))).swapped);
    const ca = candidate(a, 'manager-a');
    await within(3000, ca.elected, 'the election of a');
    const cb = candidate(b, 'manager-b');
    await new Promise((resolve) => setTimeout(resolve, 300)); // b queues behind a
    // What a lease expiry does in etcd, without the client hearing of it: the campaign key goes.
    // (etcd3's recipe watches its lease, not its key, so a still believes it leads.)
    const [leaderKey] = await campaignKeys(raw, cluster);
    t.truthy(leaderKey);
    await raw.delete().key(leaderKey as string);
    await within(2000, cb.elected, 'the election of b');
    t.true(ca.leadership.leading, 'a has not heard yet');
    const result = await ok<SwapResult>((done) => a.store.swap(e1, config('fenced', 2, ['n9']), done));
    t.deepEqual(result, { swapped: false, current: e1 }, 'the expected configuration matched, the fence did not');
    // The refused swap told a it no longer leads.
    const why = await within(1000, ca.deposed, 'the deposition of a');
    t.regex(why, /campaign key/);
    t.false(ca.leadership.leading);
    t.deepEqual(await ok<ChainConfig | undefined>((done) => b.store.get('fenced', done)), e1);
    // The new leader writes.
    t.true((await ok<SwapResult>((done) => b.store.swap(e1, config('fenced', 2, ['n8']), done))).swapped);
    cb.leadership.resign();
  });

  test('a leader whose lease is revoked is deposed, stops leading and its swaps are refused', async (t) => {
    const { cluster, a, b } = twoClients(t);
    const e1 = config('revoked', 1);
    t.true((await ok<SwapResult>((done) => a.store.swap(undefined, e1, done))).swapped);
    const ca = candidate(a, 'manager-a');
    await within(3000, ca.elected, 'the election of a');
    const cb = candidate(b, 'manager-b');
    const [leaderKey] = await campaignKeys(raw, cluster);
    const lease = (leaderKey as string).split('/').pop() as string;
    // Revoke a's lease from outside (etcd's JSON gateway), as an expiry would end it.
    const response = await fetch(`http://${etcd.endpoint}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: lease }) });
    t.is(response.status, 200);
    const revokedAt = Date.now();
    // a hears of it from its next keepalive (every TTL/3), without writing anything.
    const why = await within(2000, ca.deposed, 'the deposition of a');
    t.log(`a deposed ${Date.now() - revokedAt} ms after its lease was revoked: ${why}`);
    t.false(ca.leadership.leading);
    const refused = await ok<SwapResult>((done) => a.store.swap(e1, config('revoked', 2, ['n9']), done));
    t.deepEqual(refused, { swapped: false, current: e1 });
    await within(2000, cb.elected, 'the election of b');
    t.deepEqual(ca.events.length, 2, 'elected once, deposed once');
    cb.leadership.resign();
  });

  test('a value at a chain key that is not a valid configuration makes get and list fail with store_error', async (t) => {
    const cluster = newCluster();
    const a = connect(cluster);
    t.teardown(() => a.store.close());
    t.true((await ok<SwapResult>((done) => a.store.swap(undefined, config('good', 1), done))).swapped);
    await raw.put(`${prefix}/${cluster}/chains/bad`).value('{"chain":"bad","epoch":0,"members":[]}');
    await raw.put(`${prefix}/${cluster}/chains/junk`).value('not json');
    const got = await call<ChainConfig | undefined>((done) => a.store.get('bad', done));
    t.is(got.error?.code, 'store_error');
    t.regex(got.error?.message ?? '', /chains\/bad/);
    const junk = await call<ChainConfig | undefined>((done) => a.store.get('junk', done));
    t.is(junk.error?.code, 'store_error');
    t.regex(junk.error?.message ?? '', /not JSON/);
    const listed = await call<ChainConfig[]>((done) => a.store.list(done));
    t.is(listed.error?.code, 'store_error');
    t.is(listed.value, undefined);
    // A configuration stored under another chain's key is refused too.
    await raw.put(`${prefix}/${cluster}/chains/other`).value(JSON.stringify(config('good', 1)));
    const other = await call<ChainConfig | undefined>((done) => a.store.get('other', done));
    t.is(other.error?.code, 'store_error');
    t.regex(other.error?.message ?? '', /names chain good/);
  });

  test('swap validation rejects an epoch that does not grow, another chain and an invalid configuration', async (t) => {
    const a = connect(newCluster());
    t.teardown(() => a.store.close());
    const e3 = config('v', 3);
    t.true((await ok<SwapResult>((done) => a.store.swap(undefined, e3, done))).swapped);
    for (const [expected, next] of [
      [e3, config('v', 3, ['n1'])],
      [e3, config('v', 2, ['n1'])],
      [e3, config('w', 4)],
      [e3, { chain: 'v', epoch: 4, members: [] }],
    ] as const) {
      const result = await call<SwapResult>((done) => a.store.swap(expected, next, done));
      t.is(result.error?.code, 'store_error', JSON.stringify(next));
      t.false(result.error?.unknownOutcome);
    }
    t.deepEqual(await ok<ChainConfig | undefined>((done) => a.store.get('v', done)), e3, 'nothing was written');
  });

  test('an unreachable etcd gives store_unreachable; a paused one gives store_timeout, with an unknown outcome for writes', async (t) => {
    const own = await startEtcd();
    t.teardown(() => own.stop());
    const gone = connect(newCluster(), { endpoint: '127.0.0.1:1', requestTimeoutMs: 3000 });
    t.teardown(() => gone.store.close());
    const unreachable = await call<ChainConfig[]>((done) => gone.store.list(done));
    t.is(unreachable.error?.code, 'store_unreachable', unreachable.error?.message);
    const paused = connect(newCluster(), { endpoint: own.endpoint, requestTimeoutMs: 500 });
    t.teardown(() => paused.store.close());
    t.deepEqual(await ok<ChainConfig[]>((done) => paused.store.list(done)), []);
    await own.kill('SIGSTOP');
    const startedAt = Date.now();
    const [read, write] = await Promise.all([call<ChainConfig[]>((done) => paused.store.list(done)), call<SwapResult>((done) => paused.store.swap(undefined, config('p', 1), done))]);
    const tookMs = Date.now() - startedAt;
    await own.kill('SIGCONT');
    t.is(read.error?.code, 'store_timeout');
    t.false(read.error?.unknownOutcome);
    t.is(write.error?.code, 'store_timeout');
    t.true(write.error?.unknownOutcome);
    t.true(tookMs < 1500, `answered after ${tookMs} ms`);
  });
}

const binary = etcdBinary();
if (binary !== undefined) defineTests();
else if (process.env.CI === 'true')
  test('etcd store: etcd is installed (required on CI)', () => {
    throw new Error(etcdMissing);
  });
else test.skip(`etcd store tests skipped: ${etcdMissing}`, () => {});
