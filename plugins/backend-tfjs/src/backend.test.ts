import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { createRunContext, openDataset } from '@qforge/core';
import { TfjsBackend } from './backend';
import { chooseEngine } from './engine';
import { readModelJson } from './model-json';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'mnist');

describe('TensorFlow.js backend', () => {
  it('prefers tfjs-node, then wasm, then cpu', () => {
    expect(chooseEngine(() => true)).toBe('tensorflow');
    expect(chooseEngine((id) => id !== '@tensorflow/tfjs-node')).toBe('wasm');
    expect(chooseEngine(() => false)).toBe('cpu');
  });

  it('inspects the example Layers model', async () => {
    const info = await new TfjsBackend().inspect({ path: join(EXAMPLE, 'tfjs', 'model.json'), format: 'tfjs-layers' });
    expect(info.inputs[0].shape).toEqual(['batch', 28, 28, 1]);
    expect(info.opHistogram).toMatchObject({ Conv2D: 2, Dense: 2 });
  });

  it('refuses corrupt model.json and missing or escaping shards', () => {
    const dir = mkdtempSync(join(tmpdir(), 'qforge-tfjs-'));
    writeFileSync(join(dir, 'bad.json'), '{ not json');
    expect(() => readModelJson(join(dir, 'bad.json'))).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT' }));
    const json = JSON.parse(readFileSync(join(EXAMPLE, 'tfjs', 'model.json'), 'utf8'));
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
    expect(() => readModelJson(join(dir, 'model.json'))).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT', message: expect.stringMatching(/missing/) }));
    json.weightsManifest[0].paths = ['../../etc/passwd'];
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
    expect(() => readModelJson(join(dir, 'model.json'))).toThrow(expect.objectContaining({ message: expect.stringMatching(/escapes/) }));
  });

  it('the example Layers model reproduces its recorded fp32 output (loaded from disk without tfjs-node)', async () => {
    await tf.setBackend('cpu');
    const json = JSON.parse(readFileSync(join(EXAMPLE, 'tfjs', 'model.json'), 'utf8'));
    const shard = readFileSync(join(EXAMPLE, 'tfjs', json.weightsManifest[0].paths[0]));
    const model = await tf.loadLayersModel({
      load: async () => ({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData: shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength) }),
    });
    const ref = JSON.parse(readFileSync(join(EXAMPLE, 'reference-output.json'), 'utf8')) as { probabilities: number[] };
    const ds = openDataset('mnist:test', { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 28, 28, 1] }] });
    for await (const s of ds.samples({ limit: 1 })) {
      const p = Array.from((model.predict(tf.tensor4d(s.inputs.x.data as Float32Array, [1, 28, 28, 1])) as tf.Tensor).dataSync());
      p.forEach((v, i) => expect(v).toBeCloseTo(ref.probabilities[i], 5));
    }
  });
});

describe('benchmark and verify on TensorFlow.js', () => {
  const model = { path: join(EXAMPLE, 'tfjs', 'model.json'), format: 'tfjs-layers' as const };
  const ctx = createRunContext();

  it('runs on the WebAssembly engine without tfjs-node and measures real latencies', async () => {
    const b = new TfjsBackend();
    const r = await b.benchmark(model, { threads: 1, warmup: 2, runs: 10 }, ctx);
    expect(r.runtime).toMatch(/\(wasm\)|\(tensorflow\)/);
    expect(r.primary.latencyMs.count).toBe(10);
    expect(r.primary.latencyMs.min).toBeGreaterThan(0);
  });

  it('verifies the Layers model against its own ONNX twin\'s accuracy on held-out digits', async () => {
    const b = new TfjsBackend();
    const inputs = await b.modelInputs(model);
    const v = await b.verify(model, model, openDataset('mnist:test', { inputs }), { samples: 200, thresholds: { minSnrDb: 60 } }, ctx);
    expect(v.passed).toBe(true);
    const ref = JSON.parse(readFileSync(join(EXAMPLE, 'reference-output.json'), 'utf8')) as { testAccuracy: number };
    // 200 of the 1000 test digits: within a few points of the full-set accuracy recorded at training.
    expect(Math.abs(v.accuracy!.reference - ref.testAccuracy)).toBeLessThan(0.05);
  });
});
