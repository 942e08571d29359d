// A shared counter. Everyone sees the total; each viewer sees only their own contribution.

import { collection, defineDocument, ownedBy, pub } from '../document.ts';
import { v } from '../validate.ts';

export type CounterState = {
  value: number;
  /** Net amount added per viewer, keyed by viewer id. */
  contributions: Record<string, number>;
};

/** Bound on |value|; an add past it is rejected. */
export const counterValueMax = 1_000_000_000;
/** Bound on distinct contributors kept per counter. */
export const contributorsMax = 1_000;

export const counter = defineDocument({
  name: 'counter',
  initial: { value: 0, contributions: {} } as CounterState,
  errors: ['out_of_range', 'too_many_contributors'],
  privacy: { value: pub, contributions: collection(ownedBy('$key')) },
  computed: { mine: (viewer, state) => (Object.hasOwn(state.contributions, viewer) ? state.contributions[viewer] : 0) ?? 0 },
})
  .channel('add', v.object({ by: v.integer({ min: -1000, max: 1000 }) }), (state, payload, ctx) => {
    const value = state.value + payload.by;
    if (Math.abs(value) > counterValueMax) ctx.reject('out_of_range', `the counter stays within ±${counterValueMax}`);
    // Own members only: a viewer id such as "toString" must not find Object.prototype's.
    const mine = Object.hasOwn(state.contributions, ctx.viewer) ? state.contributions[ctx.viewer] : undefined;
    if (mine === undefined && Object.keys(state.contributions).length >= contributorsMax) {
      ctx.reject('too_many_contributors', `a counter keeps at most ${contributorsMax} contributors`);
    }
    return { value, contributions: { [ctx.viewer]: (mine ?? 0) + payload.by } };
  })
  .channel('reset', v.object({}), (state) => {
    const contributions: Record<string, null> = {};
    for (const viewer of Object.keys(state.contributions)) contributions[viewer] = null;
    return { value: 0, contributions };
  });
