// Default-domain opset upgrade from any opset ≥ 6: the ONNX version converter's rules for the ops exports use.
import type { GraphChange } from '@qforge/core';
import {
  GraphIndex,
  attr,
  attrFloat,
  attrInt,
  attrInts,
  attrString,
  makeTensor,
  opsetVersion,
  tensorToFloat32,
  uniqueNamer,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
} from '@qforge/onnx';

/** Tensor shapes observed in a real run of the float model (name → dims). */
export type ObservedShapes = Map<string, number[]>;

/** Why the graph cannot be raised to the opset asked for, naming the op that stops it. */
export interface OpsetRefusal {
  op: string;
  node: string;
  from: number;
  target: number;
  reason: string;
}

/** The oldest opset the rules below start from (opset 6 removed `consumed_inputs` everywhere). */
export const OLDEST_UPGRADABLE_OPSET = 6;

/**
 * Ops whose meaning does not change between opset 6 and 13 (types were only added, defaults kept,
 * or new optional inputs/outputs appeared), per the ONNX operator changelog and the version
 * converter's `CompatibleAdapter` registrations. Ops absent here and from `REWRITES` are refused.
 */
const COMPATIBLE = new Set([
  'Abs', 'Acos', 'Acosh', 'Asin', 'Asinh', 'Atan', 'Atanh', 'ArgMax', 'ArgMin', 'AveragePool', 'BitShift', 'Cast', 'Ceil',
  'Celu', 'Compress', 'Concat', 'Constant', 'ConstantOfShape', 'Conv', 'ConvInteger', 'ConvTranspose', 'Cos', 'Cosh', 'CumSum',
  'DepthToSpace', 'DequantizeLinear', 'Det', 'DynamicQuantizeLinear', 'Einsum', 'Elu', 'Erf', 'Exp', 'Expand', 'EyeLike',
  'Flatten', 'Floor', 'Gather', 'GatherElements', 'GatherND', 'GlobalAveragePool', 'GlobalLpPool', 'GlobalMaxPool',
  'GreaterOrEqual', 'HardSigmoid', 'Identity', 'InstanceNormalization', 'IsInf', 'IsNaN', 'LeakyRelu', 'LessOrEqual', 'Log',
  'LpNormalization', 'LpPool', 'LRN', 'MatMul', 'MatMulInteger', 'Max', 'MaxPool', 'MaxRoiPool', 'MaxUnpool', 'Mean',
  'MeanVarianceNormalization', 'Min', 'Mod', 'Neg', 'NonMaxSuppression', 'NonZero', 'Not', 'OneHot', 'PRelu', 'QLinearConv',
  'QLinearMatMul', 'QuantizeLinear', 'RandomNormal', 'RandomNormalLike', 'RandomUniform', 'RandomUniformLike', 'Range',
  'Reciprocal', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin',
  'ReduceProd', 'ReduceSumSquare', 'Relu', 'ReverseSequence', 'RoiAlign', 'Round', 'ScatterElements', 'ScatterND', 'Selu',
  'Shape', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh', 'Size', 'Softplus', 'Softsign', 'SpaceToDepth', 'Sqrt', 'StringNormalizer',
  'Sum', 'Tan', 'Tanh', 'ThresholdedRelu', 'Tile', 'Transpose', 'Where',
]);

/** Binary ops that had the legacy `broadcast`/`axis` attributes until opset 7 (numpy broadcasting since). */
const LEGACY_BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'And', 'Or', 'Xor', 'Equal', 'Greater', 'Less']);

interface RewriteContext {
  from: number;
  target: number;
  shapes: ObservedShapes;
  idx: GraphIndex;
  /** Adds an initializer under a fresh name and returns the name. */
  constant(base: string, dims: number[], data: Float32Array | BigInt64Array): string;
}

/** Rewrites `n` in place for the target opset; returns a refusal reason, or a note of what changed (or undefined: nothing to do). */
type Rewrite = (n: NodeProto, c: RewriteContext) => { refused: string } | { note: string } | undefined;

const dropAttrs = (n: NodeProto, ...names: string[]) => {
  const before = n.attribute.length;
  n.attribute = n.attribute.filter((a) => !names.includes(a.name));
  return before !== n.attribute.length;
};
const stringAttr = (name: string, s: string): AttributeProto => ({ name, type: 3, s: Buffer.from(s, 'utf8') });
const ints64 = (v: number[]) => BigInt64Array.from(v.map((x) => BigInt(x)));
const rankOf = (t: string, c: RewriteContext) => c.shapes.get(t)?.length ?? c.idx.initializers.get(t)?.dims.length;

/** Attribute `name` moves to input `position` (as an int64 initializer) at `since`. */
const intsToInput = (name: string, position: number, since: number): Rewrite => (n, c) => {
  if (c.from >= since || c.target < since) return undefined;
  const v = attrInts(n, name);
  if (!v) return undefined;
  while (n.input.length < position) n.input.push('');
  n.input[position] = c.constant(`${n.name || n.opType}_${name}`, [v.length], ints64(v));
  dropAttrs(n, name);
  return { note: `${name} attribute → input` };
};

/** Training-mode BatchNormalization/Dropout (is_test = 0 with extra outputs used) has no inference meaning to keep. */
function inferenceOnly(n: NodeProto, c: RewriteContext): string | undefined {
  if (c.from < 7 && attr(n, 'is_test') && attrInt(n, 'is_test', 0) === 0) return `${n.opType} in training mode (is_test = 0)`;
  const extra = n.output.slice(1).filter((o) => o && (c.idx.consumersOf(o).length || c.idx.graphOutputNames.has(o)));
  if (n.opType === 'BatchNormalization' && extra.length) return 'BatchNormalization with its training outputs in use';
  return undefined;
}

/** Upsample (1, 7, 9) → Resize, following the converter's Upsample_6_7, _8_9, _9_10 and Resize_10_11. */
const upsampleToResize: Rewrite = (n, c) => {
  const mode = (attrString(n, 'mode') ?? 'nearest') === 'nearest' ? 'nearest' : 'linear';
  let scales = n.input[1];
  const fromAttr = attr(n, 'scales')?.floats;
  if (fromAttr) scales = c.constant(`${n.name || 'upsample'}_scales`, [fromAttr.length], Float32Array.from(fromAttr));
  else if (attr(n, 'height_scale') || attr(n, 'width_scale')) {
    scales = c.constant(`${n.name || 'upsample'}_scales`, [4], Float32Array.from([1, 1, attrFloat(n, 'height_scale', 1), attrFloat(n, 'width_scale', 1)]));
  }
  if (!scales) return { refused: 'Upsample without scales' };
  n.opType = 'Resize';
  n.attribute = [stringAttr('mode', mode)];
  if (c.target >= 11) {
    // Upsample maps output index i to input i / scale (asymmetric) and takes the floor for nearest.
    n.input = [n.input[0], '', scales];
    n.attribute.push(stringAttr('coordinate_transformation_mode', 'asymmetric'));
    if (mode === 'nearest') n.attribute.push(stringAttr('nearest_mode', 'floor'));
  } else n.input = [n.input[0], scales];
  return { note: `Upsample → Resize (${mode})` };
};

const REWRITES: Record<string, Rewrite> = {
  Gemm: (n, c) => (c.from < 7 && dropAttrs(n, 'broadcast') ? { note: 'broadcast attribute dropped (C broadcasts unidirectionally since opset 7)' } : undefined),
  BatchNormalization: (n, c) => {
    const training = inferenceOnly(n, c);
    if (training) return { refused: training };
    if (c.from < 9 && attrInt(n, 'spatial', 1) !== 1) return { refused: 'BatchNormalization with spatial = 0 (per-element statistics) has no form after opset 8' };
    return dropAttrs(n, 'is_test', 'spatial', 'consumed_inputs') ? { note: 'is_test/spatial/consumed_inputs attributes dropped' } : undefined;
  },
  Dropout: (n, c) => {
    const training = inferenceOnly(n, c);
    if (training) return { refused: training };
    const mask = n.output[1];
    if (c.from < 10 && mask && (c.idx.consumersOf(mask).length || c.idx.graphOutputNames.has(mask))) return { refused: 'Dropout mask output in use (its type became bool at opset 10)' };
    const notes: string[] = [];
    if (dropAttrs(n, 'is_test')) notes.push('is_test dropped');
    const ratio = attr(n, 'ratio');
    if (c.from < 12 && c.target >= 12 && ratio) {
      n.input = [n.input[0], c.constant(`${n.name || 'dropout'}_ratio`, [], Float32Array.from([attrFloat(n, 'ratio', 0.5)]))];
      dropAttrs(n, 'ratio');
      notes.push('ratio attribute → input');
    }
    return notes.length ? { note: notes.join(', ') } : undefined;
  },
  Upsample: upsampleToResize,
  Resize: (n, c) => {
    if (c.from >= 11 || c.target < 11) return undefined;
    const mode = attrString(n, 'mode') ?? 'nearest';
    n.input = [n.input[0], '', n.input[1]];
    n.attribute.push(stringAttr('coordinate_transformation_mode', 'asymmetric'));
    if (mode === 'nearest') n.attribute.push(stringAttr('nearest_mode', 'floor'));
    return { note: 'roi input added, opset-10 coordinates (asymmetric, floor) made explicit' };
  },
  Reshape: (n, c) => {
    // Reshape-1 kept the shape as an attribute; some exporters still write it.
    const shape = attrInts(n, 'shape');
    if (!shape) return undefined;
    n.input = [n.input[0], c.constant(`${n.name || 'reshape'}_shape`, [shape.length], ints64(shape))];
    dropAttrs(n, 'shape', 'consumed_inputs');
    return { note: 'shape attribute → input' };
  },
  Clip: (n, c) => {
    if (c.from >= 11 || c.target < 11) return undefined;
    const lo = attrFloat(n, 'min', -3.4028234663852886e38);
    const hi = attrFloat(n, 'max', 3.4028234663852886e38);
    n.input = [n.input[0], c.constant(`${n.name || 'clip'}_min`, [], Float32Array.from([lo])), c.constant(`${n.name || 'clip'}_max`, [], Float32Array.from([hi]))];
    dropAttrs(n, 'min', 'max');
    return { note: 'min/max attributes → inputs' };
  },
  Pad: (n, c) => {
    if (c.from >= 11 || c.target < 11) return undefined;
    const pads = attrInts(n, 'pads') ?? [];
    n.input = [n.input[0], c.constant(`${n.name || 'pad'}_pads`, [pads.length], ints64(pads)), c.constant(`${n.name || 'pad'}_value`, [], Float32Array.from([attrFloat(n, 'value', 0)]))];
    dropAttrs(n, 'pads', 'value');
    return { note: 'pads/value attributes → inputs' };
  },
  Slice: (n, c) => {
    if (c.from >= 10 || c.target < 10) return undefined;
    const starts = attrInts(n, 'starts') ?? [];
    const ends = attrInts(n, 'ends') ?? [];
    const axes = attrInts(n, 'axes');
    n.input = [n.input[0], c.constant(`${n.name || 'slice'}_starts`, [starts.length], ints64(starts)), c.constant(`${n.name || 'slice'}_ends`, [ends.length], ints64(ends))];
    if (axes) n.input.push(c.constant(`${n.name || 'slice'}_axes`, [axes.length], ints64(axes)));
    dropAttrs(n, 'starts', 'ends', 'axes');
    return { note: 'starts/ends/axes attributes → inputs' };
  },
  TopK: (n, c) => {
    if (c.from >= 10 || c.target < 10) return undefined;
    n.input = [n.input[0], c.constant(`${n.name || 'topk'}_k`, [1], ints64([attrInt(n, 'k', 1)]))];
    dropAttrs(n, 'k');
    return { note: 'k attribute → input' };
  },
  Squeeze: intsToInput('axes', 1, 13),
  Unsqueeze: intsToInput('axes', 1, 13),
  ReduceSum: intsToInput('axes', 1, 13),
  Split: intsToInput('split', 1, 13),
  Scatter: (n, c) => {
    if (c.target < 11) return undefined;
    n.opType = 'ScatterElements';
    return { note: 'Scatter → ScatterElements (renamed at opset 11, same meaning)' };
  },
  LSTM: recurrent,
  GRU: recurrent,
  RNN: recurrent,
};
for (const op of ['Softmax', 'LogSoftmax', 'Hardmax']) REWRITES[op] = softmaxAxis;
for (const op of LEGACY_BROADCAST) REWRITES[op] = legacyBroadcast;

function recurrent(n: NodeProto, c: RewriteContext): { refused: string } | undefined {
  // output_sequence (until opset 7) decided whether Y was produced; opset 7 always can.
  return c.from < 7 && attr(n, 'output_sequence') ? { refused: `${n.opType} output_sequence attribute (removed at opset 7)` } : undefined;
}

/** Before 13 these flattened to 2-D at `axis`; from 13 they act on `axis` alone: the same exactly when `axis` is the last dimension. */
function softmaxAxis(n: NodeProto, c: RewriteContext): { refused: string } | undefined {
  if (c.target < 13) return undefined;
  const dims = c.shapes.get(n.input[0]);
  if (!dims) return { refused: `${n.opType} input shape unknown` };
  const axis = attrInt(n, 'axis', 1);
  const norm = axis < 0 ? axis + dims.length : axis;
  if (norm !== dims.length - 1) return { refused: `${n.opType} with axis ${axis} over rank ${dims.length} changes meaning at opset 13` };
  return undefined;
}

/**
 * Opset < 7 broadcast: B aligned to A starting at `axis` (default: the trailing dimensions).
 * Numpy broadcasting aligns trailing dimensions, so B gets trailing 1s where `axis` says otherwise
 * (the converter's BroadcastForwardCompatibility).
 */
function legacyBroadcast(n: NodeProto, c: RewriteContext): { refused: string } | { note: string } | undefined {
  if (c.from >= 7) return undefined;
  const broadcast = attrInt(n, 'broadcast', 0) === 1;
  const axisAttr = attr(n, 'axis');
  if (!dropAttrs(n, 'broadcast', 'axis', 'consumed_inputs')) return undefined;
  if (!broadcast || !axisAttr) return { note: 'broadcast attributes dropped (same alignment as numpy broadcasting)' };
  const rankA = rankOf(n.input[0], c);
  const rankB = rankOf(n.input[1], c);
  if (rankA === undefined || rankB === undefined) return { refused: `${n.opType} with broadcast axis and an input of unknown rank` };
  const axis = Number(axisAttr.i ?? 0);
  const trailing = rankA - axis - rankB;
  if (trailing === 0) return { note: 'broadcast attributes dropped (axis already trailing)' };
  const b = c.idx.initializers.get(n.input[1]);
  if (!b || trailing < 0) return { refused: `${n.opType} broadcasting a computed tensor from axis ${axis}` };
  n.input[1] = c.constant(`${n.input[1]}_broadcast`, [...b.dims.map(Number), ...new Array(trailing).fill(1)], Float32Array.from(tensorToFloat32(b)));
  return { note: `broadcast from axis ${axis} → B reshaped with ${trailing} trailing 1(s)` };
}

/** The tensors whose runtime shapes the upgrade needs: Softmax-family inputs and legacy-broadcast operands. */
export function upgradeShapeQuestions(proto: ModelProto): string[] {
  const from = opsetVersion(proto);
  if (from >= 13) return [];
  const out: string[] = [];
  for (const n of proto.graph.node) {
    if (n.domain && n.domain !== 'ai.onnx') continue;
    if (['Softmax', 'LogSoftmax', 'Hardmax'].includes(n.opType)) out.push(n.input[0]);
    else if (from < 7 && LEGACY_BROADCAST.has(n.opType) && attr(n, 'axis') && attrInt(n, 'broadcast', 0) === 1) out.push(n.input[0], n.input[1]);
  }
  return out;
}

/**
 * Raises the default-domain opset of `proto` to `target` in place, rewriting the ops whose
 * signature or meaning changed on the way. Returns the refusal (and leaves `proto` partly edited:
 * callers try on a copy) when an op has no defined upgrade or would change meaning.
 */
export function upgradeOpsetTo(proto: ModelProto, shapes: ObservedShapes, changes: GraphChange[], target: number): OpsetRefusal | undefined {
  const from = opsetVersion(proto);
  if (from >= target) return undefined;
  const g = proto.graph;
  const refuse = (n: NodeProto | undefined, reason: string): OpsetRefusal => ({ op: n?.opType ?? 'opset', node: n?.name || n?.output[0] || '', from, target, reason });
  if (from < OLDEST_UPGRADABLE_OPSET) return refuse(undefined, `opset ${from} is older than ${OLDEST_UPGRADABLE_OPSET}; qforge upgrades opset ${OLDEST_UPGRADABLE_OPSET} and later`);
  const notes = new Map<string, { count: number; nodes: string[] }>();
  // Bodies of If/Loop (and Scan from its opset-9 form on) hold nodes of the same opset: the same
  // rules apply to them, each with its own constants; the control-flow ops themselves kept their
  // meaning through opset 13 (the version converter treats them as compatible).
  const upgradeGraph = (graph: GraphProto): OpsetRefusal | undefined => {
    const name = uniqueNamer(graph);
    const ctx: RewriteContext = {
      from,
      target,
      shapes,
      idx: new GraphIndex(graph),
      constant(base, dims, data) {
        const n = name(base);
        graph.initializer.push(makeTensor(n, dims, data));
        return n;
      },
    };
    for (const n of graph.node) {
      if (n.domain && n.domain !== 'ai.onnx') continue;
      if (n.attribute.some((a) => a.g || a.graphs?.length)) {
        if (!(n.opType === 'If' || n.opType === 'Loop' || (n.opType === 'Scan' && from >= 9))) return refuse(n, `${n.opType} holds a subgraph, which the upgrade does not rewrite from opset ${from}`);
        for (const a of n.attribute) for (const body of a.g ? [a.g] : (a.graphs ?? [])) {
          const r = upgradeGraph(body);
          if (r) return r;
        }
        continue;
      }
      const rewrite = REWRITES[n.opType];
      if (!rewrite) {
        if (COMPATIBLE.has(n.opType)) continue;
        return refuse(n, `no upgrade rule for ${n.opType} from opset ${from} to ${target}`);
      }
      const r = rewrite(n, ctx);
      if (!r) continue;
      if ('refused' in r) return refuse(n, r.refused);
      const key = `${n.opType === 'Resize' && r.note.startsWith('Upsample') ? 'Upsample' : n.opType}: ${r.note}`;
      const entry = notes.get(key) ?? { count: 0, nodes: [] };
      entry.count++;
      if (entry.nodes.length < 3) entry.nodes.push(n.name || n.output[0]);
      notes.set(key, entry);
    }
    return undefined;
  };
  const refused = upgradeGraph(g);
  if (refused) return refused;
  for (const o of proto.opsetImport) if (!o.domain || o.domain === 'ai.onnx') o.version = target;
  // IR version 7 is the first that allows opset 13 (IR 5 for opset 10).
  const ir = target >= 13 ? 7 : 5;
  if ((proto.irVersion ?? 0) < ir) proto.irVersion = ir;
  const rewrites = [...notes].map(([k, v]) => `${k} ×${v.count} (${v.nodes.join(', ')}${v.count > v.nodes.length ? ', …' : ''})`);
  changes.push({ kind: 'opset-upgrade', detail: `opset ${from} → ${target}${rewrites.length ? `; ${rewrites.join('; ')}` : ''}` });
  return undefined;
}
