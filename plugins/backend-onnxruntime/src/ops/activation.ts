// Activation family: Sigmoid and Softmax (fixed [0, 1] output) and LeakyRelu (own range) → ONNX Runtime's QLinear lookup kernels.
import type { OpQuantizer } from './types';

/**
 * Sigmoid and Softmax outputs lie in [0, 1] whatever the input: a fixed output range needs no
 * calibration and cannot clip (TFLite fixes them the same way).
 */
export const sigmoidQuantizer: OpQuantizer = {
  family: 'activation',
  opTypes: ['Sigmoid', 'Softmax'],
  role: 'activation',
  // Opt-in (`--op-types`) until latency-aware selection keeps it only where it is faster and accurate (docs/quantization.md).
  byDefault: false,
  activationInputs: () => [0],
  output: () => ({ kind: 'fixed', min: 0, max: 1 }),
};

export const leakyReluQuantizer: OpQuantizer = {
  family: 'activation',
  opTypes: ['LeakyRelu'],
  role: 'activation',
  // Opt-in (`--op-types`) until latency-aware selection keeps it only where it is faster and accurate (docs/quantization.md).
  byDefault: false,
  activationInputs: () => [0],
  output: () => ({ kind: 'own' }),
};
