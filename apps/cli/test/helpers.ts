// Runs the built `qforge` binary the way a user does, with a clean, isolated environment.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = join(__dirname, '..', 'bin', 'run.js');
export const REPO = join(__dirname, '..', '..', '..');
export const EXAMPLE = join(REPO, 'examples', 'mnist', 'mnist-cnn.onnx');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export function qforge(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? mkdtempSync(join(tmpdir(), 'qforge-cli-')),
    env: { ...process.env, PYTHONPATH: mkdtempSync(join(tmpdir(), 'empty-py-')), XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')), ...options.env },
    encoding: 'utf8',
    timeout: 300000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) };
}
