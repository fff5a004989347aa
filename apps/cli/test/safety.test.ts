// Inputs are sacred, crashes are clean, bad arguments are coded errors (JSON with --json) and leave no run folder.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, EXAMPLE, REPO, qforge } from './helpers';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const work = mkdtempSync(join(tmpdir(), 'qforge-cli-safety-'));
const model = join(work, 'm.onnx');
cpSync(EXAMPLE, model);
const before = sha(model);
const tfjsDir = join(work, 'tfjs');
cpSync(join(REPO, 'examples', 'mnist', 'tfjs'), tfjsDir, { recursive: true });
const tfjsFiles = readdirSync(tfjsDir).map((f) => [f, sha(join(tfjsDir, f))]);
const haveMkfifo = spawnSync('mkfifo', [join(work, 'fifo.onnx')]).status === 0;

/** Runs qforge and checks it failed with `code`, as JSON on stdout, and made no run folder. */
function refused(args: string[], code: string): void {
  const runs = join(work, `runs-${Math.random().toString(36).slice(2)}`);
  const r = qforge([...args, '--runs-dir', runs, '--json'], { cwd: work });
  expect({ exit: r.code, code: r.json().error?.code }).toEqual({ exit: 2, code });
  expect(existsSync(runs) ? readdirSync(runs) : []).toEqual([]);
}

describe('-o never overwrites an input', () => {
  if (!existsSync(join(work, 'link.onnx'))) symlinkSync(model, join(work, 'link.onnx'));
  it.each([
    ['the model itself', ['-o', model]],
    ['the model through ..', ['-o', join(work, 'sub', '..', 'm.onnx')]],
    ['a symlink to the model', ['-o', join(work, 'link.onnx')]],
    ['a relative path to the model', ['-o', 'm.onnx']],
  ])('%s: E_OUTPUT_IS_INPUT, input unchanged', (_name, extra) => {
    refused(['quantize', model, '--data', 'random', '--samples', '2', ...extra], 'E_OUTPUT_IS_INPUT');
    expect(sha(model)).toBe(before);
  });

  it('a tfjs weight-only model over its model.json or its shard', () => {
    for (const f of readdirSync(tfjsDir)) refused(['quantize', join(tfjsDir, 'model.json'), '--mode', 'weight-only', '-o', join(tfjsDir, f)], 'E_OUTPUT_IS_INPUT');
    expect(readdirSync(tfjsDir).map((f) => [f, sha(join(tfjsDir, f))])).toEqual(tfjsFiles);
  });

  it('a device node or a folder at -o is refused; a new path is written (the twin)', () => {
    refused(['quantize', model, '--data', 'random', '--samples', '2', '-o', '/dev/null'], 'E_OUTPUT_UNWRITABLE');
    mkdirSync(join(work, 'a-folder'), { recursive: true });
    refused(['quantize', model, '--data', 'random', '--samples', '2', '-o', join(work, 'a-folder')], 'E_OUTPUT_UNWRITABLE');
    const ok = qforge(['quantize', model, '--data', 'random', '--samples', '2', '--no-verify', '--no-benchmark', '-o', join(work, 'm.int8.onnx'), '--runs-dir', join(work, 'ok-runs'), '--json']);
    expect(ok.code).toBe(0);
    expect(existsSync(join(work, 'm.int8.onnx'))).toBe(true);
    expect(readdirSync(work).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('flag values are validated: coded errors, JSON with --json, no run folder', () => {
  it.each([
    ['--min-snr abc', ['quantize', EXAMPLE, '--data', 'random', '--min-snr', 'abc']],
    ['--max-acc-drop abc', ['quantize', EXAMPLE, '--data', 'random', '--max-acc-drop', 'abc']],
    ['--percentile 150', ['quantize', EXAMPLE, '--data', 'random', '--percentile', '150']],
    ['--max-float-share -1', ['quantize', EXAMPLE, '--data', 'random', '--max-float-share', '-1']],
    ['--samples 99999999999', ['quantize', EXAMPLE, '--data', 'random', '--samples', '99999999999']],
    ['--samples abc (a parse error)', ['quantize', EXAMPLE, '--data', 'random', '--samples', 'abc']],
    ['an unknown flag', ['quantize', EXAMPLE, '--data', 'random', '--no-such-flag']],
    ['static without data', ['quantize', EXAMPLE]],
    ['verify --min-snr abc', ['verify', EXAMPLE, EXAMPLE, '--data', 'random', '--min-snr', 'abc']],
    ['calibrate --percentile 0', ['calibrate', EXAMPLE, '--data', 'random', '--percentile', '0', '-o', join(work, 't.json')]],
  ])('%s', (_name, args) => refused(args, 'E_INVALID_OPTION'));

  it('a dataset or table that does not exist fails before a run folder is made', () => {
    refused(['quantize', EXAMPLE, '--data', join(work, 'nope')], 'E_DATASET_NOT_FOUND');
    refused(['quantize', EXAMPLE, '--calib-table', join(work, 'nope.json')], 'E_CALIB_TABLE_INVALID');
  });

  it('sound values pass the same checks (the twin)', () => {
    const r = qforge(['verify', EXAMPLE, EXAMPLE, '--data', 'random', '--samples', '4', '--min-snr', '30.5', '--max-acc-drop', '0', '--json']);
    expect(r.code).toBe(0);
  });
});

describe('non-regular files are refused up front', () => {
  (haveMkfifo ? it : it.skip)('a FIFO as the model: E_NOT_REGULAR_FILE, no hang', () => {
    refused(['quantize', join(work, 'fifo.onnx'), '--data', 'random'], 'E_NOT_REGULAR_FILE');
    const r = qforge(['inspect', join(work, 'fifo.onnx'), '--json'], { cwd: work });
    expect({ exit: r.code, code: r.json().error?.code }).toEqual({ exit: 2, code: 'E_NOT_REGULAR_FILE' });
  });
  it('/dev/zero as data: E_NOT_REGULAR_FILE', () => {
    refused(['quantize', EXAMPLE, '--data', '/dev/zero'], 'E_NOT_REGULAR_FILE');
  });
});

describe('clean crashes', () => {
  /** Starts a long quantize, sends `signal` once its work folder exists, resolves with its outcome. */
  function interrupt(signal: NodeJS.Signals, runs: string): Promise<{ code: number | null; stdout: string; stderr: string; left: string[] }> {
    return new Promise((done) => {
      const child = spawn(process.execPath, [BIN, 'quantize', EXAMPLE, '--data', 'mnist:all', '--samples', '10000', '--runs-dir', runs, '--json'], { cwd: work, env: { ...process.env, XDG_DATA_HOME: mkdtempSync(join(tmpdir(), 'qforge-data-')) } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      const poll = setInterval(() => {
        if (existsSync(runs) && readdirSync(runs).some((f) => f.endsWith('.partial'))) {
          clearInterval(poll);
          child.kill(signal);
        }
      }, 20);
      child.on('exit', (code) => {
        clearInterval(poll);
        done({ code, stdout, stderr, left: existsSync(runs) ? readdirSync(runs).filter((f) => f.endsWith('.partial')) : [] });
      });
    });
  }

  it.each([
    ['SIGTERM', 143],
    ['SIGHUP', 129],
    ['SIGINT', 130],
  ] as const)('%s: E_ABORTED, exit %i, no .partial folder left', async (signal, exit) => {
    const r = await interrupt(signal, join(work, `sig-${signal}`));
    expect(r.code).toBe(exit);
    expect(r.stdout).toContain('E_ABORTED');
    expect(r.left).toEqual([]);
  });

  it('a work folder left by a killed process is removed by the next run; a live one stays', () => {
    const runs = join(work, 'stale-runs');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    expect(dead).toBeGreaterThan(0);
    mkdirSync(join(runs, `.20260101T000000Z-m-onnxruntime-dead.${dead}.partial`), { recursive: true });
    mkdirSync(join(runs, `.20260101T000000Z-m-onnxruntime-live.${process.pid}.partial`));
    const r = qforge(['quantize', EXAMPLE, '--data', 'random', '--samples', '2', '--no-verify', '--no-benchmark', '--runs-dir', runs, '--json']);
    expect(r.code).toBe(0);
    expect(readdirSync(runs).filter((f) => f.endsWith('.partial'))).toEqual([`.20260101T000000Z-m-onnxruntime-live.${process.pid}.partial`]);
  });
});

describe('mistyped commands', () => {
  const haveScript = spawnSync('script', ['--version']).status === 0;
  // On a terminal oclif's not-found plugin asks "Did you mean …? (Y/n)"; `script` gives it one.
  (haveScript ? it : it.skip)('suggest the closest command on a terminal (answered no: nothing runs)', () => {
    const r = spawnSync('script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} quantise`, '/dev/null'], { input: 'n\n', encoding: 'utf8', timeout: 60000, cwd: work });
    expect(r.stdout).toMatch(/Did you mean .*quantize/);
    expect(r.stdout).not.toMatch(/Did you mean .*quantise/);
  });
  it.each([
    [['quantise'], 'quantise', ['quantize']],
    [['quantise', 'm.onnx', '--data', 'random'], 'quantise m.onnx', ['quantize']],
    [['plugins', 'instal', './x.tgz'], 'plugins instal ./x.tgz', ['plugins install']],
    [['inspcet'], 'inspcet', ['inspect']],
    [['zzzzzzzz'], 'zzzzzzzz', []],
  ])('suggest the closest command without a terminal too, exit 127: %j', (argv, typed, suggestions) => {
    const r = qforge(argv, { cwd: work });
    expect(r.code).toBe(127);
    expect(r.stderr).toContain(`error E_UNKNOWN_COMMAND: "${typed}" is not a qforge command`);
    for (const s of suggestions) expect(r.stderr).toContain(`hint: Did you mean \`qforge ${s}\`?`);
    if (!suggestions.length) expect(r.stderr).not.toMatch(/Did you mean/);
  });
  it('with --json: the error and its suggestions as JSON on stdout', () => {
    const r = qforge(['verfy', 'a.onnx', 'b.onnx', '--json'], { cwd: work });
    expect(r.code).toBe(127);
    expect(r.json().error).toMatchObject({ code: 'E_UNKNOWN_COMMAND', context: { suggestions: ['verify'] }, hint: expect.stringContaining('Did you mean `qforge verify`?') });
  });
});
