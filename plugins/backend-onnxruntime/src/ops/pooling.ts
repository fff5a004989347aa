// Average-pooling family: GlobalAveragePool and AveragePool → QLinearGlobalAveragePool / QLinearAveragePool.
import type { OpQuantizer } from './types';

/** An average of quantized values needs its own output range (it narrows the input's); MaxPool is pass-through. */
export const averagePoolQuantizer: OpQuantizer = {
  family: 'pooling',
  opTypes: ['GlobalAveragePool', 'AveragePool'],
  role: 'activation',
  byDefault: true,
  activationInputs: () => [0],
  output: () => ({ kind: 'own' }),
};
