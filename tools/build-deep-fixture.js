#!/usr/bin/env node
// Trains the deeper TensorFlow.js fixture for the TFLite converter: a functional MNIST network
// with BatchNormalization, DepthwiseConv2D, ReLU6, a residual Add, ZeroPadding2D, a strided
// convolution, Concatenate, GlobalAveragePooling2D, a dense head and Dropout. Writes examples/mnist-deep/tfjs/.
// Rerun: `npm run build && node tools/build-deep-fixture.js && node tools/build-deep-fixture.js --finetune`
// (plain-JS TensorFlow.js: about half an hour on 2 cores).
// Digits 8000–9999 are never trained on (8000–8999 calibrate, 9000–9999 evaluate).
const { writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const tf = require('@tensorflow/tfjs');
const { loadSplit, saveTfjs } = require('./lib/tfjs-train');

const OUT = resolve(__dirname, '..', 'examples', 'mnist-deep');
const EPOCHS = Number(process.env.EPOCHS ?? 5);
const TRAIN_SAMPLES = Number(process.env.TRAIN_SAMPLES ?? 4000);

function buildModel() {
  let seed = 10;
  const init = () => tf.initializers.heNormal({ seed: seed++ });
  const L = tf.layers;
  // Momentum 0.9: with a few hundred steps the default 0.99 leaves the moving statistics unconverged.
  const bn = (name) => L.batchNormalization({ name, momentum: 0.9 });
  const image = tf.input({ shape: [28, 28, 1], name: 'image' });
  // Stem, then a depthwise-separable residual block.
  let a = L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init(), name: 'stem' }).apply(image);
  a = L.reLU({ name: 'stem_relu' }).apply(bn('stem_bn').apply(a));
  let b = L.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: init(), name: 'dw1' }).apply(a);
  b = L.reLU({ maxValue: 6, name: 'dw1_relu6' }).apply(bn('dw1_bn').apply(b));
  b = L.conv2d({ filters: 8, kernelSize: 1, useBias: false, kernelInitializer: init(), name: 'pw1' }).apply(b);
  b = bn('pw1_bn').apply(b);
  let r = L.add({ name: 'res1' }).apply([a, b]);
  r = L.reLU({ name: 'res1_relu' }).apply(r);
  r = L.maxPooling2d({ poolSize: 2, name: 'pool1' }).apply(r);
  // Explicit padding and a strided convolution, then a second separable branch joined by concat.
  r = L.zeroPadding2d({ padding: 1, name: 'pad1' }).apply(r);
  let c = L.conv2d({ filters: 32, kernelSize: 3, strides: 2, padding: 'valid', kernelInitializer: init(), name: 'down' }).apply(r);
  c = L.reLU({ name: 'down_relu' }).apply(bn('down_bn').apply(c));
  let d = L.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthwiseInitializer: init(), name: 'dw2' }).apply(c);
  d = L.reLU({ maxValue: 6, name: 'dw2_relu6' }).apply(bn('dw2_bn').apply(d));
  d = L.conv2d({ filters: 32, kernelSize: 1, activation: 'relu', kernelInitializer: init(), name: 'pw2' }).apply(d);
  let e = L.concatenate({ name: 'cat' }).apply([c, d]);
  e = L.globalAveragePooling2d({ name: 'gap' }).apply(e);
  // Most parameters sit in the dense head: cheap to train without tfjs-node.
  e = L.dense({ units: 1024, activation: 'relu', kernelInitializer: init(), name: 'fc' }).apply(e);
  e = L.dropout({ rate: 0.2, name: 'drop' }).apply(e);
  const out = L.dense({ units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 99 }), name: 'classes' }).apply(e);
  return tf.model({ inputs: image, outputs: out, name: 'mnist_deep' });
}

/** `--finetune`: one more epoch at a low learning rate from the saved model (settles BatchNorm statistics). */
async function finetune() {
  const { readArtifacts } = require('@qforge/backend-tfjs');
  const model = await tf.loadLayersModel({ load: async () => readArtifacts(join(OUT, 'tfjs', 'model.json')) });
  const train = await loadSplit(`mnist:0-${TRAIN_SAMPLES}`);
  const test = await loadSplit('mnist:test');
  model.compile({ optimizer: tf.train.adam(0.0005), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  await model.fit(train.x, train.y, { epochs: 1, batchSize: 32, shuffle: true, callbacks: { onEpochEnd: (ep, logs) => console.log(`fine-tune: loss ${logs.loss.toFixed(4)} acc ${logs.acc.toFixed(4)}`) } });
  await saveTfjs(model, join(OUT, 'tfjs'));
  const acc = tf.metrics.categoricalAccuracy(test.y, model.predict(test.x)).mean().dataSync()[0];
  writeFileSync(join(OUT, 'README.md'), readme(acc, `${EPOCHS} epochs, then 1 fine-tuning epoch at learning rate 0.0005 (\`--finetune\`)`));
  console.log(`test accuracy (mnist:test) ${acc.toFixed(4)}`);
}

function readme(acc, schedule) {
  return `# mnist-deep\n\nA functional TensorFlow.js network (BatchNorm, DepthwiseConv2D, ReLU6, residual Add, ZeroPadding2D, strided Conv2D, Concatenate, GlobalAveragePooling2D, Dense, Dropout) trained by \`tools/build-deep-fixture.js\` on MNIST digits 0–${TRAIN_SAMPLES - 1}: ${schedule}.\nfp32 accuracy on digits 9000–9999 (\`mnist:test\`): ${(acc * 100).toFixed(2)}%.\n`;
}

async function main() {
  await tf.setBackend('cpu');
  if (process.argv.includes('--finetune')) return finetune();
  const train = await loadSplit(`mnist:0-${TRAIN_SAMPLES}`);
  const test = await loadSplit('mnist:test');
  const model = buildModel();
  model.compile({ optimizer: tf.train.adam(0.005), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const t0 = Date.now();
  await model.fit(train.x, train.y, {
    epochs: EPOCHS,
    batchSize: 32,
    shuffle: true,
    callbacks: {
      onBatchEnd: (batch) => batch % 20 === 0 && console.log(`  batch ${batch} (${((Date.now() - t0) / 1000).toFixed(0)} s)`),
      onEpochEnd: (ep, logs) => console.log(`epoch ${ep + 1}: loss ${logs.loss.toFixed(4)} acc ${logs.acc.toFixed(4)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`),
    },
  });
  await saveTfjs(model, join(OUT, 'tfjs'));
  const acc = tf.metrics.categoricalAccuracy(test.y, model.predict(test.x)).mean().dataSync()[0];
  writeFileSync(join(OUT, 'README.md'), readme(acc, `${EPOCHS} epochs`));
  console.log(`test accuracy (mnist:test) ${acc.toFixed(4)}; trained in ${((Date.now() - t0) / 1000).toFixed(0)} s; wrote ${OUT}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
