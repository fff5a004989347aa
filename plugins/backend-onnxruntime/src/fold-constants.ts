// Constant expressions exporters leave in graphs: weights reached through Identity (tied or shared
// weights in PyTorch exports), cast from float16/double (`Cast(to=FLOAT)`), transposed (Linear
// without bias) or rearranged by Slice/Concat/Unsqueeze/… of constants (LSTM gate reordering).
// Folding them lets the quantizer see the weights as the constants they are. One pass for all, in
// the top graph and every If/Loop/Scan body.
import type { GraphChange } from '@qforge/core';
import {
  DataType,
  attrInt,
  attrInts,
  int64ToNumber,
  makeTensor,
  opsetVersion,
  subgraphsOf,
  tensorToFloat32,
  tensorToInt64s,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from '@qforge/onnx';

type Values = Float32Array | BigInt64Array;
interface ConstValue {
  dims: number[];
  values: Values;
  /** The stored type: float16/double values are read as float32, and only a Cast to float may use them. */
  dataType: number;
}

function valueOf(t: TensorProto): ConstValue | undefined {
  const dims = t.dims.map(Number);
  if (t.dataType === DataType.FLOAT || t.dataType === DataType.FLOAT16 || t.dataType === DataType.DOUBLE) return { dims, values: tensorToFloat32(t), dataType: t.dataType };
  if (t.dataType === DataType.INT64) return { dims, values: BigInt64Array.from(tensorToInt64s(t), (v) => BigInt(v)), dataType: t.dataType };
  return undefined;
}

const count = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
const stridesOf = (dims: readonly number[]) => dims.map((_, k) => count(dims.slice(k + 1)));
const empty = (like: Values, n: number): Values => (like instanceof Float32Array ? new Float32Array(n) : new BigInt64Array(n));

/** Copies `out[i] = in[source(i)]` over every output position, row-major. */
function gather(input: ConstValue, outDims: number[], source: (index: number[]) => number[]): ConstValue {
  const inStrides = stridesOf(input.dims);
  const out = empty(input.values, count(outDims));
  const idx = new Array(outDims.length).fill(0);
  for (let i = 0; i < out.length; i++) {
    const src = source(idx);
    let off = 0;
    for (let k = 0; k < src.length; k++) off += src[k] * inStrides[k];
    out[i] = input.values[off];
    for (let k = outDims.length - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return { dims: outDims, values: out, dataType: input.dataType };
}

/** Transposes a value (axes reversed when `perm` is absent), as ONNX Transpose does. */
function transpose(x: ConstValue, perm?: number[]): ConstValue {
  const rank = x.dims.length;
  const p = perm ?? x.dims.map((_, k) => rank - 1 - k);
  return gather(x, p.map((a) => x.dims[a]), (idx) => {
    const src = new Array(rank);
    p.forEach((a, k) => (src[a] = idx[k]));
    return src;
  });
}

/** A float constant transposed (axes reversed by default), for passes that rewrite weights. */
export function transposeConstant(t: TensorProto, perm?: number[]): { dims: number[]; data: Float32Array } {
  const v = transpose({ dims: t.dims.map(Number), values: tensorToFloat32(t), dataType: DataType.FLOAT }, perm);
  return { dims: v.dims, data: v.values as Float32Array };
}

const ints = (v: ConstValue | undefined) => (v && v.values instanceof BigInt64Array ? Array.from(v.values, (x) => int64ToNumber(x)) : undefined);

/** Evaluates one node whose inputs are all constants, or returns undefined (not an op handled here). */
function evaluate(n: NodeProto, inputs: (ConstValue | undefined)[], opset: number): ConstValue | undefined {
  const x = inputs[0];
  if (!x) return undefined;
  if (n.opType === 'Cast') return attrInt(n, 'to', -1) === DataType.FLOAT && x.values instanceof Float32Array ? { ...x, dataType: DataType.FLOAT } : undefined;
  // Every other op keeps its input type: float16/double constants are only folded through a Cast.
  if (inputs.some((v) => v && v.dataType !== DataType.FLOAT && v.dataType !== DataType.INT64)) return undefined;
  const rank = x.dims.length;
  const norm = (a: number, r: number) => (a < 0 ? a + r : a);
  switch (n.opType) {
    case 'Unsqueeze': {
      const axes = opset >= 13 ? ints(inputs[1]) : attrInts(n, 'axes');
      if (!axes) return undefined;
      const outRank = rank + axes.length;
      const set = new Set(axes.map((a) => norm(a, outRank)));
      const dims: number[] = [];
      for (let k = 0, j = 0; k < outRank; k++) dims.push(set.has(k) ? 1 : x.dims[j++]);
      return { ...x, dims };
    }
    case 'Squeeze': {
      const axes = (opset >= 13 ? ints(inputs[1]) : attrInts(n, 'axes'))?.map((a) => norm(a, rank));
      const dims = x.dims.filter((d, k) => (axes ? !axes.includes(k) : d !== 1));
      return { ...x, dims };
    }
    case 'Reshape': {
      const shape = ints(inputs[1]);
      if (!shape) return undefined;
      const dims = shape.map((d, k) => (d === 0 ? x.dims[k] : d));
      const known = dims.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
      return { ...x, dims: dims.map((d) => (d === -1 ? count(x.dims) / known : d)) };
    }
    case 'Transpose':
      return transpose(x, attrInts(n, 'perm'));
    case 'Concat': {
      if (inputs.some((v) => !v)) return undefined;
      const axis = norm(attrInt(n, 'axis', 0), rank);
      const parts = inputs as ConstValue[];
      const dims = [...x.dims];
      dims[axis] = parts.reduce((a, p) => a + p.dims[axis], 0);
      const offsets = parts.map((_, k) => parts.slice(0, k).reduce((a, p) => a + p.dims[axis], 0));
      const out = empty(x.values, count(dims));
      const outStrides = stridesOf(dims);
      parts.forEach((p, k) => {
        const pStrides = stridesOf(p.dims);
        for (let i = 0; i < p.values.length; i++) {
          let off = 0;
          for (let d = 0; d < rank; d++) off += (Math.floor(i / pStrides[d]) % p.dims[d] + (d === axis ? offsets[k] : 0)) * outStrides[d];
          out[off] = p.values[i];
        }
      });
      return { dims, values: out, dataType: x.dataType };
    }
    case 'Slice': {
      if (opset < 10) return undefined;
      const starts = ints(inputs[1]);
      const ends = ints(inputs[2]);
      if (!starts || !ends) return undefined;
      const axes = (n.input[3] ? ints(inputs[3]) : starts.map((_, k) => k))?.map((a) => norm(a, rank));
      const steps = n.input[4] ? ints(inputs[4]) : starts.map(() => 1);
      if (!axes || !steps || steps.some((s) => s === 0)) return undefined;
      const begin = x.dims.map(() => 0);
      const step = x.dims.map(() => 1);
      const dims = [...x.dims];
      axes.forEach((a, k) => {
        const dim = x.dims[a];
        const s = steps[k];
        let st = starts[k] < 0 ? starts[k] + dim : starts[k];
        let en = ends[k] < 0 ? ends[k] + dim : ends[k];
        if (s > 0) {
          st = Math.min(Math.max(st, 0), dim);
          en = Math.min(Math.max(en, 0), dim);
        } else {
          st = Math.min(Math.max(st, 0), dim - 1);
          en = Math.min(Math.max(en, -1), dim - 1);
        }
        begin[a] = st;
        step[a] = s;
        dims[a] = Math.max(0, Math.ceil((en - st) / s));
      });
      return gather(x, dims, (idx) => idx.map((v, d) => begin[d] + v * step[d]));
    }
    default:
      return undefined;
  }
}

const FOLDED = new Set(['Cast', 'Unsqueeze', 'Squeeze', 'Reshape', 'Transpose', 'Concat', 'Slice']);

/** Replaces every read of `from` by `to` in a graph and the bodies below it. */
function renameReads(g: GraphProto, from: string, to: string): void {
  for (const n of g.node) {
    n.input = n.input.map((i) => (i === from ? to : i));
    for (const sub of subgraphsOf(n)) {
      // A body that defines the name itself shadows it: leave that body alone.
      if (sub.initializer.some((t) => t.name === from) || sub.node.some((m) => m.output.includes(from))) continue;
      renameReads(sub, from, to);
    }
  }
}

/**
 * Folds Identity of a constant (consumers read the constant itself, so tied weights stay one
 * tensor) and data-movement ops over constants, in the top graph and every body, with outer-scope
 * constants visible to bodies.
 */
export function foldConstantExpressions(proto: ModelProto, changes: GraphChange[]): void {
  const opset = opsetVersion(proto);
  let identities = 0;
  let folded = 0;
  const visit = (g: GraphProto, outer: Map<string, TensorProto>) => {
    const visible = new Map(outer);
    for (const t of g.initializer) visible.set(t.name, t);
    const outputs = new Set(g.output.map((o) => o.name));
    const keep: NodeProto[] = [];
    for (const n of g.node) {
      const isDefault = !n.domain || n.domain === 'ai.onnx';
      if (isDefault && n.opType === 'Identity' && visible.has(n.input[0]) && !outputs.has(n.output[0])) {
        renameReads(g, n.output[0], n.input[0]);
        identities++;
        continue;
      }
      if (isDefault && FOLDED.has(n.opType) && n.input.every((i) => !i || visible.has(i)) && !outputs.has(n.output[0])) {
        const value = evaluate(n, n.input.map((i) => (i ? valueOf(visible.get(i)!) : undefined)), opset);
        if (value) {
          const t = makeTensor(n.output[0], value.dims, value.values);
          g.initializer.push(t);
          visible.set(t.name, t);
          folded++;
          continue;
        }
      }
      keep.push(n);
    }
    g.node = keep;
    for (const n of g.node) for (const sub of subgraphsOf(n)) visit(sub, visible);
  };
  visit(proto.graph, new Map());
  if (identities) changes.push({ kind: 'fold-identity', detail: `${identities} Identity node(s) of constants removed: their consumers read the constant (shared weights stay one tensor)` });
  if (folded) changes.push({ kind: 'fold-constant-expression', detail: `${folded} Cast/Transpose/Slice/Concat/Reshape/… node(s) over constants computed into initializers (float16/double weights become float32)` });
}
