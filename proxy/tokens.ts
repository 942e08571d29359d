// Viewer tokens: who a WebSocket client is, signed by whoever runs the proxy.
//
//   token = base64url(JSON {v: viewer, iat: issued, exp: expires (ms since epoch), kid: key id}) "." base64url(HMAC-SHA256)
//
// The MAC covers "adama-viewer/2|" + the first part, under the viewer secret named by `kid`.
// The proxy holds several secrets by key id (a keyring), so a new key can sign new tokens while
// tokens of the old one still verify until it is removed: key rotation without a flag day.
// A token whose expiry is further out than tokenLifetimeMsMax is refused, however well signed.

import { createHmac, timingSafeEqual } from 'node:crypto';

/** Signs tokens in explicit development mode only (ProxyOptions.dev, `npm start -- --dev`); the proxy refuses it otherwise. */
export const devViewerSecret = 'adama-local-dev-viewer-secret';
/** Secrets the proxy refuses outside development mode: they are published. */
export const knownViewerSecrets: readonly string[] = Object.freeze([devViewerSecret]);

export const viewerPattern = /^[A-Za-z0-9._-]{1,64}$/;
export const keyIdPattern = /^[A-Za-z0-9_-]{1,32}$/;
/** The key id of a single secret given without one (ADAMA_VIEWER_SECRET=secret). */
export const defaultKeyId = 'k0';
/** Bound on a token's text (characters). */
export const tokenCharsMax = 1_024;
/** Shortest viewer secret accepted (characters). */
export const viewerSecretCharsMin = 16;
/** Default bound on how far in the future a token may expire (ms): longer-lived tokens are refused. */
export const tokenLifetimeMsMaxDefault = 24 * 3_600_000;

/** One signing key: its id (in every token it signs) and its secret. */
export interface ViewerKey {
  readonly id: string;
  readonly secret: string;
}

/** Every secret the proxy accepts, by key id. */
export type ViewerKeyring = Readonly<Record<string, string>>;

export type TokenCheck =
  | { readonly ok: true; readonly viewer: string; readonly expiresAt: number; readonly keyId: string }
  | { readonly ok: false; readonly code: 'bad_token' | 'expired_token'; readonly message: string };

function mac(secret: string, body: string): Buffer {
  return createHmac('sha256', secret).update('adama-viewer/2|').update(body).digest();
}

/** A keyring of one secret (key id k0) or the keyring itself. */
export function keyringOf(secrets: string | ViewerKeyring): ViewerKeyring {
  return typeof secrets === 'string' ? { [defaultKeyId]: secrets } : secrets;
}

/**
 * Parses a keyring from text: `kid:secret,kid:secret` (the first is the one new tokens are signed
 * with), or a single secret without a key id (then its id is k0). Throws on a bad entry.
 */
export function parseViewerSecrets(text: string): { keyring: ViewerKeyring; signing: ViewerKey } {
  const entries = text.includes(':') ? text.split(',') : [`${defaultKeyId}:${text}`];
  const keyring: Record<string, string> = {};
  let signing: ViewerKey | undefined;
  for (const entry of entries) {
    const at = entry.indexOf(':');
    const id = entry.slice(0, at).trim();
    const secret = entry.slice(at + 1).trim();
    if (at <= 0 || !keyIdPattern.test(id)) throw new Error(`viewer secrets are kid:secret,kid:secret with key ids matching ${keyIdPattern}`);
    if (secret.length < viewerSecretCharsMin) throw new Error(`viewer secret ${id} is shorter than ${viewerSecretCharsMin} characters`);
    if (id in keyring) throw new Error(`viewer key id ${id} appears twice`);
    keyring[id] = secret;
    signing ??= { id, secret };
  }
  if (signing === undefined) throw new Error('no viewer secret');
  return { keyring, signing };
}

/** Clock difference between the minting and the checking host tolerated for iat (ms). */
export const tokenClockSkewMs = 60_000;

export function mintToken(key: string | ViewerKey, viewer: string, ttlMs: number, now = Date.now()): string {
  const { id, secret } = typeof key === 'string' ? { id: defaultKeyId, secret: key } : key;
  if (!viewerPattern.test(viewer)) throw new Error(`viewer names match ${viewerPattern}, not ${JSON.stringify(viewer)}`);
  if (!keyIdPattern.test(id)) throw new Error(`key ids match ${keyIdPattern}, not ${JSON.stringify(id)}`);
  if (secret.length < 8) throw new Error('the viewer secret must be at least 8 characters');
  if (!Number.isFinite(ttlMs)) throw new Error('the token lifetime must be a finite number of ms');
  const body = Buffer.from(JSON.stringify({ v: viewer, iat: Math.floor(now), exp: Math.floor(now + ttlMs), kid: id })).toString('base64url');
  return `${body}.${mac(secret, body).toString('base64url')}`;
}

export interface VerifyOptions {
  readonly now?: number;
  /** A token expiring later than now + this is refused (default tokenLifetimeMsMaxDefault). */
  readonly lifetimeMsMax?: number;
}

const base64urlPattern = /^[A-Za-z0-9_-]+$/;

export function verifyToken(secrets: string | ViewerKeyring, token: unknown, options: VerifyOptions | number = {}): TokenCheck {
  const { now = Date.now(), lifetimeMsMax = tokenLifetimeMsMaxDefault } = typeof options === 'number' ? { now: options } : options;
  const bad = (message: string): TokenCheck => ({ ok: false, code: 'bad_token', message });
  if (typeof token !== 'string' || token.length === 0 || token.length > tokenCharsMax) return bad(`a token is a non-empty string of at most ${tokenCharsMax} characters`);
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return bad('a token has two parts separated by one dot');
  const body = token.slice(0, dot);
  const signature = token.slice(dot + 1);
  if (!base64urlPattern.test(body) || !base64urlPattern.test(signature)) return bad('a token is two base64url parts');
  // The body is small (tokenCharsMax) and flat; its key id says which secret to check it with.
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return bad('the token body is not JSON');
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return bad('the token body is not an object');
  const { v, iat, exp, kid } = claims as { v?: unknown; iat?: unknown; exp?: unknown; kid?: unknown };
  if (typeof kid !== 'string' || !keyIdPattern.test(kid)) return bad('the token names no key id (kid)');
  const keyring = keyringOf(secrets);
  const secret = Object.hasOwn(keyring, kid) ? keyring[kid] : undefined;
  if (secret === undefined) return bad(`the token's key ${kid} is not one this proxy accepts (retired, or from elsewhere)`);
  const given = Buffer.from(signature, 'base64url');
  const expected = mac(secret, body);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return bad('the token signature does not match (wrong secret, or the token was altered)');
  if (typeof v !== 'string' || !viewerPattern.test(v) || typeof exp !== 'number' || !Number.isFinite(exp)) return bad('the token body lacks a viewer or an expiry');
  if (exp <= now) return { ok: false, code: 'expired_token', message: `the token expired ${Math.round((now - exp) / 1000)} s ago; get a new one` };
  // The lifetime is exp - iat: a long-lived token does not become acceptable as it ages.
  if (typeof iat !== 'number' || !Number.isFinite(iat) || iat > now + tokenClockSkewMs) return bad('the token has no valid issue time (iat)');
  if (exp - iat > lifetimeMsMax) return bad(`the token was issued for ${Math.round((exp - iat) / 1000)} s; this proxy accepts at most ${Math.round(lifetimeMsMax / 1000)} s (tokenLifetimeMsMax)`);
  if (exp - now > lifetimeMsMax) return bad(`the token expires in ${Math.round((exp - now) / 1000)} s; this proxy accepts at most ${Math.round(lifetimeMsMax / 1000)} s (tokenLifetimeMsMax)`);
  return { ok: true, viewer: v, expiresAt: exp, keyId: kid };
}
