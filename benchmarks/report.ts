// Shared output for benchmarks: a table on stdout and a JSON file in benchmarks/results/,
// stamped with the machine, the Node.js version and the git commit, so papers/ can
// regenerate every figure from files that say where they came from.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** Writes `benchmarks/results/<name>.json` and returns its path. */
export function writeResults(name: string, body: Record<string, unknown>): string {
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}.json`);
  const document = { benchmark: name, date: new Date().toISOString(), commit: gitCommit(), machine: machine(), ...body };
  writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
  return file;
}

/** Prints rows as an aligned text table (numbers right-aligned). */
export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0] as object);
  const cell = (value: string | number | undefined) => (value === undefined ? '' : String(value));
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => cell(row[column]).length)));
  const line = (values: (string | number | undefined)[]) =>
    values.map((value, i) => (typeof value === 'number' ? cell(value).padStart(widths[i] as number) : cell(value).padEnd(widths[i] as number))).join('  ');
  console.log(line(columns));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(columns.map((column) => row[column])));
}

/** Parses `--name value` and `--flag` arguments; prints `usage` and exits on --help. */
export function parseArgs(argv: string[], usage: string, known: Record<string, 'flag' | 'number' | 'string'>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') {
      console.log(usage);
      process.exit(0);
    }
    const name = arg.replace(/^--/, '');
    const kind = known[name];
    if (!arg.startsWith('--') || kind === undefined) {
      console.error(`unknown argument ${arg}\n\n${usage}`);
      process.exit(2);
    }
    if (kind === 'flag') {
      out[name] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) {
      console.error(`${arg} needs a value\n\n${usage}`);
      process.exit(2);
    }
    if (kind === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0) {
        console.error(`${arg} needs a positive number, not ${value}`);
        process.exit(2);
      }
      out[name] = n;
    } else out[name] = value;
  }
  return out;
}
