// fp16 mode: float16 weights and compute, float32 model inputs/outputs, numerically sensitive ops kept in float32.
import { errUnsupported, throwIfAborted, type GraphChange, type ModelRef, type NodeDecision, type QuantizeOptions, type QuantizeResult, type RunContext } from '@qforge/core';
import { DataType, attr, graphInputs, intAttr, loadModel, makeNode, subgraphsOf, tensorToFloat32, topologicalSort, uniqueNamer, type ModelProto, type NodeProto, type TensorProto } from '@qforge/onnx';
import { dropUnusedInitializers, prepareGraph } from './prepare';
import { writeQuantizeResult } from './write-model';

/**
 * Ops left in float32, with Casts around them: ONNX Runtime's float16 converter's default block
 * list (ranges, indices and sizes computed in half precision go wrong: Resize/Upsample scales,
 * Range, CumSum sums, TopK/NonMaxSuppression ties and boxes) plus classic-ML ops with no fp16 kernels.
 */
export const FP16_KEEP_FLOAT_OPS = [
  'ArrayFeatureExtractor', 'Binarizer', 'CastMap', 'CategoryMapper', 'CumSum', 'DictVectorizer', 'FeatureVectorizer', 'Imputer', 'LabelEncoder',
  'LinearClassifier', 'LinearRegressor', 'Max', 'Min', 'NonMaxSuppression', 'Normalizer', 'OneHotEncoder', 'RandomUniformLike', 'Range', 'Resize',
  'RoiAlign', 'SVMClassifier', 'SVMRegressor', 'Scaler', 'TopK', 'TreeEnsembleClassifier', 'TreeEnsembleRegressor', 'Upsample', 'ZipMap',
] as const;

const FP16_MAX = 65504;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits of a float, rounded to nearest even; beyond ±65504 it saturates (the caller counts those). */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7bff;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent; into 0x7c00 it becomes the largest finite.
  const rounded = half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0);
  return sign | Math.min(rounded, 0x7bff);
}

function toHalfTensor(t: TensorProto, name: string, saturated: { count: number }): TensorProto {
  const src = tensorToFloat32(t);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (Math.abs(v) > FP16_MAX && Number.isFinite(v)) saturated.count++;
    out[i] = floatToHalf(v);
  }
  return { name, dims: [...t.dims], dataType: DataType.FLOAT16, rawData: new Uint8Array(out.buffer) };
}

/** Element types of the graph's tensors, from inputs, initializers, value_info and per-op rules. */
function tensorTypes(proto: ModelProto): Map<string, number> {
  const g = proto.graph;
  const types = new Map<string, number>();
  for (const i of g.input) if (i.type?.tensorType?.elemType) types.set(i.name, i.type.tensorType.elemType);
  for (const t of g.initializer) types.set(t.name, t.dataType ?? 0);
  const known = new Map<string, number>();
  for (const v of [...g.valueInfo, ...g.output]) if (v.type?.tensorType?.elemType) known.set(v.name, v.type.tensorType.elemType);
  const BOOL_OUT = new Set(['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);
  const INT64_OUT = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero']);
  for (const n of topologicalSort(g)) {
    const first = types.get(n.input[0] ?? '') ?? 0;
    n.output.forEach((o, k) => {
      if (!o) return;
      let t: number;
      if (known.has(o)) t = known.get(o)!;
      else if (BOOL_OUT.has(n.opType)) t = DataType.BOOL;
      else if (INT64_OUT.has(n.opType)) t = DataType.INT64;
      else if (n.opType === 'Cast') t = Number(attr(n, 'to')?.i ?? 0);
      else if (n.opType === 'Constant') t = attr(n, 'value')?.t?.dataType ?? DataType.FLOAT;
      else if (n.opType === 'ConstantOfShape') t = attr(n, 'value')?.t?.dataType ?? DataType.FLOAT;
      else if (n.opType === 'Where') t = types.get(n.input[1]) ?? 0;
      else if ((n.opType === 'TopK' || n.opType === 'MaxPool' || n.opType === 'Unique') && k > 0) t = DataType.INT64;
      else t = first;
      types.set(o, t);
    });
  }
  return types;
}

/**
 * Converts the main graph in place. Float32 inputs get a Cast to float16 and float32 outputs a Cast
 * back, so callers feed and read float32 as before; ops of `keep` compute in float32 between Casts.
 */
export function convertToFloat16(proto: ModelProto, keep: readonly string[] = FP16_KEEP_FLOAT_OPS, excludeNodes: string[] = []): { decisions: NodeDecision[]; changes: GraphChange[] } {
  const g = proto.graph;
  if (g.node.some((n) => subgraphsOf(n).length)) throw errUnsupported('onnxruntime', '--mode fp16 on a model with If/Loop/Scan bodies', 'convert the bodies first, or use --mode dynamic or weight-only');
  const keepOps = new Set(keep);
  const excluded = new Set(excludeNodes);
  const kept = (n: NodeProto) => keepOps.has(n.opType) || excluded.has(n.name || n.output[0]) || (n.domain !== undefined && n.domain !== '' && n.domain !== 'ai.onnx');
  const types = tensorTypes(proto);
  const isFloat = (name: string) => types.get(name) === DataType.FLOAT;
  const name = uniqueNamer(g);
  const decisions: NodeDecision[] = [];
  const saturated = { count: 0 };
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  // Initializers read by converted nodes get a float16 copy; those read only by kept nodes stay float32.
  const halfOf = new Map<string, string>();
  const half = (t: TensorProto) => {
    if (!halfOf.has(t.name)) {
      const readOnlyByConverted = g.node.every((n) => !n.input.includes(t.name) || !kept(n));
      const h = toHalfTensor(t, readOnlyByConverted ? t.name : name(`${t.name}_fp16`), saturated);
      if (readOnlyByConverted) g.initializer[g.initializer.indexOf(t)] = h;
      else g.initializer.push(h);
      halfOf.set(t.name, h.name);
    }
    return halfOf.get(t.name)!;
  };
  const added: NodeProto[] = [];
  // Graph float32 inputs: one Cast each, read by the converted nodes.
  const inputHalf = new Map<string, string>();
  for (const i of graphInputs(g)) {
    if (!isFloat(i.name) || inits.has(i.name)) continue;
    const h = name(`${i.name}_fp16`);
    added.push(makeNode('Cast', [i.name], [h], name(`${i.name}_to_fp16`), [intAttr('to', DataType.FLOAT16)]));
    inputHalf.set(i.name, h);
  }
  const outputs = new Set(g.output.map((o) => o.name));
  const renamedOutputs = new Map<string, string>();
  // Float32 outputs of kept nodes that converted nodes read: each gets one Cast to float16.
  const keptOutHalf = new Map<string, string>();
  const keptProducers = new Set(g.node.filter(kept).flatMap((n) => n.output));
  let keptCount = 0;
  let converted = 0;
  for (const n of g.node) {
    const nodeName = n.name || n.output[0];
    if (kept(n)) {
      keptCount++;
      // Inputs arrive in float16 where a converted node made them; cast them back.
      n.input = n.input.map((x) => {
        if (!x || !isFloat(x) || inits.has(x) || inputHalf.has(x) || keptProducers.has(x)) return x;
        const f = name(`${x}_fp32`);
        added.push(makeNode('Cast', [x], [f], name(`${x}_to_fp32`), [intAttr('to', DataType.FLOAT)]));
        return f;
      });
      if (keepOps.has(n.opType) || excluded.has(nodeName)) decisions.push({ node: nodeName, opType: n.opType, quantized: false, reason: excluded.has(nodeName) ? 'excluded by the user (--exclude-nodes)' : `kept in float32: ${n.opType} is numerically sensitive in float16` });
      continue;
    }
    converted++;
    n.input = n.input.map((x) => {
      if (!x) return x;
      if (inputHalf.has(x)) return inputHalf.get(x)!;
      const t = inits.get(x);
      if (t && t.dataType === DataType.FLOAT) return half(t);
      if (keptProducers.has(x) && isFloat(x)) {
        if (!keptOutHalf.has(x)) {
          const h = name(`${x}_fp16`);
          added.push(makeNode('Cast', [x], [h], name(`${x}_to_fp16`), [intAttr('to', DataType.FLOAT16)]));
          keptOutHalf.set(x, h);
        }
        return keptOutHalf.get(x)!;
      }
      return x;
    });
    if (n.opType === 'Cast' && Number(attr(n, 'to')?.i) === DataType.FLOAT) n.attribute = [intAttr('to', DataType.FLOAT16)];
    for (const a of n.attribute) if (a.t && a.t.dataType === DataType.FLOAT && (n.opType === 'ConstantOfShape' || n.opType === 'Constant')) a.t = toHalfTensor(a.t, a.t.name ?? '', saturated);
    if (n.opType === 'ConstantOfShape' && !attr(n, 'value')) n.attribute.push({ name: 'value', type: 4, t: { name: '', dims: [1], dataType: DataType.FLOAT16, rawData: new Uint8Array(2) } });
    // A float output the caller reads comes back to float32 under its own name.
    n.output = n.output.map((o) => {
      if (!outputs.has(o) || !isFloat(o)) return o;
      const h = name(`${o}_fp16`);
      renamedOutputs.set(o, h);
      added.push(makeNode('Cast', [h], [o], name(`${o}_to_fp32`), [intAttr('to', DataType.FLOAT)]));
      return h;
    });
  }
  // Other readers of a renamed graph output read the float16 tensor.
  for (const n of g.node) if (!kept(n)) n.input = n.input.map((x) => renamedOutputs.get(x) ?? x);
  g.node.push(...added);
  // Intermediate float types changed: drop their value_info and let the runtime infer them.
  g.valueInfo = g.valueInfo.filter((v) => v.type?.tensorType?.elemType !== DataType.FLOAT);
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  const changes: GraphChange[] = [{ kind: 'fp16', detail: `${converted} node(s) compute in float16, ${halfOf.size} initializer(s) stored as float16, ${keptCount} node(s) kept in float32; inputs and outputs stay float32` }];
  if (saturated.count) changes.push({ kind: 'fp16', detail: `${saturated.count} weight value(s) beyond ±65504 saturated to the largest float16` });
  return { decisions, changes };
}

/** The fp16 run of the backend: load, prepare (Constant weights → initializers), convert, check, write. */
export async function convertModelToFloat16(model: ModelRef, options: QuantizeOptions, ctx: RunContext): Promise<QuantizeResult> {
  const loaded = loadModel(model.path);
  ctx.progress({ phase: 'prepare', current: 0, message: 'preparing the model' });
  const preparation = prepareGraph(loaded.proto);
  const { decisions, changes } = convertToFloat16(loaded.proto, FP16_KEEP_FLOAT_OPS, options.excludeNodes);
  throwIfAborted(ctx, 'fp16 conversion');
  ctx.progress({ phase: 'write', current: 0, message: options.output });
  return writeQuantizeResult(loaded.proto, options.output, { preparation: [...preparation, ...changes], decisions }, options.externalData);
}
