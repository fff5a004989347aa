// A plain description of a TFLite model (one subgraph), written to and read from the flatbuffer
// through the classes flatc generated from schema/tflite.fbs.
import * as flatbuffers from 'flatbuffers';
import {
  ActivationFunctionType,
  AddOptionsT,
  BuiltinOperator,
  BuiltinOptions,
  ConcatenationOptionsT,
  Conv2DOptionsT,
  DepthwiseConv2DOptionsT,
  DequantizeOptionsT,
  FullyConnectedOptionsT,
  HardSwishOptionsT,
  LeakyReluOptionsT,
  Buffer as FbBuffer,
  Metadata,
  Model,
  MulOptionsT,
  OperatorCodeT,
  Operator,
  PadOptionsT,
  Padding,
  Pool2DOptionsT,
  QuantizationParameters,
  QuantizeOptionsT,
  ReducerOptionsT,
  ReshapeOptionsT,
  ResizeBilinearOptionsT,
  ResizeNearestNeighborOptionsT,
  SoftmaxOptionsT,
  SubGraph,
  SubOptionsT,
  Tensor,
  TensorType,
} from './generated/tflite_generated';

export { ActivationFunctionType, BuiltinOperator, Padding, TensorType };
export {
  AddOptionsT,
  ConcatenationOptionsT,
  Conv2DOptionsT,
  DepthwiseConv2DOptionsT,
  DequantizeOptionsT,
  FullyConnectedOptionsT,
  HardSwishOptionsT,
  LeakyReluOptionsT,
  MulOptionsT,
  PadOptionsT,
  Pool2DOptionsT,
  QuantizeOptionsT,
  ReducerOptionsT,
  ReshapeOptionsT,
  ResizeBilinearOptionsT,
  ResizeNearestNeighborOptionsT,
  SoftmaxOptionsT,
  SubOptionsT,
};

/** TFLite schema version written in Model.version. */
export const TFLITE_SCHEMA_VERSION = 3;
export const TFLITE_FILE_IDENTIFIER = 'TFL3';

export type TfliteTensorType = 'float32' | 'float16' | 'int32' | 'uint8' | 'int64' | 'bool' | 'int16' | 'int8';
export type TfliteOpName = keyof typeof BuiltinOperator;

const TYPE_TO_ENUM: Record<TfliteTensorType, TensorType> = {
  float32: TensorType.FLOAT32,
  float16: TensorType.FLOAT16,
  int32: TensorType.INT32,
  uint8: TensorType.UINT8,
  int64: TensorType.INT64,
  bool: TensorType.BOOL,
  int16: TensorType.INT16,
  int8: TensorType.INT8,
};
const ENUM_TO_TYPE = new Map<TensorType, TfliteTensorType>(Object.entries(TYPE_TO_ENUM).map(([k, v]) => [v, k as TfliteTensorType]));

/** real = scale × (q − zeroPoint); one entry per tensor, or one per slice along `quantizedDimension`. */
export interface TfliteQuantization {
  scale: number[];
  zeroPoint: number[];
  quantizedDimension?: number;
  min?: number[];
  max?: number[];
}

export interface TfliteTensor {
  name: string;
  shape: number[];
  type: TfliteTensorType;
  /** Constant contents (little-endian); absent for activations. */
  data?: Uint8Array;
  quantization?: TfliteQuantization;
}

export type TfliteOptions =
  | AddOptionsT
  | ConcatenationOptionsT
  | Conv2DOptionsT
  | DepthwiseConv2DOptionsT
  | DequantizeOptionsT
  | FullyConnectedOptionsT
  | HardSwishOptionsT
  | LeakyReluOptionsT
  | MulOptionsT
  | PadOptionsT
  | Pool2DOptionsT
  | QuantizeOptionsT
  | ReducerOptionsT
  | ReshapeOptionsT
  | ResizeBilinearOptionsT
  | ResizeNearestNeighborOptionsT
  | SoftmaxOptionsT
  | SubOptionsT;

export interface TfliteOperator {
  op: TfliteOpName;
  /** Tensor indices; −1 marks an omitted optional input. */
  inputs: number[];
  outputs: number[];
  options?: TfliteOptions;
  /** Operator version (the minimum runtime feature level it needs); defaults per op and types. */
  version?: number;
}

export interface TfliteModel {
  description?: string;
  name?: string;
  tensors: TfliteTensor[];
  operators: TfliteOperator[];
  inputs: number[];
  outputs: number[];
  /** Named metadata blobs (e.g. `min_runtime_version`, qforge's calibration record). */
  metadata?: Record<string, Uint8Array>;
}

const OPTION_KIND: [new () => TfliteOptions, BuiltinOptions][] = [
  [AddOptionsT, BuiltinOptions.AddOptions],
  [ConcatenationOptionsT, BuiltinOptions.ConcatenationOptions],
  [Conv2DOptionsT, BuiltinOptions.Conv2DOptions],
  [DepthwiseConv2DOptionsT, BuiltinOptions.DepthwiseConv2DOptions],
  [DequantizeOptionsT, BuiltinOptions.DequantizeOptions],
  [FullyConnectedOptionsT, BuiltinOptions.FullyConnectedOptions],
  [HardSwishOptionsT, BuiltinOptions.HardSwishOptions],
  [LeakyReluOptionsT, BuiltinOptions.LeakyReluOptions],
  [MulOptionsT, BuiltinOptions.MulOptions],
  [PadOptionsT, BuiltinOptions.PadOptions],
  [Pool2DOptionsT, BuiltinOptions.Pool2DOptions],
  [QuantizeOptionsT, BuiltinOptions.QuantizeOptions],
  [ReducerOptionsT, BuiltinOptions.ReducerOptions],
  [ReshapeOptionsT, BuiltinOptions.ReshapeOptions],
  [ResizeBilinearOptionsT, BuiltinOptions.ResizeBilinearOptions],
  [ResizeNearestNeighborOptionsT, BuiltinOptions.ResizeNearestNeighborOptions],
  [SoftmaxOptionsT, BuiltinOptions.SoftmaxOptions],
  [SubOptionsT, BuiltinOptions.SubOptions],
];

function optionsKind(o: TfliteOptions): BuiltinOptions {
  for (const [cls, kind] of OPTION_KIND) if (o instanceof cls) return kind;
  throw new Error(`unknown TFLite options object ${o.constructor.name}`);
}

// Versions the TFLite converter writes for int8 kernels (tensorflow/lite/tools/versioning);
// float ops stay at 1. A runtime refuses a version it does not know, so they must not be inflated.
const INT8_VERSIONS: Partial<Record<TfliteOpName, number>> = {
  ADD: 2,
  AVERAGE_POOL_2D: 2,
  CONCATENATION: 2,
  CONV_2D: 3,
  DEPTHWISE_CONV_2D: 3,
  DEQUANTIZE: 2,
  FULLY_CONNECTED: 4,
  LOGISTIC: 2,
  MAX_POOL_2D: 2,
  MUL: 2,
  PAD: 2,
  MEAN: 2,
  QUANTIZE: 2,
  RELU: 2,
  RELU6: 2,
  RESHAPE: 1,
  SOFTMAX: 2,
  SUB: 2,
  TANH: 2,
  LEAKY_RELU: 2,
  HARD_SWISH: 1,
  RESIZE_BILINEAR: 2,
  RESIZE_NEAREST_NEIGHBOR: 2,
};

/** The version the converter would give `op` on these tensors. */
export function defaultOpVersion(model: TfliteModel, op: TfliteOperator): number {
  const types = [...op.inputs, ...op.outputs].filter((i) => i >= 0).map((i) => model.tensors[i].type);
  if (op.op === 'QUANTIZE') return types[0] === 'float32' ? 1 : 2;
  return types.includes('int8') ? INT8_VERSIONS[op.op] ?? 1 : 1;
}

/**
 * One tensor, without the empty vectors the generated object API would write (every byte of
 * structure counts against small models' size).
 */
function packTensor(builder: flatbuffers.Builder, t: TfliteTensor, buffer: number): flatbuffers.Offset {
  const shape = Tensor.createShapeVector(builder, t.shape);
  const name = builder.createString(t.name);
  let quant = 0;
  const q = t.quantization;
  if (q) {
    const min = q.min?.length ? QuantizationParameters.createMinVector(builder, q.min) : 0;
    const max = q.max?.length ? QuantizationParameters.createMaxVector(builder, q.max) : 0;
    const scale = QuantizationParameters.createScaleVector(builder, q.scale);
    const zeroPoint = QuantizationParameters.createZeroPointVector(builder, q.zeroPoint.map((z) => BigInt(z)));
    QuantizationParameters.startQuantizationParameters(builder);
    if (min) QuantizationParameters.addMin(builder, min);
    if (max) QuantizationParameters.addMax(builder, max);
    QuantizationParameters.addScale(builder, scale);
    QuantizationParameters.addZeroPoint(builder, zeroPoint);
    if (q.quantizedDimension) QuantizationParameters.addQuantizedDimension(builder, q.quantizedDimension);
    quant = QuantizationParameters.endQuantizationParameters(builder);
  }
  Tensor.startTensor(builder);
  Tensor.addShape(builder, shape);
  Tensor.addType(builder, TYPE_TO_ENUM[t.type]);
  if (buffer) Tensor.addBuffer(builder, buffer);
  Tensor.addName(builder, name);
  if (quant) Tensor.addQuantization(builder, quant);
  return Tensor.endTensor(builder);
}

// Buffers hold weights that runtimes may map and read in place: align them like the schema's
// `force_align: 16` asks (flatc's TypeScript output ignores that attribute).
function alignedBytes(builder: flatbuffers.Builder, bytes: Uint8Array): flatbuffers.Offset {
  builder.startVector(1, bytes.length, 16);
  const b = builder as unknown as { space: number; bb: flatbuffers.ByteBuffer };
  b.bb.setPosition((b.space -= bytes.length));
  b.bb.bytes().set(bytes, b.space);
  return builder.endVector();
}

/** Serializes a model to TFLite flatbuffer bytes ("TFL3"). */
export function writeTflite(model: TfliteModel): Uint8Array {
  const size = model.tensors.reduce((a, t) => a + (t.data?.byteLength ?? 0), 0);
  const builder = new flatbuffers.Builder(Math.max(1024, size + 64 * 1024));

  // Buffer 0 is the empty sentinel; each constant tensor gets its own buffer.
  const bufferData: (Uint8Array | undefined)[] = [undefined];
  const tensorBuffers = model.tensors.map((t) => {
    if (!t.data) return 0;
    bufferData.push(t.data);
    return bufferData.length - 1;
  });
  const metadata = Object.entries(model.metadata ?? {}).map(([name, bytes]) => {
    bufferData.push(bytes);
    return { name, buffer: bufferData.length - 1 };
  });

  const codes: OperatorCodeT[] = [];
  const codeIndex = new Map<string, number>();
  const operators = model.operators.map((op) => {
    const code = BuiltinOperator[op.op];
    if (code === undefined) throw new Error(`unknown TFLite operator ${op.op}`);
    const version = op.version ?? defaultOpVersion(model, op);
    const key = `${op.op}/${version}`;
    if (!codeIndex.has(key)) {
      codeIndex.set(key, codes.length);
      // Codes below 127 also go in the deprecated byte field, which older runtimes read.
      codes.push(new OperatorCodeT(Math.min(code, 127), null, version, code));
    }
    return { op, opcodeIndex: codeIndex.get(key)! };
  });

  // Operators and the subgraph are packed by hand: the generated object API always writes
  // `custom_options`, and runtimes reject builtin operators that carry custom options.
  const operatorOffs = operators.map(({ op, opcodeIndex }) => {
    const inputs = Operator.createInputsVector(builder, op.inputs);
    const outputs = Operator.createOutputsVector(builder, op.outputs);
    const options = op.options ? op.options.pack(builder) : 0;
    Operator.startOperator(builder);
    Operator.addOpcodeIndex(builder, opcodeIndex);
    Operator.addInputs(builder, inputs);
    Operator.addOutputs(builder, outputs);
    if (op.options) {
      Operator.addBuiltinOptionsType(builder, optionsKind(op.options));
      Operator.addBuiltinOptions(builder, options);
    }
    return Operator.endOperator(builder);
  });
  const tensorsOff = SubGraph.createTensorsVector(builder, model.tensors.map((t, i) => packTensor(builder, t, tensorBuffers[i])));
  const sgInputs = SubGraph.createInputsVector(builder, model.inputs);
  const sgOutputs = SubGraph.createOutputsVector(builder, model.outputs);
  const sgOperators = SubGraph.createOperatorsVector(builder, operatorOffs);
  const sgName = builder.createString(model.name ?? 'main');
  const subgraphOff = SubGraph.createSubGraph(builder, tensorsOff, sgInputs, sgOutputs, sgOperators, sgName);

  const codesOff = Model.createOperatorCodesVector(builder, builder.createObjectOffsetList(codes));
  const subgraphsOff = Model.createSubgraphsVector(builder, [subgraphOff]);
  const descOff = builder.createString(model.description ?? 'qforge');
  const bufferOffs = bufferData.map((bytes) => {
    const data = bytes && bytes.byteLength ? alignedBytes(builder, bytes) : 0;
    FbBuffer.startBuffer(builder);
    if (data) FbBuffer.addData(builder, data);
    return FbBuffer.endBuffer(builder);
  });
  const buffersOff = Model.createBuffersVector(builder, bufferOffs);
  const metaOffs = metadata.map((m) => Metadata.createMetadata(builder, builder.createString(m.name), m.buffer));
  const metaOff = metaOffs.length ? Model.createMetadataVector(builder, metaOffs) : 0;
  Model.startModel(builder);
  Model.addVersion(builder, TFLITE_SCHEMA_VERSION);
  Model.addOperatorCodes(builder, codesOff);
  Model.addSubgraphs(builder, subgraphsOff);
  Model.addDescription(builder, descOff);
  Model.addBuffers(builder, buffersOff);
  if (metaOff) Model.addMetadata(builder, metaOff);
  Model.finishModelBuffer(builder, Model.endModel(builder));
  return builder.asUint8Array();
}

/** A read operator, with its options unpacked into the generated object classes. */
export interface TfliteReadOperator extends TfliteOperator {
  version: number;
}

/** Parses TFLite flatbuffer bytes (first subgraph). Throws on a missing "TFL3" identifier. */
export function readTflite(bytes: Uint8Array): TfliteModel & { operators: TfliteReadOperator[]; version: number } {
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (bytes.byteLength < 8 || !Model.bufferHasIdentifier(bb)) throw new Error('not a TFLite flatbuffer (file identifier "TFL3" missing)');
  // Only the subgraph and operator codes are unpacked: buffers stay views into `bytes`.
  const root = Model.getRootAsModel(bb);
  const sg = root.subgraphsLength() ? root.subgraphs(0)!.unpack() : undefined;
  if (!sg) throw new Error('TFLite model has no subgraph');
  const codes = Array.from({ length: root.operatorCodesLength() }, (_, i) => root.operatorCodes(i)!.unpack());
  const bufferBytes = (i: number): Uint8Array | undefined => {
    const arr = root.buffers(i)?.dataArray();
    return arr && arr.length ? arr : undefined;
  };
  const tensors: TfliteTensor[] = sg.tensors.map((t) => {
    const q = t.quantization;
    const tensor: TfliteTensor = { name: String(t.name ?? ''), shape: t.shape, type: ENUM_TO_TYPE.get(t.type) ?? 'float32' };
    const data = t.buffer ? bufferBytes(t.buffer) : undefined;
    if (data) tensor.data = data;
    if (q && q.scale.length) tensor.quantization = { scale: q.scale, zeroPoint: q.zeroPoint.map((z) => Number(z)), quantizedDimension: q.quantizedDimension, min: q.min, max: q.max };
    return tensor;
  });
  const metadata: Record<string, Uint8Array> = {};
  for (let i = 0; i < root.metadataLength(); i++) {
    const md = root.metadata(i)!;
    const d = bufferBytes(md.buffer());
    if (d) metadata[String(md.name())] = d;
  }
  return {
    version: root.version(),
    description: root.description() ?? undefined,
    name: sg.name ? String(sg.name) : undefined,
    tensors,
    operators: sg.operators.map((o) => {
      const code = codes[o.opcodeIndex];
      const builtin = Math.max(code.builtinCode, code.deprecatedBuiltinCode);
      const op: TfliteReadOperator = { op: BuiltinOperator[builtin] as TfliteOpName, inputs: o.inputs, outputs: o.outputs, version: code.version };
      if (o.builtinOptions) op.options = o.builtinOptions as TfliteOptions;
      return op;
    }),
    inputs: sg.inputs,
    outputs: sg.outputs,
    metadata,
  };
}
