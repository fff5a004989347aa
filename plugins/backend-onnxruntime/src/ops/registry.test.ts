import { resolveTargetProfile, quantizeOptionsFor, type CalibrationTable } from '@qforge/core';
import { DataType, GraphIndex, intsAttr, makeNode, makeTensor, makeValueInfo, type ModelProto, type NodeProto, type TensorProto } from '@qforge/onnx';
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

  it('leaves the element-wise ops float when they are not asked for, and the Div then stays', () => {
    const proto = residual();
    quantizeStaticQdq(proto, range('x', 'a', 's', 'm', 'd', 'y'), opts(['Conv']));
    expect(proto.graph.node.filter((n) => ['Add', 'Mul', 'Div'].includes(n.opType)).map((n) => n.opType)).toEqual(['Add', 'Mul', 'Div']);
    const idx = new GraphIndex(proto.graph);
    expect(idx.producer.get(proto.graph.node.find((n) => n.opType === 'Mul')!.input[1])?.opType).toBe('Add');
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
