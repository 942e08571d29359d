// An operator's reconfiguration through the configuration store (`chain reconfigure
// --config-store ...`; the simulator runs it beside the managers): read the chain's
// configuration from the store, decide (remove a node, or add one at the tail), write it with
// compare-and-swap on the epoch read, and only then push it to its members and to the node
// it removed. If a manager or another operator changed the chain in between, the swap fails
// and nothing is pushed: the operator reads again and decides again.

import type { ChainConfig } from '../core/config.ts';
import type { Clock, Net } from '../runtime/io.ts';
import type { ConfigStore } from './config-store.ts';
import { addTail, catchingUp, removeNode, type NodeAddress } from './decisions.ts';
import { ManagerLoop } from './manager-loop.ts';

export interface OperatorRequest {
  readonly chain: string;
  readonly remove?: string;
  readonly add?: NodeAddress;
}

export interface OperatorResult {
  readonly config: ChainConfig;
  readonly acked: string[];
  readonly missing: string[];
}

export interface OperatorOptions {
  readonly cluster: string;
  readonly name?: string;
  readonly requestTimeoutMs?: number;
  /** How long to push before giving up on members that do not acknowledge. */
  readonly pushTimeoutMs?: number;
  /** Members that reported caughtUpEpoch (unknown ones count as still catching up: the safe side). */
  readonly caughtUp?: ReadonlyMap<string, number>;
  readonly log?: (line: string) => void;
}

/** One reconfiguration; `done` runs once, with an error that says what to do, or what was written and who acknowledged it. */
export function reconfigureThroughStore(
  io: { readonly net: Net; readonly clock: Clock; readonly store: ConfigStore },
  request: OperatorRequest,
  options: OperatorOptions,
  done: (error: Error | undefined, result: OperatorResult | undefined) => void,
): void {
  io.store.get(request.chain, (error, current) => {
    if (error !== undefined) return done(new Error(`cannot read chain ${request.chain} from the configuration store: ${error.message}; retry`), undefined);
    if (current === undefined) return done(new Error(`the configuration store holds no chain ${request.chain}`), undefined);
    let next: ChainConfig;
    try {
      const joining = catchingUp(current, options.caughtUp ?? new Map());
      if (request.remove !== undefined) next = removeNode(current, request.remove, joining);
      else if (request.add !== undefined) next = addTail(current, request.add, joining);
      else return done(new Error('give a node to remove or one to add'), undefined);
    } catch (refused) {
      return done(refused as Error, undefined);
    }
    io.store.swap(current, next, (swapError, result) => {
      if (swapError !== undefined || result === undefined) {
        const unknown = swapError?.unknownOutcome === true ? ' (it may have been written: check with status before retrying)' : '; retry';
        return done(new Error(`writing epoch ${next.epoch} of ${request.chain} failed: ${swapError?.message}${unknown}`), undefined);
      }
      if (!result.swapped) {
        return done(
          new Error(`chain ${request.chain} changed meanwhile (the store holds epoch ${result.current?.epoch ?? 'none'}, not ${current.epoch}); nothing was pushed: run it again`),
          undefined,
        );
      }
      const removed = ManagerLoop.removed(current, next).map((m) => ({ node: m.node, address: m.address }));
      const nodes = [...next.members.map((m) => ({ node: m.node, address: m.address })), ...removed];
      const pusher = new ManagerLoop({ net: io.net, clock: io.clock }, [], {
        name: options.name ?? 'operator',
        k: next.members.length,
        nodes,
        membership: 'external',
        cluster: options.cluster,
        secret: '',
        address: '',
        random: Math.random,
        requestTimeoutMs: options.requestTimeoutMs ?? 1_000,
        log: options.log,
      });
      pusher.start();
      pusher.install(next, 'written by an operator', removed);
      const deadline = io.clock.now() + (options.pushTimeoutMs ?? 10_000);
      const wait = (): void => {
        if (!pusher.acked(next.chain) && io.clock.now() < deadline) {
          io.clock.after(10, wait);
          return;
        }
        const missing = pusher.unacked(next.chain);
        pusher.stop();
        done(undefined, { config: next, acked: nodes.map((n) => n.node).filter((n) => !missing.includes(n)), missing });
      };
      wait();
    });
  });
}
