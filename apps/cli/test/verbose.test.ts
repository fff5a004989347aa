// --verbose prints debug details to stderr (resolved paths, the backend, data shapes, phase timings, the stack of an error); without it there are none.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataType, encodeModel, makeNode, makeValueInfo } from '@qforge/onnx';
import { EXAMPLE, qforge } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'qforge-verbose-'));
const quantize = (extra: string[]) => qforge(['quantize', EXAMPLE, '--data', 'random', '--samples', '2', '--eval-samples', '4', '--no-benchmark', '--no-latency-search', '--runs-dir', join(work, 'runs'), '--json', ...extra], { cwd: work });
const debugLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('debug: '));

// Relu reads a name nothing defines: inspect refuses it, and --verbose shows where.
const broken = join(work, 'dangling.onnx');
writeFileSync(broken, encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph: { name: 'g', node: [makeNode('Relu', ['nope'], ['y'], 'relu')], initializer: [], input: [makeValueInfo('x', DataType.FLOAT, [1, 4])], output: [makeValueInfo('y', DataType.FLOAT)], valueInfo: [] } }));

describe('--verbose', () => {
  it('quantize: debug lines on stderr say what was done, stdout stays one JSON document', () => {
    const r = quantize(['--verbose']);
    expect(r.code).toBe(0);
    expect(r.json().report.status).toBe('succeeded');
    const lines = debugLines(r.stderr).join('\n');
    expect(lines).toMatch(new RegExp(`debug: model: ${EXAMPLE} → ${EXAMPLE}`));
    expect(lines).toMatch(/debug: runs-dir: .*runs/);
    expect(lines).toMatch(/debug: backend onnxruntime \S+ \(@qforge\/backend-onnxruntime, runtime onnxruntime-node [\d.]+\) for quantize/);
    expect(lines).toMatch(/debug: model inputs: input float32 \[batch,1,28,28\]/);
    expect(lines).toMatch(/debug: calibration: minmax over 2 sample\(s\) of random:0 \(fed input 1×1×28×28\), \d+ tensor ranges, \d+ ms/);
    expect(lines).toMatch(/debug: quantize: \d+ node\(s\) quantized, \d+ kept in float, \d+ bytes, \d+ ms/);
    expect(lines).toMatch(/debug: verify: 4 sample\(s\) of random:0 \(fed input 1×1×28×28\), pass, \d+ ms/);
    expect(lines).toMatch(/debug: phase calibrate started \(2 steps\)/);
    expect(lines).toMatch(/debug: quantize finished after \d+ ms/);
  });

  it('without it, no debug line', () => {
    const r = quantize([]);
    expect(r.code).toBe(0);
    expect(debugLines(r.stderr)).toEqual([]);
  });

  it('an error: the coded error as JSON on stdout, its stack on stderr only with --verbose', () => {
    const loud = qforge(['inspect', broken, '--json', '--verbose'], { cwd: work });
    expect(loud.code).toBe(2);
    expect(loud.json().error).toMatchObject({ code: 'E_MODEL_CORRUPT', context: { node: 'relu', opType: 'Relu', tensor: 'nope' } });
    expect(loud.stderr).toMatch(/debug: QforgeError: model .*dangling\.onnx is not a valid graph/);
    expect(loud.stderr).toMatch(/debug: +at .*check\.js/);
    expect(loud.stderr).toMatch(/debug: inspect failed after \d+ ms/);
    const quiet = qforge(['inspect', broken, '--json'], { cwd: work });
    expect(quiet.json().error.code).toBe('E_MODEL_CORRUPT');
    expect(quiet.stderr).toBe('');
  });
});
