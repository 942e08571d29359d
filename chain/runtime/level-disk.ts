// Disk over LevelDB (classic-level via `level`): one atomic chained batch per write, synced
// unless the node runs without sync (the benchmark's no-sync mode); recovery reads every key
// of the layout in order (core/store.ts).

import { Level } from 'level';
import { keyRange, Recovery, type Op, type RecoveredChain } from '../core/store.ts';
import type { Disk } from './io.ts';

type Db = Level<string, string>;

export class LevelDisk implements Disk {
  private constructor(
    private readonly db: Db,
    private readonly sync: boolean,
  ) {}

  /** Opens (creating if missing) the store in `dir` and reads it back. */
  static async open(dir: string, options: { sync: boolean }): Promise<{ disk: LevelDisk; recovered: Map<string, RecoveredChain> }> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
    await db.open();
    try {
      return { disk: new LevelDisk(db, options.sync), recovered: await recoverLevel(db) };
    } catch (error) {
      await db.close();
      throw error;
    }
  }

  write(ops: readonly Op[], done: (error: Error | undefined) => void): void {
    if (ops.length === 0) {
      done(undefined);
      return;
    }
    // A chained batch: cheaper per op than the array form, which clones every operation.
    const chained = this.db.batch();
    for (const op of ops) {
      if (op.type === 'put') chained.put(op.key, op.value);
      else chained.del(op.key);
    }
    chained.write({ sync: this.sync } as never).then(
      () => done(undefined),
      (error: Error) => done(error),
    );
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** Every chain's contents in an open LevelDB store. */
export async function recoverLevel(db: Db): Promise<Map<string, RecoveredChain>> {
  const recovery = new Recovery();
  for await (const [key, value] of db.iterator(keyRange)) recovery.add(key, value);
  return recovery.finish();
}

/** Opens a node's store read-only in spirit (tools, after the node stopped), reads it back and closes it. */
export async function readStore(dir: string): Promise<Map<string, RecoveredChain>> {
  const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
  await db.open();
  try {
    return await recoverLevel(db);
  } finally {
    await db.close();
  }
}
