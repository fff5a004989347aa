// Embedding tables (Gather over an initializer) in weight-only and dynamic modes: what ONNX Runtime runs, how close, how small; tied LM heads share one stored copy.
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, modelRef, mulberry32, resolveTargetProfile, type QuantizeOptions, type WeightOnlyOptions } from '@qforge/core';
import { DataType, intsAttr, loadModel, makeNode, makeTensor, makeValueInfo, saveModel, type ModelProto, type NodeProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { OnnxRuntimeBackend } from '../src/backend';

const dir = mkdtempSync(join(tmpdir(), 'qforge-emb-'));
const ctx = createRunContext();
const target = resolveTargetProfile('x86-avx2');
const backend = new OnnxRuntimeBackend();
const V = 64;
const IDS = [3, 0, 63, 17, 17, 40];

function opts(output: string, mode: 'weight-only' | 'dynamic', weightOnly: Partial<WeightOnlyOptions> = {}, over: Partial<QuantizeOptions> = {}): QuantizeOptions {
  const d = target.defaults;
  return { output, target, mode, format: 'qdq', perChannel: true, activationType: d.activationType, weightType: 'int8', reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [], weightOnly: { bits: 4, blockSize: 32, symmetric: false, algorithm: 'rtn', ...weightOnly }, ...over };
}

const uniform = (n: number, seed: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
};

type Tie = boolean | 'copy' | 'near-copy' | 'gemm';

/**
 * ids → Gather(table [V, D]) → emb, and emb · W [D, 16] → y (untied), or emb · tableᵀ → logits
 * (tied): through a Transpose (`true`), a transposed copy as exporters write it (`'copy'`; `'near-copy'`
 * differs in one value, so it is not a tie), or Gemm transB = 1 on the table itself with a bias (`'gemm'`).
 */
function embeddingModel(d: number, tied: Tie, extra: NodeProto[] = []): ModelProto {
  const nodes = [makeNode('Gather', ['table', 'ids'], ['emb'], 'embed')];
  const table = uniform(V * d, d);
  const inits = [makeTensor('table', [V, d], table)];
  if (tied === true) nodes.push(makeNode('Transpose', ['table'], ['table_t'], 'tie', [intsAttr('perm', [1, 0])]), makeNode('MatMul', ['emb', 'table_t'], ['y'], 'lm_head'));
  else if (tied === 'copy' || tied === 'near-copy') {
    const t = new Float32Array(V * d);
    for (let r = 0; r < V; r++) for (let c = 0; c < d; c++) t[c * V + r] = table[r * d + c];
    if (tied === 'near-copy') t[d * V - 1] += 1e-3;
    inits.push(makeTensor('lm_head.weight', [d, V], t));
    nodes.push(makeNode('MatMul', ['emb', 'lm_head.weight'], ['y'], 'lm_head'));
  } else if (tied === 'gemm') {
    inits.push(makeTensor('lm_head.bias', [V], new Float32Array(V).fill(0.25)), makeTensor('flat2', [2], BigInt64Array.from([-1n, BigInt(d)])));
    nodes.push(makeNode('Reshape', ['emb', 'flat2'], ['emb2'], 'flatten'), makeNode('Gemm', ['emb2', 'table', 'lm_head.bias'], ['y'], 'lm_head', [{ name: 'transB', type: 2, i: 1 }]));
  } else nodes.push(makeNode('MatMul', ['emb', 'w'], ['y'], 'proj')), inits.push(makeTensor('w', [d, 16], uniform(d * 16, 99)));
  nodes.push(...extra);
  const outputs = [makeValueInfo('emb', DataType.FLOAT, [2, 3, d]), makeValueInfo('y', DataType.FLOAT, tied === 'gemm' ? [6, V] : [2, 3, tied ? V : 16]), ...extra.map((n) => makeValueInfo(n.output[0], DataType.FLOAT))];
  return { irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph: { name: 'emb', node: nodes, initializer: inits, input: [makeValueInfo('ids', DataType.INT64, [2, 3])], output: outputs, valueInfo: [] } };
}

async function run(path: string): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'all' });
  try {
    const out = await s.run({ ids: new ort.Tensor('int64', BigInt64Array.from(IDS.map(BigInt)), [2, 3]) });
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await s.release();
  }
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
/** Bytes of all initializers: on models this small the graph itself would hide what the weights cost. */
const weightBytes = (path: string) => loadModel(path).proto.graph.initializer.reduce((a, t) => a + (t.rawData?.byteLength ?? 0), 0);
const TABLE_BYTES = V * 64 * 4;
const floatInits = (path: string) => loadModel(path).proto.graph.initializer.filter((t) => t.dataType === DataType.FLOAT && (t.rawData?.byteLength ?? 0) >= 1024);

async function quantized(name: string, proto: ModelProto, o: (out: string) => QuantizeOptions) {
  const src = join(dir, `${name}.onnx`);
  await saveModel(proto, src);
  const out = join(dir, `${name}.q.onnx`);
  const r = await backend.quantize(modelRef(src), undefined, o(out), ctx);
  return { src, out, r, ref: await run(src), got: await run(out) };
}

/** Rewrites one initializer of a written model (the negative twins). */
async function corrupt(path: string, pick: (name: string) => boolean, edit: (bytes: Uint8Array) => Uint8Array): Promise<string> {
  const loaded = loadModel(path);
  const t = loaded.proto.graph.initializer.find((x) => pick(x.name))!;
  t.rawData = edit(Uint8Array.from(t.rawData!));
  const bad = path.replace(/\.onnx$/, '.corrupt.onnx');
  await saveModel(loaded.proto, bad);
  return bad;
}
const doubleFloats = (b: Uint8Array) => new Uint8Array(Float32Array.from(new Float32Array(b.buffer), (v) => 2 * v).buffer);

describe('weight-only: Gather → GatherBlockQuantized', () => {
  // Values are uniform in [-1, 1]: a block's range is at most 2, so rounding moves a value by at most half a step.
  it.each([
    [4, false, 48],
    [4, true, 64],
    [8, false, 48],
  ] as const)('%i-bit table, symmetric=%s, D=%i: ONNX Runtime runs it, rows within half a step of fp32, table about bits/32 of its size', async (bits, symmetric, d) => {
    const { src, out, r, ref, got } = await quantized(`wo${bits}${symmetric}${d}`, embeddingModel(d, false), (o) => opts(o, 'weight-only', { bits: 4, embeddingBits: bits, symmetric }));
    const node = loadModel(out).proto.graph.node.find((n) => n.opType === 'GatherBlockQuantized')!;
    expect(node.domain).toBe('com.microsoft');
    expect(loadModel(out).proto.graph.node.some((n) => n.opType === 'Gather')).toBe(false);
    expect(r.decisions.find((x) => x.node === 'embed')).toMatchObject({ quantized: true, granularity: 'per-block', weightType: bits === 4 ? (symmetric ? 'int4' : 'uint4') : 'uint8' });
    const halfStep = (2 / ((1 << bits) - 1)) * (symmetric ? 2 : 1) / 2 + 1e-6;
    expect(maxAbsDiff(got.emb, ref.emb)).toBeLessThan(halfStep);
    expect(maxAbsDiff(got.emb, ref.emb)).toBeGreaterThan(0);
    expect(floatInits(out)).toHaveLength(0);
    expect(statSync(out).size).toBeLessThan(statSync(src).size * (bits === 4 ? 0.25 : 0.4));
    expect(r.preparation.find((c) => c.kind === 'weight-only-gather')?.detail).toMatch(/embed: table \[64×\d+\] .* float32 → /);
  });

  it('8 bits per table value by default, also under 4-bit MatMuls', async () => {
    const { r, ref, got } = await quantized('wo-default', embeddingModel(48, false), (o) => opts(o, 'weight-only'));
    expect(r.decisions.find((x) => x.node === 'proj')).toMatchObject({ quantized: true, weightType: 'uint4' });
    expect(r.decisions.find((x) => x.node === 'embed')).toMatchObject({ quantized: true, weightType: 'uint8' });
    expect(maxAbsDiff(got.emb, ref.emb)).toBeLessThan(1 / 255 + 1e-6);
  });

  it('a model whose table scales are corrupted is far from fp32 (the bound above can fail)', async () => {
    const { out, ref } = await quantized('wo-neg', embeddingModel(48, false), (o) => opts(o, 'weight-only', { embeddingBits: 4 }));
    const bad = await run(await corrupt(out, (n) => n === 'table_scales', doubleFloats));
    expect(maxAbsDiff(bad.emb, ref.emb)).toBeGreaterThan(0.3);
  });

  // A tied table shares its head's storage when both have the same width; otherwise each has its own.
  it.each([
    [4, 4, true, true],
    [8, 8, true, true],
    [4, 8, false, true],
    [4, 4, true, 'copy'],
  ] as const)('tied table, %i-bit head, %i-bit table: shared=%s (tie %s), no float copy left, both outputs close', async (bits, embeddingBits, shared, tie) => {
    const { out, r, ref, got } = await quantized(`wo-tied${bits}${embeddingBits}${tie}`, embeddingModel(64, tie), (o) => opts(o, 'weight-only', { bits, embeddingBits }));
    const g = loadModel(out).proto.graph;
    const head = g.node.find((n) => n.opType === 'MatMulNBits')!;
    const lookup = g.node.find((n) => n.opType === 'GatherBlockQuantized')!;
    expect(lookup.input[0] === head.input[1]).toBe(shared);
    expect(floatInits(out)).toHaveLength(0);
    // Packed copies of the table ([V, …] codes); the rest is scales, zero points and shapes.
    const copies = g.initializer.filter((t) => t.dataType === DataType.UINT8 && t.rawData!.byteLength >= (V * 64 * 4) / 8);
    expect(copies).toHaveLength(shared ? 1 : 2);
    expect(weightBytes(out)).toBeLessThan(TABLE_BYTES * (shared ? bits / 32 + 0.1 : 0.5));
    expect(r.decisions.find((x) => x.node === 'embed')?.reason).toMatch(shared ? /tied to lm_head: reads its MatMulNBits weight/ : /tied to lm_head, stored apart/);
    expect(r.preparation.find((c) => c.kind === 'weight-only-gather')?.detail).toMatch(shared ? /no table of its own/ : /KiB$/);
    expect(maxAbsDiff(got.emb, ref.emb)).toBeLessThan(1 / ((1 << embeddingBits) - 1) + 1e-6);
    // Logits here reach ~21 (a row against itself): judged relative to the largest.
    expect(maxAbsDiff(got.y, ref.y)).toBeLessThan(ref.y.reduce((m, v) => Math.max(m, Math.abs(v)), 0) * (bits === 4 ? 0.06 : 0.006));
    expect(maxAbsDiff(got.y, ref.y)).toBeGreaterThan(0);
  });

  it('a head weight that differs from the transposed table in one value is not taken for a tie', async () => {
    const { out, r } = await quantized('wo-near', embeddingModel(64, 'near-copy'), (o) => opts(o, 'weight-only', { embeddingBits: 4 }));
    const g = loadModel(out).proto.graph;
    expect(g.node.find((n) => n.opType === 'GatherBlockQuantized')!.input[0]).not.toBe(g.node.find((n) => n.opType === 'MatMulNBits')!.input[1]);
    expect(r.decisions.find((x) => x.node === 'embed')?.reason).not.toMatch(/tied/);
  });

  it('keeps a Gather in float when excluded, or when its table is also read in float elsewhere, with the reason', async () => {
    const excluded = await quantized('wo-excl', embeddingModel(48, false), (o) => opts(o, 'weight-only', {}, { excludeNodes: ['embed'] }));
    expect(excluded.r.decisions.find((x) => x.node === 'embed')).toMatchObject({ quantized: false, reason: expect.stringMatching(/exclude-nodes/) });
    expect(maxAbsDiff(excluded.got.emb, excluded.ref.emb)).toBe(0);
    const shared = await quantized('wo-shared', embeddingModel(48, false, [makeNode('ReduceSum', ['table'], ['table_sum'], 'sum_table')]), (o) => opts(o, 'weight-only'));
    expect(shared.r.decisions.find((x) => x.node === 'embed')).toMatchObject({ quantized: false, reason: expect.stringMatching(/also read in float by sum_table/) });
  });
});

describe('dynamic: Gather over an int8 table, DequantizeLinear of the rows gathered', () => {
  it('per-row scales: ONNX Runtime runs it, rows within half a step, table a quarter of its size', async () => {
    const { src, out, r, ref, got } = await quantized('dyn', embeddingModel(48, false), (o) => opts(o, 'dynamic'));
    const g = loadModel(out).proto.graph;
    const dq = g.node.find((n) => n.opType === 'DequantizeLinear')!;
    expect(dq).toBeDefined();
    // Rows are gathered from the int8 table before anything is dequantized.
    expect(g.node.find((n) => n.output.includes(dq.input[0]))?.opType).toBe('Gather');
    expect(g.initializer.find((t) => t.name === 'table_quantized')?.dataType).toBe(DataType.INT8);
    expect(r.decisions.find((x) => x.node === 'embed')).toMatchObject({ quantized: true, weightType: 'int8', granularity: 'per-channel' });
    expect(maxAbsDiff(got.emb, ref.emb)).toBeLessThan(1 / 127 / 2 + 1e-6);
    expect(floatInits(out)).toHaveLength(0);
    expect(statSync(out).size).toBeLessThan(statSync(src).size * 0.4);
  });

  it('a model whose int8 rows are negated is far from fp32', async () => {
    const { out, ref } = await quantized('dyn-neg', embeddingModel(48, false), (o) => opts(o, 'dynamic'));
    const bad = await run(await corrupt(out, (n) => n === 'table_quantized', (b) => Uint8Array.from(b, (x) => (256 - x) & 255)));
    expect(maxAbsDiff(bad.emb, ref.emb)).toBeGreaterThan(0.5);
  });

  it('one scale for the table when per-channel is off', async () => {
    const { r, ref, got } = await quantized('dyn-pt', embeddingModel(48, false), (o) => opts(o, 'dynamic', {}, { perChannel: false }));
    expect(r.decisions.find((x) => x.node === 'embed')).toMatchObject({ quantized: true, granularity: 'per-tensor' });
    expect(maxAbsDiff(got.emb, ref.emb)).toBeLessThan(1 / 127 / 2 + 1e-6);
  });

  it.each([[true], ['copy'], ['gemm']] as const)('a tied table (tie %s) looks its rows up in the LM head\'s int8 weight: no table of its own, no float left', async (tie) => {
    const { out, r, ref, got } = await quantized(`dyn-tied-${tie}`, embeddingModel(64, tie), (o) => opts(o, 'dynamic'));
    const g = loadModel(out).proto.graph;
    const head = g.node.find((n) => n.opType === 'DynamicQuantizeMatMul')!;
    const lookup = g.node.find((n) => n.opType === 'Gather' && n.input[0] === head.input[1]);
    expect(lookup).toBeDefined();
    expect(g.initializer.filter((t) => t.dataType === DataType.INT8 && t.rawData!.byteLength >= V * 64)).toHaveLength(1);
    expect(floatInits(out)).toHaveLength(0);
    expect(weightBytes(out)).toBeLessThan(TABLE_BYTES * 0.3);
    expect(r.decisions.find((x) => x.node === 'embed')?.reason).toMatch(/tied to lm_head/);
    // reduce-range (7-bit) weights on this target: half a step of max|column| / 63.
    expect(maxAbsDiff(got.emb, ref.emb)).toBeLessThan(1 / 63 / 2 + 1e-6);
    expect(maxAbsDiff(got.y, ref.y)).toBeLessThan(0.5);
  });

  it('--op-types MatMul leaves the Gather alone', async () => {
    const { r, got, ref } = await quantized('dyn-mm', embeddingModel(48, false), (o) => opts(o, 'dynamic', {}, { opTypes: ['MatMul'] }));
    expect(r.decisions.some((x) => x.node === 'embed')).toBe(false);
    expect(maxAbsDiff(got.emb, ref.emb)).toBe(0);
  });
});
