// Document types: initial state, channels (validated message handlers), per-field privacy
// rules and per-viewer computed values. See README.md ("Writing a document type").

import { assert } from './assert.ts';
import { canonicalize, cloneJson, deepFreeze, isObject, type Json, type JsonObject } from './json.ts';
import type { Validator } from './validate.ts';

/** A viewer is identified by a non-empty string (a user or player id). */
export type Viewer = string;

// ---------------------------------------------------------------------------------------------
// Privacy rules

/**
 * How one part of the state is shown to a viewer.
 * - `pub`: everyone sees it.
 * - `hidden`: nobody sees it (a deck, a secret).
 * - `ownedBy(...fields)`: only the viewer named by one of these fields of the object that holds
 *   the value (for a collection entry, the entry itself). `'$key'` names the key of the
 *   nearest enclosing collection entry, so `collection(record({ email: ownedBy('$key') }))`
 *   shows each entry's email only to the viewer it is keyed by.
 * - `policy(fn)`: visible when fn(viewer, state) is true; evaluated on every view.
 * - `record({...})`: an object with per-member rules; members without a rule are hidden.
 * - `collection(rule)`: an object keyed by id whose entries all follow `rule`; entries the
 *   viewer may not see are left out entirely, so their ids do not leak either.
 * A hidden member of a record goes out as null.
 */
export type Rule = PublicRule | HiddenRule | OwnerRule | PolicyRule | RecordRule | CollectionRule;

export interface PublicRule {
  readonly kind: 'public';
  readonly dynamic: false;
}
export interface HiddenRule {
  readonly kind: 'hidden';
  readonly dynamic: false;
}
export interface OwnerRule {
  readonly kind: 'owner';
  readonly fields: readonly string[];
  readonly dynamic: false;
}
export interface PolicyRule {
  readonly kind: 'policy';
  // biome-ignore lint/suspicious/noExplicitAny: each document type's own state type; erased here
  readonly test: (viewer: Viewer, state: any) => boolean;
  readonly dynamic: true;
}
export interface RecordRule {
  readonly kind: 'record';
  readonly fields: Readonly<Record<string, Rule>>;
  /** True when some rule below depends on the whole state, so a view cannot be reused by identity. */
  readonly dynamic: boolean;
}
export interface CollectionRule {
  readonly kind: 'collection';
  readonly item: Rule;
  readonly dynamic: boolean;
}

export const pub: PublicRule = Object.freeze({ kind: 'public', dynamic: false });
export const hidden: HiddenRule = Object.freeze({ kind: 'hidden', dynamic: false });

export function ownedBy(...fields: string[]): OwnerRule {
  assert(fields.length > 0, 'ownedBy needs at least one field');
  return Object.freeze({ kind: 'owner', fields: Object.freeze([...fields]), dynamic: false });
}

export function policy<S>(test: (viewer: Viewer, state: S) => boolean): PolicyRule {
  return Object.freeze({ kind: 'policy', test, dynamic: true });
}

export function record(fields: Record<string, Rule>): RecordRule {
  const dynamic = Object.values(fields).some((rule) => rule.dynamic);
  return Object.freeze({ kind: 'record', fields: Object.freeze({ ...fields }), dynamic });
}

export function collection(item: Rule): CollectionRule {
  return Object.freeze({ kind: 'collection', item, dynamic: item.dynamic });
}

// ---------------------------------------------------------------------------------------------
// Channels

export type DeepReadonly<T> = T extends (infer U)[] ? readonly DeepReadonly<U>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

/** What a handler returns: an RFC 7396 merge patch of the state (null deletes a member). */
export type MergePatch<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: MergePatch<T[K]> | null } : T;

export interface ChannelContext<E extends string> {
  readonly doc: string;
  readonly seq: number;
  /** The envelope's timestamp (ms since the epoch), assigned by the chain head. */
  readonly now: number;
  /** Who sent the message. */
  readonly viewer: Viewer;
  /** A float in [0, 1) from the document's PRNG (keyed by its secret entropy: random.ts). */
  random(): number;
  /** An integer in [0, bound) from the document's PRNG (keyed by its secret entropy: random.ts). */
  randomInt(bound: number): number;
  /** Rejects the message with a typed error: the state is left unchanged. */
  reject(code: E, message: string): never;
}

// biome-ignore lint/suspicious/noConfusingVoidType: a handler may end without a return statement (no change)
export type Handler<S, P, E extends string> = (state: DeepReadonly<S>, payload: P, ctx: ChannelContext<E>) => MergePatch<S> | undefined | void;

export interface Channel {
  readonly name: string;
  readonly validator: Validator<unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: channels of every state and payload type live in one map
  readonly handler: Handler<any, any, string>;
}

export type Computed<S> = (viewer: Viewer, state: DeepReadonly<S>) => Json;

// ---------------------------------------------------------------------------------------------
// Errors and limits

/** Error codes the engine itself produces; document types add their own. */
export const engineErrorCodes = ['unknown_channel', 'invalid_payload', 'payload_too_large', 'handler_failed', 'invalid_patch', 'nondeterministic_call'] as const;
export type EngineErrorCode = (typeof engineErrorCodes)[number];

export interface DocumentLimits {
  /** Largest accepted payload, as UTF-8 JSON bytes. */
  readonly payloadBytesMax: number;
  /** Deepest accepted payload nesting, in levels. */
  readonly payloadDepthMax: number;
  /** Deepest patch a handler may return, in levels. */
  readonly patchDepthMax: number;
}

export const defaultLimits: DocumentLimits = Object.freeze({
  payloadBytesMax: 16 * 1024,
  payloadDepthMax: 16,
  patchDepthMax: 32,
});

// ---------------------------------------------------------------------------------------------
// Document types

export interface DocumentSpec<S, E extends string> {
  readonly name: string;
  readonly initial: S;
  /** Error codes handlers may reject with (`ctx.reject(code, message)`). */
  readonly errors?: readonly E[];
  /** Privacy rules for the state's top-level members. */
  readonly privacy: Record<string, Rule>;
  /** Per-viewer values added to each viewer's view under these names. */
  readonly computed?: Record<string, Computed<S>>;
  readonly limits?: Partial<DocumentLimits>;
}

// biome-ignore lint/suspicious/noExplicitAny: a DocumentType of unknown state is usable everywhere (registries, the chain)
export class DocumentType<S extends object = any, E extends string = string> {
  readonly name: string;
  readonly initial: JsonObject;
  readonly errors: ReadonlySet<string>;
  readonly privacy: RecordRule;
  readonly computed: ReadonlyArray<readonly [string, Computed<S>]>;
  readonly limits: DocumentLimits;
  private readonly channelsByName = new Map<string, Channel>();

  constructor(spec: DocumentSpec<S, E>) {
    assert(/^[a-z][a-z0-9-]{0,63}$/.test(spec.name), `document type name ${JSON.stringify(spec.name)} is not kebab-case`);
    const initial = canonicalize(spec.initial, { dropNulls: true });
    assert(isObject(initial), `${spec.name}: the initial state must be an object`);
    this.name = spec.name;
    // Frozen even outside debug runs: every new document starts from it, so nothing may change it.
    this.initial = deepFreeze(initial);
    this.errors = new Set(spec.errors ?? []);
    for (const code of this.errors) {
      assert(/^[a-z][a-z0-9_]*$/.test(code), `${spec.name}: error code ${code} is not snake_case`);
      assert(!(engineErrorCodes as readonly string[]).includes(code), `${spec.name}: error code ${code} is reserved`);
    }
    this.privacy = record(spec.privacy);
    this.computed = Object.entries(spec.computed ?? {});
    for (const [name] of this.computed) {
      assert(!Object.hasOwn(spec.privacy, name), `${spec.name}: computed value ${name} shadows a state member`);
    }
    this.limits = Object.freeze({ ...defaultLimits, ...spec.limits });
  }

  /** Adds a channel: messages on it are validated, then handled. Returns this for chaining. */
  channel<P>(name: string, validator: Validator<P>, handler: Handler<S, P, E>): this {
    assert(/^[a-zA-Z][a-zA-Z0-9_]{0,63}$/.test(name), `${this.name}: channel name ${JSON.stringify(name)} is invalid`);
    assert(!this.channelsByName.has(name), `${this.name}: channel ${name} is defined twice`);
    // biome-ignore lint/suspicious/noExplicitAny: see Channel.handler
    this.channelsByName.set(name, Object.freeze({ name, validator, handler: handler as Handler<any, any, string> }));
    return this;
  }

  /** A mutable copy of the initial state, for a replica that executes in place. */
  createState(): JsonObject {
    return cloneJson(this.initial);
  }

  findChannel(name: string): Channel | undefined {
    return this.channelsByName.get(name);
  }

  get channels(): string[] {
    return [...this.channelsByName.keys()];
  }
}

/** Defines a document type; add channels with `.channel(name, validator, handler)`. */
export function defineDocument<S extends object, const E extends string = never>(spec: DocumentSpec<S, E>): DocumentType<S, E> {
  return new DocumentType<S, E>(spec);
}
