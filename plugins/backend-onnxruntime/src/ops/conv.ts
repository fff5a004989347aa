// Convolution family: Conv (QLinearConv after fusion) and ConvTranspose (int8 weights, float kernel).
import { attrInt, type NodeProto } from '@qforge/onnx';
import { refuseWeighted } from './weighted';
import type { OpQuantizer } from './types';

/** Conv+activation → Q fuses into QLinearConv; the same output rule and pattern serve both ops. */
export const convQuantizer: OpQuantizer = {
  family: 'convolution',
  opTypes: ['Conv'],
  role: 'weighted',
  byDefault: true,
  fusesActivation: true,
  refuse: (node, ctx) => refuseWeighted(node, ctx.idx) ?? refuseConvRank(node, ctx.idx.initializers.get(node.input[1])!.dims.length),
  activationInputs: () => [0],
  output: () => ({ kind: 'own' }),
  // Conv weights are [C_out, C_in/g, k…]: axis 0 is the output channel at any rank.
  weightAxis: () => 0,
  biasShift: convBiasShift,
  toQOperator: (node, p) => ({
    opType: 'QLinearConv',
    input: [...p.x, ...p.w, ...p.y, ...(p.bias ? [p.bias] : [])],
    output: [p.output],
    name: `${node.name || node.output[0]}_QLinearConv`,
    attribute: node.attribute,
  }),
};

/**
 * ONNX Runtime's CPU provider (1.30) does not fuse `DQ → ConvTranspose → Q` (measured: the
 * optimized graph keeps DequantizeLinear → ConvTranspose). Q/DQ on its activations would only add
 * work and rounding, so only its weights are stored int8.
 */
export const convTransposeQuantizer: OpQuantizer = {
  family: 'convolution',
  opTypes: ['ConvTranspose'],
  role: 'weighted',
  byDefault: true,
  refuse: (node, ctx) => refuseWeighted(node, ctx.idx) ?? refuseConvRank(node, ctx.idx.initializers.get(node.input[1])!.dims.length),
  activationInputs: () => [],
  output: () => ({ kind: 'own' }),
  /**
   * ConvTranspose weights are [C_in, C_out/g, k…]: axis 1 is the output channel only when
   * groups = 1; with groups > 1 it indexes the channel within a group, so one per-axis scale would
   * serve g output channels and no per-output-channel bias scale could match it — per-tensor then.
   */
  weightAxis: (node) => (attrInt(node, 'group', 1) === 1 ? 1 : undefined),
  weightOnlyReason:
    "runs as float ConvTranspose on int8 weights dequantized at each run: ONNX Runtime's CPU provider has no int8 ConvTranspose kernel (smaller file, not faster)",
};

// 1-D to 3-D convolutions all have rank-3 to rank-5 weights (ONNX Runtime 1.30 fuses each Conv rank into QLinearConv).
function refuseConvRank(node: NodeProto, rank: number): string | undefined {
  return rank < 3 ? `${node.opType} weight of rank ${rank} is not [C, C/groups, kernel…]` : undefined;
}

/** Per-output-channel W·m for a per-input-channel mean m, grouped convolutions included. */
function convBiasShift(node: NodeProto, w: Float32Array, wDims: number[], mean: Float64Array): Float64Array {
  const [co, cig] = wDims;
  const k = wDims.slice(2).reduce((a, b) => a * b, 1);
  const perGroup = co / attrInt(node, 'group', 1);
  const out = new Float64Array(co);
  for (let c = 0; c < co; c++) {
    const g = Math.floor(c / perGroup);
    for (let ci = 0; ci < cig; ci++) {
      const m = mean[g * cig + ci];
      for (let j = 0; j < k; j++) out[c] += w[(c * cig + ci) * k + j] * m;
    }
  }
  return out;
}
