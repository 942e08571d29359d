// fast-check arbitraries shared by the engine's property tests (and the simulator's).

import fc from 'fast-check';
import { canonicalize, isObject, type Json, type JsonObject } from './json.ts';
import type { Move } from './workloads.ts';
import { moveKinds, viewers } from './workloads.ts';

/** Keys mixing array-index keys (enumerated first by JavaScript) and ordinary strings. */
const key = fc.constantFrom('0', '1', '2', '10', '07', 'a', 'b', 'c', 'aa', 'B', '_', 'z');
const leaf: fc.Arbitrary<Json> = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.boolean(),
  fc.constantFrom('x', 'y', ''),
  fc.array(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant('q')), { maxLength: 3 }),
);

function tree(nulls: boolean): fc.Arbitrary<JsonObject> {
  const { object } = fc.letrec<{ object: JsonObject; value: Json }>((tie) => ({
    object: fc.dictionary(key, tie('value'), { maxKeys: 5 }) as fc.Arbitrary<JsonObject>,
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, ...(nulls ? [fc.constant(null)] : []), tie('object')),
  }));
  return object.map((value) => {
    const canonical = canonicalize(value, { dropNulls: !nulls });
    if (!isObject(canonical)) throw new Error('object arbitrary produced a non-object');
    return canonical;
  });
}

/** A canonical, null-free document state. */
export const stateArb: fc.Arbitrary<JsonObject> = tree(false);
/** A canonical merge patch (object members may be null, meaning delete). */
export const patchArb: fc.Arbitrary<JsonObject> = tree(true);

export const moveArb: fc.Arbitrary<Move> = fc.record({
  viewer: fc.nat({ max: viewers.length - 1 }),
  kind: fc.nat({ max: moveKinds - 1 }),
  pick: fc.nat({ max: 999 }),
});

export const movesArb = (maxLength: number): fc.Arbitrary<Move[]> => fc.array(moveArb, { minLength: 1, maxLength, size: 'max' });
