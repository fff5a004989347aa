import { resolveTargetProfile, quantizeOptionsFor, type CalibrationTable } from '@qforge/core';
import { DataType, GraphIndex, encodeModel, intsAttr, makeNode, makeTensor, makeValueInfo, tensorToFloat32, type ModelProto, type NodeProto, type TensorProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { calibrationTensors, quantizeStaticQdq, STATIC_OP_TYPES } from '../quantize-qdq';
import { OP_QUANTIZERS, opQuantizer } from '.';

function model(nodes: NodeProto[], inits: TensorProto[]): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: { name: 'g', node: nodes, initializer: inits, input: [makeValueInfo('x', DataType.FLOAT, [1, 2, 4, 4])], output: [makeValueInfo('y', DataType.FLOAT)], valueInfo: [] },
  } as unknown as ModelProto;
}

const conv = (x: string, w: string, y: string, name: string) => makeNode('Conv', [x, w], [y], name, [intsAttr('kernel_shape', [1, 1])]);
const weight = (name: string) => makeTensor(name, [2, 2, 1, 1], Float32Array.from([1, -0.5, 0.25, 2]));
const three = makeTensor('three', [], Float32Array.from([3]));
const six = makeTensor('six', [], Float32Array.from([6]));
const range = (...names: string[]) => ({ tensors: Object.fromEntries(names.map((n) => [n, { range: [-4, 4] }])) }) as unknown as CalibrationTable;
const opts = (opTypes: string[]) => ({ ...quantizeOptionsFor(resolveTargetProfile('x86-avx2'), { output: '/dev/null' }), opTypes, perAxisAllowed: true });

/** x → conv a → (+3) → hard-swish-like Mul with itself → /6 → conv b → y: every family of the example in docs/architecture.md. */
function residual(addConstant: TensorProto = three): ModelProto {
  return model(
    [conv('x', 'wa', 'a', 'conv_a'), makeNode('Add', ['a', addConstant.name], ['s'], 'add'), makeNode('Mul', ['a', 's'], ['m'], 'mul'), makeNode('Div', ['m', 'six'], ['d'], 'div'), conv('d', 'wb', 'y', 'conv_b')],
    [weight('wa'), weight('wb'), addConstant, six],
  );
}

describe('op-quantizer registry', () => {
  it('maps each op type to exactly one family and keeps the default static set to the proven kernels', () => {
    const seen = new Map<string, string>();
    for (const q of OP_QUANTIZERS) for (const t of q.opTypes) {
      expect(seen.has(t)).toBe(false);
      seen.set(t, q.family);
    }
    expect(opQuantizer('Conv')?.role).toBe('weighted');
    expect(opQuantizer('Conv', 'com.microsoft')).toBeUndefined();
    expect(opQuantizer('Resize')?.output(makeNode('Resize', ['x'], ['y'], 'r'), { idx: new GraphIndex(model([], []).graph), opset: 13 })).toEqual({ kind: 'shared' });
    expect([...STATIC_OP_TYPES].sort()).toEqual(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);
  });

  it('calibrates the inputs and outputs every family asks for', () => {
    expect(calibrationTensors(residual()).sort()).toEqual(['a', 'd', 'm', 's', 'x', 'y'].sort());
  });

  it('keeps a residual block int8 end to end: QLinear-fusable Add/Mul, the /6 folded into a scale', () => {
    const proto = residual();
    const r = quantizeStaticQdq(proto, range('x', 'a', 's', 'm', 'd', 'y'), opts(['Conv', 'Add', 'Mul']));
    const byName = new Map(r.decisions.map((d) => [d.node, d]));
    expect(['conv_a', 'add', 'mul', 'conv_b'].map((n) => byName.get(n)?.quantized)).toEqual([true, true, true, true]);
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams').map((c) => c.node)).toEqual(['div']);
    const g = proto.graph;
    // The Div is gone; conv_b's input DequantizeLinear reads the Mul's integers at the Mul's scale / 6.
    expect(g.node.some((n) => n.opType === 'Div')).toBe(false);
    const idx = new GraphIndex(g);
    const dq = idx.producer.get(g.node.find((n) => n.name === 'conv_b')!.input[0])!;
    const mulQ = idx.producer.get(dq.input[0])!;
    expect(mulQ.opType).toBe('QuantizeLinear');
    expect(mulQ.input[0]).toBe('m');
    const scale = (t: string) => new Float32Array(Uint8Array.from(idx.initializers.get(t)!.rawData!).buffer)[0];
    expect(scale(dq.input[1])).toBeCloseTo(scale(mulQ.input[1]) / 6, 6);
    // Every input of the Add and the Mul comes from a DequantizeLinear (what ONNX Runtime fuses).
    for (const n of g.node.filter((x) => x.opType === 'Add' || x.opType === 'Mul')) for (const i of n.input) expect(idx.producer.get(i)?.opType).toBe('DequantizeLinear');
  });

  it('leaves the element-wise ops float when the family is not asked for; the /6 into an int8 Conv still becomes a scale', () => {
    const proto = residual();
    const r = quantizeStaticQdq(proto, range('x', 'a', 's', 'm', 'd', 'y'), opts(['Conv']));
    // The +3 feeds a float Mul: a relabel would only trade the Add for a DequantizeLinear.
    expect(proto.graph.node.filter((n) => ['Add', 'Mul', 'Div'].includes(n.opType)).map((n) => n.opType)).toEqual(['Add', 'Mul']);
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams').map((c) => c.node)).toEqual(['div']);
    const idx = new GraphIndex(proto.graph);
    // m / 6 is quantized where the Mul writes it; conv_b reads those integers at a sixth of the scale.
    const dq = idx.producer.get(proto.graph.node.find((n) => n.name === 'conv_b')!.input[0])!;
    expect(idx.producer.get(dq.input[0])?.input[0]).toBe('m');
  });

  it('refuses an Add whose constant operand holds many values (one 8-bit grid would round them)', () => {
    const vector = makeTensor('three', [1, 2, 1, 1], Float32Array.from([3, 0.001]));
    const r = quantizeStaticQdq(residual(vector), range('x', 'a', 's', 'm', 'd', 'y'), opts(['Conv', 'Add', 'Mul']));
    const add = r.decisions.find((d) => d.node === 'add')!;
    expect(add.quantized).toBe(false);
    expect(add.reason).toMatch(/constant operand/);
  });

  it('refuses an element-wise op of an unknown family as a coded error', () => {
    expect(() => quantizeStaticQdq(residual(), range('x'), opts(['HardSwish']))).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_OP' }));
  });
});

// The affine relabel: products and sums with scalar constants become quantization parameters, exactly.
const scalar = (name: string, v: number) => makeTensor(name, [], Float32Array.from([v]));
const table = (ranges: Record<string, [number, number]>) => ({ tensors: Object.fromEntries(Object.entries(ranges).map(([n, range]) => [n, { range }])) }) as unknown as CalibrationTable;

/** PP-LCNet's learnable affine after hard-swish: x → ·a → +b → conv → y. */
function learnableAffine(a: number, b: number): ModelProto {
  return model([makeNode('Mul', ['x', 'a'], ['m'], 'mul'), makeNode('Add', ['m', 'b'], ['s'], 'add'), conv('s', 'w', 'y', 'conv')], [scalar('a', a), scalar('b', b), weight('w')]);
}

async function run(proto: ModelProto, x: Float32Array): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(proto), { graphOptimizationLevel: 'disabled', logSeverityLevel: 4 });
  const out = await s.run({ x: new ort.Tensor('float32', x, [1, 2, 4, 4]) });
  return out.y.data as Float32Array;
}

describe('affine relabel', () => {
  it('turns ·a into the scale the consumer reads, exactly; the +b stays an int8 Add', async () => {
    const proto = learnableAffine(0.7, 1.5);
    const r = quantizeStaticQdq(proto, table({ x: [-2.25, 20], m: [-1.6, 14], s: [-1.4, 15.5], y: [-30, 30] }), opts(['Conv', 'Add', 'Mul']));
    const g = proto.graph;
    expect(g.node.some((n) => n.opType === 'Mul')).toBe(false);
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams').map((c) => c.node)).toEqual(['mul']);
    expect(r.decisions.find((d) => d.node === 'add')?.quantized).toBe(true);
    const idx = new GraphIndex(g);
    const add = g.node.find((n) => n.name === 'add')!;
    const dq = idx.producer.get(add.input[0])!;
    const q = idx.producer.get(dq.input[0])!;
    expect([dq.opType, q.opType, q.input[0]]).toEqual(['DequantizeLinear', 'QuantizeLinear', 'x']);
    const num = (t: string) => tensorToFloat32(idx.initializers.get(t)!)[0];
    // The Add reads x's integers and zero point at 0.7 × x's scale.
    expect(num(dq.input[1])).toBeCloseTo(0.7 * num(q.input[1]), 7);
    expect(num(dq.input[2])).toBe(num(q.input[2]));

    // The same integers through a float Mul and a requantize at the Add's input parameters give the
    // same output: the relabel is the float graph's arithmetic, not an approximation of it.
    const ref = structuredClone(proto);
    const rg = ref.graph;
    rg.initializer.push(scalar('a_ref', 0.7));
    const dqRoot = makeNode('DequantizeLinear', [q.output[0], q.input[1], q.input[2]], ['x_dq_ref'], 'dq_ref');
    const mul = makeNode('Mul', ['x_dq_ref', 'a_ref'], ['m_ref'], 'mul_ref');
    const requant = makeNode('QuantizeLinear', ['m_ref', dq.input[1], dq.input[2]], ['m_q_ref'], 'q_ref');
    const consumerDq = rg.node.find((n) => n.name === dq.name)!;
    consumerDq.input[0] = 'm_q_ref';
    rg.node.splice(rg.node.indexOf(consumerDq), 0, dqRoot, mul, requant);
    const x = Float32Array.from({ length: 32 }, (_, i) => -2.25 + (i * 22.25) / 31);
    expect(Array.from(await run(proto, x))).toEqual(Array.from(await run(ref, x)));
  });

  it('keeps ·a and +b float when the element-wise family is not asked for and the Add stays float', () => {
    const proto = learnableAffine(0.7, 1.5);
    const r = quantizeStaticQdq(proto, table({ x: [-2.25, 20], m: [-1.6, 14], s: [-1.4, 15.5], y: [-30, 30] }), opts(['Conv']));
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams')).toEqual([]);
    expect(proto.graph.node.filter((n) => n.opType === 'Mul' || n.opType === 'Add').map((n) => n.opType)).toEqual(['Mul', 'Add']);
  });

  it('gives a ·a whose output float ops read to the int8 Mul kernel when the family is asked for', () => {
    const proto = model([conv('x', 'w', 'c', 'conv'), makeNode('Mul', ['c', 'a'], ['y'], 'mul')], [weight('w'), scalar('a', 0.5)]);
    proto.graph.node.push(makeNode('Relu', ['c'], ['unused'], 'side'));
    const r = quantizeStaticQdq(proto, table({ x: [-1, 1], c: [-4, 4], y: [-2, 2] }), opts(['Conv', 'Mul']));
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams')).toEqual([]);
    expect(r.decisions.find((d) => d.node === 'mul')?.reason).toMatch(/graph output/);
  });

  it('leaves hard-swish\'s +3 to the Add kernel that absorbs the following Clip', () => {
    const zero = scalar('zero', 0);
    const six = scalar('six', 6);
    const proto = model(
      [conv('x', 'w', 'a', 'conv_a'), makeNode('Add', ['a', 'three'], ['s'], 'add'), makeNode('Clip', ['s', 'zero', 'six'], ['c'], 'clip'), makeNode('Mul', ['a', 'c'], ['m'], 'mul'), conv('m', 'w2', 'y', 'conv_b')],
      [weight('w'), weight('w2'), scalar('three', 3), zero, six],
    );
    const r = quantizeStaticQdq(proto, table({ x: [-4, 4], a: [-4, 4], s: [-1, 7], c: [0, 6], m: [-2.25, 24], y: [-30, 30] }), opts(['Conv', 'Add', 'Mul']));
    expect(r.decisions.find((d) => d.node === 'add')?.quantized).toBe(true);
    expect(r.changes.some((c) => c.kind === 'fuse-activation' && c.node === 'add')).toBe(true);
  });
});

describe('float outputs of int8 matrix products', () => {
  const matmul = (b: string) =>
    model([makeNode('MatMul', ['x', b], ['p'], 'mm'), makeNode('Add', ['p', 'bias'], ['y'], 'bias_add')], [makeTensor('w', [4, 4], Float32Array.from({ length: 16 }, (_, i) => (i % 5) - 2)), makeTensor('bias', [4], Float32Array.from([1, 2, 3, 4]))]);

  it('leaves a constant-weight MatMul\'s output float when only float ops read it (MatMulIntegerToFloat)', () => {
    const proto = matmul('w');
    quantizeStaticQdq(proto, table({ x: [-1, 1], p: [-8, 8], y: [-8, 12] }), opts(['MatMul']));
    const idx = new GraphIndex(proto.graph);
    const add = proto.graph.node.find((n) => n.name === 'bias_add')!;
    expect(idx.producer.get(add.input[0])?.opType).toBe('MatMul');
    expect(proto.graph.node.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.input[0])).toEqual(['x']);
  });

  it('quantizes the output of a MatMul of two activations (ONNX Runtime has no float-output kernel for it)', () => {
    const proto = matmul('x');
    quantizeStaticQdq(proto, table({ x: [-1, 1], p: [-8, 8], y: [-8, 12] }), opts(['MatMul']));
    expect(proto.graph.node.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.input[0]).sort()).toEqual(['p', 'x']);
  });
});
