// Group commit for one replica: every change is a put or delete into the open batch; the
// runtime takes the batch, writes it atomically with sync, and reports it durable. Batches
// complete in id order, so "durable up to batch n" is one number, and an action that must wait
// for durability waits for one batch id (FIFO: actions run in the order they were deferred).

import { assert } from '../../engine/assert.ts';
import type { Writes } from './dedupe.ts';
import type { Bugs } from './planted.ts';
import type { Batch, Op } from './store.ts';

export class GroupCommit implements Writes {
  private ops: Op[] = [];
  private openBatchId = 1;
  private durableBatchId = 0;
  private releases: { readonly batch: number; readonly run: () => void }[] = [];
  private releaseHead = 0;

  constructor(
    /** Bound on deferred actions (the replica refuses work with busy before reaching it). */
    readonly releasesMax: number,
    private readonly bugs: Bugs,
  ) {}

  put(key: string, value: string): void {
    this.ops.push({ type: 'put', key, value });
  }

  del(key: string): void {
    this.ops.push({ type: 'del', key });
  }

  /** The batch that holds every write made so far. */
  get written(): number {
    return this.ops.length > 0 ? this.openBatchId : this.openBatchId - 1;
  }

  /** The batch new writes go to. */
  get open(): number {
    return this.openBatchId;
  }

  get durable(): number {
    return this.durableBatchId;
  }

  get pending(): number {
    return this.releases.length - this.releaseHead;
  }

  /** Room for `n` more deferred actions. */
  hasRoom(n = 1): boolean {
    return this.pending + n <= this.releasesMax;
  }

  /** The next batch to write (everything since the last one), or undefined when idle. */
  take(): Batch | undefined {
    if (this.ops.length === 0) return undefined;
    const batch: Batch = { id: this.openBatchId, ops: this.ops };
    this.ops = [];
    this.openBatchId++;
    return batch;
  }

  /** Batch `id` (and every earlier one) is on disk: runs what waited for it. */
  completed(id: number): void {
    assert(id === this.durableBatchId + 1, () => `GroupCommit: batch ${id} completed out of order (last ${this.durableBatchId})`);
    assert(id < this.openBatchId, () => `GroupCommit: batch ${id} was never taken`);
    this.durableBatchId = id;
    while (this.releaseHead < this.releases.length) {
      const next = this.releases[this.releaseHead] as { batch: number; run: () => void };
      if (next.batch > this.durableBatchId) break;
      this.releaseHead++;
      next.run();
    }
    if (this.releaseHead > 1024 && this.releaseHead * 2 > this.releases.length) {
      this.releases = this.releases.slice(this.releaseHead);
      this.releaseHead = 0;
    }
  }

  /** Runs `run` once batch `batch` is durable, after every action deferred before it. */
  after(batch: number, run: () => void): void {
    if (this.bugs.has('early-back') || (this.pending === 0 && batch <= this.durableBatchId)) {
      run();
      return;
    }
    // Callers check hasRoom() before accepting the work that defers actions; reaching the bound is a bug here.
    assert(this.pending < this.releasesMax, () => `GroupCommit: releasesMax (${this.releasesMax}) reached`);
    this.releases.push({ batch, run });
  }
}
