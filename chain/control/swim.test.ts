// The SWIM detector driven directly with a small deterministic network: datagrams take
// 0.1 to 1 ms, a killed member neither sends nor receives, a paused one receives its
// datagrams late (the OS buffers them) and does nothing meanwhile.

import test from 'ava';
import { Prng } from '../../engine/random.ts';
import { deathBoundMs, Swim, type Change, type SwimMessage } from './swim.ts';

class Net {
  readonly swims = new Map<string, Swim>();
  readonly changes: (Change & { at: number; by: string })[] = [];
  now = 0;
  private queue: { at: number; to: string; message: SwimMessage }[] = [];
  readonly killed = new Set<string>();
  readonly pausedUntil = new Map<string, number>();
  private readonly rng: Prng;

  constructor(n: number, seed: number) {
    this.rng = new Prng(seed);
    const seeds = Array.from({ length: n }, (_, i) => ({ node: `n${i + 1}`, address: `n${i + 1}:1` }));
    for (const s of seeds) {
      const swim = new Swim(s.node, s.address, seeds, () => this.rng.next());
      swim.onChange = (c) => this.changes.push({ ...c, at: this.now, by: s.node });
      this.swims.set(s.node, swim);
    }
  }

  private runs(node: string): boolean {
    return !this.killed.has(node) && (this.pausedUntil.get(node) ?? 0) <= this.now;
  }

  /** Advances to `until` in 1 ms steps: deliveries, then ticks every 5 ms. */
  run(until: number): void {
    for (; this.now < until; this.now += 1) {
      const due = this.queue.filter((d) => d.at <= this.now && !this.killed.has(d.to) && this.runs(d.to));
      this.queue = this.queue.filter((d) => !due.includes(d) && !this.killed.has(d.to));
      for (const d of due) this.swims.get(d.to)?.receive(d.message, this.now);
      for (const [node, swim] of this.swims) {
        if (!this.runs(node)) continue;
        if (this.now % 5 === 0) swim.tick(this.now);
        for (const out of swim.drain()) this.queue.push({ at: this.now + 0.1 + this.rng.next() * 0.9, to: out.to, message: out.message });
      }
    }
  }

  stateOf(node: string, by: string): string | undefined {
    return this.swims.get(by)?.state(node);
  }
}

for (const seed of [1, 2, 3, 4, 5]) {
  test(`a killed member is declared dead by every other member within deathBoundMs (seed ${seed})`, (t) => {
    const net = new Net(5, seed);
    net.run(2_000);
    t.true(
      [...net.swims.keys()].every((a) => [...net.swims.keys()].every((b) => net.stateOf(a, b) === 'alive')),
      'not all alive before the kill',
    );
    const killedAt = net.now;
    net.killed.add('n3');
    const bound = deathBoundMs((net.swims.get('n1') as Swim).options, 5);
    net.run(killedAt + bound);
    for (const by of ['n1', 'n2', 'n4', 'n5']) t.is(net.stateOf('n3', by), 'dead', `${by} still holds n3 ${net.stateOf('n3', by)} ${bound} ms after the kill`);
    const deaths = net.changes.filter((c) => c.node === 'n3' && c.state === 'dead');
    t.true(deaths.every((c) => c.at > killedAt));
    t.log(`first declared dead ${Math.min(...deaths.map((d) => d.at)) - killedAt} ms after the kill (bound ${bound} ms)`);
    // No false positives among the living.
    t.deepEqual(
      net.changes.filter((c) => c.node !== 'n3' && c.state === 'dead'),
      [],
    );
  });
}

test('a member paused for 300 ms (below the suspicion timeout) is never declared dead, and the others refute', (t) => {
  const net = new Net(5, 7);
  net.run(1_000);
  for (let i = 0; i < 10; i++) {
    net.pausedUntil.set('n2', net.now + 300);
    net.run(net.now + 1_000);
  }
  t.deepEqual(
    net.changes.filter((c) => c.state === 'dead'),
    [],
  );
  t.true(
    net.changes.some((c) => c.node === 'n2' && c.state === 'suspect'),
    'the pauses were never even suspected: the test does not test',
  );
  for (const by of ['n1', 'n3', 'n4', 'n5']) t.is(net.stateOf('n2', by), 'alive');
});

test('a killed member that restarts rejoins with a higher incarnation', (t) => {
  const net = new Net(4, 9);
  net.run(1_000);
  net.killed.add('n4');
  net.run(net.now + 2_000);
  t.is(net.stateOf('n4', 'n1'), 'dead');
  // Restart: a fresh detector (incarnation 0) with the same address.
  net.killed.delete('n4');
  const seeds = ['n1', 'n2', 'n3', 'n4'].map((node) => ({ node, address: `${node}:1` }));
  const rng = new Prng(4);
  const fresh = new Swim('n4', 'n4:1', seeds, () => rng.next());
  net.swims.set('n4', fresh);
  net.run(net.now + 2_000);
  for (const by of ['n1', 'n2', 'n3']) t.is(net.stateOf('n4', by), 'alive', `${by} did not take n4 back`);
});

test('a member that loses every probe raises its local health multiplier, and lowers it after', (t) => {
  const net = new Net(3, 11);
  net.run(500);
  const swim = net.swims.get('n1') as Swim;
  t.is(swim.health, 0);
  net.killed.add('n2');
  net.killed.add('n3');
  net.run(net.now + 1_500);
  const raised = swim.health;
  t.true(raised > 0);
  net.killed.clear();
  net.run(net.now + 5_000);
  t.true(swim.health < raised, `health stayed at ${swim.health}`);
});
