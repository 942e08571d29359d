// The chain manager's loop, written once against Net, Clock and Datagrams: it decides
// (plan() on its failure detector's view, or decisions an operator or the simulator asks
// for), pushes each new configuration to every member and to every node it removed, retries
// each push with backoff until that node acknowledges it, and polls joiners until they report
// that they caught up. cluster-manager.ts runs it in a real process; the simulator runs the
// same class.
//
// A removed node is told until it acknowledges (a paused head that missed its removal learns
// it when it resumes, however often pushes failed meanwhile); a node that answers stale_epoch
// already holds a newer configuration, which fences it just as well.
//
// With a configuration store (config-store.ts) the store is the authority, not this loop's
// memory: several loops campaign and one leads; only the leader decides, and it announces a
// configuration only after its compare-and-swap on the epoch it decided from succeeded (a
// failed one means another writer got there first: it adopts what the store holds and decides
// again). A new leader, or a restarted one, starts from the store, so epochs never repeat.
// A standby keeps its failure detector warm and its view of the store current (watch), and
// pushes nothing.

import { assert } from '../../engine/assert.ts';
import { AdminLink } from '../client/requests.ts';
import type { ChainConfig } from '../core/config.ts';
import type { Member } from '../core/frames.ts';
import type { Bugs } from '../core/planted.ts';
import { isLink, type Clock, type Datagrams, type Net } from '../runtime/io.ts';
import { decodeGossip, encodeGossip } from '../runtime/wire.ts';
import type { ConfigStore, Leadership } from './config-store.ts';
import { addTail, catchingUp, removeNode, type NodeAddress } from './decisions.ts';
import { chainOf, plan } from './placement.ts';
import { Swim, type MemberState, type SwimOptions } from './swim.ts';

export const managerId = 'manager';

export type ManagerEvent =
  | { readonly kind: 'member'; readonly at: number; readonly node: string; readonly state: MemberState; readonly local: boolean }
  | { readonly kind: 'configured'; readonly at: number; readonly config: ChainConfig; readonly why: string }
  | { readonly kind: 'leadership'; readonly at: number; readonly manager: string; readonly leading: boolean; readonly why: string };

export interface ManagerLoopOptions {
  /** Its name: its SWIM member id and its candidate name (default "manager"). */
  readonly name?: string;
  /** Target chain length. */
  readonly k: number;
  /** The nodes it manages. */
  readonly nodes: readonly NodeAddress[];
  /**
   * swim: its own failure detector (over datagrams) says who is dead and plan() reconfigures.
   * external: setMembership says so (an operator, a tool, the simulator's world), and plan()
   * runs only while `planning` is on; remove() and add() work in both.
   */
  readonly membership: 'swim' | 'external';
  readonly cluster: string;
  /** Signs gossip datagrams. */
  /** Signs gossip datagrams (the gossip key; unused without gossip). */
  readonly secret: string;
  /** Where its failure detector listens (swim mode). */
  readonly address: string;
  readonly swim?: Partial<SwimOptions>;
  readonly random: () => number;
  readonly decideEveryMs?: number;
  /** Bound on one configure or lookup. */
  readonly requestTimeoutMs?: number;
  /** Push retry backoff per node: doubles from min to max. */
  readonly pushRetryMsMin?: number;
  readonly pushRetryMsMax?: number;
  readonly pollEveryMs?: number;
  /** Joiners' caughtUpEpoch as known at start (a tool read them). */
  readonly caughtUp?: ReadonlyMap<string, ReadonlyMap<string, number>>;
  readonly log?: (line: string) => void;
  readonly onEvent?: (event: ManagerEvent) => void;
  readonly bugs?: Bugs;
}

/** What the loop runs on; `store`: the configuration store it writes through (absent: tools that push what they were given). */
export interface ManagerIo {
  readonly net: Net;
  readonly clock: Clock;
  readonly datagrams?: Datagrams;
  readonly store?: ConfigStore;
}

interface Target {
  address: string;
  /** Still in the chain (else: removed, to be fenced). */
  member: boolean;
  /** The highest epoch it acknowledged. */
  acked: number;
  inflight: boolean;
  nextAt: number;
  retryMs: number;
}

export class ManagerLoop {
  readonly configs = new Map<string, ChainConfig>();
  private readonly targets = new Map<string, Map<string, Target>>();
  private readonly caughtUp = new Map<string, Map<string, number>>();
  private readonly admins = new Map<string, AdminLink>();
  private readonly dialing = new Set<string>();
  private readonly nodes: Map<string, string>;
  private swim: Swim | undefined;
  private external: { live: NodeAddress[]; dead: Set<string> };
  /** External membership: plan() runs only while this is on. */
  planning = false;
  private timer: { cancel(): void } | undefined;
  private lastPoll = -Infinity;
  private stopped = false;
  reconfigurations = 0;
  refusals = 0;
  /** With a store: configurations to create when the store holds none for their chain. */
  private readonly initial: readonly ChainConfig[];
  private leadership: Leadership | undefined;
  /** With a store: it leads and has read the store, so it may decide and push. */
  private ready = false;
  /** Chains with a write to the store in flight (one at a time per chain). */
  private readonly writing = new Set<string>();
  private watcher: { cancel(): void } | undefined;
  private readonly name: string;
  elections = 0;

  constructor(
    private readonly io: ManagerIo,
    initial: readonly ChainConfig[],
    readonly options: ManagerLoopOptions,
  ) {
    this.name = options.name ?? managerId;
    this.nodes = new Map(options.nodes.map((n) => [n.node, n.address]));
    this.external = { live: [...options.nodes], dead: new Set() };
    for (const [chain, known] of options.caughtUp ?? []) this.caughtUp.set(chain, new Map(known));
    this.initial = io.store === undefined ? [] : initial;
    if (io.store === undefined) for (const config of initial) this.install(config, 'initial', []);
  }

  /** It may decide and push: no store (a tool), or it leads and has read the store. */
  get acting(): boolean {
    return this.io.store === undefined || this.ready;
  }

  get leading(): boolean {
    return this.io.store === undefined || this.leadership?.leading === true;
  }

  start(): void {
    if (this.options.membership === 'swim') {
      const datagrams = this.io.datagrams;
      assert(datagrams !== undefined, 'ManagerLoop: swim membership needs datagrams');
      const swim = new Swim(this.name, this.options.address, this.options.nodes, this.options.random, this.options.swim);
      swim.onChange = (c) => {
        this.log(`membership: ${c.node} is ${c.state}${c.local ? ' (decided here)' : ''}`);
        this.options.onEvent?.({ kind: 'member', at: this.io.clock.now(), node: c.node, state: c.state, local: c.local });
      };
      datagrams.onReceive((bytes) => {
        const message = decodeGossip(this.options.cluster, this.options.secret, bytes);
        if (message === undefined || this.stopped) return;
        swim.receive(message, this.io.clock.now());
        this.flushGossip();
      });
      this.swim = swim;
    }
    const store = this.io.store;
    if (store !== undefined) {
      // Every loop keeps its view of the store current; only the leader acts on it.
      this.watcher = store.watch((config) => !this.stopped && this.adopt(config, 'written to the store'));
      this.readStore(false);
      this.campaign();
    }
    const every = this.options.decideEveryMs ?? 5;
    const tick = (): void => {
      if (this.stopped) return;
      this.tick();
      this.timer = this.io.clock.after(every, tick, true);
    };
    this.timer = this.io.clock.after(0, tick, true);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.watcher?.cancel();
    this.leadership?.resign();
    for (const admin of this.admins.values()) admin.close();
    this.admins.clear();
  }

  private campaign(): void {
    const store = this.io.store as ConfigStore;
    let ended = false;
    this.leadership = store.campaign(this.name, {
      elected: () => {
        if (this.stopped || ended) return;
        this.elections++;
        this.log(`${this.name} leads the managers`);
        this.options.onEvent?.({ kind: 'leadership', at: this.io.clock.now(), manager: this.name, leading: true, why: 'elected' });
        this.readStore(true);
      },
      deposed: (why) => {
        if (this.stopped || ended) return;
        ended = true;
        this.log(`${this.name} no longer leads (${why}); it stops acting and campaigns again`);
        this.options.onEvent?.({ kind: 'leadership', at: this.io.clock.now(), manager: this.name, leading: false, why });
        this.ready = false;
        this.writing.clear();
        for (const targets of this.targets.values()) targets.clear();
        this.io.clock.after(this.options.requestTimeoutMs ?? 1_000, () => !this.stopped && this.campaign());
      },
    });
  }

  /**
   * Reads every chain's configuration from the store. The leader (`lead`) then pushes each to
   * its members (a previous leader may have died between its write and its pushes), creates
   * the chains the store lacks, and moves members whose address changed (a restart of the
   * whole cluster) to the next epoch.
   */
  private readStore(lead: boolean): void {
    const store = this.io.store as ConfigStore;
    store.list((error, configs) => {
      if (this.stopped || (lead && this.leadership?.leading !== true)) return;
      if (error !== undefined || configs === undefined) {
        this.log(`reading the configuration store failed: ${error?.message}; retrying`);
        this.io.clock.after(this.options.pushRetryMsMin ?? 50, () => this.readStore(lead));
        return;
      }
      for (const config of configs) this.adopt(config, 'read from the store');
      if (!lead) return;
      this.ready = true;
      for (const config of this.configs.values()) this.pushAll(config, true);
      for (const config of this.initial) if (!this.configs.has(config.chain)) this.write(undefined, config, 'initial placement');
      for (const config of this.configs.values()) {
        if (!config.members.some((m) => this.nodes.has(m.node) && this.nodes.get(m.node) !== m.address)) continue;
        const members = config.members.map((m) => ({ ...m, address: this.nodes.get(m.node) ?? m.address }));
        this.write(config, { chain: config.chain, epoch: config.epoch + 1, members }, 'members listen at new addresses');
      }
    });
  }

  /** Takes a configuration the store holds, when it is newer than the one known here. */
  private adopt(config: ChainConfig, why: string): void {
    const known = this.configs.get(config.chain);
    if (known !== undefined && known.epoch >= config.epoch) return;
    const dropped = known === undefined ? [] : ManagerLoop.removed(known, config).map((m) => ({ node: m.node, address: m.address }));
    this.install(config, why, dropped);
  }

  /**
   * Pushes `config` to every member again (a new leader does not know what its predecessor
   * pushed). `fence`: to every other managed node too, so that a node its predecessor removed
   * (and never reached) learns it. A node that never held the chain then holds it with no role,
   * durably at that epoch, so an older push that arrives later is refused.
   */
  private pushAll(config: ChainConfig, fence = false): void {
    let targets = this.targets.get(config.chain);
    if (targets === undefined) this.targets.set(config.chain, (targets = new Map()));
    const retryMs = this.options.pushRetryMsMin ?? 50;
    for (const m of config.members) {
      const t = targets.get(m.node);
      if (t === undefined) targets.set(m.node, { address: m.address, member: true, acked: 0, inflight: false, nextAt: -Infinity, retryMs });
      else Object.assign(t, { address: m.address, member: true, acked: 0, nextAt: -Infinity, retryMs });
    }
    if (fence) {
      for (const n of this.options.nodes) {
        if (config.members.some((m) => m.node === n.node) || targets.has(n.node)) continue;
        targets.set(n.node, { address: n.address, member: false, acked: 0, inflight: false, nextAt: -Infinity, retryMs });
      }
    }
    if (this.timer !== undefined) this.pushDue(config.chain);
  }

  /**
   * Writes `next` through the store's compare-and-swap on `expected` (the configuration the
   * decision was made from) and installs it only once the store holds it. A lost race adopts
   * the winner's configuration; an unknown outcome re-reads the chain.
   */
  private write(expected: ChainConfig | undefined, next: ChainConfig, why: string): boolean {
    const store = this.io.store as ConfigStore;
    if (!this.acting || this.writing.has(next.chain)) return false;
    this.writing.add(next.chain);
    const settle = (): boolean => {
      if (!this.writing.delete(next.chain) || this.stopped) return false;
      return this.ready;
    };
    if (this.options.bugs?.has('write-without-cas') === true) {
      store.put(next, (error) => {
        if (!settle() || error !== undefined) return;
        // Without compare-and-swap a writer cannot tell that it lost a race: it believes its own write.
        this.configs.delete(next.chain);
        this.install(next, why, []);
        this.pushAll(next);
      });
      return true;
    }
    store.swap(expected, next, (error, result) => {
      if (!settle()) return;
      if (error !== undefined || result === undefined) {
        this.log(`writing ${next.chain} epoch ${next.epoch} failed: ${error?.message}${error?.unknownOutcome === true ? '; re-reading it' : ''}`);
        if (error?.unknownOutcome === true) this.reread(next.chain);
        return;
      }
      if (result.swapped) return this.adopt(next, why);
      this.refusals++;
      this.log(`${next.chain} epoch ${next.epoch} (${why}) lost its compare-and-swap: the store holds epoch ${result.current?.epoch ?? 'none'}`);
      if (result.current !== undefined) this.adopt(result.current, 'another writer got there first');
    });
    return true;
  }

  private reread(chain: string): void {
    (this.io.store as ConfigStore).get(chain, (error, config) => {
      if (this.stopped || !this.ready) return;
      if (error !== undefined) {
        this.io.clock.after(this.options.pushRetryMsMin ?? 50, () => this.reread(chain));
        return;
      }
      if (config !== undefined) this.adopt(config, 'read back after an unknown outcome');
    });
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private flushGossip(): void {
    const datagrams = this.io.datagrams;
    if (this.swim === undefined || datagrams === undefined) return;
    for (const d of this.swim.drain()) datagrams.send(d.address, encodeGossip(this.options.cluster, this.options.secret, d.message));
  }

  /** Every managed node, with its state (swim: the detector's view; external: what setMembership said). */
  membership(): { node: string; address: string; state: MemberState }[] {
    return this.options.nodes.map((n) => ({ ...n, state: this.stateOf(n.node) }));
  }

  private stateOf(node: string): MemberState {
    if (this.swim !== undefined) return this.swim.state(node) ?? 'alive';
    return this.external.dead.has(node) ? 'dead' : 'alive';
  }

  /** The swim detector (swim mode), for observers. */
  get detector(): Swim | undefined {
    return this.swim;
  }

  /** External membership: who is live and who is dead. */
  setMembership(live: readonly NodeAddress[], dead: ReadonlySet<string>): void {
    this.external = { live: [...live], dead: new Set(dead) };
  }

  /** Where a document lives: its chain and that chain's head. */
  headOf(doc: string): { chain: string; node: string; address: string } {
    const chain = chainOf(doc, [...this.configs.keys()]);
    const head = (this.configs.get(chain) as ChainConfig).members[0];
    assert(head !== undefined, `chain ${chain} has no members`);
    return { chain, node: head.node, address: head.address };
  }

  joining(chain: string): Set<string> {
    const config = this.configs.get(chain);
    return config === undefined ? new Set() : catchingUp(config, this.caughtUp.get(chain) ?? new Map());
  }

  /** Every member and every removed node acknowledged the chain's current configuration. */
  acked(chain: string): boolean {
    const config = this.configs.get(chain);
    if (config === undefined) return false;
    for (const t of this.targets.get(chain)?.values() ?? []) if (t.acked < config.epoch) return false;
    return true;
  }

  /** Nodes (members and removed ones) that have not acknowledged the chain's current configuration. */
  unacked(chain: string): string[] {
    const config = this.configs.get(chain);
    if (config === undefined) return [];
    return [...(this.targets.get(chain) ?? [])].filter(([, t]) => t.acked < config.epoch).map(([node]) => node);
  }

  allAcked(): boolean {
    for (const chain of this.configs.keys()) if (!this.acked(chain)) return false;
    return true;
  }

  /** Removes `node` from `chain` when the rules allow it (never the last member holding the committed state). */
  remove(chain: string, node: string): boolean {
    const config = this.configs.get(chain);
    if (config === undefined || config.members.length <= 1 || !config.members.some((m) => m.node === node)) return false;
    return this.decide(() => removeNode(config, node, this.joining(chain)), `remove ${node}`);
  }

  /** Adds `node` at the tail of `chain` when it is missing and the chain is short of k. */
  add(chain: string, node: string): boolean {
    const config = this.configs.get(chain);
    const address = this.nodes.get(node);
    if (config === undefined || address === undefined || config.members.length >= this.options.k || config.members.some((m) => m.node === node)) return false;
    return this.decide(() => addTail(config, { node, address }, this.joining(chain)), `add ${node} at the tail`);
  }

  /** The decision functions refuse unsafe changes by throwing. With a store, the decision is written before it is installed. */
  private decide(next: () => ChainConfig, why: string): boolean {
    if (!this.acting) return false;
    let config: ChainConfig;
    try {
      config = next();
    } catch (error) {
      this.refusals++;
      this.log(`refused: ${(error as Error).message}`);
      return false;
    }
    if (this.io.store !== undefined) return this.write(this.configs.get(config.chain), config, why);
    this.install(config, why, []);
    return true;
  }

  /** Makes `config` the chain's configuration: its members and every member it drops are pushed it. */
  install(config: ChainConfig, why: string, fence: readonly NodeAddress[]): void {
    const old = this.configs.get(config.chain);
    assert(old === undefined || config.epoch > old.epoch, () => `ManagerLoop: epoch ${config.epoch} of ${config.chain} does not follow ${old?.epoch}`);
    this.configs.set(config.chain, config);
    let targets = this.targets.get(config.chain);
    if (targets === undefined) this.targets.set(config.chain, (targets = new Map()));
    const retryMs = this.options.pushRetryMsMin ?? 50;
    for (const t of targets.values()) t.member = false;
    for (const m of config.members) {
      const t = targets.get(m.node);
      if (t === undefined) targets.set(m.node, { address: m.address, member: true, acked: 0, inflight: false, nextAt: -Infinity, retryMs });
      else Object.assign(t, { address: m.address, member: true, nextAt: -Infinity, retryMs });
    }
    for (const f of fence) if (!targets.has(f.node)) targets.set(f.node, { address: f.address, member: false, acked: 0, inflight: false, nextAt: -Infinity, retryMs });
    // Removed members stay targets until they acknowledge (see the header).
    for (const t of targets.values()) if (!t.member) Object.assign(t, { nextAt: -Infinity, retryMs });
    if (old !== undefined) {
      this.reconfigurations++;
      this.log(`${config.chain} epoch ${config.epoch}: ${config.members.map((m) => m.node).join(' > ')} (${why})`);
      this.options.onEvent?.({ kind: 'configured', at: this.io.clock.now(), config, why });
    }
    if (!this.stopped && this.timer !== undefined && this.acting) this.pushDue(config.chain);
  }

  private tick(): void {
    const now = this.io.clock.now();
    if (this.swim !== undefined) {
      this.swim.tick(now);
      this.flushGossip();
    }
    if (!this.acting) return;
    this.plan();
    for (const chain of this.configs.keys()) this.pushDue(chain);
    if (now - this.lastPoll >= (this.options.pollEveryMs ?? 300)) {
      this.lastPoll = now;
      this.pollJoiners();
    }
  }

  private plan(): void {
    if (this.swim === undefined && !this.planning) return;
    const dead = new Set<string>();
    const live: NodeAddress[] = [];
    if (this.swim !== undefined) {
      for (const n of this.options.nodes) {
        if (this.swim.state(n.node) === 'dead') dead.add(n.node);
        else live.push(n);
      }
    } else {
      for (const d of this.external.dead) dead.add(d);
      live.push(...this.external.live.filter((n) => !dead.has(n.node)));
    }
    for (const { config, why } of plan([...this.configs.values()], { live, dead }, this.options.k, this.caughtUp)) {
      if (this.io.store === undefined) this.install(config, why, []);
      else this.write(this.configs.get(config.chain), config, why);
    }
  }

  private pushDue(chain: string): void {
    if (!this.acting) return;
    const config = this.configs.get(chain) as ChainConfig;
    const now = this.io.clock.now();
    for (const [node, t] of this.targets.get(chain) ?? []) {
      if (t.acked >= config.epoch) {
        if (!t.member) (this.targets.get(chain) as Map<string, Target>).delete(node);
        continue;
      }
      if (t.inflight || now < t.nextAt) continue;
      // A member its detector holds dead gets nothing (plan() removes it); a removed node is told regardless.
      if (t.member && this.swim !== undefined && this.swim.state(node) === 'dead') continue;
      this.push(chain, node, t, config);
    }
  }

  private push(chain: string, node: string, t: Target, config: ChainConfig): void {
    t.inflight = true;
    const failed = (why: string): void => {
      t.inflight = false;
      t.nextAt = this.io.clock.now() + t.retryMs;
      t.retryMs = Math.min(t.retryMs * 2, this.options.pushRetryMsMax ?? 1_000);
      this.log(`push of ${chain} epoch ${config.epoch} to ${node} failed: ${why}`);
    };
    this.admin(t.address, (admin) => {
      if (admin === undefined) return failed('unreachable');
      admin.configure(config, (error, info) => {
        t.inflight = false;
        if (!this.acting) return;
        if (error !== undefined) {
          if (error.code === 'stale_epoch' && !t.member) {
            t.acked = Math.max(t.acked, config.epoch);
            return;
          }
          return failed(error.message);
        }
        if (info !== undefined) t.acked = Math.max(t.acked, Math.min(info.epoch, (this.configs.get(chain) as ChainConfig).epoch));
        t.retryMs = this.options.pushRetryMsMin ?? 50;
      });
    });
  }

  /**
   * Asks every member that joined after the chain was made for its caughtUpEpoch. The latest
   * answer counts, not the highest: a node that lost its data reports less, and must then be
   * treated as catching up again.
   */
  private pollJoiners(): void {
    for (const [chain, config] of this.configs) {
      for (const m of config.members) {
        if (m.sinceEpoch <= 1) continue;
        if (this.swim !== undefined && this.swim.state(m.node) === 'dead') continue;
        this.admin(m.address, (admin) =>
          admin?.lookup(chain, (error, info) => {
            if (error !== undefined || info === undefined || info.epoch === 0) return;
            const known = this.caughtUp.get(chain) ?? new Map<string, number>();
            known.set(m.node, info.caughtUpEpoch);
            this.caughtUp.set(chain, known);
          }),
        );
      }
    }
  }

  /** The pooled admin link to `address` (undefined: unreachable now). */
  private admin(address: string, use: (admin: AdminLink | undefined) => void): void {
    const open = this.admins.get(address);
    if (open?.isOpen === true) return use(open);
    if (this.dialing.has(address)) return use(undefined);
    this.dialing.add(address);
    this.io.net.dial(address, { role: 'admin', name: this.name, timeoutMs: this.options.requestTimeoutMs ?? 1_000 }, (result) => {
      this.dialing.delete(address);
      if (!isLink(result) || this.stopped) {
        if (isLink(result)) result.close();
        return use(undefined);
      }
      const admin = new AdminLink(result, this.io.clock, { requestTimeoutMs: this.options.requestTimeoutMs ?? 1_000 });
      this.admins.set(address, admin);
      admin.onClose(() => this.admins.get(address) === admin && this.admins.delete(address));
      use(admin);
    });
  }

  /** Members a configuration change dropped (for logs and tools). */
  static removed(before: ChainConfig, after: ChainConfig): Member[] {
    return before.members.filter((m) => !after.members.some((n) => n.node === m.node));
  }
}
