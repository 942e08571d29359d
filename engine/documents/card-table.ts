// A card table. Players sit, one of them starts a round: the deck is shuffled with the
// document's seeded PRNG and five cards are dealt to each player. On their turn a player
// plays a card from their hand onto the pile, draws from the deck, or bets chips into the pot.
// The first player to empty their hand wins the pot. Each player sees only their own hand;
// the deck is hidden from everyone; the pile, the pot, the turn and the chips are public.
// Illegal moves are rejected with typed errors.

import { collection, defineDocument, hidden, ownedBy, pub, record, type ChannelContext, type DeepReadonly } from '../document.ts';
import { v } from '../validate.ts';

export type Card = string;
export type Player = { id: string; seat: number; chips: number; hand: Card[] };
export type CardTableState = {
  phase: 'waiting' | 'playing' | 'over';
  /** Players keyed by viewer id. */
  players: Record<string, Player>;
  deck: Card[];
  pile: Card[];
  pot: number;
  /** Id of the player to move; '' outside a round. */
  turn: string;
  winner: string;
  round: number;
};

export const playersMax = 6;
export const handSize = 5;
export const handCardsMax = 12;
export const startingChips = 100;

const ranks = 'A23456789TJQK';
const suits = 'SHDC';
/** The 52 distinct cards, e.g. "QH" for the queen of hearts. */
export const fullDeck: readonly Card[] = Object.freeze([...suits].flatMap((suit) => [...ranks].map((rank) => `${rank}${suit}`)));

export const cardTable = defineDocument({
  name: 'card-table',
  initial: { phase: 'waiting', players: {}, deck: [], pile: [], pot: 0, turn: '', winner: '', round: 0 } as CardTableState,
  errors: ['table_full', 'already_seated', 'not_seated', 'game_in_progress', 'not_enough_players', 'not_playing', 'not_your_turn', 'card_not_in_hand', 'deck_empty', 'hand_full', 'insufficient_chips'],
  privacy: {
    phase: pub,
    players: collection(record({ id: pub, seat: pub, chips: pub, hand: ownedBy('id') })),
    deck: hidden,
    pile: pub,
    pot: pub,
    turn: pub,
    winner: pub,
    round: pub,
  },
  computed: {
    myTurn: (viewer, state) => state.phase === 'playing' && state.turn === viewer,
    handSizes: (_viewer, state) => {
      const sizes: Record<string, number> = {};
      for (const id in state.players) sizes[id] = (state.players[id] as Player).hand.length;
      return sizes;
    },
    deckSize: (_viewer, state) => state.deck.length,
  },
})
  .channel('sit', v.object({}), (state, _payload, ctx) => {
    if (Object.hasOwn(state.players, ctx.viewer)) ctx.reject('already_seated', 'you already have a seat');
    if (state.phase === 'playing') ctx.reject('game_in_progress', 'wait for the round to end');
    const seats = Object.values(state.players).map((player) => player.seat);
    if (seats.length >= playersMax) ctx.reject('table_full', `the table seats ${playersMax}`);
    let seat = 0;
    while (seats.includes(seat)) seat++;
    return { players: { [ctx.viewer]: { id: ctx.viewer, seat, chips: startingChips, hand: [] } } };
  })
  .channel('start', v.object({}), (state, _payload, ctx) => {
    if (!Object.hasOwn(state.players, ctx.viewer)) ctx.reject('not_seated', 'sit down first');
    if (state.phase === 'playing') ctx.reject('game_in_progress', 'a round is already under way');
    const order = seatOrder(state.players);
    if (order.length < 2) ctx.reject('not_enough_players', 'a round needs at least two players');
    const deck = [...fullDeck];
    for (let i = deck.length - 1; i > 0; i--) {
      const j = ctx.randomInt(i + 1);
      [deck[i], deck[j]] = [deck[j] as Card, deck[i] as Card];
    }
    const players: Record<string, { hand: Card[] }> = {};
    for (const id of order) players[id] = { hand: deck.splice(0, handSize) };
    return { phase: 'playing', players, deck, pile: [], turn: order[0], winner: '', round: state.round + 1 };
  })
  .channel('play', v.object({ card: v.string({ minLength: 2, maxLength: 2 }) }), (state, payload, ctx) => {
    const player = mustMove(state, ctx);
    const index = player.hand.indexOf(payload.card);
    if (index < 0) ctx.reject('card_not_in_hand', `${payload.card} is not in your hand`);
    const hand = player.hand.filter((_, i) => i !== index);
    const pile = [...state.pile, payload.card];
    if (hand.length === 0) {
      return {
        phase: 'over',
        players: { [player.id]: { hand, chips: player.chips + state.pot } },
        pile,
        pot: 0,
        turn: '',
        winner: player.id,
      };
    }
    return { players: { [player.id]: { hand } }, pile, turn: nextTurn(state.players, player.id) };
  })
  .channel('draw', v.object({}), (state, _payload, ctx) => {
    const player = mustMove(state, ctx);
    if (state.deck.length === 0) ctx.reject('deck_empty', 'the deck is empty; play or bet');
    if (player.hand.length >= handCardsMax) ctx.reject('hand_full', `a hand holds at most ${handCardsMax} cards`);
    const [card, ...deck] = state.deck;
    return {
      players: { [player.id]: { hand: [...player.hand, card as Card] } },
      deck,
      turn: nextTurn(state.players, player.id),
    };
  })
  .channel('bet', v.object({ amount: v.integer({ min: 1, max: 1_000_000 }) }), (state, payload, ctx) => {
    const player = mustMove(state, ctx);
    if (payload.amount > player.chips) ctx.reject('insufficient_chips', `you have ${player.chips} chips`);
    return {
      players: { [player.id]: { chips: player.chips - payload.amount } },
      pot: state.pot + payload.amount,
      turn: nextTurn(state.players, player.id),
    };
  });

type Table = DeepReadonly<CardTableState>;
type Seated = DeepReadonly<Player>;

function seatOrder(players: Table['players']): string[] {
  return Object.values(players)
    .sort((a, b) => a.seat - b.seat)
    .map((player) => player.id);
}

function nextTurn(players: Table['players'], current: string): string {
  const order = seatOrder(players);
  return order[(order.indexOf(current) + 1) % order.length] as string;
}

/** The player to move, or a typed rejection. */
function mustMove(state: Table, ctx: ChannelContext<'not_playing' | 'not_seated' | 'not_your_turn'>): Seated {
  if (state.phase !== 'playing') ctx.reject('not_playing', 'no round is under way');
  const player = Object.hasOwn(state.players, ctx.viewer) ? state.players[ctx.viewer] : undefined;
  if (player === undefined) ctx.reject('not_seated', 'sit down first');
  if (state.turn !== ctx.viewer) ctx.reject('not_your_turn', `it is ${state.turn}'s turn`);
  return player;
}
