import { resolveTargetProfile, quantizeOptionsFor, type CalibrationTable } from '@qforge/core';
import { DataType, encodeModel, floatAttr, intAttr, intsAttr, makeNode, makeTensor, makeValueInfo, opsetVersion, type ModelProto, type NodeProto, type TensorProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { upgradeForPerAxis, upgradeOpset } from './prepare';
import { quantizeStaticQdq } from './quantize-qdq';

const str = (name: string, s: string) => ({ name, type: 3, s: Buffer.from(s) });

function model(opset: number, nodes: NodeProto[], inits: TensorProto[], x: number[], out = 'y'): ModelProto {
  return {
    irVersion: opset >= 13 ? 7 : 3,
    opsetImport: [{ domain: '', version: opset }],
    graph: { name: 'g', node: nodes, initializer: inits, input: [makeValueInfo('x', DataType.FLOAT, x)], output: [makeValueInfo(out, DataType.FLOAT)], valueInfo: [] },
  };
}

async function run(proto: ModelProto, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(proto), { logSeverityLevel: 3 });
  const out = await s.run({ x: new ort.Tensor('float32', x, dims) });
  return out[s.outputNames[0]].data as Float32Array;
}

const ramp = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) * 8);

describe('opset upgrade', () => {
  it('raises an opset-9 chain (Upsample, Dropout, Clip, Pad, Slice, Softmax on the last axis) to 13 without changing outputs', async () => {
    const nodes = [
      makeNode('Upsample', ['x', 'scales'], ['u'], 'up', [str('mode', 'nearest')]),
      makeNode('Dropout', ['u'], ['d'], 'drop', [floatAttr('ratio', 0.3)]),
      makeNode('Clip', ['d'], ['c'], 'clip', [floatAttr('min', -2), floatAttr('max', 6)]),
      makeNode('Pad', ['c'], ['p'], 'pad', [intsAttr('pads', [0, 0, 1, 1, 0, 0, 1, 1]), floatAttr('value', 0.5)]),
      makeNode('Slice', ['p'], ['s'], 'slice', [intsAttr('starts', [1]), intsAttr('ends', [5]), intsAttr('axes', [3])]),
      makeNode('Softmax', ['s'], ['y'], 'softmax', [intAttr('axis', 3)]),
    ];
    const proto = model(9, nodes, [makeTensor('scales', [4], Float32Array.from([1, 1, 2, 2]))], [1, 2, 3, 3]);
    const x = ramp(18);
    const before = await run(proto, x, [1, 2, 3, 3]);
    const changes: { kind: string; detail: string }[] = [];
    expect(upgradeOpset(proto, new Map([['s', [1, 2, 8, 4]]]), changes, 13)).toBeUndefined();
    expect(opsetVersion(proto)).toBe(13);
    expect(proto.graph.node.map((n) => n.opType)).toEqual(['Resize', 'Dropout', 'Clip', 'Pad', 'Slice', 'Softmax']);
    expect(changes[0].detail).toMatch(/Upsample → Resize/);
    const after = await run(proto, x, [1, 2, 3, 3]);
    expect(after.length).toBe(before.length);
    for (let i = 0; i < before.length; i++) expect(after[i]).toBeCloseTo(before[i], 6);
  });

  it('rewrites an opset-6 broadcast from axis 1 into numpy broadcasting (bias reshaped to [C,1,1])', async () => {
    const bias = Float32Array.from([1, -2, 3]);
    const proto = model(6, [makeNode('Add', ['x', 'b'], ['y'], 'add', [intAttr('broadcast', 1), intAttr('axis', 1)])], [makeTensor('b', [3], bias)], [1, 3, 2, 2]);
    expect(upgradeOpset(proto, new Map([['x', [1, 3, 2, 2]]]), [], 13)).toBeUndefined();
    const x = ramp(12);
    const y = await run(proto, x, [1, 3, 2, 2]);
    for (let i = 0; i < 12; i++) expect(y[i]).toBeCloseTo(x[i] + bias[Math.floor(i / 4)], 6);
  });

  it('refuses, naming the op, what has no upgrade or would change meaning', () => {
    const refuse = (opset: number, node: NodeProto, shapes = new Map<string, number[]>()) => upgradeOpset(model(opset, [node], [], [1, 3, 4, 4]), shapes, [], 13);
    expect(refuse(6, makeNode('ImageScaler', ['x'], ['y'], 'scaler'))).toMatchObject({ op: 'ImageScaler', node: 'scaler' });
    expect(refuse(8, makeNode('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'], 'bn', [intAttr('spatial', 0)]))).toMatchObject({ op: 'BatchNormalization' });
    expect(refuse(6, makeNode('Add', ['x', 'z'], ['y'], 'add', [intAttr('broadcast', 1), intAttr('axis', 1)]))).toMatchObject({ op: 'Add' });
    expect(refuse(9, makeNode('Softmax', ['x'], ['y'], 'sm', [intAttr('axis', 1)]), new Map([['x', [1, 3, 4, 4]]]))).toMatchObject({ op: 'Softmax' });
    expect(refuse(5, makeNode('Relu', ['x'], ['y'], 'relu'))?.reason).toMatch(/older than 6/);
    // …and what is compatible passes.
    expect(refuse(6, makeNode('Relu', ['x'], ['y'], 'relu'))).toBeUndefined();
  });

  it('falls back to opset 10 (per-tensor) when 13 would change a Softmax axis', () => {
    const proto = model(9, [makeNode('Softmax', ['x'], ['y'], 'sm', [intAttr('axis', 1)])], [], [1, 3, 4, 4]);
    const changes: { kind: string; detail: string }[] = [];
    const refusal = upgradeForPerAxis(proto, new Map([['x', [1, 3, 4, 4]]]), changes);
    expect(refusal?.op).toBe('Softmax');
    expect(opsetVersion(proto)).toBe(10);
    expect(changes.map((c) => c.kind)).toEqual(['opset-upgrade', 'opset-kept']);
  });

  it('static quantization of a graph left below opset 10 is a coded error naming the op', () => {
    const w = makeTensor('w', [2, 3, 1, 1], Float32Array.from([1, 2, 3, 4, 5, 6]));
    const proto = model(6, [makeNode('ImageScaler', ['x'], ['s'], 'scaler'), makeNode('Conv', ['s', 'w'], ['y'], 'conv', [intsAttr('kernel_shape', [1, 1])])], [w], [1, 3, 2, 2]);
    const refusal = upgradeForPerAxis(proto, new Map(), []);
    expect(opsetVersion(proto)).toBe(6);
    const table = { tensors: { s: { range: [-1, 1] }, y: { range: [-1, 1] } } } as unknown as CalibrationTable;
    const opts = { ...quantizeOptionsFor(resolveTargetProfile('x86-avx2'), { output: '/dev/null' }), perAxisAllowed: false, opsetRefusal: refusal };
    expect(() => quantizeStaticQdq(proto, table, opts)).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_OP', context: expect.objectContaining({ ops: ['ImageScaler'] }) }));
  });
});
