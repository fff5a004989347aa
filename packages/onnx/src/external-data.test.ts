// External data under core's one symlink policy, in every place a tensor can hide: subgraphs and sparse initializers.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeNode, makeTensor, makeValueInfo, tensorToFloat32 } from './graph';
import { encodeModel, loadModel } from './model';
import { DataType, type GraphProto, type ModelProto, type TensorProto } from './proto';

const root = mkdtempSync(join(tmpdir(), 'qforge-extdata-'));
const modelDir = join(root, 'model');
mkdirSync(modelDir);
writeFileSync(join(root, 'secret.bin'), Buffer.from(Float32Array.from([7, 7]).buffer));
writeFileSync(join(modelDir, 'weights.bin'), Buffer.from(Float32Array.from([1, 2]).buffer));
symlinkSync(join(root, 'secret.bin'), join(modelDir, 'link.bin'));
const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0;
if (haveMkfifo) spawnSync('mkfifo', [join(modelDir, 'pipe.bin')]);
const withFifo = haveMkfifo ? it : it.skip;

function external(name: string, location: string): TensorProto {
  return { ...makeTensor(name, [2], new Float32Array(2)), rawData: undefined, dataLocation: 1, externalData: [{ key: 'location', value: location }] };
}

/** A model whose external tensor sits in an If branch's initializer, or in the main graph's sparse initializer. */
function model(where: 'subgraph' | 'sparse', location: string): ModelProto {
  const branch = (t?: TensorProto): GraphProto => ({
    name: 'branch',
    node: [makeNode('Identity', ['w'], ['out'], 'id')],
    initializer: t ? [t] : [makeTensor('w', [2], Float32Array.from([0, 0]))],
    input: [],
    output: [makeValueInfo('out', DataType.FLOAT, [2])],
    valueInfo: [],
  });
  const graph: GraphProto = {
    name: 'g',
    node: [makeNode('If', ['c'], ['y'], 'if', [
      { name: 'then_branch', type: 5, g: branch(where === 'subgraph' ? external('w', location) : undefined) },
      { name: 'else_branch', type: 5, g: branch() },
    ])],
    initializer: [],
    input: [makeValueInfo('c', DataType.BOOL, [])],
    output: [makeValueInfo('y', DataType.FLOAT, [2])],
    valueInfo: [],
  };
  if (where === 'sparse') graph.sparseInitializer = [{ values: external('s', location), indices: makeTensor('s_idx', [2], BigInt64Array.from([0n, 1n])), dims: [4] }];
  return { irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph };
}

function write(name: string, m: ModelProto): string {
  const p = join(modelDir, name);
  writeFileSync(p, encodeModel(m));
  return p;
}

describe.each(['subgraph', 'sparse'] as const)('external data in a %s initializer', (where) => {
  it('is read when it lies beside the model', () => {
    const loaded = loadModel(write(`${where}-ok.onnx`, model(where, 'weights.bin')));
    const t = where === 'subgraph' ? loaded.proto.graph.node[0].attribute[0].g!.initializer[0] : (loaded.proto.graph.sparseInitializer![0].values as TensorProto);
    expect(Array.from(tensorToFloat32(t))).toEqual([1, 2]);
    expect(Object.values(loaded.externalTensors)).toEqual(['weights.bin']);
  });

  it.each([
    ['a .. path', '../secret.bin'],
    ['an absolute path', join(root, 'secret.bin')],
    ['a symlink out of the folder', 'link.bin'],
  ])('is refused through %s (E_PATH_OUTSIDE_FOLDER), never resolved against the working directory', (_name, location) => {
    expect(() => loadModel(write(`${where}-evil.onnx`, model(where, location)))).toThrow(expect.objectContaining({ code: 'E_PATH_OUTSIDE_FOLDER' }));
  });

  withFifo('is refused when it names a FIFO, without opening it', () => {
    expect(() => loadModel(write(`${where}-fifo.onnx`, model(where, 'pipe.bin')))).toThrow(expect.objectContaining({ code: 'E_NOT_REGULAR_FILE' }));
  });
});
