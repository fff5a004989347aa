// Element-wise family: Add and Mul (residual sums, SE-block scaling, hard-swish) → QLinearAdd / QLinearMul.
import type { OpQuantizer } from './types';

/**
 * Both inputs are quantized (a constant from its own values, in the activation type: the int8
 * kernels take one type for both), the output from its calibrated range or that of a fused Relu/Clip.
 */
export const elementwiseQuantizer: OpQuantizer = {
  family: 'element-wise',
  opTypes: ['Add', 'Mul'],
  role: 'activation',
  byDefault: true,
  fusesActivation: true,
  refuse: (node) => (node.input.length !== 2 ? `${node.opType} with ${node.input.length} inputs` : undefined),
  activationInputs: () => [0, 1],
  output: () => ({ kind: 'own' }),
};
