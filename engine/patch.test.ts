import test from 'ava';
import fc from 'fast-check';
import { patchArb, stateArb } from './arbitraries.ts';
import { cloneJson, isPlainJson, jsonEqual, type Json, type JsonObject } from './json.ts';
import { apply, applyInPlace, change, compose, diff, PatchError } from './patch.ts';

const applyObject = (patch: Json, target: JsonObject): JsonObject => apply(patch, target) as JsonObject;

test('apply(diff(a, b), a) = b, canonical, and identity-preserving for a = b', (t) => {
  fc.assert(
    fc.property(stateArb, stateArb, patchArb, (a, other, p) => {
      // b is either unrelated to a or a small edit of it.
      for (const b of [other, applyObject(p, a)]) {
        const d = diff(a, b);
        const back = apply(d, a);
        if (!jsonEqual(back, b)) return false;
        if (!isPlainJson(d, false) || !isPlainJson(back, true)) return false;
      }
      return apply(diff(a, a), a) === a;
    }),
  );
  t.deepEqual(diff({ a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 2 }, e: [1] }), { b: { d: null }, e: [1] });
});

test('change: apply(undo, apply(redo, s)) = s, and redo has the patch effect', (t) => {
  fc.assert(
    fc.property(stateArb, patchArb, (s, p) => {
      const { redo, undo } = change(p, s);
      const next = applyObject(redo, s);
      if (!jsonEqual(next, apply(p, s))) return false;
      if (!jsonEqual(apply(undo, next), s)) return false;
      // redo is normalized: applying it twice changes nothing more, and a no-op patch is empty.
      return jsonEqual(change(redo, next).redo, {}) && isPlainJson(redo, false) && isPlainJson(undo, false);
    }),
  );
  const { redo, undo } = change({ a: null, b: 2, c: { d: null } }, { a: 1, b: 2 });
  t.deepEqual(redo, { a: null, c: {} });
  t.deepEqual(undo, { a: 1, c: null });
});

test('compose law: apply(compose(p, q), s) = apply(q, apply(p, s)) whenever composable', (t) => {
  let composed = 0;
  let refused = 0;
  fc.assert(
    fc.property(stateArb, patchArb, patchArb, (s, p, q) => {
      let r: Json;
      try {
        r = compose(p, q);
      } catch (error) {
        if (!(error instanceof PatchError)) throw error;
        refused++;
        return true;
      }
      composed++;
      return isPlainJson(r, false) && jsonEqual(apply(r, s), apply(q, apply(p, s)));
    }),
    { numRuns: 300 },
  );
  // The law must be exercised, not dodged: most random pairs compose.
  t.true(composed > refused, `composed ${composed}, refused ${refused}`);
});

test('compose law holds for consecutive redo deltas of a history', (t) => {
  fc.assert(
    fc.property(stateArb, patchArb, patchArb, (s0, p1, p2) => {
      const d1 = change(p1, s0);
      const s1 = applyObject(d1.redo, s0);
      const d2 = change(p2, s1);
      const s2 = applyObject(d2.redo, s1);
      try {
        return jsonEqual(apply(compose(d1.redo, d2.redo), s0), s2);
      } catch (error) {
        return error instanceof PatchError;
      }
    }),
  );
  t.deepEqual(compose({ a: 1 }, { b: 2 }), { a: 1, b: 2 });
});

test('compose keeps nulls so deletions survive', (t) => {
  t.deepEqual(compose({ a: null, b: { c: null } }, { d: 1, b: { e: 2 } }), { a: null, b: { c: null, e: 2 }, d: 1 });
  t.deepEqual(compose({ a: { x: 1 } }, { a: null }), { a: null });
  // A deletion followed by an edit of another member still deletes.
  t.deepEqual(apply(compose({ a: null }, { b: 1 }), { a: 5, c: 3 }), { b: 1, c: 3 });
});

test('compose refuses what RFC 7396 cannot express, with a clear error', (t) => {
  const error = t.throws(() => compose({ a: 5 }, { a: { b: 1 } }), { instanceOf: PatchError });
  t.regex(error.message, /cannot compose at \.a/);
  t.throws(() => compose({ a: null }, { a: { b: 1 } }), { instanceOf: PatchError });
});

test('RFC 7396 appendix A examples', (t) => {
  const cases: [Json, Json, Json][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [
      ['a', 'b'],
      ['c', 'd'],
      ['c', 'd'],
    ],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { a: 1, e: null }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, expected] of cases) {
    t.deepEqual(apply(patch, target), expected, `${JSON.stringify(patch)} onto ${JSON.stringify(target)}`);
  }
});

test('apply never mutates its inputs, keeps member positions and appends new members in patch order', (t) => {
  const target = Object.freeze({ b: 1, z: 2, d: 0 }) as JsonObject;
  const out = applyObject({ a: 0, c: 3, '5': 4, z: 9, d: null }, target);
  t.deepEqual(Object.keys(out), ['5', 'b', 'z', 'a', 'c']);
  t.deepEqual(target, { b: 1, z: 2, d: 0 });
  t.is(apply({ b: 1 }, target), target, 'a patch that changes nothing returns the target itself');
});

test('applyInPlace gives the same value and key order as apply, and never aliases the patch', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(stateArb, patchArb, patchArb, (s, p, q) => {
        const copied = applyObject(q, applyObject(p, s));
        const mutable = cloneJson(s);
        applyInPlace(p, mutable);
        applyInPlace(q, mutable);
        if (JSON.stringify(mutable) !== JSON.stringify(copied)) return false;
        // Mutating the state afterwards must not reach into the patches.
        const pBefore = JSON.stringify(p);
        applyInPlace({ x: { y: 1 } }, mutable);
        for (const key in mutable) if (typeof mutable[key] === 'object') applyInPlace({ touched: true }, mutable);
        return JSON.stringify(p) === pBefore;
      }),
    ),
  );
});

test('key order is a function of the patch history, through a JSON snapshot too', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(stateArb, fc.array(patchArb, { maxLength: 6 }), fc.nat(6), (s, patches, cut) => {
        let direct: JsonObject = s;
        for (const p of patches) direct = applyObject(p, direct);
        // Another replica: a snapshot part way through, then the remaining patches in place.
        let other: JsonObject = s;
        for (const p of patches.slice(0, cut)) other = applyObject(p, other);
        const restored = JSON.parse(JSON.stringify(other)) as JsonObject;
        for (const p of patches.slice(cut)) applyInPlace(p, restored);
        return JSON.stringify(direct) === JSON.stringify(restored);
      }),
    ),
  );
});
