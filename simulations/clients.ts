// The workload: clients that send moves (engine/workloads.ts) with several messages in flight,
// through a proxy's router or through client sessions, and browser tabs that subscribe through
// a router and apply what it delivers, as the browser client library does (a full view, then
// patches to the speculative or the confirmed view). Tabs resubscribe, flap and close.
// The checks read what the tabs received.

import { findDocumentType } from '../engine/documents/index.ts';
import type { JsonObject } from '../engine/json.ts';
import { apply } from '../engine/patch.ts';
import { concreteOp, viewers, type Move } from '../engine/workloads.ts';
import type { ChainError, SubmitResult } from '../chain/client/requests.ts';
import type { ViewUpdate } from '../chain/core/frames.ts';
import { ProxyProcess, type SessionProcess } from './processes.ts';
import type { World } from './world.ts';

export interface TabSpec {
  readonly doc: number;
  readonly events: readonly { readonly atMs: number; readonly kind: 'resubscribe' | 'close' | 'flap' }[];
}

export interface ClientSpec {
  readonly viewer: number;
  readonly via: 'proxy' | 'session';
  readonly proxy: number;
  /** Messages in flight at once. */
  readonly pipeline: number;
  readonly ops: readonly { readonly atMs: number; readonly doc: number; readonly move: Move }[];
  readonly tabs: readonly TabSpec[];
  /** Documents its ops index into (default: the world's). */
  readonly docs?: readonly { readonly id: string; readonly type: string }[];
}

export interface ClientRecord {
  readonly client: string;
  readonly doc: string;
  readonly clientSeq: number;
  /** failed: refused for good; unknown: the client gave up without an answer. */
  status: 'pending' | 'acked' | 'failed' | 'unknown';
  seq: number;
  code: string;
}

/** How far ahead of its oldest unanswered message to a document a client sends (below dedupeWindowMax, 64). */
const dedupeWindowSpan = 32;

export class Tab {
  state: 'open' | 'closed' | 'failed' = 'open';
  speculative: JsonObject | undefined;
  confirmed: JsonObject | undefined;
  /** The subscription this tab's frames belong to (a resubscription makes a new one). */
  generation = 0;
  error = '';
  private cancel: (() => void) | undefined;

  constructor(
    readonly client: Player,
    readonly name: string,
    readonly viewer: string,
    readonly doc: string,
    readonly docType: string,
  ) {}

  get waitingForFull(): boolean {
    return this.state === 'open' && this.confirmed === undefined;
  }

  subscribe(router: ProxyProcess['router']): void {
    if (this.cancel !== undefined) this.unsubscribe();
    const generation = ++this.generation;
    this.speculative = undefined;
    this.confirmed = undefined;
    this.state = 'open';
    this.client.world.observer.tabOpened(this);
    this.cancel = router.subscribe(
      this.doc,
      this.docType,
      this.viewer,
      (u) => {
        if (generation !== this.generation) return;
        this.receive(u);
      },
      (e) => {
        if (generation !== this.generation) return;
        this.state = 'failed';
        this.error = `${e.code}: ${e.message}`;
      },
    );
  }

  unsubscribe(): void {
    this.generation++;
    this.cancel?.();
    this.cancel = undefined;
    this.speculative = undefined;
    this.confirmed = undefined;
  }

  private receive(u: ViewUpdate): void {
    this.client.world.observer.tabFrame(this, u);
    switch (u.kind) {
      case 'full':
        if (this.client.world.traceLogs) this.client.world.note(`${this.name} got a full view of ${u.doc} at seq ${u.seq}`);
        this.speculative = JSON.parse(u.json) as JsonObject;
        this.confirmed = JSON.parse(u.confirmedJson) as JsonObject;
        return;
      case 'speculative':
      case 'rollback':
        // A browser applies what it gets; a patch before any full view applies to nothing.
        this.speculative = apply(JSON.parse(u.json), this.speculative ?? {}) as JsonObject;
        return;
      case 'confirmed':
        this.confirmed = apply(JSON.parse(u.json), this.confirmed ?? {}) as JsonObject;
        return;
    }
  }
}

/** One user of the workload: sends its moves through the real router or ChainSession and owns its tabs. */
export class Player {
  readonly viewer: string;
  readonly records: ClientRecord[] = [];
  readonly tabs: Tab[] = [];
  private nextOp = 0;
  private inFlight = 0;

  constructor(
    readonly world: World,
    readonly name: string,
    readonly spec: ClientSpec,
    private readonly host: ProxyProcess | SessionProcess,
  ) {
    this.viewer = viewers[spec.viewer % viewers.length] as string;
  }

  get done(): boolean {
    return this.nextOp >= this.spec.ops.length && this.inFlight === 0;
  }

  private docOf(index: number): { id: string; type: string } {
    const docs = this.spec.docs ?? this.world.settings.docs;
    return docs[index % docs.length] as { id: string; type: string };
  }

  start(): void {
    const world = this.world;
    if (this.host instanceof ProxyProcess) {
      const router = this.host.router;
      this.spec.tabs.forEach((t, i) => {
        const doc = this.docOf(t.doc);
        const tab = new Tab(this, `${this.name}/tab${i + 1}`, this.viewer, doc.id, doc.type);
        this.tabs.push(tab);
        world.after(
          world.rng.range(0, 5),
          this.inHost(() => tab.subscribe(router)),
        );
        for (const e of t.events) {
          world.at(
            e.atMs,
            this.inHost(() => {
              if (tab.state === 'closed') return;
              world.note(`${tab.name} ${e.kind}`);
              if (e.kind === 'close') {
                tab.unsubscribe();
                tab.state = 'closed';
                world.observer.tabClosed(tab);
                return;
              }
              tab.unsubscribe();
              tab.subscribe(router);
              if (e.kind === 'flap') {
                // Gone again before its full view can arrive, then back.
                tab.unsubscribe();
                tab.subscribe(router);
              }
            }),
          );
        }
      });
    }
    this.pump();
  }

  /** An event of this client: it runs the host's code (router or session), which changes no replica, so the per-event checks skip the nodes. */
  private inHost(run: () => void): () => void {
    return () => {
      this.world.ranIn(this.host);
      run();
    };
  }

  /** Sends the next messages that are due, up to `pipeline` in flight. */
  private pump(): void {
    const world = this.world;
    while (this.nextOp < this.spec.ops.length && this.inFlight < this.spec.pipeline) {
      const op = this.spec.ops[this.nextOp] as ClientSpec['ops'][number];
      if (op.atMs > world.now) {
        world.at(
          op.atMs,
          this.inHost(() => this.pump()),
        );
        return;
      }
      // A client keeps its messages to one document within the dedupe window (PROTOCOL.md):
      // while one is unanswered, it sends at most dedupeWindowSpan newer ones there.
      const doc = this.docOf(op.doc).id;
      const oldest = this.records.find((r) => r.status === 'pending' && r.doc === doc);
      if (oldest !== undefined && this.records.length + 1 - oldest.clientSeq >= dedupeWindowSpan) return;
      this.nextOp++;
      this.send(op);
    }
  }

  private send(op: ClientSpec['ops'][number]): void {
    const world = this.world;
    const doc = this.docOf(op.doc);
    const type = findDocumentType(doc.type);
    if (type === undefined) throw new Error(`unknown document type ${doc.type}`);
    const basis = this.tabs.find((t) => t.doc === doc.id && t.speculative !== undefined)?.speculative ?? type.initial;
    const clientSeq = this.records.length + 1;
    const concrete = concreteOp(doc.type, basis, { ...op.move, viewer: viewers.indexOf(this.viewer as (typeof viewers)[number]) }, clientSeq);
    const record: ClientRecord = { client: this.name, doc: doc.id, clientSeq, status: 'pending', seq: 0, code: '' };
    this.records.push(record);
    this.inFlight++;
    const done = (error: ChainError | undefined, result?: SubmitResult): void => {
      if (record.status !== 'pending') return;
      this.inFlight--;
      if (error === undefined && result !== undefined) {
        record.status = 'acked';
        record.seq = result.seq;
        world.note(`${this.name}#${clientSeq} acked at ${doc.id}@${result.seq}${result.duplicate ? ' (duplicate)' : ''}`);
        world.observer.acked(doc.id, result.seq);
      } else {
        // A refusal for good, or the client gave up (its outcome is then unknown).
        // client_seq_too_old: the document forgot that message, so whether it applied is unknown.
        const gaveUp = error === undefined || error.code === 'timeout' || error.code === 'closed' || error.code === 'client_seq_too_old' || error.retryable;
        record.status = gaveUp ? 'unknown' : 'failed';
        record.code = error?.code ?? 'no answer';
        world.note(`${this.name}#${clientSeq} ${record.status} (${record.code})`);
      }
      world.after(
        world.rng.range(0, 5),
        this.inHost(() => this.pump()),
      );
    };
    const payload = concrete.payload;
    if (this.host instanceof ProxyProcess) {
      this.host.router.submit({ doc: doc.id, docType: doc.type, channel: concrete.channel, payload, clientId: this.name, clientSeq, viewer: this.viewer }, done);
    } else {
      const chain = this.world.chainOfDoc(doc.id);
      this.host.session(chain, this.name).send({ doc: doc.id, docType: doc.type, channel: concrete.channel, payload, viewer: this.viewer, clientSeq }, done);
    }
  }
}
