// Affine family: Div by a positive scalar constant (the `/ 6` of hard-swish) becomes a change of scale, no op at all.
import { DataType, tensorToFloat32, type NodeProto } from '@qforge/onnx';
import type { AffineMap, OpContext, OpQuantizer } from './types';

/** The value of a finite float scalar constant, or undefined. */
function scalarConstant(t: string, ctx: OpContext): number | undefined {
  const c = ctx.idx.initializers.get(t);
  if (!c || c.dataType !== DataType.FLOAT || c.dims.reduce((a, b) => a * Number(b), 1) !== 1) return undefined;
  const v = tensorToFloat32(c)[0];
  return Number.isFinite(v) ? v : undefined;
}

/**
 * y = factor·x, when the node is `Mul`/`Div` by a positive scalar constant (x being the other
 * input). A positive factor keeps the scale positive; a negative one would need a negative scale.
 */
export function affineMap(node: NodeProto, ctx: OpContext): AffineMap | undefined {
  if (node.input.length !== 2 || (node.domain && node.domain !== 'ai.onnx')) return undefined;
  const [a, b] = node.input;
  const ca = scalarConstant(a, ctx);
  const cb = scalarConstant(b, ctx);
  if ((ca === undefined) === (cb === undefined)) return undefined;
  const input = ca === undefined ? a : b;
  const c = (ca ?? cb)!;
  switch (node.opType) {
    case 'Mul':
      return c > 0 ? { input, factor: c } : undefined;
    case 'Div':
      return cb !== undefined && c > 0 && Number.isFinite(1 / c) ? { input, factor: 1 / c } : undefined;
    // Sums (a zero-point shift) are not relabeled: exact on paper once the source's scale is snapped
    // to whole steps, but measured on PP-OCRv4 det the shifted models lost 3.8 dB before the Sigmoid
    // (map IoU 0.955 → 0.878) while products alone cost nothing; they stay element-wise nodes.
    default:
      return undefined;
  }
}

/**
 * DQ(x_q, s, z) / c = DQ(x_q, s / c, z) exactly: the output reuses the input's integers with the
 * scale divided by c, and the node leaves the graph (see `affine` in types.ts). Unlike `Mul`/`Add`,
 * `Div` has no int8 kernel to fall back to, so it belongs to this family alone.
 */
export const affineQuantizer: OpQuantizer = {
  family: 'affine',
  opTypes: ['Div'],
  role: 'pass-through',
  byDefault: true,
  refuse: (node, ctx) => (affineMap(node, ctx) ? undefined : 'not a division by a positive scalar constant'),
  activationInputs: () => [0],
  output: () => ({ kind: 'shared' }),
  affine: affineMap,
};
