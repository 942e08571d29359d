import test from 'ava';
import { type CpuProfile, categorize, category } from './cpu-profile.ts';

test('functions fall into the categories the profile reports', (t) => {
  t.is(category('(idle)', ''), 'idle');
  t.is(category('(garbage collector)', ''), 'GC');
  t.is(category('writeBuffer', ''), 'socket I/O');
  t.is(category('put', 'file:///w/node_modules/classic-level/index.js'), 'LevelDB (classic-level)');
  t.is(category('decode', 'file:///w/node_modules/protobufjs/src/reader.js'), 'protobuf');
  t.is(category('stringify', ''), 'JSON');
  t.is(category('fromPred', 'file:///w/chain/core/replica.ts'), 'replica (chain/core)');
  t.is(category('pump', 'file:///w/chain/runtime/driver.ts'), 'runtime (chain/runtime, client, control)');
  t.is(category('execute', 'file:///w/engine/execute.ts'), 'engine');
  t.is(category('load', 'file:///w/node_modules/tsx/dist/esm/index.mjs'), 'startup (tsx, module loading)');
});

test('self time is the sum of the sample intervals of each node, by category; other is itemised', (t) => {
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '' } },
      { id: 2, callFrame: { functionName: 'fromPred', url: 'file:///w/chain/core/replica.ts' } },
      { id: 3, callFrame: { functionName: 'writeBuffer', url: '' } },
      { id: 4, callFrame: { functionName: 'mystery', url: 'file:///w/x.js' } },
    ],
    samples: [2, 3, 2, 4, 99],
    timeDeltas: [10, 20, 30, 5, 7],
  };
  const { categories, other } = categorize(profile);
  t.is(categories.get('replica (chain/core)'), 40);
  t.is(categories.get('socket I/O'), 20);
  t.is(categories.get('other'), 5);
  t.deepEqual([...other], [['mystery file:///w/x.js', 5]]);
});
