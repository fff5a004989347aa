#!/usr/bin/env node
// Trains the embedded example (a small CNN on MNIST digits 0–7999) with TensorFlow.js and writes
// it twice with identical weights: examples/mnist/mnist-cnn.onnx and examples/mnist/tfjs/model.json.
// Rerun: `npm run build && node tools/build-mnist-example.js`. Digits 8000–9999 are never trained on
// (8000–8999 calibrate, 9000–9999 evaluate).
const { writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const tf = require('@tensorflow/tfjs');
const { loadSplit, saveTfjs } = require('./lib/tfjs-train');
const { DataType, makeNode, makeTensor, makeValueInfo, intAttr, intsAttr, saveModel } = require('@qforge/onnx');

const OUT = resolve(__dirname, '..', 'examples', 'mnist');
const EPOCHS = Number(process.env.EPOCHS ?? 4);
// TensorFlow.js trains convolutions in plain JavaScript here (no tfjs-node): 3,000 digits keep it
// to minutes while still giving a useful classifier.
const TRAIN_SAMPLES = Number(process.env.TRAIN_SAMPLES ?? 4000);

function buildModel() {
  tf.util.seedrandom?.('qforge');
  const m = tf.sequential({ name: 'mnist_cnn' });
  m.add(tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 3, activation: 'relu', name: 'conv1', kernelInitializer: tf.initializers.heNormal({ seed: 1 }) }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }));
  m.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu', name: 'conv2', kernelInitializer: tf.initializers.heNormal({ seed: 2 }) }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool2' }));
  m.add(tf.layers.flatten({ name: 'flatten' }));
  m.add(tf.layers.dense({ units: 128, activation: 'relu', name: 'fc1', kernelInitializer: tf.initializers.heNormal({ seed: 3 }) }));
  m.add(tf.layers.dense({ units: 10, name: 'logits', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }));
  m.add(tf.layers.activation({ activation: 'softmax', name: 'probabilities' }));
  return m;
}

/** The same network as ONNX (NCHW). Conv kernels HWIO→OIHW; fc1 rows permuted from HWC to CHW flatten order. */
async function saveOnnx(model, path) {
  const w = (name) => model.getLayer(name).getWeights().map((t) => ({ data: t.dataSync(), shape: t.shape }));
  const [c1k, c1b] = w('conv1');
  const [c2k, c2b] = w('conv2');
  const [f1k, f1b] = w('fc1');
  const [f2k, f2b] = w('logits');
  const hwioToOihw = ({ data, shape: [kh, kw, ci, co] }) => {
    const out = new Float32Array(data.length);
    for (let h = 0; h < kh; h++) for (let x = 0; x < kw; x++) for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++)
      out[((o * ci + i) * kh + h) * kw + x] = data[((h * kw + x) * ci + i) * co + o];
    return { data: out, dims: [co, ci, kh, kw] };
  };
  const [H, W, C] = [5, 5, 16];
  const fc1 = new Float32Array(f1k.data.length);
  const units = f1k.shape[1];
  for (let h = 0; h < H; h++) for (let x = 0; x < W; x++) for (let c = 0; c < C; c++) {
    const hwc = (h * W + x) * C + c;
    const chw = (c * H + h) * W + x;
    for (let u = 0; u < units; u++) fc1[chw * units + u] = f1k.data[hwc * units + u];
  }
  const k1 = hwioToOihw(c1k);
  const k2 = hwioToOihw(c2k);
  const init = [
    makeTensor('conv1.weight', k1.dims, k1.data),
    makeTensor('conv1.bias', [c1b.shape[0]], Float32Array.from(c1b.data)),
    makeTensor('conv2.weight', k2.dims, k2.data),
    makeTensor('conv2.bias', [c2b.shape[0]], Float32Array.from(c2b.data)),
    makeTensor('fc1.weight', f1k.shape, fc1),
    makeTensor('fc1.bias', f1b.shape, Float32Array.from(f1b.data)),
    makeTensor('logits.weight', f2k.shape, Float32Array.from(f2k.data)),
    makeTensor('logits.bias', f2b.shape, Float32Array.from(f2b.data)),
  ];
  const nodes = [
    makeNode('Conv', ['input', 'conv1.weight', 'conv1.bias'], ['conv1_out'], 'conv1', [intsAttr('kernel_shape', [3, 3])]),
    makeNode('Relu', ['conv1_out'], ['relu1_out'], 'relu1'),
    makeNode('MaxPool', ['relu1_out'], ['pool1_out'], 'pool1', [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2])]),
    makeNode('Conv', ['pool1_out', 'conv2.weight', 'conv2.bias'], ['conv2_out'], 'conv2', [intsAttr('kernel_shape', [3, 3])]),
    makeNode('Relu', ['conv2_out'], ['relu2_out'], 'relu2'),
    makeNode('MaxPool', ['relu2_out'], ['pool2_out'], 'pool2', [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2])]),
    makeNode('Flatten', ['pool2_out'], ['flat'], 'flatten', [intAttr('axis', 1)]),
    makeNode('Gemm', ['flat', 'fc1.weight', 'fc1.bias'], ['fc1_out'], 'fc1'),
    makeNode('Relu', ['fc1_out'], ['fc1_relu'], 'relu3'),
    makeNode('Gemm', ['fc1_relu', 'logits.weight', 'logits.bias'], ['logits'], 'logits'),
    makeNode('Softmax', ['logits'], ['probabilities'], 'softmax', [intAttr('axis', 1)]),
  ];
  const proto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'qforge-tools',
    producerVersion: '0.1.0',
    graph: {
      name: 'mnist_cnn',
      node: nodes,
      initializer: init,
      input: [makeValueInfo('input', DataType.FLOAT, ['batch', 1, 28, 28])],
      output: [makeValueInfo('probabilities', DataType.FLOAT, ['batch', 10])],
      valueInfo: [],
    },
  };
  await saveModel(proto, path);
}

async function main() {
  await tf.setBackend('cpu');
  const train = await loadSplit(`mnist:0-${TRAIN_SAMPLES}`);
  const test = await loadSplit('mnist:test');
  const model = buildModel();
  model.compile({ optimizer: tf.train.adam(0.002), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const t0 = Date.now();
  await model.fit(train.x, train.y, {
    epochs: EPOCHS,
    batchSize: 64,
    shuffle: true,
    validationData: [test.x, test.y],
    callbacks: { onEpochEnd: (e, logs) => console.log(`epoch ${e + 1}: loss ${logs.loss.toFixed(4)} acc ${logs.acc.toFixed(4)} val_acc ${logs.val_acc.toFixed(4)}`) },
  });
  console.log(`trained in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await saveTfjs(model, join(OUT, 'tfjs'));
  await saveOnnx(model, join(OUT, 'mnist-cnn.onnx'));
  // The fp32 output for the first evaluation digit: tests check both exports reproduce it.
  const first = test.x.slice([0, 0, 0, 0], [1, 28, 28, 1]);
  const probe = model.predict(first).dataSync();
  const acc = tf.metrics.categoricalAccuracy(test.y, model.predict(test.x)).mean().dataSync()[0];
  writeFileSync(join(OUT, 'reference-output.json'), JSON.stringify({ sample: 'mnist-9000', label: test.labels[0], probabilities: Array.from(probe), testAccuracy: acc }) + '\n');
  console.log(`test accuracy (mnist:test) ${acc.toFixed(4)}`);
  console.log(`wrote ${OUT}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
