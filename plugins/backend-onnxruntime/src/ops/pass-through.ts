// Pass-through family: ops that only move or select values run on the integers when their output shares the input's parameters.
import { tensorToFloat32, type NodeProto } from '@qforge/onnx';
import type { OpContext, OpQuantizer } from './types';

/**
 * Shared by every pass-through family: quantized only where input 0 already is and every output
 * feeds an int8 consumer; ONNX Runtime then drops the `DQ → op → Q` pair around it.
 */
function passThrough(family: string, opTypes: readonly string[], refuse?: (node: NodeProto, ctx: OpContext) => string | undefined): OpQuantizer {
  return {
    family,
    opTypes,
    role: 'pass-through',
    byDefault: true,
    refuse,
    activationInputs: () => [0],
    output: () => ({ kind: 'shared' }),
    // Same parameters in and out: the op itself runs on the integers (MaxPool needs opset 12 for int8).
    toQOperator: (node, p) =>
      node.opType === 'MaxPool' && (p.opset < 12 || node.output.length > 1) ? undefined : { ...node, input: [p.x[0], ...node.input.slice(1)], output: [p.output] },
  };
}

export const reshapeQuantizer = passThrough('data movement', ['Flatten', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze']);

/** The maximum of quantized values is the quantized maximum (scales are positive). */
export const maxPoolQuantizer = passThrough('pooling', ['MaxPool']);

/** Nearest and linear interpolation of integers with shared parameters stay within the input's range. */
export const resizeQuantizer = passThrough('resize', ['Resize', 'Upsample']);

export const sliceQuantizer = passThrough('slicing', ['Slice', 'Split']);

/** Padding with 0 is exact in any asymmetric quantization (0 is the zero point); other constants are not. */
export const padQuantizer = passThrough('slicing', ['Pad'], (node, ctx) => {
  const value = node.input[2] ? ctx.idx.constantTensor(node.input[2]) : undefined;
  if (node.input[2] && !value) return 'pad value is computed: it cannot be checked against the quantization grid';
  const v = value ? tensorToFloat32(value)[0] : 0;
  return v === 0 ? undefined : `pads with ${v}, which the shared quantization grid may not hold exactly`;
});
