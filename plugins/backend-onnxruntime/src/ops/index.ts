// The op-quantizer registry: op type → the family that quantizes it. Adding an op is one module and one line here.
import { leakyReluQuantizer, sigmoidQuantizer } from './activation';
import { concatQuantizer } from './concat';
import { convQuantizer, convTransposeQuantizer } from './conv';
import { elementwiseQuantizer } from './elementwise';
import { gemmQuantizer } from './gemm';
import { lstmQuantizer } from './lstm';
import { averagePoolQuantizer } from './pooling';
import { affineQuantizer } from './affine';
import { maxPoolQuantizer, padQuantizer, reshapeQuantizer, resizeQuantizer, sliceQuantizer } from './pass-through';
import type { OpQuantizer } from './types';

export type { AffineMap, OpContext, OpQuantizer, OpRole, OutputRule, QOperatorPattern } from './types';
export { affineMap } from './affine';

/** Every registered family. */
export const OP_QUANTIZERS: readonly OpQuantizer[] = [
  convQuantizer,
  convTransposeQuantizer,
  gemmQuantizer,
  lstmQuantizer,
  elementwiseQuantizer,
  averagePoolQuantizer,
  sigmoidQuantizer,
  leakyReluQuantizer,
  concatQuantizer,
  reshapeQuantizer,
  maxPoolQuantizer,
  resizeQuantizer,
  sliceQuantizer,
  padQuantizer,
  affineQuantizer,
];

const BY_OP_TYPE = new Map<string, OpQuantizer>();
for (const q of OP_QUANTIZERS) for (const t of q.opTypes) BY_OP_TYPE.set(t, q);

/** The family quantizing this op type (default ONNX domain only), if any. */
export function opQuantizer(opType: string, domain?: string): OpQuantizer | undefined {
  return domain && domain !== 'ai.onnx' ? undefined : BY_OP_TYPE.get(opType);
}

/** Op types the QDQ driver quantizes without `--op-types`: pass-through ops follow their input, LSTM has its own rewrite. */
export function defaultStaticOpTypes(): string[] {
  return OP_QUANTIZERS.filter((q) => q.byDefault && (q.role === 'weighted' || q.role === 'activation')).flatMap((q) => [...q.opTypes]);
}
