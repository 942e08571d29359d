// RFC 7396 JSON merge patches: diff, apply (copying or in place), compose, and the redo/undo
// pair of a change.
//
// Conventions:
// - A patch object member set to null deletes that member; any non-object patch value
//   replaces the target wholesale (arrays included).
// - Document state never holds null inside an object (RFC 7396 cannot express it), so for
//   null-free states `apply(diff(a, b), a)` equals `b` exactly. In views, a member set to null
//   means "hidden"; under merge-patch semantics that is the same as absent.
// - Applying keeps existing members in place and appends new ones in patch order, so key
//   order is a function of the patch history (see json.ts).
// - `apply` is persistent: it never mutates its inputs, shares unchanged subtrees with them,
//   and returns the very same target object when a patch changes nothing, which lets view
//   computation skip unchanged subtrees by identity. It costs the size of every object on a
//   changed path. `applyInPlace` costs only the size of the patch; replicas that do not need
//   the previous state (a tail, a middle node) use it.

import { debugAssert } from './assert.ts';
import { cloneJson, freeze, isObject, isPlainJson, jsonEqual, put, type Json, type JsonObject } from './json.ts';

export type Patch = Json;

const EMPTY: JsonObject = Object.freeze({}) as JsonObject;

/** RFC 7396 MergePatch(target, patch), without mutating either. `target` undefined means absent. */
export function apply(patch: Patch, target: Json | undefined): Json {
  debugAssert(() => isPlainJson(patch, false), 'apply: patch is not plain JSON');
  return applyAt(patch, target);
}

function applyAt(patch: Patch, target: Json | undefined): Json {
  if (!isObject(patch)) return patch;
  const base = isObject(target) ? target : EMPTY;
  // Changed members of base (undefined: deleted), and members that are new.
  let changes: Map<string, Json | undefined> | undefined;
  let addedKeys: string[] | undefined;
  let addedValues: Json[] | undefined;
  for (const key in patch) {
    const value = patch[key] as Json;
    const has = Object.hasOwn(base, key);
    if (value === null) {
      if (has) (changes ??= new Map()).set(key, undefined);
      continue;
    }
    const before = has ? (base[key] as Json) : undefined;
    const after = applyAt(value, before);
    if (after === before) continue;
    if (has) (changes ??= new Map()).set(key, after);
    else {
      (addedKeys ??= []).push(key);
      (addedValues ??= []).push(after);
    }
  }
  if (changes === undefined && addedKeys === undefined) return base === target ? base : freeze({});
  const out: JsonObject = {};
  for (const key in base) {
    if (changes?.has(key)) {
      const value = changes.get(key);
      if (value !== undefined) put(out, key, value);
    } else put(out, key, base[key] as Json);
  }
  if (addedKeys !== undefined) {
    for (let i = 0; i < addedKeys.length; i++) put(out, addedKeys[i] as string, (addedValues as Json[])[i] as Json);
  }
  return freeze(out);
}

/**
 * RFC 7396 MergePatch applied by mutating `target`, for replicas that keep one copy of the
 * state. Values from the patch are copied in, so the patch (often also logged or sent) never
 * aliases the state. Same result and key order as `apply`.
 */
export function applyInPlace(patch: JsonObject, target: JsonObject): void {
  debugAssert(() => isPlainJson(patch, false), 'applyInPlace: patch is not plain JSON');
  for (const key in patch) {
    const value = patch[key] as Json;
    if (value === null) {
      delete target[key];
      continue;
    }
    const before = Object.hasOwn(target, key) ? target[key] : undefined;
    if (isObject(value) && isObject(before)) applyInPlace(value, before);
    else put(target, key, mutableCopy(value));
  }
}

/** A mutable deep copy; object members that are null are dropped (an object merged onto nothing). */
function mutableCopy(value: Json): Json {
  if (!isObject(value)) return cloneJson(value);
  const out: JsonObject = {};
  for (const key in value) {
    const item = value[key] as Json;
    if (item !== null) put(out, key, mutableCopy(item));
  }
  return out;
}

/**
 * Memo of diffs between object pairs, shared while computing many viewers' deltas for one
 * state change: public subtrees are the same objects in every viewer's view, so their diff is
 * computed once.
 */
export type DiffCache = Map<JsonObject, { readonly b: JsonObject; readonly patch: Patch | typeof NO_CHANGE }>;

/** A patch that takes `a` to `b`. Null-valued members on either side count as absent. */
export function diff(a: Json, b: Json, cache?: DiffCache): Patch {
  const patch = diffAt(a, b, cache);
  if (patch !== NO_CHANGE) return patch;
  return isObject(a) ? EMPTY : b;
}

const NO_CHANGE = Symbol('no change');

function diffAt(a: Json | undefined, b: Json, cache: DiffCache | undefined): Patch | typeof NO_CHANGE {
  if (a === b) return NO_CHANGE;
  if (!isObject(b)) return a !== undefined && jsonEqual(a, b) ? NO_CHANGE : b;
  if (!isObject(a)) return b;
  if (cache !== undefined) {
    const hit = cache.get(a);
    if (hit !== undefined && hit.b === b) return hit.patch;
  }
  let out: JsonObject | undefined;
  for (const key in a) {
    const before = a[key] as Json;
    if (before === null) continue;
    const after = Object.hasOwn(b, key) ? (b[key] as Json) : null;
    if (after === null) {
      put((out ??= {}), key, null);
      continue;
    }
    const sub = diffAt(before, after, cache);
    if (sub !== NO_CHANGE) put((out ??= {}), key, sub);
  }
  for (const key in b) {
    const after = b[key] as Json;
    if (after === null || (Object.hasOwn(a, key) && a[key] !== null)) continue;
    put((out ??= {}), key, after);
  }
  const patch = out === undefined ? NO_CHANGE : freeze(out);
  cache?.set(a, { b, patch });
  return patch;
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
    throw new PatchError(`cannot compose at ${path === '' ? 'the root' : path}: the first patch replaces the value with ` + `${JSON.stringify(p)} and the second merges an object into it`);
  }
  const out: JsonObject = {};
  for (const key in p) {
    if (!Object.hasOwn(q, key)) put(out, key, p[key] as Json);
    else {
      const qv = q[key] as Json;
      put(out, key, isObject(qv) ? composeAt(p[key] as Json, qv, `${path}.${key}`) : qv);
    }
  }
  for (const key in q) if (!Object.hasOwn(p, key)) put(out, key, q[key] as Json);
  return freeze(out);
}

/** The normalized change of one message: redo takes `before` to the next state, undo takes it back. */
export interface Change {
  readonly redo: JsonObject;
  readonly undo: JsonObject;
}

/**
 * Normalizes an object patch against the state it will be applied to and computes its
 * inverse. The redo drops members that change nothing; apply(undo, apply(redo, state)) equals
 * state for every null-free state, in value but not always in key order: a member that the
 * redo deleted comes back at the end. Nothing rolls replicas back with undo (speculation
 * re-executes from the confirmed state), so key order stays a function of the redo history.
 * Costs the size of the patch.
 */
export function change(patch: JsonObject, state: JsonObject): Change {
  debugAssert(() => isPlainJson(patch, false), 'change: patch is not plain JSON');
  return changeAt(patch, state) ?? { redo: EMPTY, undo: EMPTY };
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
      put((redo ??= {}), key, null);
      put((undo ??= {}), key, before);
      continue;
    }
    if (isObject(value) && isObject(before)) {
      const sub = changeAt(value, before);
      if (sub === undefined) continue;
      put((redo ??= {}), key, sub.redo);
      put((undo ??= {}), key, sub.undo);
      continue;
    }
    // A replacement: RFC 7396 strips nulls from an object merged into a non-object.
    const after = applyAt(value, undefined);
    if (has && jsonEqual(after, before)) continue;
    put((redo ??= {}), key, after);
    // The undo may hold the old value itself: applying the redo (even in place) detaches it
    // from the state, and nothing mutates a detached value.
    put((undo ??= {}), key, before);
  }
  if (redo === undefined || undo === undefined) return undefined;
  return { redo: freeze(redo), undo: freeze(undo) };
}
