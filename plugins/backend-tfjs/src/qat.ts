// Quantization-aware training: the lowered IR graph (BatchNorm folded, ReLU/ReLU6 fused) run as a
// fake-quantized TensorFlow.js model with exactly the parameters the .tflite writer uses, fine-tuned
// with straight-through gradients while activation ranges are tracked by a moving average.
import { errInvalidOption, throwIfAborted, type Dataset, type QatOptions, type QuantParams, type RunContext } from '@qforge/core';
import type * as TF from '@tensorflow/tfjs';
import type { IrActivation, IrConv, IrDense, IrGraph, IrOp, IrPadding } from './ir';
import { activationParams } from './tflite-convert';

const QMIN = -128;
const QMAX = 127;
/** Weights are symmetric in ±127 (the TFLite spec leaves −128 out). */
const WMAX = 127;
/** Moving-average decay of tracked activation ranges, per step. */
export const RANGE_DECAY = 0.99;

type Weighted = IrConv | IrDense;

/** A one-input function with its own gradient (TensorFlow.js' customGrad, typed for one tensor). */
function withGradient(tf: typeof TF, f: (x: TF.Tensor, save: (ts: TF.Tensor[]) => void) => { value: TF.Tensor; gradFunc: (dy: TF.Tensor, saved: TF.Tensor[]) => TF.Tensor }): (x: TF.Tensor) => TF.Tensor {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: TF.Tensor) => TF.Tensor;
}

/** What a training run did, for the report. */
export interface QatRecord {
  engine: string;
  durationMs: number;
  epochs: number;
  steps: number;
  samplesPerEpoch: number;
  firstLoss: number;
  lastLoss: number;
  /** Accuracy of the fake-quantized model on the last epoch's training batches. */
  lastEpochAccuracy: number;
}

/**
 * The fake-quantized twin of an IR graph. Weights and biases are trainable variables in the IR's
 * layout; every activation is quantized to int8 with the writer's parameters for the current
 * ranges, weights per output channel (conv, depthwise) or per tensor (fully connected) as the
 * writer stores them, biases to int32 at s_in·s_w.
 */
export class FakeQuantTwin {
  readonly variables = new Map<string, { kernel: TF.Variable; bias: TF.Variable }>();
  /** Activation ranges by tensor id; start from calibration, then track the training data. */
  readonly ranges: Map<string, [number, number]>;

  constructor(
    private readonly tf: typeof TF,
    readonly graph: IrGraph,
    ranges: Map<string, [number, number]>,
    private readonly perChannel: boolean,
  ) {
    this.ranges = new Map([...ranges].map(([k, v]) => [k, [v[0], v[1]]]));
    for (const op of graph.ops) {
      if (op.kind === 'conv2d' || op.kind === 'depthwise' || op.kind === 'dense') {
        this.variables.set(op.output, { kernel: tf.variable(tf.tensor(op.kernel, op.kernelShape), true, `${op.output}/kernel`), bias: tf.variable(tf.tensor1d(op.bias), true, `${op.output}/bias`) });
      }
    }
  }

  /** The trainable variables, for the optimizer. */
  trainable(): TF.Variable[] {
    return [...this.variables.values()].flatMap((v) => [v.kernel, v.bias]);
  }

  /** Quantize → dequantize with clipped straight-through gradients (zero outside the int8 range). */
  private fakeQuant(x: TF.Tensor, p: QuantParams): TF.Tensor {
    const tf = this.tf;
    const lo = (QMIN - p.zeroPoint) * p.scale;
    const hi = (QMAX - p.zeroPoint) * p.scale;
    const f = withGradient(tf, (input, save) => {
      save([input]);
      const q = tf.clipByValue(tf.add(tf.round(tf.div(input, p.scale)), p.zeroPoint), QMIN, QMAX);
      return { value: tf.mul(tf.sub(q, p.zeroPoint), p.scale), gradFunc: (dy, [s]) => tf.mul(dy, tf.cast(tf.logicalAnd(tf.greaterEqual(s, lo), tf.lessEqual(s, hi)), 'float32')) };
    });
    return f(x);
  }

  /** Weight scales as the writer computes them: max |w| / 127 per output channel, or per tensor. */
  private weightScales(op: Weighted, kernel: TF.Tensor): TF.Tensor {
    const tf = this.tf;
    const perChannel = this.perChannel && op.kind !== 'dense';
    // Output channel is the fastest-varying index in every IR layout (depthwise: c·mult + m).
    const channels = perChannel ? (op.kind === 'depthwise' ? op.kernelShape[2] * op.kernelShape[3] : op.kernelShape[op.kernelShape.length - 1]) : 1;
    const maxAbs = tf.max(tf.abs(tf.reshape(kernel, [-1, channels])), 0);
    // An all-zero channel gets scale 1, as scaleFromRange gives it.
    return tf.where(tf.greater(maxAbs, 0), tf.div(maxAbs, WMAX), tf.onesLike(maxAbs));
  }

  /** Weights rounded to int8 and biases to int32 at s_in·s_w; gradients pass straight through. */
  private quantizedWeights(op: Weighted, inputScale: number): { kernel: TF.Tensor; bias: TF.Tensor } {
    const tf = this.tf;
    const v = this.variables.get(op.output)!;
    const scales = this.weightScales(op, v.kernel);
    const channels = scales.shape[0]!;
    const roundTo = withGradient(tf, (x) => {
      const shaped = tf.reshape(x, [-1, channels]);
      const q = tf.reshape(tf.mul(tf.clipByValue(tf.round(tf.div(shaped, scales)), -WMAX, WMAX), scales), x.shape);
      return { value: q, gradFunc: (dy) => dy };
    });
    const biasScale = tf.mul(scales, inputScale);
    const roundBias = withGradient(tf, (b) => ({ value: tf.mul(tf.round(tf.div(b, biasScale)), biasScale), gradFunc: (dy) => dy }));
    return { kernel: roundTo(v.kernel), bias: roundBias(v.bias) };
  }

  private act(y: TF.Tensor, a: IrActivation): TF.Tensor {
    return a === 'RELU' ? this.tf.relu(y) : a === 'RELU6' ? this.tf.relu6(y) : y;
  }

  /**
   * Runs the twin on a batch (NHWC, batch first). `observe` sees each op's float output before it
   * is quantized (for range tracking). Returns every tensor by id, fake-quantized.
   */
  forward(x: TF.Tensor, observe?: (id: string, y: TF.Tensor) => void): Map<string, TF.Tensor> {
    const tf = this.tf;
    const { params, requant } = activationParams(this.graph, this.ranges);
    const env = new Map<string, TF.Tensor>();
    const pad = (p: IrPadding) => (p === 'SAME' ? 'same' : 'valid');
    for (const id of this.graph.inputs) {
      observe?.(id, x);
      env.set(id, this.fakeQuant(x, params.get(id)!));
    }
    for (const op of this.graph.ops) {
      const rq = requant.get(op);
      const xs = op.inputs.map((i) => (rq?.has(i) ? this.fakeQuant(env.get(i)!, params.get(op.output)!) : env.get(i)!));
      const y = this.exec(op, xs, params.get(op.inputs[0])?.scale ?? 1, pad);
      observe?.(op.output, y);
      env.set(op.output, this.fakeQuant(y, params.get(op.output)!));
    }
    return env;
  }

  private exec(op: IrOp, xs: TF.Tensor[], inputScale: number, pad: (p: IrPadding) => 'same' | 'valid'): TF.Tensor {
    const tf = this.tf;
    switch (op.kind) {
      case 'conv2d':
      case 'depthwise': {
        const w = this.quantizedWeights(op, inputScale);
        const conv = op.kind === 'conv2d' ? tf.conv2d(xs[0] as TF.Tensor4D, w.kernel as TF.Tensor4D, op.strides, pad(op.padding), 'NHWC', op.dilation) : tf.depthwiseConv2d(xs[0] as TF.Tensor4D, w.kernel as TF.Tensor4D, op.strides, pad(op.padding), 'NHWC', op.dilation);
        return this.act(tf.add(conv, w.bias), op.activation);
      }
      case 'dense': {
        const w = this.quantizedWeights(op, inputScale);
        return this.act(tf.add(tf.matMul(xs[0] as TF.Tensor2D, w.kernel as TF.Tensor2D), w.bias), op.activation);
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
        return tf.reshape(xs[0], [-1, ...op.shape.slice(1)]);
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
        throw new Error(`BatchNorm ${op.layer} reached the twin unfolded`);
    }
  }

  /** Folds a batch's observed range into the tracked one (exponential moving average). */
  track(id: string, lo: number, hi: number, decay = RANGE_DECAY): void {
    const r = this.ranges.get(id);
    if (!r) return;
    r[0] = decay * r[0] + (1 - decay) * lo;
    r[1] = decay * r[1] + (1 - decay) * hi;
  }

  /** The trained weights written back into a copy of the graph (the input graph is left as it was). */
  trainedGraph(): IrGraph {
    const ops = this.graph.ops.map((op): IrOp => {
      const v = this.variables.get(op.output);
      if (!v || !(op.kind === 'conv2d' || op.kind === 'depthwise' || op.kind === 'dense')) return op;
      return { ...op, kernel: Float32Array.from(v.kernel.dataSync() as Float32Array), bias: Float32Array.from(v.bias.dataSync() as Float32Array) } as IrOp;
    });
    return { ...this.graph, ops };
  }

  dispose(): void {
    for (const v of this.variables.values()) {
      v.kernel.dispose();
      v.bias.dispose();
    }
  }
}

/** The tensor the loss reads: the input of a final Softmax (logits), else the output itself. */
export function logitsTensor(g: IrGraph): string {
  const last = g.ops.find((op) => op.output === g.outputs[0]);
  return last?.kind === 'softmax' ? last.inputs[0] : g.outputs[0];
}

/**
 * Fine-tunes the twin on labeled data: Adam, softmax cross-entropy on the logits, one progress
 * event per batch with its loss and accuracy, abortable between batches. Activation ranges are
 * tracked on the float values each op produces (before quantization).
 */
export async function trainTwin(tf: typeof TF, twin: FakeQuantTwin, data: Dataset, qat: QatOptions, ctx: RunContext, engine: string): Promise<QatRecord> {
  const started = performance.now();
  const g = twin.graph;
  const inputShape = g.shapes.get(g.inputs[0])!;
  const perSample = inputShape.slice(1).reduce((a, b) => a * b, 1);
  const logits = logitsTensor(g);
  const classes = g.shapes.get(logits)!.at(-1)!;
  const tracked = new Set([...twin.ranges.keys()]);
  const optimizer = tf.train.adam(qat.learningRate);
  const perEpoch = data.description.count;
  const total = perEpoch ? Math.ceil(perEpoch / qat.batchSize) * qat.epochs : undefined;
  let steps = 0;
  let firstLoss = Number.NaN;
  let lastLoss = Number.NaN;
  let correct = 0;
  let seen = 0;
  let samplesPerEpoch = 0;
  try {
    for (let epoch = 1; epoch <= qat.epochs; epoch++) {
      correct = 0;
      seen = 0;
      let batchX: Float32Array[] = [];
      let batchY: number[] = [];
      const step = () => {
        throwIfAborted(ctx, 'quantization-aware training');
        const n = batchY.length;
        const x = new Float32Array(n * perSample);
        batchX.forEach((d, k) => x.set(d, k * perSample));
        const observed = new Map<string, [TF.Scalar, TF.Scalar]>();
        let hits = 0;
        const loss = tf.tidy(() => {
          const xs = tf.tensor(x, [n, ...inputShape.slice(1)]);
          const ys = tf.oneHot(tf.tensor1d(batchY, 'int32'), classes);
          const cost = optimizer.minimize(
            () => {
              const env = twin.forward(xs, (id, y) => {
                if (tracked.has(id)) observed.set(id, [tf.keep(tf.min(y)), tf.keep(tf.max(y))]);
              });
              const z = env.get(logits)!;
              hits = (tf.sum(tf.cast(tf.equal(tf.argMax(z, -1), tf.argMax(ys, -1)), 'int32')).dataSync() as Int32Array)[0];
              return tf.losses.softmaxCrossEntropy(ys, z) as TF.Scalar;
            },
            true,
            twin.trainable(),
          );
          return cost!.dataSync()[0];
        });
        for (const [id, [lo, hi]] of observed) {
          twin.track(id, lo.dataSync()[0], hi.dataSync()[0]);
          lo.dispose();
          hi.dispose();
        }
        if (!Number.isFinite(loss)) throw errInvalidOption('--learning-rate', `training diverged at step ${steps + 1} (loss ${loss})`, 'Lower --learning-rate.');
        steps++;
        if (Number.isNaN(firstLoss)) firstLoss = loss;
        lastLoss = loss;
        correct += hits;
        seen += n;
        ctx.progress({ phase: 'quantize', current: steps, total, message: `QAT epoch ${epoch}/${qat.epochs} (${engine}): loss ${loss.toFixed(4)}, batch accuracy ${((hits / n) * 100).toFixed(1)}%` });
        batchX = [];
        batchY = [];
      };
      for await (const sample of data.samples()) {
        if (sample.label === undefined) throw errInvalidOption('--data', `quantization-aware training needs labeled samples; ${sample.id} has no label`, 'Pass a labeled folder (one sub-folder per class) or mnist:train.');
        const t = Object.values(sample.inputs)[0];
        if (t.data.length !== perSample) throw errInvalidOption('--data', `sample ${sample.id} has ${t.data.length} values, the model input ${perSample}`);
        if (sample.label < 0 || sample.label >= classes || !Number.isInteger(sample.label)) throw errInvalidOption('--data', `sample ${sample.id} has label ${sample.label}; the model has ${classes} classes`);
        batchX.push(t.data as Float32Array);
        batchY.push(sample.label);
        if (batchY.length === qat.batchSize) step();
      }
      if (batchY.length) step();
      samplesPerEpoch = seen;
      if (!seen) throw errInvalidOption('--data', 'the training data is empty');
    }
  } finally {
    optimizer.dispose();
  }
  return { engine, durationMs: performance.now() - started, epochs: qat.epochs, steps, samplesPerEpoch, firstLoss, lastLoss, lastEpochAccuracy: correct / Math.max(1, seen) };
}
