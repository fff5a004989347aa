// TensorFlow.js → int8 .tflite, checked by the real TFLite interpreter (WebAssembly).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { createRunContext, modelSizeBytes, openDataset, quantizeOptionsFor, resolveTargetProfile, type CalibrationTable, type Dataset, type ModelRef, type QuantizeOptions } from '@qforge/core';
import { readTflite, type TfliteModel } from '@qforge/tflite';
import { TfjsBackend, fp32TwinPath } from './backend';
import { loadTf } from './engine';
import { loadTfliteInterpreter } from './tflite-runtime';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'mnist', 'tfjs', 'model.json');
const ctx = createRunContext();
const target = resolveTargetProfile('tflite-int8');
const backend = new TfjsBackend();
const work = mkdtempSync(join(tmpdir(), 'qforge-tflite-'));
const mnistInputs = [{ name: 'x', dtype: 'float32', shape: [1, 28, 28, 1] }];

const options = (output: string, extra: Partial<QuantizeOptions> = {}): QuantizeOptions => quantizeOptionsFor(target, { output, ...extra });

/** Saves a Layers model as model.json + one shard (tfjs-node is not needed). */
async function saveLayers(model: tf.LayersModel, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  await model.save({
    save: async (a) => {
      writeFileSync(join(dir, 'w.bin'), Buffer.from(a.weightData as ArrayBuffer));
      writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: a.weightSpecs }] }));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
  });
  return join(dir, 'model.json');
}

/** Non-trivial BatchNorm statistics so folding is exercised, not a no-op. */
function randomizeBatchNorms(model: tf.LayersModel): void {
  for (const l of model.layers) {
    if (l.getClassName() !== 'BatchNormalization') continue;
    const ws = l.getWeights();
    l.setWeights(ws.map((w, k) => (k === ws.length - 1 ? tf.randomUniform(w.shape, 0.5, 2, 'float32', k + 1) : tf.randomNormal(w.shape, 0, 0.3, 'float32', k + 7))));
  }
}

/** Every layer kind the converter handles, with random weights. */
function coverageModel(): tf.LayersModel {
  const L = tf.layers;
  const x = tf.input({ shape: [16, 16, 3], name: 'img' });
  let a = L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', useBias: false, name: 'c1', kernelInitializer: tf.initializers.heNormal({ seed: 1 }) }).apply(x) as tf.SymbolicTensor;
  a = L.reLU({ name: 'c1_relu' }).apply(L.batchNormalization({ name: 'c1_bn' }).apply(a)) as tf.SymbolicTensor;
  let b = L.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, name: 'dw', depthwiseInitializer: tf.initializers.heNormal({ seed: 2 }) }).apply(a) as tf.SymbolicTensor;
  b = L.reLU({ maxValue: 6, name: 'dw_relu6' }).apply(L.batchNormalization({ name: 'dw_bn' }).apply(b)) as tf.SymbolicTensor;
  b = L.conv2d({ filters: 8, kernelSize: 1, name: 'pw', kernelInitializer: tf.initializers.heNormal({ seed: 3 }) }).apply(b) as tf.SymbolicTensor;
  let r = L.add({ name: 'res' }).apply([a, b]) as tf.SymbolicTensor;
  r = L.batchNormalization({ name: 'lonely_bn' }).apply(r) as tf.SymbolicTensor; // no producer to fold into
  r = L.averagePooling2d({ poolSize: 2, name: 'avg' }).apply(r) as tf.SymbolicTensor;
  r = L.zeroPadding2d({ padding: 1, name: 'pad' }).apply(r) as tf.SymbolicTensor;
  const c = L.conv2d({ filters: 8, kernelSize: 3, strides: 2, activation: 'relu', name: 'down', kernelInitializer: tf.initializers.heNormal({ seed: 4 }) }).apply(r) as tf.SymbolicTensor;
  const d = L.separableConv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', name: 'sep', depthwiseInitializer: tf.initializers.heNormal({ seed: 5 }), pointwiseInitializer: tf.initializers.heNormal({ seed: 6 }) }).apply(c) as tf.SymbolicTensor;
  const m = L.maxPooling2d({ poolSize: 2, padding: 'same', name: 'max' }).apply(L.multiply({ name: 'gate' }).apply([c, d]) as tf.SymbolicTensor) as tf.SymbolicTensor;
  let e = L.concatenate({ name: 'cat' }).apply([L.globalAveragePooling2d({ name: 'gap' }).apply(m) as tf.SymbolicTensor, L.flatten({ name: 'flat' }).apply(m) as tf.SymbolicTensor]) as tf.SymbolicTensor;
  e = L.dropout({ rate: 0.5, name: 'drop' }).apply(e) as tf.SymbolicTensor;
  e = L.dense({ units: 12, activation: 'tanh', name: 'fc', kernelInitializer: tf.initializers.glorotUniform({ seed: 7 }) }).apply(e) as tf.SymbolicTensor;
  const out = L.dense({ units: 4, activation: 'sigmoid', name: 'head', kernelInitializer: tf.initializers.glorotUniform({ seed: 8 }) }).apply(e) as tf.SymbolicTensor;
  const model = tf.model({ inputs: x, outputs: out });
  randomizeBatchNorms(model);
  return model;
}

async function calibrate(model: string, data: Dataset, samples = 32): Promise<CalibrationTable> {
  return backend.calibrate({ path: model, format: 'tfjs-layers' }, data, { method: 'minmax', samples, target }, ctx);
}

/**
 * The fp32 .tflite written beside the int8 one computes, in the TFLite interpreter, what the
 * TensorFlow.js model computes (float32 against float32: only summation order may differ).
 */
async function expectFloatTwin(model: ModelRef, twin: string, data: Dataset, samples: number): Promise<void> {
  expect(twin).toMatch(/\.fp32\.tflite$/);
  const v = await backend.verify(model, { path: twin, format: 'tflite' }, data, { samples, thresholds: {} }, ctx);
  for (const o of v.outputs) {
    expect(o.snrDb).toBeGreaterThan(100);
    expect(o.maxAbsError).toBeLessThanOrEqual(1e-5);
  }
}

const int8Values = (m: TfliteModel, name: string) => new Int8Array(m.tensors.find((t) => t.name === name)!.data!.slice().buffer);

describe('TensorFlow.js → int8 .tflite', () => {
  beforeAll(async () => {
    await loadTf();
  });

  it('converts the MNIST example: the TFLite interpreter runs it, accuracy holds, size ≤ 0.30×', async () => {
    const model = { path: EXAMPLE, format: 'tfjs-layers' as const };
    const table = await calibrate(EXAMPLE, openDataset('mnist:calib', { inputs: mnistInputs }), 100);
    const out = join(work, 'mnist.tflite');
    const q = await backend.quantize(model, table, options(out, { biasCorrection: true, correctionData: openDataset('mnist:calib', { inputs: mnistInputs }) }), ctx);
    expect(q.model).toEqual({ path: out, format: 'tflite' });
    expect(q.sizeBytes).toBe(statSync(out).size);
    expect(q.sizeBytes / modelSizeBytes(model)).toBeLessThanOrEqual(0.3);
    expect(q.preparation.some((c) => c.kind === 'bias-correction')).toBe(true);

    // Spec: int8 weights symmetric per output channel in ±127, zero point 0; int32 bias at s_in·s_w.
    const m = readTflite(new Uint8Array(readFileSync(out)));
    expect(m.operators.map((o) => o.op)).toEqual(['QUANTIZE', 'CONV_2D', 'MAX_POOL_2D', 'CONV_2D', 'MAX_POOL_2D', 'RESHAPE', 'FULLY_CONNECTED', 'FULLY_CONNECTED', 'SOFTMAX', 'DEQUANTIZE']);
    const conv = m.operators[1];
    const [x, w, b] = conv.inputs.map((i) => m.tensors[i]);
    expect(w.type).toBe('int8');
    expect(w.quantization!.scale).toHaveLength(8);
    expect(w.quantization!.zeroPoint.every((z) => z === 0)).toBe(true);
    expect(Math.min(...int8Values(m, w.name))).toBeGreaterThanOrEqual(-127);
    expect(b.type).toBe('int32');
    b.quantization!.scale.forEach((s, c) => expect(s).toBeCloseTo(x.quantization!.scale[0] * w.quantization!.scale[c], 9));
    const softmaxOut = m.tensors[m.operators[8].outputs[0]];
    expect(softmaxOut.quantization).toMatchObject({ scale: [1 / 256], zeroPoint: [-128] });
    // Pass-through ops keep their input's parameters.
    const pool = m.operators[2];
    expect(m.tensors[pool.outputs[0]].quantization).toEqual(m.tensors[pool.inputs[0]].quantization);

    const v = await backend.verify(model, q.model, openDataset('mnist:test', { inputs: mnistInputs }), { samples: 500, thresholds: { minSnrDb: 25, maxAccuracyDropPoints: 0.5 }, perLayer: true }, ctx);
    expect(v.passed).toBe(true);
    expect(v.accuracy!.candidate).toBeGreaterThan(0.9);
    expect(Math.abs(v.accuracy!.dropPoints)).toBeLessThanOrEqual(0.5);
    expect(v.outputs[0].preActivation?.op).toBe('Softmax');
    expect(v.layers!.map((l) => l.tensor)).toEqual(expect.arrayContaining(['conv1', 'pool1', 'fc1']));
    for (const l of v.layers!) expect(l.snrDb).toBeGreaterThan(20);

    // The fp32 .tflite of the same graph is written beside it and is what the run's benchmark times.
    const twin = join(work, 'mnist.fp32.tflite');
    expect(q.artifacts).toBeUndefined();
    expect(existsSync(twin)).toBe(true);
    const bench = await backend.benchmark(q.model, { threads: 1, warmup: 2, runs: 6, compare: model }, ctx);
    expect(bench.runtime).toMatch(/^tflite-wasm [^ ]+$/);
    expect(bench.compare!.model).toEqual({ path: twin, format: 'tflite' });
    expect(bench.primary.latencyMs.count).toBe(6);
    expect(bench.speedup).toBeGreaterThan(0);
    expect(bench.crossRuntime).toBeUndefined();
    // int8 TFLite against fp32 TensorFlow.js, asked for by another process: two runtimes, and the result says so.
    const cross = await new TfjsBackend().benchmark(q.model, { threads: 1, warmup: 2, runs: 6, compare: model }, ctx);
    expect(cross.runtime).toMatch(/tflite-wasm .* vs tfjs/);
    expect(cross.crossRuntime).toEqual({ primary: expect.stringMatching(/^tflite-wasm/), compare: expect.stringMatching(/^tfjs/) });
    const same = await backend.benchmark(model, { threads: 1, warmup: 1, runs: 3, compare: model }, ctx);
    expect(same.crossRuntime).toBeUndefined();
  });

  it('converts the deeper fixture (BatchNorm, depthwise, residual Add, concat, GAP): accuracy holds, size ≤ 0.30×', async () => {
    const path = join(__dirname, '..', '..', '..', 'examples', 'mnist-deep', 'tfjs', 'model.json');
    const model = { path, format: 'tfjs-layers' as const };
    const inputs = await backend.modelInputs(model);
    const table = await calibrate(path, openDataset('mnist:calib', { inputs }), 100);
    const q = await backend.quantize(model, table, options(join(work, 'deep.tflite'), { biasCorrection: true, correctionData: openDataset('mnist:calib', { inputs }) }), ctx);
    const fp32WeightBytes = (await backend.inspect(model)).parameterCount * 4;
    expect(q.sizeBytes / fp32WeightBytes).toBeLessThanOrEqual(0.3);
    const ops = new Set(readTflite(new Uint8Array(readFileSync(q.model.path))).operators.map((o) => o.op));
    for (const op of ['CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'PAD', 'CONCATENATION', 'MEAN', 'FULLY_CONNECTED', 'SOFTMAX']) expect(ops).toContain(op);
    const v = await backend.verify(model, q.model, openDataset('mnist:test', { inputs }), { samples: 1000, thresholds: { maxAccuracyDropPoints: 0.5 } }, ctx);
    expect(v.passed).toBe(true);
    expect(Math.abs(v.accuracy!.dropPoints)).toBeLessThanOrEqual(0.5);
    await expectFloatTwin(model, fp32TwinPath(q.model.path), openDataset('mnist:test', { inputs }), 200);
  });

  it('folds BatchNorm, fuses ReLU/ReLU6 and converts every supported layer kind with high fidelity', async () => {
    const path = await saveLayers(coverageModel(), join(work, 'coverage'));
    const inputs = [{ name: 'img', dtype: 'float32', shape: [1, 16, 16, 3] }];
    const table = await calibrate(path, openDataset('random:3', { inputs }), 24);
    const out = join(work, 'coverage.tflite');
    const q = await backend.quantize({ path, format: 'tfjs-layers' }, table, options(out), ctx);
    const kinds = q.preparation.map((c) => c.kind);
    expect(kinds.filter((k) => k === 'fold-batchnorm')).toHaveLength(2);
    expect(kinds).toContain('batchnorm-as-depthwise');
    expect(kinds.filter((k) => k === 'fuse-activation')).toHaveLength(2);
    const ops = new Set(readTflite(new Uint8Array(readFileSync(out))).operators.map((o) => o.op));
    for (const op of ['CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'MUL', 'AVERAGE_POOL_2D', 'MAX_POOL_2D', 'PAD', 'MEAN', 'RESHAPE', 'CONCATENATION', 'FULLY_CONNECTED', 'TANH', 'LOGISTIC']) expect(ops).toContain(op);
    expect(ops).not.toContain('RELU');
    const v = await backend.verify({ path, format: 'tfjs-layers' }, q.model, openDataset('random:4', { inputs }), { samples: 16, thresholds: { minSnrDb: 25 }, perLayer: true }, ctx);
    expect(v.outputs[0].snrDb).toBeGreaterThan(25);
    expect(v.outputs[0].preActivation?.op).toBe('Sigmoid');
    const twin = fp32TwinPath(q.model.path);
    expect(readTflite(new Uint8Array(readFileSync(twin))).operators.map((o) => o.op)).toEqual(readTflite(new Uint8Array(readFileSync(out))).operators.map((o) => o.op).filter((op) => op !== 'QUANTIZE' && op !== 'DEQUANTIZE'));
    await expectFloatTwin({ path, format: 'tfjs-layers' }, twin, openDataset('random:4', { inputs }), 16);
  });

  it('writes int8 model inputs and outputs when asked', async () => {
    const table = await calibrate(EXAMPLE, openDataset('mnist:calib', { inputs: mnistInputs }), 32);
    const out = join(work, 'mnist-int8io.tflite');
    const q = await backend.quantize({ path: EXAMPLE, format: 'tfjs-layers' }, table, options(out, { ioType: 'int8' }), ctx);
    const m = readTflite(new Uint8Array(readFileSync(out)));
    expect(m.tensors[m.inputs[0]].type).toBe('int8');
    expect(m.tensors[m.outputs[0]].type).toBe('int8');
    expect(m.operators.some((o) => o.op === 'QUANTIZE' || o.op === 'DEQUANTIZE')).toBe(false);
    const v = await backend.verify({ path: EXAMPLE, format: 'tfjs-layers' }, q.model, openDataset('mnist:test', { inputs: mnistInputs }), { samples: 200, thresholds: { maxAccuracyDropPoints: 1 } }, ctx);
    expect(v.passed).toBe(true);
  });

  it('names every layer it cannot convert in one coded error and writes nothing', async () => {
    const L = tf.layers;
    const x = tf.input({ shape: [8, 8, 2] });
    const y = L.conv2dTranspose({ filters: 2, kernelSize: 2, name: 'upsample_me' }).apply(x) as tf.SymbolicTensor;
    const z = L.dense({ units: 3, name: 'dense_on_4d' }).apply(y) as tf.SymbolicTensor;
    const path = await saveLayers(tf.model({ inputs: x, outputs: z }), join(work, 'unsupported'));
    const out = join(work, 'never.tflite');
    const err = await backend.calibrate({ path, format: 'tfjs-layers' }, openDataset('random', { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 8, 8, 2] }] }), { method: 'minmax', samples: 2, target }, ctx).catch((e) => e);
    expect(err.code).toBe('E_UNSUPPORTED_OP');
    expect(err.message).toMatch(/Conv2DTranspose \(upsample_me\)/);
    expect(err.message).toMatch(/Dense \(dense_on_4d: input of rank 4/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a corrupt model.json, a missing shard, NaN data and a mismatched table without writing', async () => {
    const dir = join(work, 'broken');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.json'), '{"modelTopology": ');
    const out = join(work, 'broken.tflite');
    const table = await calibrate(EXAMPLE, openDataset('mnist:calib', { inputs: mnistInputs }), 4);
    await expect(backend.quantize({ path: join(dir, 'model.json'), format: 'tfjs-layers' }, table, options(out), ctx)).rejects.toMatchObject({ code: 'E_MODEL_CORRUPT' });
    const json = JSON.parse(readFileSync(EXAMPLE, 'utf8'));
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json)); // shard not copied
    await expect(backend.quantize({ path: join(dir, 'model.json'), format: 'tfjs-layers' }, table, options(out), ctx)).rejects.toMatchObject({ code: 'E_MODEL_CORRUPT', message: expect.stringMatching(/missing/) });
    const nan: Dataset = {
      description: { source: 'nan', count: 1, labeled: false, synthetic: true },
      async *samples() {
        yield { id: 'nan', inputs: { x: { name: 'x', dtype: 'float32', dims: [1, 28, 28, 1], data: new Float32Array(784).fill(Number.NaN) } } };
      },
    } as unknown as Dataset;
    await expect(calibrate(EXAMPLE, nan, 1)).rejects.toMatchObject({ code: 'E_DATA_NOT_FINITE' });
    await expect(backend.quantize({ path: EXAMPLE, format: 'tfjs-layers' }, { ...table, model: { ...table.model, sha256: '0'.repeat(64) } }, options(out), ctx)).rejects.toMatchObject({ code: 'E_CALIB_TABLE_MISMATCH' });
    expect(existsSync(out)).toBe(false);
  });

  it('the TFLite interpreter refuses bytes that are not a model with E_MODEL_CORRUPT', async () => {
    await expect(loadTfliteInterpreter(new TextEncoder().encode('not a tflite model at all'), { name: 'junk.tflite' })).rejects.toMatchObject({ code: 'E_MODEL_CORRUPT', message: expect.stringMatching(/junk\.tflite/) });
  });
});

describe('a real pretrained TensorFlow.js model from npm (nsfwjs MobileNetV2) on real photos', () => {
  it('converts, runs in the TFLite interpreter and stays within 20 dB of fp32', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fixture = require('../../../tools/make-photo-fixture.js') as { extractNsfwjsModel(dir: string): string; makePhotos(dir: string, perPhoto: number): Promise<string> };
    const path = fixture.extractNsfwjsModel(join(work, 'nsfwjs'));
    const photos = await fixture.makePhotos(join(work, 'photos'), 4);
    const model = { path, format: 'tfjs-layers' as const };
    const inputs = await backend.modelInputs(model);
    const calib = () => openDataset(join(photos, 'calib'), { inputs });
    const table = await calibrate(path, calib(), 12);
    const q = await backend.quantize(model, table, options(join(work, 'mobilenet_v2.tflite'), { biasCorrection: true, correctionData: calib() }), ctx);
    const m = readTflite(new Uint8Array(readFileSync(q.model.path)));
    expect(m.operators.filter((o) => o.op === 'DEPTHWISE_CONV_2D')).toHaveLength(17);
    const v = await backend.verify(model, q.model, openDataset(join(photos, 'eval'), { inputs }), { samples: 12, thresholds: { minSnrDb: 20 } }, ctx);
    expect(v.outputs[0].snrDb).toBeGreaterThanOrEqual(20);
    await expectFloatTwin(model, fp32TwinPath(q.model.path), openDataset(join(photos, 'eval'), { inputs }), 12);
  });
});

describe('weight-compressed TensorFlow.js models (--mode weight-only)', () => {
  it('stores kernels as int8 per channel, loads back dequantized and keeps accuracy', async () => {
    const out = join(work, 'web', 'model.int8.json');
    mkdirSync(join(work, 'web'), { recursive: true });
    const q = await backend.quantize({ path: EXAMPLE, format: 'tfjs-layers' }, undefined, options(out, { mode: 'weight-only' }), ctx);
    expect(q.model).toEqual({ path: out, format: 'tfjs-layers' });
    const json = JSON.parse(readFileSync(out, 'utf8'));
    const fc1 = json.weightsManifest[0].weights.find((w: { name: string }) => w.name.includes('fc1') && w.name.includes('kernel'));
    expect(fc1.quantization).toMatchObject({ dtype: 'int8', scheme: 'qforge-int8-per-axis', axis: 1 });
    expect(fc1.quantization.scales).toHaveLength(128);
    expect(q.sizeBytes / modelSizeBytes({ path: EXAMPLE, format: 'tfjs-layers' })).toBeLessThanOrEqual(0.3);
    expect(Object.keys(q.artifacts!)).toEqual([join(work, 'web', 'model.int8.weights.bin')]);
    const v = await backend.verify({ path: EXAMPLE, format: 'tfjs-layers' }, q.model, openDataset('mnist:test', { inputs: mnistInputs }), { samples: 300, thresholds: { minSnrDb: 40, maxAccuracyDropPoints: 0.5 } }, ctx);
    expect(v.passed).toBe(true);
    // Stock TensorFlow.js cannot read the int8 dtype and says so.
    const a = JSON.parse(readFileSync(out, 'utf8'));
    const data = readFileSync(join(work, 'web', 'model.int8.weights.bin'));
    expect(() => tf.io.decodeWeights(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), a.weightsManifest[0].weights)).toThrow(/int8|dtype/i);
  });
});
