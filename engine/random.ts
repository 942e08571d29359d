// The only randomness document code can reach: documentRandom, keyed by
// HMAC-SHA256(entropy, doc | seq). The entropy is a per-document secret key: 32 random bytes
// made by the head that creates the document, replicated with it (the envelope of seq 1,
// catch-ups) and persisted in its record, and never shown to a viewer. Every replica draws the
// same numbers for the same message, and a client that knows the cluster id, the document id
// and every seq still cannot predict a shuffle: without the key, the seed is a MAC it cannot
// compute.
//
// Generator: HMAC-SHA256(MAC, counter) blocks, 8 draws of 32 bits each, so outputs reveal
// nothing about other draws. seededRandom (cyrb128 and sfc32 over plain text) is not keyed:
// tools use it for reproducible fault schedules from a printed seed; document code never gets it.

import { createHmac } from 'node:crypto';
import { assert } from './assert.ts';

/**
 * A document's secret key: 32 random bytes in a chain (chain/core/documents.ts makes them).
 * Text is taken as its UTF-8 bytes (tests, benchmarks and the walkthrough name a key).
 */
export type DocumentEntropy = Uint8Array | string;

export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, bound). */
  int(bound: number): number;
}

function cyrb128(text: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/** The PRNG of message `seq` of document `doc`: ctx.random and ctx.randomInt draw from it. */
export function documentRandom(doc: string, seq: number, entropy: DocumentEntropy): Random {
  // A keyed generator: HMAC-SHA256 in counter mode under a per-message key. Unlike a small
  // PRNG seeded from a MAC, its outputs do not give away its state: a viewer who sees some
  // draws of a deal (its own cards) learns nothing about the others.
  const key = createHmac('sha256', entropy).update(`${doc}\u0000${seq}`).digest();
  let block: Buffer = Buffer.alloc(0);
  let counter = 0;
  let word = 8;
  const counterBytes = Buffer.alloc(4);
  const next = (): number => {
    if (word === 8) {
      counterBytes.writeUInt32BE(counter++, 0);
      block = createHmac('sha256', key).update(counterBytes).digest();
      word = 0;
    }
    return block.readUInt32LE(4 * word++) / 4294967296;
  };
  return {
    next,
    int(bound: number): number {
      assert(Number.isInteger(bound) && bound > 0 && bound <= 4294967296, `random.int: bad bound ${bound}`);
      return Math.floor(next() * bound);
    },
  };
}

/** An unkeyed PRNG from text (tools' reproducible schedules; predictable by anyone who knows the text). */
export function seededRandom(doc: string, seq: number, text: string): Random {
  const [a, b, c, d] = cyrb128(`${doc}\u0000${seq}\u0000${text}`);
  return sfc32(a, b, c, d);
}

function sfc32(a: number, b: number, c: number, d: number): Random {
  const next = (): number => {
    a |= 0;
    b |= 0;
    c |= 0;
    d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next(); // mix the seed before the first draw
  return {
    next,
    int(bound: number): number {
      assert(Number.isInteger(bound) && bound > 0 && bound <= 4294967296, `random.int: bad bound ${bound}`);
      return Math.floor(next() * bound);
    },
  };
}

/** mulberry32: a small, fast PRNG for fault injection, probe orders and tests (not document randomness). */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.next() * (hi - lo);
  }
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }
}
