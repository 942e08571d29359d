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

/**
 * An error that answers a caller (a refusal, a typed failure from a peer) rather than report a
 * bug in this process. It captures no stack: the stack would show only the path that produced
 * the answer, and capturing it costs more than the rest of the error (the simulator spent 3%
 * of its time there).
 */
export class AnswerError extends Error {
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}
