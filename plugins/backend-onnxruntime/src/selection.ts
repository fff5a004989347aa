// Which nodes a quantization mode touches, and why the others stay in float.
import type { NodeDecision } from '@qforge/core';
import { DataType, attrFloat, attrInt, type GraphIndex, type NodeProto, type TensorProto } from '@qforge/onnx';

export interface Candidate {
  node: NodeProto;
  name: string;
  weight: TensorProto;
}

/**
 * Walks `nodes` and keeps those of `opTypes` with a float constant weight; every other node of
 * those types gets a decision saying why it stays in float.
 */
export function selectWeightedNodes(
  nodes: NodeProto[],
  idx: GraphIndex,
  opts: {
    opTypes: Set<string>;
    excluded: Set<string>;
    weightRank?: number;
    /** When given, MatMul/Gemm whose B is computed (two activations) are collected here instead of skipped. */
    computedB?: NodeProto[];
  },
  decisions: NodeDecision[],
): Candidate[] {
  const out: Candidate[] = [];
  for (const n of nodes) {
    if (!opts.opTypes.has(n.opType) || (n.domain && n.domain !== 'ai.onnx')) continue;
    const name = n.name || n.output[0];
    const skip = (reason: string) => decisions.push({ node: name, opType: n.opType, quantized: false, reason });
    if (opts.excluded.has(name)) {
      skip('excluded by the user (--exclude-nodes)');
      continue;
    }
    const w = idx.initializers.get(n.input[1]);
    if (!w && opts.computedB && (n.opType === 'MatMul' || n.opType === 'Gemm') && !gemmWithoutKernel(n)) {
      opts.computedB.push(n);
      continue;
    }
    if (!w || w.dataType !== DataType.FLOAT) {
      skip('weight is not a float constant (two dynamic inputs)');
      continue;
    }
    if (opts.weightRank !== undefined && w.dims.length !== opts.weightRank) {
      skip(`weight is not ${opts.weightRank}-D`);
      continue;
    }
    if (gemmWithoutKernel(n)) {
      skip('Gemm with transA or alpha/beta ≠ 1 has no int8 kernel');
      continue;
    }
    // Conv and ConvTranspose weights are [C_out, C_in/g, k…] and [C_in, C_out/g, k…]: 1-D to 3-D
    // convolutions all have them rank 3 to 5 (ONNX Runtime 1.30 fuses each Conv rank into QLinearConv).
    if ((n.opType === 'Conv' || n.opType === 'ConvTranspose') && w.dims.length < 3) {
      skip(`${n.opType} weight of rank ${w.dims.length} is not [C, C/groups, kernel…]`);
      continue;
    }
    out.push({ node: n, name, weight: w });
  }
  return out;
}

function gemmWithoutKernel(n: NodeProto): boolean {
  return n.opType === 'Gemm' && (attrInt(n, 'transA', 0) !== 0 || attrFloat(n, 'alpha', 1) !== 1 || attrFloat(n, 'beta', 1) !== 1);
}
