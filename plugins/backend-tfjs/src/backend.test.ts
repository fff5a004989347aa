import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { openDataset } from '@qforge/core';
import { chooseEngine, readModelJson, TfjsBackend } from './backend';

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
