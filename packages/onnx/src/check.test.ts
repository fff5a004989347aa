// The graph structure check on its own: scopes of nested bodies, unnamed nodes, what it leaves alone.
import { checkGraphStructure } from './check';
import { makeNode, makeTensor, makeValueInfo } from './graph';
import { DataType, type GraphProto, type ModelProto, type NodeProto } from './proto';

const graph = (name: string, node: NodeProto[], input: string[], output: string[], initializer = [makeTensor('w', [4], new Float32Array(4))]): GraphProto => ({
  name,
  node,
  initializer,
  input: input.map((i) => makeValueInfo(i, DataType.FLOAT, [4])),
  output: output.map((o) => makeValueInfo(o, DataType.FLOAT)),
  valueInfo: [],
});
const model = (g: GraphProto): ModelProto => ({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph: g });
const check = (g: GraphProto) => () => checkGraphStructure(model(g), 'm.onnx');
const corrupt = (context: object) => expect.objectContaining({ code: 'E_MODEL_CORRUPT', context: expect.objectContaining(context) });

/** y = Loop(trip, cond, x) whose body (i, c, v) → (c, v + w + inner(…)) holds an If reading `read` in its then branch. */
function loopWithIf(read: string): GraphProto {
  const branch = (out: string, reads: string) => graph(out, [makeNode('Identity', [reads], [out], `${out}_id`)], [], [out], []);
  const body = graph(
    'body',
    [
      makeNode('Add', ['v', 'w'], ['vw'], 'add'),
      makeNode('If', ['c'], ['picked'], 'pick', [
        { name: 'then_branch', type: 5, g: branch('t', read) },
        { name: 'else_branch', type: 5, g: branch('e', 'vw') },
      ]),
      makeNode('Identity', ['c'], ['c_out'], 'keep_going'),
    ],
    ['i', 'c', 'v'],
    ['c_out', 'picked'],
    [],
  );
  return graph('main', [makeNode('Loop', ['trip', 'cond', 'x'], ['y'], 'loop', [{ name: 'body', type: 5, g: body }])], ['trip', 'cond', 'x'], ['y']);
}

describe('checkGraphStructure', () => {
  it('nested bodies see every enclosing graph: a loop-carried value, an outer initializer, a graph input', () => {
    for (const read of ['v', 'vw', 'w', 'x', 'i']) expect(check(loopWithIf(read))).not.toThrow();
  });

  it('a name no enclosing graph defines is refused at the node deepest down that reads it', () => {
    expect(check(loopWithIf('ghost'))).toThrow(corrupt({ node: 't_id', opType: 'Identity', tensor: 'ghost' }));
  });

  it('names unnamed nodes by position, and leaves custom-domain operators alone', () => {
    expect(check(graph('g', [makeNode('Relu', ['x'], ['a'], ''), makeNode('Relu', ['nope'], ['y'], '')], ['x'], ['y']))).toThrow(corrupt({ node: '#1', opType: 'Relu', tensor: 'nope' }));
    const custom = makeNode('Sigmoid', ['k'], ['y'], 'custom', [], 'com.example');
    expect(check(graph('g', [custom], ['x'], ['y'], [makeTensor('k', [4], new BigInt64Array(4))]))).not.toThrow();
  });

  it('follows types through the graph: a Cast to int64 fed to Conv is refused, float through Relu is fine', () => {
    const nodes = (to: number) => [makeNode('Cast', ['x'], ['xc'], 'cast', [{ name: 'to', type: 2, i: to }]), makeNode('Relu', ['xc'], ['r'], 'relu'), makeNode('Conv', ['r', 'w'], ['y'], 'conv')];
    expect(check(graph('g', nodes(DataType.INT64), ['x'], ['y']))).toThrow(corrupt({ node: 'conv', opType: 'Conv', tensor: 'r' }));
    expect(check(graph('g', nodes(DataType.FLOAT), ['x'], ['y']))).not.toThrow();
  });
});
