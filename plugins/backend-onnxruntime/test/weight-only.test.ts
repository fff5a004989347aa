// Weight-only mode: MatMulNBits packing checked against ONNX Runtime, and a byte-level LM verified against fp32.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRunContext, modelRef, mulberry32, openDataset, resolveTargetProfile, type QuantizeOptions, type WeightOnlyOptions } from '@qforge/core';
import { DataType, encodeModel, intAttr, loadModel, makeNode, makeTensor, makeValueInfo, saveModel } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { OnnxRuntimeBackend } from '../src/backend';
import { dequantizeBlockwise, quantizeBlockwiseGptq, quantizeBlockwiseRtn, type BlockQuantizedWeight } from '../src/quantize-weight-only';

const root = resolve(__dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'qforge-wo-'));
const ctx = createRunContext();
const target = resolveTargetProfile('x86-avx2');
const backend = new OnnxRuntimeBackend();
const lm = join(dir, 'byte-lm.onnx');
const data = join(dir, 'tokens');

function qopts(output: string, weightOnly: Partial<WeightOnlyOptions> = {}, over: Partial<QuantizeOptions> = {}): QuantizeOptions {
  const d = target.defaults;
  return { output, target, mode: 'weight-only', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: false, symmetricWeights: true, excludeNodes: [], opTypes: [], weightOnly: { bits: 4, blockSize: 32, symmetric: false, algorithm: 'rtn', ...weightOnly }, ...over };
}

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'tools/build-transformer-fixture.js'), lm, '--tokens']);
  execFileSync(process.execPath, [join(root, 'tools/make-token-data.js'), data, '8', '8']);
}, 60_000);

const randomWeight = (k: number, n: number, seed: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: k * n }, () => r() * 2 - 1);
};

/** y = x · W through one MatMulNBits node in ONNX Runtime. */
async function runNBits(q: BlockQuantizedWeight, x: Float32Array, m: number): Promise<Float32Array> {
  const blocks = Math.ceil(q.k / q.blockSize);
  const inits = [makeTensor('B', [q.n, blocks, (q.blockSize * q.bits) / 8], q.packed), makeTensor('S', [q.n * blocks], q.scales)];
  const inputs = ['x', 'B', 'S'];
  if (q.zeroPoints) inits.push(makeTensor('Z', [q.zeroPoints.length], q.zeroPoints)), inputs.push('Z');
  const node = makeNode('MatMulNBits', inputs, ['y'], 'm', [intAttr('K', q.k), intAttr('N', q.n), intAttr('bits', q.bits), intAttr('block_size', q.blockSize)], 'com.microsoft');
  const proto = { irVersion: 8, opsetImport: [{ domain: '', version: 13 }, { domain: 'com.microsoft', version: 1 }], graph: { name: 'g', node: [node], initializer: inits, input: [makeValueInfo('x', DataType.FLOAT, [m, q.k])], output: [makeValueInfo('y', DataType.FLOAT, [m, q.n])], valueInfo: [] } };
  const session = await ort.InferenceSession.create(encodeModel(proto));
  try {
    return (await session.run({ x: new ort.Tensor('float32', x, [m, q.k]) })).y.data as Float32Array;
  } finally {
    await session.release();
  }
}

function matmul(x: Float32Array, w: Float32Array, m: number, k: number, n: number): Float32Array {
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) for (let r = 0; r < k; r++) y[i * n + c] += x[i * k + r] * w[r * n + c];
  return y;
}
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((mx, v, i) => Math.max(mx, Math.abs(v - b[i])), 0);

describe('MatMulNBits packing', () => {
  // K = 80 with blocks of 32 gives 3 blocks: an odd count, so packed zero points pad each column.
  it.each([
    [4, false, 80, 32],
    [4, true, 64, 16],
    [8, false, 80, 32],
    [8, true, 64, 64],
  ] as const)('%i-bit symmetric=%s K=%i block=%i: ONNX Runtime computes with exactly the weights qforge dequantizes', async (bits, symmetric, k, blockSize) => {
    const n = 12;
    const w = randomWeight(k, n, 1);
    const q = quantizeBlockwiseRtn(w, k, n, { bits, blockSize, symmetric });
    const x = randomWeight(3, k, 2);
    const y = await runNBits(q, x, 3);
    expect(maxAbsDiff(y, matmul(x, dequantizeBlockwise(q), 3, k, n))).toBeLessThan(1e-4);
    // And the rounding error itself is what the width allows (a 4-bit step is 1/15 of a block's range).
    expect(maxAbsDiff(dequantizeBlockwise(q), w)).toBeLessThan(bits === 4 ? 2 / 15 / 2 + 1e-6 + (symmetric ? 1 / 16 : 0) : 2 / 255);
  });

  it('a corrupted packing (nibbles swapped) is caught: ONNX Runtime no longer matches the float weights', async () => {
    const k = 64;
    const n = 8;
    const w = randomWeight(k, n, 3);
    const q = quantizeBlockwiseRtn(w, k, n, { bits: 4, blockSize: 32, symmetric: false });
    const swapped = { ...q, packed: q.packed.map((b) => ((b & 15) << 4) | (b >> 4)) };
    const x = randomWeight(2, k, 4);
    const exact = matmul(x, w, 2, k, n);
    expect(maxAbsDiff(await runNBits(q, x, 2), exact)).toBeLessThan(0.5);
    expect(maxAbsDiff(await runNBits(swapped, x, 2), exact)).toBeGreaterThan(1);
  });

  it('GPTQ lowers the output error on the data it was given, compared with round-to-nearest', () => {
    const k = 64;
    const n = 16;
    const rows = 256;
    const w = randomWeight(k, n, 5);
    // Correlated inputs with uneven scales, as real activations are: where GPTQ's compensation pays.
    const r = mulberry32(6);
    const x = new Float32Array(rows * k);
    for (let i = 0; i < rows; i++) {
      const common = r() * 2 - 1;
      for (let j = 0; j < k; j++) x[i * k + j] = (common + 0.3 * (r() * 2 - 1)) * (1 + (j % 4));
    }
    const gram = new Float64Array(k * k);
    for (let i = 0; i < rows; i++) for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) gram[a * k + b] += x[i * k + a] * x[i * k + b];
    const o = { bits: 4 as const, blockSize: 32, symmetric: false };
    const exact = matmul(x, w, rows, k, n);
    const err = (q: BlockQuantizedWeight) => matmul(x, dequantizeBlockwise(q), rows, k, n).reduce((s, v, i) => s + (v - exact[i]) ** 2, 0);
    const rtn = err(quantizeBlockwiseRtn(w, k, n, o));
    const gptq = err(quantizeBlockwiseGptq(w, k, n, o, gram)!);
    expect(gptq).toBeLessThan(rtn * 0.8);
  });
});

describe('weight-only quantization of a byte-level language model', () => {
  const evalData = () => openDataset(join(data, 'eval.npz'), { inputs: [{ name: 'input_ids', dtype: 'int64', shape: ['batch', 'sequence'] }, { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'sequence'] }] });
  const calibData = () => openDataset(join(data, 'calib'), { inputs: [{ name: 'input_ids', dtype: 'int64', shape: ['batch', 'sequence'] }, { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'sequence'] }] });
  // The 4-bit RTN model, made once by whichever test needs it first (tests can run alone with -t).
  let rtn: Promise<Awaited<ReturnType<typeof backend.quantize>>> | undefined;
  const rtnModel = () => (rtn ??= backend.quantize(modelRef(lm), undefined, qopts(join(dir, 'lm.q4.onnx')), ctx));
  const verify = (path: string, minSnrDb = 10) => backend.verify(modelRef(lm), modelRef(path), evalData(), { samples: 8, thresholds: { minSnrDb, maxAccuracyDropPoints: 1 }, perLayer: false }, ctx);

  it('4-bit round-to-nearest: every MatMul with a weight becomes MatMulNBits, ONNX Runtime runs it, outputs stay close', async () => {
    const r = await rtnModel();
    const out = r.model.path;
    const quantized = r.decisions.filter((d) => d.quantized && d.opType === 'MatMul');
    expect(quantized).toHaveLength(4 * 6 + 1);
    expect(quantized.every((d) => d.weightType === 'uint4' && d.granularity === 'per-block')).toBe(true);
    // The token embedding table goes to 8 bits (the default for tables), read by GatherBlockQuantized.
    expect(r.decisions.find((d) => d.opType === 'Gather')).toMatchObject({ quantized: true, weightType: 'uint8' });
    const ops = loadModel(out).proto.graph.node.map((n) => n.opType);
    expect(ops.filter((t) => t === 'MatMulNBits')).toHaveLength(25);
    expect(ops.filter((t) => t === 'GatherBlockQuantized')).toHaveLength(1);
    // Attention's activation × activation MatMuls have no weight and stay.
    expect(ops.filter((t) => t === 'MatMul')).toHaveLength(8);
    const v = await verify(out);
    expect(v.passed).toBe(true);
    expect(v.outputs[0].cosine).toBeGreaterThan(0.98);
  });

  it('8-bit weights are far closer to fp32 than 4-bit', async () => {
    const out = join(dir, 'lm.q8.onnx');
    await backend.quantize(modelRef(lm), undefined, qopts(out, { bits: 8 }), ctx);
    const v8 = await verify(out, 30);
    const v4 = await verify((await rtnModel()).model.path);
    expect(v8.passed).toBe(true);
    expect(v8.outputs[0].snrDb).toBeGreaterThan(v4.outputs[0].snrDb + 15);
  });

  it('GPTQ with calibration tokens beats round-to-nearest on held-out tokens', async () => {
    const out = join(dir, 'lm.q4.gptq.onnx');
    const r = await backend.quantize(modelRef(lm), undefined, qopts(out, { algorithm: 'gptq' }, { correctionData: calibData(), correctionSamples: 8 }), ctx);
    expect(r.decisions.filter((d) => d.quantized && d.opType === 'MatMul').every((d) => d.reason?.includes('GPTQ'))).toBe(true);
    expect(r.preparation.some((c) => c.kind === 'weight-only-statistics')).toBe(true);
    const gptq = await verify(out);
    const nearest = await verify((await rtnModel()).model.path);
    process.stdout.write(`byte-LM logits vs fp32: 4-bit RTN ${nearest.outputs[0].snrDb.toFixed(2)} dB, 4-bit GPTQ ${gptq.outputs[0].snrDb.toFixed(2)} dB\n`);
    expect(gptq.outputs[0].snrDb).toBeGreaterThan(nearest.outputs[0].snrDb);
  }, 60_000);

  it('keeps the LM head in float when asked, and says so', async () => {
    const out = join(dir, 'lm.q4.keep.onnx');
    const r = await backend.quantize(modelRef(lm), undefined, qopts(out, { keepFloat: ['last'] }, { excludeNodes: ['matmul_9'] }), ctx);
    const head = r.decisions.find((d) => d.node === 'lm_head')!;
    expect(head.quantized).toBe(false);
    expect(head.reason).toMatch(/last MatMul/);
    expect(r.decisions.find((d) => d.node === 'matmul_9')).toMatchObject({ quantized: false, reason: expect.stringMatching(/exclude-nodes/) });
    expect(loadModel(out).proto.graph.node.find((n) => n.name === 'lm_head')?.opType).toBe('MatMul');
  });

  it('refuses a block size MatMulNBits does not take, and GPTQ without data, with coded errors', async () => {
    await expect(backend.quantize(modelRef(lm), undefined, qopts(join(dir, 'bad.onnx'), { blockSize: 24 }), ctx)).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
    await expect(backend.quantize(modelRef(lm), undefined, qopts(join(dir, 'bad.onnx'), { bits: 3 as 4 }), ctx)).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
    await expect(backend.quantize(modelRef(lm), undefined, qopts(join(dir, 'bad.onnx'), { algorithm: 'gptq' }), ctx)).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
  });

  it('a model whose packed weights are corrupted fails verification', async () => {
    const loaded = loadModel((await rtnModel()).model.path);
    for (const t of loaded.proto.graph.initializer) if (t.name.endsWith('_Q4') && t.rawData) t.rawData = t.rawData.map((b) => ((b & 15) << 4) | (b >> 4));
    const bad = join(dir, 'lm.q4.corrupt.onnx');
    await saveModel(loaded.proto, bad);
    const v = await verify(bad);
    expect(v.passed).toBe(false);
    expect(v.outputs[0].cosine).toBeLessThan(0.9);
  });
});
