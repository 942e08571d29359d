// Planted bugs: each breaks one protocol rule, so the simulator can show that its invariant
// checks fail when they should. Only simulations/ sets them; production never does, and with
// the set empty each check costs one size test.

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
] as const;

export type PlantedBug = (typeof plantedBugNames)[number];

export const planted: { readonly bugs: Set<PlantedBug> } = { bugs: new Set() };

export function isPlanted(bug: PlantedBug): boolean {
  return planted.bugs.size > 0 && planted.bugs.has(bug);
}
