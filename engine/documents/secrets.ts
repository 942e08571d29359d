// Privacy oracle for the example document types: given the state a frame was computed from,
// which values may a viewer not see? Used by the engine's property tests and by the
// simulator, which checks every frame sent to a viewer (speculative ones included).
//
// It is written from the documents' rules in plain words, independently of the privacy rule
// machinery in view.ts, so a bug in either shows up as a disagreement.

import type { Json, JsonObject } from '../json.ts';
import { isObject } from '../json.ts';

/** Human-readable leaks of `frame` (a full view or a view delta) for `viewer`; empty when clean. */
export function findLeaks(typeName: string, state: JsonObject, viewer: string, frame: Json): string[] {
  const leaks: string[] = [];
  const strings = new Set<string>();
  collectStrings(frame, strings);
  const forbid = (value: string, why: string) => {
    if (strings.has(value)) leaks.push(`${JSON.stringify(value)} (${why}) reached ${viewer}`);
  };
  const frameObject = isObject(frame) ? frame : {};
  switch (typeName) {
    case 'card-table': {
      const players = state.players as Record<string, { hand: string[] }>;
      for (const [id, player] of Object.entries(players)) {
        if (id !== viewer) for (const card of player.hand) forbid(card, `in ${id}'s hand`);
      }
      for (const card of state.deck as string[]) forbid(card, 'in the deck');
      break;
    }
    case 'chat': {
      const dms = Object.values(state.dms as Record<string, { from: string; to: string; text: string }>);
      // A text the viewer may read in a message of its own is no secret, even if another
      // message says the same (two clients of one workload can pick the same text).
      const own = new Set(dms.filter((dm) => dm.from === viewer || dm.to === viewer).map((dm) => dm.text));
      for (const dm of dms) {
        if (dm.from !== viewer && dm.to !== viewer && !own.has(dm.text)) forbid(dm.text, `a direct message from ${dm.from} to ${dm.to}`);
      }
      const members = state.members as Record<string, unknown>;
      const shown = frameObject.members;
      if (!Object.hasOwn(members, viewer) && shown !== undefined && shown !== null) {
        leaks.push(`the member list reached non-member ${viewer}`);
      }
      break;
    }
    case 'counter':
      othersEntries(frameObject.contributions, viewer, 'contribution', leaks);
      break;
    case 'poll': {
      othersEntries(frameObject.ballots, viewer, 'ballot', leaks);
      const counts = frameObject.counts;
      if (!state.closed && viewer !== state.owner && counts !== undefined && counts !== null) {
        leaks.push(`the counts of an open poll reached ${viewer}, who does not own it`);
      }
      break;
    }
    default:
      throw new Error(`no privacy oracle for document type ${typeName}`);
  }
  return leaks;
}

/** Leaks from a collection keyed by viewer id in which each viewer may see only their own entry. */
function othersEntries(shown: Json | undefined, viewer: string, what: string, leaks: string[]): void {
  if (!isObject(shown)) return;
  for (const [id, value] of Object.entries(shown)) {
    if (id !== viewer && value !== null) leaks.push(`${id}'s ${what} reached ${viewer}`);
  }
}

function collectStrings(value: Json, into: Set<string>): void {
  if (typeof value === 'string') into.add(value);
  else if (Array.isArray(value)) for (const item of value) collectStrings(item, into);
  else if (isObject(value)) {
    for (const key in value) {
      into.add(key);
      collectStrings(value[key] as Json, into);
    }
  }
}
