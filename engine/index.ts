// The document engine: deterministic execution, merge-patch deltas, privacy views and
// speculation. Nothing here does I/O; the chain's tail executes with it and the head
// speculates and computes views with it.

export { AssertionError, assert } from './assert.ts';
export {
  collection,
  defineDocument,
  defaultLimits,
  DocumentType,
  engineErrorCodes,
  hidden,
  ownedBy,
  policy,
  pub,
  record,
  type ChannelContext,
  type DocumentLimits,
  type EngineErrorCode,
  type MergePatch,
  type Rule,
  type Viewer,
} from './document.ts';
export { LimitError } from './errors.ts';
export { execute, type Envelope, type Execution, type Outcome } from './execute.ts';
export { canonicalize, canonicalJson, jsonEqual, type Json, type JsonObject } from './json.ts';
export { documentRandom, type DocumentEntropy, type Random } from './random.ts';
export { apply, change, compose, diff, PatchError, type Change, type Patch } from './patch.ts';
export { Speculation, type CommittedDelta, type Pending, type Transition } from './speculation.ts';
export { v, ValidationError, type Infer, type Validator } from './validate.ts';
export { Audience, view, viewDelta } from './view.ts';
export { documentTypes, findDocumentType } from './documents/index.ts';
