// QOperator format: rewrite the QDQ graph's fusable patterns into explicit integer operators
// (QLinearConv, QLinearMatMul), for runtimes that do not fuse QDQ themselves.
import type { GraphChange } from '@qforge/core';
import { GraphIndex, opsetVersion, tensorToFloat32, topologicalSort, type ModelProto, type NodeProto } from '@qforge/onnx';
import { dropUnusedInitializers } from './prepare';

/**
 * DQ(x) → Conv(DQ(w), DQ(b)) → [Relu] → Q(y)  becomes  QLinearConv(x_q, …, b_q) → y_q, and
 * DQ(a) → MatMul(DQ(b)) → Q(y) becomes QLinearMatMul. A Relu is dropped only when the output's
 * zero point is the type's minimum, where clamping already does it. Gemm stays QDQ (ONNX has no
 * QLinearGemm); the report lists what was converted.
 */
export function qdqToQOperator(proto: ModelProto): GraphChange[] {
  const g = proto.graph;
  const idx = new GraphIndex(g);
  const remove = new Set<NodeProto>();
  const add: NodeProto[] = [];
  let conv = 0;
  let matmul = 0;
  const dqOf = (t: string) => {
    const p = idx.producer.get(t);
    return p?.opType === 'DequantizeLinear' ? p : undefined;
  };
  for (const n of g.node) {
    if (n.opType !== 'Conv' && n.opType !== 'MatMul') continue;
    const dx = dqOf(n.input[0]);
    const dw = dqOf(n.input[1]);
    if (!dx || !dw || !idx.initializers.has(dw.input[0])) continue;
    let out = n.output[0];
    let relu: NodeProto | undefined;
    let consumers = idx.consumersOf(out);
    if (consumers.length === 1 && consumers[0].opType === 'Relu') {
      relu = consumers[0];
      out = relu.output[0];
      consumers = idx.consumersOf(out);
    }
    const q = consumers.length === 1 && consumers[0].opType === 'QuantizeLinear' ? consumers[0] : undefined;
    if (!q || idx.graphOutputNames.has(n.output[0]) || idx.graphOutputNames.has(out)) continue;
    if (relu) {
      const zp = idx.initializers.get(q.input[2] ?? '');
      const zpValue = zp ? tensorToFloat32(zp)[0] : 0;
      const signed = zp?.dataType === 3;
      if (zpValue !== (signed ? -128 : 0)) continue;
    }
    const [x, xs, xz] = dx.input;
    const [w, ws, wz] = dw.input;
    const [ys, yz] = [q.input[1], q.input[2]];
    if (!xz || !wz || !yz) continue;
    if (n.opType === 'Conv') {
      const inputs = [x, xs, xz, w, ws, wz, ys, yz];
      if (n.input[2]) {
        const db = dqOf(n.input[2]);
        if (!db || !idx.initializers.has(db.input[0])) continue;
        inputs.push(db.input[0]);
        remove.add(db);
      }
      add.push({ opType: 'QLinearConv', input: inputs, output: [q.output[0]], name: `${n.name || n.output[0]}_QLinearConv`, attribute: n.attribute });
      conv++;
    } else {
      add.push({ opType: 'QLinearMatMul', input: [x, xs, xz, w, ws, wz, ys, yz], output: [q.output[0]], name: `${n.name || n.output[0]}_QLinearMatMul`, attribute: [] });
      matmul++;
    }
    remove.add(n).add(q).add(dw);
    if (relu) remove.add(relu);
  }
  // Data-movement ops between integer tensors with the same parameters run on the integers.
  let moved = 0;
  const same = (a?: string, b?: string) => {
    const ta = a ? idx.initializers.get(a) : undefined;
    const tb = b ? idx.initializers.get(b) : undefined;
    return Boolean(ta && tb && ta.dataType === tb.dataType && tensorToFloat32(ta)[0] === tensorToFloat32(tb)[0]);
  };
  for (const n of g.node) {
    if (!['MaxPool', 'Flatten', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze'].includes(n.opType) || remove.has(n)) continue;
    if (n.opType === 'MaxPool' && (opsetVersion(proto) < 12 || n.output.length > 1)) continue;
    const dx = dqOf(n.input[0]);
    const cons = idx.consumersOf(n.output[0]);
    const q = cons.length === 1 && cons[0].opType === 'QuantizeLinear' ? cons[0] : undefined;
    if (!dx || !q || idx.graphOutputNames.has(n.output[0]) || !same(dx.input[1], q.input[1]) || !same(dx.input[2], q.input[2])) continue;
    n.input[0] = dx.input[0];
    n.output[0] = q.output[0];
    remove.add(q);
    moved++;
  }
  g.node = [...g.node.filter((n) => !remove.has(n)), ...add];
  // Activation DQ nodes whose every consumer became an integer op are gone too.
  const used = new Set(g.node.flatMap((n) => n.input));
  for (const o of g.output) used.add(o.name);
  g.node = g.node.filter((n) => n.opType !== 'DequantizeLinear' || n.output.some((o) => used.has(o)));
  g.node = topologicalSort(g);
  dropUnusedInitializers(proto);
  return [{ kind: 'qoperator', detail: `${conv} Conv → QLinearConv, ${matmul} MatMul → QLinearMatMul, ${moved} data-movement op(s) on integers; other quantized ops stay in QDQ form` }];
}
