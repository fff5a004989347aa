// Average-pooling family: GlobalAveragePool and AveragePool → QLinearGlobalAveragePool / QLinearAveragePool.
import type { OpQuantizer } from './types';

/** An average of quantized values needs its own output range (it narrows the input's); MaxPool is pass-through. */
export const averagePoolQuantizer: OpQuantizer = {
  family: 'pooling',
  opTypes: ['GlobalAveragePool', 'AveragePool'],
  role: 'activation',
  // Opt-in (`--op-types`) until latency-aware selection keeps it only where it is faster and accurate (docs/quantization.md).
  byDefault: false,
  activationInputs: () => [0],
  output: () => ({ kind: 'own' }),
};
