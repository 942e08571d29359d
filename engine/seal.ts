// Traps for the ambient sources of nondeterminism. While document code runs (handlers,
// privacy policies, computed values) Math.random, Date.now, argument-less `new Date()`,
// performance.now and crypto's random sources record the call and throw. The caller checks
// `names` afterwards, so catching the exception does not help.
//
// These traps catch accidents in trusted document code, not an adversary: JavaScript offers
// other clocks (Intl formatting of the current time, for one) that are not trapped.
//
// Cost: the function sources are wrapped once, when this module loads, by wrappers that
// check a depth counter (outside a seal they just call through). Only the Date constructor is
// swapped per seal. JavaScript is single-threaded, so nothing else observes a seal.

import { assert } from './assert.ts';

export interface Seal {
  /** The sources document code reached for during this seal. */
  readonly names: readonly string[];
  restore(): void;
}

let depth = 0;
let violations: string[] = [];

function violate(name: string): never {
  if (!violations.includes(name)) violations.push(name);
  throw new Error(`${name} is not available to document code; use ctx.random() and ctx.now`);
}

function guard<F extends (...args: never[]) => unknown>(name: string, real: F, self: unknown): F {
  return function guarded(...args: never[]) {
    if (depth > 0) violate(name);
    return real.apply(self, args);
  } as F;
}

function wrap(target: object | undefined, key: string, name: string): void {
  if (target === undefined) return;
  const real = (target as Record<string, unknown>)[key];
  if (typeof real !== 'function') return;
  // Not writable: a handler that assigns `Math.random = ...` fails instead of disarming the trap.
  Object.defineProperty(target, key, {
    value: guard(name, real as (...args: never[]) => unknown, target),
    configurable: true,
    writable: false,
    enumerable: false,
  });
}

wrap(Math, 'random', 'Math.random');
wrap(Date, 'now', 'Date.now');
wrap(globalThis.performance, 'now', 'performance.now');
wrap(globalThis.crypto, 'getRandomValues', 'crypto.getRandomValues');
wrap(globalThis.crypto, 'randomUUID', 'crypto.randomUUID');
if (typeof process !== 'undefined') {
  // bigint first, on the real function, then carry it over to the wrapper of hrtime itself.
  wrap(process.hrtime, 'bigint', 'process.hrtime.bigint');
  const bigint = process.hrtime.bigint;
  wrap(process, 'hrtime', 'process.hrtime');
  Object.defineProperty(process.hrtime, 'bigint', { value: bigint, configurable: true, writable: false, enumerable: false });
}

const RealDate = Date;
function SealedDate(this: unknown, ...args: unknown[]): unknown {
  if (new.target === undefined || args.length === 0) violate('new Date()');
  return Reflect.construct(RealDate, args, new.target);
}
SealedDate.prototype = RealDate.prototype;
SealedDate.now = RealDate.now;
SealedDate.parse = RealDate.parse;
SealedDate.UTC = RealDate.UTC;

const g = globalThis as unknown as { Date: unknown };

export function sealGlobals(): Seal {
  const outer = depth === 0;
  if (outer) {
    violations = [];
    g.Date = SealedDate;
    // `new Date(0).constructor` must not lead back to the real constructor either.
    RealDate.prototype.constructor = SealedDate as unknown as DateConstructor;
  }
  depth++;
  const mine = violations;
  return {
    names: mine,
    restore() {
      assert(depth > 0, 'sealGlobals: restore without a seal');
      depth--;
      if (depth === 0) {
        g.Date = RealDate;
        RealDate.prototype.constructor = RealDate;
      }
      assert(depth > 0 || g.Date === RealDate, 'sealGlobals: Date not restored');
    },
  };
}
