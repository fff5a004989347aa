// Rescale family: Div by a positive scalar constant (the `/ 6` of hard-swish) becomes a change of scale, no op at all.
import { DataType, tensorToFloat32, type NodeProto } from '@qforge/onnx';
import type { OpContext, OpQuantizer } from './types';

/** The factor the node multiplies by, when it is a positive finite scalar constant at input 1. */
export function rescaleFactor(node: NodeProto, ctx: OpContext): number | undefined {
  const c = ctx.idx.initializers.get(node.input[1]);
  if (!c || c.dataType !== DataType.FLOAT || c.dims.reduce((a, b) => a * Number(b), 1) !== 1) return undefined;
  const v = tensorToFloat32(c)[0];
  if (!(v > 0) || !Number.isFinite(v)) return undefined;
  return node.opType === 'Div' ? 1 / v : v;
}

/**
 * DQ(x_q, s, z) · f = DQ(x_q, s·f, z) exactly: the output reuses the input's integers with the scale
 * multiplied by f, and the node leaves the graph. Like a pass-through op, it applies only where its
 * input is quantized and its output feeds int8 consumers.
 */
export const rescaleQuantizer: OpQuantizer = {
  family: 'rescale',
  // Mul by a scalar belongs to the element-wise family (one family per op type); Div by a constant is always a rescale.
  opTypes: ['Div'],
  role: 'pass-through',
  byDefault: true,
  refuse: (node, ctx) => (rescaleFactor(node, ctx) === undefined ? 'not a product with a positive scalar constant' : undefined),
  activationInputs: () => [0],
  output: (node, ctx) => ({ kind: 'scaled', factor: rescaleFactor(node, ctx) ?? 1 }),
};
