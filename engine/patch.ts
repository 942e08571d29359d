// RFC 7396 JSON merge patches: diff, apply, compose, and the redo/undo pair of a change.
//
// Conventions:
// - A patch object member set to null deletes that member; any non-object patch value
//   replaces the target wholesale (arrays included).
// - Document state never holds null inside an object (RFC 7396 cannot express it), so for
//   null-free states `apply(diff(a, b), a)` equals `b` exactly. In views, a member set to null
//   means "hidden"; under merge-patch semantics that is the same as absent.
// - All functions are persistent: they never mutate their inputs, they share unchanged
//   subtrees with their inputs, and everything they return is frozen and canonical
//   (see json.ts). `apply` returns the very same target object when a patch changes nothing,
//   which lets view computation skip unchanged subtrees by identity.

import { assert, debugAssert } from './assert.ts';
import { buildCanonical, isCanonical, isObject, jsonEqual, type Json, type JsonObject } from './json.ts';

export type Patch = Json;

const EMPTY: JsonObject = Object.freeze({}) as JsonObject;

/** RFC 7396 MergePatch(target, patch). `target` undefined means absent. */
export function apply(patch: Patch, target: Json | undefined): Json {
  debugAssert(() => isCanonical(patch, false), 'apply: patch is not canonical');
  return applyAt(patch, target);
}

function applyAt(patch: Patch, target: Json | undefined): Json {
  if (!isObject(patch)) return patch;
  const base = isObject(target) ? target : EMPTY;
  let changed = base !== target; // a non-object target is always replaced
  let extra: string[] | undefined;
  let next: Map<string, Json | undefined> | undefined;
  for (const key in patch) {
    const value = patch[key] as Json;
    const has = Object.hasOwn(base, key);
    if (value === null) {
      if (!has) continue;
      (next ??= new Map()).set(key, undefined);
      changed = true;
      continue;
    }
    const before = has ? (base[key] as Json) : undefined;
    const after = applyAt(value, before);
    if (after === before) continue;
    (next ??= new Map()).set(key, after);
    changed = true;
    if (!has) (extra ??= []).push(key);
  }
  if (!changed) return base;
  return buildCanonical(Object.keys(base), extra ?? [], (key) =>
    next !== undefined && next.has(key) ? next.get(key) : base[key],
  );
}

/** A patch that takes `a` to `b`. Null-valued members on either side count as absent. */
export function diff(a: Json, b: Json): Patch {
  const patch = diffAt(a, b);
  if (patch !== NO_CHANGE) return patch;
  return isObject(a) ? EMPTY : b;
}

const NO_CHANGE = Symbol('no change');

function diffAt(a: Json | undefined, b: Json): Patch | typeof NO_CHANGE {
  if (a === b) return NO_CHANGE;
  if (!isObject(b)) return a !== undefined && jsonEqual(a, b) ? NO_CHANGE : b;
  if (!isObject(a)) return b;
  let entries: Map<string, Json> | undefined;
  let extra: string[] | undefined;
  for (const key in a) {
    if (a[key] === null) continue;
    const bv = Object.hasOwn(b, key) ? (b[key] as Json) : null;
    if (bv === null) {
      (entries ??= new Map()).set(key, null);
      continue;
    }
    const sub = diffAt(a[key], bv);
    if (sub !== NO_CHANGE) (entries ??= new Map()).set(key, sub);
  }
  for (const key in b) {
    const bv = b[key] as Json;
    if (bv === null) continue;
    if (Object.hasOwn(a, key) && a[key] !== null) continue;
    (entries ??= new Map()).set(key, bv);
    (extra ??= []).push(key);
  }
  if (entries === undefined) return NO_CHANGE;
  const found = entries;
  return buildCanonical(
    Object.keys(a).filter((key) => a[key] !== null && found.has(key)),
    extra ?? [],
    (key) => found.get(key),
  );
}

export class PatchError extends Error {
  override name = 'PatchError';
}

/**
 * A patch r with apply(r, s) = apply(q, apply(p, s)) for every s. Deletions in p survive
 * unless q sets the member again. RFC 7396 has no way to say "replace this object with that
 * object", so where p sets a member to a non-object (or deletes it) and q then merges an
 * object into the same member, the composition does not exist and this throws PatchError;
 * compose such changes by applying them to a state instead.
 */
export function compose(p: Patch, q: Patch): Patch {
  return composeAt(p, q, '');
}

function composeAt(p: Patch, q: Patch, path: string): Patch {
  if (!isObject(q)) return q;
  if (!isObject(p)) {
    throw new PatchError(
      `cannot compose at ${path === '' ? 'the root' : path}: the first patch replaces the value with ` +
        `${JSON.stringify(p)} and the second merges an object into it`,
    );
  }
  const extra: string[] = [];
  for (const key in q) if (!Object.hasOwn(p, key)) extra.push(key);
  return buildCanonical(Object.keys(p), extra, (key) => {
    if (!Object.hasOwn(q, key)) return p[key];
    if (!Object.hasOwn(p, key)) return q[key];
    const qv = q[key] as Json;
    return isObject(qv) ? composeAt(p[key] as Json, qv, `${path}.${key}`) : qv;
  });
}

/** The normalized change of one message: redo takes `before` to the next state, undo takes it back. */
export interface Change {
  readonly redo: JsonObject;
  readonly undo: JsonObject;
}

/**
 * Normalizes a canonical object patch against the state it will be applied to and computes
 * its inverse. The redo drops members that change nothing; apply(undo, apply(redo, state))
 * equals state for every null-free state.
 */
export function change(patch: JsonObject, state: JsonObject): Change {
  debugAssert(() => isCanonical(patch, false), 'change: patch is not canonical');
  debugAssert(() => isCanonical(state, true), 'change: state is not canonical and null-free');
  const out = changeAt(patch, state);
  return out ?? { redo: EMPTY, undo: EMPTY };
}

function changeAt(patch: JsonObject, target: JsonObject): Change | undefined {
  let redo: JsonObject | undefined;
  let undo: JsonObject | undefined;
  for (const key in patch) {
    const value = patch[key] as Json;
    const has = Object.hasOwn(target, key);
    const before = has ? (target[key] as Json) : null;
    if (value === null) {
      if (!has) continue;
      (redo ??= {})[key] = null;
      (undo ??= {})[key] = before;
      continue;
    }
    if (isObject(value) && isObject(before)) {
      const sub = changeAt(value, before);
      if (sub === undefined) continue;
      (redo ??= {})[key] = sub.redo;
      (undo ??= {})[key] = sub.undo;
      continue;
    }
    // A replacement: RFC 7396 strips nulls from an object merged into a non-object.
    const after = applyAt(value, undefined);
    if (has && jsonEqual(after, before)) continue;
    (redo ??= {})[key] = after;
    (undo ??= {})[key] = before;
  }
  if (redo === undefined) return undefined;
  assert(undo !== undefined, 'change: redo without undo');
  // Members were visited in the patch's canonical order, so both objects are canonical.
  return { redo: Object.freeze(redo), undo: Object.freeze(undo) };
}
