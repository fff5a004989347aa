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
  attrInt,
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
import { selectWeightedNodes } from './selection';

const MS_DOMAIN = 'com.microsoft';

/** Operators qforge quantizes statically: those with int8 kernels, and ConvTranspose (int8 weights only). */
export const STATIC_OP_TYPES = ['Conv', 'Gemm', 'MatMul', 'ConvTranspose'] as const;

/**
 * Ops that ONNX Runtime's CPU provider (1.30) runs as float even in QDQ form: `DQ → ConvTranspose
 * → Q` is not fused (measured: the optimized graph keeps DequantizeLinear → ConvTranspose). Q/DQ
 * on their activations would only add work and rounding, so only their weights are stored int8.
 */
const WEIGHT_ONLY = new Set(['ConvTranspose']);
const WEIGHT_ONLY_REASON =
  "runs as float ConvTranspose on int8 weights dequantized at each run: ONNX Runtime's CPU provider has no int8 ConvTranspose kernel (smaller file, not faster)";

/** Ops that only move or select values: their output shares the input's quantization parameters. */
const PASS_THROUGH = new Set(['MaxPool', 'Flatten', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze']);

/**
 * The tensors static quantization may need ranges for: inputs and outputs of quantizable ops, the
 * activations fused into them, and pass-through outputs. Calibration collects only these.
 */
export function calibrationTensors(proto: ModelProto): string[] {
  const idx = new GraphIndex(proto.graph);
  const wanted = new Set<string>();
  for (const n of proto.graph.node) {
    if ((STATIC_OP_TYPES as readonly string[]).includes(n.opType) && !WEIGHT_ONLY.has(n.opType)) {
      if (!idx.initializers.has(n.input[0])) wanted.add(n.input[0]);
      // A computed B (two activations into MatMul/Gemm) is quantized like an activation.
      if ((n.opType === 'MatMul' || n.opType === 'Gemm') && n.input[1] && !idx.initializers.has(n.input[1])) wanted.add(n.input[1]);
      // With a fused activation only its output is quantized; leaving the raw output alone also
      // lets the runtime keep Conv+activation fused while calibrating.
      const act = fusedActivation(idx, n.output[0]);
      wanted.add(act ? act.output[0] : n.output[0]);
    } else if (PASS_THROUGH.has(n.opType) && !idx.initializers.has(n.input[0])) {
      wanted.add(n.input[0]);
      wanted.add(n.output[0]);
    }
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

/**
 * The output-channel axis of a weight, where one scale per output channel can be expressed.
 * Conv weights are [C_out, C_in/g, k…] (axis 0, any rank). ConvTranspose weights are
 * [C_in, C_out/g, k…]: axis 1 is the output channel only when groups = 1; with groups > 1 it
 * indexes the channel within a group, so one per-axis scale would serve g output channels and
 * no per-output-channel bias scale could match it — per-tensor then.
 */
function weightAxis(node: NodeProto, rank: number): number | undefined {
  if (node.opType === 'Conv') return 0;
  if (node.opType === 'ConvTranspose') return attrInt(node, 'group', 1) === 1 ? 1 : undefined;
  if (node.opType === 'Gemm') return attrInt(node, 'transB', 0) ? 0 : 1;
  if (node.opType === 'MatMul') return rank === 2 ? 1 : undefined;
  return undefined;
}

export function quantizeStaticQdq(proto: ModelProto, table: CalibrationTable, opts: QuantizeOptions & { perAxisAllowed: boolean; opsetRefusal?: OpsetRefusal }): QdqResult {
  const g = proto.graph;
  const requested = opts.opTypes.length ? opts.opTypes : [...STATIC_OP_TYPES];
  const unknown = requested.filter((t) => !(STATIC_OP_TYPES as readonly string[]).includes(t));
  if (unknown.length) throw errUnsupportedOp('onnxruntime', unknown, { operation: 'static quantization', supported: STATIC_OP_TYPES.join(',') });
  const opTypes = new Set(requested);
  const excluded = new Set(opts.excludeNodes);
  const idx = new GraphIndex(g);
  const order = topologicalSort(g);
  const name = uniqueNamer(g);
  const decisions: NodeDecision[] = [];
  const changes: GraphChange[] = [];
  const quantNodes: NodeProto[] = [];
  const weightOnly: NodeProto[] = [];
  const computedB: NodeProto[] = [];
  const needsRange = (t: string, nodeName: string) => {
    if (!table.tensors[t]) throw errCalibTableMismatch(`no range for tensor ${t} (input of ${nodeName})`, { tensor: t, node: nodeName });
  };

  for (const { node: n, name: nodeName } of selectWeightedNodes(order, idx, { opTypes, excluded, computedB }, decisions)) {
    if (WEIGHT_ONLY.has(n.opType)) {
      weightOnly.push(n);
      continue;
    }
    needsRange(n.input[0], n.name || n.output[0]);
    quantNodes.push(n);
  }
  for (const n of computedB) {
    needsRange(n.input[0], n.name || n.output[0]);
    needsRange(n.input[1], n.name || n.output[0]);
    quantNodes.push(n);
  }
  const opset = opsetVersion(proto);
  if (opset < QDQ_MIN_OPSET && (quantNodes.length || weightOnly.length)) {
    const r = opts.opsetRefusal;
    throw errUnsupportedOp('onnxruntime', [r?.op ?? `opset ${opset}`], {
      operation: `opset upgrade ${opset} → ${QDQ_MIN_OPSET} (QuantizeLinear needs opset ${QDQ_MIN_OPSET})`,
      node: r?.node,
      reason: `${r?.reason ?? `the model is at opset ${opset}`}; re-export at opset 13 or later, or use --mode dynamic`,
    });
  }

  // Activation parameters: uint8/int8 asymmetric per tensor, full range (weights carry reduce-range);
  // uint16 around the nodes asked to keep 16-bit activations (W8A16).
  const a16 = new Set(opts.activation16Nodes ?? []);
  const unknownA16 = [...a16].filter((n) => !quantNodes.some((q) => (q.name || q.output[0]) === n));
  if (unknownA16.length) throw errInvalidOption('--a16-nodes', `not quantized nodes of this model: ${unknownA16.join(', ')}`, 'Name nodes from the report\'s decisions (or `qforge sensitivity`).');
  const wide = new Set<string>();
  const actParams = (tensor: string): QuantParams & { type: QuantType } => {
    const t = table.tensors[tensor];
    if (!t) throw errCalibTableMismatch(`no range for tensor ${tensor}`, { tensor });
    const type: QuantType = wide.has(tensor) ? 'uint16' : opts.activationType;
    return { ...scaleFromRange(t.range[0], t.range[1], { type }), type };
  };
  const outputOf = (n: NodeProto) => {
    const act = fusedActivation(idx, n.output[0]);
    return { act, y: act ? act.output[0] : n.output[0] };
  };
  for (const n of quantNodes) {
    if (!a16.has(n.name || n.output[0])) continue;
    wide.add(n.input[0]);
    wide.add(outputOf(n).y);
  }
  const qTensors = new Map<string, QuantParams & { type: QuantType }>();
  const outputPairs = new Set<string>();
  const floatOutputConvs = new Set<NodeProto>();
  for (const n of quantNodes) {
    qTensors.set(n.input[0], actParams(n.input[0]));
    if (computedB.includes(n)) qTensors.set(n.input[1], actParams(n.input[1]));
    const { act, y } = outputOf(n);
    if (act) changes.push({ kind: 'fuse-activation', node: n.name, detail: `${act.opType} absorbed into the output range of ${n.name || n.output[0]}` });
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
  // Share parameters through pass-through ops between quantized tensors, so no requantization happens.
  for (const n of order) {
    if (!PASS_THROUGH.has(n.opType)) continue;
    const p = qTensors.get(n.input[0]);
    const out = n.output[0];
    // A 16-bit tensor keeps its own parameters: sharing would narrow it back to 8 bits.
    if (!p || idx.graphOutputNames.has(out) || wide.has(out) || wide.has(n.input[0])) continue;
    const feedsInt8 = idx.consumersOf(out).every((c) => quantNodes.includes(c) || PASS_THROUGH.has(c.opType));
    if (feedsInt8) qTensors.set(out, p);
  }

  const zpArray = (type: QuantType) => (type === 'uint16' ? Uint16Array : type === 'int8' ? Int8Array : Uint8Array);
  const newNodes: NodeProto[] = [];
  const dqName = new Map<string, string>();
  const paramsByDq = new Map<string, QuantParams>();
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
    newNodes.push(makeNode('QuantizeLinear', [tensor, s, z], [q], name(`${tensor}_QuantizeLinear`), [], domain));
    newNodes.push(makeNode('DequantizeLinear', [q, s, z], [dq], name(`${tensor}_DequantizeLinear`), [], domain));
    dqName.set(tensor, dq);
    paramsByDq.set(dq, p);
  }
  for (const n of g.node) n.input = n.input.map((i) => dqName.get(i) ?? i);

  const weightCache = new Map<string, { dq: string; scales: Float32Array; histogram: ValueHistogram }>();
  const wType = opts.weightType;
  const WT = wType === 'uint8' ? Uint8Array : Int8Array;
  for (const n of [...quantNodes, ...weightOnly]) {
    if (computedB.includes(n)) {
      decisions.push({ node: n.name || n.output[0], opType: n.opType, quantized: true, activationType: opts.activationType, granularity: 'per-tensor', reason: 'both inputs are activations: each quantized per tensor from its calibrated range' });
      continue;
    }
    const wName = n.input[1];
    const w = idx.initializers.get(wName)!;
    const dims = w.dims.map(Number);
    const axis = opts.perChannel && opts.perAxisAllowed ? weightAxis(n, dims.length) : undefined;
    const symmetric = opts.symmetricWeights && wType.startsWith('int');
    const rangeOpts = { type: wType, symmetric, reduceRange: opts.reduceRange };
    const xParams = paramsByDq.get(n.input[0]);
    const b = n.input[2] && !WEIGHT_ONLY.has(n.opType) ? idx.initializers.get(n.input[2]) : undefined;
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
    const floatKernel = WEIGHT_ONLY.has(n.opType);
    const perTensorWhy = n.opType === 'ConvTranspose' && opts.perChannel && opts.perAxisAllowed && axis === undefined ? '; per-tensor: with groups > 1 the weight axis 1 is the output channel within a group, so no per-axis scale is one per output channel' : '';
    decisions.push({
      node: n.name || n.output[0],
      opType: n.opType,
      quantized: true,
      weightType: wType,
      activationType: floatKernel ? undefined : a16.has(n.name || n.output[0]) ? 'uint16' : opts.activationType,
      granularity: axis !== undefined ? 'per-channel' : 'per-tensor',
      weightHistogram: entry.histogram,
      ...(floatKernel ? { reason: WEIGHT_ONLY_REASON + perTensorWhy } : {}),
      ...(floatOutputConvs.has(n) ? { reason: 'runs as float Conv on dequantized int8 input and weights: its output is a graph output kept float for bias correction (QLinearConv has no float output)' } : {}),
    });
  }

  g.node.push(...newNodes);
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  if (wide.size && !proto.opsetImport.some((o) => o.domain === MS_DOMAIN)) proto.opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  changes.push({ kind: 'insert-qdq', detail: `${qTensors.size} activation tensor(s) and ${weightCache.size} weight(s) quantized${wide.size ? `; ${wide.size} activation tensor(s) at 16 bits around ${a16.size} node(s)` : ''}` });
  return { decisions, changes, quantizedTensors: [...qTensors.keys()] };
}
