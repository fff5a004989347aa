// Shared by the fixture builders: MNIST splits as tensors, the fastest training backend, and saving a Layers model without tfjs-node.
const { mkdirSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const tf = require('@tensorflow/tfjs');
const { openDataset } = require('@qforge/core');

async function loadSplit(spec) {
  const ds = openDataset(spec, { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 28, 28, 1] }] });
  const xs = [];
  const ys = [];
  for await (const s of ds.samples()) {
    xs.push(s.inputs.x.data);
    ys.push(s.label);
  }
  const x = new Float32Array(xs.length * 784);
  xs.forEach((d, i) => x.set(d, i * 784));
  return { x: tf.tensor4d(x, [xs.length, 28, 28, 1]), y: tf.oneHot(tf.tensor1d(ys, 'int32'), 10), labels: ys };
}

/**
 * Trains on the WebAssembly backend when it starts (SIMD matrix products, many times faster than
 * plain JS), else on the JS `cpu` backend. The wasm backend has no convolution gradient kernels:
 * builders that train convolutions stay on `cpu`. Returns the backend name.
 */
async function useFastestBackend() {
  try {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
  } catch {
    /* falls back to cpu */
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}

/** Saves a Layers model as model.json + one weight shard, without tfjs-node. */
async function saveTfjs(model, dir) {
  mkdirSync(dir, { recursive: true });
  await model.save({
    save: async (artifacts) => {
      writeFileSync(join(dir, 'group1-shard1of1.bin'), Buffer.from(artifacts.weightData));
      const json = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: artifacts.weightSpecs }],
      };
      writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
  });
}

module.exports = { loadSplit, saveTfjs, useFastestBackend };
