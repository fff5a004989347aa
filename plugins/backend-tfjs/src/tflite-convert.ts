// IR graph + calibrated ranges → a full-integer TFLite model, following the TFLite 8-bit
// quantization specification: int8 weights symmetric per output channel (zero point 0, ±127),
// int8 activations asymmetric per tensor, int32 bias with scale s_in·s_w, fixed output parameters
// for Softmax/Logistic/Tanh, and matched parameters where the kernels require them. The same graph
// is also written as a float32 .tflite (same operators), the fp32 reference in the same interpreter.
import {
  quantizeBias,
  quantizeWeights,
  quantizeWithScales,
  scaleFromRange,
  widenScalesForBias,
  type NodeDecision,
  type QuantParams,
} from '@qforge/core';
import {
  ActivationFunctionType,
  AddOptionsT,
  ConcatenationOptionsT,
  Conv2DOptionsT,
  DepthwiseConv2DOptionsT,
  FullyConnectedOptionsT,
  LeakyReluOptionsT,
  MulOptionsT,
  Padding,
  Pool2DOptionsT,
  ReducerOptionsT,
  ReshapeOptionsT,
  SoftmaxOptionsT,
  SubOptionsT,
  type TfliteModel,
  type TfliteOperator,
  type TfliteTensor,
} from '@qforge/tflite';
import type { IrConv, IrDense, IrGraph, IrOp } from './ir';

export type TfliteIoType = 'float32' | 'int8';

export interface TfliteConvertOptions {
  /** Model inputs/outputs stay float (QUANTIZE/DEQUANTIZE at the edges) or are int8. */
  ioType: TfliteIoType;
  /** Per-output-channel weight scales (the spec's choice); per-tensor when false. */
  perChannel: boolean;
  description?: string;
  metadata?: Record<string, Uint8Array>;
  /**
   * Per-channel means of weighted layers' inputs on calibration data: when given, each layer's
   * bias absorbs the mean output shift its int8 weights cause, ε·E[x] (bias correction).
   */
  inputMeans?: Map<string, Float64Array>;
}

export interface TfliteConversion {
  model: TfliteModel;
  decisions: NodeDecision[];
  /** Activation parameters by IR tensor id. */
  params: Map<string, QuantParams>;
  changes: { kind: string; node: string; detail: string }[];
}

const INT8 = { type: 'int8' as const };
const WEIGHTS = { type: 'int8' as const, symmetric: true };

/** Ops whose int8 kernels need the output to carry the input's scale and zero point. */
const PASS_THROUGH = new Set<IrOp['kind']>(['maxpool', 'avgpool', 'reshape', 'pad']);
/** Fixed output parameters from the specification. */
const FIXED: Partial<Record<IrOp['kind'], QuantParams>> = {
  softmax: { scale: 1 / 256, zeroPoint: -128 },
  logistic: { scale: 1 / 256, zeroPoint: -128 },
  tanh: { scale: 1 / 128, zeroPoint: 0 },
};

const ACT: Record<string, ActivationFunctionType> = { NONE: ActivationFunctionType.NONE, RELU: ActivationFunctionType.RELU, RELU6: ActivationFunctionType.RELU6 };
const PAD = { SAME: Padding.SAME, VALID: Padding.VALID };

const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** [kh, kw, in, out] → [out, kh, kw, in]: TFLite's OHWI filter layout. */
function toOhwi(k: Float32Array, [kh, kw, ci, co]: number[]): Float32Array {
  const out = new Float32Array(k.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < ci; i++)
        for (let o = 0; o < co; o++) out[((o * kh + h) * kw + w) * ci + i] = k[((h * kw + w) * ci + i) * co + o];
  return out;
}

/** [in, out] → [out, in]. */
function transpose2d(k: Float32Array, [r, c]: number[]): Float32Array {
  const out = new Float32Array(k.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = k[i * c + j];
  return out;
}

/** A weighted op's kernel in TFLite layout, with the axis its output channels run along. */
function tfliteFilter(op: IrConv | IrDense): { filter: Float32Array; shape: number[]; axis: number } {
  if (op.kind === 'conv2d') {
    const [kh, kw, ci, co] = op.kernelShape;
    return { filter: toOhwi(op.kernel, op.kernelShape), shape: [co, kh, kw, ci], axis: 0 };
  }
  if (op.kind === 'depthwise') {
    // [kh, kw, in, mult] is already [1, kh, kw, in·mult] in memory: output channel c·mult + m.
    const [kh, kw, ci, m] = op.kernelShape;
    return { filter: op.kernel, shape: [1, kh, kw, ci * m], axis: 3 };
  }
  return { filter: transpose2d(op.kernel, op.kernelShape), shape: [op.kernelShape[1], op.kernelShape[0]], axis: 0 };
}

const OP_NAME: Record<'conv2d' | 'depthwise' | 'dense', 'CONV_2D' | 'DEPTHWISE_CONV_2D' | 'FULLY_CONNECTED'> = { conv2d: 'CONV_2D', depthwise: 'DEPTHWISE_CONV_2D', dense: 'FULLY_CONNECTED' };

/**
 * The TFLite operator of one IR op over tensors the caller made (int8 or float32): the op and its
 * options do not depend on the numeric type, so both models are written by this one function.
 */
function tfliteOperator(op: IrOp, ins: number[], out: number, t: { weights: (op: IrConv | IrDense) => number[]; int32Const: (name: string, values: number[], shape?: number[]) => number }): TfliteOperator {
  const o = (x: Omit<TfliteOperator, 'outputs'>): TfliteOperator => ({ ...x, outputs: [out] });
  switch (op.kind) {
    case 'conv2d':
      return o({ op: 'CONV_2D', inputs: [ins[0], ...t.weights(op)], options: new Conv2DOptionsT(PAD[op.padding], op.strides[1], op.strides[0], ACT[op.activation], op.dilation[1], op.dilation[0]) });
    case 'depthwise':
      return o({ op: 'DEPTHWISE_CONV_2D', inputs: [ins[0], ...t.weights(op)], options: new DepthwiseConv2DOptionsT(PAD[op.padding], op.strides[1], op.strides[0], op.kernelShape[3], ACT[op.activation], op.dilation[1], op.dilation[0]) });
    case 'dense':
      return o({ op: 'FULLY_CONNECTED', inputs: [ins[0], ...t.weights(op)], options: new FullyConnectedOptionsT(ACT[op.activation]) });
    case 'add':
      return o({ op: 'ADD', inputs: ins, options: new AddOptionsT(ACT[op.activation]) });
    case 'mul':
      return o({ op: 'MUL', inputs: ins, options: new MulOptionsT(ACT[op.activation]) });
    case 'sub':
      return o({ op: 'SUB', inputs: ins, options: new SubOptionsT(ACT[op.activation]) });
    case 'concat':
      return o({ op: 'CONCATENATION', inputs: ins, options: new ConcatenationOptionsT(op.axis, ActivationFunctionType.NONE) });
    case 'maxpool':
    case 'avgpool':
      return o({ op: op.kind === 'maxpool' ? 'MAX_POOL_2D' : 'AVERAGE_POOL_2D', inputs: ins, options: new Pool2DOptionsT(PAD[op.padding], op.strides[1], op.strides[0], op.pool[1], op.pool[0], ActivationFunctionType.NONE) });
    case 'mean':
      return o({ op: 'MEAN', inputs: [ins[0], t.int32Const(`${op.layer}/axes`, [1, 2])], options: new ReducerOptionsT(op.keepDims ?? false) });
    case 'reshape':
      return o({ op: 'RESHAPE', inputs: [ins[0], t.int32Const(`${op.layer}/shape`, op.shape)], options: new ReshapeOptionsT(op.shape) });
    case 'pad':
      return o({ op: 'PAD', inputs: [ins[0], t.int32Const(`${op.layer}/paddings`, op.paddings.flat(), [op.paddings.length, 2])] });
    case 'relu':
      return o({ op: 'RELU', inputs: ins });
    case 'relu6':
      return o({ op: 'RELU6', inputs: ins });
    case 'logistic':
      return o({ op: 'LOGISTIC', inputs: ins });
    case 'tanh':
      return o({ op: 'TANH', inputs: ins });
    case 'softmax':
      return o({ op: 'SOFTMAX', inputs: ins, options: new SoftmaxOptionsT(1) });
    case 'hardswish':
      return o({ op: 'HARD_SWISH', inputs: ins });
    case 'leakyrelu':
      return o({ op: 'LEAKY_RELU', inputs: ins, options: new LeakyReluOptionsT(op.alpha) });
    case 'batchnorm':
      throw new Error(`BatchNorm ${op.layer} reached the writer unfolded`);
  }
}

/**
 * The int8 parameters of every activation tensor, as the writer stores them: the input's and each
 * op's own range, the input's parameters through pass-through ops, fixed ones for Softmax/Logistic/
 * Tanh, one set for a concatenation and its inputs (`requant` names inputs that get a QUANTIZE in
 * front). Quantization-aware training uses the same function, so its twin is the file.
 */
export function activationParams(g: IrGraph, ranges: Map<string, [number, number]>): { params: Map<string, QuantParams>; requant: Map<IrOp, Map<string, string>> } {
  const params = new Map<string, QuantParams>();
  const rangeOf = (id: string): [number, number] => {
    const r = ranges.get(id);
    if (!r) throw new Error(`no calibrated range for tensor ${id}`);
    return r;
  };
  for (const i of g.inputs) params.set(i, scaleFromRange(...rangeOf(i), INT8));

  // Concatenation inputs and output share one parameter set; inputs that already carry other
  // parameters (another consumer, a fixed range) are requantized in front of the op.
  const requant = new Map<IrOp, Map<string, string>>();
  for (const op of g.ops) {
    if (PASS_THROUGH.has(op.kind)) params.set(op.output, params.get(op.inputs[0])!);
    else if (FIXED[op.kind]) params.set(op.output, FIXED[op.kind]!);
    else if (op.kind === 'concat') {
      let [lo, hi] = rangeOf(op.output);
      for (const i of op.inputs) {
        const [a, b] = rangeOf(i);
        lo = Math.min(lo, a);
        hi = Math.max(hi, b);
      }
      const p = scaleFromRange(lo, hi, INT8);
      params.set(op.output, p);
      const map = new Map<string, string>();
      for (const i of op.inputs) {
        const q = params.get(i)!;
        if (q.scale !== p.scale || q.zeroPoint !== p.zeroPoint) map.set(i, `${i}/requant:${op.layer}`);
      }
      if (map.size) requant.set(op, map);
    } else params.set(op.output, scaleFromRange(...rangeOf(op.output), INT8));
  }
  return { params, requant };
}

export function convertToTflite(g: IrGraph, ranges: Map<string, [number, number]>, options: TfliteConvertOptions): TfliteConversion {
  const changes: TfliteConversion['changes'] = [];
  const { params, requant } = activationParams(g, ranges);

  const tensors: TfliteTensor[] = [];
  const index = new Map<string, number>();
  const addTensor = (t: TfliteTensor) => {
    tensors.push(t);
    return tensors.length - 1;
  };
  const activation = (id: string, shape = g.shapes.get(id)!) => {
    if (!index.has(id)) {
      const p = params.get(id)!;
      index.set(id, addTensor({ name: id, shape, type: 'int8', quantization: { scale: [p.scale], zeroPoint: [p.zeroPoint] } }));
    }
    return index.get(id)!;
  };
  const int32Const = (name: string, values: number[], shape = [values.length]) => addTensor({ name, shape, type: 'int32', data: bytes(Int32Array.from(values)) });

  const operators: TfliteOperator[] = [];
  const decisions: NodeDecision[] = [];
  const modelInputs: number[] = [];
  const modelOutputs: number[] = [];

  for (const id of g.inputs) {
    if (options.ioType === 'float32') {
      const f = addTensor({ name: `${id}/float`, shape: g.shapes.get(id)!, type: 'float32' });
      operators.push({ op: 'QUANTIZE', inputs: [f], outputs: [activation(id)] });
      modelInputs.push(f);
    } else modelInputs.push(activation(id));
  }

  const weighted = (op: IrConv | IrDense) => {
    const inScale = params.get(op.inputs[0])!.scale;
    const { filter, shape, axis } = tfliteFilter(op);
    // Fully connected weights are per tensor, as the TFLite converter writes them: every int8
    // FULLY_CONNECTED kernel (micro runtimes included) takes them, and the file stays small.
    const perChannelAxis = options.perChannel && op.kind !== 'dense' ? axis : undefined;
    const values = quantizeWeights(filter, shape, perChannelAxis, WEIGHTS);
    // Channels with tiny weights but a large bias would overflow int32: widen their scale.
    const widened = widenScalesForBias(values.scales, op.bias, inScale);
    if (widened.length) {
      values.values = perChannelAxis === undefined
        ? quantizeWithScales(filter, [1, filter.length], 0, values.scales, [0], WEIGHTS)
        : quantizeWithScales(filter, shape, axis, values.scales, new Int32Array(values.scales.length), WEIGHTS);
      changes.push({ kind: 'widen-weight-scale', node: op.layer, detail: `${widened.length} channel(s) widened so the int32 bias fits` });
    }
    const w = addTensor({ name: `${op.layer}/weights`, shape, type: 'int8', data: bytes(values.values), quantization: { scale: Array.from(values.scales), zeroPoint: Array.from(values.scales, () => 0), quantizedDimension: perChannelAxis ?? 0 } });
    const bias = options.inputMeans ? correctedBias(op, filter, shape, values, options.inputMeans.get(op.inputs[0])) : op.bias;
    if (bias !== op.bias) corrected++;
    const b = quantizeBias(bias, inScale, values.scales);
    const biasTensor = addTensor({ name: `${op.layer}/bias`, shape: [op.bias.length], type: 'int32', data: bytes(b.values), quantization: { scale: values.scales.length === 1 ? [b.scales[0]] : Array.from(b.scales), zeroPoint: values.scales.length === 1 ? [0] : Array.from(b.scales, () => 0), quantizedDimension: 0 } });
    decisions.push({ node: op.layer, opType: OP_NAME[op.kind], quantized: true, weightType: 'int8', activationType: 'int8', granularity: perChannelAxis !== undefined ? 'per-channel' : 'per-tensor' });
    return [w, biasTensor];
  };
  let corrected = 0;

  for (const op of g.ops) {
    let ins = op.inputs.map((i) => activation(i));
    const out = activation(op.output);
    const rq = requant.get(op);
    if (rq) {
      ins = op.inputs.map((i, k) => {
        const name = rq.get(i);
        if (!name) return ins[k];
        const p = params.get(op.output)!;
        const t = addTensor({ name, shape: g.shapes.get(i)!, type: 'int8', quantization: { scale: [p.scale], zeroPoint: [p.zeroPoint] } });
        operators.push({ op: 'QUANTIZE', inputs: [ins[k]], outputs: [t] });
        changes.push({ kind: 'requantize', node: op.layer, detail: `${i} requantized to the concatenation's parameters` });
        return t;
      });
    }
    const written = tfliteOperator(op, ins, out, { weights: weighted, int32Const });
    operators.push(written);
    if (!['conv2d', 'depthwise', 'dense'].includes(op.kind)) decisions.push({ node: op.layer, opType: written.op, quantized: true, activationType: 'int8' });
  }

  if (corrected) changes.push({ kind: 'bias-correction', node: '*', detail: `${corrected} layer bias(es) corrected for the mean shift of their int8 weights` });
  for (const id of g.outputs) {
    if (options.ioType === 'float32') {
      const f = addTensor({ name: `${id}/float`, shape: g.shapes.get(id)!, type: 'float32' });
      operators.push({ op: 'DEQUANTIZE', inputs: [activation(id)], outputs: [f] });
      modelOutputs.push(f);
    } else modelOutputs.push(activation(id));
  }
  return {
    model: { description: options.description, tensors, operators, inputs: modelInputs, outputs: modelOutputs, metadata: options.metadata },
    decisions,
    params,
    changes,
  };
}

export interface TfliteFloatConversion {
  model: TfliteModel;
  /** Every operator, none quantized. */
  decisions: NodeDecision[];
}

/**
 * The same graph as `convertToTflite` writes, in float32: the same operators in the same order,
 * float32 weights (TFLite layout), biases and activations, no quantization parameters, float
 * inputs and outputs. Timing it against the int8 file in one interpreter measures what int8 does
 * there, without a change of runtime.
 */
export function convertToFloatTflite(g: IrGraph, options: { description?: string; metadata?: Record<string, Uint8Array> } = {}): TfliteFloatConversion {
  const tensors: TfliteTensor[] = [];
  const index = new Map<string, number>();
  const addTensor = (t: TfliteTensor) => {
    tensors.push(t);
    return tensors.length - 1;
  };
  const activation = (id: string) => {
    if (!index.has(id)) index.set(id, addTensor({ name: id, shape: g.shapes.get(id)!, type: 'float32' }));
    return index.get(id)!;
  };
  const int32Const = (name: string, values: number[], shape = [values.length]) => addTensor({ name, shape, type: 'int32', data: bytes(Int32Array.from(values)) });
  const weights = (op: IrConv | IrDense) => {
    const { filter, shape } = tfliteFilter(op);
    return [addTensor({ name: `${op.layer}/weights`, shape, type: 'float32', data: bytes(filter) }), addTensor({ name: `${op.layer}/bias`, shape: [op.bias.length], type: 'float32', data: bytes(Float32Array.from(op.bias)) })];
  };
  const inputs = g.inputs.map((id) => activation(id));
  const operators: TfliteOperator[] = [];
  const decisions: NodeDecision[] = [];
  for (const op of g.ops) {
    const written = tfliteOperator(op, op.inputs.map((i) => activation(i)), activation(op.output), { weights, int32Const });
    operators.push(written);
    decisions.push({ node: op.layer, opType: written.op, quantized: false, reason: 'fp32 reference model' });
  }
  return {
    model: { description: options.description, tensors, operators, inputs, outputs: g.outputs.map((id) => activation(id)), metadata: options.metadata },
    decisions,
  };
}

/**
 * bias − ε·E[x] per output channel, with ε = dequantized − float weights in TFLite layout
 * (conv OHWI, depthwise [1,kh,kw,C·M], fully connected [out, in]).
 */
function correctedBias(op: IrConv | IrDense, filter: Float32Array, shape: number[], q: { values: ArrayLike<number>; scales: Float32Array }, mean: Float64Array | undefined): Float32Array {
  if (!mean) return op.bias;
  const out = Float32Array.from(op.bias);
  const n = filter.length;
  const channels = op.bias.length;
  for (let i = 0; i < n; i++) {
    let o: number;
    let inCh: number;
    if (op.kind === 'conv2d') {
      o = Math.floor(i / (n / channels));
      inCh = i % shape[3];
    } else if (op.kind === 'depthwise') {
      o = i % channels;
      inCh = Math.floor(o / op.kernelShape[3]);
    } else {
      o = Math.floor(i / shape[1]);
      inCh = i % shape[1];
    }
    const eps = q.values[i] * q.scales[q.scales.length === 1 ? 0 : o] - filter[i];
    out[o] -= eps * mean[inCh];
  }
  return out;
}
