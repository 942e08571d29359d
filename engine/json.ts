// JSON values, and the canonical form that makes execution deterministic across replicas.
//
// Canonical objects: every object held in document state enumerates its non-index keys in
// ascending code-unit order (JavaScript always enumerates array-index keys such as "7" first,
// in numeric order). A state that was built by executing messages, by applying received
// deltas, or by parsing a snapshot therefore enumerates identically, so document code that
// iterates `Object.keys(state.players)` behaves the same on every replica. `apply` preserves
// the form; `canonicalize` establishes it for values that come from document code or the wire.

import { assert } from './assert.ts';

export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

/** Default nesting bound for values that enter the engine from outside. */
export const jsonDepthMax = 64;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** True for keys that JavaScript enumerates first, in numeric order ("0", "17", not "07"). */
export function isIndexKey(key: string): boolean {
  const n = key.length;
  if (n === 0 || n > 10) return false;
  const c0 = key.charCodeAt(0);
  if (c0 === 48) return n === 1; // "0"
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return n < 10 || Number(key) < 4294967295;
}

/** True when the object's keys are in canonical order. O(keys). */
export function isCanonicalObject(value: JsonObject): boolean {
  let previous: string | undefined;
  for (const key in value) {
    if (isIndexKey(key)) continue;
    if (previous !== undefined && !(previous < key)) return false;
    previous = key;
  }
  return true;
}

/** Deep check of the canonical form: plain JSON, no nulls inside objects when `nullFree`. */
export function isCanonical(value: Json, nullFree: boolean): boolean {
  if (Array.isArray(value)) return value.every((item) => isCanonical(item, nullFree));
  if (!isObject(value)) return typeof value !== 'number' || Number.isFinite(value);
  if (!isCanonicalObject(value)) return false;
  for (const key in value) {
    const item = value[key] as Json;
    if (nullFree && item === null) return false;
    if (!isCanonical(item, nullFree)) return false;
  }
  return true;
}

export class JsonError extends Error {
  override name = 'JsonError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(path === '' ? message : `${message} at ${path}`);
  }
}

/**
 * A frozen canonical deep copy of a value that came from outside the engine (document code or
 * the wire). Throws JsonError for anything that is not plain JSON: undefined, functions,
 * class instances, non-finite numbers, cycles, or nesting deeper than `depthMax`.
 * With `dropNulls`, object members whose value is null are left out (RFC 7396: a null in a
 * value that replaces a subtree means "absent").
 */
export function canonicalize(value: unknown, options: { depthMax?: number; dropNulls?: boolean } = {}): Json {
  return canonicalizeAt(value, options.depthMax ?? jsonDepthMax, options.dropNulls ?? false, '');
}

function canonicalizeAt(value: unknown, depthLeft: number, dropNulls: boolean, path: string): Json {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new JsonError(`non-finite number ${value}`, path);
      return value === 0 ? 0 : value; // -0 becomes 0, as JSON.stringify would print it
    case 'object':
      break;
    default:
      throw new JsonError(`a ${typeof value} is not JSON`, path);
  }
  if (value === null) return null;
  if (depthLeft <= 0) throw new JsonError('nesting too deep (or a cycle)', path);
  if (Array.isArray(value)) {
    const out: Json[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      out[i] = canonicalizeAt(value[i], depthLeft - 1, false, `${path}[${i}]`);
    }
    return Object.freeze(out) as Json[];
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new JsonError('only plain objects are JSON', path);
  }
  const source = value as Record<string, unknown>;
  const keys = Object.keys(source).sort();
  const out: JsonObject = {};
  for (const key of keys) {
    const item = source[key];
    if (item === undefined) throw new JsonError('undefined is not JSON', `${path}.${key}`);
    if (item === null && dropNulls) continue;
    out[key] = canonicalizeAt(item, depthLeft - 1, dropNulls, `${path}.${key}`);
  }
  return Object.freeze(out);
}

/** Builds a frozen canonical object from canonical-ordered keys of `base` plus sorted `extra` keys. */
export function buildCanonical(
  baseKeys: readonly string[],
  extraKeys: readonly string[],
  valueOf: (key: string) => Json | undefined,
): JsonObject {
  // Both lists are in canonical order; merge their non-index keys by code unit order. Index
  // keys may be inserted anywhere: JavaScript enumerates them first regardless.
  const out: JsonObject = {};
  let i = 0;
  let j = 0;
  while (i < baseKeys.length || j < extraKeys.length) {
    let key: string;
    if (j >= extraKeys.length) key = baseKeys[i++] as string;
    else if (i >= baseKeys.length) key = extraKeys[j++] as string;
    else {
      const a = baseKeys[i] as string;
      const b = extraKeys[j] as string;
      if (isIndexKey(a)) key = baseKeys[i++] as string;
      else if (isIndexKey(b)) key = extraKeys[j++] as string;
      else if (a < b) key = baseKeys[i++] as string;
      else {
        assert(a !== b, () => `buildCanonical: key ${a} is in both lists`);
        key = extraKeys[j++] as string;
      }
    }
    const item = valueOf(key);
    if (item !== undefined) out[key] = item;
  }
  return Object.freeze(out);
}

/** Structural equality of two JSON values (object key order ignored). */
export function jsonEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i] as Json, b[i] as Json)) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  let count = 0;
  for (const key in a) {
    if (!Object.hasOwn(b, key)) return false;
    if (!jsonEqual(a[key] as Json, b[key] as Json)) return false;
    count++;
  }
  for (const _ in b) count--;
  return count === 0;
}

/** JSON text with object keys sorted at every level: the byte-exact form used for comparisons. */
export function canonicalJson(value: Json): string {
  return JSON.stringify(canonicalize(value));
}

/** UTF-8 byte length of a string, without allocating. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** Deep-freezes a JSON value in place (objects shared between states must never change). */
export function freezeDeep<T extends Json>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    if (Array.isArray(value)) for (const item of value) freezeDeep(item);
    else for (const key in value) freezeDeep(value[key] as Json);
  }
  return value;
}
