// A node's simulated disk: what is durable, and the write in flight. A process crash keeps the
// write in flight (the OS has it); a power loss loses it. It outlives the node's processes: a
// restart recovers from what is durable, with the product's recovery code (core/store.ts).

import { Recovery, keys, type Op, type RecoveredChain } from '../chain/core/store.ts';
import type { Disk } from '../chain/runtime/io.ts';
import type { SimProcess } from './processes.ts';
import type { World } from './world.ts';

export class SimDisk {
  /** What survives anything. */
  readonly durable = new Map<string, string>();
  private inFlight: { readonly ops: readonly Op[]; readonly incarnation: number } | undefined;
  /** Runs once, when the next write starts (crashes aimed at a write in flight). */
  private watchers: (() => void)[] = [];
  writes = 0;

  constructor(
    private readonly world: World,
    private readonly proc: SimProcess,
  ) {}

  /** The product's Disk, for the current incarnation of the process. */
  forIncarnation(): Disk {
    const incarnation = this.proc.incarnation;
    return {
      write: (ops, done) => {
        if (this.inFlight !== undefined && this.inFlight.incarnation === incarnation) throw new Error(`${this.proc.name}: two writes in flight`);
        const write = { ops, incarnation };
        this.inFlight = write;
        this.writes++;
        for (const run of this.watchers.splice(0)) run();
        const { min, max } = this.world.settings.diskMs;
        this.world.after(this.world.rng.range(min, max) * this.world.net.slowness(this.proc.name), () => {
          if (this.inFlight !== write) return; // crashed meanwhile
          this.inFlight = undefined;
          this.apply(ops);
          // The disk finished; the process hears of it when it runs.
          this.proc.run(incarnation, () => done(undefined));
        });
      },
    };
  }

  /** The ops handed to the disk and not yet durable. */
  get inFlightOps(): readonly Op[] {
    return this.inFlight?.ops ?? [];
  }

  get writing(): boolean {
    return this.inFlight !== undefined;
  }

  onNextWrite(run: () => void): void {
    this.watchers.push(run);
  }

  /** The process died: with power, the write in flight still reaches the disk. */
  crash(powerLoss: boolean): void {
    const write = this.inFlight;
    this.inFlight = undefined;
    if (write !== undefined && !powerLoss) this.apply(write.ops);
  }

  private apply(ops: readonly Op[]): void {
    for (const op of ops) {
      if (op.type === 'put') this.durable.set(op.key, op.value);
      else this.durable.delete(op.key);
    }
  }

  recover(): Map<string, RecoveredChain> {
    const recovery = new Recovery();
    for (const key of [...this.durable.keys()].sort()) recovery.add(key, this.durable.get(key) as string);
    return recovery.finish();
  }

  /** The highest seq of `doc` durable here: applied, or queued without a gap after it (from meta's lower bound on, each seq's one key). */
  durableSeq(chain: string, doc: string): number {
    const meta = this.durable.get(keys.meta(chain, doc));
    if (meta === undefined) return 0;
    let seq = (JSON.parse(meta) as { appliedSeq: number }).appliedSeq;
    while (this.durable.has(keys.log(chain, doc, seq + 1))) seq++;
    return seq;
  }
}
