// Element-wise family: Add and Mul (residual sums, SE-block scaling, hard-swish) → QLinearAdd / QLinearMul.
import type { OpContext, OpQuantizer } from './types';
import type { NodeProto } from '@qforge/onnx';
import { affineMap } from './affine';

/**
 * A constant operand is quantized on one 8-bit grid in the activation type (the int8 kernels take
 * one type and one scale per input): exact for a scalar such as hard-swish's +3, but it rounds the
 * per-channel gamma/beta vectors of a decomposed LayerNorm (measured on PP-OCRv4 rec: the CTC
 * logits fell from 14.5 to 8.7 dB), so those nodes stay float.
 */
function refuseElementwise(node: NodeProto, ctx: OpContext): string | undefined {
  if (node.input.length !== 2) return `${node.opType} with ${node.input.length} inputs`;
  for (const t of node.input) {
    const c = ctx.idx.initializers.get(t);
    if (c && c.dims.reduce((a, b) => a * Number(b), 1) !== 1) return `constant operand ${t} has ${c.dims.join('×')} values: one 8-bit grid would round them`;
  }
  return undefined;
}

/** Both inputs are quantized (a scalar constant from its value), the output from its calibrated range or that of a fused Relu/Clip. */
export const elementwiseQuantizer: OpQuantizer = {
  family: 'element-wise',
  opTypes: ['Add', 'Mul'],
  role: 'activation',
  // Opt-in (`--op-types`) until latency-aware selection keeps it only where it is faster and accurate (docs/quantization.md).
  byDefault: false,
  fusesActivation: true,
  refuse: refuseElementwise,
  activationInputs: () => [0, 1],
  output: () => ({ kind: 'own' }),
  // A product with a positive scalar (PP-LCNet's learnable affine scale) becomes a change of the
  // input's scale where int8 kernels read it: no QLinearMul and none of its requantization rounding.
  affine: affineMap,
};
