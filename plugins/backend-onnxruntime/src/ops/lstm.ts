// Recurrent family: LSTM → com.microsoft DynamicQuantizeLSTM: int8 weights stored ahead of time, the input and hidden
// state quantized per time step inside the kernel. ONNX Runtime has no static int8 LSTM, so this
// is the int8 path for recurrent layers in both static and dynamic mode.
import { quantizeWeights, type GraphChange, type NodeDecision } from '@qforge/core';
import { DataType, GraphIndex, makeNode, makeTensor, tensorToFloat32, uniqueNamer, type ModelProto, type NodeProto } from '@qforge/onnx';
import { dropUnusedInitializers } from '../prepare';
import type { OpQuantizer } from './types';

export const RECURRENT_OP_TYPES = ['LSTM'] as const;

/** Declared in the registry so `--op-types` and the capability notes know it; rewritten by `quantizeRecurrent`, not the QDQ driver. */
export const lstmQuantizer: OpQuantizer = {
  family: 'recurrent',
  opTypes: RECURRENT_OP_TYPES,
  role: 'recurrent',
  byDefault: true,
  activationInputs: () => [],
  output: () => ({ kind: 'own' }),
};
const MS_DOMAIN = 'com.microsoft';

export interface RecurrentOptions {
  perChannel: boolean;
  reduceRange: boolean;
  excludeNodes: readonly string[];
}

/**
 * Quantizes a W or R weight of shape [D, 4H, K] to int8 and transposes it to the kernel's
 * [D, K, 4H]. Per channel means per gate row ([D, 4H] scales), otherwise one scale per direction.
 */
function packWeight(data: Float32Array, dims: number[], opts: RecurrentOptions): { values: Int8Array; scales: Float32Array; scaleDims: number[] } {
  const [d, rows, k] = dims;
  const q = opts.perChannel
    ? quantizeWeights(data, [d * rows, k], 0, { type: 'int8', symmetric: true, reduceRange: opts.reduceRange })
    : quantizeWeights(data, [d, rows * k], 0, { type: 'int8', symmetric: true, reduceRange: opts.reduceRange });
  const values = new Int8Array(data.length);
  for (let dir = 0; dir < d; dir++) {
    const base = dir * rows * k;
    for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) values[base + c * rows + r] = q.values[base + r * k + c];
  }
  return { values, scales: q.scales, scaleDims: opts.perChannel ? [d, rows] : [d] };
}

export function quantizeRecurrent(proto: ModelProto, opts: RecurrentOptions): { decisions: NodeDecision[]; changes: GraphChange[] } {
  const g = proto.graph;
  const idx = new GraphIndex(g);
  const name = uniqueNamer(g);
  const excluded = new Set(opts.excludeNodes);
  const decisions: NodeDecision[] = [];
  const replaced = new Map<NodeProto, NodeProto>();
  for (const n of g.node) {
    if (n.opType !== 'LSTM' || (n.domain && n.domain !== 'ai.onnx')) continue;
    const nodeName = n.name || n.output[0];
    const skip = (reason: string) => decisions.push({ node: nodeName, opType: n.opType, quantized: false, reason });
    if (excluded.has(nodeName)) {
      skip('excluded by the user (--exclude-nodes)');
      continue;
    }
    const w = idx.initializers.get(n.input[1]);
    const r = idx.initializers.get(n.input[2]);
    if (!w || !r || w.dataType !== DataType.FLOAT || r.dataType !== DataType.FLOAT || w.dims.length !== 3 || r.dims.length !== 3) {
      skip('W or R is not a constant 3-D float weight');
      continue;
    }
    const packed = [w, r].map((t) => ({ t, ...packWeight(tensorToFloat32(t), t.dims.map(Number), opts) }));
    const names = packed.map(({ t, values, scales, scaleDims }) => {
      const dims = t.dims.map(Number);
      const q = name(`${t.name}_quantized`);
      const s = name(`${t.name}_scale`);
      const z = name(`${t.name}_zero_point`);
      g.initializer.push(makeTensor(q, [dims[0], dims[2], dims[1]], values), makeTensor(s, scaleDims, scales), makeTensor(z, scaleDims, new Int8Array(scales.length)));
      return { q, s, z };
    });
    // Inputs: X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale, W_zero_point, R_scale, R_zero_point.
    const optional = [3, 4, 5, 6, 7].map((i) => n.input[i] ?? '');
    const inputs = [n.input[0], names[0].q, names[1].q, ...optional, names[0].s, names[0].z, names[1].s, names[1].z];
    const q = makeNode(
      'DynamicQuantizeLSTM',
      inputs,
      [...n.output],
      name(`${nodeName}_DynamicQuantizeLSTM`),
      // ONNX Runtime runs only layout=0 LSTMs; the contrib op has no `layout` attribute.
      n.attribute.filter((a) => a.name !== 'layout'),
      MS_DOMAIN,
    );
    replaced.set(n, q);
    decisions.push({ node: nodeName, opType: n.opType, quantized: true, weightType: 'int8', granularity: opts.perChannel ? 'per-channel' : 'per-tensor', reason: 'int8 weights; input and hidden state quantized at run time (DynamicQuantizeLSTM)' });
  }
  if (!replaced.size) return { decisions, changes: [] };
  g.node = g.node.map((n) => replaced.get(n) ?? n);
  if (!proto.opsetImport.some((o) => o.domain === MS_DOMAIN)) proto.opsetImport.push({ domain: MS_DOMAIN, version: 1 });
  dropUnusedInitializers(proto);
  return { decisions, changes: [{ kind: 'dynamic-quantize', detail: `${replaced.size} LSTM node(s) → DynamicQuantizeLSTM (int8 weights, activations quantized at run time)` }] };
}

/** Splits `--op-types` into the recurrent ops and the rest; an empty list means every default. */
export function splitRecurrent(opTypes: readonly string[]): { recurrent: boolean; rest: string[]; onlyRecurrent: boolean } {
  if (!opTypes.length) return { recurrent: true, rest: [], onlyRecurrent: false };
  const rest = opTypes.filter((t) => !(RECURRENT_OP_TYPES as readonly string[]).includes(t));
  return { recurrent: rest.length < opTypes.length, rest, onlyRecurrent: rest.length === 0 };
}
