// Credentials: one key per role, so each process holds only what its job needs.
//
//   peer    node to node (a node dials its successor with it)
//   admin   manager and operator tools to a node: configure, control, full status
//   client  proxy, benchmark clients and tools to a node: submit, subscribe, lookup
//   gossip  signs the failure detector's datagrams (nodes and managers)
//
// A node holds all four (it accepts every role, and a node is trusted with the chain anyway);
// a manager holds admin and gossip; the proxy holds client only, so it cannot configure a
// chain or read a document's full state. Keys are random 32-byte values in base64url text.
// An operator may keep one cluster secret and derive the four from it (HKDF-SHA256 with the
// cluster id as salt): `npm run chain -- keys` prints them for handing out one by one.
//
// Transport: TLS 1.3 with the role key as a pre-shared key (tcp: connection.ts). Both ends
// prove they hold the key, and TLS protects every frame after the handshake. `plain` is the
// earlier HMAC handshake without TLS (only the dialer proves its key; frames are not
// protected); it exists so the benchmark can measure what TLS costs, and says so when used.

import { hkdfSync, randomBytes } from 'node:crypto';

export const keyRoles = ['peer', 'admin', 'client', 'gossip'] as const;
export type KeyRole = (typeof keyRoles)[number];
export type Keyring = Partial<Record<KeyRole, string>>;
export type Transport = 'tls' | 'plain';

/** The development cluster secret: accepted only with an explicit --dev, and then loudly. */
export const devClusterSecret = 'adama-local-dev-secret';
/** A cluster secret or a key is at least this long (characters). */
export const secretCharsMin = 16;

export interface Credentials {
  readonly cluster: string;
  /** A cluster secret every role key is derived from (operators, tests); or give `keys`. */
  readonly secret?: string;
  /** Role keys (they win over ones derived from `secret`). */
  readonly keys?: Keyring;
  /** Default tls. */
  readonly transport?: Transport;
}

export class CredentialError extends Error {
  override name = 'CredentialError';
}

/** The four role keys of a cluster secret. */
export function deriveKeyring(secret: string, cluster: string): Required<Keyring> {
  const key = (role: KeyRole): string => Buffer.from(hkdfSync('sha256', secret, cluster, `adama-chain/key/${role}`, 32)).toString('base64url');
  return { peer: key('peer'), admin: key('admin'), client: key('client'), gossip: key('gossip') };
}

/** The keys these credentials grant. */
export function keyringOf(c: Credentials): Keyring {
  return { ...(c.secret === undefined ? {} : deriveKeyring(c.secret, c.cluster)), ...c.keys };
}

/** The key for `role`, or a CredentialError that says what to set. */
export function keyFor(keys: Keyring, role: KeyRole): string {
  const key = keys[role];
  if (key === undefined || key === '') throw new CredentialError(`no ${role} key: set ${envName(role)} (or ADAMA_CLUSTER_SECRET to derive every key)`);
  return key;
}

/** Only the keys of `roles`. */
export function onlyRoles(keys: Keyring, roles: readonly KeyRole[]): Keyring {
  const out: Keyring = {};
  for (const role of roles) if (keys[role] !== undefined) out[role] = keys[role];
  return out;
}

export function envName(role: KeyRole): string {
  return `ADAMA_${role.toUpperCase()}_KEY`;
}

/** The environment that hands `keys` to a child process. */
export function keyEnv(keys: Keyring): Record<string, string> {
  const env: Record<string, string> = {};
  for (const role of keyRoles) if (keys[role] !== undefined) env[envName(role)] = keys[role] as string;
  return env;
}

/** A fresh random cluster secret. */
export function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** What every process running on the development secret says when it starts. */
export const devSecretWarning = `WARNING: --dev: running on the public development secret "${devClusterSecret}". Anyone who has this code can join this cluster, configure its chains and read every document. Never use it outside your own machine.`;

/** A cluster secret's rules: not the development secret (unless dev), and not short. */
export function checkClusterSecret(secret: string, dev: boolean): void {
  if (secret === devClusterSecret && !dev) throw new CredentialError(`the cluster secret is the development secret "${devClusterSecret}": set a secret of your own, or pass --dev`);
  if (secret.length < secretCharsMin) throw new CredentialError(`the cluster secret is ${secret.length} characters; use at least ${secretCharsMin} (for example: openssl rand -base64 32)`);
}

/**
 * The keys a process gets from its environment: ADAMA_<ROLE>_KEY for each role it needs, or
 * ADAMA_CLUSTER_SECRET to derive them. With neither: the development secret when `dev`, else
 * a CredentialError. The development secret without `dev` is refused.
 */
export function keysFromEnv(
  env: NodeJS.ProcessEnv,
  cluster: string,
  roles: readonly KeyRole[],
  options: { readonly dev: boolean; readonly secret?: string; readonly warn: (line: string) => void },
): Keyring {
  const secret = options.secret ?? env.ADAMA_CLUSTER_SECRET;
  const given: Keyring = {};
  for (const role of roles) {
    const v = env[envName(role)];
    if (v !== undefined && v !== '') given[role] = v;
  }
  if (secret !== undefined && secret !== '') {
    checkClusterSecret(secret, options.dev);
    return onlyRoles({ ...deriveKeyring(secret, cluster), ...given }, roles);
  }
  const missing = roles.filter((r) => given[r] === undefined);
  if (missing.length === 0) {
    const dev = deriveKeyring(devClusterSecret, cluster);
    for (const role of roles) {
      if ((given[role] as string).length < secretCharsMin) throw new CredentialError(`${envName(role)} is shorter than ${secretCharsMin} characters`);
      if (given[role] === dev[role] && !options.dev) throw new CredentialError(`${envName(role)} is derived from the development secret "${devClusterSecret}": use keys of your own, or pass --dev`);
    }
    return given;
  }
  if (!options.dev) {
    throw new CredentialError(`no credentials: set ADAMA_CLUSTER_SECRET, or ${missing.map(envName).join(', ')}; or pass --dev to run on the public development secret (never outside your machine)`);
  }
  options.warn(devSecretWarning);
  return onlyRoles({ ...deriveKeyring(devClusterSecret, cluster), ...given }, roles);
}
