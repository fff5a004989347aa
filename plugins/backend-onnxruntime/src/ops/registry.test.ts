import { resolveTargetProfile, quantizeOptionsFor, scaleFromRange, type CalibrationTable } from '@qforge/core';
import { DataType, GraphIndex, encodeModel, intsAttr, makeNode, makeTensor, makeValueInfo, tensorToFloat32, type ModelProto, type NodeProto, type TensorProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { calibrationTensors, quantizeStaticQdq, relabelStep, STATIC_OP_TYPES } from '../quantize-qdq';
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

  it('keeps a residual block int8 end to end: QLinear-fusable Mul, the +3 and the /6 folded into parameters', () => {
    const proto = residual();
    const r = quantizeStaticQdq(proto, range('x', 'a', 's', 'm', 'd', 'y'), opts(['Conv', 'Add', 'Mul']));
    const byName = new Map(r.decisions.map((d) => [d.node, d]));
    expect(['conv_a', 'mul', 'conv_b'].map((n) => byName.get(n)?.quantized)).toEqual([true, true, true]);
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams').map((c) => c.node)).toEqual(['add', 'div']);
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
  it('turns ·a and +b into the scale and zero point the consumer reads, exactly', async () => {
    const proto = learnableAffine(0.7, 1.5);
    const r = quantizeStaticQdq(proto, table({ x: [-2.25, 20], m: [-1.6, 14], s: [-1.4, 14.3], y: [-30, 30] }), opts(['Conv']));
    const g = proto.graph;
    expect(g.node.some((n) => n.opType === 'Mul' || n.opType === 'Add')).toBe(false);
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams').map((c) => c.node)).toEqual(['mul', 'add']);
    const idx = new GraphIndex(g);
    const dq = idx.producer.get(g.node.find((n) => n.name === 'conv')!.input[0])!;
    const q = idx.producer.get(dq.input[0])!;
    expect([dq.opType, q.opType, q.input[0]]).toEqual(['DequantizeLinear', 'QuantizeLinear', 'x']);
    const num = (t: string) => {
      const v = idx.initializers.get(t)!;
      return v.dataType === DataType.FLOAT ? tensorToFloat32(v)[0] : Number(v.rawData?.[0] ?? (v as { int32Data?: number[] }).int32Data?.[0]);
    };
    const [sx, zx, sy, zy] = [num(q.input[1]), num(q.input[2]), num(dq.input[1]), num(dq.input[2])];
    // Every integer the root can hold means a·x + b under the consumer's parameters.
    for (let k = 0; k <= 255; k++) expect(sy * (k - zy)).toBeCloseTo(0.7 * sx * (k - zx) + 1.5, 5);
    // The root's scale was enlarged by at most 3% to make b a whole number of steps.
    const base = scaleFromRange(-2.25, 20, { type: 'uint8' }).scale;
    expect(sx / base).toBeGreaterThanOrEqual(1);
    expect(sx / base).toBeLessThanOrEqual(1.03);

    // The same integers through float Mul/Add and a requantize at the consumer's parameters give
    // the same output: the relabel is the float graph's arithmetic, not an approximation of it.
    const ref = structuredClone(proto);
    const rg = ref.graph;
    rg.initializer.push(scalar('a_ref', 0.7), scalar('b_ref', 1.5));
    const dqRoot = makeNode('DequantizeLinear', [q.output[0], q.input[1], q.input[2]], ['x_dq_ref'], 'dq_ref');
    const mul = makeNode('Mul', ['x_dq_ref', 'a_ref'], ['m_ref'], 'mul_ref');
    const add = makeNode('Add', ['m_ref', 'b_ref'], ['s_ref'], 'add_ref');
    const requant = makeNode('QuantizeLinear', ['s_ref', dq.input[1], dq.input[2]], ['s_q_ref'], 'q_ref');
    const consumerDq = rg.node.find((n) => n.name === dq.name)!;
    consumerDq.input[0] = 's_q_ref';
    rg.node.splice(rg.node.indexOf(consumerDq), 0, dqRoot, mul, add, requant);
    const x = Float32Array.from({ length: 32 }, (_, i) => -2.25 + (i * 22.25) / 31);
    expect(Array.from(await run(proto, x))).toEqual(Array.from(await run(ref, x)));
  });

  it('snaps a shift to a whole number of steps, or refuses when that would cost more than 3% of the scale', () => {
    const root = { ...scaleFromRange(-1, 9, { type: 'uint8' }), type: 'uint8' as const };
    const d = { root: 'r', factor: 1, shift: 0 };
    const ok = relabelStep(d, { input: 'r', factor: 2, offset: 1.5 }, root, false, [-1, 9], false)!;
    const k = ok.derivation.shift;
    expect(1.5 / (ok.root!.scale * 2)).toBeCloseTo(k, 9);
    expect(ok.root!.zeroPoint - k).toBeGreaterThanOrEqual(0);
    // An offset of a few steps cannot be snapped cheaply.
    expect(relabelStep(d, { input: 'r', factor: 1, offset: 0.1 }, root, false, [-1, 9], false)).toBeUndefined();
    // A pinned root takes another shift only when it is whole at the pinned scale.
    const pinned = ok.root!;
    expect(relabelStep({ ...d, factor: 2, shift: k }, { input: 'r', factor: 1, offset: 3 * pinned.scale * 2 }, pinned, true, [-1, 9], false)?.derivation.shift).toBe(k + 3);
    expect(relabelStep({ ...d, factor: 2, shift: k }, { input: 'r', factor: 1, offset: 3.5 * pinned.scale * 2 }, pinned, true, [-1, 9], false)).toBeUndefined();
    // A product never needs a snap; 16-bit tensors are left alone.
    expect(relabelStep(d, { input: 'r', factor: 0.5, offset: 0 }, root, false, [-1, 9], false)).toEqual({ derivation: { root: 'r', factor: 0.5, shift: 0 } });
    expect(relabelStep(d, { input: 'r', factor: 1, offset: 1 }, root, false, [-1, 9], true)).toBeUndefined();
  });

  it('widens the root a little when the output zero would fall outside the integers, and refuses beyond a quarter', () => {
    const root = { ...scaleFromRange(0, 10, { type: 'uint8' }), type: 'uint8' as const };
    const d = { root: 'r', factor: 1, shift: 0 };
    // y = x + 1 on x in [0, 10]: y is never 0, so the root must reach −1 (10% wider).
    const wide = relabelStep(d, { input: 'r', factor: 1, offset: 1 }, root, false, [0, 10], false)!;
    expect(wide.root!.zeroPoint - wide.derivation.shift).toBeGreaterThanOrEqual(0);
    expect(wide.root!.scale * 255).toBeLessThanOrEqual(10 * 1.25);
    // y = x + 5 would need the root to reach −5: 50% wider, refused.
    expect(relabelStep(d, { input: 'r', factor: 1, offset: 5 }, root, false, [0, 10], false)).toBeUndefined();
  });

  it('falls back to the int8 Add kernel when the family is asked for and the relabel is impossible', () => {
    // +0.01 on a range of 22: less than one step, no exact relabel.
    const proto = learnableAffine(0.7, 0.01);
    const r = quantizeStaticQdq(proto, table({ x: [-2.25, 20], m: [-1.6, 14], s: [-1.6, 14], y: [-30, 30] }), opts(['Conv', 'Add', 'Mul']));
    expect(r.decisions.find((d) => d.node === 'add')?.quantized).toBe(true);
    expect(r.changes.filter((c) => c.kind === 'fold-affine-qparams').map((c) => c.node)).toEqual(['mul']);
    expect(proto.graph.node.filter((n) => n.opType === 'Add')).toHaveLength(1);
    // Without the family the Add stays float, and the ·a before it then has no int8 reader: float too.
    const plain = learnableAffine(0.7, 0.01);
    const p = quantizeStaticQdq(plain, table({ x: [-2.25, 20], m: [-1.6, 14], s: [-1.6, 14], y: [-30, 30] }), opts(['Conv']));
    expect(p.changes.filter((c) => c.kind === 'fold-affine-qparams')).toEqual([]);
    expect(plain.graph.node.filter((n) => n.opType === 'Mul' || n.opType === 'Add').map((n) => n.opType)).toEqual(['Mul', 'Add']);
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
