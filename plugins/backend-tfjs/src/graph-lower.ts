// Lowers a TensorFlow.js graph model (a converted SavedModel: Placeholder, Const, _FusedConv2D, …)
// to the IR graph the Layers path uses. Every node it cannot express is collected, and all are
// named in one coded error.
import { errUnsupportedOp, type TensorInfo } from '@qforge/core';
import { fuseIr, type IrGraph, type IrOp, type IrPadding } from './ir';

/** One attribute value of a GraphDef node, as tensorflowjs_converter writes it to model.json. */
export interface GraphAttr {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { s?: string[]; i?: (string | number)[]; f?: number[] };
  shape?: { dim?: { size: string | number }[]; unknownRank?: boolean };
}

export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, GraphAttr>;
}

/** A Const node's value, decoded from the weight manifest (uint8/float16 storage already expanded). */
export interface GraphConst {
  values: Float32Array | Int32Array;
  shape: number[];
}

interface SignatureEntry {
  name: string;
  dtype?: string;
  tensorShape?: { dim?: { size: string | number }[]; unknownRank?: boolean };
}

/** The `signature` the converter writes: at the top level (tfjs ≥ 2) or in `userDefinedMetadata` (older). */
export interface GraphSignature {
  inputs?: Record<string, SignatureEntry>;
  outputs?: Record<string, SignatureEntry>;
}

const DTYPES: Record<string, string> = { DT_FLOAT: 'float32', DT_INT32: 'int32', DT_BOOL: 'bool', DT_HALF: 'float16', DT_INT64: 'int64', DT_UINT8: 'uint8', DT_STRING: 'string' };

const text = (a: GraphAttr | undefined): string | undefined => (a?.s === undefined ? undefined : Buffer.from(a.s, 'base64').toString('utf8'));
const ints = (a: GraphAttr | undefined): number[] => (a?.list?.i ?? []).map(Number);
const texts = (a: GraphAttr | undefined): string[] => (a?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));
const tensorName = (ref: string) => ref.replace(/:0$/, '');

/**
 * The model's inputs as declared by the graph: each Placeholder's `shape` and `dtype` attributes,
 * completed from the signature when the Placeholder carries no shape. Unknown sizes are symbolic:
 * the leading one is the batch, the others are named after the input (the data fills them).
 */
export function graphInputs(nodes: GraphNode[], signature: GraphSignature | undefined): TensorInfo[] {
  const sig = new Map(Object.values(signature?.inputs ?? {}).map((e) => [tensorName(e.name), e]));
  return nodes
    .filter((n) => n.op === 'Placeholder')
    .map((n) => {
      const s = sig.get(n.name);
      const declared = n.attr?.shape?.shape;
      const dims = (declared && !declared.unknownRank && declared.dim ? declared.dim : s?.tensorShape?.dim) ?? undefined;
      const dtype = DTYPES[n.attr?.dtype?.type ?? s?.dtype ?? 'DT_FLOAT'] ?? String(n.attr?.dtype?.type ?? s?.dtype);
      const shape = (dims ?? []).map((d, k) => (Number(d.size) >= 0 ? Number(d.size) : k === 0 ? 'batch' : `${n.name}_${k}`));
      return { name: n.name, dtype, shape };
    });
}

/** Nodes the outputs depend on, inputs before consumers. */
function reachable(nodes: Map<string, GraphNode>, outputs: string[]): GraphNode[] {
  const order: GraphNode[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string) => {
    if (state.get(name) === 'done') return;
    const n = nodes.get(name);
    if (!n) throw new Error(`graph references missing node ${name}`);
    if (state.get(name) === 'visiting') throw new Error(`graph has a cycle through ${name}`);
    state.set(name, 'visiting');
    for (const i of n.input ?? []) if (!i.startsWith('^')) visit(i.split(':')[0]);
    state.set(name, 'done');
    order.push(n);
  };
  for (const o of outputs) visit(tensorName(o));
  return order;
}

export interface GraphLowering {
  nodes: GraphNode[];
  consts: Map<string, GraphConst>;
  /** Shape of every node output at batch 1 (from one run of the graph on the probe input). */
  shapes: Map<string, number[]>;
  outputs: string[];
}

/** The ops a graph model's nodes become; unsupported nodes are all named in E_UNSUPPORTED_OP. */
export function lowerGraphModel({ nodes: all, consts, shapes, outputs }: GraphLowering): IrGraph {
  const g: IrGraph = { inputs: [], outputs: [], ops: [], shapes: new Map(), changes: [] };
  const unsupported: string[] = [];
  const alias = new Map<string, string>();
  const byName = new Map(all.map((n) => [n.name, n]));
  const order = reachable(byName, outputs);

  for (const n of order) {
    const bad = (why?: string) => unsupported.push(`${n.op} (${n.name}${why ? `: ${why}` : ''})`);
    const refs = (n.input ?? []).filter((i) => !i.startsWith('^'));
    if (refs.some((r) => /:[1-9]\d*$/.test(r))) {
      bad('reads a secondary output of another node');
      continue;
    }
    const src = refs.map((r) => alias.get(tensorName(r)) ?? tensorName(r));
    const constOf = (k: number) => consts.get(src[k]);
    const isConst = (k: number) => consts.has(src[k]);
    const out = n.name;
    const shape = shapes.get(out);
    const push = (op: IrOp, s = shape) => {
      g.ops.push(op);
      g.shapes.set(op.output, s!);
    };
    /** Separate activation op after `from`; the IR fusion puts ReLU/ReLU6 back into the kernel. */
    const activationOp = (from: string, act: string, output: string): boolean => {
      const kind = ({ Relu: 'relu', Relu6: 'relu6', Sigmoid: 'logistic', Tanh: 'tanh' } as const)[act as 'Relu'];
      if (kind) push({ kind, layer: n.name, inputs: [from], output });
      else if (act === 'LeakyRelu') push({ kind: 'leakyrelu', layer: n.name, inputs: [from], output, alpha: Number(n.attr?.leakyrelu_alpha?.f ?? 0.2) });
      else return false;
      return true;
    };
    const nhwc = (text(n.attr?.data_format) ?? 'NHWC') === 'NHWC';
    if (n.op === 'Const') {
      if (!consts.has(n.name)) bad('value missing from the weight manifest');
      continue;
    }
    if (n.op === 'Placeholder') {
      if ((DTYPES[n.attr?.dtype?.type ?? 'DT_FLOAT'] ?? 'other') !== 'float32') bad(`input of type ${n.attr?.dtype?.type}`);
      g.inputs.push(out);
      g.shapes.set(out, shape!);
      continue;
    }
    if (!shape) {
      bad('output shape unknown');
      continue;
    }
    switch (n.op) {
      case 'Identity':
      case 'StopGradient':
      case 'Snapshot':
        if (isConst(0)) consts.set(out, constOf(0)!);
        else alias.set(out, src[0]);
        break;
      case 'Conv2D':
      case '_FusedConv2D':
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative': {
        const depthwise = n.op.includes('Depthwise');
        const filter = constOf(1);
        const fused = texts(n.attr?.fused_ops);
        const padding = text(n.attr?.padding) ?? 'VALID';
        if (!nhwc) bad('NCHW data format');
        else if (!filter || filter.shape.length !== 4) bad('filter is not a constant 4-D tensor');
        else if (padding !== 'SAME' && padding !== 'VALID' && padding !== 'EXPLICIT') bad(`padding ${padding}`);
        // TensorFlow.js itself refuses a fused FusedBatchNorm, so such graphs never get this far.
        else if (fused.some((f) => !['BiasAdd', 'Relu', 'Relu6', 'Sigmoid', 'Tanh', 'LeakyRelu'].includes(f))) bad(`fused ${fused.join('+')}`);
        else {
          const ks = filter.shape as [number, number, number, number];
          const outCh = depthwise ? ks[2] * ks[3] : ks[3];
          let x = src[0];
          if (padding === 'EXPLICIT') {
            const p = ints(n.attr?.explicit_paddings);
            const inShape = g.shapes.get(x)!;
            const padded = `${out}/pad`;
            const paddings: [number, number][] = [[p[0], p[1]], [p[2], p[3]], [p[4], p[5]], [p[6], p[7]]];
            push({ kind: 'pad', layer: n.name, inputs: [x], output: padded, paddings }, inShape.map((d, k) => d + paddings[k][0] + paddings[k][1]));
            x = padded;
          }
          const s = ints(n.attr?.strides);
          const d = ints(n.attr?.dilations);
          const bias = fused[0] === 'BiasAdd' ? constOf(2)?.values : undefined;
          if (fused[0] === 'BiasAdd' && (!bias || bias.length !== outCh)) {
            bad('bias is not a constant of one value per output channel');
            break;
          }
          const act = fused.filter((f) => f !== 'BiasAdd');
          const convOut = act.length ? `${out}/conv` : out;
          push({
            kind: depthwise ? 'depthwise' : 'conv2d',
            layer: n.name,
            inputs: [x],
            output: convOut,
            kernel: Float32Array.from(filter.values),
            kernelShape: ks,
            bias: bias ? Float32Array.from(bias) : new Float32Array(outCh),
            strides: [s[1] ?? 1, s[2] ?? 1],
            dilation: [d[1] ?? 1, d[2] ?? 1],
            padding: padding === 'SAME' ? 'SAME' : 'VALID',
            activation: 'NONE',
          });
          const last = convOut;
          if (act.length && !activationOp(last, act[0], out)) bad(`fused ${act[0]}`);
        }
        break;
      }
      case 'MatMul':
      case '_FusedMatMul': {
        const w = constOf(1);
        const fused = texts(n.attr?.fused_ops);
        const inShape = g.shapes.get(src[0]);
        if (n.attr?.transpose_a?.b) bad('transposed input');
        else if (!w || w.shape.length !== 2) bad('weights are not a constant matrix');
        else if (!inShape || inShape.length !== 2) bad(`input of rank ${inShape?.length ?? '?'} (only rank 2 is converted)`);
        else if (fused.some((f) => !['BiasAdd', 'Relu', 'Relu6', 'Sigmoid', 'Tanh', 'LeakyRelu'].includes(f))) bad(`fused ${fused.join('+')}`);
        else {
          // The IR keeps TensorFlow.js' [in, out]; transpose_b stores [out, in].
          const [r, c] = w.shape;
          const kernel = n.attr?.transpose_b?.b ? transpose(w.values, r, c) : Float32Array.from(w.values);
          const ks: [number, number] = n.attr?.transpose_b?.b ? [c, r] : [r, c];
          const bias = fused[0] === 'BiasAdd' ? constOf(2)?.values : undefined;
          if (fused[0] === 'BiasAdd' && bias?.length !== ks[1]) {
            bad('bias is not a constant of one value per output');
            break;
          }
          const act = fused.filter((f) => f !== 'BiasAdd');
          const mmOut = act.length ? `${out}/matmul` : out;
          push({ kind: 'dense', layer: n.name, inputs: [src[0]], output: mmOut, kernel, kernelShape: ks, bias: bias ? Float32Array.from(bias) : new Float32Array(ks[1]), activation: 'NONE' });
          if (act.length && !activationOp(mmOut, act[0], out)) bad(`fused ${act[0]}`);
        }
        break;
      }
      case 'FusedBatchNorm':
      case 'FusedBatchNormV2':
      case 'FusedBatchNormV3': {
        const bn = batchNormFrom([constOf(1), constOf(2), constOf(3), constOf(4)], Number(n.attr?.epsilon?.f ?? 1e-3));
        if (!nhwc) bad('NCHW data format');
        else if (n.attr?.is_training?.b) bad('training mode');
        else if (!bn || bn.scale.length !== shape[shape.length - 1]) bad('statistics are not constants of one value per channel');
        else push({ kind: 'batchnorm', layer: n.name, inputs: [src[0]], output: out, ...bn });
        break;
      }
      case 'BiasAdd':
      case 'Add':
      case 'AddV2':
      case 'Sub':
      case 'Mul':
      case 'RealDiv': {
        const kind = n.op === 'Mul' ? 'mul' : n.op === 'Sub' ? 'sub' : n.op === 'RealDiv' ? 'div' : 'add';
        const c = isConst(1) ? 1 : isConst(0) ? 0 : -1;
        if (c < 0) {
          if (kind === 'div') bad('division of two tensors');
          else push({ kind, layer: n.name, inputs: src.slice(0, 2), output: out, activation: 'NONE' });
          break;
        }
        // A constant operand, one value or one per channel: a per-channel affine map (folded into
        // the kernel before it when there is one, else a 1×1 depthwise convolution).
        const k = constOf(c)!;
        const channels = shape[shape.length - 1];
        if (src.length !== 2 || consts.has(src[1 - c])) bad('constant operands only');
        else if (!(k.values.length === 1 || (k.values.length === channels && k.shape[k.shape.length - 1] === channels))) bad(`constant of shape [${k.shape}] is not one value or one per channel`);
        else if (kind === 'div' && c === 0) bad('constant divided by a tensor');
        else {
          const at = (i: number) => k.values[k.values.length === 1 ? 0 : i];
          const scale = new Float32Array(channels).fill(1);
          const shift = new Float32Array(channels);
          for (let i = 0; i < channels; i++) {
            if (kind === 'add') shift[i] = at(i);
            else if (kind === 'mul') scale[i] = at(i);
            else if (kind === 'div') scale[i] = 1 / at(i);
            else if (c === 1) shift[i] = -at(i);
            else {
              scale[i] = -1;
              shift[i] = at(i);
            }
          }
          push({ kind: 'batchnorm', layer: n.name, inputs: [src[1 - c]], output: out, scale, shift });
        }
        break;
      }
      case 'Relu':
      case 'Relu6':
      case 'Sigmoid':
      case 'Tanh':
      case 'LeakyRelu':
        activationOp(src[0], n.op, out);
        break;
      case 'Softmax':
        push({ kind: 'softmax', layer: n.name, inputs: [src[0]], output: out });
        break;
      case 'MaxPool':
      case 'AvgPool': {
        const padding = text(n.attr?.padding);
        const k = ints(n.attr?.ksize);
        const s = ints(n.attr?.strides);
        if (!nhwc) bad('NCHW data format');
        else if (padding !== 'SAME' && padding !== 'VALID') bad(`padding ${padding}`);
        else push({ kind: n.op === 'MaxPool' ? 'maxpool' : 'avgpool', layer: n.name, inputs: [src[0]], output: out, pool: [k[1], k[2]], strides: [s[1], s[2]], padding: padding as IrPadding });
        break;
      }
      case 'Mean': {
        const axes = constOf(1);
        const rank = g.shapes.get(src[0])?.length ?? 0;
        const norm = axes ? [...axes.values].map((a) => (a < 0 ? a + rank : a)).sort() : [];
        if (rank !== 4 || norm.join() !== '1,2') bad(`mean over axes [${norm}] of a rank-${rank} tensor (only the spatial axes of NHWC are converted)`);
        else push({ kind: 'mean', layer: n.name, inputs: [src[0]], output: out, keepDims: Boolean(n.attr?.keep_dims?.b) });
        break;
      }
      case 'ConcatV2':
      case 'Concat': {
        const axisAt = n.op === 'ConcatV2' ? src.length - 1 : 0;
        const axis = constOf(axisAt);
        const parts = src.filter((_, k) => k !== axisAt);
        if (!axis) bad('axis is not a constant');
        else if (parts.some((p) => consts.has(p))) bad('constant operands');
        else push({ kind: 'concat', layer: n.name, inputs: parts, output: out, axis: axis.values[0] < 0 ? axis.values[0] + shape.length : axis.values[0] });
        break;
      }
      case 'Reshape':
      case 'Squeeze':
        push({ kind: 'reshape', layer: n.name, inputs: [src[0]], output: out, shape: [...shape] });
        break;
      case 'Pad':
      case 'PadV2': {
        const p = constOf(1);
        const value = n.op === 'PadV2' ? constOf(2)?.values[0] : 0;
        if (!p || p.shape.join() !== '4,2') bad('paddings are not a constant 4×2 tensor');
        else if (value !== 0) bad(`pads with ${value ?? 'a non-constant value'} (TFLite PAD pads with zero)`);
        else push({ kind: 'pad', layer: n.name, inputs: [src[0]], output: out, paddings: [0, 1, 2, 3].map((r) => [p.values[2 * r], p.values[2 * r + 1]] as [number, number]) });
        break;
      }
      default:
        bad();
    }
  }
  if (g.inputs.length !== 1 && !unsupported.length) unsupported.push(`Placeholder (${g.inputs.length} model inputs; one is converted)`);
  if (unsupported.length) throw errUnsupportedOp('tfjs', unsupported, { operation: 'convert to TFLite' });
  g.outputs = outputs.map((o) => alias.get(tensorName(o)) ?? tensorName(o));
  mergeAffines(g);
  return fuseIr(g);
}

function transpose(v: Float32Array | Int32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = v[i * c + j];
  return out;
}

function batchNormFrom([gamma, beta, mean, variance]: (GraphConst | undefined)[], epsilon: number): { scale: Float32Array; shift: Float32Array } | undefined {
  if (!gamma || !beta || !mean || !variance) return undefined;
  const c = mean.values.length;
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    scale[i] = gamma.values[i] / Math.sqrt(variance.values[i] + epsilon);
    shift[i] = beta.values[i] - mean.values[i] * scale[i];
  }
  return { scale, shift };
}

/**
 * Chains of per-channel affine maps (x·2 then −1, as image models normalize their input) become
 * one, so they cost one int8 op and one rounding, not one per map.
 */
function mergeAffines(g: IrGraph): void {
  for (let k = g.ops.length - 1; k >= 0; k--) {
    const op = g.ops[k];
    if (op.kind !== 'batchnorm') continue;
    const prod = g.ops.find((p) => p.output === op.inputs[0]);
    const readers = g.ops.filter((p) => p.inputs.includes(op.inputs[0])).length;
    if (!prod || prod.kind !== 'batchnorm' || readers !== 1 || g.outputs.includes(prod.output)) continue;
    for (let c = 0; c < op.scale.length; c++) {
      prod.shift[c] = prod.shift[c] * op.scale[c] + op.shift[c];
      prod.scale[c] *= op.scale[c];
    }
    g.shapes.delete(prod.output);
    prod.output = op.output;
    prod.layer = `${prod.layer}+${op.layer}`;
    g.ops.splice(k, 1);
    g.changes.push({ kind: 'merge-affine', node: op.layer, detail: `per-channel affine ${op.layer} merged into ${prod.layer}` });
  }
}

