// Viewer tokens: key ids and keyrings (rotation), the lifetime bound, and the parser of ADAMA_VIEWER_SECRET.

import test from 'ava';
import fc from 'fast-check';
import { mintToken, parseViewerSecrets, tokenLifetimeMsMaxDefault, verifyToken } from './tokens.ts';

const ring = { k1: 'first-viewer-secret-0123456789', k2: 'second-viewer-secret-0123456789' };

test('a token verifies under the key its kid names, and under no other; a retired kid is refused', (t) => {
  const now = 1_000_000;
  const token = mintToken({ id: 'k2', secret: ring.k2 }, 'alice', 60_000, now);
  t.like(verifyToken(ring, token, { now }), { ok: true, viewer: 'alice', keyId: 'k2', expiresAt: now + 60_000 });
  t.like(verifyToken({ k2: ring.k1 }, token, { now }), { ok: false, code: 'bad_token' });
  t.like(verifyToken({ k1: ring.k1 }, token, { now }), { ok: false, code: 'bad_token' });
  // A kid swapped in the body breaks the signature.
  const [body, mac] = token.split('.') as [string, string];
  const swapped = Buffer.from(Buffer.from(body, 'base64url').toString().replace('"k2"', '"k1"')).toString('base64url');
  t.like(verifyToken(ring, `${swapped}.${mac}`, { now }), { ok: false, code: 'bad_token' });
});

test('a token expiring further out than tokenLifetimeMsMax is refused, however well signed', (t) => {
  const now = Date.now();
  t.like(verifyToken(ring.k1, mintToken(ring.k1, 'bob', tokenLifetimeMsMaxDefault - 1_000, now), { now }), { ok: true });
  t.like(verifyToken(ring.k1, mintToken(ring.k1, 'bob', tokenLifetimeMsMaxDefault + 1_000, now), { now }), { ok: false, code: 'bad_token' });
  t.like(verifyToken(ring.k1, mintToken(ring.k1, 'bob', Date.UTC(9999, 0, 1) - now, now), { now }), { ok: false, code: 'bad_token' });
  t.like(verifyToken(ring.k1, mintToken(ring.k1, 'bob', 60_000, now), { now, lifetimeMsMax: 1_000 }), { ok: false, code: 'bad_token' });
});

test('ADAMA_VIEWER_SECRET: one secret is key k0; a keyring signs with its first key; bad entries are refused', (t) => {
  t.deepEqual(parseViewerSecrets('0123456789abcdef0123').signing, { id: 'k0', secret: '0123456789abcdef0123' });
  const parsed = parseViewerSecrets(`k2:${ring.k2},k1:${ring.k1}`);
  t.deepEqual(parsed.signing, { id: 'k2', secret: ring.k2 });
  t.deepEqual(parsed.keyring, { k2: ring.k2, k1: ring.k1 });
  t.throws(() => parseViewerSecrets('k1:short'));
  t.throws(() => parseViewerSecrets(`k1:${ring.k1},k1:${ring.k2}`));
  t.throws(() => parseViewerSecrets(`bad id:${ring.k1}`));
});

test('fuzz: verifyToken answers any input with a typed result and never throws', (t) => {
  const good = mintToken({ id: 'k1', secret: ring.k1 }, 'carol', 60_000);
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 1_100 }),
        fc.jsonValue(),
        fc.constant(good).map((g) => `${g}x`),
        fc.base64String().map((b) => `${b}.${b}`),
      ),
      (token) => {
        const check = verifyToken(ring, token);
        return check.ok ? check.viewer === 'carol' : check.code === 'bad_token' || check.code === 'expired_token';
      },
    ),
    { numRuns: 2_000 },
  );
  t.like(verifyToken(ring, good), { ok: true });
});

test('a token issued for longer than tokenLifetimeMsMax stays refused as it ages (the lifetime is exp - iat)', (t) => {
  const secret = 'a-viewer-secret-long-enough';
  const issued = 1_700_000_000_000;
  const year = 365 * 24 * 3_600_000;
  const token = mintToken(secret, 'mallory', year, issued);
  const late = verifyToken(secret, token, { now: issued + year - 12 * 3_600_000, lifetimeMsMax: 24 * 3_600_000 });
  t.false(late.ok, 'refused half a day before its expiry too');
  t.true(verifyToken(secret, mintToken(secret, 'alice', 3_600_000, issued), { now: issued + 1_000, lifetimeMsMax: 24 * 3_600_000 }).ok);
});
