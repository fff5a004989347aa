// Lowers a loaded TensorFlow.js Layers model (Sequential or functional) to the IR graph.
// Every layer the converter cannot express is collected, and all are named in one coded error.
import { errUnsupportedOp } from '@qforge/core';
import type * as TF from '@tensorflow/tfjs';
import { fuseIr, type IrActivation, type IrGraph, type IrOp, type IrPadding } from './ir';

interface LayerLike {
  name: string;
  getClassName(): string;
  getConfig(): Record<string, unknown>;
  getWeights(): TF.Tensor[];
  outputShape: (number | null)[] | (number | null)[][];
  inboundNodes: { inboundLayers: LayerLike[] }[];
  batchInputShape?: (number | null)[];
}

/** Layers that only matter in training: inference passes the input through. */
const IDENTITY = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'ActivityRegularization']);

const pair = (v: unknown, fallback: number): [number, number] => (Array.isArray(v) ? [Number(v[0]), Number(v[1] ?? v[0])] : v === undefined || v === null ? [fallback, fallback] : [Number(v), Number(v)]);

function shapeOf(l: LayerLike): number[] {
  const s = (Array.isArray(l.outputShape[0]) ? l.outputShape[0] : l.outputShape) as (number | null)[];
  return s.map((d, k) => (d === null ? (k === 0 ? 1 : -1) : d));
}

/** Weights of a layer as Float32Arrays, in `getWeights()` order. */
function weightsOf(l: LayerLike): Float32Array[] {
  return l.getWeights().map((w) => Float32Array.from(w.dataSync() as Float32Array));
}

export function lowerLayersModel(model: TF.LayersModel): IrGraph {
  const g: IrGraph = { inputs: [], outputs: [], ops: [], shapes: new Map(), changes: [] };
  const alias = new Map<string, string>();
  const unsupported: string[] = [];
  const id = (l: LayerLike) => alias.get(l.name) ?? l.name;
  const layers = [...(model.layers as unknown as LayerLike[])];
  // Sequential models keep their InputLayer out of `layers`: take the inputs from the model.
  const inputLayers = (model.inputs as unknown as { sourceLayer: LayerLike }[]).map((t) => t.sourceLayer);
  for (const l of inputLayers) if (!layers.includes(l)) layers.unshift(l);

  for (const l of layers) {
    const cls = l.getClassName();
    const cfg = l.getConfig();
    const bad = (why?: string) => unsupported.push(`${cls} (${l.name}${why ? `: ${why}` : ''})`);
    if (l.inboundNodes.length > 1) {
      bad('shared layer used more than once');
      continue;
    }
    if (cls === 'InputLayer') {
      const shape = ((cfg.batchInputShape ?? l.batchInputShape ?? l.outputShape) as (number | null)[]).map((d, k) => (d === null ? (k === 0 ? 1 : -1) : d));
      if (shape.slice(1).some((d) => d < 1)) bad(`input shape [${shape}] has unknown dimensions`);
      g.inputs.push(l.name);
      g.shapes.set(l.name, shape);
      continue;
    }
    const inputs = (l.inboundNodes[0]?.inboundLayers ?? []).map(id);
    const shape = shapeOf(l);
    const out = l.name;
    // Known before lowering, so an unsupported consumer can say what it was given.
    if (!IDENTITY.has(cls)) g.shapes.set(out, shape);
    const push = (op: IrOp) => {
      g.ops.push(op);
      g.shapes.set(op.output, shape);
    };
    // Keras activations: ReLU/ReLU6 ride on the producing kernel, the others get their own op
    // (the kernel then writes a "<layer>/pre" tensor).
    const withActivation = (make: (output: string, act: IrActivation) => IrOp) => {
      const a = String(cfg.activation ?? 'linear');
      if (a === 'linear') return push(make(out, 'NONE'));
      if (a === 'relu' || a === 'relu6') return push(make(out, a === 'relu' ? 'RELU' : 'RELU6'));
      const kind = ({ sigmoid: 'logistic', tanh: 'tanh', softmax: 'softmax' } as const)[a as 'sigmoid'];
      if (!kind) return bad(`activation "${a}"`);
      push(make(`${out}/pre`, 'NONE'));
      g.shapes.set(`${out}/pre`, shape);
      push({ kind, layer: l.name, inputs: [`${out}/pre`], output: out });
    };
    const channelsLast = cfg.dataFormat === undefined || cfg.dataFormat === 'channelsLast';
    switch (cls) {
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        if (!channelsLast) {
          bad('channels-first data format');
          break;
        }
        const [kernel, bias] = weightsOf(l);
        const ks = l.getWeights()[0].shape as [number, number, number, number];
        const outCh = cls === 'Conv2D' ? ks[3] : ks[2] * ks[3];
        if (cls === 'Conv2D' && Number(cfg.groups ?? 1) !== 1) {
          bad('grouped convolution');
          break;
        }
        withActivation((output, activation) => ({
          kind: cls === 'Conv2D' ? 'conv2d' : 'depthwise',
          layer: l.name,
          inputs,
          output,
          kernel,
          kernelShape: ks,
          bias: bias ?? new Float32Array(outCh),
          strides: pair(cfg.strides, 1),
          dilation: pair(cfg.dilationRate, 1),
          padding: String(cfg.padding).toUpperCase() as IrPadding,
          activation,
        }));
        break;
      }
      case 'SeparableConv2D': {
        const [dk, pk, bias] = weightsOf(l);
        const [dks, pks] = l.getWeights().map((w) => w.shape) as [number, number, number, number][];
        const mid = `${out}/depthwise`;
        g.shapes.set(mid, [...shape.slice(0, 3), dks[2] * dks[3]]);
        g.ops.push({ kind: 'depthwise', layer: l.name, inputs, output: mid, kernel: dk, kernelShape: dks as [number, number, number, number], bias: new Float32Array(dks[2] * dks[3]), strides: pair(cfg.strides, 1), dilation: pair(cfg.dilationRate, 1), padding: String(cfg.padding).toUpperCase() as IrPadding, activation: 'NONE' });
        withActivation((output, activation) => ({ kind: 'conv2d', layer: l.name, inputs: [mid], output, kernel: pk, kernelShape: pks as [number, number, number, number], bias: bias ?? new Float32Array(pks[3]), strides: [1, 1], dilation: [1, 1], padding: 'VALID', activation }));
        break;
      }
      case 'Dense': {
        const inShape = g.shapes.get(inputs[0]);
        if (!inShape || inShape.length !== 2) {
          bad(`input of rank ${inShape?.length ?? '?'} (only rank 2 is converted)`);
          break;
        }
        const [kernel, bias] = weightsOf(l);
        const ks = l.getWeights()[0].shape as [number, number];
        withActivation((output, activation) => ({ kind: 'dense', layer: l.name, inputs, output, kernel, kernelShape: ks, bias: bias ?? new Float32Array(ks[1]), activation }));
        break;
      }
      case 'BatchNormalization': {
        const axis = Number(cfg.axis ?? -1);
        if (axis !== -1 && axis !== shape.length - 1) {
          bad(`normalizes axis ${axis}, not the channel axis`);
          break;
        }
        const w = weightsOf(l);
        const gamma = cfg.scale === false ? undefined : w.shift();
        const beta = cfg.center === false ? undefined : w.shift();
        const [mean, variance] = w;
        const eps = Number(cfg.epsilon ?? 1e-3);
        const scale = new Float32Array(mean.length);
        const shift = new Float32Array(mean.length);
        for (let c = 0; c < mean.length; c++) {
          scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + eps);
          shift[c] = (beta ? beta[c] : 0) - mean[c] * scale[c];
        }
        push({ kind: 'batchnorm', layer: l.name, inputs, output: out, scale, shift });
        break;
      }
      case 'Activation': {
        const a = String(cfg.activation);
        const kind = ({ relu: 'relu', relu6: 'relu6', sigmoid: 'logistic', tanh: 'tanh', softmax: 'softmax', linear: undefined } as const)[a as 'relu'];
        if (a === 'linear') alias.set(l.name, inputs[0]);
        else if (kind) push({ kind, layer: l.name, inputs, output: out });
        else bad(`activation "${a}"`);
        break;
      }
      case 'ReLU': {
        const max = cfg.maxValue as number | null | undefined;
        if (Number(cfg.negativeSlope ?? 0) !== 0 || Number(cfg.threshold ?? 0) !== 0) bad('negative slope or threshold');
        else if (max === null || max === undefined) push({ kind: 'relu', layer: l.name, inputs, output: out });
        else if (max === 6) push({ kind: 'relu6', layer: l.name, inputs, output: out });
        else bad(`max value ${max}`);
        break;
      }
      case 'LeakyReLU':
        push({ kind: 'leakyrelu', layer: l.name, inputs, output: out, alpha: Number(cfg.alpha ?? 0.3) });
        break;
      case 'Softmax':
        if (Number(cfg.axis ?? -1) !== -1 && Number(cfg.axis) !== shape.length - 1) bad('softmax over a non-last axis');
        else push({ kind: 'softmax', layer: l.name, inputs, output: out });
        break;
      case 'Add':
      case 'Multiply':
      case 'Subtract': {
        const kind = cls === 'Add' ? 'add' : cls === 'Multiply' ? 'mul' : 'sub';
        // More than two inputs become a chain of binary ops.
        let acc = inputs[0];
        for (let k = 1; k < inputs.length; k++) {
          const o = k === inputs.length - 1 ? out : `${out}/${k}`;
          g.shapes.set(o, shape);
          g.ops.push({ kind, layer: l.name, inputs: [acc, inputs[k]], output: o, activation: 'NONE' });
          acc = o;
        }
        break;
      }
      case 'Concatenate': {
        const axis = Number(cfg.axis ?? -1);
        push({ kind: 'concat', layer: l.name, inputs, output: out, axis: axis < 0 ? shape.length + axis : axis });
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        const pool = pair(cfg.poolSize, 2);
        push({ kind: cls === 'MaxPooling2D' ? 'maxpool' : 'avgpool', layer: l.name, inputs, output: out, pool, strides: pair(cfg.strides ?? cfg.poolSize, 2), padding: String(cfg.padding ?? 'valid').toUpperCase() as IrPadding });
        break;
      }
      case 'GlobalAveragePooling2D':
        if (!channelsLast) bad('channels-first data format');
        else if (cfg.keepdims) bad('keepdims');
        else push({ kind: 'mean', layer: l.name, inputs, output: out });
        break;
      case 'Flatten':
      case 'Reshape':
        push({ kind: 'reshape', layer: l.name, inputs, output: out, shape });
        break;
      case 'ZeroPadding2D': {
        const p = cfg.padding as number | [number, number] | [[number, number], [number, number]];
        const [[t, b], [lft, r]] = Array.isArray(p) ? (Array.isArray(p[0]) ? (p as [[number, number], [number, number]]) : [[p[0], p[0]], [p[1] as number, p[1] as number]]) : [[p, p], [p, p]];
        push({ kind: 'pad', layer: l.name, inputs, output: out, paddings: [[0, 0], [t, b], [lft, r], [0, 0]] });
        break;
      }
      default:
        if (IDENTITY.has(cls)) alias.set(l.name, inputs[0]);
        else bad();
    }
  }
  if (unsupported.length) throw errUnsupportedOp('tfjs', unsupported, { operation: 'convert to TFLite' });
  // Only tensors the graph actually produces keep a shape (aliases and skipped layers do not).
  const produced = new Set([...g.inputs, ...g.ops.map((op) => op.output)]);
  for (const id of [...g.shapes.keys()]) if (!produced.has(id)) g.shapes.delete(id);
  g.outputs = (model.outputs as { sourceLayer?: { name: string } }[]).map((o, k) => {
    const name = o.sourceLayer?.name ?? (model.outputNames as string[])[k];
    return alias.get(name) ?? name;
  });
  return fuseIr(g);
}
