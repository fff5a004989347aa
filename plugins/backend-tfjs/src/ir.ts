// The float graph qforge converts to TFLite: TFLite-shaped operators (BatchNorm folded, ReLU/ReLU6
// fused) over NHWC tensors, with weights in TensorFlow.js layout. The same graph runs in
// TensorFlow.js for calibration, so the ranges belong to exactly the tensors the .tflite file has,
// and its outputs are checked against the original model before anything is written.
import type * as TF from '@tensorflow/tfjs';

export type IrActivation = 'NONE' | 'RELU' | 'RELU6';
export type IrPadding = 'SAME' | 'VALID';

interface IrBase {
  /** The Keras layer (or layers, joined by "+") this operator came from. */
  layer: string;
  inputs: string[];
  output: string;
}

export interface IrConv extends IrBase {
  kind: 'conv2d' | 'depthwise';
  /** conv2d: [kh, kw, in, out]; depthwise: [kh, kw, in, multiplier] (TensorFlow.js layout). */
  kernel: Float32Array;
  kernelShape: [number, number, number, number];
  bias: Float32Array;
  strides: [number, number];
  dilation: [number, number];
  padding: IrPadding;
  activation: IrActivation;
}

export interface IrDense extends IrBase {
  kind: 'dense';
  /** [in, out] (TensorFlow.js layout). */
  kernel: Float32Array;
  kernelShape: [number, number];
  bias: Float32Array;
  activation: IrActivation;
}

export interface IrBinary extends IrBase {
  kind: 'add' | 'mul' | 'sub';
  activation: IrActivation;
}

export interface IrPool extends IrBase {
  kind: 'maxpool' | 'avgpool';
  pool: [number, number];
  strides: [number, number];
  padding: IrPadding;
}

export interface IrBatchNorm extends IrBase {
  kind: 'batchnorm';
  /** y = x·scale + shift per channel (last axis). */
  scale: Float32Array;
  shift: Float32Array;
}

export type IrOp =
  | IrConv
  | IrDense
  | IrBinary
  | IrPool
  | IrBatchNorm
  | (IrBase & { kind: 'concat'; axis: number })
  /** Mean over the spatial axes (1, 2) of NHWC; keepDims keeps them as size 1. */
  | (IrBase & { kind: 'mean'; keepDims?: boolean })
  | (IrBase & { kind: 'reshape'; shape: number[] })
  | (IrBase & { kind: 'pad'; paddings: [number, number][] })
  | (IrBase & { kind: 'relu' | 'relu6' | 'logistic' | 'tanh' | 'softmax' | 'hardswish' })
  | (IrBase & { kind: 'leakyrelu'; alpha: number });

export type IrOpKind = IrOp['kind'];

export interface IrGraph {
  inputs: string[];
  outputs: string[];
  ops: IrOp[];
  /** Every tensor's shape, batch 1. */
  shapes: Map<string, number[]>;
  /** Graph changes made while lowering (folds, fusions), for the report. */
  changes: { kind: string; node: string; detail: string }[];
}

function consumers(g: IrGraph): Map<string, IrOp[]> {
  const m = new Map<string, IrOp[]>();
  for (const op of g.ops) for (const i of op.inputs) m.set(i, [...(m.get(i) ?? []), op]);
  return m;
}

/** The single operator reading `tensor`, when there is exactly one and the tensor is not a graph output. */
function soleConsumer(g: IrGraph, uses: Map<string, IrOp[]>, tensor: string): IrOp | undefined {
  const c = uses.get(tensor) ?? [];
  return c.length === 1 && !g.outputs.includes(tensor) ? c[0] : undefined;
}

function replaceOp(g: IrGraph, remove: IrOp, keep: IrOp): void {
  g.shapes.delete(keep.output); // the fused-away intermediate tensor no longer exists
  keep.output = remove.output;
  keep.layer = `${keep.layer}+${remove.layer}`;
  g.ops.splice(g.ops.indexOf(remove), 1);
}

/**
 * Folds BatchNorm into the convolution or dense layer before it and fuses ReLU/ReLU6 into the
 * operator before them, as TFLite kernels apply them. What cannot fold stays as its own op.
 */
export function fuseIr(g: IrGraph): IrGraph {
  let changed = true;
  while (changed) {
    changed = false;
    const uses = consumers(g);
    for (const op of g.ops) {
      if (op.kind === 'batchnorm') {
        const prod = g.ops.find((p) => p.output === op.inputs[0]);
        if (prod && (prod.kind === 'conv2d' || prod.kind === 'depthwise' || prod.kind === 'dense') && prod.activation === 'NONE' && soleConsumer(g, uses, prod.output) === op) {
          foldBatchNorm(prod, op);
          g.changes.push({ kind: 'fold-batchnorm', node: op.layer, detail: `BatchNorm ${op.layer} folded into ${prod.layer}` });
          replaceOp(g, op, prod);
          changed = true;
          break;
        }
      }
      if (op.kind === 'relu' || op.kind === 'relu6') {
        const prod = g.ops.find((p) => p.output === op.inputs[0]);
        if (prod && 'activation' in prod && prod.activation === 'NONE' && soleConsumer(g, uses, prod.output) === op) {
          prod.activation = op.kind === 'relu' ? 'RELU' : 'RELU6';
          g.changes.push({ kind: 'fuse-activation', node: op.layer, detail: `${op.kind} ${op.layer} fused into ${prod.layer}` });
          replaceOp(g, op, prod);
          changed = true;
          break;
        }
      }
    }
  }
  // BatchNorm that could not fold becomes a 1×1 depthwise convolution: per-channel scale and
  // shift in one int8 kernel with per-channel weights.
  for (const [k, op] of g.ops.entries()) {
    if (op.kind !== 'batchnorm') continue;
    const c = op.scale.length;
    const dw: IrConv = {
      kind: 'depthwise',
      layer: op.layer,
      inputs: op.inputs,
      output: op.output,
      kernel: op.scale,
      kernelShape: [1, 1, c, 1],
      bias: op.shift,
      strides: [1, 1],
      dilation: [1, 1],
      padding: 'VALID',
      activation: 'NONE',
    };
    g.ops[k] = dw;
    g.changes.push({ kind: 'batchnorm-as-depthwise', node: op.layer, detail: `BatchNorm ${op.layer} has no foldable producer: written as a 1×1 depthwise convolution` });
  }
  return g;
}

function foldBatchNorm(prod: IrConv | IrDense, bn: IrBatchNorm): void {
  const out = prod.kind === 'depthwise' ? prod.kernelShape[2] * prod.kernelShape[3] : prod.kernelShape[prod.kernelShape.length - 1];
  if (bn.scale.length !== out) throw new Error(`BatchNorm ${bn.layer} has ${bn.scale.length} channels, ${prod.layer} ${out}`);
  // Output channel is the fastest-varying index in every layout here (depthwise: c·mult + m).
  for (let i = 0; i < prod.kernel.length; i++) prod.kernel[i] *= bn.scale[i % out];
  for (let c = 0; c < out; c++) prod.bias[c] = prod.bias[c] * bn.scale[c] + bn.shift[c];
}

/** Compiled TensorFlow.js execution of an IR graph; weights are uploaded once. */
export class IrExecutor {
  private readonly weights = new Map<IrOp, { kernel?: TF.Tensor; bias?: TF.Tensor }>();

  constructor(
    private readonly tf: typeof TF,
    readonly graph: IrGraph,
  ) {
    for (const op of graph.ops) {
      if (op.kind === 'conv2d' || op.kind === 'depthwise' || op.kind === 'dense') {
        this.weights.set(op, { kernel: tf.tensor(op.kernel, op.kernelShape), bias: tf.tensor1d(op.bias) });
      }
    }
  }

  /**
   * Runs the graph on NHWC inputs; `visit` sees every tensor (inputs included) as it is produced,
   * or only those in `want` (others are not read back from the engine). Returns the graph outputs.
   */
  run(inputs: Record<string, Float32Array>, visit?: (id: string, data: Float32Array) => void, want?: ReadonlySet<string>): Record<string, Float32Array> {
    const tf = this.tf;
    return tf.tidy(() => {
      const env = new Map<string, TF.Tensor>();
      for (const id of this.graph.inputs) {
        const t = tf.tensor(inputs[id], this.graph.shapes.get(id)!);
        env.set(id, t);
        if (!want || want.has(id)) visit?.(id, inputs[id]);
      }
      for (const op of this.graph.ops) {
        const xs = op.inputs.map((i) => env.get(i)!);
        const y = this.exec(op, xs);
        env.set(op.output, y);
        if (visit && (!want || want.has(op.output))) visit(op.output, y.dataSync() as Float32Array);
      }
      return Object.fromEntries(this.graph.outputs.map((o) => [o, env.get(o)!.dataSync() as Float32Array]));
    });
  }

  private act(y: TF.Tensor, a: IrActivation): TF.Tensor {
    return a === 'RELU' ? this.tf.relu(y) : a === 'RELU6' ? this.tf.relu6(y) : y;
  }

  private exec(op: IrOp, xs: TF.Tensor[]): TF.Tensor {
    const tf = this.tf;
    const pad = (p: IrPadding) => (p === 'SAME' ? 'same' : 'valid');
    switch (op.kind) {
      case 'conv2d': {
        const w = this.weights.get(op)!;
        return this.act(tf.add(tf.conv2d(xs[0] as TF.Tensor4D, w.kernel as TF.Tensor4D, op.strides, pad(op.padding), 'NHWC', op.dilation), w.bias!), op.activation);
      }
      case 'depthwise': {
        const w = this.weights.get(op)!;
        return this.act(tf.add(tf.depthwiseConv2d(xs[0] as TF.Tensor4D, w.kernel as TF.Tensor4D, op.strides, pad(op.padding), 'NHWC', op.dilation), w.bias!), op.activation);
      }
      case 'dense': {
        const w = this.weights.get(op)!;
        return this.act(tf.add(tf.matMul(xs[0] as TF.Tensor2D, w.kernel as TF.Tensor2D), w.bias!), op.activation);
      }
      case 'add':
        return this.act(tf.add(xs[0], xs[1]), op.activation);
      case 'mul':
        return this.act(tf.mul(xs[0], xs[1]), op.activation);
      case 'sub':
        return this.act(tf.sub(xs[0], xs[1]), op.activation);
      case 'concat':
        return tf.concat(xs, op.axis);
      case 'maxpool':
        return tf.maxPool(xs[0] as TF.Tensor4D, op.pool, op.strides, pad(op.padding));
      case 'avgpool':
        return tf.avgPool(xs[0] as TF.Tensor4D, op.pool, op.strides, pad(op.padding));
      case 'mean':
        return tf.mean(xs[0], [1, 2], op.keepDims);
      case 'reshape':
        return tf.reshape(xs[0], op.shape);
      case 'pad':
        return tf.pad(xs[0], op.paddings);
      case 'relu':
        return tf.relu(xs[0]);
      case 'relu6':
        return tf.relu6(xs[0]);
      case 'logistic':
        return tf.sigmoid(xs[0]);
      case 'tanh':
        return tf.tanh(xs[0]);
      case 'softmax':
        return tf.softmax(xs[0]);
      case 'hardswish':
        return tf.div(tf.mul(xs[0], tf.relu6(tf.add(xs[0], 3))), 6);
      case 'leakyrelu':
        return tf.leakyRelu(xs[0], op.alpha);
      case 'batchnorm':
        return tf.add(tf.mul(xs[0], tf.tensor1d(op.scale)), tf.tensor1d(op.shift));
    }
  }

  dispose(): void {
    for (const w of this.weights.values()) {
      w.kernel?.dispose();
      w.bias?.dispose();
    }
  }
}
