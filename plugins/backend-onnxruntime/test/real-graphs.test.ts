// What real exports contain, end to end: a transformer fed input_ids + attention_mask from .npz
// (symbolic batch and sequence), and one graph with an opset-9 Slice ending at INT64_MAX, a weight
// used only inside an If branch and a MatMul weight reached through Identity.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRunContext, datasetFromIterable, modelRef, mulberry32, openDataset, resolveTargetProfile, type QuantizeOptions } from '@qforge/core';
import { DataType, intsAttr, loadModel, makeNode, makeTensor, makeValueInfo, saveModel, type GraphProto } from '@qforge/onnx';
import { OnnxRuntimeBackend } from '../src/backend';

const ROOT = join(__dirname, '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'qforge-real-graphs-'));
const backend = new OnnxRuntimeBackend();
const ctx = createRunContext();
const target = resolveTargetProfile('auto');
const d = target.defaults;
const qopts = (output: string): QuantizeOptions => ({ output, target, mode: 'static', format: 'qdq', perChannel: true, activationType: d.activationType, weightType: d.weightType, reduceRange: d.reduceRange, symmetricWeights: true, excludeNodes: [], opTypes: [] });

it('a token transformer (input_ids + attention_mask, int64, symbolic batch × sequence) calibrates statically from .npz files and verifies on a multi-sample .npz', async () => {
  const model = join(dir, 'byte-lm.onnx');
  execFileSync(process.execPath, [join(ROOT, 'tools', 'build-transformer-fixture.js'), model, '--tokens']);
  execFileSync(process.execPath, [join(ROOT, 'tools', 'make-token-data.js'), join(dir, 'tokens'), '12', '6']);
  const ref = modelRef(model);
  const inputs = await backend.modelInputs(ref);
  const calib = openDataset(join(dir, 'tokens', 'calib'), { inputs });
  const table = await backend.calibrate(ref, calib, { method: 'minmax', samples: 12, target }, ctx);
  // Twelve files, sequences of 16–64 bytes: the symbolic sequence dim takes each file's length.
  expect(calib.description.inputShapes!.input_ids.length).toBeGreaterThan(3);
  const q = await backend.quantize(ref, table, qopts(join(dir, 'byte-lm.int8.onnx')), ctx);
  expect(q.decisions.filter((x) => x.quantized && x.opType === 'MatMul').length).toBeGreaterThanOrEqual(25);
  const evalData = openDataset(join(dir, 'tokens', 'eval.npz'), { inputs });
  const v = await backend.verify(ref, q.model, evalData, { samples: 6, thresholds: {} }, ctx);
  expect(v.samples).toBe(6);
  expect(v.outputs[0].cosine).toBeGreaterThan(0.99);
  expect(evalData.description.inputShapes).toEqual({ input_ids: ['1×48'], attention_mask: ['1×48'] });
});

/**
 * y = MatMul(Slice(x, 1..INT64_MAX along axis 1), Identity(W))  then  If(c): y·V (V only in the branch) else y.
 * Opset 9: Slice takes starts/ends as attributes.
 */
async function messyModel(path: string): Promise<void> {
  const branch = (name: string, withWeight: boolean): GraphProto => ({
    name,
    node: withWeight ? [makeNode('MatMul', ['y', 'V'], ['z_then'], 'branch_mm')] : [makeNode('Relu', ['y'], ['z_else'], 'branch_relu')],
    initializer: [],
    input: [],
    output: [makeValueInfo(withWeight ? 'z_then' : 'z_else', DataType.FLOAT)],
    valueInfo: [],
  });
  const rnd = (n: number, k: number) => {
    const r = mulberry32(k);
    return Float32Array.from({ length: n }, () => (r() - 0.5) * 0.5);
  };
  await saveModel(
    {
      irVersion: 4,
      opsetImport: [{ domain: '', version: 9 }],
      producerName: 'test',
      graph: {
        name: 'messy',
        node: [
          makeNode('Slice', ['x'], ['xs'], 'slice', [intsAttr('starts', [1]), intsAttr('ends', [9223372036854775807n]), intsAttr('axes', [1])]),
          makeNode('Identity', ['W'], ['W_shared'], 'tie'),
          makeNode('MatMul', ['xs', 'W_shared'], ['y'], 'mm'),
          makeNode('If', ['c'], ['z'], 'if', [
            { name: 'then_branch', type: 5, g: branch('then', true) },
            { name: 'else_branch', type: 5, g: branch('else', false) },
          ]),
        ],
        initializer: [makeTensor('W', [32, 16], rnd(512, 1)), makeTensor('V', [16, 16], rnd(256, 2))],
        input: [makeValueInfo('x', DataType.FLOAT, ['n', 33]), makeValueInfo('c', DataType.BOOL, [])],
        output: [makeValueInfo('z', DataType.FLOAT)],
        valueInfo: [],
      },
    },
    path,
  );
}

it('INT64_MAX Slice ends, an If-branch-only weight and an Identity-fed weight survive a full static quantize: int8 MatMuls, fp32 outputs kept', async () => {
  const path = join(dir, 'messy.onnx');
  await messyModel(path);
  const ref = modelRef(path);
  const rnd = (n: number, k: number) => {
    const r = mulberry32(100 + k);
    return Float32Array.from({ length: n }, () => r() * 2 - 1);
  };
  const samples = () => Array.from({ length: 16 }, (_, k) => ({ x: { dtype: 'float32' as const, dims: [1, 33], data: rnd(33, k) }, c: { dtype: 'bool' as const, dims: [], data: Uint8Array.from([1]) } }));
  const inputs = await backend.modelInputs(ref);
  const table = await backend.calibrate(ref, datasetFromIterable(samples, { inputs }), { method: 'minmax', samples: 16, target }, ctx);
  const q = await backend.quantize(ref, table, qopts(join(dir, 'messy.int8.onnx')), ctx);
  // The Identity-fed weight and the weight used only inside the branch both end up int8.
  expect(q.decisions.filter((x) => x.quantized).map((x) => x.node).sort()).toEqual(expect.arrayContaining(['branch_mm', 'mm']));
  const out = loadModel(q.model.path).proto;
  const all = [out.graph, ...out.graph.node.flatMap((n) => n.attribute.flatMap((a) => (a.g ? [a.g] : [])))];
  const int8Weights = all.flatMap((g) => g.initializer).filter((t) => t.dataType === DataType.INT8 && t.dims.length === 2);
  expect(int8Weights.map((t) => t.dims.map(Number)).sort()).toEqual([[16, 16], [32, 16]]);
  // ONNX Runtime agrees with fp32 on a fresh input, both branches.
  const run = async (file: string, c: number) => {
    const s = await ort.InferenceSession.create(file);
    const r = await s.run({ x: new ort.Tensor('float32', rnd(33, 99), [1, 33]), c: new ort.Tensor('bool', Uint8Array.from([c]), []) });
    return Array.from(r.z.data as Float32Array);
  };
  for (const c of [1, 0]) {
    const a = await run(path, c);
    const b = await run(q.model.path, c);
    // The Slice kept every column past the first (an INT64_MIN end would have made it empty).
    expect(a).toHaveLength(16);
    const dot = a.reduce((s, v, i) => s + v * b[i], 0) / Math.sqrt(a.reduce((s, v) => s + v * v, 0) * b.reduce((s, v) => s + v * v, 0));
    expect(dot).toBeGreaterThan(0.99);
  }
});
