// Dynamic quantization: int8 weights ahead of time, activations quantized per run by the kernel; embedding tables int8.
import { errUnsupportedOp, quantizeWeights, type GraphChange, type NodeDecision, type QuantizeOptions } from '@qforge/core';
import { GraphIndex, attrInt, makeNode, makeTensor, opsetVersion, tensorToFloat32, topologicalSort, uniqueNamer, type ModelProto, type NodeProto } from '@qforge/onnx';
import { dropUnusedInitializers } from './prepare';
import { applyEmbeddingRewrite, computesWithTableTransposed, embeddingChange, gatherInt8Columns, gatherInt8Rows, selectEmbeddings } from './quantize-gather';
import { selectWeightedNodes } from './selection';

export const DYNAMIC_OP_TYPES = ['MatMul', 'Gemm', 'Gather'] as const;
const MS_DOMAIN = 'com.microsoft';

/**
 * Rewrites MatMul/Gemm with constant weights to ONNX Runtime's fused `DynamicQuantizeMatMul`
 * (com.microsoft): the weight is stored int8 with per-column scales; the activation is quantized
 * to uint8 at run time inside the kernel, so no separate quantize/cast/mul nodes run. Gathers over
 * a constant table (embeddings) store it int8 with one scale per row and dequantize the rows they
 * look up; a table tied to a quantized LM head reads the head's int8 weight instead of its own.
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
  const replaced = new Map<NodeProto, NodeProto[]>();
  let released = 0;
  const chosen = selectWeightedNodes(g.node, idx, { opTypes: new Set(requested.filter((t) => t !== 'Gather')), excluded, weightRank: 2 }, decisions);
  // Embedding tables tied to a chosen weight are found while both are still float.
  const wantGather = requested.includes('Gather');
  const tables = wantGather ? selectEmbeddings(g, idx, { excluded, replacedReaders: new Set(chosen.map((c) => c.node)) }, []) : [];
  const tiedTo = new Map<NodeProto, string>();
  for (const e of tables) {
    const head = chosen.find((c) => !tiedTo.has(c.node) && computesWithTableTransposed(c.weight, c.node.opType === 'Gemm' && attrInt(c.node, 'transB', 0) === 1, e.table));
    if (head) tiedTo.set(head.node, e.table.name);
  }
  const tiedStorage = new Map<string, { data: string; scale: string; perColumn: boolean; head: string }>();
  for (const { node: n, name: nodeName, weight: w } of chosen) {
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
    replaced.set(n, [makeNode('DynamicQuantizeMatMul', inputs, [n.output[0]], name(`${nodeName}_DynamicQuantizeMatMul`), [], MS_DOMAIN)]);
    const tied = tiedTo.get(n);
    if (tied) tiedStorage.set(tied, { data: qName, scale: sName, perColumn: scales.length > 1, head: nodeName });
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
  const matmuls = replaced.size;
  const lines = wantGather ? quantizeEmbeddingsInt8(proto, idx, { excluded, perRow: opts.perChannel, tiedStorage, replaced, name }, decisions) : [];
  g.node = g.node.flatMap((n) => replaced.get(n) ?? [n]);
  if (matmuls && !proto.opsetImport.some((o) => o.domain === MS_DOMAIN)) proto.opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  const changes: GraphChange[] = [{ kind: 'dynamic-quantize', detail: `${matmuls} MatMul/Gemm node(s) → DynamicQuantizeMatMul (int8 weights); ${released} float weight(s) released as they were replaced` }];
  if (lines.length) changes.push(embeddingChange('dynamic-quantize-gather', lines, 'int8 rows + DequantizeLinear'));
  return { decisions, changes };
}

/** Gathers over constant tables → int8 lookups (see quantize-gather.ts); returns one line per rewritten Gather. */
function quantizeEmbeddingsInt8(
  proto: ModelProto,
  idx: GraphIndex,
  o: { excluded: Set<string>; perRow: boolean; tiedStorage: Map<string, { data: string; scale: string; perColumn: boolean; head: string }>; replaced: Map<NodeProto, NodeProto[]>; name: (base: string) => string },
  decisions: NodeDecision[],
): string[] {
  const g = proto.graph;
  const opset = opsetVersion(proto);
  const lines: string[] = [];
  for (const e of selectEmbeddings(g, idx, { excluded: o.excluded, replacedReaders: new Set(o.replaced.keys()) }, decisions)) {
    const tie = o.tiedStorage.get(e.table.name);
    const perRow = tie ? tie.perColumn : o.perRow;
    // Per-row scales of gathered rows need per-axis DequantizeLinear (opset 13); one scale needs opset 10.
    const needed = perRow ? 13 : 10;
    if (opset < needed) {
      decisions.push({ node: e.name, opType: e.node.opType, quantized: false, reason: `${perRow ? 'per-row' : 'per-tensor'} DequantizeLinear needs opset ${needed}; the graph has opset ${opset}` });
      continue;
    }
    const rewrite = tie ? gatherInt8Columns(e, { data: tie.data, scale: tie.scale, perColumn: tie.perColumn }, o.name) : gatherInt8Rows(e, perRow, o.name);
    const scales = perRow ? 'one scale per row' : 'one scale for the table';
    const reason = tie
      ? `int8, ${scales}; tied to ${tie.head}: looks its rows up in that DynamicQuantizeMatMul's int8 weight (no table of its own), dequantizes only the rows gathered`
      : `int8, ${scales}, symmetric; Gather on the int8 table, DequantizeLinear of the rows gathered`;
    applyEmbeddingRewrite(g, e, rewrite, o.replaced, { weightType: 'int8', granularity: perRow ? 'per-channel' : 'per-tensor', reason, sharedWith: tie?.head }, { decisions, lines });
  }
  return lines;
}
