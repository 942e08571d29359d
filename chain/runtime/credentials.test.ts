import test from 'ava';
import { CredentialError, deriveKeyring, devClusterSecret, keyRoles, keysFromEnv, onlyRoles } from './credentials.ts';

const quiet = { dev: false, warn: () => {} };

test('each role gets its own key from a cluster secret; another cluster or secret gives other keys', (t) => {
  const a = deriveKeyring('a-cluster-secret-of-some-length', 'one');
  t.is(new Set(keyRoles.map((r) => a[r])).size, 4, 'four different keys');
  for (const r of keyRoles) t.is(Buffer.from(a[r], 'base64url').length, 32);
  t.notDeepEqual(deriveKeyring('a-cluster-secret-of-some-length', 'two'), a);
  t.notDeepEqual(deriveKeyring('another-cluster-secret-here', 'one'), a);
  t.deepEqual(deriveKeyring('a-cluster-secret-of-some-length', 'one'), a, 'deterministic');
});

test('a process gets only the keys of its roles, from role keys or a cluster secret', (t) => {
  const all = deriveKeyring('a-cluster-secret-of-some-length', 'c');
  t.deepEqual(keysFromEnv({ ADAMA_CLUSTER_SECRET: 'a-cluster-secret-of-some-length' }, 'c', ['client'], quiet), { client: all.client });
  t.deepEqual(keysFromEnv({ ADAMA_ADMIN_KEY: all.admin, ADAMA_GOSSIP_KEY: all.gossip, ADAMA_CLIENT_KEY: all.client }, 'c', ['admin', 'gossip'], quiet), onlyRoles(all, ['admin', 'gossip']));
  const missing = t.throws(() => keysFromEnv({ ADAMA_CLIENT_KEY: all.client }, 'c', ['admin'], quiet), { instanceOf: CredentialError });
  t.regex(missing?.message ?? '', /ADAMA_ADMIN_KEY/);
});

test('finding 8: no credentials, the development secret, or a short secret are refused without --dev', (t) => {
  t.throws(() => keysFromEnv({}, 'c', ['peer'], quiet), { instanceOf: CredentialError, message: /--dev/ });
  t.throws(() => keysFromEnv({ ADAMA_CLUSTER_SECRET: devClusterSecret }, 'c', ['peer'], quiet), { instanceOf: CredentialError, message: /development secret/ });
  t.throws(() => keysFromEnv({ ADAMA_CLUSTER_SECRET: 'short' }, 'c', ['peer'], quiet), { instanceOf: CredentialError, message: /at least/ });
  const devKeys = deriveKeyring(devClusterSecret, 'c');
  t.throws(() => keysFromEnv({ ADAMA_PEER_KEY: devKeys.peer }, 'c', ['peer'], quiet), { instanceOf: CredentialError, message: /derived from the development secret/ });
  const warnings: string[] = [];
  const keys = keysFromEnv({}, 'c', ['peer'], { dev: true, warn: (line) => warnings.push(line) });
  t.deepEqual(keys, { peer: deriveKeyring(devClusterSecret, 'c').peer });
  t.is(warnings.length, 1);
  t.regex(warnings[0] ?? '', /WARNING: --dev/);
});
