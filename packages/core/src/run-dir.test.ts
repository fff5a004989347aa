// Run folders: stale work folders of dead processes go, live ones stay; wrong arguments make no folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beginWorkDir, endWorkDir, partialRunDirName, preflightRun, removeActiveWorkDirs, removeStalePartials } from './run-dir';

const dir = mkdtempSync(join(tmpdir(), 'qforge-rundir-'));
const model = { path: join(dir, 'm.onnx'), format: 'onnx' as const };
writeFileSync(model.path, 'x');

describe('work folders', () => {
  it('removes the work folder of a dead process and keeps a live one', () => {
    const runs = join(dir, 'runs');
    // A pid that surely ended: a child that already exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    expect(dead).toBeGreaterThan(0);
    mkdirSync(join(runs, partialRunDirName('old-run', dead)), { recursive: true });
    mkdirSync(join(runs, partialRunDirName('live-run', process.ppid)));
    mkdirSync(join(runs, '20260101T000000Z-done-run'));
    expect(removeStalePartials(runs)).toEqual([partialRunDirName('old-run', dead)]);
    expect(readdirSync(runs).sort()).toEqual([partialRunDirName('live-run', process.ppid), '20260101T000000Z-done-run'].sort());
  });

  it('names the work folder with its pid and removes unfinished ones on demand (signals, exit)', () => {
    const runs = join(dir, 'runs2');
    const a = beginWorkDir(runs, 'a');
    const b = beginWorkDir(runs, 'b');
    expect(a.endsWith(`.a.${process.pid}.partial`)).toBe(true);
    endWorkDir(b);
    expect(removeActiveWorkDirs()).toEqual([a]);
    expect(existsSync(a)).toBe(false);
    expect(existsSync(b)).toBe(true);
  });
});

describe('checks before a run folder exists', () => {
  const base = { model, mode: 'static', data: 'random', biasCorrection: false };
  it.each([
    ['NaN min SNR', { thresholds: { minSnrDb: Number('abc') } }],
    ['NaN accuracy drop', { thresholds: { maxAccuracyDropPoints: Number('abc') } }],
    ['percentile 150', { percentile: 150 }],
    ['negative float share', { maxFloatShare: -1 }],
    ['too many samples', { samples: 99999999999 }],
    ['static without data', { data: undefined }],
  ])('refuses %s with E_INVALID_OPTION', (_name, extra) => {
    expect(() => preflightRun({ ...base, ...extra })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });

  it('accepts sound values, and refuses an output that is the input', () => {
    expect(() => preflightRun({ ...base, thresholds: { minSnrDb: 20, maxAccuracyDropPoints: 1 }, percentile: 99.99, maxFloatShare: 0.1, samples: 128, output: join(dir, 'out.onnx') })).not.toThrow();
    expect(() => preflightRun({ ...base, output: join(dir, '.', 'm.onnx') })).toThrow(expect.objectContaining({ code: 'E_OUTPUT_IS_INPUT' }));
    expect(() => preflightRun({ ...base, data: join(dir, 'no-such-folder') })).toThrow(expect.objectContaining({ code: 'E_DATASET_NOT_FOUND' }));
    expect(() => preflightRun({ ...base, data: '/dev/zero' })).toThrow(expect.objectContaining({ code: 'E_NOT_REGULAR_FILE' }));
  });
});
