// fp16 mode: float16 weights and compute with float32 edges, verified against fp32 in ONNX Runtime.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRunContext, modelRef, openDataset, resolveTargetProfile, type QuantizeOptions } from '@qforge/core';
import { DataType, halfToFloat, intAttr, loadModel, makeNode, makeTensor, makeValueInfo, saveModel } from '@qforge/onnx';
import { OnnxRuntimeBackend } from '../src/backend';
import { floatToHalf } from '../src/convert-fp16';

const root = resolve(__dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'qforge-fp16-'));
const ctx = createRunContext();
const target = resolveTargetProfile('x86-avx2');
const backend = new OnnxRuntimeBackend();
const lm = join(dir, 'byte-lm.onnx');
const data = join(dir, 'tokens');
const tokenInputs = [{ name: 'input_ids', dtype: 'int64' as const, shape: ['batch', 'sequence'] }, { name: 'attention_mask', dtype: 'int64' as const, shape: ['batch', 'sequence'] }];

function qopts(output: string, over: Partial<QuantizeOptions> = {}): QuantizeOptions {
  const d = target.defaults;
  return { output, target, mode: 'fp16', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: false, symmetricWeights: true, excludeNodes: [], opTypes: [], ...over };
}

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'tools/build-transformer-fixture.js'), lm, '--tokens']);
  execFileSync(process.execPath, [join(root, 'tools/make-token-data.js'), data, '2', '8']);
}, 60_000);

describe('float → half', () => {
  it('rounds to nearest even, keeps subnormals and saturates beyond 65504', () => {
    for (const v of [0, 1, -2.5, 0.1, 65504, 6.1e-5, 3e-7, 1 / 3]) expect(Math.abs(halfToFloat(floatToHalf(v)) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
    expect(halfToFloat(floatToHalf(1e6))).toBe(65504);
    expect(halfToFloat(floatToHalf(-1e6))).toBe(-65504);
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1);
    expect(halfToFloat(floatToHalf(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
  });
});

describe('fp16 mode', () => {
  it('stores the language model in float16 with float32 inputs/outputs; ONNX Runtime runs it close to fp32', async () => {
    const out = join(dir, 'lm.fp16.onnx');
    const r = await backend.quantize(modelRef(lm), undefined, qopts(out), ctx);
    const proto = loadModel(out).proto;
    const floatInits = proto.graph.initializer.filter((t) => t.dataType === DataType.FLOAT);
    expect(floatInits).toEqual([]);
    expect(proto.graph.initializer.filter((t) => t.dataType === DataType.FLOAT16).length).toBeGreaterThan(50);
    expect(proto.graph.output[0].type?.tensorType?.elemType).toBe(DataType.FLOAT);
    expect(r.sizeBytes).toBeLessThan(0.55 * loadModel(lm).bytes!.byteLength);
    const v = await backend.verify(modelRef(lm), modelRef(out), openDataset(join(data, 'eval.npz'), { inputs: tokenInputs }), { samples: 8, thresholds: { minSnrDb: 40, maxAccuracyDropPoints: 1 }, perLayer: false }, ctx);
    process.stdout.write(`byte-LM logits fp16 vs fp32: ${v.outputs[0].snrDb.toFixed(2)} dB, cosine ${v.outputs[0].cosine.toFixed(6)}\n`);
    expect(v.passed).toBe(true);
  });

  it('keeps Resize in float32 (its scales would round in float16) and fails verification when a weight overflows float16', async () => {
    // x → Mul(w) → Resize(scales 1.337) → y: Resize stays float32 between Casts.
    const proto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 13 }],
      graph: {
        name: 'g',
        node: [makeNode('Mul', ['x', 'w'], ['m'], 'mul'), makeNode('Resize', ['m', '', 'scales'], ['y'], 'resize', [intAttr('exclude_outside', 0)])],
        initializer: [makeTensor('w', [1, 1, 1, 4], Float32Array.from([1, 2, 3, 1e6])), makeTensor('scales', [4], Float32Array.from([1, 1, 1.337, 1.337]))],
        input: [makeValueInfo('x', DataType.FLOAT, [1, 1, 3, 4])],
        output: [makeValueInfo('y', DataType.FLOAT, [1, 1, 4, 5])],
        valueInfo: [],
      },
    };
    const src = join(dir, 'resize.onnx');
    await saveModel(proto, src);
    const out = join(dir, 'resize.fp16.onnx');
    const r = await backend.quantize(modelRef(src), undefined, qopts(out), ctx);
    expect(r.decisions.find((d) => d.node === 'resize')).toMatchObject({ quantized: false, reason: expect.stringMatching(/float32/) });
    expect(r.preparation.some((c) => /saturated/.test(c.detail))).toBe(true);
    const q = loadModel(out).proto;
    expect(q.graph.initializer.find((t) => t.name === 'scales')?.dataType).toBe(DataType.FLOAT);
    const v = await backend.verify(modelRef(src), modelRef(out), openDataset('random:3', { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 1, 3, 4] }] }), { samples: 4, thresholds: { minSnrDb: 40, maxAccuracyDropPoints: 1 }, perLayer: false }, ctx);
    // The 1e6 weight saturated to 65504: verification must see it.
    expect(v.passed).toBe(false);
  });
});
