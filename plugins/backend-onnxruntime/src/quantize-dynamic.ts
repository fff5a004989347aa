// Dynamic quantization: int8 weights ahead of time, activations quantized per run by the kernel.
import { errUnsupportedOp, quantizeWeights, type GraphChange, type NodeDecision, type QuantizeOptions } from '@qforge/core';
import { GraphIndex, attrInt, makeNode, makeTensor, tensorToFloat32, topologicalSort, uniqueNamer, type ModelProto, type NodeProto } from '@qforge/onnx';
import { dropUnusedInitializers } from './prepare';
import { selectWeightedNodes } from './selection';

export const DYNAMIC_OP_TYPES = ['MatMul', 'Gemm'] as const;
const MS_DOMAIN = 'com.microsoft';

/**
 * Rewrites MatMul/Gemm with constant weights to ONNX Runtime's fused `DynamicQuantizeMatMul`
 * (com.microsoft): the weight is stored int8 with per-column scales; the activation is quantized
 * to uint8 at run time inside the kernel, so no separate quantize/cast/mul nodes run.
 */
export function quantizeDynamic(proto: ModelProto, opts: QuantizeOptions): { decisions: NodeDecision[]; changes: GraphChange[] } {
  const g = proto.graph;
  const requested = opts.opTypes.length ? opts.opTypes : [...DYNAMIC_OP_TYPES];
  const unknown = requested.filter((t) => !(DYNAMIC_OP_TYPES as readonly string[]).includes(t));
  if (unknown.length) throw errUnsupportedOp('onnxruntime', unknown, { operation: 'dynamic quantization', supported: DYNAMIC_OP_TYPES.join(',') });
  if (opts.weightType !== 'int8') throw errUnsupportedOp('onnxruntime', [`DynamicQuantizeMatMul with ${opts.weightType} weights`], { hint: 'use --weight-type int8' });
  const idx = new GraphIndex(g);
  const name = uniqueNamer(g);
  const decisions: NodeDecision[] = [];
  const excluded = new Set(opts.excludeNodes);
  const replaced = new Map<NodeProto, NodeProto>();
  let released = 0;
  for (const { node: n, name: nodeName, weight: w } of selectWeightedNodes(g.node, idx, { opTypes: new Set(requested), excluded, weightRank: 2 }, decisions)) {
    const skip = (reason: string) => decisions.push({ node: nodeName, opType: n.opType, quantized: false, reason });
    let [k, cols] = w.dims.map(Number);
    const transposed = n.opType === 'Gemm' && attrInt(n, 'transB', 0) === 1;
    const outputs = transposed ? k : cols;
    const bias = n.opType === 'Gemm' && n.input[2] ? idx.initializers.get(n.input[2]) : undefined;
    if (n.opType === 'Gemm' && n.input[2] && !(bias && bias.dims.length === 1 && Number(bias.dims[0]) === outputs)) {
      skip('Gemm bias is not a constant vector of output size');
      continue;
    }
    let data = tensorToFloat32(w);
    if (transposed) {
      // DynamicQuantizeMatMul takes B as [K, N]; transpose [N, K] once, offline.
      const t = new Float32Array(data.length);
      for (let r = 0; r < k; r++) for (let c = 0; c < cols; c++) t[c * k + r] = data[r * cols + c];
      data = t;
      [k, cols] = [cols, k];
    }
    const rangeOpts = { type: 'int8' as const, symmetric: true, reduceRange: opts.reduceRange };
    const { values, scales } = quantizeWeights(data, [k, cols], opts.perChannel ? 1 : undefined, rangeOpts);
    const base = n.input[1];
    const qName = name(`${base}_quantized`);
    const sName = name(`${base}_scale`);
    const zName = name(`${base}_zero_point`);
    const shape = scales.length > 1 ? [scales.length] : [];
    g.initializer.push(makeTensor(qName, [k, cols], Int8Array.from(values)), makeTensor(sName, shape, scales), makeTensor(zName, shape, new Int8Array(scales.length)));
    const inputs = [n.input[0], qName, sName, zName];
    if (bias) inputs.push(bias.name);
    replaced.set(n, makeNode('DynamicQuantizeMatMul', inputs, [n.output[0]], name(`${nodeName}_DynamicQuantizeMatMul`), [], MS_DOMAIN));
    decisions.push({ node: nodeName, opType: n.opType, quantized: true, weightType: 'int8', granularity: scales.length > 1 ? 'per-channel' : 'per-tensor' });
    // The float weight goes as soon as its int8 copy exists (unless another node or scope still reads
    // it): a large model then never holds both, which keeps peak memory near the model's size.
    if (idx.consumersOf(w.name).length === 1 && !idx.graphOutputNames.has(w.name)) {
      const at = g.initializer.indexOf(w);
      if (at >= 0) g.initializer.splice(at, 1);
      w.rawData = new Uint8Array(0);
      w.floatData = [];
      released++;
    }
  }
  g.node = g.node.map((n) => replaced.get(n) ?? n);
  if (replaced.size && !proto.opsetImport.some((o) => o.domain === MS_DOMAIN)) proto.opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  return { decisions, changes: [{ kind: 'dynamic-quantize', detail: `${replaced.size} MatMul/Gemm node(s) → DynamicQuantizeMatMul (int8 weights); ${released} float weight(s) released as they were replaced` }] };
}
