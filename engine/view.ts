// Per-viewer, privacy-filtered views of a document state, and the deltas between them.
//
// view(type, state, viewer) applies the type's privacy rules and adds its computed values.
// viewDelta(previous, next) is the merge patch a client applies to move from one view to the
// next. Because a delta is a diff of two filtered views, it cannot carry a value the viewer
// may not see; `Audience` keeps each viewer's last view so it can send only deltas.
//
// Cost: views share unchanged subtrees with the state (a public value is the state's own
// frozen object) and with the viewer's previous view (a rule subtree that holds no policy is
// reused by identity when its state subtree is identical), and diff skips identical subtrees.
// So one message costs each viewer roughly the size of what it changed, not of the state.

import { assert, debugAssert } from './assert.ts';
import type { CollectionRule, DocumentType, RecordRule, Rule, Viewer } from './document.ts';
import { LimitError } from './errors.ts';
import { canonicalize, freeze, isObject, isPlainJson, put, type Json, type JsonObject } from './json.ts';
import { diff, type DiffCache, type Patch } from './patch.ts';
import { sealGlobals } from './seal.ts';

/** A viewer's previous state and view, so unchanged subtrees can be reused. */
export interface ViewMemo {
  readonly state: JsonObject;
  readonly view: JsonObject;
}

/** The view of `state` for `viewer`. Hidden record members are null; hidden collection entries are absent. */
export function view(type: DocumentType, state: JsonObject, viewer: Viewer, memo?: ViewMemo): JsonObject {
  const seal = sealGlobals();
  try {
    return viewUnsealed(type, state, viewer, memo);
  } finally {
    seal.restore();
    assertNoNondeterminism(type, seal.names);
  }
}

/** The merge patch that moves a client from `previous` to `next`. */
export function viewDelta(previous: JsonObject, next: JsonObject): Patch {
  return diff(previous, next);
}

function assertNoNondeterminism(type: DocumentType, names: readonly string[]): void {
  assert(names.length === 0, () => `${type.name}: a privacy policy or computed value called ${names.join(', ')}`);
}

function viewUnsealed(type: DocumentType, state: JsonObject, viewer: Viewer, memo: ViewMemo | undefined): JsonObject {
  assert(typeof viewer === 'string' && viewer.length > 0, 'view: empty viewer');
  const body = viewObject(type.privacy, state, viewer, state, undefined, memo?.state, memo?.view);
  let result = body;
  if (type.computed.length > 0) {
    const values = new Map<string, Json>();
    for (const [name, compute] of type.computed) {
      assert(!Object.hasOwn(body, name), () => `${type.name}: computed value ${name} collides with a state member`);
      let value: Json;
      try {
        value = canonicalize(compute(viewer, state as never));
      } catch {
        value = null; // a failing computed value shows as absent rather than breaking the view
      }
      values.set(name, value);
    }
    const out: JsonObject = {};
    for (const key in body) put(out, key, body[key] as Json);
    for (const [name, value] of values) put(out, name, value);
    result = freeze(out);
  }
  debugAssert(() => isPlainJson(result, false), 'view: result is not plain JSON');
  return result;
}

/**
 * The view of an object under a record rule (members follow their own rules; a hidden member
 * stays, as null) or a collection rule (entries follow one rule; a hidden entry is left out).
 */
function viewObject(
  rule: RecordRule | CollectionRule,
  value: JsonObject,
  viewer: Viewer,
  root: JsonObject,
  entryKey: string | undefined,
  prevState: Json | undefined,
  prevView: Json | undefined,
): JsonObject {
  const isRecord = rule.kind === 'record';
  const out: JsonObject = {};
  const prevStateObj = isObject(prevState) ? prevState : undefined;
  const prevViewObj = isObject(prevView) ? prevView : undefined;
  for (const key in value) {
    const member = value[key] as Json;
    let memberRule: Rule;
    let holder: JsonObject;
    if (isRecord) {
      memberRule = Object.hasOwn(rule.fields, key) ? (rule.fields[key] as Rule) : HIDDEN;
      holder = value;
    } else {
      memberRule = rule.item;
      holder = isObject(member) ? member : NO_FIELDS; // a primitive entry names no owner
    }
    const memberEntryKey = isRecord ? entryKey : key;
    const item = viewValue(memberRule, member, viewer, root, holder, memberEntryKey, prevStateObj?.[key], prevViewObj?.[key]);
    if (item === undefined || (item === null && !isRecord)) continue;
    put(out, key, item);
  }
  return freeze(out);
}

const HIDDEN: Rule = Object.freeze({ kind: 'hidden', dynamic: false });
const NO_FIELDS: JsonObject = Object.freeze({}) as JsonObject;

/**
 * The viewer's view of one value; undefined means "leave it out". `holder` is the object that
 * holds the value (for a collection entry, the entry itself); `entryKey` is the key of the
 * nearest enclosing collection entry, which `ownedBy('$key')` compares with the viewer.
 */
function viewValue(
  rule: Rule,
  value: Json,
  viewer: Viewer,
  root: JsonObject,
  holder: JsonObject,
  entryKey: string | undefined,
  prevState: Json | undefined,
  prevView: Json | undefined,
): Json | undefined {
  switch (rule.kind) {
    case 'public':
      return value;
    case 'hidden':
      return null;
    case 'owner':
      for (const field of rule.fields) {
        const owner = field === '$key' ? entryKey : holder[field];
        if (owner === viewer) return value;
      }
      return null;
    case 'policy': {
      let visible = false;
      try {
        visible = rule.test(viewer, root) === true;
      } catch {
        visible = false; // a failing policy hides
      }
      return visible ? value : null;
    }
    case 'record':
      if (!isObject(value)) return null;
      if (!rule.dynamic && value === prevState && prevView !== undefined) return prevView;
      return viewObject(rule, value, viewer, root, entryKey, prevState, prevView);
    case 'collection':
      if (!isObject(value)) return null;
      if (rule.item.kind === 'public') return value;
      if (rule.item.kind === 'owner' && rule.item.fields.length === 1 && rule.item.fields[0] === '$key') {
        return ownEntry(value, viewer, prevView);
      }
      if (!rule.dynamic && value === prevState && prevView !== undefined) return prevView;
      return viewObject(rule, value, viewer, root, entryKey, prevState, prevView);
  }
}

/**
 * `collection(ownedBy('$key'))`: the viewer sees only the entry keyed by their own id, found
 * by one lookup instead of a scan (per-viewer data such as counter contributions).
 */
function ownEntry(value: JsonObject, viewer: Viewer, prevView: Json | undefined): JsonObject {
  const entry = Object.hasOwn(value, viewer) ? (value[viewer] as Json) : undefined;
  if (isObject(prevView)) {
    const before = Object.hasOwn(prevView, viewer) ? prevView[viewer] : undefined;
    if (before === entry) return prevView;
  }
  const out: JsonObject = {};
  if (entry !== undefined) put(out, viewer, entry);
  return freeze(out);
}

// ---------------------------------------------------------------------------------------------

/**
 * The viewers of one stream of states (the head keeps one for confirmed state and one for
 * speculative state). Holds each viewer's last view; `advance` returns each viewer's delta.
 * States must be persistent (from `execute` without `inPlace`, or `apply`): views reuse
 * unchanged subtrees by identity, so a state mutated in place would show stale values.
 */
export class Audience {
  private readonly views = new Map<Viewer, JsonObject>();
  private current: JsonObject;

  constructor(
    readonly type: DocumentType,
    state: JsonObject,
    /** Bound on concurrent viewers of this stream. */
    readonly viewersMax = 10_000,
  ) {
    assert(Number.isInteger(viewersMax) && viewersMax > 0, 'Audience: viewersMax must be a positive integer');
    this.current = state;
  }

  get state(): JsonObject {
    return this.current;
  }

  get size(): number {
    return this.views.size;
  }

  viewers(): IterableIterator<Viewer> {
    return this.views.keys();
  }

  /** Adds a viewer and returns its full view (the first frame of its stream). */
  join(viewer: Viewer): JsonObject {
    const existing = this.views.get(viewer);
    if (existing !== undefined) return existing;
    if (this.views.size >= this.viewersMax) {
      throw new LimitError('viewersMax', this.viewersMax, `document of type ${this.type.name} has too many viewers`);
    }
    const full = view(this.type, this.current, viewer);
    this.views.set(viewer, full);
    return full;
  }

  leave(viewer: Viewer): void {
    this.views.delete(viewer);
  }

  viewOf(viewer: Viewer): JsonObject | undefined {
    return this.views.get(viewer);
  }

  /** Moves the stream to `next`; returns the non-empty view delta of every viewer. */
  advance(next: JsonObject): Map<Viewer, Patch> {
    const deltas = new Map<Viewer, Patch>();
    const previous = this.current;
    if (next === previous) return deltas;
    debugAssert(() => Object.isFrozen(next), 'Audience.advance: states must be persistent, not mutated in place');
    // Compute every view first and commit only when all succeeded, so a failing document
    // leaves each viewer's stored view consistent with what that viewer was sent.
    const seal = sealGlobals();
    const cache: DiffCache = new Map();
    const views = new Map<Viewer, JsonObject>();
    try {
      for (const [viewer, before] of this.views) {
        const after = viewUnsealed(this.type, next, viewer, { state: previous, view: before });
        views.set(viewer, after);
        const delta = diff(before, after, cache);
        if (isObject(delta) && isEmpty(delta)) continue;
        deltas.set(viewer, delta);
      }
    } finally {
      seal.restore();
    }
    assertNoNondeterminism(this.type, seal.names);
    for (const [viewer, after] of views) this.views.set(viewer, after);
    this.current = next;
    return deltas;
  }
}

function isEmpty(value: JsonObject): boolean {
  for (const _ in value) return false;
  return true;
}
