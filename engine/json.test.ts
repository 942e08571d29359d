import test from 'ava';
import fc from 'fast-check';
import { canonicalize, isCanonicalObject, isIndexKey, JsonError, utf8Length } from './json.ts';

test('utf8Length agrees with Buffer.byteLength, lone surrogates included', (t) => {
  t.notThrows(() =>
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => utf8Length(text) === Buffer.byteLength(text, 'utf8'))),
  );
  t.is(utf8Length('\ud800x'), Buffer.byteLength('\ud800x'));
});

test('isIndexKey matches the keys JavaScript enumerates first', (t) => {
  t.notThrows(() =>
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.nat().map(String), fc.constantFrom('4294967294', '4294967295', '01', '-1')), (key) => {
        const probe: Record<string, number> = { z: 0 };
        probe[key] = 1;
        const enumeratedFirst = Object.keys(probe)[0] === key && key !== 'z';
        return isIndexKey(key) === enumeratedFirst;
      }),
    ),
  );
});

test('canonicalize sorts keys, freezes, and rejects what is not JSON with the path', (t) => {
  const value = canonicalize({ b: 1, a: { d: [1, { y: 1, x: 2 }], c: -0 }, '3': true });
  t.deepEqual(Object.keys(value as object), ['3', 'a', 'b']);
  t.true(Object.isFrozen(value));
  t.true(isCanonicalObject(value as never));
  t.is(Object.is((value as { a: { c: number } }).a.c, -0), false);
  t.is(t.throws(() => canonicalize({ a: [1, undefined] }), { instanceOf: JsonError }).path, '.a[1]');
  t.throws(() => canonicalize({ a: 1n }), { instanceOf: JsonError, message: /bigint is not JSON/ });
  const cyclic: Record<string, unknown> = {};
  cyclic.me = cyclic;
  t.throws(() => canonicalize(cyclic), { instanceOf: JsonError, message: /too deep \(or a cycle\)/ });
  t.deepEqual(canonicalize({ a: null, b: { c: null } }, { dropNulls: true }), { b: {} });
});
