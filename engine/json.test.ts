import test from 'ava';
import fc from 'fast-check';
import { canonicalize, cloneJson, JsonError, put, utf8Length, type JsonObject } from './json.ts';

test('utf8Length agrees with Buffer.byteLength, lone surrogates included', (t) => {
  t.notThrows(() => fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => utf8Length(text) === Buffer.byteLength(text, 'utf8'))));
  t.is(utf8Length('\ud800x'), Buffer.byteLength('\ud800x'));
});

test('put and cloneJson treat "__proto__" as an ordinary member', (t) => {
  const target: JsonObject = {};
  put(target, '__proto__', { polluted: true });
  t.is(Object.getPrototypeOf(target), Object.prototype);
  t.deepEqual(Object.keys(target), ['__proto__']);
  const copy = cloneJson(JSON.parse('{"__proto__": {"x": 1}, "a": 2}') as JsonObject);
  t.is(Object.getPrototypeOf(copy), Object.prototype);
  t.deepEqual(Object.keys(copy), ['__proto__', 'a']);
  t.is(({} as { polluted?: boolean }).polluted, undefined);
});

test('canonicalize sorts keys, freezes, and rejects what is not JSON with the path', (t) => {
  const value = canonicalize({ b: 1, a: { d: [1, { y: 1, x: 2 }], c: -0 }, '3': true });
  t.deepEqual(Object.keys(value as object), ['3', 'a', 'b']);
  t.true(Object.isFrozen(value));
  t.is(Object.is((value as { a: { c: number } }).a.c, -0), false);
  t.is(t.throws(() => canonicalize({ a: [1, undefined] }), { instanceOf: JsonError }).path, '.a[1]');
  t.throws(() => canonicalize({ a: 1n }), { instanceOf: JsonError, message: /bigint is not JSON/ });
  const cyclic: Record<string, unknown> = {};
  cyclic.me = cyclic;
  t.throws(() => canonicalize(cyclic), { instanceOf: JsonError, message: /too deep \(or a cycle\)/ });
  t.deepEqual(canonicalize({ a: null, b: { c: null } }, { dropNulls: true }), { b: {} });
});
