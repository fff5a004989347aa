// Graphs that decode but break ONNX's rules fail as E_MODEL_CORRUPT naming the node and tensor, not at session creation.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunContext, modelRef, openDataset, resolveTargetProfile, type QforgeError } from '@qforge/core';
import { DataType, encodeModel, makeNode, makeTensor, makeValueInfo, type GraphProto, type ModelProto, type NodeProto } from '@qforge/onnx';
import * as ort from 'onnxruntime-node';
import { OnnxRuntimeBackend } from '../src/backend';
import { messyCnn, mlp } from './fixtures';

const dir = mkdtempSync(join(tmpdir(), 'qforge-broken-graphs-'));
const backend = new OnnxRuntimeBackend();
const ctx = createRunContext();

function write(name: string, proto: ModelProto): string {
  const path = join(dir, `${name}.onnx`);
  writeFileSync(path, encodeModel(proto));
  return path;
}

/** The model with one node changed (found by name). */
function editNode(proto: ModelProto, name: string, edit: (n: NodeProto) => void): ModelProto {
  const copy = structuredClone(proto);
  edit(copy.graph.node.find((n) => n.name === name)!);
  return copy;
}

const body = (name: string, node: NodeProto[], output: string): GraphProto => ({ name, node, initializer: [], input: [], output: [makeValueInfo(output, DataType.FLOAT)], valueInfo: [] });

/** y = If(cond) { then: Relu(x) (x read from the enclosing graph) } else { Neg(x) }; `then` replaceable. */
function branchy(then: GraphProto = body('then', [makeNode('Relu', ['x'], ['t'], 'relu')], 't'), extra: NodeProto[] = [], output = 'y'): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'branchy',
      node: [makeNode('If', ['cond'], ['y'], 'branch', [{ name: 'then_branch', type: 5, g: then }, { name: 'else_branch', type: 5, g: body('else', [makeNode('Neg', ['x'], ['e'], 'neg')], 'e') }]), ...extra],
      initializer: [makeTensor('k', [4], BigInt64Array.from([1n, 2n, 3n, 4n]))],
      input: [makeValueInfo('x', DataType.FLOAT, [1, 4]), makeValueInfo('cond', DataType.BOOL, [])],
      output: [makeValueInfo(output, DataType.FLOAT)],
      valueInfo: [],
    },
  };
}

async function ortRefuses(path: string): Promise<boolean> {
  try {
    await ort.InferenceSession.create(path, { logSeverityLevel: 4 });
    return false;
  } catch {
    return true;
  }
}

async function codeOf(p: Promise<unknown>): Promise<{ code?: string; context?: object }> {
  try {
    await p;
    return {};
  } catch (e) {
    const err = e as QforgeError;
    return { code: err.code, context: err.context };
  }
}

const cnn = messyCnn();
const broken: [string, ModelProto, { node: string; opType: string; tensor: string }][] = [
  ['a dangling input (a name nothing produces)', editNode(cnn, 'conv2', (n) => (n.input[0] = 'relu6_typo')), { node: 'conv2', opType: 'Conv', tensor: 'relu6_typo' }],
  ['a cycle', editNode(cnn, 'relu6', (n) => (n.input[0] = 'relu2')), { node: 'relu6', opType: 'Clip', tensor: 'relu2' }],
  ['a name written by two nodes', editNode(cnn, 'relu2', (n) => (n.output[0] = 'conv2')), { node: 'relu2', opType: 'Relu', tensor: 'conv2' }],
  ['an int64 weight fed to Conv', (() => { const m = structuredClone(cnn); m.graph.initializer[0] = makeTensor('w2', [16, 8, 1, 1], new BigInt64Array(128)); return m; })(), { node: 'conv2', opType: 'Conv', tensor: 'w2' }],
  ['a float Add fed an int64 bias', (() => { const m = mlp(8, 16, 2); m.graph.initializer[1] = makeTensor('b1', [16], new BigInt64Array(16)); return m; })(), { node: 'fc1_bias', opType: 'Add', tensor: 'b1' }],
  ['a weight whose raw data was cut short', (() => { const m = structuredClone(cnn); m.graph.initializer[0].rawData = m.graph.initializer[0].rawData!.slice(0, 100); return m; })(), { node: 'conv2', opType: 'Conv', tensor: 'w2' }],
  ['a weight with no data at all', (() => { const m = structuredClone(cnn); m.graph.initializer[1].rawData = new Uint8Array(0); return m; })(), { node: 'conv2', opType: 'Conv', tensor: 'b2' }],
  ['a Constant whose dims do not fit its data', editNode(cnn, 'bn_scale_const', (n) => (n.attribute[0].t!.dims = [9])), { node: 'bn_scale_const', opType: 'Constant', tensor: 'bn_scale' }],
  ['an If body reading a name no graph defines', branchy(body('then', [makeNode('Relu', ['ghost'], ['t'], 'relu')], 't')), { node: 'relu', opType: 'Relu', tensor: 'ghost' }],
  ['a cycle through an If body', branchy(body('then', [makeNode('Relu', ['z'], ['t'], 'relu')], 't'), [makeNode('Relu', ['y'], ['z'], 'after')]), { node: 'branch', opType: 'If', tensor: 'z' }],
  ['an int64 outer initializer fed to Sigmoid in an If body', branchy(body('then', [makeNode('Sigmoid', ['k'], ['t'], 'sig')], 't')), { node: 'sig', opType: 'Sigmoid', tensor: 'k' }],
  ['an If body whose nodes are out of order', branchy(body('then', [makeNode('Relu', ['a'], ['t'], 'late'), makeNode('Relu', ['x'], ['a'], 'early')], 't')), { node: 'late', opType: 'Relu', tensor: 'a' }],
  ['an If body returning an outer value as its output', branchy(body('then', [], 'x')), { node: 'branch', opType: 'If', tensor: 'x' }],
];

describe('graphs ONNX Runtime refuses are E_MODEL_CORRUPT at load, naming the node and tensor', () => {
  it.each(broken)('%s', async (name, proto, where) => {
    const path = write(name.replace(/\W+/g, '-'), proto);
    // The check is faithful: ONNX Runtime refuses each of these models too.
    expect(await ortRefuses(path)).toBe(true);
    const model = modelRef(path);
    const expected = { code: 'E_MODEL_CORRUPT', context: expect.objectContaining({ path, ...where }) };
    expect(await codeOf(backend.inspect(model))).toEqual(expected);
    const inputs = [{ name: 'x', dtype: 'float32', shape: [1, 4] }];
    expect(await codeOf(backend.calibrate(model, openDataset('random', { inputs }), { method: 'minmax', samples: 1, target: resolveTargetProfile('auto') }, ctx))).toEqual(expected);
    expect(await codeOf(backend.verify(modelRef(write('ok-reference', cnn)), model, openDataset('random', { inputs }), { samples: 1, thresholds: {} }, ctx))).toEqual(expected);
  });

  it('its twins load and run: bodies reading outer-scope names, unsorted main graphs, real-export quirks', async () => {
    const unsorted = structuredClone(cnn);
    unsorted.graph.node.reverse();
    for (const [name, proto] of [['branchy', branchy()], ['unsorted', unsorted], ['messy', cnn]] as const) {
      const path = write(`valid-${name}`, proto);
      expect(await ortRefuses(path)).toBe(false);
      expect((await backend.inspect(modelRef(path))).path).toBe(path);
    }
  });
});
