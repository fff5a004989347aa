// Constant folding: Identity-fed (tied) weights and Slice/Concat/… of constants, also inside If
// branches, give the same outputs in ONNX Runtime and leave plain initializers behind.
import { DataType, encodeModel, intAttr, intsAttr, makeNode, makeTensor, makeValueInfo, type GraphProto, type ModelProto } from '@qforge/onnx';
import { createSession, runSession } from './runtime';
import { foldConstantExpressions } from './fold-constants';
import { subgraphScopes } from './subgraphs';

const ramp = (n: number, k = 1) => Float32Array.from({ length: n }, (_, i) => ((i * 7 + k) % 11) / 11 - 0.5);
const i64 = (name: string, v: (number | bigint)[]) => makeTensor(name, [v.length], BigInt64Array.from(v, (x) => BigInt(x)));

function model(graph: GraphProto): ModelProto {
  return { irVersion: 8, opsetImport: [{ domain: '', version: 13 }], producerName: 'test', graph };
}

/** x[1,4] @ Identity(W) and x @ Transpose(Concat(Slice(V, rows 2..), Slice(V, rows ..2))) with INT64_MAX ends. */
function tied(): ModelProto {
  return model({
    name: 'g',
    node: [
      makeNode('Identity', ['W'], ['W_tied'], 'tie'),
      makeNode('MatMul', ['x', 'W_tied'], ['y1'], 'mm1'),
      makeNode('MatMul', ['x', 'W'], ['y1b'], 'mm1b'),
      makeNode('Slice', ['V', 'two', 'max', 'zero'], ['V_tail'], 's1'),
      makeNode('Slice', ['V', 'zero', 'two', 'zero'], ['V_head'], 's2'),
      makeNode('Concat', ['V_tail', 'V_head'], ['V_perm'], 'cat', [intAttr('axis', 0)]),
      makeNode('Transpose', ['V_perm'], ['V_t'], 'tr', [intsAttr('perm', [1, 0])]),
      makeNode('MatMul', ['x', 'V_t'], ['y2'], 'mm2'),
    ],
    initializer: [makeTensor('W', [4, 3], ramp(12)), makeTensor('V', [5, 4], ramp(20, 3)), i64('two', [2]), i64('zero', [0]), i64('max', [9223372036854775807n])],
    input: [makeValueInfo('x', DataType.FLOAT, [1, 4])],
    output: [makeValueInfo('y1', DataType.FLOAT), makeValueInfo('y1b', DataType.FLOAT), makeValueInfo('y2', DataType.FLOAT)],
    valueInfo: [],
  });
}

async function outputs(m: ModelProto): Promise<number[][]> {
  const s = await createSession(encodeModel(m), { optimization: 'disabled' });
  try {
    const out = await runSession(s, { x: { dtype: 'float32', dims: [1, 4], data: Float32Array.from([0.5, -1, 2, 0.25]) }, c: { dtype: 'bool', dims: [], data: Uint8Array.from([1]) } });
    return Object.keys(out).sort().map((k) => Array.from(out[k].data as Float32Array));
  } finally {
    await s.release();
  }
}

describe('foldConstantExpressions', () => {
  it('Identity-fed weights become reads of the one constant; Slice/Concat/Transpose of constants become initializers', async () => {
    const before = await outputs(tied());
    const m = tied();
    const changes: { kind: string; detail: string }[] = [];
    foldConstantExpressions(m, changes);
    expect(m.graph.node.map((n) => n.opType)).toEqual(['MatMul', 'MatMul', 'MatMul']);
    // Both MatMuls read W itself: a tied weight stays one tensor (one int8 copy after quantizing).
    expect(m.graph.node.filter((n) => n.input[1] === 'W')).toHaveLength(2);
    expect(m.graph.initializer.find((t) => t.name === 'V_t')?.dims.map(Number)).toEqual([4, 5]);
    expect(changes.map((c) => c.kind).sort()).toEqual(['fold-constant-expression', 'fold-identity']);
    expect(await outputs(m)).toEqual(before);
  });

  it('inside an If branch, outer-scope constants are visible; an Identity that is a graph output stays', async () => {
    const branch = (name: string, scale: number): GraphProto => ({
      name,
      node: [makeNode('Unsqueeze', ['W', 'ax'], [`${name}_W3`], `${name}_un`), makeNode('Squeeze', [`${name}_W3`, 'ax'], [`${name}_W2`], `${name}_sq`), makeNode('MatMul', ['x', `${name}_W2`], [`${name}_y`], `${name}_mm`), makeNode('Identity', [`${name}_k`], [`${name}_out`], `${name}_id`)],
      initializer: [makeTensor(`${name}_k`, [1], Float32Array.from([scale]))],
      input: [],
      output: [makeValueInfo(`${name}_y`, DataType.FLOAT), makeValueInfo(`${name}_out`, DataType.FLOAT)],
      valueInfo: [],
    });
    const build = () =>
      model({
        name: 'g',
        node: [makeNode('If', ['c'], ['y', 'k'], 'if', [{ name: 'then_branch', type: 5, g: branch('then', 1) }, { name: 'else_branch', type: 5, g: branch('else', 2) }])],
        initializer: [makeTensor('W', [4, 3], ramp(12)), i64('ax', [0])],
        input: [makeValueInfo('x', DataType.FLOAT, [1, 4]), makeValueInfo('c', DataType.BOOL, [])],
        output: [makeValueInfo('y', DataType.FLOAT), makeValueInfo('k', DataType.FLOAT)],
        valueInfo: [],
      });
    const before = await outputs(build());
    const m = build();
    foldConstantExpressions(m, []);
    for (const s of subgraphScopes(m.graph)) {
      expect(s.graph.node.map((n) => n.opType)).toEqual(['MatMul', 'Identity']);
      expect(s.graph.initializer.some((t) => t.name.endsWith('_W2'))).toBe(true);
    }
    expect(await outputs(m)).toEqual(before);
  });
});
