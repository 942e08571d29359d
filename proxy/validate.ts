// Checks of untrusted JSON at the edge, all iterative (no recursion an input can deepen):
// the nesting depth of a message's text is counted BEFORE it is parsed, and after parsing
// every string (keys included) must be well-formed UTF-16 and the values are counted, before
// anything is stringified again or leaves for the chain. A message that fails gets a typed
// error and is refused alone; nothing reaches the proxy's shared connections to the heads.

import { wellFormed } from '../chain/client/requests.ts';

export interface JsonLimits {
  /** Deepest nesting of arrays and objects in a send's payload. */
  readonly payloadDepthMax: number;
  /** Values (and keys) in one message, all levels together. */
  readonly messageValuesMax: number;
}

export type JsonProblem = { readonly code: 'too_deep' | 'invalid_string' | 'payload_too_large'; readonly message: string };

/**
 * The deepest nesting of `[` and `{` in JSON text, stopping as soon as it passes `depthMax`
 * (returns depthMax + 1 then). Brackets inside strings do not count. Linear, no recursion.
 */
export function jsonDepth(text: string, depthMax: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > depthMax) return deepest;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

/** Walks a parsed value without recursion: every string and key well-formed, at most `valuesMax` values, at most `depthMax` deep. */
export function inspectJson(value: unknown, depthMax: number, valuesMax: number): JsonProblem | undefined {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  let values = 0;
  while (stack.length > 0) {
    const { value: v, depth } = stack.pop() as { value: unknown; depth: number };
    if (++values > valuesMax) return { code: 'payload_too_large', message: `a message holds at most ${valuesMax} values (messageValuesMax)` };
    if (typeof v === 'string') {
      if (!wellFormed(v)) return { code: 'invalid_string', message: 'strings must be well-formed UTF-16 (a lone surrogate is not)' };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= depthMax) return { code: 'too_deep', message: `values nest at most ${depthMax} deep` };
    if (Array.isArray(v)) {
      for (const item of v) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    for (const [key, item] of Object.entries(v)) {
      if (++values > valuesMax) return { code: 'payload_too_large', message: `a message holds at most ${valuesMax} values (messageValuesMax)` };
      if (!wellFormed(key)) return { code: 'invalid_string', message: 'keys must be well-formed UTF-16 (a lone surrogate is not)' };
      stack.push({ value: item, depth: depth + 1 });
    }
  }
  return undefined;
}

/**
 * Parses one client message: the text's depth first (a message is one object, its payload at
 * most payloadDepthMax below it), then JSON.parse, then inspectJson of the whole message.
 */
export function parseMessage(text: string, limits: JsonLimits): { ok: true; value: unknown } | { ok: false; code: string; message: string } {
  const depthMax = limits.payloadDepthMax + 1;
  if (jsonDepth(text, depthMax) > depthMax) return { ok: false, code: 'too_deep', message: `a payload nests at most ${limits.payloadDepthMax} deep (payloadDepthMax)` };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, code: 'malformed_json', message: 'the message is not JSON text' };
  }
  const problem = inspectJson(value, depthMax, limits.messageValuesMax);
  if (problem !== undefined) return { ok: false, ...problem };
  return { ok: true, value };
}
