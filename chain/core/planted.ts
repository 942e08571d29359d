// Planted bugs: each breaks one rule of the protocol or the runtime, so the simulator can show
// that its invariant checks fail when they should. They are an injected set: every component
// that can carry one takes `bugs` in its options, production passes nothing (the empty set),
// and only simulations/ ever builds a non-empty one. No flag, variable or argument of the
// product turns one on.

export const plantedBugNames = [
  /** A delta (or an ack) passes upstream before the local write for its seq is durable. */
  'early-back',
  /** After a reconfiguration the predecessor does not resend its queue to the new successor. */
  'no-queue-resend',
  /** Frames and configurations from older epochs are accepted. */
  'no-epoch-check',
  /** The head does not dedupe (clientId, clientSeq): a resend is applied again. */
  'no-dedupe',
  /** Speculative view deltas carry the unfiltered state along with the viewer's delta. */
  'unfiltered-speculation',
  /** The tail executes a frame's messages for one document in reverse order. */
  'tail-out-of-order',
  /** The head skips the confirmed view update when the speculative view already showed the message. */
  'skip-confirmed-view',
  // The defects found from outside (issue "one driver for both worlds"), one each:
  /** 1. A head that lost its lease keeps its waiters and subscriptions (a zombie head: its clients wait forever). */
  'zombie-head',
  /** 2. Past dedupeClientsMax the least recently used client is forgotten even while it could still resend. */
  'dedupe-forgets-live-client',
  /** 3. caughtUpEpoch lives in memory only: after a restart a joiner reports 0 again. */
  'caught-up-in-memory',
  /** 4. Attach and Sync carry every document in one frame, however large. */
  'unsplit-frames',
  /** 5. A peer's frame is used without validation: a bad field reaches an assertion and the node exits. */
  'unvalidated-peer-input',
  /** 6. The router forwards a new subscription's patches before its full view. */
  'router-early-patches',
  /** 6. An unsubscribe ends every subscription of that viewer on the connection, not just its own. */
  'unsubscribe-by-viewer',
  /** 7. The router sends no unsubscribe for a subscription whose full view has not arrived yet. */
  'subscription-leak',
  /** 8. A confirmed view shows state applied but not yet durable on every replica. */
  'undurable-reads',
  /** 9. A document's state transfer goes in one frame, however long its log (a rejoin that never completes). */
  'unsplit-catchup',
  /** 9. A client session keeps waiting on the same node when a request times out. */
  'session-stays-on-timeout',
  // The control plane (issue "a control plane that cannot split the brain"):
  /** The manager writes a configuration unconditionally, without compare-and-swap on the epoch it decided from. */
  'write-without-cas',
  /** A node accepts a pushed configuration without checking that the store holds it. */
  'node-trusts-pushes',
  // Per-document entropy (issue 15):
  /** A replica that gets a document from a peer makes its own entropy instead of adopting the replicated one. */
  'entropy-per-replica',
] as const;

export type PlantedBug = (typeof plantedBugNames)[number];

/** The bugs a component carries: empty in production. */
export type Bugs = ReadonlySet<PlantedBug>;

export const noBugs: Bugs = new Set<PlantedBug>();
