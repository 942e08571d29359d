// The simulated configuration store: linearizable (every operation takes effect at one event,
// in the store's own process), reached over the simulated network's latencies and blocks
// (a partition between a process and "store" cuts it off), with faults: slowness, and answers
// lost after a write committed (the writer then learns nothing, as on a timeout). Leadership is
// a lease the leader renews: one that cannot renew for ttlMs loses it, and another candidate
// may take it while the old leader still believes it leads until it hears so (as with etcd).
// It keeps every write that landed, so the configurations invariant can tell whether what a
// node accepted is what the store held.

import type { ChainConfig } from '../chain/core/config.ts';
import { type ConfigStore, type Done, type Leadership, type LeadershipEvents, sameConfig, storeError, type SwapResult } from '../chain/control/config-store.ts';
import { SimProcess } from './processes.ts';
import type { World } from './world.ts';

export const storeName = 'store';
/** Leadership lease, renewal period and request timeout (virtual ms). */
export const leaseTtlMs = 300;
const renewEveryMs = 100;
const requestTimeoutMs = 200;

interface Lease {
  readonly candidate: string;
  readonly token: number;
  until: number;
}

export class SimStore extends SimProcess {
  private readonly configs = new Map<string, ChainConfig>();
  /** Every write that landed, per chain, in order (a blind write may repeat an epoch). */
  readonly writes = new Map<string, ChainConfig[]>();
  private lease: Lease | undefined;
  private tokens = 0;
  private readonly watchers = new Set<{ proc: SimProcess; incarnation: number; onChange: (config: ChainConfig) => void }>();
  /** Extra latency of every request and answer (the slow-store fault). */
  slowMs = 0;
  /** Answers to writes are lost (after the write committed) while this is on. */
  loseAnswers = false;

  constructor(world: World) {
    super(world, storeName, `${storeName}.sim:2379`);
  }

  current(chain: string): ChainConfig | undefined {
    return this.configs.get(chain);
  }

  chains(): IterableIterator<ChainConfig> {
    return this.configs.values();
  }

  /** Whether `config` is one that landed in the store. */
  held(config: ChainConfig): boolean {
    return (this.writes.get(config.chain) ?? []).some((w) => sameConfig(w, config));
  }

  private latency(proc: SimProcess): number {
    return this.world.net.latency(proc.name, this.name) + this.slowMs;
  }

  private reachable(proc: SimProcess): boolean {
    return !this.world.net.isBlocked(proc.name, this.name) && !this.world.net.isBlocked(this.name, proc.name) && !this.hung;
  }

  /**
   * One request from `proc`: `op` runs at the store (the linearization point), its value comes
   * back to `proc`'s incarnation; `timeout` runs there instead when no answer came in time.
   */
  private request<T>(proc: SimProcess, write: boolean, op: () => T, answer: (value: T) => void, timeout: () => void): void {
    const world = this.world;
    const incarnation = proc.incarnation;
    let settled = false;
    world.after(requestTimeoutMs, () => {
      if (settled) return false;
      settled = true;
      proc.run(incarnation, timeout);
      return true;
    });
    if (!this.reachable(proc)) return;
    world.after(this.latency(proc), () => {
      if (settled || !this.reachable(proc)) return false;
      world.ranIn(this);
      const value = op();
      if (write && this.loseAnswers && world.rng.chance(0.5)) return true;
      world.after(this.latency(proc), () => {
        if (settled || !this.reachable(proc)) return false;
        settled = true;
        proc.run(incarnation, () => answer(value));
        return true;
      });
      return true;
    });
  }

  private land(config: ChainConfig): void {
    this.configs.set(config.chain, config);
    let writes = this.writes.get(config.chain);
    if (writes === undefined) this.writes.set(config.chain, (writes = []));
    writes.push(config);
    this.world.note(`store: ${config.chain} epoch ${config.epoch} = ${config.members.map((m) => m.node).join('>')}`);
    for (const w of this.watchers) this.notify(w, config);
  }

  /** A watch event reaches its process once it can (a cut-off watcher gets it when the cut heals). */
  private notify(w: { proc: SimProcess; incarnation: number; onChange: (config: ChainConfig) => void }, config: ChainConfig): void {
    this.world.after(this.latency(w.proc), () => {
      if (!this.watchers.has(w) || w.proc.incarnation !== w.incarnation || !w.proc.alive) return false;
      if (!this.reachable(w.proc)) {
        this.world.after(50, () => void this.notify(w, config));
        return true;
      }
      w.proc.run(w.incarnation, () => w.onChange(config));
      return true;
    });
  }

  private leaseHolds(token: number): boolean {
    return this.lease !== undefined && this.lease.token === token && this.lease.until > this.world.now;
  }

  /** The product's ConfigStore for the current incarnation of `proc`. */
  clientFor(proc: SimProcess): ConfigStore {
    const store = this;
    const world = this.world;
    const unreachable = (write: boolean) => storeError(write ? 'store_timeout' : 'store_unreachable', `no answer from the store within ${requestTimeoutMs} ms`, write);
    let token = 0; // the leadership this client holds (0: none)
    return {
      kind: 'simulated',
      list(done: Done<ChainConfig[]>): void {
        store.request(
          proc,
          false,
          () => [...store.configs.values()],
          (v) => done(undefined, v),
          () => done(unreachable(false), undefined),
        );
      },
      get(chain: string, done: Done<ChainConfig | undefined>): void {
        store.request(
          proc,
          false,
          () => store.configs.get(chain),
          (v) => done(undefined, v),
          () => done(unreachable(false), undefined),
        );
      },
      swap(expected: ChainConfig | undefined, next: ChainConfig, done: Done<SwapResult>): void {
        if (expected !== undefined && next.epoch <= expected.epoch) {
          done(storeError('store_error', `a swap must raise the epoch (${expected.epoch} -> ${next.epoch})`), undefined);
          return;
        }
        const fence = token;
        store.request(
          proc,
          true,
          (): SwapResult => {
            const current = store.configs.get(next.chain);
            if (!sameConfig(current, expected) || (fence !== 0 && !store.leaseHolds(fence))) return { swapped: false, current };
            store.land(next);
            return { swapped: true, current: next };
          },
          (v) => done(undefined, v),
          () => done(unreachable(true), undefined),
        );
      },
      put(next: ChainConfig, done: Done<ChainConfig>): void {
        store.request(
          proc,
          true,
          () => {
            store.land(next);
            return next;
          },
          (v) => done(undefined, v),
          () => done(unreachable(true), undefined),
        );
      },
      watch(onChange: (config: ChainConfig) => void): { cancel(): void } {
        const w = { proc, incarnation: proc.incarnation, onChange };
        store.watchers.add(w);
        return { cancel: () => store.watchers.delete(w) };
      },
      campaign(candidate: string, events: LeadershipEvents): Leadership {
        const clock = proc.clock();
        const state = { leading: false, ended: false, lastRenewedAt: -Infinity, token: 0 };
        const end = (why: string): void => {
          if (state.ended) return;
          state.ended = true;
          const was = state.leading;
          state.leading = false;
          if (token === state.token) token = 0;
          if (was) events.deposed(why);
        };
        const attempt = (): void => {
          if (state.ended) return;
          // A leader that could not renew for a whole lease knows it may have lost it.
          if (state.leading && clock.now() - state.lastRenewedAt >= leaseTtlMs) return end('its lease ran out: no answer from the store');
          const sentAt = clock.now();
          store.request(
            proc,
            false,
            () => {
              const lease = store.lease;
              if (lease !== undefined && lease.until > world.now && lease.candidate !== candidate) return 0;
              if (lease !== undefined && lease.until > world.now && lease.token === state.token) {
                lease.until = world.now + leaseTtlMs;
                return lease.token;
              }
              store.lease = { candidate, token: ++store.tokens, until: world.now + leaseTtlMs };
              return store.lease.token;
            },
            (granted) => {
              if (state.ended) return;
              if (granted === 0) {
                if (state.leading) end('the store gave the leadership to another manager');
                return;
              }
              if (state.leading && granted !== state.token) return end('its lease ran out at the store');
              state.lastRenewedAt = sentAt;
              if (!state.leading) {
                state.leading = true;
                state.token = granted;
                token = granted;
                events.elected();
              }
            },
            () => undefined,
          );
          clock.after(renewEveryMs, attempt, true);
        };
        attempt();
        return {
          get leading() {
            return state.leading;
          },
          resign(): void {
            const held = state.token;
            end('resigned');
            store.request(
              proc,
              true,
              () => {
                if (store.lease?.token === held) store.lease = undefined;
              },
              () => undefined,
              () => undefined,
            );
          },
        };
      },
      close(): void {
        for (const w of store.watchers) if (w.proc === proc) store.watchers.delete(w);
      },
    };
  }
}
