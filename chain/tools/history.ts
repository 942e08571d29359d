// Pure checks for the chaos runner (chaos.ts): a Jepsen-style history of client operations on
// counter documents, and what the replicas hold at the end (their recovered delta logs and
// states). No I/O here, so the checks can be tested on hand-made histories.
//
// History: one event per line, {process, type, f, key, value, time, ...}:
//   invoke  the client is about to submit (add: value = amount, with clientId and clientSeq)
//   ok      acknowledged (add: value = amount, seq = the seq the head gave it; read: value read)
//   fail    a definite error: the operation was not applied
//   info    outcome unknown (timeout, or the run ended while it was in flight)
// A process runs one operation at a time.
//
// Checks (each violation names its check, document and the evidence):
//   replica-logs   every member's recovered log is identical (seq, redo, outcome, client, clientSeq)
//   exactly-once   each (clientId, clientSeq) appears at most once; every acked add appears, at the
//                  seq it was acked with; every logged entry was invoked; no definite fail is logged
//   value          each doc's final value = sum of the amounts of its logged adds = acked amounts
//                  + amounts of "info" adds that were logged; contributions per client likewise
//   read-bounds    a read returns at least the adds acked before it began and at most the adds
//                  invoked (and not definitely failed) before it ended (a counter's linearizability)

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';

export interface HistoryEvent {
  process: number;
  type: EventType;
  f: string;
  key: string;
  value: number | null;
  /** Nanoseconds since the run started. */
  time: number;
  clientId?: string;
  clientSeq?: number;
  seq?: number;
  error?: string;
  /** An acknowledged add whose handler rejected it (logged, state unchanged). */
  rejected?: string;
}

export interface LoggedEntry {
  readonly seq: number;
  readonly redoJson: string;
  readonly outcomeJson: string;
  readonly clientId: string;
  readonly clientSeq: number;
}

/** One document as a replica holds it at the end. */
export interface FinalDoc {
  readonly doc: string;
  readonly appliedSeq: number;
  readonly snapshotSeq: number;
  readonly logFrom: number;
  readonly log: readonly LoggedEntry[];
  readonly state: unknown;
}

export interface Violation {
  readonly check: string;
  readonly key?: string;
  readonly message: string;
}

export interface Op {
  readonly process: number;
  readonly f: string;
  readonly key: string;
  readonly clientId: string | undefined;
  readonly clientSeq: number | undefined;
  /** add: the amount; read: null. */
  readonly amount: number | null;
  readonly invokeTime: number;
  type: 'ok' | 'fail' | 'info';
  /** Infinity when the op never completed. */
  completeTime: number;
  seq: number | undefined;
  /** read: the value read (ok only). */
  readValue: number | null;
  rejected: string | undefined;
}

/** Violations kept per check; past it only a count is kept. */
export const violationsPerCheckMax = 20;

export class Violations {
  readonly list: Violation[] = [];
  private readonly counts = new Map<string, number>();

  add(check: string, message: string, key?: string): void {
    const n = (this.counts.get(check) ?? 0) + 1;
    this.counts.set(check, n);
    if (n <= violationsPerCheckMax) this.list.push(key === undefined ? { check, message } : { check, key, message });
  }

  /** The kept violations, plus one line per check that had more than were kept. */
  result(): Violation[] {
    const out = [...this.list];
    for (const [check, n] of this.counts) {
      if (n > violationsPerCheckMax) out.push({ check, message: `${n - violationsPerCheckMax} more ${check} violations not shown` });
    }
    return out;
  }

  get size(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c;
    return n;
  }
}

const pairKey = (clientId: string, clientSeq: number): string => `${clientId}#${clientSeq}`;

/** Pairs each invoke with its completion (one op at a time per process). */
export function pairOps(events: readonly HistoryEvent[], v: Violations): Op[] {
  const ops: Op[] = [];
  const open = new Map<number, Op>();
  for (const e of events) {
    if (e.type === 'invoke') {
      if (open.has(e.process)) v.add('history', `process ${e.process} invoked ${e.f} at ${e.time} while another op was in flight`, e.key);
      const op: Op = {
        process: e.process,
        f: e.f,
        key: e.key,
        clientId: e.clientId,
        clientSeq: e.clientSeq,
        amount: e.f === 'add' ? e.value : null,
        invokeTime: e.time,
        type: 'info',
        completeTime: Infinity,
        seq: undefined,
        readValue: null,
        rejected: undefined,
      };
      open.set(e.process, op);
      ops.push(op);
      continue;
    }
    const op = open.get(e.process);
    if (op === undefined || op.f !== e.f || op.key !== e.key) {
      v.add('history', `process ${e.process} completed ${e.f} on ${e.key} (${e.type}) without a matching invoke`, e.key);
      continue;
    }
    open.delete(e.process);
    op.type = e.type;
    op.completeTime = e.time;
    if (e.type === 'ok') {
      op.seq = e.seq;
      op.rejected = e.rejected;
      if (op.f === 'read') op.readValue = e.value;
    }
  }
  // Ops left open count as info (completeTime Infinity).
  return ops;
}

function outcomeOk(entry: LoggedEntry): boolean {
  try {
    return (JSON.parse(entry.outcomeJson) as { ok?: unknown }).ok === true;
  } catch {
    return false;
  }
}

function stateOf(doc: FinalDoc): { value: number; contributions: Record<string, number> } | undefined {
  const s = doc.state as { value?: unknown; contributions?: unknown } | null;
  if (s === null || typeof s !== 'object' || typeof s.value !== 'number' || s.contributions === null || typeof s.contributions !== 'object') return undefined;
  return { value: s.value, contributions: s.contributions as Record<string, number> };
}

/** Every member's documents hold the same log, applied seq and state. */
export function checkReplicaLogs(byNode: ReadonlyMap<string, ReadonlyMap<string, FinalDoc>>, v: Violations): void {
  const nodes = [...byNode.keys()];
  const reference = nodes[0];
  if (reference === undefined) return;
  const docs = new Set<string>();
  for (const m of byNode.values()) for (const d of m.values()) if (d.appliedSeq > 0) docs.add(d.doc);
  const refDocs = byNode.get(reference) as ReadonlyMap<string, FinalDoc>;
  for (const doc of [...docs].sort()) {
    const a = refDocs.get(doc);
    for (const node of nodes.slice(1)) {
      const b = (byNode.get(node) as ReadonlyMap<string, FinalDoc>).get(doc);
      if (a === undefined || b === undefined) {
        v.add('replica-logs', `${a === undefined ? reference : node} has no ${doc} (the other has appliedSeq ${(a ?? b)?.appliedSeq})`, doc);
        continue;
      }
      if (a.appliedSeq !== b.appliedSeq || a.logFrom !== b.logFrom) {
        v.add('replica-logs', `${reference} has appliedSeq ${a.appliedSeq} logFrom ${a.logFrom}, ${node} has appliedSeq ${b.appliedSeq} logFrom ${b.logFrom}`, doc);
      }
      const n = Math.min(a.log.length, b.log.length);
      for (let i = 0; i < n; i++) {
        const x = a.log[i] as LoggedEntry;
        const y = b.log[i] as LoggedEntry;
        const fields = (['seq', 'redoJson', 'outcomeJson', 'clientId', 'clientSeq'] as const).filter((f) => x[f] !== y[f]);
        if (fields.length > 0) {
          v.add(
            'replica-logs',
            `logs diverge at seq ${x.seq} (fields ${fields.join(', ')}): ${reference} has ${x.clientId}#${x.clientSeq} ${x.redoJson}, ${node} has ${y.clientId}#${y.clientSeq} ${y.redoJson}`,
            doc,
          );
          break;
        }
      }
      if (a.log.length !== b.log.length) v.add('replica-logs', `${reference} logs ${a.log.length} entries, ${node} ${b.log.length}`, doc);
      if (JSON.stringify(a.state) !== JSON.stringify(b.state))
        v.add('replica-logs', `final states differ: ${reference} ${JSON.stringify(stateOf(a)?.value)}, ${node} ${JSON.stringify(stateOf(b)?.value)}`, doc);
    }
  }
}

/** Exactly once and no loss, from one replica's logs (the logs agree, or checkReplicaLogs says so). */
export function checkExactlyOnce(ops: readonly Op[], docs: ReadonlyMap<string, FinalDoc>, v: Violations): void {
  const adds = new Map<string, Op>();
  for (const op of ops) {
    if (op.f !== 'add' || op.clientId === undefined || op.clientSeq === undefined) continue;
    const k = pairKey(op.clientId, op.clientSeq);
    if (adds.has(k)) v.add('history', `${k} was invoked twice`, op.key);
    adds.set(k, op);
  }
  const found = new Map<string, { doc: string; seq: number }>();
  for (const doc of docs.values()) {
    if (doc.logFrom !== 1 || doc.snapshotSeq !== 0) {
      v.add('exactly-once', `log was compacted (logFrom ${doc.logFrom}, snapshotSeq ${doc.snapshotSeq}): the check needs full logs`, doc.doc);
    }
    for (const entry of doc.log) {
      if (entry.clientId === '') {
        v.add('exactly-once', `seq ${entry.seq} has no client id`, doc.doc);
        continue;
      }
      const k = pairKey(entry.clientId, entry.clientSeq);
      const before = found.get(k);
      if (before !== undefined) {
        v.add('exactly-once', `${k} is logged twice: ${before.doc}@${before.seq} and ${doc.doc}@${entry.seq}`, doc.doc);
        continue;
      }
      found.set(k, { doc: doc.doc, seq: entry.seq });
      const op = adds.get(k);
      if (op === undefined) {
        v.add('exactly-once', `seq ${entry.seq} is ${k}, which no client invoked`, doc.doc);
        continue;
      }
      if (op.key !== doc.doc) v.add('exactly-once', `${k} was invoked on ${op.key} but is logged on ${doc.doc}@${entry.seq}`, doc.doc);
      if (op.type === 'fail') v.add('exactly-once', `${k} got a definite fail but is logged at seq ${entry.seq}`, doc.doc);
    }
  }
  for (const [k, op] of adds) {
    if (op.type !== 'ok') continue;
    const at = found.get(k);
    if (at === undefined) v.add('exactly-once', `${k} (add ${op.amount}) was acknowledged with seq ${op.seq} but is in no log: lost`, op.key);
    else if (op.seq !== undefined && (at.seq !== op.seq || at.doc !== op.key)) v.add('exactly-once', `${k} was acknowledged with seq ${op.seq} but is logged at ${at.doc}@${at.seq}`, op.key);
  }
}

/** Final values against the logged and acknowledged amounts. */
export function checkValues(ops: readonly Op[], docs: ReadonlyMap<string, FinalDoc>, v: Violations): void {
  const adds = new Map<string, Op>();
  for (const op of ops) if (op.f === 'add' && op.clientId !== undefined && op.clientSeq !== undefined) adds.set(pairKey(op.clientId, op.clientSeq), op);
  const keys = new Set<string>([...docs.keys()]);
  for (const op of ops) if (op.f === 'add') keys.add(op.key);
  for (const key of [...keys].sort()) {
    const doc = docs.get(key);
    const state = doc === undefined ? { value: 0, contributions: {} as Record<string, number> } : stateOf(doc);
    if (state === undefined) {
      v.add('value', `final state is not a counter: ${JSON.stringify(doc?.state)}`, key);
      continue;
    }
    let logged = 0;
    let loggedInfo = 0;
    const perClient = new Map<string, number>();
    const seen = new Set<string>();
    for (const entry of doc?.log ?? []) {
      const k = pairKey(entry.clientId, entry.clientSeq);
      if (seen.has(k)) continue; // reported by exactly-once
      seen.add(k);
      const op = adds.get(k);
      if (op === undefined || op.amount === null || !outcomeOk(entry)) continue;
      logged += op.amount;
      if (op.type === 'info') loggedInfo += op.amount;
      perClient.set(entry.clientId, (perClient.get(entry.clientId) ?? 0) + op.amount);
    }
    let acked = 0;
    for (const op of ops) if (op.f === 'add' && op.key === key && op.type === 'ok' && op.rejected === undefined && op.amount !== null) acked += op.amount;
    if (state.value !== logged) v.add('value', `final value ${state.value} but the logged adds sum to ${logged}`, key);
    if (state.value !== acked + loggedInfo) v.add('value', `final value ${state.value} but acked adds (${acked}) + logged unknown adds (${loggedInfo}) = ${acked + loggedInfo}`, key);
    const names = new Set([...perClient.keys(), ...Object.keys(state.contributions)]);
    for (const client of [...names].sort()) {
      const want = perClient.get(client) ?? 0;
      const have = Object.hasOwn(state.contributions, client) ? state.contributions[client] : 0;
      if (want !== have) v.add('value', `contribution of ${client} is ${have}, its logged adds sum to ${want}`, key);
    }
  }
}

/** First index in sorted `xs` with xs[i] >= x. */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((xs[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A counter read must lie between the adds certainly before it and the adds possibly before it. */
export function checkReads(ops: readonly Op[], v: Violations): void {
  const byKey = new Map<string, Op[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const [key, list] of byKey) {
    // Lower bound: adds acknowledged before the read was invoked.
    const acked = list.filter((o) => o.f === 'add' && o.type === 'ok' && o.rejected === undefined).sort((a, b) => a.completeTime - b.completeTime);
    const ackedTimes = acked.map((o) => o.completeTime);
    const ackedSums = prefixSums(acked);
    // Upper bound: adds invoked before the read completed, minus definite failures.
    const possible = list.filter((o) => o.f === 'add' && o.type !== 'fail').sort((a, b) => a.invokeTime - b.invokeTime);
    const possibleTimes = possible.map((o) => o.invokeTime);
    const possibleSums = prefixSums(possible);
    for (const read of list) {
      if (read.f !== 'read' || read.type !== 'ok' || read.readValue === null) continue;
      const min = ackedSums[lowerBound(ackedTimes, read.invokeTime)] as number;
      const max = possibleSums[lowerBound(possibleTimes, read.completeTime)] as number;
      if (read.readValue < min || read.readValue > max) {
        v.add('read-bounds', `process ${read.process} read ${read.readValue} in [${read.invokeTime}, ${read.completeTime}] ns; it must lie in [${min}, ${max}]`, key);
      }
    }
    // Adds are positive, so a counter never goes down: a read never shows less than a read
    // that completed before it began (a read of state that was not durable, then lost, would).
    const reads = list.filter((o) => o.f === 'read' && o.type === 'ok' && o.readValue !== null).sort((a, b) => a.completeTime - b.completeTime);
    const completed = reads.map((o) => o.completeTime);
    const highest: { value: number; op: Op | undefined }[] = [{ value: -Infinity, op: undefined }];
    for (const r of reads) {
      const last = highest[highest.length - 1] as { value: number; op: Op | undefined };
      highest.push((r.readValue as number) > last.value ? { value: r.readValue as number, op: r } : last);
    }
    for (const read of reads) {
      const before = highest[lowerBound(completed, read.invokeTime)] as { value: number; op: Op | undefined };
      if (before.op !== undefined && (read.readValue as number) < before.value) {
        v.add(
          'read-regressed',
          `process ${read.process} read ${read.readValue} at [${read.invokeTime}, ${read.completeTime}] ns, after process ${before.op.process} read ${before.value} (completed at ${before.op.completeTime} ns)`,
          key,
        );
      }
    }
  }
}

function prefixSums(ops: readonly Op[]): number[] {
  const sums = [0];
  for (const op of ops) sums.push((sums[sums.length - 1] as number) + (op.amount ?? 0));
  return sums;
}

export interface Tally {
  ok: number;
  fail: number;
  info: number;
}

export function tally(ops: readonly Op[], f?: string): Tally {
  const t: Tally = { ok: 0, fail: 0, info: 0 };
  for (const op of ops) if (f === undefined || op.f === f) t[op.type]++;
  return t;
}
