// Which nodes the dynamic and weight-only modes touch (MatMul/Gemm with a 2-D float constant
// weight), and why the others stay in float.
import type { NodeDecision } from '@qforge/core';
import type { GraphIndex, NodeProto, TensorProto } from '@qforge/onnx';
import { refuseWeighted } from './ops/weighted';

export interface Candidate {
  node: NodeProto;
  name: string;
  weight: TensorProto;
}

/**
 * Walks `nodes` and keeps those of `opTypes` whose weight passes the weighted families' rule
 * (ops/weighted.ts); every other node of those types gets a decision saying why it stays in float.
 */
export function selectWeightedNodes(nodes: NodeProto[], idx: GraphIndex, opts: { opTypes: Set<string>; excluded: Set<string>; weightRank?: number }, decisions: NodeDecision[]): Candidate[] {
  const out: Candidate[] = [];
  for (const n of nodes) {
    if (!opts.opTypes.has(n.opType) || (n.domain && n.domain !== 'ai.onnx')) continue;
    const name = n.name || n.output[0];
    const skip = (reason: string) => decisions.push({ node: name, opType: n.opType, quantized: false, reason });
    if (opts.excluded.has(name)) {
      skip('excluded by the user (--exclude-nodes)');
      continue;
    }
    const refused = refuseWeighted(n, idx);
    if (refused) {
      skip(refused);
      continue;
    }
    const w = idx.initializers.get(n.input[1])!;
    if (opts.weightRank !== undefined && w.dims.length !== opts.weightRank) {
      skip(`weight is not ${opts.weightRank}-D`);
      continue;
    }
    out.push({ node: n, name, weight: w });
  }
  return out;
}
