// Embedding tables (Gather over a constant float [V, D] table) in fewer bits: GatherBlockQuantized in weight-only mode, int8 rows + DequantizeLinear in dynamic mode; a table tied to a quantized LM head reads the head's storage.
import { quantizeWeights, type GraphChange, type NodeDecision, type QuantType } from '@qforge/core';
import { DataType, attrInt, intAttr, intsAttr, makeNode, makeTensor, tensorToFloat32, type GraphIndex, type GraphProto, type NodeProto, type TensorProto } from '@qforge/onnx';
import type { BlockQuantizedWeight } from './quantize-weight-only';

const MS_DOMAIN = 'com.microsoft';

export interface EmbeddingCandidate {
  node: NodeProto;
  name: string;
  table: TensorProto;
  /** V: rows of the table, one per token. */
  rows: number;
  /** D: values per row. */
  cols: number;
}

/** A rewritten Gather: the nodes that replace it, the initializers they add, and the bytes those hold. */
export interface EmbeddingRewrite {
  nodes: NodeProto[];
  initializers: TensorProto[];
  addedBytes: number;
}

const FLOAT_BYTES = 4;

const formatBytes = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

const isGather = (n: NodeProto) => n.opType === 'Gather' && (!n.domain || n.domain === 'ai.onnx');

/**
 * The Gathers that look rows up in a constant float [V, D] table (axis 0) with indices computed at
 * run time. A table that another node still reads in float afterwards (one not in `replacedReaders`,
 * nor a Gather chosen here) is left alone, with the reason: a quantized copy next to the float one
 * would only add bytes.
 */
export function selectEmbeddings(g: GraphProto, idx: GraphIndex, opts: { excluded: Set<string>; replacedReaders: Set<NodeProto> }, decisions: NodeDecision[]): EmbeddingCandidate[] {
  const eligible: EmbeddingCandidate[] = [];
  const skip = (n: NodeProto, reason: string) => decisions.push({ node: n.name || n.output[0], opType: n.opType, quantized: false, reason });
  for (const n of g.node) {
    if (!isGather(n)) continue;
    const table = idx.initializers.get(n.input[0]);
    if (!table || table.dataType !== DataType.FLOAT) continue;
    const name = n.name || n.output[0];
    if (opts.excluded.has(name)) skip(n, 'excluded by the user (--exclude-nodes)');
    else if (table.dims.length !== 2) skip(n, `its table ${table.name} is ${table.dims.length}-D, not a [rows, values] embedding table`);
    else if (![0, -2].includes(attrInt(n, 'axis', 0))) skip(n, `gathers along axis ${attrInt(n, 'axis', 0)}, not the rows of its table`);
    else if (idx.initializers.has(n.input[1])) skip(n, 'its indices are constant too: nothing is looked up at run time');
    else eligible.push({ node: n, name, table, rows: Number(table.dims[0]), cols: Number(table.dims[1]) });
  }
  const chosen = new Set(eligible.map((e) => e.node));
  return eligible.filter((e) => {
    const others = idx.consumersOf(e.table.name).filter((m) => !chosen.has(m) && !opts.replacedReaders.has(m));
    if (!others.length && !idx.graphOutputNames.has(e.table.name)) return true;
    const who = others.length ? others.map((m) => m.name || m.opType).slice(0, 3).join(', ') : 'a graph output';
    skip(e.node, `its table ${e.table.name} is also read in float by ${who}: a quantized copy beside it would only add bytes`);
    return false;
  });
}

/**
 * Whether a MatMul/Gemm weight computes with exactly tableᵀ as its [K, N] matrix — a tied LM head,
 * whichever way the tie reached the graph (a Transpose folded into a copy, Gemm transB = 1 on the
 * table itself, or an exporter's transposed copy). `transposed`: the weight is stored [N, K] (Gemm
 * transB). Values must match bit for bit; a few spread positions are compared first, so unrelated
 * weights of the same shape cost almost nothing.
 */
export function computesWithTableTransposed(weight: TensorProto, transposed: boolean, table: TensorProto): boolean {
  if (weight.dataType !== DataType.FLOAT || weight.dims.length !== 2 || table.dims.length !== 2) return false;
  const [v, d] = table.dims.map(Number);
  const [a, b] = weight.dims.map(Number);
  if (transposed ? a !== v || b !== d : a !== d || b !== v) return false;
  if (weight === table) return transposed;
  const w = tensorToFloat32(weight);
  const e = tensorToFloat32(table);
  // Table element (r, c) against the weight's: W[c][r] when stored [D, V], w[r][c] when stored [V, D].
  const at = transposed ? (r: number, c: number) => w[r * d + c] : (r: number, c: number) => w[c * v + r];
  const total = v * d;
  for (let s = 0; s < 64; s++) {
    const i = Math.floor(((s + 0.5) / 64) * total);
    const r = Math.floor(i / d);
    if (!Object.is(at(r, i % d), e[i])) return false;
  }
  for (let r = 0; r < v; r++) for (let c = 0; c < d; c++) if (!Object.is(at(r, c), e[r * d + c])) return false;
  return true;
}

/** The 4- or 8-bit weight type a block layout stores. */
export const blockWeightType = (bits: 4 | 8, symmetric: boolean): QuantType => (bits === 4 ? (symmetric ? 'int4' : 'uint4') : symmetric ? 'int8' : 'uint8');

const i64 = (values: number[]) => BigInt64Array.from(values.map(BigInt));
const bytesOf = (ts: TensorProto[]) => ts.reduce((a, t) => a + (t.rawData?.byteLength ?? 0), 0);

/** Why a table cannot be stored with this block layout, or undefined. */
export function refuseBlockLayout(c: EmbeddingCandidate, bits: 4 | 8): string | undefined {
  if ((c.cols * bits) % 8) return `rows of ${c.cols} values do not fill whole bytes at ${bits} bits`;
  return undefined;
}

/**
 * Gather → `GatherBlockQuantized` (com.microsoft; uint8 data, `bits` 4 or 8) over the table's own
 * codes: `q` is the table quantized as W = tableᵀ (K = D, N = V: one row of blocks per token), whose
 * MatMulNBits layout is the one GatherBlockQuantized reads along the last axis, once the padding of
 * a partial last block is dropped: data [V, D·bits/8], scales [V, blocks], zero points
 * [V, ceil(blocks·bits/8)] (two 4-bit values per byte, low nibble first); absent zero points mean
 * 2^(bits−1), as in MatMulNBits.
 */
export function gatherBlockQuantized(c: EmbeddingCandidate, q: BlockQuantizedWeight, name: (base: string) => string): EmbeddingRewrite {
  const blocks = Math.ceil(c.cols / q.blockSize);
  const rowBytes = (c.cols * q.bits) / 8;
  const paddedRowBytes = (blocks * q.blockSize * q.bits) / 8;
  let data = q.packed;
  if (rowBytes !== paddedRowBytes) {
    data = new Uint8Array(c.rows * rowBytes);
    for (let r = 0; r < c.rows; r++) data.set(q.packed.subarray(r * paddedRowBytes, r * paddedRowBytes + rowBytes), r * rowBytes);
  }
  const base = c.table.name;
  const initializers = [makeTensor(name(`${base}_Q${q.bits}`), [c.rows, rowBytes], data), makeTensor(name(`${base}_scales`), [c.rows, blocks], q.scales)];
  if (q.zeroPoints) initializers.push(makeTensor(name(`${base}_zero_points`), [c.rows, q.zeroPoints.length / c.rows], q.zeroPoints));
  const inputs = [initializers[0].name, c.node.input[1], initializers[1].name, ...(initializers[2] ? [initializers[2].name] : [])];
  const node = makeNode('GatherBlockQuantized', inputs, [c.node.output[0]], name(`${c.name}_Q${q.bits}`), blockAttrs(1, q), MS_DOMAIN);
  return { nodes: [node], initializers, addedBytes: bytesOf(initializers) };
}

const blockAttrs = (quantizeAxis: number, q: { bits: number; blockSize: number }) => [intAttr('gather_axis', 0), intAttr('quantize_axis', quantizeAxis), intAttr('block_size', q.blockSize), intAttr('bits', q.bits)];

/** Nodes that reshape `[...indices, a, b]` (or `[n, D]`) back to `[...indices, D]`. */
function toIndexShape(indices: string, from: string, to: string, d: number, name: (base: string) => string, initializers: TensorProto[]): NodeProto[] {
  const width = makeTensor(name(`${to}_width`), [1], i64([d]));
  initializers.push(width);
  const shape = name(`${to}_indices_shape`);
  const target = name(`${to}_shape`);
  return [makeNode('Shape', [indices], [shape], name(`${to}_Shape`)), makeNode('Concat', [shape, width.name], [target], name(`${to}_Concat`), [intAttr('axis', 0)]), makeNode('Reshape', [from, target], [to], name(`${to}_Reshape`))];
}

/** The stored form of a tied LM head rewritten to MatMulNBits: B [V, blocks, blob], scales [V·blocks], zero points. */
export interface MatMulNBitsStorage {
  b: string;
  scales: string;
  zeroPoints?: string;
  q: BlockQuantizedWeight;
}

/**
 * A tied table read from its LM head's `MatMulNBits` storage: B [N = V, blocks, blob] already holds
 * each token's row in blocks along D, so `GatherBlockQuantized` gathers from B itself (3-D, blocks on
 * the middle axis, one block per last-axis row) and the table costs no bytes of its own: scales (and
 * 8-bit zero points) are B's, reshaped to [V, blocks, 1] (ONNX Runtime folds the Reshape at load);
 * 4-bit zero points, packed two blocks per byte for MatMulNBits, are stored once more one per byte.
 * Needs D to be a whole number of blocks (MatMulNBits pads a partial one, GatherBlockQuantized does not).
 */
export function gatherFromMatMulNBits(c: EmbeddingCandidate, s: MatMulNBitsStorage, name: (base: string) => string): EmbeddingRewrite {
  const { q } = s;
  const blocks = q.k / q.blockSize;
  const base = c.table.name;
  const initializers: TensorProto[] = [makeTensor(name(`${base}_block_shape`), [3], i64([c.rows, blocks, 1]))];
  const shape3 = initializers[0].name;
  const nodes: NodeProto[] = [];
  const reshaped = (input: string) => {
    const out = name(`${input}_per_block`);
    nodes.push(makeNode('Reshape', [input, shape3], [out], name(`${out}_Reshape`)));
    return out;
  };
  const inputs = [s.b, c.node.input[1], reshaped(s.scales)];
  if (s.zeroPoints && q.zeroPoints) {
    if (q.bits === 8) inputs.push(reshaped(s.zeroPoints));
    else {
      const perRow = Math.ceil(blocks / 2);
      const one = new Uint8Array(c.rows * blocks);
      for (let r = 0; r < c.rows; r++) for (let b = 0; b < blocks; b++) one[r * blocks + b] = (q.zeroPoints[r * perRow + (b >> 1)] >> ((b & 1) * 4)) & 15;
      const z = makeTensor(name(`${base}_zero_points`), [c.rows, blocks, 1], one);
      initializers.push(z);
      inputs.push(z.name);
    }
  }
  const gathered = name(`${c.node.output[0]}_blocks`);
  nodes.push(makeNode('GatherBlockQuantized', inputs, [gathered], name(`${c.name}_Q${q.bits}`), blockAttrs(2, q), MS_DOMAIN));
  nodes.push(...toIndexShape(c.node.input[1], gathered, c.node.output[0], c.cols, name, initializers));
  return { nodes, initializers, addedBytes: bytesOf(initializers) };
}

/**
 * Dynamic mode: the table stored int8 (symmetric, one scale per row when `perRow`, else one for the
 * table), and only the rows looked up are dequantized: Gather on the int8 table, then
 * `DequantizeLinear` with the gathered rows' scales (axis 0, opset ≥ 13). ONNX Runtime does not
 * constant-fold DequantizeLinear, so DequantizeLinear → Gather (ONNX Runtime's own QDQ form) would
 * dequantize the whole table on every run: 3.7 ms for a 32000 × 768 table here, against 0.012 ms.
 */
export function gatherInt8Rows(c: EmbeddingCandidate, perRow: boolean, name: (base: string) => string): EmbeddingRewrite {
  const { values, scales } = quantizeWeights(tensorToFloat32(c.table), [c.rows, c.cols], perRow ? 0 : undefined, { type: 'int8', symmetric: true, reduceRange: false });
  const q = makeTensor(name(`${c.table.name}_quantized`), [c.rows, c.cols], Int8Array.from(values));
  const s = makeTensor(name(`${c.table.name}_scale`), perRow ? [c.rows] : [], scales);
  const rewrite = dequantizedRows(c, { data: q.name, scale: s.name, perRow, columns: false }, name);
  rewrite.initializers.unshift(q, s);
  rewrite.addedBytes = bytesOf(rewrite.initializers);
  return rewrite;
}

/**
 * Dynamic mode, tied table: the LM head's `DynamicQuantizeMatMul` already stores tableᵀ as int8
 * B [D, V] with one scale per column (= per token) or one in all, so the lookup gathers B's columns
 * (axis 1), transposes them to rows and dequantizes them: no bytes of the table's own.
 */
export function gatherInt8Columns(c: EmbeddingCandidate, s: { data: string; scale: string; perColumn: boolean }, name: (base: string) => string): EmbeddingRewrite {
  const rewrite = dequantizedRows(c, { data: s.data, scale: s.scale, perRow: s.perColumn, columns: true }, name);
  rewrite.addedBytes = bytesOf(rewrite.initializers);
  return rewrite;
}

function dequantizedRows(c: EmbeddingCandidate, s: { data: string; scale: string; perRow: boolean; columns: boolean }, name: (base: string) => string): EmbeddingRewrite {
  const out = c.node.output[0];
  const ids = c.node.input[1];
  const initializers: TensorProto[] = [];
  const nodes: NodeProto[] = [];
  if (!s.perRow && !s.columns) {
    // One scale: the int8 rows gathered in the indices' own shape dequantize as they are.
    const rows = name(`${out}_int8`);
    nodes.push(makeNode('Gather', [s.data, ids], [rows], name(`${c.name}_int8`)), makeNode('DequantizeLinear', [rows, s.scale], [out], name(`${c.name}_DequantizeLinear`)));
    return { nodes, initializers, addedBytes: 0 };
  }
  // Rows (and their scales) are looked up for the flattened indices, [n, D], then shaped back.
  const flatShape = makeTensor(name(`${out}_flat_shape`), [1], i64([-1]));
  initializers.push(flatShape);
  const flat = name(`${ids}_flat`);
  const rows = name(`${out}_int8`);
  nodes.push(makeNode('Reshape', [ids, flatShape.name], [flat], name(`${c.name}_flatten_indices`)));
  if (s.columns) {
    const cols = name(`${out}_int8_columns`);
    nodes.push(makeNode('Gather', [s.data, flat], [cols], name(`${c.name}_int8_columns`), [intAttr('axis', 1)]), makeNode('Transpose', [cols], [rows], name(`${c.name}_columns_to_rows`), [intsAttr('perm', [1, 0])]));
  } else nodes.push(makeNode('Gather', [s.data, flat], [rows], name(`${c.name}_int8`)));
  let scale = s.scale;
  if (s.perRow) {
    scale = name(`${out}_row_scales`);
    nodes.push(makeNode('Gather', [s.scale, flat], [scale], name(`${c.name}_row_scales`)));
  }
  const dequantized = name(`${out}_rows`);
  nodes.push(makeNode('DequantizeLinear', [rows, scale], [dequantized], name(`${c.name}_DequantizeLinear`), s.perRow ? [intAttr('axis', 0)] : []));
  nodes.push(...toIndexShape(ids, dequantized, out, c.cols, name, initializers));
  return { nodes, initializers, addedBytes: 0 };
}

/**
 * Puts one Gather's rewrite into the graph (its initializers, its replacement nodes), records its
 * decision and its bytes line, and frees the float table as soon as its quantized form exists.
 */
export function applyEmbeddingRewrite(
  g: GraphProto,
  c: EmbeddingCandidate,
  rewrite: EmbeddingRewrite,
  replaced: Map<NodeProto, NodeProto[]>,
  how: { weightType: QuantType; granularity: NodeDecision['granularity']; reason: string; sharedWith?: string },
  out: { decisions: NodeDecision[]; lines: string[] },
): void {
  g.initializer.push(...rewrite.initializers);
  replaced.set(c.node, rewrite.nodes);
  const floatBytes = c.rows * c.cols * FLOAT_BYTES;
  const after = how.sharedWith ? `no table of its own (reads ${how.sharedWith}'s storage; ${formatBytes(rewrite.addedBytes)} added)` : formatBytes(rewrite.addedBytes);
  out.decisions.push({ node: c.name, opType: c.node.opType, quantized: true, weightType: how.weightType, granularity: how.granularity, reason: how.reason });
  out.lines.push(`${c.name}: ${c.table.name} [${c.rows}×${c.cols}] ${formatBytes(floatBytes)} float32 → ${after}`);
  const at = g.initializer.indexOf(c.table);
  if (at >= 0) g.initializer.splice(at, 1);
  c.table.rawData = new Uint8Array(0);
  c.table.floatData = [];
}

/** The change entry naming every rewritten Gather with its bytes. */
export function embeddingChange(kind: string, lines: string[], op: string): GraphChange {
  return { kind, detail: `${lines.length} Gather node(s) → ${op}: ${lines.slice(0, 8).join('; ')}${lines.length > 8 ? `; … (${lines.length})` : ''}` };
}
