// A chat room. Members post public messages and direct messages; a direct message is visible
// only to its sender and its recipient, and the member list only to members. History is
// bounded: past `historyMessagesMax` entries the oldest is evicted, in O(1): entries are keyed by a
// serial number, so the oldest key is known without scanning the collection.

import { collection, defineDocument, hidden, ownedBy, policy, pub } from '../document.ts';
import { v } from '../validate.ts';

export type ChatMessage = { from: string; text: string; at: number };
export type DirectMessage = { from: string; to: string; text: string; at: number };
export type ChatState = {
  topic: string;
  /** Members keyed by viewer id. */
  members: Record<string, { joinedAt: number }>;
  /** Public messages keyed by `entryId(serial)`, oldest first. */
  messages: Record<string, ChatMessage>;
  /** Public messages ever posted: the next message's serial. */
  messagesMade: number;
  /**
   * Direct messages keyed by a random id from ctx.random: a serial key would tell a recipient
   * how many direct messages other people had sent.
   */
  dms: Record<string, DirectMessage>;
  /** Hidden: `entryId(serial)` -> the random id of direct message number `serial`, for eviction. */
  dmOrder: Record<string, string>;
  /** Direct messages ever sent (hidden: the count of others' messages is private too). */
  dmsMade: number;
};

/** Bound on kept public messages, and separately on kept direct messages. */
export const historyMessagesMax = 100;
/** Bound on members of one room. */
export const membersMax = 1_000;
export const textCharsMax = 500;

const viewerId = v.string({ minLength: 1, maxLength: 64 });

export const chat = defineDocument({
  name: 'chat',
  initial: { topic: '', members: {}, messages: {}, messagesMade: 0, dms: {}, dmOrder: {}, dmsMade: 0 } as ChatState,
  errors: ['not_a_member', 'room_full', 'unknown_recipient'],
  privacy: {
    topic: pub,
    members: policy((viewer, state: ChatState) => Object.hasOwn(state.members, viewer)),
    messages: collection(pub),
    messagesMade: pub,
    dms: collection(ownedBy('from', 'to')),
    dmOrder: hidden,
    dmsMade: hidden,
  },
  computed: {
    me: (viewer) => viewer,
    member: (viewer, state) => Object.hasOwn(state.members, viewer),
  },
})
  .channel('join', v.object({}), (state, _payload, ctx) => {
    if (Object.hasOwn(state.members, ctx.viewer)) return;
    if (Object.keys(state.members).length >= membersMax) ctx.reject('room_full', `a room holds at most ${membersMax} members`);
    return { members: { [ctx.viewer]: { joinedAt: ctx.now } } };
  })
  .channel('leave', v.object({}), (state, _payload, ctx) => {
    if (!Object.hasOwn(state.members, ctx.viewer)) ctx.reject('not_a_member', 'only members can leave');
    return { members: { [ctx.viewer]: null } };
  })
  .channel('say', v.object({ text: v.string({ minLength: 1, maxLength: textCharsMax }) }), (state, payload, ctx) => {
    if (!Object.hasOwn(state.members, ctx.viewer)) ctx.reject('not_a_member', 'join the room before you speak');
    const message = { from: ctx.viewer, text: payload.text, at: ctx.now };
    return { messages: appendBounded(state.messagesMade, message), messagesMade: state.messagesMade + 1 };
  })
  .channel('dm', v.object({ to: viewerId, text: v.string({ minLength: 1, maxLength: textCharsMax }) }), (state, payload, ctx) => {
    if (!Object.hasOwn(state.members, ctx.viewer)) ctx.reject('not_a_member', 'join the room before you speak');
    if (!Object.hasOwn(state.members, payload.to)) ctx.reject('unknown_recipient', `${payload.to} is not a member`);
    const dm = { from: ctx.viewer, to: payload.to, text: payload.text, at: ctx.now };
    const id = randomId(ctx);
    const serial = state.dmsMade;
    const dms: Record<string, DirectMessage | null> = { [id]: dm };
    const dmOrder: Record<string, string | null> = { [entryId(serial)]: id };
    if (serial >= historyMessagesMax) {
      const evicted = entryId(serial - historyMessagesMax);
      dmOrder[evicted] = null;
      const oldest = Object.hasOwn(state.dmOrder, evicted) ? state.dmOrder[evicted] : undefined;
      if (oldest !== undefined) dms[oldest] = null;
    }
    return { dms, dmOrder, dmsMade: serial + 1 };
  })
  .channel('topic', v.object({ text: v.string({ maxLength: 100 }) }), (state, payload, ctx) => {
    if (!Object.hasOwn(state.members, ctx.viewer)) ctx.reject('not_a_member', 'only members set the topic');
    return { topic: payload.text };
  });

/** The key of entry number `serial`: "m" and 12 digits, so keys sort in serial order. */
export function entryId(serial: number): string {
  return `m${String(serial).padStart(12, '0')}`;
}

/** 16 base-36 characters from the document's seeded PRNG: the same on every replica, unguessable to clients. */
function randomId(ctx: { randomInt(bound: number): number }): string {
  let id = 'd';
  for (let i = 0; i < 16; i++) id += ctx.randomInt(36).toString(36);
  return id;
}

/** A patch adding entry number `serial` and evicting entry `serial - historyMessagesMax`. */
function appendBounded<T>(serial: number, item: T): Record<string, T | null> {
  const patch: Record<string, T | null> = { [entryId(serial)]: item };
  if (serial >= historyMessagesMax) patch[entryId(serial - historyMessagesMax)] = null;
  return patch;
}
