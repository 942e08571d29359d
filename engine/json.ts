// JSON values, and the rules that keep execution deterministic across replicas.
//
// Key order. Document code may iterate a state object (`Object.keys(state.players)`), so
// every replica must enumerate the same keys in the same order. JavaScript enumerates
// array-index keys ("7") first in numeric order, then other keys in insertion order. The
// engine therefore makes key order a function of the redo history: applying a patch keeps the
// positions of existing members and appends new members in the patch's order, whether it
// copies (`apply`) or mutates (`applyInPlace`); snapshots are written with JSON.stringify and
// read with JSON.parse, which preserve order. Replicas that apply the same deltas to the same
// snapshot enumerate identically.
//
// Values that enter the engine from outside (handler patches, payloads) are `canonicalize`d:
// copied with sorted keys, so a patch's bytes do not depend on how the handler built it.

import { debugChecks } from './assert.ts';

export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

/** Default nesting bound for values that enter the engine from outside. */
export const jsonDepthMax = 64;

/**
 * Freezes engine-made objects in debug runs (tests, simulations), where a handler that
 * mutates the state it was given throws at once. In production the freeze is skipped:
 * Object.freeze turns objects into slower representations (npm run bench:engine).
 */
export const freeze: <T>(value: T) => T = debugChecks ? Object.freeze : (value) => value;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Sets an own member, also for the key "__proto__" (a plain assignment would set the prototype). */
export function put(target: JsonObject, key: string, value: Json): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  else target[key] = value;
}

/** Deep check: plain JSON (finite numbers, plain objects), and no null members when `nullFree`. */
export function isPlainJson(value: unknown, nullFree: boolean): boolean {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  if (Array.isArray(value)) return value.every((item) => isPlainJson(item, false));
  if (typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    if (nullFree && item === null) return false;
    if (!isPlainJson(item, nullFree)) return false;
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
 * A canonical deep copy (keys sorted at every level; frozen in debug runs) of a value that
 * came from outside the engine. Throws JsonError for anything that is not plain JSON:
 * undefined, functions, class instances, non-finite numbers, cycles, or nesting deeper than
 * `depthMax`. With `dropNulls`, object members whose value is null are left out.
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
    return freeze(out);
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
    put(out, key, canonicalizeAt(item, depthLeft - 1, dropNulls, `${path}.${key}`));
  }
  return freeze(out);
}

/** A mutable deep copy of a JSON value, in the same key order. */
export function cloneJson<T extends Json>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((item) => cloneJson(item)) as T;
  const out: JsonObject = {};
  for (const key in value) put(out, key, cloneJson(value[key] as Json));
  return out as T;
}

/** Freezes a value and everything in it, in every run (unlike `freeze`). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
    Object.freeze(value);
  }
  return value;
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

/** JSON text with object keys sorted at every level: the form for comparing values by bytes. */
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
