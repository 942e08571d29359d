// npm run token -- --viewer NAME [--ttl-s SECONDS]: prints a signed viewer token for the proxy.

import { parseArgs } from 'node:util';
import { devViewerSecret, mintToken, viewerPattern } from './tokens.ts';

const help = `usage: npm run token -- --viewer NAME [--ttl-s SECONDS]

Prints a viewer token for the proxy's WebSocket protocol (proxy/PROTOCOL.md), signed with
ADAMA_VIEWER_SECRET (without it, the local development secret, with a warning).

  --viewer NAME    who the token speaks for (${viewerPattern})
  --ttl-s SECONDS  how long it is valid (default 86400)`;

function main(): void {
  let values: { viewer?: string; 'ttl-s'?: string; help?: boolean };
  try {
    values = parseArgs({ options: { viewer: { type: 'string' }, 'ttl-s': { type: 'string', default: '86400' }, help: { type: 'boolean', default: false } }, strict: true }).values;
  } catch (error) {
    console.error(`token: ${(error as Error).message}\n\n${help}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(help);
    return;
  }
  const viewer = values.viewer;
  if (viewer === undefined || !viewerPattern.test(viewer)) {
    console.error(`token: --viewer is required and must match ${viewerPattern}\n\n${help}`);
    process.exit(2);
  }
  const ttl = Number(values['ttl-s']);
  if (!Number.isFinite(ttl) || ttl <= 0) {
    console.error('token: --ttl-s takes a positive number of seconds');
    process.exit(2);
  }
  const secret = process.env.ADAMA_VIEWER_SECRET;
  if (secret === undefined || secret === '') console.error('warning: no ADAMA_VIEWER_SECRET set; signing with the local development secret');
  console.log(mintToken(secret || devViewerSecret, viewer, ttl * 1_000));
}

main();
