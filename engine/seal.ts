// Traps for the ambient sources of nondeterminism. While document code runs (handlers,
// privacy policies, computed values), Math.random, Date.now, argument-less `new Date()`,
// performance.now and crypto's random sources are replaced by functions that record the call
// and throw. The caller checks `names` afterwards, so catching the exception does not help.
// Sealing is a handful of property writes; JavaScript is single-threaded, so nothing else
// observes the traps.

import { assert } from './assert.ts';

export interface Seal {
  readonly names: string[];
  restore(): void;
}

export function sealGlobals(): Seal {
  const names: string[] = [];
  const trap = (name: string) =>
    function trapped(): never {
      if (!names.includes(name)) names.push(name);
      throw new Error(`${name} is not available to document code; use ctx.random() and ctx.now`);
    };
  const g = globalThis as unknown as Record<string, unknown>;
  const RealDate = g.Date as DateConstructor;
  const realRandom = Math.random;
  const trapDate = trap('new Date()');
  function SealedDate(this: unknown, ...args: unknown[]): unknown {
    if (new.target === undefined || args.length === 0) trapDate();
    return Reflect.construct(RealDate, args, new.target);
  }
  SealedDate.prototype = RealDate.prototype;
  SealedDate.now = trap('Date.now');
  SealedDate.parse = RealDate.parse;
  SealedDate.UTC = RealDate.UTC;

  Math.random = trap('Math.random');
  g.Date = SealedDate;
  const unshadow = [
    shadow(globalThis.performance, 'now', trap('performance.now')),
    shadow(globalThis.crypto, 'getRandomValues', trap('crypto.getRandomValues')),
    shadow(globalThis.crypto, 'randomUUID', trap('crypto.randomUUID')),
  ];
  return {
    names,
    restore() {
      Math.random = realRandom;
      g.Date = RealDate;
      for (const undo of unshadow) undo();
      assert(Math.random === realRandom && globalThis.Date === RealDate, 'sealGlobals: restore failed');
    },
  };
}

/** Shadows target[key] with an own property; returns the function that puts it back. */
function shadow(target: object | undefined, key: string, value: unknown): () => void {
  if (target === undefined) return () => undefined;
  const own = Object.getOwnPropertyDescriptor(target, key);
  const before = (target as Record<string, unknown>)[key];
  Object.defineProperty(target, key, { value, configurable: true, writable: true, enumerable: false });
  return () => {
    if (own === undefined) delete (target as Record<string, unknown>)[key];
    else Object.defineProperty(target, key, own);
    assert((target as Record<string, unknown>)[key] === before, () => `sealGlobals: ${key} not restored`);
  };
}
