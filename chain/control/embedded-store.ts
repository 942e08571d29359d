// The embedded configuration store: the default for one machine (`npm start`, `chain
// cluster` without --config-store). It lives in the one manager process: a JSON file written
// to a temporary name, fsynced, renamed over the old one and the directory fsynced, all before
// the write is answered, so a configuration is durable before any node hears of it and a
// restarted manager (SIGKILL included) continues from the epoch it last wrote, never below.
//
// A lock file next to it (the owner's pid) keeps a second manager process away from the same
// file; a lock whose process is gone is taken over. What it cannot survive: the loss of this
// machine's disk, and two managers on different machines (each would have its own file):
// that needs a consensus service, the etcd store.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { ChainConfig } from '../core/config.ts';
import { type ConfigStore, type Done, decodeStoredConfig, encodeStoredConfig, type Leadership, type LeadershipEvents, sameConfig, storeError, type SwapResult } from './config-store.ts';

/** Bound on the file (every chain's configuration): far above what chainsMax chains need. */
export const storeFileBytesMax = 16 * 1024 * 1024;

export class EmbeddedStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedStoreError';
  }
}

/** Whether process `pid` exists (EPERM: it does, owned by another user). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class EmbeddedConfigStore implements ConfigStore {
  readonly kind = 'embedded';
  private readonly configs = new Map<string, ChainConfig>();
  private readonly watchers = new Set<(config: ChainConfig) => void>();
  private leadership: { leading: boolean } | undefined;
  private closed = false;

  private constructor(
    readonly file: string,
    private readonly lockFile: string,
  ) {}

  /** Opens (or creates) the store at `file`; throws EmbeddedStoreError when another live manager holds it or the file is damaged. */
  static open(file: string): EmbeddedConfigStore {
    mkdirSync(path.dirname(file), { recursive: true });
    const lockFile = `${file}.lock`;
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(lockFile, 'wx');
        writeSync(fd, String(process.pid));
        fsyncSync(fd);
        closeSync(fd);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw new EmbeddedStoreError(`cannot lock ${lockFile}: ${(error as Error).message}`);
        const owner = Number(readFileSync(lockFile, 'utf8'));
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
          throw new EmbeddedStoreError(`another manager (pid ${owner}) holds the configuration store ${file}; stop it first, or use --config-store etcd://... to run several managers`);
        }
        unlinkSync(lockFile); // its owner is gone (a SIGKILL): take the store over
      }
    }
    const store = new EmbeddedConfigStore(file, lockFile);
    try {
      store.load();
    } catch (error) {
      store.close();
      throw error;
    }
    return store;
  }

  private load(): void {
    if (!existsSync(this.file)) return;
    const text = readFileSync(this.file, 'utf8');
    if (text.length > storeFileBytesMax) throw new EmbeddedStoreError(`${this.file} is larger than ${storeFileBytesMax} bytes (storeFileBytesMax)`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new EmbeddedStoreError(`${this.file} is not JSON (${(error as Error).message}); restore it from a backup, or move it away to start the chains again from what the nodes hold`);
    }
    const chains = (value as { version?: unknown; chains?: unknown }).chains;
    if ((value as { version?: unknown }).version !== 1 || !Array.isArray(chains)) throw new EmbeddedStoreError(`${this.file} is not a version 1 configuration store`);
    for (const c of chains) {
      const config = decodeStoredConfig(JSON.stringify(c));
      if (typeof config === 'string') throw new EmbeddedStoreError(`${this.file}: ${config}`);
      this.configs.set(config.chain, config);
    }
  }

  /** Durable before it returns: temporary file, fsync, rename, fsync of the directory. */
  private persist(configs: ReadonlyMap<string, ChainConfig>): void {
    const text = `{"version":1,"chains":[\n${[...configs.values()].map(encodeStoredConfig).join(',\n')}\n]}\n`;
    if (text.length > storeFileBytesMax) throw new EmbeddedStoreError(`the configuration store would exceed ${storeFileBytesMax} bytes (storeFileBytesMax)`);
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeFileSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
    const dir = openSync(path.dirname(this.file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  private answer<T>(done: Done<T>, error: ReturnType<typeof storeError> | undefined, value: T | undefined): void {
    queueMicrotask(() => done(error, value));
  }

  list(done: Done<ChainConfig[]>): void {
    if (this.closed) return this.answer(done, storeError('store_error', 'the embedded store is closed'), undefined);
    this.answer(done, undefined, [...this.configs.values()]);
  }

  get(chain: string, done: Done<ChainConfig | undefined>): void {
    if (this.closed) return this.answer(done, storeError('store_error', 'the embedded store is closed'), undefined);
    this.answer(done, undefined, this.configs.get(chain));
  }

  swap(expected: ChainConfig | undefined, next: ChainConfig, done: Done<SwapResult>): void {
    if (this.closed) return this.answer(done, storeError('store_error', 'the embedded store is closed'), undefined);
    if (expected !== undefined && (expected.chain !== next.chain || next.epoch <= expected.epoch)) {
      return this.answer(done, storeError('store_error', `a swap must move chain ${next.chain} to a higher epoch (${expected.epoch} -> ${next.epoch})`), undefined);
    }
    const current = this.configs.get(next.chain);
    if (!sameConfig(current, expected) || this.leadership?.leading === false) return this.answer(done, undefined, { swapped: false, current });
    this.write(next, done, (stored) => ({ swapped: true, current: stored }));
  }

  put(next: ChainConfig, done: Done<ChainConfig>): void {
    if (this.closed) return this.answer(done, storeError('store_error', 'the embedded store is closed'), undefined);
    this.write(next, done, (stored) => stored);
  }

  private write<T>(next: ChainConfig, done: Done<T>, result: (stored: ChainConfig) => T): void {
    const configs = new Map(this.configs);
    configs.set(next.chain, next);
    try {
      this.persist(configs);
    } catch (error) {
      return this.answer(done, storeError('store_error', `writing ${this.file} failed: ${(error as Error).message}`, true), undefined);
    }
    this.configs.set(next.chain, next);
    for (const w of this.watchers) queueMicrotask(() => w(next));
    this.answer(done, undefined, result(next));
  }

  watch(onChange: (config: ChainConfig) => void): { cancel(): void } {
    this.watchers.add(onChange);
    return { cancel: () => this.watchers.delete(onChange) };
  }

  /** One manager process holds the file (the lock), so its candidate leads at once. */
  campaign(_candidate: string, events: LeadershipEvents): Leadership {
    const state = { leading: true };
    this.leadership = state;
    queueMicrotask(() => {
      if (state.leading && !this.closed) events.elected();
    });
    return {
      get leading() {
        return state.leading;
      },
      resign: () => {
        state.leading = false;
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    try {
      if (existsSync(this.lockFile) && Number(readFileSync(this.lockFile, 'utf8')) === process.pid) unlinkSync(this.lockFile);
    } catch {
      // a lock we cannot remove is taken over by the next manager (its pid is gone)
    }
  }
}
