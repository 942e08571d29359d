// Opens the configuration store a --config-store URL names (config-store.ts): the embedded
// file (default: DATA/manager/config-store.json) or etcd.

import path from 'node:path';
import { type ConfigStore, parseStoreUrl } from './config-store.ts';
import { EmbeddedConfigStore } from './embedded-store.ts';
import { EtcdConfigStore } from './etcd-store.ts';

export function openConfigStore(url: string, options: { cluster: string; dataDir: string; log?: (line: string) => void }): ConfigStore {
  const parsed = parseStoreUrl(url);
  if (typeof parsed === 'string') throw new Error(parsed);
  if (parsed.kind === 'embedded') return EmbeddedConfigStore.open(parsed.path ?? path.join(options.dataDir, 'manager', 'config-store.json'));
  return EtcdConfigStore.connect({ endpoints: parsed.endpoints, prefix: parsed.prefix, cluster: options.cluster, log: options.log });
}

/** The store a node checks pushed configurations against: etcd only (with the embedded store a node trusts its manager). */
export function nodeConfigStore(url: string | undefined, options: { cluster: string; log?: (line: string) => void }): ConfigStore | undefined {
  return url?.startsWith('etcd://') === true ? openConfigStore(url, { ...options, dataDir: '.' }) : undefined;
}
