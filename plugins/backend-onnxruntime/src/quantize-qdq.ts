// Static QDQ quantization: Q/DQ pairs placed where ONNX Runtime fuses them into int8 kernels.
import {
  errCalibTableMismatch,
  errInvalidOption,
  errUnsupportedOp,
  quantizeBias,
  quantizeWeights,
  quantizeTensor,
  quantizeWithScales,
  scaleFromRange,
  widenScalesForBias,
  type CalibrationTable,
  type GraphChange,
  type NodeDecision,
  type QuantizeOptions,
  type QuantParams,
  type QuantType,
  type ValueHistogram,
  valueHistogram,
} from '@qforge/core';
import {
  DataType,
  GraphIndex,
  intAttr,
  makeNode,
  makeTensor,
  opsetVersion,
  tensorToFloat32,
  topologicalSort,
  uniqueNamer,
  type ModelProto,
  type NodeProto,
} from '@qforge/onnx';
import { QDQ_MIN_OPSET, dropUnusedInitializers, type OpsetRefusal } from './prepare';
import { OP_QUANTIZERS, defaultStaticOpTypes, opQuantizer, type AffineMap, type OpContext, type OpQuantizer } from './ops';

const MS_DOMAIN = 'com.microsoft';

/** Operators static quantization quantizes without `--op-types` (pass-through ops follow their input). */
export const STATIC_OP_TYPES: readonly string[] = defaultStaticOpTypes();

/** Op types `--op-types` accepts in static mode: every registered family but the recurrent one (its own rewrite). */
const STATIC_KNOWN = OP_QUANTIZERS.filter((q) => q.role !== 'recurrent').flatMap((q) => [...q.opTypes]);

/**
 * The tensors static quantization may need ranges for: the activation inputs and own-range outputs
 * of every registered family (after a fused Relu/Clip), and pass-through inputs and outputs.
 * Calibration collects only these. Works on `proto.graph` alone (a subgraph body is its own ModelProto).
 */
export function calibrationTensors(proto: ModelProto): string[] {
  const idx = new GraphIndex(proto.graph);
  const ctx: OpContext = { idx, opset: opsetVersion(proto) };
  const wanted = new Set<string>();
  for (const n of proto.graph.node) {
    const q = opQuantizer(n.opType, n.domain);
    if (!q || q.role === 'recurrent' || q.weightOnlyReason) continue;
    const inputs = q.activationInputs(n, ctx).map((i) => n.input[i]).filter((t) => t && !idx.initializers.has(t));
    if (q.role === 'pass-through') {
      if (!inputs.length) continue;
      inputs.forEach((t) => wanted.add(t));
      n.output.forEach((o) => o && wanted.add(o));
      continue;
    }
    inputs.forEach((t) => wanted.add(t));
    // With a fused activation only its output is quantized; leaving the raw output alone also
    // lets the runtime keep Conv+activation fused while calibrating.
    if (q.output(n, ctx).kind === 'own') wanted.add(outputTensor(idx, n, q));
  }
  return [...wanted].filter(Boolean);
}

export interface QdqResult {
  decisions: NodeDecision[];
  changes: GraphChange[];
  quantizedTensors: string[];
}

function fusedActivation(idx: GraphIndex, tensor: string): NodeProto | undefined {
  const consumers = idx.consumersOf(tensor);
  if (consumers.length !== 1 || idx.graphOutputNames.has(tensor)) return undefined;
  const c = consumers[0];
  if (c.opType === 'Relu') return c;
  if (c.opType === 'Clip') {
    const lo = c.input[1] ? idx.initializers.get(c.input[1]) : undefined;
    if (lo && tensorToFloat32(lo)[0] === 0) return c;
  }
  return undefined;
}

/** The tensor whose range a node's quantized output takes: a fused activation's output, else its own. */
function outputTensor(idx: GraphIndex, n: NodeProto, q: OpQuantizer): string {
  const act = q.fusesActivation ? fusedActivation(idx, n.output[0]) : undefined;
  return act ? act.output[0] : n.output[0];
}

type ActParams = QuantParams & { type: QuantType };

/** A quantized tensor whose integers are another tensor's: params = (root scale · factor, root zero point). */
interface Derivation {
  root: string;
  factor: number;
}

/** What static quantization decided before touching the graph. */
interface StaticPlan {
  selected: Map<NodeProto, OpQuantizer>;
  weightOnly: Map<NodeProto, OpQuantizer>;
  decisions: NodeDecision[];
  wide: Set<string>;
  qTensors: Map<string, ActParams>;
  constInputs: Set<string>;
  outputPairs: Set<string>;
  floatOutputConvs: Set<NodeProto>;
  fusedActivations: NodeProto[];
  sharedThrough: NodeProto[];
  /** Affine nodes that leave the graph, each with the tensor whose integers its output reuses. */
  relabeled: { node: NodeProto; y: string; root: string }[];
  /** Affine candidates whose relabel turned out impossible in this plan (they are planned again without it). */
  failedRelabels: NodeProto[];
}

interface PlanInput {
  idx: GraphIndex;
  ctx: OpContext;
  order: NodeProto[];
  table: CalibrationTable;
  opts: QuantizeOptions;
  opTypes: Set<string>;
  excluded: Set<string>;
  /** Affine nodes not to relabel (an earlier plan found it impossible). */
  noRelabel: Set<NodeProto>;
}

const nodeName = (n: NodeProto) => n.name || n.output[0];

function planStatic(p: PlanInput): StaticPlan {
  const { idx, ctx, order, table, opts, opTypes, excluded, noRelabel } = p;
  const decisions: NodeDecision[] = [];
  const selected = new Map<NodeProto, OpQuantizer>();
  const weightOnly = new Map<NodeProto, OpQuantizer>();
  const skip = (n: NodeProto, reason: string) => decisions.push({ node: nodeName(n), opType: n.opType, quantized: false, reason });
  const isConstant = (t: string) => idx.initializers.has(t);
  // Affine candidates: relabeled where their source or all their consumers are int8 (decided below).
  const affine = new Map<NodeProto, AffineMap>();
  for (const n of order) {
    const q = opQuantizer(n.opType, n.domain);
    const m = q?.affine?.(n, ctx);
    if (!m || noRelabel.has(n) || excluded.has(nodeName(n)) || idx.graphOutputNames.has(n.output[0])) continue;
    // hard-swish's `x + 3` before Clip(0, 6): with the family's kernel asked for, one QLinearAdd
    // with the Clip in its output range beats a relabel followed by a float Clip and a requantize.
    if (q!.fusesActivation && opTypes.has(n.opType) && fusedActivation(idx, n.output[0])) continue;
    affine.set(n, m);
  }
  const isPassThrough = (c: NodeProto) => affine.has(c) || opQuantizer(c.opType, c.domain)?.role === 'pass-through';
  const sourceOf = (c: NodeProto) => affine.get(c)?.input ?? c.input[0];

  for (const n of order) {
    const q = opQuantizer(n.opType, n.domain);
    if (!q || q.role === 'recurrent' || q.role === 'pass-through' || affine.has(n) || !opTypes.has(n.opType)) continue;
    if (excluded.has(nodeName(n))) {
      skip(n, 'excluded by the user (--exclude-nodes)');
      continue;
    }
    const refusal = q.refuse?.(n, ctx);
    if (refusal) {
      skip(n, refusal);
      continue;
    }
    if (q.weightOnlyReason) {
      weightOnly.set(n, q);
      continue;
    }
    const inputs = q.activationInputs(n, ctx).map((i) => n.input[i]);
    if (q.role === 'weighted') {
      // A weighted node without a range is a table for another graph: an error, as it always was.
      for (const t of inputs) if (!table.tensors[t]) throw errCalibTableMismatch(`no range for tensor ${t} (input of ${nodeName(n)})`, { tensor: t, node: nodeName(n) });
      selected.set(n, q);
      continue;
    }
    // Activation families read only float tensors with calibrated ranges, or float constants.
    const missing = inputs.find((t) => (isConstant(t) ? idx.initializers.get(t)!.dataType !== DataType.FLOAT : !table.tensors[t]));
    if (missing !== undefined) {
      skip(n, `input ${missing} is not a calibrated float tensor`);
      continue;
    }
    const rule = q.output(n, ctx);
    const y = outputTensor(idx, n, q);
    if (idx.graphOutputNames.has(y)) {
      skip(n, 'its output is a graph output: kept float (the int8 kernel has no float output)');
      continue;
    }
    if (rule.kind === 'own' && !table.tensors[y]) {
      skip(n, `output ${y} has no calibrated range`);
      continue;
    }
    selected.set(n, q);
  }
  // An int8 element-wise op between float neighbours only adds a quantize and a dequantize.
  const feedsFromInt8 = (t: string) => {
    let pr = idx.producer.get(t);
    while (pr && isPassThrough(pr)) pr = idx.producer.get(sourceOf(pr));
    return Boolean(pr && selected.has(pr));
  };
  for (const [n, q] of [...selected]) {
    if (q.role !== 'activation') continue;
    const inputs = q.activationInputs(n, ctx).map((i) => n.input[i]).filter((t) => !isConstant(t));
    const consumers = idx.consumersOf(outputTensor(idx, n, q));
    if (inputs.some(feedsFromInt8) || consumers.some((c) => selected.has(c))) continue;
    selected.delete(n);
    skip(n, 'neither its inputs nor its consumers run in int8: quantizing it alone would only add Q/DQ work');
  }

  // Activation parameters: uint8/int8 asymmetric per tensor, full range (weights carry reduce-range);
  // uint16 around the nodes asked to keep 16-bit activations (W8A16).
  const a16 = new Set(opts.activation16Nodes ?? []);
  const wide = new Set<string>();
  const rangeOf = (tensor: string): [number, number] => {
    const t = table.tensors[tensor];
    if (!t) throw errCalibTableMismatch(`no range for tensor ${tensor}`, { tensor });
    return [t.range[0], t.range[1]];
  };
  const paramsOf = (min: number, max: number, tensor: string): ActParams => {
    const type: QuantType = wide.has(tensor) ? 'uint16' : opts.activationType;
    return { ...scaleFromRange(min, max, { type }), type };
  };
  const actParams = (tensor: string): ActParams => paramsOf(...rangeOf(tensor), tensor);
  const activationInputsOf = (n: NodeProto, q: OpQuantizer) => q.activationInputs(n, ctx).map((i) => n.input[i]);
  for (const [n, q] of selected) {
    if (!a16.has(nodeName(n))) continue;
    for (const t of activationInputsOf(n, q)) if (!isConstant(t)) wide.add(t);
    wide.add(outputTensor(idx, n, q));
  }
  const qTensors = new Map<string, ActParams>();
  /** Float constants read by element-wise families, quantized from their values in the activation type. */
  const constInputs = new Set<string>();
  const outputPairs = new Set<string>();
  const floatOutputConvs = new Set<NodeProto>();
  const fusedActivations: NodeProto[] = [];
  for (const [n, q] of selected) {
    for (const t of activationInputsOf(n, q)) {
      if (isConstant(t)) constInputs.add(t);
      else if (!qTensors.has(t)) qTensors.set(t, actParams(t));
    }
  }
  /** Whether an int8 kernel reads the tensor, directly or through pass-through and affine nodes. */
  const readByInt8 = (t: string, depth = 0): boolean =>
    depth < 64 && idx.consumersOf(t).some((c) => selected.has(c) || (isPassThrough(c) && c.output.some((o) => o && readByInt8(o, depth + 1))));
  // Output rules after input ranges: a fixed output range (Sigmoid) wins over its consumer's calibrated one.
  for (const [n, q] of selected) {
    const act = q.fusesActivation ? fusedActivation(idx, n.output[0]) : undefined;
    const y = act ? act.output[0] : n.output[0];
    const rule = q.output(n, ctx);
    if (q.floatOutput?.(n, ctx) && !readByInt8(y)) continue;
    if (act) fusedActivations.push(n);
    if (rule.kind === 'fixed') {
      qTensors.set(y, paramsOf(rule.min, rule.max, y));
      continue;
    }
    if (!idx.graphOutputNames.has(y) && idx.consumersOf(y).length && table.tensors[y]) qTensors.set(y, actParams(y));
    // QLinearConv has no float output: a Conv whose output leaves the graph would run as float on
    // dequantized inputs. A Q/DQ pair before the graph output (which stays float) lets it run in int8.
    // Not with bias correction: the output quantizer's rounding offset is one it cannot remove, so
    // the output stays float and the decision says the Conv runs as float.
    else if (n.opType === 'Conv' && idx.graphOutputNames.has(y) && opts.biasCorrection) floatOutputConvs.add(n);
    else if (n.opType === 'Conv' && idx.graphOutputNames.has(y) && table.tensors[y]) {
      outputPairs.add(y);
      qTensors.set(y, actParams(y));
    }
  }

  // Pass-through and affine nodes, in graph order. Each quantized tensor derives from a root (a
  // tensor quantized from its own range): pass-through outputs share their input's parameters, an
  // affine output multiplies the scale.
  const derived = new Map<string, Derivation>();
  const derivationOf = (t: string): Derivation | undefined => derived.get(t) ?? (qTensors.has(t) ? { root: t, factor: 1 } : undefined);
  const sharedThrough: NodeProto[] = [];
  const relabeled: StaticPlan['relabeled'] = [];
  const failedRelabels: NodeProto[] = [];
  const feedsInt8 = (outs: string[]) => outs.every((o) => idx.consumersOf(o).every((c) => selected.has(c) || isPassThrough(c)));
  for (const n of order) {
    const m = affine.get(n);
    if (m) {
      const y = n.output[0];
      let d = derivationOf(m.input);
      let madeRoot = false;
      // A float source feeding only int8 consumers: quantizing the source instead of the output is
      // the same single rounding, and the node itself disappears. Not when float ops also read the
      // source: they would read it rounded too.
      const onlyInt8Readers = idx.consumersOf(m.input).every((c) => c === n || selected.has(c) || isPassThrough(c)) && !idx.graphOutputNames.has(m.input);
      if (!d && onlyInt8Readers && feedsInt8([y]) && table.tensors[m.input] && !wide.has(m.input)) {
        qTensors.set(m.input, actParams(m.input));
        d = { root: m.input, factor: 1 };
        madeRoot = true;
      }
      // Read by float ops, a relabel only trades the float op for a DequantizeLinear: it pays only
      // where int8 kernels read the output.
      if (!d || !feedsInt8([y]) || wide.has(d.root) || wide.has(y)) {
        if (madeRoot) qTensors.delete(m.input);
        failedRelabels.push(n);
        continue;
      }
      derived.set(y, { root: d.root, factor: d.factor * m.factor });
      relabeled.push({ node: n, y, root: d.root });
      continue;
    }
    const q = opQuantizer(n.opType, n.domain);
    if (q?.role !== 'pass-through' || q.affine) continue;
    const d = derivationOf(n.input[0]);
    const outs = n.output.filter(Boolean);
    // A 16-bit tensor keeps its own parameters: sharing would narrow it back to 8 bits.
    if (!d || outs.some((o) => idx.graphOutputNames.has(o) || wide.has(o)) || wide.has(n.input[0]) || q.refuse?.(n, ctx)) continue;
    if (!feedsInt8(outs)) continue;
    for (const o of outs) derived.set(o, d);
    sharedThrough.push(n);
  }
  for (const [t, d] of derived) {
    const r = qTensors.get(d.root)!;
    qTensors.set(t, { ...r, scale: r.scale * d.factor });
  }
  return { selected, weightOnly, decisions, wide, qTensors, constInputs, outputPairs, floatOutputConvs, fusedActivations, sharedThrough, relabeled, failedRelabels };
}

export function quantizeStaticQdq(proto: ModelProto, table: CalibrationTable, opts: QuantizeOptions & { perAxisAllowed: boolean; opsetRefusal?: OpsetRefusal }): QdqResult {
  const g = proto.graph;
  const requested = opts.opTypes.length ? opts.opTypes : [...STATIC_OP_TYPES];
  const unknown = requested.filter((t) => !STATIC_KNOWN.includes(t));
  if (unknown.length) throw errUnsupportedOp('onnxruntime', unknown, { operation: 'static quantization', supported: STATIC_KNOWN.join(',') });
  const opTypes = new Set(requested);
  const excluded = new Set(opts.excludeNodes);
  const idx = new GraphIndex(g);
  const opset = opsetVersion(proto);
  const ctx: OpContext = { idx, opset };
  const order = topologicalSort(g);
  const name = uniqueNamer(g);
  const isConstant = (t: string) => idx.initializers.has(t);
  // An affine node whose relabel proves impossible is planned again as an ordinary node (its
  // family's int8 kernel when asked for, else float); its neighbours' choices follow.
  const noRelabel = new Set<NodeProto>();
  let plan = planStatic({ idx, ctx, order, table, opts, opTypes, excluded, noRelabel });
  for (let round = 0; round < 4 && plan.failedRelabels.length; round++) {
    plan.failedRelabels.forEach((n) => noRelabel.add(n));
    plan = planStatic({ idx, ctx, order, table, opts, opTypes, excluded, noRelabel });
  }
  const { selected, weightOnly, decisions, wide, qTensors, constInputs, outputPairs, floatOutputConvs, sharedThrough, relabeled } = plan;
  const changes: GraphChange[] = plan.fusedActivations.map((n) => ({ kind: 'fuse-activation', node: n.name, detail: `${fusedActivation(idx, n.output[0])!.opType} absorbed into the output range of ${nodeName(n)}` }));
  if (opset < QDQ_MIN_OPSET && (selected.size || weightOnly.size)) {
    const r = opts.opsetRefusal;
    throw errUnsupportedOp('onnxruntime', [r?.op ?? `opset ${opset}`], {
      operation: `opset upgrade ${opset} → ${QDQ_MIN_OPSET} (QuantizeLinear needs opset ${QDQ_MIN_OPSET})`,
      node: r?.node,
      reason: `${r?.reason ?? `the model is at opset ${opset}`}; re-export at opset 13 or later, or use --mode dynamic`,
    });
  }
  const a16 = new Set(opts.activation16Nodes ?? []);
  const unknownA16 = [...a16].filter((x) => ![...selected.keys()].some((n) => nodeName(n) === x));
  if (unknownA16.length) throw errInvalidOption('--a16-nodes', `not quantized nodes of this model: ${unknownA16.join(', ')}`, 'Name nodes from the report\'s decisions (or `qforge sensitivity`).');
  const zpArray = (type: QuantType) => (type === 'uint16' ? Uint16Array : type === 'int8' ? Int8Array : Uint8Array);
  const newNodes: NodeProto[] = [];
  const dqName = new Map<string, string>();
  const paramsByDq = new Map<string, QuantParams>();
  const qdqOf = new Map<string, { q: NodeProto; dq: NodeProto }>();
  for (const [tensor, p] of qTensors) {
    if (outputPairs.has(tensor)) {
      // The graph output keeps its name: the producer writes a new tensor, the DequantizeLinear the output.
      const pre = name(`${tensor}_float`);
      // In-graph consumers keep reading the output name (now the DequantizeLinear), so the Conv's only consumer is the Q.
      for (const n of g.node) n.output = n.output.map((o) => (o === tensor ? pre : o));
      const s = name(`${tensor}_scale`);
      const z = name(`${tensor}_zero_point`);
      const q = name(`${tensor}_quantized`);
      g.initializer.push(makeTensor(s, [], Float32Array.from([p.scale])), makeTensor(z, [], zpArray(p.type).from([p.zeroPoint])));
      const domain = p.type === 'uint16' ? MS_DOMAIN : undefined;
      newNodes.push(makeNode('QuantizeLinear', [pre, s, z], [q], name(`${tensor}_QuantizeLinear`), [], domain));
      newNodes.push(makeNode('DequantizeLinear', [q, s, z], [tensor], name(`${tensor}_DequantizeLinear`), [], domain));
      continue;
    }
    const s = name(`${tensor}_scale`);
    const z = name(`${tensor}_zero_point`);
    const q = name(`${tensor}_quantized`);
    const dq = name(`${tensor}_dequantized`);
    g.initializer.push(makeTensor(s, [], Float32Array.from([p.scale])), makeTensor(z, [], zpArray(p.type).from([p.zeroPoint])));
    // 16-bit Q/DQ: ONNX Runtime's com.microsoft versions (the standard ops need opset 21).
    const domain = p.type === 'uint16' ? MS_DOMAIN : undefined;
    const qNode = makeNode('QuantizeLinear', [tensor, s, z], [q], name(`${tensor}_QuantizeLinear`), [], domain);
    const dqNode = makeNode('DequantizeLinear', [q, s, z], [dq], name(`${tensor}_DequantizeLinear`), [], domain);
    newNodes.push(qNode, dqNode);
    qdqOf.set(tensor, { q: qNode, dq: dqNode });
    dqName.set(tensor, dq);
    paramsByDq.set(dq, p);
  }
  for (const n of g.node) n.input = n.input.map((i) => dqName.get(i) ?? i);

  // Constants of element-wise ops: stored in the activation type (the int8 kernels take one type for both inputs).
  const constDq = new Map<string, string>();
  for (const c of constInputs) {
    const data = tensorToFloat32(idx.initializers.get(c)!);
    let lo = 0;
    let hi = 0;
    for (const v of data) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const p = scaleFromRange(lo, hi, { type: opts.activationType });
    const qName = name(`${c}_quantized`);
    const sName = name(`${c}_scale`);
    const zName = name(`${c}_zero_point`);
    const dq = name(`${c}_dequantized`);
    const AT = zpArray(opts.activationType);
    const dims = idx.initializers.get(c)!.dims.map(Number);
    g.initializer.push(makeTensor(qName, dims, AT.from(quantizeTensor(data, p, { type: opts.activationType }))), makeTensor(sName, [], Float32Array.from([p.scale])), makeTensor(zName, [], AT.from([p.zeroPoint])));
    newNodes.push(makeNode('DequantizeLinear', [qName, sName, zName], [dq], name(`${c}_DequantizeLinear`)));
    constDq.set(c, dq);
  }
  for (const n of selected.keys()) if (selected.get(n)!.role === 'activation') n.input = n.input.map((i) => constDq.get(i) ?? i);

  const weightCache = new Map<string, { dq: string; scales: Float32Array; histogram: ValueHistogram }>();
  const wType = opts.weightType;
  const WT = wType === 'uint8' ? Uint8Array : Int8Array;
  for (const [n, q] of [...selected, ...weightOnly]) {
    if (q.role === 'activation' || (q.role === 'weighted' && !isConstant(n.input[1]))) {
      decisions.push({
        node: nodeName(n),
        opType: n.opType,
        quantized: true,
        activationType: a16.has(nodeName(n)) ? 'uint16' : opts.activationType,
        granularity: 'per-tensor',
        reason: q.role === 'weighted' ? 'both inputs are activations: each quantized per tensor from its calibrated range' : `${q.family}: int8 kernel on quantized activations`,
      });
      continue;
    }
    const floatKernel = Boolean(q.weightOnlyReason);
    const wName = n.input[1];
    const w = idx.initializers.get(wName)!;
    const dims = w.dims.map(Number);
    const axis = opts.perChannel && opts.perAxisAllowed ? q.weightAxis?.(n, dims.length) : undefined;
    const symmetric = opts.symmetricWeights && wType.startsWith('int');
    const rangeOpts = { type: wType, symmetric, reduceRange: opts.reduceRange };
    const xParams = paramsByDq.get(n.input[0]);
    const b = n.input[2] && !floatKernel ? idx.initializers.get(n.input[2]) : undefined;
    const bias = b && xParams && b.dataType === DataType.FLOAT && b.dims.length === 1 ? tensorToFloat32(b) : undefined;
    const key = `${wName}|${axis}|${bias ? `${b!.name}|${xParams!.scale}` : ''}`;
    let entry = weightCache.get(key);
    if (!entry) {
      const data = tensorToFloat32(w);
      const r = quantizeWeights(data, dims, axis, rangeOpts);
      let values: ArrayLike<number> = r.values;
      const scales = r.scales;
      const zps = Array.from(r.zeroPoints);
      if (bias && xParams && (scales.length === 1 || scales.length === bias.length)) {
        const widened = widenScalesForBias(scales, bias, xParams.scale);
        if (widened.length) {
          values = axis !== undefined ? quantizeWithScales(data, dims, axis, scales, zps, rangeOpts) : quantizeTensor(data, { scale: scales[0], zeroPoint: zps[0] }, rangeOpts);
          changes.push({ kind: 'widen-weight-scale', node: n.name, detail: `${widened.length} channel(s) of ${wName} got larger scales so the int32 bias cannot overflow` });
        }
      }
      const qName = name(`${wName}_quantized`);
      const sName = name(`${wName}_scale`);
      const zName = name(`${wName}_zero_point`);
      const dq = name(`${wName}_dequantized`);
      const shape = axis !== undefined ? [scales.length] : [];
      g.initializer.push(makeTensor(qName, dims, WT.from(values)), makeTensor(sName, shape, scales), makeTensor(zName, shape, WT.from(zps)));
      newNodes.push(makeNode('DequantizeLinear', [qName, sName, zName], [dq], name(`${wName}_DequantizeLinear`), axis !== undefined ? [intAttr('axis', axis)] : []));
      entry = { dq, scales, histogram: valueHistogram(wName, data) };
      weightCache.set(key, entry);
    }
    n.input[1] = entry.dq;

    if (bias && xParams) {
      const channels = bias.length;
      const wScales = entry.scales.length === 1 ? new Float32Array(channels).fill(entry.scales[0]) : entry.scales;
      if (wScales.length === channels) {
        const qb = quantizeBias(bias, xParams.scale, wScales);
        const qName = name(`${b!.name}_quantized`);
        const sName = name(`${b!.name}_scale`);
        const zName = name(`${b!.name}_zero_point`);
        const dq = name(`${b!.name}_dequantized`);
        // Per-tensor weights give one bias scale: a scalar then, since DequantizeLinear has no
        // `axis` before opset 13 (the opset stays older when an upgrade would change meaning).
        const perAxis = entry.scales.length > 1;
        const sDims = perAxis ? [channels] : [];
        g.initializer.push(makeTensor(qName, [channels], qb.values), makeTensor(sName, sDims, perAxis ? qb.scales : qb.scales.slice(0, 1)), makeTensor(zName, sDims, new Int32Array(perAxis ? channels : 1)));
        newNodes.push(makeNode('DequantizeLinear', [qName, sName, zName], [dq], name(`${b!.name}_DequantizeLinear`), perAxis ? [intAttr('axis', 0)] : []));
        n.input[2] = dq;
      }
    }
    const perTensorWhy = n.opType === 'ConvTranspose' && opts.perChannel && opts.perAxisAllowed && axis === undefined ? '; per-tensor: with groups > 1 the weight axis 1 is the output channel within a group, so no per-axis scale is one per output channel' : '';
    decisions.push({
      node: nodeName(n),
      opType: n.opType,
      quantized: true,
      weightType: wType,
      activationType: floatKernel ? undefined : a16.has(nodeName(n)) ? 'uint16' : opts.activationType,
      granularity: axis !== undefined ? 'per-channel' : 'per-tensor',
      weightHistogram: entry.histogram,
      ...(floatKernel ? { reason: q.weightOnlyReason + perTensorWhy } : {}),
      ...(floatOutputConvs.has(n) ? { reason: 'runs as float Conv on dequantized int8 input and weights: its output is a graph output kept float for bias correction (QLinearConv has no float output)' } : {}),
    });
  }

  // An affine node leaves the graph: its output's DequantizeLinear reads its root's integers with
  // the derived scale and zero point, so the node and the Q that would requantize its output both go.
  const gone = new Set<NodeProto>();
  for (const r of relabeled) {
    const root = qdqOf.get(r.root);
    const y = qdqOf.get(r.y);
    if (!root || !y) continue;
    y.dq.input[0] = root.q.output[0];
    gone.add(r.node).add(y.q);
    const p = qTensors.get(r.y)!;
    changes.push({ kind: 'fold-affine-qparams', node: nodeName(r.node), detail: `${r.node.opType} by a scalar constant folded into a dequantization scale: ${r.y} reads ${r.root}'s integers at scale ${p.scale.toPrecision(4)}` });
  }
  g.node = g.node.filter((n) => !gone.has(n));
  g.node.push(...newNodes.filter((n) => !gone.has(n)));
  // Dequantizers left without readers by the relabels.
  const read = new Set(g.node.flatMap((n) => n.input));
  g.node = g.node.filter((n) => n.opType !== 'DequantizeLinear' || n.output.some((o) => read.has(o) || idx.graphOutputNames.has(o)));
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  if (wide.size && !proto.opsetImport.some((o) => o.domain === MS_DOMAIN)) proto.opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  const shared = `${sharedThrough.length ? `; ${sharedThrough.length} pass-through op(s) share their input's parameters` : ''}${relabeled.length ? `; ${relabeled.length} product(s) with a positive scalar constant folded into a dequantization scale` : ''}`;
  changes.push({ kind: 'insert-qdq', detail: `${qTensors.size} activation tensor(s) and ${weightCache.size} weight(s) quantized${constInputs.size ? `, ${constInputs.size} constant operand(s)` : ''}${shared}${wide.size ? `; ${wide.size} activation tensor(s) at 16 bits around ${a16.size} node(s)` : ''}` });
  return { decisions, changes, quantizedTensors: [...qTensors.keys()] };
}
