// Assertions in the style of TigerBeetle's TIGER_STYLE: a failed assertion is a programmer
// error (a broken invariant), never a way to reject bad input. Bad input gets a typed error.
//
// Cheap assertions are always on. Checks that cost O(state) run only when ADAMA_DEBUG=1
// (set for every test run in package.json), through `debugAssert`.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === 'function' ? message() : message);
  }
}

/** True when expensive invariant checks should run (tests and simulations). */
export const debugChecks: boolean = typeof process !== 'undefined' && typeof process.env === 'object' && process.env.ADAMA_DEBUG === '1';

/** An assertion whose check is too expensive for the hot path; evaluated only in debug runs. */
export function debugAssert(check: () => boolean, message: string | (() => string)): void {
  if (debugChecks) assert(check(), message);
}

export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`);
}
