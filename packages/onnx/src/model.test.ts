import { mkdtempSync, readFileSync, symlinkSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataType } from './proto';
import { GraphIndex, graphInputs, makeNode, makeTensor, makeValueInfo, tensorToFloat32, topologicalSort } from './graph';
import { decodeModel, encodeModel, loadModel, saveModel } from './model';
import type { ModelProto } from './proto';

const dir = mkdtempSync(join(tmpdir(), 'qforge-onnx-'));

function tiny(): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'test',
    graph: {
      name: 'g',
      // Deliberately out of order: the sort must put Relu after Add.
      node: [makeNode('Relu', ['s'], ['y'], 'relu'), makeNode('Add', ['x', 'w'], ['s'], 'add')],
      initializer: [makeTensor('w', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]))],
      input: [makeValueInfo('x', DataType.FLOAT, ['batch', 3])],
      output: [makeValueInfo('y', DataType.FLOAT, ['batch', 3])],
      valueInfo: [],
    },
  };
}

describe('ONNX model I/O', () => {
  it('round-trips a model byte for byte', async () => {
    const p = join(dir, 'tiny.onnx');
    await saveModel(tiny(), p);
    const bytes = readFileSync(p);
    const again = encodeModel(loadModel(p).proto);
    expect(Buffer.from(again).equals(bytes)).toBe(true);
  });

  it('reads shapes, initializers and graph structure', () => {
    const m = tiny();
    expect(graphInputs(m.graph)).toEqual([{ name: 'x', dtype: 'float32', shape: ['batch', 3] }]);
    expect(Array.from(tensorToFloat32(m.graph.initializer[0]))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(topologicalSort(m.graph).map((n) => n.name)).toEqual(['add', 'relu']);
    const idx = new GraphIndex(m.graph);
    expect(idx.producer.get('s')?.name).toBe('add');
    expect(idx.consumersOf('s').map((n) => n.name)).toEqual(['relu']);
  });

  it('writes and reads external data, and refuses locations outside the model folder', async () => {
    const p = join(dir, 'ext', 'model.onnx');
    mkdirSync(join(dir, 'ext'));
    const r = await saveModel(tiny(), p, { externalData: 'always', externalThresholdBytes: 1 });
    expect(existsSync(r.externalFile!)).toBe(true);
    const loaded = loadModel(p);
    expect(loaded.externalTensors).toEqual({ w: 'model.onnx.data' });
    expect(Array.from(tensorToFloat32(loaded.proto.graph.initializer[0]))).toEqual([1, 2, 3, 4, 5, 6]);

    const evil = tiny();
    evil.graph.initializer[0] = { ...evil.graph.initializer[0], rawData: undefined, dataLocation: 1, externalData: [{ key: 'location', value: '../secret.bin' }] };
    writeFileSync(join(dir, 'secret.bin'), Buffer.alloc(24));
    const ep = join(dir, 'ext', 'evil.onnx');
    writeFileSync(ep, encodeModel(evil));
    expect(() => loadModel(ep)).toThrow(expect.objectContaining({ code: 'E_PATH_OUTSIDE_FOLDER' }));

    symlinkSync(join(dir, 'secret.bin'), join(dir, 'ext', 'link.bin'));
    evil.graph.initializer[0].externalData = [{ key: 'location', value: 'link.bin' }];
    writeFileSync(ep, encodeModel(evil));
    expect(() => loadModel(ep)).toThrow(expect.objectContaining({ code: 'E_PATH_OUTSIDE_FOLDER' }));
  });

  it('names the side file as asked (transformers.js: <model file>_data), and only with a plain file name', async () => {
    mkdirSync(join(dir, 'named'));
    const p = join(dir, 'named', 'model_q4.onnx');
    const r = await saveModel(tiny(), p, { externalData: 'always', externalThresholdBytes: 1, externalDataName: 'model_q4.onnx_data' });
    expect(r.externalFile).toBe(join(dir, 'named', 'model_q4.onnx_data'));
    expect(loadModel(p).externalTensors).toEqual({ w: 'model_q4.onnx_data' });
    expect(existsSync(join(dir, 'named', 'model_q4.onnx.data'))).toBe(false);
    await expect(saveModel(tiny(), p, { externalData: 'always', externalDataName: '../model_q4.onnx_data' })).rejects.toMatchObject({ code: 'E_INVALID_OPTION' });
  });

  it('refuses files that are not ONNX', () => {
    expect(() => decodeModel(Buffer.from('definitely not protobuf'))).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT' }));
    expect(() => decodeModel(new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'E_MODEL_CORRUPT' }));
    expect(() => loadModel(join(dir, 'missing.onnx'))).toThrow(expect.objectContaining({ code: 'E_MODEL_NOT_FOUND' }));
  });
});
