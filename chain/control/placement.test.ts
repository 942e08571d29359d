import test from 'ava';
import fc from 'fast-check';
import { chainIds, chainOf, initialPlacement, plan, preferred, type Membership } from './placement.ts';
import type { ChainConfig } from '../core/config.ts';
import { catchingUp } from './decisions.ts';

const nodeNames = fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/), { minLength: 2, maxLength: 9 });
const address = (node: string): string => `${node}:7000`;

test('documents spread over the chains, and a document always maps to the same chain', (t) => {
  const chains = chainIds(5);
  const counts = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const chain = chainOf(`doc-${i}`, chains);
    counts.set(chain, (counts.get(chain) ?? 0) + 1);
    if (i < 100) t.is(chainOf(`doc-${i}`, [...chains].reverse()), chain);
  }
  for (const chain of chains) t.true((counts.get(chain) ?? 0) > 1_500 && (counts.get(chain) ?? 0) < 2_500, `${chain}: ${counts.get(chain)}`);
});

test('initial placement: k distinct members per chain; with N = C every node heads some chain or sits at several positions', (t) => {
  fc.assert(
    fc.property(nodeNames, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 5 }), (nodes, chains, k) => {
      const configs = initialPlacement(
        nodes.map((node) => ({ node, address: address(node) })),
        chains,
        k,
      );
      for (const c of configs) {
        const members = c.members.map((m) => m.node);
        if (members.length !== Math.min(k, nodes.length) || new Set(members).size !== members.length) return false;
      }
      return configs.length === chains;
    }),
  );
  const five = initialPlacement(
    ['n1', 'n2', 'n3', 'n4', 'n5'].map((node) => ({ node, address: address(node) })),
    5,
    3,
  );
  const positions = new Map<string, Set<number>>();
  for (const c of five) for (const [i, m] of c.members.entries()) positions.set(m.node, (positions.get(m.node) ?? new Set()).add(i));
  t.log(five.map((c) => `${c.chain}: ${c.members.map((m) => m.node).join(' > ')}`).join('; '));
  t.true([...positions.values()].filter((p) => p.size > 1).length >= 3, 'nodes do not sit at different positions');
});

test('rendezvous: removing a node changes the preferred members of exactly the chains that held it', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(nodeNames, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), fc.nat(), (nodes, chains, k, pick) => {
        const gone = nodes[pick % nodes.length] as string;
        const rest = nodes.filter((n) => n !== gone);
        for (const chain of chainIds(chains)) {
          const before = preferred(chain, nodes, k);
          const after = preferred(chain, rest, k);
          const moved = before.join() !== after.join();
          if (moved !== before.includes(gone)) return false;
          // The survivors keep their relative order: only the gone node's slot changes.
          if (before.filter((n) => n !== gone).join() !== after.slice(0, before.length - (before.includes(gone) ? 1 : 0)).join()) return false;
        }
        return true;
      }),
    ),
  );
});

/** Applies plan() until it settles; returns the configurations. */
function settle(configs: ChainConfig[], membership: Membership, k: number, caughtUp: Map<string, Map<string, number>>): ChainConfig[] {
  let current = configs;
  for (let i = 0; i < 10; i++) {
    const decisions = plan(current, membership, k, caughtUp);
    if (decisions.length === 0) return current;
    current = current.map((c) => decisions.find((d) => d.config.chain === c.chain)?.config ?? c);
  }
  return current;
}

test('plan: chains stay within k, never hold a node twice, never lose their last caught-up member; only chains of a dead node change', (t) => {
  const event = fc.record({ node: fc.nat({ max: 6 }), kind: fc.constantFrom('die', 'revive', 'catch-up'), chain: fc.nat({ max: 4 }) });
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 7 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), fc.array(event, { maxLength: 30 }), (n, chains, k, events) => {
        const nodes = Array.from({ length: n }, (_, i) => `n${i + 1}`);
        let configs = initialPlacement(
          nodes.map((node) => ({ node, address: address(node) })),
          chains,
          k,
        );
        const dead = new Set<string>();
        const caughtUp = new Map<string, Map<string, number>>();
        const membership = (): Membership => ({ live: nodes.filter((x) => !dead.has(x)).map((node) => ({ node, address: address(node) })), dead });
        for (const e of events) {
          const node = nodes[e.node % n] as string;
          const before = configs;
          if (e.kind === 'die') dead.add(node);
          else if (e.kind === 'revive') dead.delete(node);
          else {
            const chain = configs[e.chain % configs.length] as ChainConfig;
            const map = caughtUp.get(chain.chain) ?? new Map<string, number>();
            map.set(node, chain.epoch);
            caughtUp.set(chain.chain, map);
          }
          const decisions = plan(configs, membership(), k, caughtUp);
          if (e.kind === 'die') {
            // A death changes only chains that hold the dead node (or were short already).
            for (const d of decisions) {
              const old = before.find((c) => c.chain === d.config.chain) as ChainConfig;
              if (!old.members.some((m) => m.node === node) && old.members.length >= Math.min(k, n)) return false;
            }
          }
          configs = settle(configs, membership(), k, caughtUp);
          for (const c of configs) {
            const members = c.members.map((m) => m.node);
            if (members.length === 0 || members.length > k || new Set(members).size !== members.length) return false;
            const old = before.find((b) => b.chain === c.chain) as ChainConfig;
            if (c.epoch < old.epoch) return false;
            if (members.every((m) => catchingUp(c, caughtUp.get(c.chain) ?? new Map()).has(m))) return false;
          }
        }
        return true;
      }),
      { numRuns: 300 },
    ),
  );
});

test('plan: a dead member is not removed while every other member is still catching up', (t) => {
  const base: ChainConfig = {
    chain: 'c1',
    epoch: 3,
    members: [
      { node: 'a', address: 'a:1', sinceEpoch: 1 },
      { node: 'b', address: 'b:1', sinceEpoch: 3 },
    ],
  };
  const membership: Membership = { live: [{ node: 'b', address: 'b:1' }], dead: new Set(['a']) };
  t.deepEqual(plan([base], membership, 2, new Map()), []);
  const decided = plan([base], membership, 2, new Map([['c1', new Map([['b', 3]])]]));
  t.deepEqual(
    decided.map((d) => d.config.members.map((m) => m.node)),
    [['b']],
  );
});
