// Per-layer errors of an equalized model are measured on the float model's scale.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, modelRef, openDataset, quantizeOptionsFor, resolveTargetProfile } from '@qforge/core';
import { loadModel, saveModel } from '@qforge/onnx';
import { OnnxRuntimeBackend } from './backend';
import { EQUALIZED_ACTIVATIONS } from './prepare';

const MODEL = join(__dirname, '..', '..', '..', 'examples', 'mnist', 'mnist-cnn.onnx');

describe('cross-layer equalization and per-layer errors', () => {
  const backend = new OnnxRuntimeBackend();
  const ctx = createRunContext();
  const target = resolveTargetProfile('auto');
  const work = mkdtempSync(join(tmpdir(), 'qforge-eq-'));
  let layers: Record<string, number>;
  let stripped: Record<string, number>;

  beforeAll(async () => {
    const model = modelRef(MODEL);
    const inputs = await backend.modelInputs(model);
    const table = await backend.calibrate(model, openDataset('mnist:calib', { inputs }), { method: 'minmax', samples: 32, target, equalize: true }, ctx);
    const out = join(work, 'eq.onnx');
    await backend.quantize(model, table, quantizeOptionsFor(target, { output: out, equalize: true }), ctx);
    const perLayer = async (path: string) => {
      const v = await backend.verify(model, modelRef(path), openDataset('mnist:test', { inputs }), { samples: 100, thresholds: {}, perLayer: true }, ctx);
      return Object.fromEntries(v.layers!.map((l) => [l.tensor, l.snrDb]));
    };
    layers = await perLayer(out);
    // The same model without the record of what was rescaled: the comparison the report used to make.
    const m = loadModel(out);
    expect(m.proto.metadataProps?.map((e) => e.key)).toContain(EQUALIZED_ACTIVATIONS);
    m.proto.metadataProps = [];
    await saveModel(m.proto, join(work, 'stripped.onnx'));
    stripped = await perLayer(join(work, 'stripped.onnx'));
  });

  it('compares rescaled activations after dividing the scale back out (no false alarms)', () => {
    // Measured here: relu1_out 42.1 dB and pool1_out 43.8 dB, against 42.9 / 44.6 dB without equalization.
    expect(layers.relu1_out).toBeGreaterThan(30);
    expect(layers.pool1_out).toBeGreaterThan(30);
  });

  it('without undoing the rescaling the same layers look broken (~10 dB): the check can fail', () => {
    expect(stripped.relu1_out).toBeLessThan(20);
    expect(stripped.pool1_out).toBeLessThan(20);
    // Layers after the second conv are not rescaled and read the same either way.
    expect(stripped.relu2_out).toBeCloseTo(layers.relu2_out, 6);
  });
});
