#!/usr/bin/env node
// Trains the model `qforge demo` quantizes: an MNIST MLP (784→512→512→10) whose time goes into two
// weight-heavy matrix products, so int8 (4× smaller weights, integer dot-product kernels) pays off
// on a CPU, where the tiny mnist-cnn.onnx is dominated by quantize/dequantize overhead.
// Writes it twice with identical weights: examples/mnist/mnist-mlp.onnx and
// examples/mnist/mnist-mlp-tfjs/model.json, plus mnist-mlp-reference.json (the fp32 output of digit 9000).
// Rerun: `npm run build && node tools/build-mnist-demo.js [out-dir]` (about 5 minutes on the wasm
// backend; out-dir defaults to examples/mnist).
// Trains on digits 0–7999; 8000–8999 calibrate and 9000–9999 evaluate, and are never trained on.
const { writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const tf = require('@tensorflow/tfjs');
const { loadSplit, saveTfjs, useFastestBackend } = require('./lib/tfjs-train');
const { mulberry32 } = require('@qforge/core');
const { DataType, makeNode, makeTensor, makeValueInfo, intAttr, saveModel } = require('@qforge/onnx');

const OUT = resolve(process.argv[2] ?? join(__dirname, '..', 'examples', 'mnist'));
const EPOCHS = Number(process.env.EPOCHS ?? 30);
// HIDDEN changes the width of both hidden layers (for prototyping: the demo's text says 512).
const HIDDEN = Number(process.env.HIDDEN ?? 512);
// EPOCHS=0 writes the untrained (random) weights: enough to time int8 against fp32 before training,
// e.g. `EPOCHS=0 node tools/build-mnist-demo.js /tmp/mlp && qforge quantize /tmp/mlp/mnist-mlp.onnx --data mnist:calib --eval-data mnist:test`.

function buildModel() {
  const m = tf.sequential({ name: 'mnist_mlp' });
  m.add(tf.layers.flatten({ inputShape: [28, 28, 1], name: 'flatten' }));
  m.add(tf.layers.dense({ units: HIDDEN, activation: 'relu', name: 'fc1', kernelInitializer: tf.initializers.heNormal({ seed: 11 }) }));
  m.add(tf.layers.dense({ units: HIDDEN, activation: 'relu', name: 'fc2', kernelInitializer: tf.initializers.heNormal({ seed: 12 }) }));
  m.add(tf.layers.dense({ units: 10, name: 'logits', kernelInitializer: tf.initializers.glorotUniform({ seed: 13 }) }));
  m.add(tf.layers.activation({ activation: 'softmax', name: 'probabilities' }));
  return m;
}

/**
 * Each digit moved by up to 2 pixels in x and y (zeros shifted in): an MLP has no translation
 * invariance of its own, and 8,000 digits are few; shifted copies are what keeps it from memorizing.
 */
function shifted(pixels, count, rand) {
  const out = new Float32Array(pixels.length);
  for (let n = 0; n < count; n++) {
    const dx = Math.floor(rand() * 5) - 2;
    const dy = Math.floor(rand() * 5) - 2;
    const base = n * 784;
    for (let y = 0; y < 28; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= 28) continue;
      for (let x = 0; x < 28; x++) {
        const sx = x - dx;
        if (sx >= 0 && sx < 28) out[base + y * 28 + x] = pixels[base + sy * 28 + sx];
      }
    }
  }
  return out;
}

/**
 * The same network as ONNX. The input is NCHW [batch,1,28,28] like mnist-cnn.onnx, so `mnist:`
 * datasets feed both; with one channel, NCHW and NHWC flatten to the same order, so Dense kernels
 * ([in, out]) are Gemm weights as they are.
 */
async function saveOnnx(model, path) {
  const init = [];
  const nodes = [makeNode('Flatten', ['input'], ['flat'], 'flatten', [intAttr('axis', 1)])];
  let x = 'flat';
  for (const name of ['fc1', 'fc2', 'logits']) {
    const [k, b] = model.getLayer(name).getWeights();
    init.push(makeTensor(`${name}.weight`, k.shape, Float32Array.from(k.dataSync())), makeTensor(`${name}.bias`, b.shape, Float32Array.from(b.dataSync())));
    const out = name === 'logits' ? 'logits' : `${name}_out`;
    nodes.push(makeNode('Gemm', [x, `${name}.weight`, `${name}.bias`], [out], name));
    x = out;
    if (name !== 'logits') {
      nodes.push(makeNode('Relu', [x], [`${name}_relu`], `${name}_relu`));
      x = `${name}_relu`;
    }
  }
  nodes.push(makeNode('Softmax', [x], ['probabilities'], 'softmax', [intAttr('axis', 1)]));
  await saveModel(
    {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 13 }],
      producerName: 'qforge-tools',
      producerVersion: '0.1.0',
      graph: {
        name: 'mnist_mlp',
        node: nodes,
        initializer: init,
        input: [makeValueInfo('input', DataType.FLOAT, ['batch', 1, 28, 28])],
        output: [makeValueInfo('probabilities', DataType.FLOAT, ['batch', 10])],
        valueInfo: [],
      },
    },
    path,
  );
}

async function main() {
  const engine = await useFastestBackend();
  const train = await loadSplit('mnist:train');
  const test = await loadSplit('mnist:test');
  const model = buildModel();
  const optimizer = tf.train.adam(1e-3);
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  console.log(`backend ${engine}; ${model.countParams()} parameters; ${train.labels.length} training digits, ${EPOCHS} epochs`);
  const pixels = train.x.dataSync();
  const count = train.labels.length;
  const rand = mulberry32(7);
  const t0 = Date.now();
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    // Cosine decay from 1e-3 to 5e-5: the last epochs settle instead of bouncing between minima.
    optimizer.learningRate = 5e-5 + 0.5 * (1e-3 - 5e-5) * (1 + Math.cos((Math.PI * epoch) / EPOCHS));
    const x = tf.tensor4d(shifted(pixels, count, rand), [count, 28, 28, 1]);
    const h = await model.fit(x, train.y, { epochs: 1, batchSize: 64, shuffle: true, verbose: 0 });
    x.dispose();
    console.log(`epoch ${epoch + 1}/${EPOCHS}: loss ${h.history.loss[0].toFixed(4)} acc ${h.history.acc[0].toFixed(4)}, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const acc = tf.tidy(() => tf.metrics.categoricalAccuracy(test.y, model.predict(test.x)).mean().dataSync()[0]);
  console.log(`test accuracy (mnist:test, never trained on) ${acc.toFixed(4)}`);
  await saveTfjs(model, join(OUT, 'mnist-mlp-tfjs'));
  await saveOnnx(model, join(OUT, 'mnist-mlp.onnx'));
  // The fp32 output for the first evaluation digit: tests check both exports reproduce it.
  const probe = tf.tidy(() => model.predict(test.x.slice([0, 0, 0, 0], [1, 28, 28, 1])).dataSync());
  writeFileSync(join(OUT, 'mnist-mlp-reference.json'), JSON.stringify({ sample: 'mnist-9000', label: test.labels[0], probabilities: Array.from(probe), testAccuracy: acc }) + '\n');
  console.log(`wrote mnist-mlp.onnx, mnist-mlp-tfjs/ and mnist-mlp-reference.json to ${OUT}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
