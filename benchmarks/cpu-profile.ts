// V8 CPU profiles (.cpuprofile, as --cpu-prof writes them) summed by category of self time:
// what npm run profile prints.

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The category of one function's self time. */
export function category(fn: string, url: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'native (program)';
  if (/node_modules\/(tsx|esbuild|get-tsconfig)/.test(url) || url.startsWith('node:internal/modules')) return 'startup (tsx, module loading)';
  if (/node_modules\/(classic-level|abstract-level|level-|maybe-combine-errors|module-error)/.test(url)) return 'LevelDB (classic-level)';
  if (url.includes('node_modules/protobufjs') || url.includes('node_modules/@protobufjs')) return 'protobuf';
  if (url === '' && (fn === 'parse' || fn === 'stringify')) return 'JSON';
  if (url.includes('_tls_') || url.includes('node:tls') || fn.includes('SSL') || fn === 'encOut' || fn === 'onhandshakedone') return 'TLS';
  if (/^(writeBuffer|writev|writeGeneric|writevGeneric|handleWriteReq|writeUtf8String|onStreamRead)$/.test(fn) || url.includes('stream_base_commons')) return 'socket I/O';
  if (url.includes('/chain/core/')) return 'replica (chain/core)';
  if (url.includes('/chain/runtime/') || url.includes('/chain/client/') || url.includes('/chain/control/')) return 'runtime (chain/runtime, client, control)';
  if (url.includes('/engine/')) return 'engine';
  if (url.startsWith('node:')) return 'node internals (streams, timers, buffers)';
  return 'other';
}

/** Self time (µs) per category of one profile, and the functions that make up "other". */
export function categorize(profile: CpuProfile): { categories: Map<string, number>; other: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const categories = new Map<string, number>();
  const other = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i] as number);
    if (node === undefined) continue;
    const { functionName, url } = node.callFrame;
    const c = category(functionName, url);
    const us = profile.timeDeltas[i] ?? 0;
    categories.set(c, (categories.get(c) ?? 0) + us);
    if (c === 'other') {
      const name = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '')}`;
      other.set(name, (other.get(name) ?? 0) + us);
    }
  }
  return { categories, other };
}
