// A SWIM failure detector (Das, Gupta, Motivala 2002) with Lifeguard's local health
// (Dadgar et al. 2018), as a deterministic sans-I/O state machine like the replica: it takes
// datagrams and ticks, and returns datagrams to send. The node runtime sends them over UDP;
// the simulator over its virtual network.
//
// Each protocol period (probeIntervalMs) a member pings the next member of a shuffled
// round-robin list. Without an ack within probeTimeoutMs it asks `indirectProbes` others to
// ping the target for it. Without any ack by the end of the period, the target becomes
// suspect; a suspect that does not refute (by gossiping a higher incarnation of itself) within
// suspicionTimeoutMs is declared dead. Membership updates ride on every message, each sent a
// bounded number of times. Local health: each failed probe of ours, and each suspicion of
// ourselves, raises a multiplier (up to localHealthMax) that stretches our own probe timeout
// and period, so a slow member accuses others less; each successful probe lowers it.

import { assert } from '../../engine/assert.ts';

export type MemberState = 'alive' | 'suspect' | 'dead';

export interface Update {
  readonly node: string;
  readonly address: string;
  readonly state: MemberState;
  readonly incarnation: number;
}

export interface SwimMessage {
  readonly kind: 'ping' | 'ack' | 'ping-req';
  readonly from: string;
  /** Where the sender listens, so a member unknown to the receiver can be answered and added. */
  readonly fromAddress: string;
  readonly seq: number;
  /** ping-req: the member to probe. */
  readonly target: string;
  readonly updates: readonly Update[];
}

export interface Datagram {
  readonly to: string;
  readonly address: string;
  readonly message: SwimMessage;
}

export interface SwimOptions {
  probeIntervalMs: number;
  probeTimeoutMs: number;
  indirectProbes: number;
  suspicionTimeoutMs: number;
  /** Updates carried per message. */
  updatesPerMessageMax: number;
  /** Each update is sent about retransmitMult * log2(members + 1) times. */
  retransmitMult: number;
  localHealthMax: number;
  /** Bound on members (and so on every table here). */
  membersMax: number;
}

export const defaultSwimOptions: SwimOptions = Object.freeze({
  probeIntervalMs: 100,
  probeTimeoutMs: 40,
  indirectProbes: 2,
  suspicionTimeoutMs: 500,
  updatesPerMessageMax: 8,
  retransmitMult: 3,
  localHealthMax: 8,
  membersMax: 1_024,
});

/**
 * How long after a member stops answering every other member holds it dead, at most, when
 * messages are not lost and local health stays at zero: it is probed within a round of
 * probes (members - 1 periods, plus the period under way), suspected at the end of that
 * period, dead after the suspicion timeout, and the news spreads within a few periods.
 */
export function deathBoundMs(options: SwimOptions, members: number): number {
  return (members + 1) * options.probeIntervalMs + options.suspicionTimeoutMs + Math.ceil(Math.log2(members + 1) + 2) * options.probeIntervalMs;
}

/** One probe in this many goes to a member held dead (see startProbe). */
const deadProbeEvery = 5;

export interface Member {
  readonly node: string;
  address: string;
  state: MemberState;
  incarnation: number;
  /** When the state last changed (the detector's clock). */
  since: number;
}

interface Probe {
  readonly target: string;
  readonly seq: number;
  readonly sentAt: number;
  indirectSent: boolean;
  acked: boolean;
}

/** A state change the detector decided or learned, for observers (the manager, the simulator). */
export interface Change {
  readonly node: string;
  readonly state: MemberState;
  readonly incarnation: number;
  /** True when this detector decided it (a suspicion or a death it timed out), not gossip. */
  readonly local: boolean;
}

export class Swim {
  readonly options: SwimOptions;
  onChange: ((change: Change) => void) | undefined;
  private readonly table = new Map<string, Member>();
  private incarnation = 0;
  private localHealth = 0;
  private seq = 0;
  private periods = 0;
  private now = 0;
  private nextProbeAt = 0;
  private probe: Probe | undefined;
  private order: string[] = [];
  private orderIndex = 0;
  /** Pings we send for others (ping-req): our seq -> who asked and their seq. */
  private readonly relays = new Map<number, { readonly origin: string; readonly seq: number; readonly at: number }>();
  private readonly gossip = new Map<string, { update: Update; sends: number }>();
  private out: Datagram[] = [];

  constructor(
    readonly self: string,
    readonly address: string,
    seeds: readonly { readonly node: string; readonly address: string }[],
    /** Uniform in [0, 1): the runtime passes Math.random, the simulator its seeded PRNG. */
    private readonly random: () => number,
    options: Partial<SwimOptions> = {},
  ) {
    this.options = Object.freeze({ ...defaultSwimOptions, ...options });
    assert(this.options.probeTimeoutMs < this.options.probeIntervalMs, 'Swim: probeTimeoutMs must be below probeIntervalMs');
    for (const seed of seeds) if (seed.node !== self) this.table.set(seed.node, { node: seed.node, address: seed.address, state: 'alive', incarnation: 0, since: 0 });
    assert(this.table.size <= this.options.membersMax, 'Swim: more seeds than membersMax');
    // Announce ourselves and what we know, so members that only know a seed learn the rest.
    this.enqueue({ node: self, address, state: 'alive', incarnation: 0 });
    for (const m of this.table.values()) this.enqueue({ node: m.node, address: m.address, state: 'alive', incarnation: 0 });
  }

  /** Every member but this one, with its state. */
  members(): readonly Member[] {
    return [...this.table.values()];
  }

  state(node: string): MemberState | undefined {
    return node === this.self ? 'alive' : this.table.get(node)?.state;
  }

  get health(): number {
    return this.localHealth;
  }

  drain(): Datagram[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  tick(now: number): void {
    this.now = Math.max(this.now, now);
    const scale = 1 + this.localHealth;
    const probe = this.probe;
    if (probe !== undefined && !probe.acked && !probe.indirectSent && this.now - probe.sentAt >= this.options.probeTimeoutMs * scale) {
      probe.indirectSent = true;
      const helpers = this.pick(this.options.indirectProbes, (m) => m.state === 'alive' && m.node !== probe.target);
      for (const helper of helpers) this.send(helper, this.message('ping-req', probe.seq, probe.target));
    }
    if (this.now >= this.nextProbeAt) {
      this.endProbe();
      this.startProbe();
      this.nextProbeAt = this.now + this.options.probeIntervalMs * scale;
    }
    for (const member of this.table.values()) {
      if (member.state === 'suspect' && this.now - member.since >= this.options.suspicionTimeoutMs) {
        this.set(member, 'dead', member.incarnation, true);
      }
    }
    for (const [seq, relay] of this.relays) if (this.now - relay.at > this.options.probeIntervalMs * 4) this.relays.delete(seq);
  }

  receive(message: SwimMessage, now: number): void {
    this.now = Math.max(this.now, now);
    for (const update of message.updates) this.apply(update);
    if (message.from !== this.self && !this.table.has(message.from) && this.table.size < this.options.membersMax) this.add(message.from, message.fromAddress);
    const sender = this.table.get(message.from);
    // A member we hold dead is talking (it restarted): tell it, so it rejoins with a higher incarnation.
    if (sender?.state === 'dead') this.enqueue({ node: sender.node, address: sender.address, state: 'dead', incarnation: sender.incarnation });
    switch (message.kind) {
      case 'ping':
        this.sendTo(message.from, this.message('ack', message.seq));
        return;
      case 'ping-req': {
        const seq = ++this.seq;
        this.relays.set(seq, { origin: message.from, seq: message.seq, at: this.now });
        if (this.relays.size > this.options.membersMax) this.relays.delete(this.relays.keys().next().value as number);
        this.sendTo(message.target, this.message('ping', seq));
        return;
      }
      case 'ack': {
        const probe = this.probe;
        if (probe !== undefined && probe.seq === message.seq) {
          probe.acked = true;
          return;
        }
        const relay = this.relays.get(message.seq);
        if (relay !== undefined) {
          this.relays.delete(message.seq);
          this.sendTo(relay.origin, this.message('ack', relay.seq));
        }
        return;
      }
    }
  }

  /** Adds (or re-addresses) a member known from outside the protocol (configuration). */
  add(node: string, address: string): void {
    if (node === this.self) return;
    const member = this.table.get(node);
    if (member !== undefined) {
      member.address = address;
      return;
    }
    assert(this.table.size < this.options.membersMax, () => `Swim: membersMax (${this.options.membersMax}) reached`);
    this.table.set(node, { node, address, state: 'alive', incarnation: 0, since: this.now });
  }

  private endProbe(): void {
    const probe = this.probe;
    this.probe = undefined;
    if (probe === undefined) return;
    const target = this.table.get(probe.target);
    if (probe.acked) {
      this.localHealth = Math.max(0, this.localHealth - 1);
      return;
    }
    this.localHealth = Math.min(this.options.localHealthMax, this.localHealth + 1);
    if (target !== undefined && target.state === 'alive') this.set(target, 'suspect', target.incarnation, true);
  }

  private startProbe(): void {
    // Every deadProbeEvery periods, probe a member held dead instead: after a partition heals,
    // two sides that hold each other dead talk again, learn so, and refute (memberlist's
    // reconnect). A dead member that stays silent is not suspected again.
    this.periods++;
    const dead = this.periods % deadProbeEvery === 0 ? [...this.table.values()].filter((m) => m.state === 'dead') : [];
    const target = dead.length > 0 ? dead[Math.floor(this.random() * dead.length)] : this.nextTarget();
    if (target === undefined) return;
    const seq = ++this.seq;
    this.probe = { target: target.node, seq, sentAt: this.now, indirectSent: false, acked: false };
    this.send(target, this.message('ping', seq));
  }

  /** Round-robin over a shuffled list of members that are not dead; reshuffled each round. */
  private nextTarget(): Member | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.orderIndex < this.order.length) {
        const member = this.table.get(this.order[this.orderIndex++] as string);
        if (member !== undefined && member.state !== 'dead') return member;
      }
      this.order = this.shuffle([...this.table.keys()]);
      this.orderIndex = 0;
    }
    return undefined;
  }

  private shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [items[i], items[j]] = [items[j] as T, items[i] as T];
    }
    return items;
  }

  private pick(count: number, accept: (m: Member) => boolean): Member[] {
    return this.shuffle([...this.table.values()].filter(accept)).slice(0, count);
  }

  /** SWIM's precedence rules, plus: a dead member comes back with a higher incarnation (a restart). */
  private apply(update: Update): void {
    if (update.node === this.self) {
      if (update.state === 'alive') return;
      if (update.incarnation >= this.incarnation) {
        // Refute: we are alive, with a higher incarnation than the accusation.
        this.incarnation = update.incarnation + 1;
        this.localHealth = Math.min(this.options.localHealthMax, this.localHealth + 1);
      }
      // An older accusation still circulates (its sender missed our refutation): say it again.
      if (this.gossip.get(this.self)?.update.incarnation !== this.incarnation) this.enqueue({ node: this.self, address: this.address, state: 'alive', incarnation: this.incarnation });
      return;
    }
    let member = this.table.get(update.node);
    if (member === undefined) {
      if (this.table.size >= this.options.membersMax) return;
      member = { node: update.node, address: update.address, state: update.state, incarnation: update.incarnation, since: this.now };
      this.table.set(update.node, member);
      this.enqueue(update);
      this.onChange?.({ node: update.node, state: update.state, incarnation: update.incarnation, local: false });
      return;
    }
    const newer =
      update.state === 'alive'
        ? update.incarnation > member.incarnation
        : update.state === 'suspect'
          ? member.state !== 'dead' && (update.incarnation > member.incarnation || (update.incarnation === member.incarnation && member.state === 'alive'))
          : update.incarnation > member.incarnation || (update.incarnation === member.incarnation && member.state !== 'dead');
    if (!newer) return;
    member.address = update.address;
    this.set(member, update.state, update.incarnation, false);
  }

  private set(member: Member, state: MemberState, incarnation: number, local: boolean): void {
    const changed = member.state !== state;
    member.state = state;
    member.incarnation = incarnation;
    if (changed) member.since = this.now;
    this.enqueue({ node: member.node, address: member.address, state, incarnation });
    if (changed) this.onChange?.({ node: member.node, state, incarnation, local });
  }

  private enqueue(update: Update): void {
    this.gossip.set(update.node, { update, sends: 0 });
  }

  private message(kind: SwimMessage['kind'], seq: number, target = ''): SwimMessage {
    return { kind, from: this.self, fromAddress: this.address, seq, target, updates: [] };
  }

  private send(member: Member, message: SwimMessage): void {
    this.out.push({ to: member.node, address: member.address, message: { ...message, updates: this.piggyback() } });
  }

  private sendTo(node: string, message: SwimMessage): void {
    const member = this.table.get(node);
    if (member !== undefined) this.send(member, message);
  }

  /** The updates sent least so far; each is dropped after its share of sends. */
  private piggyback(): Update[] {
    if (this.gossip.size === 0) return [];
    const limit = this.options.retransmitMult * Math.ceil(Math.log2(this.table.size + 2));
    const entries = [...this.gossip.values()].sort((a, b) => a.sends - b.sends).slice(0, this.options.updatesPerMessageMax);
    for (const entry of entries) {
      entry.sends++;
      if (entry.sends >= limit) this.gossip.delete(entry.update.node);
    }
    return entries.map((e) => e.update);
  }
}
