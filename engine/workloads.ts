// Workloads for the example document types, shared by property tests, benchmarks and the
// simulator. A workload is a list of abstract moves (numbers); `concreteOp` turns a move into
// a message against the current state, so a generator can produce mostly legal moves (play a
// card that is really in your hand) plus a share of illegal and malformed ones.

import type { DocumentType } from './document.ts';
import { execute, type Envelope, type Execution } from './execute.ts';
import type { Json, JsonObject } from './json.ts';

export interface Move {
  /** Index into `viewers`. */
  readonly viewer: number;
  /** Which kind of message; each type maps it onto its channels (and some bad input). */
  readonly kind: number;
  /** A free number used to pick a card, a recipient, an amount. */
  readonly pick: number;
}

export interface Op {
  readonly viewer: string;
  readonly channel: string;
  readonly payload: Json;
}

/** Four players and one spectator. No name collides with a card ("QH") or a message text. */
export const viewers = ['alice', 'bob', 'carol', 'dave', 'eve'] as const;

export const moveKinds = 10;

/** A message for `move` against `state` of type `typeName`. `nonce` makes texts unique. */
export function concreteOp(typeName: string, state: JsonObject, move: Move, nonce: number): Op {
  const viewer = viewers[move.viewer % viewers.length] as string;
  const pick = move.pick;
  const kind = move.kind % moveKinds;
  switch (typeName) {
    case 'counter':
      return counterOp(viewer, kind, pick);
    case 'chat':
      return chatOp(viewer, kind, pick, nonce);
    case 'card-table':
      return cardTableOp(viewer, state, kind, pick);
    case 'poll':
      return pollOp(viewer, kind, pick);
    default:
      throw new Error(`no workload for document type ${typeName}`);
  }
}

function counterOp(viewer: string, kind: number, pick: number): Op {
  if (kind < 7) return { viewer, channel: 'add', payload: { by: (pick % 41) - 20 } };
  if (kind === 7) return { viewer, channel: 'reset', payload: {} };
  if (kind === 8) return { viewer, channel: 'add', payload: { by: 5000 } }; // out of the validator's range
  return { viewer, channel: 'subtract', payload: { by: 1 } }; // unknown channel
}

function chatOp(viewer: string, kind: number, pick: number, nonce: number): Op {
  const text = `text-${nonce}-${pick}`;
  switch (kind) {
    case 0:
    case 1:
      return { viewer, channel: 'join', payload: {} };
    case 2:
    case 3:
    case 4:
      return { viewer, channel: 'say', payload: { text } };
    case 5:
    case 6:
      return { viewer, channel: 'dm', payload: { to: viewers[pick % viewers.length] as string, text: `secret-${nonce}-${pick}` } };
    case 7:
      return { viewer, channel: 'leave', payload: {} };
    case 8:
      return { viewer, channel: 'topic', payload: { text: `topic-${nonce}` } };
    default:
      return { viewer, channel: 'say', payload: { text: '' } }; // fails validation
  }
}

function cardTableOp(viewer: string, state: JsonObject, kind: number, pick: number): Op {
  const players = state.players as Record<string, { hand: string[] }> | undefined;
  const hand = players?.[viewer]?.hand ?? [];
  switch (kind) {
    case 0:
      return { viewer, channel: 'sit', payload: {} };
    case 1:
      return { viewer, channel: 'start', payload: {} };
    case 2:
    case 3:
    case 4: {
      // Usually a card from the viewer's own hand; sometimes a card they do not hold.
      const card = hand.length > 0 && pick % 8 !== 0 ? (hand[pick % hand.length] as string) : 'ZZ';
      return { viewer, channel: 'play', payload: { card } };
    }
    case 5:
    case 6:
      return { viewer, channel: 'draw', payload: {} };
    case 7:
      return { viewer, channel: 'bet', payload: { amount: (pick % 40) + 1 } };
    case 8:
      return { viewer, channel: 'bet', payload: { amount: -3 } }; // fails validation
    default:
      return { viewer, channel: 'fold', payload: {} }; // unknown channel
  }
}

function pollOp(viewer: string, kind: number, pick: number): Op {
  if (kind < 2) return { viewer, channel: 'setup', payload: { question: `q${pick}`, options: ['red', 'green', 'blue'] } };
  if (kind < 8) return { viewer, channel: 'vote', payload: { choice: pick % 4 } }; // 3 is no_such_option
  if (kind === 8) return { viewer, channel: 'close', payload: {} };
  return { viewer, channel: 'vote', payload: { choice: 'red' } }; // fails validation
}

/** A deterministic move stream for benchmarks (xorshift32, not document randomness). */
export function moveStream(seed: number): () => Move {
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return () => ({ viewer: next() % viewers.length, kind: next() % moveKinds, pick: next() % 1000 });
}

export interface Run {
  readonly envelopes: Envelope[];
  readonly executions: Execution[];
  readonly states: JsonObject[];
  readonly final: JsonObject;
}

/** Executes `moves` in order from the type's initial state: the log a tail would produce. */
export function runMoves(type: DocumentType, moves: readonly Move[], entropy = 'entropy', doc = 'doc-1'): Run {
  const envelopes: Envelope[] = [];
  const executions: Execution[] = [];
  const states: JsonObject[] = [type.initial];
  let state = type.initial;
  moves.forEach((move, index) => {
    const seq = index + 1;
    const op = concreteOp(type.name, state, move, seq);
    const envelope: Envelope = { doc, seq, timestamp: 1_700_000_000_000 + seq * 10, ...op };
    const execution = execute(type, state, envelope, entropy);
    envelopes.push(envelope);
    executions.push(execution);
    state = execution.state;
    states.push(state);
  });
  return { envelopes, executions, states, final: state };
}
