import * as flatbuffers from 'flatbuffers';
import { ActivationFunctionType, Conv2DOptionsT, Model } from './generated/tflite_generated';
import { Padding, ReshapeOptionsT, defaultOpVersion, readTflite, writeTflite, type TfliteModel } from './model';

const i8 = (a: number[]) => new Uint8Array(Int8Array.from(a).buffer);
const i32 = (a: number[]) => new Uint8Array(Int32Array.from(a).buffer);

function convModel(): TfliteModel {
  return {
    description: 'test',
    tensors: [
      { name: 'x', shape: [1, 4, 4, 1], type: 'int8', quantization: { scale: [0.5], zeroPoint: [-3] } },
      { name: 'w', shape: [2, 1, 1, 1], type: 'int8', data: i8([127, -64]), quantization: { scale: [0.01, 0.02], zeroPoint: [0, 0], quantizedDimension: 0 } },
      { name: 'b', shape: [2], type: 'int32', data: i32([5, -7]), quantization: { scale: [0.005, 0.01], zeroPoint: [0, 0] } },
      { name: 'y', shape: [1, 4, 4, 2], type: 'int8', quantization: { scale: [0.1], zeroPoint: [-128] } },
      { name: 'shape', shape: [2], type: 'int32', data: i32([1, 32]) },
      { name: 'z', shape: [1, 32], type: 'int8', quantization: { scale: [0.1], zeroPoint: [-128] } },
    ],
    operators: [
      { op: 'CONV_2D', inputs: [0, 1, 2], outputs: [3], options: new Conv2DOptionsT(Padding.SAME, 1, 1, ActivationFunctionType.RELU6) },
      { op: 'RESHAPE', inputs: [3, 4], outputs: [5], options: new ReshapeOptionsT([1, 32]) },
    ],
    inputs: [0],
    outputs: [5],
    metadata: { qforge: new TextEncoder().encode('{"v":1}') },
  };
}

describe('TFLite flatbuffer writer and reader', () => {
  it('round-trips tensors, per-axis quantization, operators, options and metadata', () => {
    const bytes = writeTflite(convModel());
    expect(new TextDecoder().decode(bytes.subarray(4, 8))).toBe('TFL3');
    const m = readTflite(bytes);
    expect(m.version).toBe(3);
    expect(m.description).toBe('test');
    expect(m.inputs).toEqual([0]);
    expect(m.outputs).toEqual([5]);
    expect(m.tensors.map((t) => t.name)).toEqual(['x', 'w', 'b', 'y', 'shape', 'z']);
    expect(m.tensors[1]).toMatchObject({ type: 'int8', shape: [2, 1, 1, 1], quantization: { scale: [expect.closeTo(0.01, 6), expect.closeTo(0.02, 6)], zeroPoint: [0, 0], quantizedDimension: 0 } });
    expect(Array.from(new Int8Array(m.tensors[1].data!.slice().buffer))).toEqual([127, -64]);
    expect(Array.from(new Int32Array(m.tensors[2].data!.slice().buffer))).toEqual([5, -7]);
    expect(m.tensors[0].quantization).toMatchObject({ zeroPoint: [-3] });
    expect(m.tensors[3].data).toBeUndefined();
    expect(m.operators.map((o) => [o.op, o.version])).toEqual([['CONV_2D', 3], ['RESHAPE', 1]]);
    const conv = m.operators[0].options as Conv2DOptionsT;
    expect(conv).toBeInstanceOf(Conv2DOptionsT);
    expect(conv.fusedActivationFunction).toBe(ActivationFunctionType.RELU6);
    expect((m.operators[1].options as ReshapeOptionsT).newShape).toEqual([1, 32]);
    expect(new TextDecoder().decode(m.metadata!.qforge)).toBe('{"v":1}');
  });

  it('aligns constant buffers to 16 bytes and keeps buffer 0 as the empty sentinel', () => {
    const bytes = writeTflite(convModel());
    const model = Model.getRootAsModel(new flatbuffers.ByteBuffer(bytes));
    expect(model.buffers(0)!.dataLength()).toBe(0);
    for (let i = 1; i < model.buffersLength(); i++) {
      const data = model.buffers(i)!.dataArray()!;
      expect((data.byteOffset - bytes.byteOffset) % 16).toBe(0);
    }
  });

  it('writes no custom options on builtin operators (runtimes reject them)', () => {
    const bytes = writeTflite(convModel());
    const op = Model.getRootAsModel(new flatbuffers.ByteBuffer(bytes)).subgraphs(0)!.operators(0)!;
    expect(op.customOptionsLength()).toBe(0);
  });

  it('chooses int8 operator versions only when int8 tensors are involved', () => {
    const m = convModel();
    expect(defaultOpVersion(m, m.operators[0])).toBe(3);
    const float: TfliteModel = { ...m, tensors: m.tensors.map((t) => ({ ...t, type: t.type === 'int8' ? 'float32' : t.type })) };
    expect(defaultOpVersion(float, float.operators[0])).toBe(1);
    expect(defaultOpVersion(m, { op: 'QUANTIZE', inputs: [0], outputs: [3] })).toBe(2);
  });

  it('refuses bytes that are not a TFLite flatbuffer', () => {
    expect(() => readTflite(new TextEncoder().encode('definitely not a model'))).toThrow(/TFL3/);
    expect(() => readTflite(new Uint8Array(3))).toThrow(/TFL3/);
  });
});
