// Finding 8 (issue 15), as a user meets it: a node process refuses to start on no secret or on
// the published development secret, and starts on it only with --dev, saying so loudly.

import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { devClusterSecret } from '../runtime/credentials.ts';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cli.ts');

/** Runs `chain node`; resolves with its exit code (or 'listening' once it serves) and stderr. */
function runNode(env: Record<string, string>, extra: string[] = []): Promise<{ result: number | 'listening'; stderr: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'adama-cli-'));
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ADAMA_')));
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'node', '--id', 'n1', '--data', path.join(dir, 'n1'), ...extra], { env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  return new Promise((resolve) => {
    const done = (result: number | 'listening'): void => {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      resolve({ result, stderr });
    };
    child.stdout.on('data', (d) => String(d).includes('"listening"') && done('listening'));
    child.once('exit', (code) => done(code ?? -1));
  });
}

test('finding 8: a node refuses to start without credentials', async (t) => {
  const r = await runNode({});
  t.is(r.result, 2);
  t.regex(r.stderr, /no credentials: set ADAMA_CLUSTER_SECRET/);
});

test('finding 8: a node refuses the published development secret unless --dev, and warns with it', async (t) => {
  const refused = await runNode({ ADAMA_CLUSTER_SECRET: devClusterSecret });
  t.is(refused.result, 2);
  t.regex(refused.stderr, /development secret/);
  const dev = await runNode({}, ['--dev']);
  t.is(dev.result, 'listening');
  t.regex(dev.stderr, /WARNING: --dev: running on the public development secret/);
});

test('a node starts on a secret of its own, without a warning', async (t) => {
  const r = await runNode({ ADAMA_CLUSTER_SECRET: 'a-secret-that-is-long-enough-here' });
  t.is(r.result, 'listening');
  t.notRegex(r.stderr, /WARNING/);
});
