// Viewer tokens: who a WebSocket client is, signed by whoever runs the proxy.
//
//   token = base64url(JSON {v: viewer, exp: ms since epoch}) "." base64url(HMAC-SHA256)
//
// The MAC covers "adama-viewer/1|" + the first part, under the viewer secret (config or the
// ADAMA_VIEWER_SECRET environment variable).

import { createHmac, timingSafeEqual } from 'node:crypto';

/** Signs tokens when ADAMA_VIEWER_SECRET is not set (local development only). */
export const devViewerSecret = 'adama-local-dev-viewer-secret';

export const viewerPattern = /^[A-Za-z0-9._-]{1,64}$/;
/** Bound on a token's text (characters). */
export const tokenCharsMax = 1_024;

export type TokenCheck = { readonly ok: true; readonly viewer: string; readonly expiresAt: number } | { readonly ok: false; readonly code: 'bad_token' | 'expired_token'; readonly message: string };

function mac(secret: string, body: string): Buffer {
  return createHmac('sha256', secret).update('adama-viewer/1|').update(body).digest();
}

export function mintToken(secret: string, viewer: string, ttlMs: number, now = Date.now()): string {
  if (!viewerPattern.test(viewer)) throw new Error(`viewer names match ${viewerPattern}, not ${JSON.stringify(viewer)}`);
  if (secret.length < 8) throw new Error('the viewer secret must be at least 8 characters');
  const body = Buffer.from(JSON.stringify({ v: viewer, exp: Math.floor(now + ttlMs) })).toString('base64url');
  return `${body}.${mac(secret, body).toString('base64url')}`;
}

export function verifyToken(secret: string, token: unknown, now = Date.now()): TokenCheck {
  const bad = (message: string): TokenCheck => ({ ok: false, code: 'bad_token', message });
  if (typeof token !== 'string' || token.length === 0 || token.length > tokenCharsMax) return bad('a token is a non-empty string of at most 1024 characters');
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return bad('a token has two parts separated by one dot');
  const body = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = mac(secret, body);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return bad('the token signature does not match (wrong secret, or the token was altered)');
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return bad('the token body is not JSON');
  }
  const { v, exp } = (claims ?? {}) as { v?: unknown; exp?: unknown };
  if (typeof v !== 'string' || !viewerPattern.test(v) || typeof exp !== 'number') return bad('the token body lacks a viewer or an expiry');
  if (exp <= now) return { ok: false, code: 'expired_token', message: `the token expired ${Math.round((now - exp) / 1000)} s ago; get a new one` };
  return { ok: true, viewer: v, expiresAt: exp };
}
