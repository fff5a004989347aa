// TensorFlow.js graph models (converted SavedModels) → int8 .tflite, checked in the TFLite interpreter.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, openDataset, quantizeOptionsFor, resolveTargetProfile, type TensorInfo } from '@qforge/core';
import { readTflite } from '@qforge/tflite';
import { TfjsBackend, fp32TwinPath } from './backend';
import { loadTf } from './engine';
import { graphInputs, type GraphNode } from './graph-lower';

const ctx = createRunContext();
const target = resolveTargetProfile('tflite-int8');
const backend = new TfjsBackend();
const work = mkdtempSync(join(tmpdir(), 'qforge-graph-'));

const b64 = (s: string) => Buffer.from(s).toString('base64');
const ints = (...v: number[]) => ({ list: { i: v.map(String) } });
const conv = (name: string, x: string, w: string, b: string, fused: string[], strides = 1, op = '_FusedConv2D'): GraphNode => ({
  name,
  op,
  input: [x, w, b],
  attr: { strides: ints(1, strides, strides, 1), dilations: ints(1, 1, 1, 1), padding: { s: b64('SAME') }, data_format: { s: b64('NHWC') }, num_args: { i: '1' }, fused_ops: { list: { s: fused.map(b64) } }, T: { type: 'DT_FLOAT' } },
});

type Storage = 'float32' | 'uint8' | 'float16' | 'int32';
interface ConstSpec {
  name: string;
  shape: number[];
  values: number[];
  storage?: Storage;
}

/** float32 → IEEE half, round to nearest (enough for weights in a normal range). */
function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  const mant = Math.round((x & 0x7fffff) / 0x2000);
  return sign | ((exp << 10) + mant);
}

/** Writes model.json + one shard; weights stored as the converter stores them (float32, uint8-affine, float16, int32). */
function saveGraph(dir: string, nodes: GraphNode[], consts: ConstSpec[], extra: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  const chunks: Buffer[] = [];
  const weights = consts.map((c) => {
    const storage = c.storage ?? 'float32';
    if (storage === 'int32') {
      chunks.push(Buffer.from(Int32Array.from(c.values).buffer));
      return { name: c.name, shape: c.shape, dtype: 'int32' };
    }
    if (storage === 'uint8') {
      const min = Math.min(...c.values);
      const scale = (Math.max(...c.values) - min) / 255 || 1;
      chunks.push(Buffer.from(Uint8Array.from(c.values, (v) => Math.round((v - min) / scale))));
      return { name: c.name, shape: c.shape, dtype: 'float32', quantization: { dtype: 'uint8', min, scale } };
    }
    if (storage === 'float16') {
      chunks.push(Buffer.from(Uint16Array.from(c.values, toHalf).buffer));
      return { name: c.name, shape: c.shape, dtype: 'float32', quantization: { dtype: 'float16' } };
    }
    chunks.push(Buffer.from(Float32Array.from(c.values).buffer));
    return { name: c.name, shape: c.shape, dtype: 'float32' };
  });
  writeFileSync(join(dir, 'w.bin'), Buffer.concat(chunks));
  const constNodes: GraphNode[] = consts.map((c) => ({ name: c.name, op: 'Const', attr: { dtype: { type: c.storage === 'int32' ? 'DT_INT32' : 'DT_FLOAT' } } }));
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', generatedBy: 'test', convertedBy: 'hand', modelTopology: { node: [...constNodes, ...nodes], versions: { producer: 1 } }, weightsManifest: [{ paths: ['w.bin'], weights }], ...extra }));
  return join(dir, 'model.json');
}

let seed = 7;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
const randoms = (n: number, scale: number) => Array.from({ length: n }, () => rand() * scale);
const input: GraphNode = { name: 'image', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [{ size: '-1' }, { size: '12' }, { size: '12' }, { size: '3' }] } } } };

/** The op forms tensorflowjs_converter writes for a small MobileNet-like net. */
function coverageGraph(): { nodes: GraphNode[]; consts: ConstSpec[] } {
  const consts: ConstSpec[] = [
    { name: 'two', shape: [], values: [2] },
    { name: 'one', shape: [], values: [1] },
    { name: 'w1', shape: [3, 3, 3, 8], values: randoms(216, 0.4), storage: 'uint8' },
    { name: 'b1', shape: [8], values: randoms(8, 0.2) },
    { name: 'wdw', shape: [3, 3, 8, 1], values: randoms(72, 0.5), storage: 'float16' },
    { name: 'bdw', shape: [8], values: randoms(8, 0.1), storage: 'float16' },
    { name: 'w2', shape: [1, 1, 8, 8], values: randoms(64, 0.5) },
    { name: 'bn_scale', shape: [8], values: randoms(8, 0.5).map((v) => 1 + v) },
    { name: 'bn_offset', shape: [8], values: randoms(8, 0.3) },
    { name: 'bn_mean', shape: [8], values: randoms(8, 0.3) },
    { name: 'bn_var', shape: [8], values: randoms(8, 0.4).map((v) => 1 + v) },
    { name: 'paddings', shape: [4, 2], values: [0, 0, 1, 1, 1, 1, 0, 0], storage: 'int32' },
    { name: 'w3', shape: [1, 1, 8, 8], values: randoms(64, 0.5) },
    { name: 'b3', shape: [8], values: randoms(8, 0.1) },
    { name: 'spatial', shape: [2], values: [1, 2], storage: 'int32' },
    { name: 'last', shape: [], values: [-1], storage: 'int32' },
    { name: 'wfc', shape: [6, 16], values: randoms(96, 0.4) },
    { name: 'bfc', shape: [6], values: randoms(6, 0.1) },
  ];
  const nodes: GraphNode[] = [
    input,
    { name: 'norm/Mul', op: 'Mul', input: ['image', 'two'] },
    { name: 'norm/Sub', op: 'Sub', input: ['norm/Mul', 'one'] },
    conv('conv1/Relu6', 'norm/Sub', 'w1', 'b1', ['BiasAdd', 'Relu6']),
    conv('dw/Relu', 'conv1/Relu6', 'wdw', 'bdw', ['BiasAdd', 'Relu'], 2, 'FusedDepthwiseConv2dNative'),
    { name: 'pw/Conv2D', op: 'Conv2D', input: ['dw/Relu', 'w2'], attr: { strides: ints(1, 1, 1, 1), dilations: ints(1, 1, 1, 1), padding: { s: b64('VALID') }, data_format: { s: b64('NHWC') } } },
    { name: 'pw/bn', op: 'FusedBatchNormV3', input: ['pw/Conv2D', 'bn_scale', 'bn_offset', 'bn_mean', 'bn_var'], attr: { epsilon: { f: 0.001 }, data_format: { s: b64('NHWC') } } },
    { name: 'pw/relu', op: 'Relu', input: ['pw/bn'] },
    { name: 'pad', op: 'Pad', input: ['pw/relu', 'paddings'] },
    { name: 'pool', op: 'MaxPool', input: ['pad'], attr: { ksize: ints(1, 2, 2, 1), strides: ints(1, 2, 2, 1), padding: { s: b64('VALID') }, data_format: { s: b64('NHWC') } } },
    conv('branch/BiasAdd', 'pool', 'w3', 'b3', ['BiasAdd']),
    { name: 'res/add', op: 'AddV2', input: ['pool', 'branch/BiasAdd'] },
    { name: 'se/mean', op: 'Mean', input: ['res/add', 'spatial'], attr: { keep_dims: { b: true } } },
    { name: 'se/gate', op: 'Sigmoid', input: ['se/mean'] },
    { name: 'se/mul', op: 'Mul', input: ['res/add', 'se/gate'] },
    { name: 'cat', op: 'ConcatV2', input: ['se/mul', 'res/add', 'last'], attr: { N: { i: '2' } } },
    { name: 'gap', op: 'AvgPool', input: ['cat'], attr: { ksize: ints(1, 4, 4, 1), strides: ints(1, 1, 1, 1), padding: { s: b64('VALID') }, data_format: { s: b64('NHWC') } } },
    { name: 'squeeze', op: 'Squeeze', input: ['gap'], attr: { squeeze_dims: ints(1, 2) } },
    { name: 'fc/BiasAdd', op: '_FusedMatMul', input: ['squeeze', 'wfc', 'bfc'], attr: { transpose_a: { b: false }, transpose_b: { b: true }, fused_ops: { list: { s: [b64('BiasAdd')] } }, num_args: { i: '1' } } },
    { name: 'prob', op: 'Softmax', input: ['fc/BiasAdd'] },
    { name: 'Identity', op: 'Identity', input: ['prob'] },
  ];
  return { nodes, consts };
}

describe('TensorFlow.js graph models → int8 .tflite', () => {
  beforeAll(async () => {
    await loadTf();
  });

  it('reads the input signature from the Placeholder, and from the signature when the Placeholder has no shape', () => {
    expect(graphInputs([input], undefined)).toEqual([{ name: 'image', dtype: 'float32', shape: ['batch', 12, 12, 3] }]);
    const bare: GraphNode = { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' } } };
    const signature = { inputs: { 'x:0': { name: 'x:0', dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, { size: '-1' }, { size: '32' }, { size: '1' }] } } } };
    expect(graphInputs([bare], signature)).toEqual([{ name: 'x', dtype: 'float32', shape: ['batch', 'x_1', 32, 1] }]);
    // No shape anywhere: nothing is invented.
    expect(graphInputs([bare], undefined)).toEqual([{ name: 'x', dtype: 'float32', shape: [] }]);
  });

  it('lowers the converter op forms (fused conv/depthwise/matmul, batch norm, pad, pools, SE mul, concat, mean, squeeze) with uint8 and float16 weights', async () => {
    const { nodes, consts } = coverageGraph();
    const path = saveGraph(join(work, 'coverage'), nodes, consts);
    const model = { path, format: 'tfjs-graph' as const };
    const inputs: TensorInfo[] = await backend.modelInputs(model);
    expect(inputs).toEqual([{ name: 'image', dtype: 'float32', shape: ['batch', 12, 12, 3] }]);
    const data = (s: number) => openDataset(`random:${s}`, { inputs });
    const table = await backend.calibrate(model, data(3), { method: 'minmax', samples: 24, target }, ctx);
    const out = join(work, 'coverage.tflite');
    const q = await backend.quantize(model, table, quantizeOptionsFor(target, { output: out }), ctx);
    const kinds = q.preparation.map((c) => c.kind);
    expect(kinds).toEqual(expect.arrayContaining(['merge-affine', 'batchnorm-as-depthwise', 'fold-batchnorm', 'fuse-activation']));
    const m = readTflite(new Uint8Array(readFileSync(out)));
    const ops = m.operators.map((o) => o.op);
    for (const op of ['DEPTHWISE_CONV_2D', 'CONV_2D', 'PAD', 'MAX_POOL_2D', 'ADD', 'MEAN', 'LOGISTIC', 'MUL', 'CONCATENATION', 'AVERAGE_POOL_2D', 'RESHAPE', 'FULLY_CONNECTED', 'SOFTMAX']) expect(ops).toContain(op);
    // ReLU/ReLU6 ride on their kernels; the input's x·2−1 is one 1×1 depthwise op.
    expect(ops).not.toContain('RELU');
    expect(ops.filter((o) => o === 'DEPTHWISE_CONV_2D')).toHaveLength(2);
    const v = await backend.verify(model, q.model, data(4), { samples: 16, thresholds: { minSnrDb: 25 }, perLayer: true }, ctx);
    expect(v.outputs[0].preActivation?.op).toBe('Softmax');
    expect(v.outputs[0].preActivation!.snrDb).toBeGreaterThan(25);
    expect(v.layers!.length).toBeGreaterThan(8);
    // The fp32 .tflite beside it: the same operators in float32, computing what TensorFlow.js computes.
    const twin = join(work, 'coverage.fp32.tflite');
    expect(existsSync(twin)).toBe(true);
    expect(readTflite(new Uint8Array(readFileSync(twin))).operators.map((o) => o.op)).toEqual(ops.filter((op) => op !== 'QUANTIZE' && op !== 'DEQUANTIZE'));
    const f = await backend.verify(model, { path: twin, format: 'tflite' }, data(4), { samples: 16, thresholds: {} }, ctx);
    expect(f.outputs[0].snrDb).toBeGreaterThan(100);
    expect(f.outputs[0].maxAbsError).toBeLessThanOrEqual(1e-5);
  });

  it('names every node it cannot convert in one coded error and writes nothing', async () => {
    const nodes: GraphNode[] = [
      input,
      { name: 'gelu/erf', op: 'Erf', input: ['image'] },
      { name: 'mirror', op: 'MirrorPad', input: ['gelu/erf', 'paddings'], attr: { mode: { s: b64('REFLECT') } } },
      { name: 'ratio', op: 'RealDiv', input: ['mirror', 'mirror'] },
      { name: 'Identity', op: 'Identity', input: ['ratio'] },
    ];
    const path = saveGraph(join(work, 'unsupported'), nodes, [{ name: 'paddings', shape: [4, 2], values: [0, 0, 1, 1, 1, 1, 0, 0], storage: 'int32' }]);
    const model = { path, format: 'tfjs-graph' as const };
    const inputs = await backend.modelInputs(model);
    const err = await backend.calibrate(model, openDataset('random', { inputs }), { method: 'minmax', samples: 2, target }, ctx).catch((e) => e);
    expect(err.code).toBe('E_UNSUPPORTED_OP');
    expect(err.message).toMatch(/Erf \(gelu\/erf\)/);
    expect(err.message).toMatch(/MirrorPad \(mirror\)/);
    expect(err.message).toMatch(/RealDiv \(ratio: division of two tensors\)/);
    expect(existsSync(join(work, 'never.tflite'))).toBe(false);
  });
});

describe('a real published graph model from npm (nsfwjs MobileNetV2 "mid", uint8 weights) on real photos', () => {
  it('converts to int8 .tflite: top-1 agreement with fp32 ≥ 95%, size ≤ 0.3× of its float weights', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fixture = require('../../../tools/make-photo-fixture.js') as { extractNsfwjsGraphModel(dir: string): string; makePhotos(dir: string, perPhoto: number): Promise<string> };
    const path = fixture.extractNsfwjsGraphModel(join(work, 'nsfwjs-mid'));
    const photos = await fixture.makePhotos(join(work, 'photos'), 8);
    const model = { path, format: 'tfjs-graph' as const };
    const inputs = await backend.modelInputs(model);
    expect(inputs[0].shape).toEqual(['batch', 224, 224, 3]);
    const calib = () => openDataset(join(photos, 'calib'), { inputs });
    const table = await backend.calibrate(model, calib(), { method: 'minmax', samples: 24, target }, ctx);
    const q = await backend.quantize(model, table, quantizeOptionsFor(target, { output: join(work, 'nsfwjs-mid.tflite'), biasCorrection: true, correctionData: calib() }), ctx);
    const fp32WeightBytes = (await backend.inspect(model)).parameterCount * 4;
    expect(q.sizeBytes / fp32WeightBytes).toBeLessThanOrEqual(0.3);
    const m = readTflite(new Uint8Array(readFileSync(q.model.path)));
    expect(m.operators.filter((o) => o.op === 'DEPTHWISE_CONV_2D')).toHaveLength(18); // 17 + the input's x·2−1
    const v = await backend.verify(model, q.model, openDataset(join(photos, 'eval'), { inputs }), { samples: 24, thresholds: {} }, ctx);
    expect(v.outputs[0].top1Agreement).toBeGreaterThanOrEqual(0.95);
    expect(v.outputs[0].preActivation!.snrDb).toBeGreaterThan(15);
    const f = await backend.verify(model, { path: fp32TwinPath(q.model.path), format: 'tflite' }, openDataset(join(photos, 'eval'), { inputs }), { samples: 24, thresholds: {} }, ctx);
    expect(f.outputs[0].snrDb).toBeGreaterThan(100);
    expect(f.outputs[0].maxAbsError).toBeLessThanOrEqual(1e-5);
  });
});
