// A poll: the README's example document type.
import { collection, defineDocument, ownedBy, policy, pub } from '../document.ts';
import { v } from '../validate.ts';

export type PollState = {
  owner: string;
  question: string;
  options: string[];
  closed: boolean;
  /** One ballot per voter, keyed by voter id. */
  ballots: Record<string, { choice: number; at: number }>;
  /** Votes per option. */
  counts: number[];
};

export const poll = defineDocument({
  name: 'poll',
  initial: { owner: '', question: '', options: [], closed: false, ballots: {}, counts: [] } as PollState,
  errors: ['already_set_up', 'not_open', 'no_such_option', 'not_owner'],
  privacy: {
    owner: pub,
    question: pub,
    options: pub,
    closed: pub,
    // Each voter sees only their own ballot.
    ballots: collection(ownedBy('$key')),
    // The owner watches the counts; everyone else sees them once the poll closes.
    counts: policy((viewer, state: PollState) => state.closed || viewer === state.owner),
  },
  computed: {
    voted: (viewer, state) => Object.hasOwn(state.ballots, viewer),
  },
})
  .channel(
    'setup',
    v.object({
      question: v.string({ minLength: 1, maxLength: 200 }),
      options: v.array(v.string({ minLength: 1, maxLength: 50 }), { maxItems: 10 }),
    }),
    (state, payload, ctx) => {
      if (state.owner !== '') ctx.reject('already_set_up', 'this poll already has a question');
      return { owner: ctx.viewer, question: payload.question, options: payload.options, counts: payload.options.map(() => 0) };
    },
  )
  .channel('vote', v.object({ choice: v.integer({ min: 0, max: 9 }) }), (state, payload, ctx) => {
    if (state.owner === '' || state.closed) ctx.reject('not_open', 'the poll is not open');
    if (payload.choice >= state.options.length) ctx.reject('no_such_option', `choose 0..${state.options.length - 1}`);
    const counts = [...state.counts];
    const previous = Object.hasOwn(state.ballots, ctx.viewer) ? state.ballots[ctx.viewer] : undefined;
    if (previous !== undefined) counts[previous.choice] = (counts[previous.choice] ?? 0) - 1;
    counts[payload.choice] = (counts[payload.choice] ?? 0) + 1;
    return { ballots: { [ctx.viewer]: { choice: payload.choice, at: ctx.now } }, counts };
  })
  .channel('close', v.object({}), (state, _payload, ctx) => {
    if (ctx.viewer !== state.owner) ctx.reject('not_owner', 'only the owner closes the poll');
    return { closed: true };
  });
