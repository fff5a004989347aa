// A run started from the dashboard records a `qforge quantize …` command that reruns it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StartRunRequest } from '@qforge/dashboard';
import { rerunCommand } from '../src/commands/dashboard';
import { EXAMPLE, qforge } from './helpers';

const request: StartRunRequest = { model: EXAMPLE, data: 'mnist:calib', evalData: 'mnist:test', backend: 'auto', target: 'auto', mode: 'static', method: 'minmax', samples: 8, evalSamples: 50, inputShape: ['1,1,28,28'] };

/** The words a POSIX shell makes of `command`. */
const shellWords = (command: string) => spawnSync('sh', ['-c', `printf '%s\\n' ${command}`], { encoding: 'utf8' }).stdout.trimEnd().split('\n');

describe('the command recorded for a dashboard run', () => {
  it('reruns the same quantization from a shell', () => {
    const runsDir = mkdtempSync(join(tmpdir(), 'qforge-rerun-'));
    const command = rerunCommand(request, runsDir);
    expect(command).toMatch(/^qforge quantize /);
    const words = shellWords(command);
    expect(words).toEqual(expect.arrayContaining(['--input-shape', '1,1,28,28', '--data', 'mnist:calib', '--runs-dir', runsDir]));
    const r = qforge([...words.slice(1), '--json']);
    expect(r.code).toBe(0);
    const [run] = readdirSync(runsDir).filter((d) => !d.startsWith('.'));
    const report = JSON.parse(readFileSync(join(runsDir, run, 'report.json'), 'utf8'));
    expect(report).toMatchObject({ status: 'succeeded', calibration: { sampleCount: 8 } });
  });

  it('leaves --method out for `auto`, as the CLI without it (the searches may then change the method)', () => {
    expect(shellWords(rerunCommand({ ...request, method: 'auto' }, '/tmp/runs'))).not.toContain('--method');
    expect(shellWords(rerunCommand(request, '/tmp/runs'))).toEqual(expect.arrayContaining(['--method', 'minmax']));
  });

  it('quotes paths a shell would split or expand, so the words come back unchanged', () => {
    const odd = "/tmp/my models/it's $HOME/m.onnx";
    const words = shellWords(rerunCommand({ ...request, model: odd, mean: '0.5', resize: 'pad' }, '/tmp/runs dir'));
    expect(words.slice(0, 3)).toEqual(['qforge', 'quantize', odd]);
    expect(words).toEqual(expect.arrayContaining(['--mean', '0.5', '--resize', 'pad', '--runs-dir', '/tmp/runs dir']));
  });
});
