// The etcd configuration store: the real-world one, for several managers on several machines.
//
// Key layout (PREFIX from --config-store, default /adama-chain; CLUSTER the cluster name):
//   PREFIX/CLUSTER/chains/CHAIN            encodeStoredConfig(config), one key per chain
//   election/PREFIX/CLUSTER/managers/LEASE the managers' campaign keys (etcd3's election
//                                          recipe puts "election/" in front); the one with the
//                                          lowest create revision leads; each is bound to its
//                                          candidate's lease (TTL leaseTtlS, default 1 s).
//
// swap is one transaction:
//   if   Value(chain key) == encodeStoredConfig(expected)   (Version == 0 when expected is undefined)
//   and  CreateRevision(own campaign key) == the revision it had when this client was elected
//   then put(chain key, next)   else get(chain key)
// The second comparison is the fence: once the leader's lease has ended (or its campaign key is
// gone for any reason) its writes fail inside etcd, even before the deposed client itself hears
// of it; a standby takes over at once. A client that campaigned but does not lead (waiting,
// resigned, deposed) does not write at all. A client that never campaigned (a tool) is fenced
// by the compare-and-swap alone. Reads are etcd's default linearizable range reads; every value
// read is validated, so a damaged key is an error naming the key, never a wrong configuration.

import { type Campaign, ClientClosedError, type Election, Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, type IKeyValue, type Lease, type Watcher } from 'etcd3';
import { type ChainConfig, checkConfig, idPattern } from '../core/config.ts';
import { type ConfigStore, type Done, decodeStoredConfig, encodeStoredConfig, type Leadership, type LeadershipEvents, type StoreError, storeError, type SwapResult } from './config-store.ts';

export interface EtcdStoreOptions {
  /** "http://127.0.0.1:2379" (parseStoreUrl gives these). */
  endpoints: string[];
  prefix: string;
  cluster: string;
  /** Bound on every call; then done gets store_timeout. Default 1000. */
  requestTimeoutMs?: number;
  /** The campaign lease's TTL in seconds (etcd's minimum is about 1 s at a 50 ms heartbeat). Default 1. */
  leaseTtlS?: number;
  log?: (line: string) => void;
}

/** A failure already expressed as a StoreError (a bad stored value). */
class StoreFailure extends Error {
  constructor(readonly error: StoreError) {
    super(error.message);
  }
}

function swapProblem(expected: ChainConfig | undefined, next: ChainConfig): string | undefined {
  const problem = checkConfig(next);
  if (problem !== undefined || expected === undefined) return problem;
  if (expected.chain !== next.chain) return `swap of chain ${next.chain} from a configuration of chain ${expected.chain}`;
  if (next.epoch <= expected.epoch) return `swap to epoch ${next.epoch} from epoch ${expected.epoch}: the epoch must grow`;
  return undefined;
}

interface CampaignState {
  leading: boolean;
  /** Resigned, deposed or closed: no more events. */
  over: boolean;
  campaign: Campaign | undefined;
  fence: { key: string; createRevision: string } | undefined;
  retry: NodeJS.Timeout | undefined;
  /** Ends the leadership (deposed) when a swap finds the campaign key gone. */
  lost: (why: string) => void;
}

/** Runs a caller's callback outside any promise chain, so what it throws is not swallowed. */
function deliver(callback: () => void): void {
  queueMicrotask(callback);
}

export class EtcdConfigStore implements ConfigStore {
  readonly kind = 'etcd';
  private readonly client: Etcd3;
  private readonly chains: string;
  private readonly timeoutMs: number;
  private readonly ttlS: number;
  private readonly log: (line: string) => void;
  private readonly watchers = new Set<Watcher>();
  private readonly campaigns = new Set<CampaignState>();
  private readonly election: Election;
  private readonly resigning = new Set<Promise<void>>();
  /** The latest campaign: its state decides whether (and how fenced) this client writes. */
  private leadership: CampaignState | undefined;
  private closed = false;

  private constructor(options: EtcdStoreOptions) {
    this.timeoutMs = options.requestTimeoutMs ?? 1000;
    this.ttlS = options.leaseTtlS ?? 1;
    this.log = options.log ?? (() => {});
    this.chains = `${options.prefix}/${options.cluster}/chains/`;
    const timeoutMs = this.timeoutMs;
    // Every unary call (ours and the election recipe's) carries a gRPC deadline; streams do not.
    this.client = new Etcd3({ hosts: options.endpoints, defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeoutMs }) });
    this.election = this.client.election(`${options.prefix}/${options.cluster}/managers`, this.ttlS);
  }

  /** Connects lazily: the first call dials. */
  static connect(options: EtcdStoreOptions): EtcdConfigStore {
    return new EtcdConfigStore(options);
  }

  list(done: Done<ChainConfig[]>): void {
    this.call('list', false, done, async () => {
      const result = await this.client.getAll().prefix(this.chains).exec();
      return result.kvs.map((kv) => this.decode(kv));
    });
  }

  get(chain: string, done: Done<ChainConfig | undefined>): void {
    if (!idPattern.test(chain)) return deliver(() => done(storeError('store_error', `chain id ${JSON.stringify(chain)} does not match ${idPattern}`), undefined));
    this.call(`get ${chain}`, false, done, async () => {
      const kv = (await this.client.get(this.chains + chain).exec()).kvs[0];
      return kv === undefined ? undefined : this.decode(kv);
    });
  }

  swap(expected: ChainConfig | undefined, next: ChainConfig, done: Done<SwapResult>): void {
    const problem = swapProblem(expected, next);
    if (problem !== undefined) return deliver(() => done(storeError('store_error', problem), undefined));
    const key = this.chains + next.chain;
    const lead = this.leadership;
    this.call(`swap ${next.chain} to epoch ${next.epoch}`, true, done, async () => {
      if (lead !== undefined && (!lead.leading || lead.fence === undefined)) {
        this.log(`etcd store: swap of ${next.chain} refused: this client campaigned but does not lead`);
        const kv = (await this.client.get(key).exec()).kvs[0];
        return { swapped: false, current: kv === undefined ? undefined : this.decode(kv) };
      }
      const fence = lead?.fence;
      const txn = expected === undefined ? this.client.if(key, 'Version', '==', 0) : this.client.if(key, 'Value', '==', encodeStoredConfig(expected));
      if (fence !== undefined) txn.and(fence.key, 'Create', '==', fence.createRevision);
      const otherwise = fence === undefined ? [this.client.get(key)] : [this.client.get(key), this.client.get(fence.key)];
      const result = await txn
        .then(this.client.put(key).value(encodeStoredConfig(next)))
        .else(...otherwise)
        .commit();
      if (result.succeeded) return { swapped: true, current: next };
      // etcd3's recipe watches its lease, not its key: a fenced-off swap is how a leader whose key is gone learns of it.
      if (fence !== undefined && result.responses[1]?.response_range.kvs[0]?.create_revision !== fence.createRevision) lead?.lost(`its campaign key ${fence.key} is gone (a swap was fenced off)`);
      const kv = result.responses[0]?.response_range.kvs[0];
      return { swapped: false, current: kv === undefined ? undefined : this.decode(kv) };
    });
  }

  put(next: ChainConfig, done: Done<ChainConfig>): void {
    const problem = checkConfig(next);
    if (problem !== undefined) return deliver(() => done(storeError('store_error', problem), undefined));
    this.call(`put ${next.chain}`, true, done, async () => {
      await this.client.put(this.chains + next.chain).value(encodeStoredConfig(next));
      return next;
    });
  }

  watch(onChange: (config: ChainConfig) => void): { cancel(): void } {
    if (this.closed) return { cancel: () => {} };
    const watcher = this.client.watch().prefix(this.chains).only('put').watcher();
    this.watchers.add(watcher);
    let up = false; // etcd3 reconnects (and resumes after the last revision seen): log each outage once
    watcher.on('connected', () => {
      up = true;
      this.log(`etcd store: watching ${this.chains}`);
    });
    watcher.on('disconnected', (error) => {
      if (up) this.log(`etcd store: watch of ${this.chains} disconnected (${error.message}); reconnecting`);
      up = false;
    });
    watcher.on('error', (error) => this.log(`etcd store: watch of ${this.chains} failed: ${error.message}`));
    watcher.on('put', (kv) => {
      let config: ChainConfig;
      try {
        config = this.decode(kv);
      } catch (error) {
        return this.log(`etcd store: watch skipped a value: ${(error as Error).message}`);
      }
      deliver(() => onChange(config));
    });
    return {
      cancel: () => {
        if (!this.watchers.delete(watcher)) return;
        watcher.cancel().catch((error: Error) => this.log(`etcd store: cancelling a watch: ${error.message}`));
      },
    };
  }

  campaign(candidate: string, events: LeadershipEvents): Leadership {
    const state: CampaignState = { leading: false, over: false, campaign: undefined, fence: undefined, retry: undefined, lost: (why) => state.campaign && end(state.campaign, why) };
    this.leadership = state;
    this.campaigns.add(state);
    const end = (campaign: Campaign, why: string): void => {
      if (state.over || state.campaign !== campaign) return;
      campaign.resign().catch(() => {}); // its lease is gone or going: stop the recipe
      state.campaign = undefined;
      if (state.leading) {
        state.over = true;
        state.leading = false;
        state.fence = undefined;
        this.campaigns.delete(state);
        this.log(`etcd store: ${candidate} deposed: ${why}`);
        return deliver(() => events.deposed(why));
      }
      this.log(`etcd store: the campaign of ${candidate} failed before it was elected (${why}); campaigning again in 1 s`);
      state.retry = setTimeout(start, 1000);
    };
    const start = (): void => {
      state.retry = undefined;
      if (state.over || this.closed) return;
      const campaign = this.election.campaign(candidate);
      state.campaign = campaign;
      campaign.on('error', (error: Error) => end(campaign, error.message));
      campaign.on('elected', () => {
        // The fence needs the key's create revision, which the recipe keeps to itself: read it.
        campaign
          .getCampaignKey()
          .then(async (key) => ({ key, kv: (await this.client.get(key).exec()).kvs[0] }))
          .then(
            ({ key, kv }) => {
              if (state.over || state.campaign !== campaign) return;
              if (kv === undefined) return end(campaign, `its campaign key ${key} was gone when it was elected`);
              state.fence = { key, createRevision: kv.create_revision };
              state.leading = true;
              this.log(`etcd store: ${candidate} elected (${key}, created at revision ${kv.create_revision})`);
              deliver(() => events.elected());
            },
            (error: Error) => end(campaign, `cannot read its campaign key: ${error.message}`),
          );
      });
    };
    start();
    return {
      get leading() {
        return state.leading;
      },
      resign: () => {
        if (state.over) return;
        state.over = true;
        state.leading = false;
        state.fence = undefined;
        clearTimeout(state.retry);
        this.campaigns.delete(state);
        const resigning = state.campaign?.resign().catch((error: Error) => this.log(`etcd store: resign of ${candidate}: ${error.message}`));
        const tracked: Promise<void> | undefined = resigning?.finally(() => this.resigning.delete(tracked as Promise<void>));
        if (tracked !== undefined) this.resigning.add(tracked);
      },
    };
  }

  /** Cancels the watches and closes the client, without resigning: the leases expire on their own (as after a crash). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const watcher of this.watchers) watcher.cancel().catch(() => {});
    this.watchers.clear();
    // etcd3 1.1.2's close() ends the channel but not the streams already open on it: a lease
    // would go on heartbeating and a standby's watch on its predecessor would stay open. Stop
    // both through the recipe's private fields (release: no more heartbeats and no revoke, as
    // in a crash), after any resign still in flight (so resign(); close() hands over at once).
    for (const state of this.campaigns) {
      state.over = true;
      state.leading = false;
      clearTimeout(state.retry);
      (state.campaign as unknown as { lease?: Lease } | undefined)?.lease?.release();
    }
    this.campaigns.clear();
    void Promise.allSettled(this.resigning).then(() => {
      const internals = this.election as unknown as { namespace?: { watchManager?: { watchers?: Watcher[] } } };
      for (const watcher of [...(internals.namespace?.watchManager?.watchers ?? [])]) watcher.cancel().catch(() => {});
      this.client.close();
    });
  }

  private decode(kv: IKeyValue): ChainConfig {
    const key = kv.key.toString();
    const config = decodeStoredConfig(kv.value.toString(), key.slice(this.chains.length));
    if (typeof config === 'string') throw new StoreFailure(storeError('store_error', `etcd key ${key}: ${config}`));
    return config;
  }

  /** Runs `work` with a bound of requestTimeoutMs; done runs once, outside the promise chain. */
  private call<T>(what: string, write: boolean, done: Done<T>, work: () => Promise<T>): void {
    if (this.closed) return deliver(() => done(storeError('store_error', `etcd ${what}: the store is closed`), undefined));
    let answered = false;
    const answer = (error: StoreError | undefined, value: T | undefined): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      deliver(() => done(error, value));
    };
    const timer = setTimeout(() => answer(storeError('store_timeout', `etcd ${what}: no answer within ${this.timeoutMs} ms`, write), undefined), this.timeoutMs);
    work().then(
      (value) => answer(undefined, value),
      (error: Error) => answer(this.storeErrorOf(what, write, error), undefined),
    );
  }

  private storeErrorOf(what: string, write: boolean, error: Error): StoreError {
    if (error instanceof StoreFailure) return error.error;
    const message = `etcd ${what}: ${error.message}`;
    if (error instanceof GRPCDeadlineExceededError) return storeError('store_timeout', message, write);
    // BrokenCircuitError: etcd3's circuit breaker, open after consecutive failures to reach the host.
    if (error instanceof GRPCUnavailableError || error.constructor.name === 'BrokenCircuitError' || /ECONNREFUSED|No connection established/.test(error.message))
      return storeError('store_unreachable', message, write);
    if (error instanceof ClientClosedError) return storeError('store_error', message, false);
    return storeError('store_error', message, write);
  }
}
