// npm run token -- --viewer NAME [--ttl-s SECONDS] [--key-id KID]: prints a signed viewer token for the proxy.

import { parseArgs } from 'node:util';
import { devViewerSecret, keyIdPattern, mintToken, parseViewerSecrets, tokenLifetimeMsMaxDefault, viewerPattern, type ViewerKey } from './tokens.ts';

const help = `usage: npm run token -- --viewer NAME [--ttl-s SECONDS] [--key-id KID] [--dev]

Prints a viewer token for the proxy's WebSocket protocol (proxy/PROTOCOL.md), signed with a
key of ADAMA_VIEWER_SECRET: either one secret (key id k0) or a keyring "kid:secret,kid:secret"
(the proxy accepts every key of its ring; tokens are signed with the first, or --key-id).
Without ADAMA_VIEWER_SECRET it refuses, unless --dev: then it signs with the published local
development secret, which only a proxy in development mode accepts.

  --viewer NAME    who the token speaks for (${viewerPattern})
  --ttl-s SECONDS  how long it is valid (default 3600; at most ${tokenLifetimeMsMaxDefault / 1_000}, the
                   proxy's default tokenLifetimeMsMax: a longer-lived token is refused)
  --key-id KID     which key of the ring signs (${keyIdPattern}; default: the first)
  --dev            sign with the development secret when ADAMA_VIEWER_SECRET is not set
  --help           this text`;

function fail(message: string): never {
  console.error(`token: ${message}\n\n${help}`);
  process.exit(2);
}

function main(): void {
  let values: { viewer?: string; 'ttl-s'?: string; 'key-id'?: string; dev?: boolean; help?: boolean };
  try {
    values = parseArgs({
      options: {
        viewer: { type: 'string' },
        'ttl-s': { type: 'string', default: '3600' },
        'key-id': { type: 'string' },
        dev: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    console.log(help);
    return;
  }
  const viewer = values.viewer;
  if (viewer === undefined || !viewerPattern.test(viewer)) fail(`--viewer is required and must match ${viewerPattern}`);
  const ttl = Number(values['ttl-s']);
  if (!Number.isFinite(ttl) || ttl <= 0) fail('--ttl-s takes a positive number of seconds');
  if (ttl * 1_000 > tokenLifetimeMsMaxDefault) fail(`--ttl-s is at most ${tokenLifetimeMsMaxDefault / 1_000} (tokenLifetimeMsMax); a proxy refuses longer-lived tokens`);
  const text = process.env.ADAMA_VIEWER_SECRET;
  let key: ViewerKey;
  if (text === undefined || text === '') {
    if (!values.dev) fail('ADAMA_VIEWER_SECRET is not set (or pass --dev to sign with the development secret)');
    console.error('warning: signing with the published development secret; only a proxy in development mode accepts it');
    key = { id: 'k0', secret: devViewerSecret };
  } else {
    let parsed: ReturnType<typeof parseViewerSecrets>;
    try {
      parsed = parseViewerSecrets(text);
    } catch (error) {
      fail(`ADAMA_VIEWER_SECRET: ${(error as Error).message}`);
    }
    const wanted = values['key-id'];
    if (wanted === undefined) key = parsed.signing;
    else {
      const secret = Object.hasOwn(parsed.keyring, wanted) ? parsed.keyring[wanted] : undefined;
      if (secret === undefined) fail(`--key-id ${wanted} is not in ADAMA_VIEWER_SECRET (it has ${Object.keys(parsed.keyring).join(', ')})`);
      key = { id: wanted, secret };
    }
  }
  console.log(mintToken(key, viewer, ttl * 1_000));
}

main();
