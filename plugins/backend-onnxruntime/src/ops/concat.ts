// Concat family → QLinearConcat: each input keeps its own parameters and is requantized to the output's.
import type { OpQuantizer } from './types';

/**
 * The output range covers every input, so no input clips. Inputs keep their own parameters: forcing
 * one grid on all of them would coarsen the narrow ones upstream, where it costs accuracy.
 */
export const concatQuantizer: OpQuantizer = {
  family: 'concat',
  opTypes: ['Concat'],
  role: 'activation',
  // Opt-in (`--op-types`) until latency-aware selection keeps it only where it is faster and accurate (docs/quantization.md).
  byDefault: false,
  activationInputs: (node) => node.input.map((_, i) => i),
  output: () => ({ kind: 'own' }),
};
