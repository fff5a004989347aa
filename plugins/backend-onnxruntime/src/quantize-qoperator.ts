// QOperator format: rewrite the QDQ graph's fusable patterns into explicit integer operators
// (QLinearConv, QLinearMatMul), for runtimes that do not fuse QDQ themselves.
import type { GraphChange } from '@qforge/core';
import { GraphIndex, opsetVersion, tensorToFloat32, topologicalSort, type ModelProto, type NodeProto } from '@qforge/onnx';
import { opQuantizer } from './ops';
import { dropUnusedInitializers } from './prepare';

/**
 * DQ(x) → node(DQ(w), DQ(b)) → [Relu] → Q(y) becomes the integer operator the node's family
 * declares (Conv → QLinearConv, MatMul → QLinearMatMul), and pass-through ops between integer
 * tensors with the same parameters run on the integers. A Relu is dropped only when the output's
 * zero point is the type's minimum, where clamping already does it. Other quantized ops stay in
 * QDQ form (ONNX has no QLinearGemm); the report lists what was converted.
 */
export function qdqToQOperator(proto: ModelProto): GraphChange[] {
  const g = proto.graph;
  const idx = new GraphIndex(g);
  const opset = opsetVersion(proto);
  const remove = new Set<NodeProto>();
  const add: NodeProto[] = [];
  const converted = new Map<string, number>();
  const dqOf = (t: string) => {
    const p = idx.producer.get(t);
    return p?.opType === 'DequantizeLinear' ? p : undefined;
  };
  for (const n of g.node) {
    const family = opQuantizer(n.opType, n.domain);
    if (family?.role !== 'weighted' || !family.toQOperator) continue;
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
    let bias: string | undefined;
    let db: NodeProto | undefined;
    if (n.input[2]) {
      db = dqOf(n.input[2]);
      if (!db || !idx.initializers.has(db.input[0])) continue;
      bias = db.input[0];
    }
    const integer = family.toQOperator(n, { x: [x, xs, xz], w: [w, ws, wz], y: [ys, yz], bias, output: q.output[0], opset });
    if (!integer) continue;
    add.push(integer);
    converted.set(`${n.opType} → ${integer.opType}`, (converted.get(`${n.opType} → ${integer.opType}`) ?? 0) + 1);
    remove.add(n).add(q).add(dw);
    if (db) remove.add(db);
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
    const family = opQuantizer(n.opType, n.domain);
    if (family?.role !== 'pass-through' || !family.toQOperator || remove.has(n) || n.output.length !== 1) continue;
    const dx = dqOf(n.input[0]);
    const cons = idx.consumersOf(n.output[0]);
    const q = cons.length === 1 && cons[0].opType === 'QuantizeLinear' ? cons[0] : undefined;
    if (!dx || !q || idx.graphOutputNames.has(n.output[0]) || !same(dx.input[1], q.input[1]) || !same(dx.input[2], q.input[2])) continue;
    const integer = family.toQOperator(n, { x: [dx.input[0], dx.input[1], dx.input[2]], w: ['', '', ''], y: [q.input[1], q.input[2]], output: q.output[0], opset });
    if (!integer) continue;
    n.input = integer.input;
    n.output = integer.output;
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
  const count = (k: string) => converted.get(k) ?? 0;
  return [{ kind: 'qoperator', detail: `${count('Conv → QLinearConv')} Conv → QLinearConv, ${count('MatMul → QLinearMatMul')} MatMul → QLinearMatMul, ${moved} data-movement op(s) on integers; other quantized ops stay in QDQ form` }];
}
