import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, encodeNpy, modelRef, openDataset, resolveTargetProfile, type QuantizeOptions } from '@qforge/core';
import { DataType, attrInt, halfToFloat, tensorToFloat32, intAttr, intsAttr, loadModel, makeNode, makeTensor, makeValueInfo, opsetVersion, saveModel, type ModelProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { OnnxRuntimeBackend } from '../src/backend';
import { prepareModel } from '../src/prepare';
import { lstmHead, messyCnn, mlp } from './fixtures';

const dir = mkdtempSync(join(tmpdir(), 'qforge-ort-'));
const ctx = createRunContext();
const target = resolveTargetProfile('x86-avx2');
const backend = new OnnxRuntimeBackend();

function qopts(output: string, over: Partial<QuantizeOptions> = {}): QuantizeOptions {
  const d = target.defaults;
  return { output, target, mode: 'static', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [], ...over };
}

/** float → IEEE half bits (round to nearest; the test values are exactly representable). */
function floatToHalf(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

/** Values on the float16 grid (3 significant bits), so half and float compute alike. */
function randnHalfExact(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (((i * 7919) % 15) - 7) / 8);
}

async function run(path: string, feeds: Record<string, Float32Array>, dims: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(path);
  const out = await s.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('float32', v, dims)])));
  return out[s.outputNames[0]].data as Float32Array;
}

describe('model preparation', () => {
  it('turns Constant weights into initializers, folds BatchNorm and upgrades opset 11 → 13 without changing outputs', async () => {
    const path = join(dir, 'messy.onnx');
    await saveModel(messyCnn(), path);
    const proto = loadModel(path).proto;
    const prep = prepareModel(proto, new Map([['logits', [1, 5]]]), { needPerAxis: true });
    expect(prep.changes.map((c) => c.kind)).toEqual(['constant-to-initializer', 'fold-batchnorm', 'drop-unused', 'opset-upgrade']);
    expect(opsetVersion(prep.proto)).toBe(13);
    expect(prep.proto.graph.node.map((n) => n.opType)).not.toContain('BatchNormalization');
    expect(prep.proto.graph.node.map((n) => n.opType)).not.toContain('Constant');
    const preparedPath = join(dir, 'prepared.onnx');
    await saveModel(prep.proto, preparedPath);
    const x = openDataset('random:1', { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 3, 16, 16] }] });
    for await (const s of x.samples({ limit: 3 })) {
      const a = await run(path, { x: s.inputs.x.data as Float32Array }, [1, 3, 16, 16]);
      const b = await run(preparedPath, { x: s.inputs.x.data as Float32Array }, [1, 3, 16, 16]);
      for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i], 5);
    }
  });

  it('raises a float16 model (half weights, input cast to half) to float32 with the same function', async () => {
    // Weights exactly representable in float16, so both models compute the same thing.
    const w = randnHalfExact(4 * 3 * 3 * 3);
    const half = (a: Float32Array) => ({ ...makeTensor('', [a.length], new Float32Array(0)), dataType: DataType.FLOAT16, rawData: new Uint8Array(Uint16Array.from(a, floatToHalf).buffer) });
    const proto: ModelProto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 13 }],
      graph: {
        name: 'half',
        node: [
          makeNode('Cast', ['x'], ['x16'], 'cast_in', [intAttr('to', DataType.FLOAT16)]),
          makeNode('Conv', ['x16', 'w', 'b'], ['y16'], 'conv', [intsAttr('kernel_shape', [3, 3]), intsAttr('pads', [1, 1, 1, 1])]),
          makeNode('Relu', ['y16'], ['r16'], 'relu'),
          makeNode('Cast', ['r16'], ['y'], 'cast_out', [intAttr('to', DataType.FLOAT)]),
        ],
        initializer: [{ ...half(w), name: 'w', dims: [4, 3, 3, 3] }, { ...half(Float32Array.from([0.5, -0.25, 0, 1])), name: 'b', dims: [4] }],
        input: [makeValueInfo('x', DataType.FLOAT, [1, 3, 8, 8])],
        output: [makeValueInfo('y', DataType.FLOAT, [1, 4, 8, 8])],
        valueInfo: [makeValueInfo('y16', DataType.FLOAT16, [1, 4, 8, 8])],
      },
    };
    const path = join(dir, 'half.onnx');
    await saveModel(proto, path);
    const prep = prepareModel(loadModel(path).proto, new Map(), { needPerAxis: true });
    expect(prep.changes.map((c) => c.kind)).toContain('upcast-float16');
    expect(prep.proto.graph.initializer.every((t) => t.dataType === DataType.FLOAT)).toBe(true);
    expect(prep.proto.graph.node.filter((n) => n.opType === 'Cast').every((n) => attrInt(n, 'to', 0) === DataType.FLOAT)).toBe(true);
    const preparedPath = join(dir, 'half-prepared.onnx');
    await saveModel(prep.proto, preparedPath);
    const x = Float32Array.from({ length: 3 * 64 }, (_, i) => ((i * 37) % 17) / 8 - 1);
    const a = await run(path, { x }, [1, 3, 8, 8]);
    const b = await run(preparedPath, { x }, [1, 3, 8, 8]);
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i], 2);
  });

  it('decodes float16 bit patterns exactly', () => {
    expect([0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x0000].map(halfToFloat)).toEqual([1, -2, 65504, 2 ** -24, 0.333251953125, 0]);
    expect(halfToFloat(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });

  it('keeps the opset (and falls back to per-tensor weights) when an op would change meaning', async () => {
    const proto = messyCnn({ softmaxAxis: 1, flattenBeforeSoftmax: false });
    const prep = prepareModel(proto, new Map([['logits4', [1, 5, 1, 1]]]), { needPerAxis: true });
    expect(prep.opset).toBe(11);
    expect(prep.perAxisBlockedBy).toMatch(/Softmax/);
    expect(prep.changes.map((c) => c.kind)).toContain('opset-kept');
  });

  it.each([
    ['upgraded', messyCnn(), 'per-channel'],
    ['kept by a Softmax axis seen only at run time', messyCnn({ softmaxAxis: 1, flattenBeforeSoftmax: false }), 'per-tensor'],
  ] as const)('calibration learns the shapes from its own first run; the table fits quantize when the opset is %s', async (_, proto, granularity) => {
    const path = join(dir, `shape-${granularity}.onnx`);
    await saveModel(proto, path);
    const model = modelRef(path);
    const table = await backend.calibrate(model, openDataset('random:2', { inputs: await backend.modelInputs(model) }), { method: 'minmax', samples: 4, target }, ctx);
    const r = await backend.quantize(model, table, qopts(join(dir, `shape-${granularity}.int8.onnx`)), ctx);
    expect(r.decisions.filter((d) => d.quantized).every((d) => d.granularity === granularity)).toBe(true);
    expect(Object.keys(table.tensors).length).toBeGreaterThan(3);
  });
});

describe('static QDQ quantization', () => {
  const path = join(dir, 'messy-q.onnx');
  beforeAll(() => saveModel(messyCnn(), path));

  it('quantizes a real-export-shaped model that ONNX Runtime runs, with per-channel 7-bit weights on AVX2', async () => {
    const model = modelRef(path);
    const inputs = await backend.modelInputs(model);
    const table = await backend.calibrate(model, openDataset('random:2', { inputs }), { method: 'minmax', samples: 16, target }, ctx);
    const out = join(dir, 'messy.int8.onnx');
    const r = await backend.quantize(model, table, qopts(out), ctx);
    expect(r.decisions.filter((d) => d.quantized).map((d) => d.node)).toEqual(['conv1', 'conv2', 'fc']);
    expect(r.preparation.map((c) => c.kind)).toEqual(expect.arrayContaining(['fold-batchnorm', 'opset-upgrade', 'fuse-activation', 'insert-qdq']));
    const q = loadModel(out).proto;
    const dq = q.graph.node.filter((n) => n.opType === 'DequantizeLinear');
    // conv1 weights: int8 per output channel (axis 0), values within ±63 (reduce-range).
    const w1 = q.graph.node.find((n) => n.opType === 'DequantizeLinear' && n.output[0].startsWith('w1'))!;
    expect(attrInt(w1, 'axis', -1)).toBe(0);
    const w1q = q.graph.initializer.find((t) => t.name === w1.input[0])!;
    const vals = new Int8Array(w1q.rawData!.buffer, w1q.rawData!.byteOffset, w1q.rawData!.byteLength);
    expect(Math.max(...Array.from(vals).map(Math.abs))).toBeLessThanOrEqual(63);
    expect(dq.length).toBeGreaterThan(5);
    const v = await backend.verify(model, modelRef(out), openDataset('random:3', { inputs }), { samples: 16, thresholds: { minSnrDb: 20 }, perLayer: true }, ctx);
    expect(v.outputs[0].snrDb).toBeGreaterThan(20);
    expect(v.layers!.length).toBeGreaterThan(2);
    expect(v.layers![0].snrDb).toBeLessThanOrEqual(v.layers![v.layers!.length - 1].snrDb);
    // Each layer's size in one run (the latency search's cost of a float node): input 3×16×16,
    // 8×16×16 after conv1 (BatchNorm folded, Clip fused), 16×16×16 after conv2, 16 after pooling.
    expect(Object.fromEntries(v.layers!.map((l) => [l.tensor, l.elements]))).toEqual({ x: 768, relu6: 2048, relu2: 4096, flat: 16 });
  });

  it('keeps excluded nodes in float and says why', async () => {
    const model = modelRef(path);
    const table = await backend.calibrate(model, openDataset('random:2', { inputs: await backend.modelInputs(model) }), { method: 'percentile', samples: 8, target }, ctx);
    const r = await backend.quantize(model, table, qopts(join(dir, 'excl.onnx'), { excludeNodes: ['fc'] }), ctx);
    expect(r.decisions.find((d) => d.node === 'fc')).toMatchObject({ quantized: false, reason: expect.stringMatching(/excluded/) });
  });

  it('refuses a calibration table made for another model and writes nothing', async () => {
    const other = join(dir, 'mlp.onnx');
    await saveModel(mlp(), other);
    const table = await backend.calibrate(modelRef(other), openDataset('random', { inputs: await backend.modelInputs(modelRef(other)) }), { method: 'minmax', samples: 2, target }, ctx);
    const out = join(dir, 'mismatch.onnx');
    await expect(backend.quantize(modelRef(path), table, qopts(out), ctx)).rejects.toMatchObject({ code: 'E_CALIB_TABLE_MISMATCH' });
    expect(existsSync(out)).toBe(false);
  });

  it('refuses NaN data and data of the wrong shape with coded errors', async () => {
    const model = modelRef(path);
    const inputs = await backend.modelInputs(model);
    const bad = new Float32Array(3 * 16 * 16);
    bad[5] = Infinity;
    writeFileSync(join(dir, 'inf.npy'), encodeNpy([1, 3, 16, 16], bad));
    await expect(backend.calibrate(model, openDataset(join(dir, 'inf.npy'), { inputs }), { method: 'minmax', samples: 4, target }, ctx)).rejects.toMatchObject({ code: 'E_DATA_NOT_FINITE' });
    writeFileSync(join(dir, 'wrong.npy'), encodeNpy([1, 3, 8, 8], new Float32Array(3 * 64)));
    // The shape is refused when the data is opened, before any session exists.
    expect(() => openDataset(join(dir, 'wrong.npy'), { inputs })).toThrow(expect.objectContaining({ code: 'E_INPUT_SHAPE' }));
    // A dataset that bypasses the checks still meets ONNX Runtime's: E_INPUT_SHAPE, not a crash.
    const unchecked = { description: { kind: 'custom' as const, source: 'unchecked', synthetic: false, labeled: false }, async *samples() { yield { id: 'w', inputs: { [inputs[0].name]: { dtype: 'float32' as const, dims: [1, 3, 8, 8], data: new Float32Array(3 * 64) } } }; } };
    await expect(backend.calibrate(model, unchecked, { method: 'minmax', samples: 4, target }, ctx)).rejects.toMatchObject({ code: 'E_INPUT_SHAPE' });
  });

  it('leaves the input model untouched', async () => {
    const before = readFileSync(path);
    const model = modelRef(path);
    const table = await backend.calibrate(model, openDataset('random', { inputs: await backend.modelInputs(model) }), { method: 'minmax', samples: 2, target }, ctx);
    await backend.quantize(model, table, qopts(join(dir, 'untouched.int8.onnx')), ctx);
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});

describe('dynamic quantization', () => {
  it('rewrites MatMul to DynamicQuantizeMatMul with close outputs', async () => {
    const path = join(dir, 'mlp-dyn.onnx');
    await saveModel(mlp(), path);
    const out = join(dir, 'mlp.int8.onnx');
    const r = await backend.quantize(modelRef(path), undefined, qopts(out, { mode: 'dynamic' }), ctx);
    expect(r.decisions.every((d) => d.quantized)).toBe(true);
    expect(loadModel(out).proto.graph.node.map((n) => n.opType)).toEqual(['DynamicQuantizeMatMul', 'Add', 'Relu', 'DynamicQuantizeMatMul']);
    const v = await backend.verify(modelRef(path), modelRef(out), openDataset('random:5', { inputs: await backend.modelInputs(modelRef(path)) }), { samples: 8, thresholds: {} }, ctx);
    expect(v.outputs[0].cosine).toBeGreaterThan(0.99);
  });
});

describe('recurrent layers: LSTM → DynamicQuantizeLSTM', () => {
  const path = join(dir, 'lstm.onnx');
  beforeAll(() => saveModel(lstmHead(), path));
  const sizeOf = (p: string) => readFileSync(p).length;

  it.each(['dynamic', 'static'] as const)('%s mode stores int8 LSTM weights (transposed per direction) and keeps the outputs', async (mode) => {
    const model = modelRef(path);
    const inputs = await backend.modelInputs(model);
    const table = mode === 'static' ? await backend.calibrate(model, openDataset('random:4', { inputs }), { method: 'minmax', samples: 8, target }, ctx) : undefined;
    const out = join(dir, `lstm.${mode}.onnx`);
    const r = await backend.quantize(model, table, qopts(out, { mode }), ctx);
    expect(r.decisions.find((d) => d.node === 'lstm')).toMatchObject({ quantized: true, weightType: 'int8', granularity: 'per-channel' });
    const q = loadModel(out).proto;
    const lstm = q.graph.node.find((n) => n.opType === 'DynamicQuantizeLSTM')!;
    expect(lstm.domain).toBe('com.microsoft');
    const w = q.graph.initializer.find((t) => t.name === lstm.input[1])!;
    expect(w.dataType).toBe(DataType.INT8);
    expect(w.dims.map(Number)).toEqual([2, 32, 4 * 48]);
    expect(q.graph.initializer.find((t) => t.name === lstm.input[8])!.dims.map(Number)).toEqual([2, 4 * 48]);
    expect(q.graph.node.some((n) => n.opType === 'LSTM')).toBe(false);
    expect(sizeOf(out)).toBeLessThan(0.35 * sizeOf(path));
    const v = await backend.verify(model, modelRef(out), openDataset('random:5', { inputs }), { samples: 8, thresholds: {} }, ctx);
    expect(v.outputs[0].cosine).toBeGreaterThan(0.99);
  });

  it('leaves LSTM in float when --op-types does not name it, and quantizes only LSTM when it is the only one named', async () => {
    const model = modelRef(path);
    const r = await backend.quantize(model, undefined, qopts(join(dir, 'lstm.matmul-only.onnx'), { mode: 'dynamic', opTypes: ['MatMul'] }), ctx);
    expect(r.decisions.map((d) => d.node)).toEqual(['classifier']);
    expect(loadModel(join(dir, 'lstm.matmul-only.onnx')).proto.graph.node.map((n) => n.opType)).toContain('LSTM');
    const r2 = await backend.quantize(model, undefined, qopts(join(dir, 'lstm.lstm-only.onnx'), { mode: 'dynamic', opTypes: ['LSTM'] }), ctx);
    expect(r2.decisions.map((d) => d.node)).toEqual(['lstm']);
  });
});

describe('bias correction', () => {
  it('removes the constant offset that rounding a flat input region adds to every pixel', async () => {
    // A page-like input: mostly 1.0 (paper), a few strokes. The calibrated range [-1, 1] puts 1.0
    // between two uint8 levels, so every paper pixel rounds the same way: a bias, not noise. The
    // weights sit exactly on the 7-bit grid, so weight rounding is zero and only the input's
    // rounding is left to correct.
    const w = Float32Array.from({ length: 4 * 27 }, (_, i) => (i % 27 === 0 ? 63 : ((i * 37) % 127) - 63) / 63 / 2);
    const conv: ModelProto = {
      irVersion: 7,
      opsetImport: [{ domain: '', version: 13 }],
      graph: {
        name: 'page',
        node: [makeNode('Conv', ['x', 'w', 'b'], ['y'], 'conv', [intsAttr('kernel_shape', [3, 3])])],
        initializer: [makeTensor('w', [4, 3, 3, 3], w), makeTensor('b', [4], Float32Array.from([0.1, -0.2, 0.05, 0]))],
        input: [makeValueInfo('x', DataType.FLOAT, [1, 3, 16, 16])],
        output: [makeValueInfo('y', DataType.FLOAT, [1, 4, 14, 14])],
        valueInfo: [],
      },
    };
    await saveModel(conv, join(dir, 'page.onnx'));
    const model = modelRef(join(dir, 'page.onnx'));
    const pages = join(dir, 'pages');
    mkdirSync(pages, { recursive: true });
    for (let i = 0; i < 6; i++) {
      const x = new Float32Array(3 * 16 * 16).fill(1);
      for (let k = 0; k < 40; k++) x[(i * 97 + k * 31) % x.length] = -1 + ((k * 13) % 20) / 10;
      writeFileSync(join(pages, `p${i}.npy`), encodeNpy([1, 3, 16, 16], x));
    }
    const inputs = await backend.modelInputs(model);
    const table = await backend.calibrate(model, openDataset(pages, { inputs }), { method: 'minmax', samples: 6, target }, ctx);
    const meanErr = async (biasCorrection: boolean) => {
      const out = join(dir, `page.${biasCorrection}.onnx`);
      const r = await backend.quantize(model, table, qopts(out, { biasCorrection, correctionData: openDataset(pages, { inputs }), correctionSamples: 6 }), ctx);
      if (biasCorrection) expect(r.preparation.find((c) => c.kind === 'bias-correction')?.detail).toMatch(/input rounding [1-9]/);
      // Per-channel mean signed error of the output over all pages; RMS over channels.
      const [f, q] = await Promise.all([ort.InferenceSession.create(model.path), ort.InferenceSession.create(out)]);
      const sums = new Float64Array(4);
      let n = 0;
      for await (const s of openDataset(pages, { inputs }).samples()) {
        const feeds = { x: new ort.Tensor('float32', s.inputs.x.data as Float32Array, s.inputs.x.dims) };
        const a = (await f.run(feeds)).y.data as Float32Array;
        const b = (await q.run(feeds)).y.data as Float32Array;
        for (let i = 0; i < a.length; i++) sums[Math.floor(i / 196)] += b[i] - a[i];
        n += 196;
      }
      return Math.sqrt(sums.reduce((acc, v) => acc + (v / n) ** 2, 0) / sums.length);
    };
    const without = await meanErr(false);
    const withIt = await meanErr(true);
    expect(without).toBeGreaterThan(1e-3);
    expect(withIt).toBeLessThan(0.2 * without);
  });
});

describe('cross-layer equalization', () => {
  it('keeps the float function and equalizes per-channel weight ranges of Conv → Relu → MaxPool → Conv', async () => {
    const example = join(__dirname, '..', '..', '..', 'examples', 'mnist', 'mnist-cnn.onnx');
    const plain = prepareModel(loadModel(example).proto, new Map(), { needPerAxis: true });
    const eq = prepareModel(loadModel(example).proto, new Map(), { needPerAxis: true, equalize: true });
    expect(eq.changes.find((c) => c.kind === 'equalize')?.detail).toMatch(/rescaled 1 Conv pair\(s\): conv1→conv2/);
    const [a, b] = [join(dir, 'plain.onnx'), join(dir, 'eq.onnx')];
    await saveModel(plain.proto, a);
    await saveModel(eq.proto, b);
    const x = Float32Array.from({ length: 784 }, (_, i) => (i % 29) / 29);
    const ya = await run(a, { input: x }, [1, 1, 28, 28]);
    const yb = await run(b, { input: x }, [1, 1, 28, 28]);
    for (let i = 0; i < ya.length; i++) expect(yb[i]).toBeCloseTo(ya[i], 5);
    // After equalization each channel's range is the same in conv1's outputs and conv2's inputs.
    const conv1 = eq.proto.graph.node.find((n) => n.name === 'conv1')!;
    const conv2 = eq.proto.graph.node.find((n) => n.name === 'conv2')!;
    const w1 = eq.proto.graph.initializer.find((t) => t.name === conv1.input[1])!;
    const w2 = eq.proto.graph.initializer.find((t) => t.name === conv2.input[1])!;
    const d1 = new Float32Array(Uint8Array.from(w1.rawData!).buffer);
    const d2 = new Float32Array(Uint8Array.from(w2.rawData!).buffer);
    const [co, cin2] = [Number(w1.dims[0]), Number(w2.dims[1])];
    const per1 = d1.length / co;
    const k2 = d2.length / (Number(w2.dims[0]) * cin2);
    for (let c = 0; c < co; c++) {
      let r1 = 0;
      let r2 = 0;
      for (let i = 0; i < per1; i++) r1 = Math.max(r1, Math.abs(d1[c * per1 + i]));
      for (let o = 0; o < Number(w2.dims[0]); o++) for (let j = 0; j < k2; j++) r2 = Math.max(r2, Math.abs(d2[(o * cin2 + c) * k2 + j]));
      expect(r1).toBeCloseTo(r2, 4);
    }
  });
});

describe('QOperator format', () => {
  it('writes QLinearConv with integer MaxPool/Flatten between, and keeps the QDQ model\'s accuracy', async () => {
    const example = modelRef(join(__dirname, '..', '..', '..', 'examples', 'mnist', 'mnist-cnn.onnx'));
    const inputs = await backend.modelInputs(example);
    const table = await backend.calibrate(example, openDataset('mnist:calib', { inputs }), { method: 'minmax', samples: 32, target }, ctx);
    const out = join(dir, 'mnist.qop.onnx');
    const r = await backend.quantize(example, table, qopts(out, { format: 'qoperator' }), ctx);
    expect(r.preparation.find((c) => c.kind === 'qoperator')?.detail).toMatch(/^2 Conv → QLinearConv/);
    const ops = loadModel(out).proto.graph.node.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv')).toHaveLength(2);
    expect(ops).not.toContain('Conv');
    const v = await backend.verify(example, modelRef(out), openDataset('mnist:test', { inputs }), { samples: 300, thresholds: { maxAccuracyDropPoints: 1 } }, ctx);
    expect(v.passed).toBe(true);
    expect(v.outputs[0].snrDb).toBeGreaterThan(30);
  });
});

describe('mixed precision: 16-bit activations (W8A16)', () => {
  it('keeps the named nodes\' activations at 16 bits with ONNX Runtime\'s Q/DQ and gains fidelity there', async () => {
    const model = modelRef(join(__dirname, '..', '..', '..', 'examples', 'mnist', 'mnist-cnn.onnx'));
    const inputs = await backend.modelInputs(model);
    const table = await backend.calibrate(model, openDataset('mnist:calib', { inputs }), { method: 'minmax', samples: 32, target }, ctx);
    const eval8 = async (a16: string[]) => {
      const out = join(dir, `a16-${a16.length}.onnx`);
      const q = await backend.quantize(model, table, qopts(out, { activation16Nodes: a16 }), ctx);
      const v = await backend.verify(model, q.model, openDataset('mnist:test', { inputs }), { samples: 100, thresholds: {}, perLayer: true }, ctx);
      return { q, v, proto: loadModel(out).proto };
    };
    const plain = await eval8([]);
    const mixed = await eval8(['conv2', 'fc1']);
    expect(mixed.q.decisions.filter((d) => d.activationType === 'uint16').map((d) => d.node).sort()).toEqual(['conv2', 'fc1']);
    const wideQ = mixed.proto.graph.node.filter((n) => n.opType === 'QuantizeLinear' && n.domain === 'com.microsoft');
    expect(wideQ.length).toBeGreaterThanOrEqual(3);
    const zp = mixed.proto.graph.initializer.find((t) => t.name === wideQ[0].input[2])!;
    expect(zp.dataType).toBe(DataType.UINT16);
    expect(mixed.proto.opsetImport.some((o) => o.domain === 'com.microsoft')).toBe(true);
    const layerSnr = (v: typeof plain.v, t: string) => v.layers!.find((l) => l.tensor === t)!.snrDb;
    // Same calibrated range, 257× finer steps; the rest of the error is weight rounding.
    const scaleOf = (proto: typeof plain.proto, tensor: string) => {
      const q = proto.graph.node.find((n) => n.opType === 'QuantizeLinear' && n.input[0] === tensor)!;
      return Number(tensorToFloat32(proto.graph.initializer.find((t) => t.name === q.input[1])!)[0]);
    };
    expect(scaleOf(plain.proto, 'relu2_out') / scaleOf(mixed.proto, 'relu2_out')).toBeCloseTo(65535 / 255, 1);
    expect(mixed.v.outputs[0].snrDb).toBeGreaterThan(plain.v.outputs[0].snrDb);
    await expect(backend.quantize(model, table, qopts(join(dir, 'a16-bad.onnx'), { activation16Nodes: ['no-such-node'] }), ctx)).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
    await expect(backend.quantize(model, table, qopts(join(dir, 'a16-qop.onnx'), { activation16Nodes: ['conv2'], format: 'qoperator' }), ctx)).rejects.toMatchObject({ code: 'E_UNSUPPORTED' });
  });
});
