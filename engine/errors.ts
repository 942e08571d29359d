// Typed errors for bounds. Exceeding a bound is never a silent drop: the caller gets one of
// these, naming the bound and its value, and decides what to tell its own caller.

export class LimitError extends Error {
  override name = 'LimitError';
  constructor(
    /** The bound's name, unit last, e.g. `queueDepthMax`. */
    readonly limit: string,
    readonly max: number,
    what: string,
  ) {
    super(`${what}: ${limit} (${max}) reached`);
  }
}
