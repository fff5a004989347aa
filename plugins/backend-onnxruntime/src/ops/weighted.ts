// Shared selection rule of the weighted families: a float constant weight at input[1].
import { DataType, attrFloat, attrInt, type GraphIndex, type NodeProto } from '@qforge/onnx';

/** Why a weighted node stays float, or undefined. A computed B of MatMul/Gemm is handled by the Gemm family. */
export function refuseWeighted(node: NodeProto, idx: GraphIndex): string | undefined {
  const w = idx.initializers.get(node.input[1]);
  if (!w || w.dataType !== DataType.FLOAT) return 'weight is not a float constant (two dynamic inputs)';
  if (gemmWithoutKernel(node)) return 'Gemm with transA or alpha/beta ≠ 1 has no int8 kernel';
  return undefined;
}

export function gemmWithoutKernel(n: NodeProto): boolean {
  return n.opType === 'Gemm' && (attrInt(n, 'transA', 0) !== 0 || attrFloat(n, 'alpha', 1) !== 1 || attrFloat(n, 'beta', 1) !== 1);
}
