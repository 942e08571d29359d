// Virtual time: one queue of tasks ordered by (time, insertion order). One task runs at a
// time, so a run is a pure function of its seed.

/** A task; one that returns false did nothing (a cancelled timer) and is not counted as an event. */
export type Task = () => unknown;

/** A binary heap of tasks ordered by (time, insertion order). */
export class EventQueue {
  private times: number[] = [];
  private orders: number[] = [];
  private tasks: Task[] = [];
  private counter = 0;

  get size(): number {
    return this.tasks.length;
  }

  push(time: number, task: Task): void {
    let i = this.tasks.length;
    const order = this.counter++;
    this.times.push(time);
    this.orders.push(order);
    this.tasks.push(task);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  peekTime(): number {
    return this.times[0] as number;
  }

  pop(): Task {
    const top = this.tasks[0] as Task;
    const last = this.tasks.length - 1;
    this.swap(0, last);
    this.times.pop();
    this.orders.pop();
    this.tasks.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.tasks.length && this.less(l, m)) m = l;
      if (r < this.tasks.length && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const ta = this.times[a] as number;
    const tb = this.times[b] as number;
    return ta < tb || (ta === tb && (this.orders[a] as number) < (this.orders[b] as number));
  }

  private swap(a: number, b: number): void {
    [this.times[a], this.times[b]] = [this.times[b] as number, this.times[a] as number];
    [this.orders[a], this.orders[b]] = [this.orders[b] as number, this.orders[a] as number];
    [this.tasks[a], this.tasks[b]] = [this.tasks[b] as Task, this.tasks[a] as Task];
  }
}

/** A violation found while the world ran; the run stops at the first one. */
export class ViolationError extends Error {
  constructor(
    readonly invariant: string,
    readonly detail: string,
  ) {
    super(`${invariant}: ${detail}`);
  }
}
