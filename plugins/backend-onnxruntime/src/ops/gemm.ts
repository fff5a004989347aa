// Matrix-product family: Gemm and MatMul, with a constant B (int8 weight) or a computed B (two activations).
import { attrInt, type GraphIndex, type NodeProto } from '@qforge/onnx';
import { gemmWithoutKernel, refuseWeighted } from './weighted';
import type { OpQuantizer } from './types';

/** A MatMul/Gemm whose B is computed: both inputs are activations quantized per tensor (attention scores · V). */
export function hasComputedB(node: NodeProto, idx: GraphIndex): boolean {
  return Boolean(node.input[1]) && !idx.initializers.has(node.input[1]) && !gemmWithoutKernel(node);
}

export const gemmQuantizer: OpQuantizer = {
  family: 'matrix product',
  opTypes: ['Gemm', 'MatMul'],
  role: 'weighted',
  byDefault: true,
  fusesActivation: true,
  refuse: (node, ctx) => (hasComputedB(node, ctx.idx) ? undefined : refuseWeighted(node, ctx.idx)),
  activationInputs: (node, ctx) => (hasComputedB(node, ctx.idx) ? [0, 1] : [0]),
  output: () => ({ kind: 'own' }),
  // Measured (ORT 1.30): a constant B becomes MatMulIntegerToFloat; a computed B stays a float
  // MatMul on dequantized inputs unless a Q follows (QLinearMatMul).
  floatOutput: (node, ctx) => !hasComputedB(node, ctx.idx),
  // Gemm's B is [K, N] ([N, K] with transB); a MatMul weight has one output axis only when 2-D.
  weightAxis: (node, rank) => (node.opType === 'Gemm' ? (attrInt(node, 'transB', 0) ? 0 : 1) : rank === 2 ? 1 : undefined),
  biasShift: gemmBiasShift,
  // ONNX has no QLinearGemm: Gemm stays QDQ.
  toQOperator: (node, p) =>
    node.opType === 'MatMul' && !p.bias ? { opType: 'QLinearMatMul', input: [...p.x, ...p.w, ...p.y], output: [p.output], name: `${node.name || node.output[0]}_QLinearMatMul`, attribute: [] } : undefined,
};

function gemmBiasShift(node: NodeProto, w: Float32Array, wDims: number[], mean: Float64Array): Float64Array {
  const trans = attrInt(node, 'transB', 0) === 1;
  const [r, c] = wDims;
  const n = trans ? r : c;
  const kDim = trans ? c : r;
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) for (let k = 0; k < kDim; k++) out[j] += w[trans ? j * kDim + k : k * n + j] * mean[k];
  return out;
}
