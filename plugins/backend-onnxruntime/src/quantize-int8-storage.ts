// Storage-only int8: weights stored int8 and dequantized once at load, float compute — the fallback that runs at fp32 speed.
import { quantizeWeights, type GraphChange, type NodeDecision } from '@qforge/core';
import { DataType, GraphIndex, intAttr, makeNode, makeTensor, tensorToFloat32, topologicalSort, uniqueNamer, type ModelProto } from '@qforge/onnx';
import { dropUnusedInitializers } from './prepare';
import { opQuantizer } from './ops';

/**
 * Each constant weight of a weighted family (Conv, ConvTranspose, Gemm, MatMul) becomes an int8
 * initializer → `Cast(float)` → `Mul(scale)`, symmetric, one scale per output channel. ONNX Runtime
 * constant-folds Cast and Mul of initializers when the session is created, so the optimized graph
 * is the fp32 graph (measured on ORT 1.30). `DequantizeLinear` is not used: ORT's constant folding
 * skips it (to keep QDQ patterns) and dequantizes the weights at every run instead.
 * Works on `proto.graph` alone (a subgraph body is its own ModelProto).
 */
export function storeWeightsInt8(proto: ModelProto, opts: { excludeNodes: readonly string[] }): { decisions: NodeDecision[]; changes: GraphChange[] } {
  const g = proto.graph;
  const idx = new GraphIndex(g);
  const name = uniqueNamer(g);
  const excluded = new Set(opts.excludeNodes);
  const decisions: NodeDecision[] = [];
  const stored = new Map<string, string>();
  const added = [];
  for (const n of g.node) {
    const q = opQuantizer(n.opType, n.domain);
    if (q?.role !== 'weighted') continue;
    const nodeName = n.name || n.output[0];
    const w = idx.initializers.get(n.input[1]);
    if (excluded.has(nodeName)) {
      decisions.push({ node: nodeName, opType: n.opType, quantized: false, reason: 'excluded by the user (--exclude-nodes)' });
      continue;
    }
    if (!w || w.dataType !== DataType.FLOAT) {
      decisions.push({ node: nodeName, opType: n.opType, quantized: false, reason: 'its weight is not a float32 constant' });
      continue;
    }
    const dims = w.dims.map(Number);
    const axis = q.weightAxis?.(n, dims.length);
    if (!stored.has(w.name)) {
      const r = quantizeWeights(tensorToFloat32(w), dims, axis, { type: 'int8', symmetric: true, reduceRange: false });
      const qName = name(`${w.name}_int8`);
      const sName = name(`${w.name}_scale`);
      const cast = name(`${w.name}_cast`);
      const out = name(`${w.name}_dequantized`);
      // The scale broadcasts along the output-channel axis (Mul aligns shapes from the right).
      const sDims = axis === undefined ? [] : dims.map((d, i) => (i === axis ? d : 1));
      g.initializer.push(makeTensor(qName, dims, Int8Array.from(r.values)), makeTensor(sName, sDims, r.scales));
      added.push(makeNode('Cast', [qName], [cast], name(`${w.name}_Cast`), [intAttr('to', DataType.FLOAT)]), makeNode('Mul', [cast, sName], [out], name(`${w.name}_Dequantize`)));
      stored.set(w.name, out);
    }
    n.input[1] = stored.get(w.name)!;
    decisions.push({
      node: nodeName,
      opType: n.opType,
      quantized: true,
      weightType: 'int8',
      granularity: axis === undefined ? 'per-tensor' : 'per-channel',
      reason: 'weights stored int8, dequantized once when the model loads; computes in float (runs at fp32 speed)',
    });
  }
  g.node.push(...added);
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  const changes: GraphChange[] = stored.size ? [{ kind: 'store-weights-int8', detail: `${stored.size} weight(s) stored int8 behind Cast+Mul, folded back to float32 by ONNX Runtime at load` }] : [];
  return { decisions, changes };
}
