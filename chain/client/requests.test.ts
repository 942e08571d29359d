// One request's bad input fails that request alone, with a typed, non-retryable error, and
// never reaches (or closes) the link every other request shares.

import test from 'ava';
import type { Frame } from '../core/frames.ts';
import type { Link, LinkError } from '../runtime/io.ts';
import { systemClock } from '../runtime/system.ts';
import { type ChainError, HeadLink, type SubmitRequest } from './requests.ts';

/** A link that records what is sent and never answers. */
class RecordingLink implements Link {
  readonly sent: Frame[] = [];
  closed = false;
  readonly remote = { node: 'n1', role: 'listener' as const };
  get isOpen(): boolean {
    return !this.closed;
  }
  send(frame: Frame): void {
    this.sent.push(frame);
  }
  fail(): void {
    this.closed = true;
  }
  close(): void {
    this.closed = true;
  }
  onFrame(): void {}
  onClose(_handler: (error: LinkError | undefined) => void): void {}
}

const base: SubmitRequest = { chain: 'c1', doc: 'd', docType: 'counter', channel: 'add', payload: { by: 1 }, clientId: 'x.1', clientSeq: 1, viewer: 'x' };

function submit(link: HeadLink, r: SubmitRequest): Promise<ChainError | undefined> {
  return new Promise((resolve) => {
    try {
      link.submit(r, (e) => resolve(e));
    } catch (e) {
      resolve(Object.assign(new Error(`submit threw: ${(e as Error).message}`), { code: 'threw', retryable: true }) as unknown as ChainError);
    }
    // A request that was sent gets no answer from this link: resolve after a moment.
    setTimeout(() => resolve(undefined), 50);
  });
}

test('a payload too deep to stringify, a lone surrogate, an oversized payload: each fails alone, typed and not retryable, and nothing is sent', async (t) => {
  const raw = new RecordingLink();
  const link = new HeadLink(raw, systemClock, { payloadBytesMax: 10_000, requestTimeoutMs: 1_000 });
  let deep: unknown = 1;
  for (let i = 0; i < 200_000; i++) deep = [deep];
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const cases: [string, SubmitRequest, string][] = [
    ['deep', { ...base, payload: deep }, 'invalid_payload'],
    ['cyclic', { ...base, payload: cyclic }, 'invalid_payload'],
    ['bigint', { ...base, payload: 10n }, 'invalid_payload'],
    ['lone surrogate channel', { ...base, channel: '\ud800' }, 'invalid_request'],
    ['lone surrogate doc', { ...base, doc: 'a\udfff' }, 'invalid_request'],
    ['oversized', { ...base, payload: 'x'.repeat(20_000) }, 'payload_too_large'],
    ['oversized in UTF-8', { ...base, payload: '\u20ac'.repeat(4_000) }, 'payload_too_large'],
  ];
  for (const [name, r, code] of cases) {
    const e = await submit(link, r);
    t.is(e?.code, code, name);
    t.is(e?.retryable, false, name);
  }
  t.deepEqual(raw.sent, [], 'a bad request reached the link');
  t.false(raw.closed);
  // The link still carries good requests.
  await submit(link, base);
  t.is(raw.sent.length, 1);
  t.is(raw.sent[0]?.kind, 'submit');
});
