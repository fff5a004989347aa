// The embedded examples' ONNX exports reproduce the TensorFlow.js models they were converted from.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '@qforge/core';
import * as ort from 'onnxruntime-node';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'mnist');

it('mnist-cnn.onnx gives the fp32 TensorFlow.js output for digit 9000', async () => {
  const ref = JSON.parse(readFileSync(join(EXAMPLE, 'reference-output.json'), 'utf8')) as { probabilities: number[]; label: number };
  const ds = openDataset('mnist:test', { inputs: [{ name: 'input', dtype: 'float32', shape: [1, 1, 28, 28] }] });
  const s = await ort.InferenceSession.create(join(EXAMPLE, 'mnist-cnn.onnx'));
  for await (const sample of ds.samples({ limit: 1 })) {
    expect(sample.label).toBe(ref.label);
    const out = await s.run({ input: new ort.Tensor('float32', sample.inputs.input.data as Float32Array, [1, 1, 28, 28]) });
    const p = Array.from(out.probabilities.data as Float32Array);
    p.forEach((v, i) => expect(v).toBeCloseTo(ref.probabilities[i], 5));
  }
});

it('mnist-mlp.onnx (the demo model) gives the fp32 TensorFlow.js output for digit 9000', async () => {
  const ref = JSON.parse(readFileSync(join(EXAMPLE, 'mnist-mlp-reference.json'), 'utf8')) as { probabilities: number[]; label: number };
  const ds = openDataset('mnist:test', { inputs: [{ name: 'input', dtype: 'float32', shape: [1, 1, 28, 28] }] });
  const s = await ort.InferenceSession.create(join(EXAMPLE, 'mnist-mlp.onnx'));
  for await (const sample of ds.samples({ limit: 1 })) {
    expect(sample.label).toBe(ref.label);
    const out = await s.run({ input: new ort.Tensor('float32', sample.inputs.input.data as Float32Array, [1, 1, 28, 28]) });
    const p = Array.from(out.probabilities.data as Float32Array);
    p.forEach((v, i) => expect(v).toBeCloseTo(ref.probabilities[i], 5));
  }
});
