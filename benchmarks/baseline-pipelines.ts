// How a baseline host turns submits into log rows: the engine runs in memory, each document's
// messages in arrival order, and a message is acknowledged once its row is in the database.
//
//   perMessage  the seed's "Durable" host: one transaction per message, a document's messages
//               one after another. On a duplicate key (another host took the seq) it reloads the
//               document and retries, as Adama did. With no store it is the in-memory host.
//   batching    every message that arrives while a batch commits is executed at once (against
//               the state after its document's previous message) and queued; the queue goes to
//               the database as one transaction (a multi-row INSERT) when the batch in flight
//               ends. One batch in flight. A failed batch fails each of its messages (retryable),
//               and so every queued message of the documents it touched (they were executed on
//               top of it); those documents are reloaded from the database so memory matches disk.
//
// Both are bounded and answer busy (retryable) beyond their bounds.

import type { Submit } from '../chain/runtime/wire.ts';
import type { DocumentType } from '../engine/document.ts';
import { execute } from '../engine/execute.ts';
import type { JsonObject } from '../engine/json.ts';
import { apply } from '../engine/patch.ts';
import type { LogRow, LogStore } from './log-store.ts';

const entropy = 'baseline';

export type Answer = (result: { ok: true; seq: number; outcomeJson: string } | { ok: false; code: 'busy' | 'storage_error'; message: string; retryable: true }) => void;

export interface Pipeline {
  submit(type: DocumentType, s: Submit, answer: Answer): void;
}

interface Doc {
  readonly type: DocumentType;
  state: JsonObject;
  seq: number;
}

const busy = (message: string) => ({ ok: false, code: 'busy', message, retryable: true }) as const;
const storageError = (error: unknown) => ({ ok: false, code: 'storage_error', message: (error as Error).message, retryable: true }) as const;

/**
 * The documents in memory, each loaded once by replaying its rows. `use` calls back in arrival
 * order per document: while a document loads, its messages wait on the one load.
 */
class Documents {
  private readonly docs = new Map<string, Doc>();
  private readonly loading = new Map<string, Promise<Doc>>();

  constructor(
    private readonly store: LogStore | undefined,
    private readonly documentsMax: number,
  ) {}

  use(id: string, type: DocumentType, then: (doc: Doc) => void, failed: (result: ReturnType<typeof busy> | ReturnType<typeof storageError>) => void): void {
    const doc = this.docs.get(id);
    if (doc !== undefined) return then(doc);
    let load = this.loading.get(id);
    if (load === undefined) {
      if (this.docs.size + this.loading.size >= this.documentsMax) return failed(busy(`documentsMax (${this.documentsMax}) reached`));
      load = this.reload(id, type);
    }
    load.then(then, (error: unknown) => failed(storageError(error)));
  }

  /** Forgets `id` and reads it again from the database; its next messages wait for this read. */
  reload(id: string, type: DocumentType): Promise<Doc> {
    this.docs.delete(id);
    const load = this.read(id, type).then(
      (doc) => {
        this.loading.delete(id);
        this.docs.set(id, doc);
        return doc;
      },
      (error: unknown) => {
        this.loading.delete(id);
        throw error;
      },
    );
    this.loading.set(id, load);
    load.catch(() => {}); // a failed read is answered to the messages waiting on it
    return load;
  }

  async read(id: string, type: DocumentType): Promise<Doc> {
    let state = type.initial;
    let seq = 0;
    for (const row of (await this.store?.redos(id)) ?? []) {
      state = apply(JSON.parse(row.redoJson), state) as JsonObject;
      seq = row.seq;
    }
    return { type, state, seq };
  }
}

/** Runs `s` against `doc` (not changing it): the next state and the row to append. */
function run(doc: Doc, id: string, s: Submit): { state: JsonObject; row: LogRow; outcomeJson: string } {
  const envelope = { doc: id, seq: doc.seq + 1, timestamp: Date.now(), viewer: s.viewer, channel: s.channel, payload: JSON.parse(s.payloadJson) as unknown };
  const execution = execute(doc.type, doc.state, envelope, entropy);
  return {
    state: execution.state,
    outcomeJson: JSON.stringify(execution.outcome),
    row: {
      doc: id,
      seq: envelope.seq,
      requestJson: JSON.stringify({ ...envelope, clientId: s.clientId, clientSeq: s.clientSeq }),
      redoJson: JSON.stringify(execution.redo),
      undoJson: JSON.stringify(execution.undo),
    },
  };
}

export interface PerMessageOptions {
  readonly documentsMax: number;
  /** Bound on retries after duplicate keys for one message. */
  readonly duplicateRetriesMax: number;
}

/** One transaction per message (or none, without a store). */
export function perMessage(store: LogStore | undefined, o: PerMessageOptions): Pipeline {
  const documents = new Documents(store, o.documentsMax);
  const tails = new Map<Doc, Promise<void>>();
  async function commit(doc: Doc, id: string, s: Submit): Promise<{ seq: number; outcomeJson: string }> {
    for (let attempt = 0; ; attempt++) {
      const r = run(doc, id, s);
      try {
        await store?.append([r.row]);
      } catch (error) {
        if (!store?.isDuplicateKey(error) || attempt >= o.duplicateRetriesMax) throw error;
        const fresh = await documents.read(id, doc.type); // another host wrote this seq: reload and retry
        doc.state = fresh.state;
        doc.seq = fresh.seq;
        continue;
      }
      doc.state = r.state;
      doc.seq = r.row.seq;
      return { seq: r.row.seq, outcomeJson: r.outcomeJson };
    }
  }
  return {
    submit(type, s, answer) {
      documents.use(
        s.doc,
        type,
        (doc) => {
          const committed = (tails.get(doc) ?? Promise.resolve()).then(() => commit(doc, s.doc, s));
          tails.set(
            doc,
            committed.then(
              () => undefined,
              () => undefined,
            ),
          );
          committed.then(
            (r) => answer({ ok: true, ...r }),
            (error: unknown) => answer(storageError(error)),
          );
        },
        answer,
      );
    },
  };
}

export interface BatchingOptions {
  readonly documentsMax: number;
  /** Bound on rows in one transaction. */
  readonly batchRowsMax: number;
  /** Bound on the bytes of one transaction's rows (at least one row goes, whatever its size). */
  readonly batchBytesMax: number;
  /** Bound on messages accepted and not yet answered (loading, queued and in flight). */
  readonly pendingMessagesMax: number;
}

interface Entry {
  readonly doc: Doc;
  readonly row: LogRow;
  readonly bytes: number;
  readonly outcomeJson: string;
  readonly answer: Answer;
}

/** Group commit: the messages of a tick in one transaction, one batch in flight. */
export function batching(store: LogStore, o: BatchingOptions): Pipeline & { readonly batches: number } {
  const documents = new Documents(store, o.documentsMax);
  let queue: Entry[] = [];
  let inflight = 0;
  let loading = 0;
  let committing = false;
  let scheduled = false;
  let batches = 0;

  const schedule = (): void => {
    if (scheduled || committing || queue.length === 0) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  };

  async function flush(): Promise<void> {
    if (committing || queue.length === 0) return;
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < o.batchRowsMax && (n === 0 || bytes + (queue[n] as Entry).bytes <= o.batchBytesMax)) bytes += (queue[n++] as Entry).bytes;
    const batch = queue.slice(0, n);
    queue = queue.slice(n);
    committing = true;
    inflight = batch.length;
    try {
      await store.append(batch.map((e) => e.row));
      batches++;
      for (const e of batch) e.answer({ ok: true, seq: e.row.seq, outcomeJson: e.outcomeJson });
    } catch (error) {
      const failed = storageError(error);
      const touched = new Map<string, Doc>(batch.map((e) => [e.row.doc, e.doc]));
      const [stale, kept] = [queue.filter((e) => touched.has(e.row.doc)), queue.filter((e) => !touched.has(e.row.doc))];
      queue = kept;
      for (const e of [...batch, ...stale]) e.answer(failed);
      for (const [id, doc] of touched) documents.reload(id, doc.type);
    } finally {
      committing = false;
      inflight = 0;
      schedule();
    }
  }

  return {
    get batches() {
      return batches;
    },
    submit(type, s, answer) {
      if (loading + queue.length + inflight >= o.pendingMessagesMax) return answer(busy(`pendingMessagesMax (${o.pendingMessagesMax}) messages wait for the database; retry shortly`));
      loading++;
      documents.use(
        s.doc,
        type,
        (doc) => {
          loading--;
          const r = run(doc, s.doc, s);
          doc.state = r.state;
          doc.seq = r.row.seq;
          queue.push({ doc, row: r.row, bytes: r.row.requestJson.length + r.row.redoJson.length + r.row.undoJson.length, outcomeJson: r.outcomeJson, answer });
          schedule();
        },
        (result) => {
          loading--;
          answer(result);
        },
      );
    },
  };
}
