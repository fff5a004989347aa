// Language-model verification end to end: a byte-level GPT trained by tools/train-byte-gpt.js (tiny settings), judged by perplexity.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRunContext, modelRef, openDataset, resolveTargetProfile, type QuantizeOptions } from '@qforge/core';
import { loadModel, makeTensor, saveModel, tensorToFloat32 } from '@qforge/onnx';
import { OnnxRuntimeBackend } from '../src/backend';

const root = resolve(__dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'qforge-lm-'));
const model = join(dir, 'gpt.onnx');
const data = join(dir, 'tokens');
const ctx = createRunContext();
const backend = new OnnxRuntimeBackend();
const target = resolveTargetProfile('x86-avx2');

beforeAll(() => {
  // A few steps are enough for a model whose logits depend on the text; the script itself checks ONNX against TensorFlow.js.
  execFileSync(process.execPath, [join(root, 'tools/train-byte-gpt.js'), model, '--data', data, '--steps', '20', '--layers', '1', '--dim', '32', '--batch', '8', '--eval', '8'], { stdio: 'pipe' });
}, 120_000);

const evalData = async () => openDataset(join(data, 'eval.npz'), { inputs: await backend.modelInputs(modelRef(model)) });

describe('language-model verification (ONNX Runtime)', () => {
  it('detects the logits as a language model and passes its int8 dynamic model on perplexity', async () => {
    const out = join(dir, 'gpt.int8.onnx');
    const d = target.defaults;
    const opts: QuantizeOptions = { output: out, target, mode: 'dynamic', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: 'int8', reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [] };
    await backend.quantize(modelRef(model), undefined, opts, ctx);
    const v = await backend.verify(modelRef(model), modelRef(out), await evalData(), { samples: 8, thresholds: {} }, ctx);
    const t = v.outputs[0].task!;
    expect(t.kind).toBe('language-model');
    expect(t.detectedFrom).toMatch(/input_ids/);
    // 8 windows of 64 bytes: 63 next tokens each, 16 fewer in each of the two padded windows (last quarter masked, 47 scored).
    expect(t.scoredTokens).toBe(6 * 63 + 2 * 47);
    expect(t.perplexity!.reference).toBeGreaterThan(1);
    expect(t.perplexity!.reference).toBeLessThan(256);
    expect(v.passed).toBe(true);
    expect(v.decidedBy?.[0]).toMatch(/perplexity/);
  }, 60_000);

  it('fails a model whose LM head was disturbed', async () => {
    const loaded = loadModel(model);
    const head = loaded.proto.graph.initializer.find((i) => i.name === 'lm_head')!;
    const w = tensorToFloat32(head);
    // Every output column shrunk by a different factor: confidences move, perplexity rises.
    const disturbed = Float32Array.from(w, (x, i) => x * (0.7 + 0.3 * ((i % 256) / 255)));
    loaded.proto.graph.initializer[loaded.proto.graph.initializer.indexOf(head)] = makeTensor('lm_head', head.dims.map(Number), disturbed);
    const out = join(dir, 'gpt.disturbed.onnx');
    await saveModel(loaded.proto, out);
    const v = await backend.verify(modelRef(model), modelRef(out), await evalData(), { samples: 8, thresholds: {} }, ctx);
    const t = v.outputs[0].task!;
    expect(t.perplexity!.increasePercent).toBeGreaterThan(1);
    expect(v.passed).toBe(false);
    expect(v.failures[0]).toMatch(/perplexity .* > \+1%/);
  }, 60_000);
});
